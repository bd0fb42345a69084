//! Services that must run: a stopped service is drift, like an edited file.
//!
//! What a server's units need running (`needed`): on a web server (one
//! with `web_server: true`, or an app with a `web` role) nginx and the
//! php-fpm of each of the cluster's PHP versions (each has its global
//! configuration and reconciler's status pool there); on a server with an
//! app's workers, supervisor, and every process of those apps' program
//! groups `RUNNING` (or `STARTING`); on a server with an app's scheduler,
//! cron. A needed service its init system says is stopped is started; a
//! worker process in any other state (`STOPPED`, `EXITED`, `BACKOFF`,
//! `FATAL`, ...) is started by supervisorctl.
//!
//! An app's processes are those of the groups its program file makes
//! (`units::supervisor::groups_in`: one per worker, `<app>-<worker>:...`).
//! An app whose program file changes in the same plan is left to
//! `supervisorctl update`, which restarts what changed; the workers of an app
//! without a live release wait for it (they cannot run); the processes of
//! a supervisord that does not run are unknown, and starting supervisord
//! starts them.

use super::Change;
use crate::definitions::plural;
use crate::facts::{HostFacts, ServiceState};
use crate::layout::ConfigFile;
use crate::units::kinds::supervisor::groups_in;
use crate::units::{HostUnits, Scope};

/// The services (by the name the init system knows them by) `units`
/// need running: `nginx`, `php<v>-fpm` per PHP version with php-fpm
/// configuration, `supervisor`, `cron`.
pub fn needed(units: &HostUnits) -> Vec<String> {
    let mut services = Vec::new();
    if units.needs.nginx {
        services.push("nginx".to_owned());
    }
    if units.needs.php_fpm {
        for file in &units.files {
            if let Some(ConfigFile::FpmGlobal { version }) = ConfigFile::parse(&file.path) {
                services.push(format!("php{version}-fpm"));
            }
        }
    }
    if units.needs.supervisor {
        services.push("supervisor".to_owned());
    }
    if units.needs.cron {
        services.push("cron".to_owned());
    }
    services
}

/// The starts a host needs: each needed service its facts say is stopped
/// (a service the facts do not know is left alone), then each process of
/// an app's worker programs in `scope` that does not run, unless `changes`
/// rewrite that app's program file.
pub(super) fn changes(
    units: &HostUnits,
    facts: &HostFacts,
    scope: &Scope,
    changes: &[Change],
) -> Vec<Change> {
    let mut starts: Vec<Change> = needed(units)
        .into_iter()
        .filter(|service| facts.services.get(service) == Some(&ServiceState::Stopped))
        .map(|service| Change::StartService { service })
        .collect();
    let Some(programs) = &facts.programs else {
        return starts;
    };
    let rewritten = |app: &str| {
        changes.iter().any(|c| {
            matches!(
                c.file_path().and_then(ConfigFile::parse),
                Some(ConfigFile::Supervisor { app: a }) if a.as_str() == app
            )
        })
    };
    for file in &units.files {
        let Some(ConfigFile::Supervisor { app }) = ConfigFile::parse(&file.path) else {
            continue;
        };
        // Workers run in the live release: an app without one waits for
        // its first release (the plan's notes say so), not for a start.
        let live = facts
            .releases
            .get(&app)
            .is_some_and(|r| r.current.is_some());
        if !scope.covers_app(&app) || rewritten(app.as_str()) || !live {
            continue;
        }
        let groups = groups_in(&file.content);
        let of_app = |name: &str| {
            name.split_once(':')
                .is_some_and(|(group, _)| groups.contains(group))
        };
        starts.extend(
            programs
                .iter()
                .filter(|(name, state)| of_app(name) && !state.is_running())
                .map(|(name, state)| Change::StartProgram {
                    program: name.clone(),
                    state: *state,
                }),
        );
    }
    starts
}

/// What the plan says about processes it could not read.
pub(super) fn notes(facts: &HostFacts) -> Vec<String> {
    if facts.programs_unread == 0 {
        return Vec::new();
    }
    vec![format!(
        "{} of `supervisorctl status` name a process in a way reconciler does not read \
         (or a state it does not know); they were left out",
        plural(facts.programs_unread, "line")
    )]
}
