//! An app's servers, and the scripts reconciler runs there for the app.
//!
//! `AppTarget` is where an app runs: each server with its roles. A
//! `Session` runs the app's scripts on those servers (`app.sh`, with the
//! caller's own shell file: `release.sh`, `env.sh` or `logs.sh`), one round
//! trip per step and server so that progress shows. Releases, rollbacks and
//! `env push` hold the app lock on every server (`Session::lock_all`), so
//! they never interleave; what only reads runs without it (`lockless`).
//!
//! Nothing here decides what a release does: `release/` plans, this runs.

mod session;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::definitions::{App, AppServer, Definitions, Server, ServerName};
use crate::transport::TransportError;

pub use session::{
    APP_SH, Host, Locked, Lockless, Session, connect_all, lockless, on_every_server, unlock_all,
    worker_limit,
};

/// Seconds each build, deploy or env command may take.
pub const COMMAND_LIMIT: u64 = 600;

/// Where an app runs: each server with its roles.
#[derive(Debug, Clone)]
pub struct AppTarget {
    /// The app as its file in the definitions describes it.
    pub app: App,
    /// Each server of its cluster that runs it, with the app's role there,
    /// in the app file's order.
    pub servers: Vec<(Server, AppServer)>,
    /// With `release_layout: ab`, the seconds a release waits after
    /// `current` left a directory before it rewrites it (the cluster's
    /// `Cluster::ab_wait`).
    pub ab_wait: u64,
}

impl AppTarget {
    /// The app and its servers from the definitions.
    ///
    /// # Errors
    ///
    /// `AppError::UnknownApp` when no app (or no cluster of it) has that
    /// name.
    pub fn find(definitions: &Definitions, app: &str) -> Result<Self, AppError> {
        let found = definitions
            .apps
            .iter()
            .find(|a| a.name.as_str() == app)
            .ok_or_else(|| AppError::UnknownApp(app.to_owned()))?;
        let cluster = definitions
            .clusters
            .iter()
            .find(|c| c.name == found.cluster)
            .ok_or_else(|| AppError::UnknownApp(app.to_owned()))?;
        let servers = found
            .servers
            .iter()
            .filter_map(|role| {
                cluster
                    .servers
                    .iter()
                    .find(|s| s.name == role.name)
                    .map(|s| (s.clone(), role.clone()))
            })
            .collect();
        // Validation refuses `ab` where the wait cannot be worked out.
        let ab_wait = cluster
            .ab_wait()
            .unwrap_or(u64::from(cluster.request.duration) + 61);
        Ok(Self {
            app: found.clone(),
            servers,
            ab_wait,
        })
    }

    /// Every app of `definitions` that pins a `revision:`, or of `only`
    /// when it names some.
    pub fn pinned(definitions: &Definitions, only: &[String]) -> Vec<Self> {
        definitions
            .apps
            .iter()
            .filter(|a| a.revision.is_some())
            .filter(|a| only.is_empty() || only.iter().any(|o| o == a.name.as_str()))
            .filter_map(|a| Self::find(definitions, a.name.as_str()).ok())
            .collect()
    }
}

/// What started a release, for the app lock and the release log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `reconciler release`.
    Cli,
    /// The deploy webhook.
    Webhook,
    /// An app's `revision:` in the definitions.
    Definitions,
    /// `reconciler rollback`.
    Rollback,
    /// `reconciler env push` (it takes the app lock too).
    Env,
    /// The daemon's check, bringing servers to the intended release.
    Repair,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Cli => "cli",
            Trigger::Webhook => "webhook",
            Trigger::Definitions => "definitions",
            Trigger::Rollback => "rollback",
            Trigger::Env => "env push",
            Trigger::Repair => "repair",
        })
    }
}

/// Who acts on an app and why, for the lock and the log.
#[derive(Debug, Clone)]
pub struct Origin {
    /// `user@machine (pid N)`, or the daemon's name.
    pub who: String,
    /// What started the work.
    pub trigger: Trigger,
}

