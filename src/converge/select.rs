//! Which hosts a command works on: `--server` and `--app`, checked against
//! the definitions before any server is contacted.

use std::collections::BTreeSet;

use super::Target;
use crate::definitions::{AppName, Definitions, ServerName, closest};
use crate::units::{self, Desired, Scope};
use crate::windows::Windows;

/// Which servers and apps to work on; empty means all.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// The servers named by `--server`; empty: every server.
    pub servers: Vec<ServerName>,
    /// The apps named by `--app`; empty: every app's units.
    pub apps: Vec<AppName>,
}

/// A selection that names something the definitions do not have. These are
/// usage errors: the command line is wrong, not the definitions.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    /// A server named in the selection is in no cluster.
    #[error("no server `{name}` in the definitions")]
    UnknownServer {
        /// The name as given.
        name: ServerName,
        /// `did you mean` the closest name, or every server's name.
        hint: String,
    },
    /// An app named in the selection has no app file.
    #[error("no app `{name}` in the definitions")]
    UnknownApp {
        /// The name as given.
        name: AppName,
        /// `did you mean` the closest name, or every app's name.
        hint: String,
    },
    /// The servers and apps named leave no server to work on (no selected
    /// server runs a selected app).
    #[error("the selection matches no server")]
    Empty,
}

fn suggestion<'a>(given: &str, known: impl Iterator<Item = &'a str> + Clone, what: &str) -> String {
    if let Some(best) = closest(given, known.clone()) {
        format!("did you mean `{best}`?")
    } else {
        let mut all: Vec<&str> = known.collect();
        all.sort_unstable();
        format!("{what}: {}", all.join(", "))
    }
}

/// The hosts `selection` names, each with its units within the selection's
/// scope.
pub fn select(
    definitions: &Definitions,
    desired: &Desired,
    selection: &Selection,
) -> Result<Vec<Target>, SelectionError> {
    for name in &selection.servers {
        if desired.host(name).is_none() {
            let known = desired.hosts.iter().map(|h| h.server.name.as_str());
            return Err(SelectionError::UnknownServer {
                name: name.clone(),
                hint: suggestion(name.as_str(), known, "servers"),
            });
        }
    }
    for name in &selection.apps {
        if definitions.app(name).is_none() {
            let known = definitions.apps.iter().map(|a| a.name.as_str());
            return Err(SelectionError::UnknownApp {
                name: name.clone(),
                hint: suggestion(name.as_str(), known, "apps"),
            });
        }
    }
    let scope = Scope {
        apps: (!selection.apps.is_empty())
            .then(|| selection.apps.iter().cloned().collect::<BTreeSet<_>>()),
    };
    let mut targets = Vec::new();
    for host in &desired.hosts {
        let server = &host.server.name;
        if !selection.servers.is_empty() && !selection.servers.contains(server) {
            continue;
        }
        let runs = |app: &crate::definitions::App| {
            app.cluster == host.cluster && app.servers.iter().any(|r| &r.name == server)
        };
        if let Some(apps) = &scope.apps
            && !definitions
                .apps
                .iter()
                .any(|app| apps.contains(&app.name) && runs(app))
        {
            continue;
        }
        let cluster = definitions.cluster(&host.cluster);
        let duration = cluster.map_or(30, |c| u64::from(c.request.duration));
        let reload_windows = cluster
            .map(|c| c.reload_windows.as_slice())
            .unwrap_or_default();
        let stop_waits: u64 = definitions
            .apps
            .iter()
            .filter(|app| runs(app) && scope.covers_app(&app.name))
            .flat_map(|app| &app.servers)
            .filter(|role| &role.name == server)
            .flat_map(|role| &role.workers)
            .map(|w| u64::from(w.processes) * u64::from(w.stop_wait))
            .sum();
        let mut desired = host.clone();
        desired.units = units::filter(&host.units, &scope);
        targets.push(Target {
            desired,
            scope: scope.clone(),
            fpm_reload_limit: duration + 30,
            supervisor_limit: stop_waits + crate::apply::STEP_LIMIT,
            windows: Windows::from_definitions(reload_windows),
            timezone: reload_windows
                .first()
                .and_then(|w| w.timezone.get())
                .map_or(chrono_tz::Tz::UTC, |t| t.0),
            fpm_reload: cluster.map(|c| c.fpm_reload).unwrap_or_default(),
            hygiene: cluster.and_then(|c| c.opcache_hygiene),
            reload_parallel: cluster.map_or(1, |c| c.reload_parallel),
        });
    }
    if targets.is_empty() {
        return Err(SelectionError::Empty);
    }
    Ok(targets)
}

impl crate::Hint for SelectionError {
    fn hint(&self) -> Option<&str> {
        match self {
            SelectionError::UnknownServer { hint, .. }
            | SelectionError::UnknownApp { hint, .. } => Some(hint),
            SelectionError::Empty => Some("the apps given run on none of the servers given"),
        }
    }
}
