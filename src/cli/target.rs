//! Arguments shared by the commands that reach servers: which servers and
//! apps, how to connect, how many at once; and the survey they all start
//! with.

use crate::Hint as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use crate::converge::{self, Loaded, ReconcileOptions, Selection, Surveyed};
use crate::definitions::{AppName, ServerName};
use crate::transport::{ConnectOptions, RealConnector};

use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    #[command(flatten)]
    pub definitions: DefinitionsDir,
    /// Only this server; repeat for more.
    #[arg(long = "server", value_name = "NAME")]
    pub servers: Vec<String>,
    /// Only this app's units (on the servers it runs on); repeat for more.
    /// Cluster-wide files (php.ini, FPM global settings) are left out.
    #[arg(long = "app", value_name = "NAME")]
    pub apps: Vec<String>,
    /// Reload php-fpm now instead of waiting for a reload window.
    #[arg(long)]
    pub now: bool,
    /// How many servers to work on at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallel: u16,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// How to connect over SSH. Host keys are always checked.
#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// A known_hosts file to check host keys against instead of ~/.ssh/known_hosts.
    #[arg(long, value_name = "FILE", env = "RECONCILER_KNOWN_HOSTS")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record the host keys of servers never connected to before
    /// (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// The private key to log in with, instead of ssh-agent and ssh's defaults.
    #[arg(long, value_name = "FILE", env = "RECONCILER_SSH_KEY")]
    pub ssh_key: Option<PathBuf>,
    /// Seconds to wait for a server to answer (1 to 600).
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub connect_timeout: u64,
}

impl SshArgs {
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            known_hosts: self.known_hosts.clone(),
            accept_new_host_keys: self.accept_new_host_keys,
            identity: self.ssh_key.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
            keep_warm: false,
        }
    }
}

/// `gathering facts: 3/20 servers` on a terminal's stderr, erased when done.
fn show_progress(done: usize, total: usize) {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() || total < 2 {
        return;
    }
    let _ = if done < total {
        write!(stderr, "\rgathering facts: {done}/{total} servers")
    } else {
        write!(stderr, "\r\x1b[2K")
    };
    let _ = stderr.flush();
}

impl TargetArgs {
    /// How this command reconciles: now, by whom, with which lock wait.
    pub fn reconcile_options(&self, loaded: &Loaded, lock_wait: Duration) -> ReconcileOptions {
        ReconcileOptions {
            now: chrono::Utc::now(),
            reload_now: self.now,
            holder: converge::holder(),
            revision: loaded.definitions.revision.clone(),
            lock_wait,
        }
    }

    /// Loads the definitions, checks the selection and the SSH files, then
    /// surveys the servers.
    pub async fn survey(
        &self,
        options: &ReconcileOptions,
        loaded: &Loaded,
    ) -> Result<Vec<Surveyed>, Failure> {
        let selection = Selection {
            servers: self.servers.iter().map(ServerName::new).collect(),
            apps: self.apps.iter().map(AppName::new).collect(),
        };
        let targets = converge::select(&loaded.definitions, &loaded.desired, &selection)
            .map_err(|error| Failure::usage(error.to_string(), error.hint()))?;
        let connect = self.ssh.options();
        connect
            .check()
            .map_err(|error| Failure::usage(crate::error_chain(&error), error.hint()))?;
        let connector = RealConnector { options: connect };
        let count = targets.len();
        let started = std::time::Instant::now();
        let surveyed = converge::survey(
            targets,
            &connector,
            options,
            usize::from(self.parallel),
            &show_progress,
        )
        .await;
        tracing::info!(
            servers = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "gathered facts"
        );
        Ok(surveyed)
    }
}
