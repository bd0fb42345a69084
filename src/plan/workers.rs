//! Workers and their supervisor process groups: which groups an app's
//! supervisor reload may touch, and which workers must restart because
//! what they read at start changed (a CLI php.ini).
//!
//! Each worker is its own program and process group (`<app>-<worker>`,
//! see `units::kinds::supervisor`): supervisord restarts a group whole, so
//! this is what keeps one worker's change from restarting the others.

use super::Change;
use super::reload::{Cause, Service};
use crate::definitions::AppName;
use crate::facts::{HostFacts, Journal};
use crate::layout::{ConfigFile, Sapi};
use crate::units::HostUnits;
use crate::units::kinds::supervisor::groups_in;

/// The workers that must restart because `changes` rewrite a CLI php.ini
/// (or an `interrupted` apply staged one, and may have died before its
/// restart): every app's on the host (with `units`) in `scope` that has
/// workers and a live release (without one they do not run). An app whose
/// program file changes too still restarts: its update restarts only the
/// programs that changed (apply leaves those out of the restart).
pub(super) fn worker_restarts(
    changes: &[Change],
    interrupted: Option<&Journal>,
    units: &HostUnits,
    facts: &HostFacts,
    scope: &crate::units::Scope,
) -> Vec<(Service, Cause)> {
    let is_cli_ini = |path: &str| {
        matches!(
            ConfigFile::parse(path),
            Some(ConfigFile::PhpIni {
                sapi: Sapi::Cli,
                ..
            })
        )
    };
    let cli_ini = changes.iter().any(|c| {
        c.file_path().is_some_and(is_cli_ini) && !matches!(c, Change::UpdateFile { diff: None, .. })
    }) || interrupted.is_some_and(|j| j.staged.iter().any(|p| is_cli_ini(p)));
    if !cli_ini {
        return Vec::new();
    }
    units
        .files
        .iter()
        .filter_map(|file| match ConfigFile::parse(&file.path) {
            Some(ConfigFile::Supervisor { app }) => Some(app),
            _ => None,
        })
        .filter(|app| {
            scope.covers_app(app) && facts.releases.get(app).is_some_and(|r| r.current.is_some())
        })
        .map(|app| {
            let service = Service::Workers {
                app: app.to_string(),
            };
            (service, Cause::CliIni)
        })
        .collect()
}

/// The process groups an app's supervisor reload may touch, on a host
/// with `facts` that should have `units`: the groups of the program file
/// the units want and of the one on the server (programs that go, a
/// `[group:<app>]` of old), and the app's own name. supervisord updates
/// those it finds changed, new or gone; the others keep their processes.
pub(super) fn supervisor_groups(app: &str, units: &HostUnits, facts: &HostFacts) -> Vec<String> {
    let path = ConfigFile::Supervisor {
        app: AppName::new(app),
    }
    .path();
    let wanted = units.files.iter().find(|f| f.path == path);
    let found = facts.paths.get(&path).and_then(|p| p.content.as_deref());
    let mut groups = groups_in(wanted.map_or("", |f| f.content.as_str()));
    groups.extend(groups_in(found.unwrap_or_default()));
    groups.insert(app.to_owned());
    groups.into_iter().collect()
}

/// The process groups of an app's workers as `units` want them: what a
/// restart of its workers restarts.
pub(super) fn worker_groups(app: &str, units: &HostUnits) -> Vec<String> {
    let path = ConfigFile::Supervisor {
        app: AppName::new(app),
    }
    .path();
    let wanted = units.files.iter().find(|f| f.path == path);
    groups_in(wanted.map_or("", |f| f.content.as_str()))
        .into_iter()
        .collect()
}
