//! supervisor: one group of programs per app, one program per worker.

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::{App, AppName, Worker};
use crate::layout::{self, AppPaths};
use crate::units::escape;

/// What `supervisor.conf.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Supervisor {
    /// The app's name, which is also its program group's.
    pub app: String,
    /// The user the workers run as: the app's own.
    pub user: String,
    /// The app's home.
    pub home: String,
    /// The link to the live release, the workers' directory.
    pub current: String,
    /// The app's log directory, for the workers' output.
    pub logs: String,
    /// The workers' PATH: the app's PHP version first.
    pub path: String,
    /// The group's programs, comma-separated (`<app>-<worker>,...`).
    pub programs: String,
    /// The app's workers on this server.
    pub workers: Vec<SupervisorWorker>,
}

/// One worker: a supervisor program.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SupervisorWorker {
    /// The program's name: `<app>-<worker>`.
    pub program: String,
    /// The worker's `name`.
    pub name: String,
    /// The worker's `command` as one `/bin/sh -c` word quoted for
    /// supervisor's command line (`'` and `%` escaped).
    pub command: String,
    /// `processes`: numprocs.
    pub processes: u32,
    /// `stop_wait`: stopwaitsecs, in seconds.
    pub stop_wait: u32,
}

impl Context for Supervisor {
    const TEMPLATE: &'static str = "supervisor.conf.hbs";
    const FILE: &'static str = "`/etc/supervisor/conf.d/<app>.conf`: \
         an app's queue workers, on the servers that run them.";
}

impl Supervisor {
    /// The programs of `app`'s `workers` on one server.
    pub fn new(app: &App, workers: &[Worker]) -> Self {
        let paths = AppPaths::new(&app.name);
        let workers: Vec<SupervisorWorker> = workers
            .iter()
            .map(|worker| SupervisorWorker {
                program: program_name(&app.name, worker),
                name: worker.name.to_string(),
                command: escape::supervisor_command(&worker.command),
                processes: worker.processes,
                stop_wait: worker.stop_wait,
            })
            .collect();
        Self {
            app: app.name.to_string(),
            user: app.name.to_string(),
            home: paths.home,
            current: paths.current,
            logs: paths.logs,
            path: layout::app_path(&app.php),
            programs: workers
                .iter()
                .map(|w| w.program.as_str())
                .collect::<Vec<_>>()
                .join(","),
            workers,
        }
    }
}

/// The supervisor program of a worker: `<app>-<worker>`.
pub fn program_name(app: &AppName, worker: &Worker) -> String {
    format!("{app}-{}", worker.name)
}
