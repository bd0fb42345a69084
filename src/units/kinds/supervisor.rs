//! supervisor: one program per worker, each its own process group.
//!
//! supervisord's `update` works on whole groups: a group whose
//! configuration changed is stopped and started again, all of it. With
//! one group per app, a change to one worker's command stopped every
//! worker of the app (each for up to its `stop_wait`). So there is no
//! `[group:<app>]`: each program `<app>-<worker>` is its own group, its
//! processes are `<app>-<worker>:<app>-<worker>_00`, and an apply updates
//! only the programs supervisord finds changed (`groups_in` gives the
//! candidates, `steps.sh`'s `supervisor_update` asks supervisord).

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::{App, AppName, Worker};
use crate::layout::{self, AppPaths};
use crate::units::escape;

/// What `supervisor.conf.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Supervisor {
    /// The app's name.
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
    /// The app's programs, comma-separated (`<app>-<worker>,...`), for
    /// templates that put them in a group of their own again (then a change
    /// to one worker restarts all of them).
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

/// The supervisor process groups a program file (`conf`) makes, as
/// `supervisorctl` names them: each `[group:<name>]`, and each
/// `[program:<name>]` (a program outside a group is a group of its own; one
/// inside a group is named too, which is harmless: supervisord knows no
/// such group and reports none). Names with other characters than letters,
/// digits, `-`, `_` and `.` are left out; supervisor refuses them anyway.
pub fn groups_in(conf: &str) -> std::collections::BTreeSet<String> {
    conf.lines()
        .filter_map(|line| {
            let section = line.trim().strip_prefix('[')?.strip_suffix(']')?;
            let name = section
                .strip_prefix("program:")
                .or_else(|| section.strip_prefix("group:"))?
                .trim();
            let valid = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            valid.then(|| name.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::groups_in;

    #[test]
    fn groups_are_the_programs_and_groups_a_file_names() {
        let conf = "; [program:comment]\n[program:shop-a]\ncommand=x\n\
                    [program:shop-b] \n[group:shop]\nprograms=shop-a\n\
                    [program:bad name]\n[program:]\n[unix_http_server]\n";
        assert_eq!(
            groups_in(conf).into_iter().collect::<Vec<_>>(),
            ["shop", "shop-a", "shop-b"]
        );
    }
}