/// One step of work on an app's server, as progress and errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Taking the app lock on the server.
    Lock,
    /// Sending the release's files and unpacking them in its directory.
    Upload,
    /// Linking the app's shared paths into the release.
    Shared,
    /// `release_layout: ab`: the release written into the idle side.
    Side,
    /// The app's build commands, in the release.
    Build,
    /// The role's deploy commands, in the release.
    Deploy,
    /// Recording that the release is whole.
    Complete,
    /// Warming OPcache with the release's scripts (`opcache_prewarm`).
    Warm,
    /// Pointing `current` at the release.
    Switch,
    /// Restarting the app's workers after a switch.
    Workers,
    /// The app's health check after a switch.
    Health,
    /// Watching the new release's error rate after it went live.
    Guard,
    /// Recording the release as live and pruning old ones.
    Finish,
    /// Removing a release that was prepared and not switched to.
    Discard,
    /// Writing the app's environment file (`env push`).
    Env,
    /// The app's env commands, after its environment changed.
    EnvCommands,
    /// Restarting what reads the environment, after it changed.
    EnvRestart,
    /// Releasing the app lock.
    Unlock,
    /// Reading the app's state on the server (releases, logs).
    Read,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Lock => "lock",
            Step::Upload => "upload",
            Step::Shared => "shared",
            Step::Side => "side",
            Step::Build => "build",
            Step::Deploy => "deploy",
            Step::Complete => "complete",
            Step::Warm => "warm",
            Step::Switch => "switch",
            Step::Workers => "workers",
            Step::Health => "health check",
            Step::Guard => "guard",
            Step::Finish => "finish",
            Step::Discard => "discard",
            Step::Env => "env",
            Step::EnvCommands => "env_commands",
            Step::EnvRestart => "restart",
            Step::Unlock => "unlock",
            Step::Read => "read",
        })
    }
}

/// A step that failed on a server, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The server it failed on.
    pub server: ServerName,
    /// The step that failed.
    pub step: Step,
    /// What the step printed (stdout and stderr), for the user to read.
    pub output: String,
}

/// A step's progress on one server.
#[derive(Debug, Clone)]
pub enum Event {
    /// The step began.
    Started,
    /// The step succeeded, taking this long.
    Done(Duration),
    /// The step was not needed, for this reason.
    Skipped(&'static str),
    /// The step failed, with this message.
    Failed(String),
}

/// Where progress goes: a line per step and server, or a terminal display.
pub trait Progress: Send + Sync {
    /// Records `event` for `step` on `server`.
    fn step(&self, server: &ServerName, step: Step, event: &Event);
}

/// No progress.
impl Progress for () {
    fn step(&self, _: &ServerName, _: Step, _: &Event) {}
}

/// Why work on an app could not start, or a step of it failed.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// No app of the definitions has this name.
    #[error("app `{0}` is not in the definitions")]
    UnknownApp(String),
    /// A server could not be reached, or the connection to it failed:
    /// named with the cause as every path reports it
    /// (`TransportError::cause`), its remedy as the hint.
    #[error("{server}: {}", .error.cause().message)]
    Unreachable {
        /// The server that could not be reached.
        server: ServerName,
        /// How reaching it failed.
        error: TransportError,
    },
    /// Another run holds the app lock on a server.
    #[error("{app} is being released on {server} by {holder}")]
    Busy {
        /// The app.
        app: String,
        /// The server whose lock is held.
        server: ServerName,
        /// Who holds it, as its lock file says (`user@machine (pid N)`).
        holder: String,
    },
    /// A step failed on a server.
    #[error("{} failed on {}\n{}", .0.step, .0.server, .0.output)]
    Failed(StepFailure),
    /// The system's random generator failed while making a secret.
    #[error(transparent)]
    Secret(#[from] crate::secret::SecretError),
}

/// The first 12 characters of a commit id.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

impl crate::Hint for AppError {
    fn hint(&self) -> Option<&str> {
        match self {
            AppError::Unreachable { error, .. } => error.hint(),
            AppError::Busy { .. } => {
                Some("wait for it, or if its client hangs, pass --force-unlock")
            }
            _ => None,
        }
    }
}
