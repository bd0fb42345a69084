//! Arguments shared by the commands that reach servers: which servers and
//! apps, how to connect, how many at once.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use crate::converge::{self, Selection, Survey};
use crate::definitions::{AppName, Definitions, ServerName};
use crate::transport::ConnectOptions;
use crate::units::Templates;

use super::DefinitionsDir;

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
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub parallel: usize,
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
    /// Seconds to wait for a server to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub connect_timeout: u64,
}

impl SshArgs {
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions {
            known_hosts: self.known_hosts.clone(),
            accept_new_host_keys: self.accept_new_host_keys,
            identity: self.ssh_key.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout),
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
    /// Loads the definitions, checks the selection, then surveys the
    /// servers. `None` when the definitions are invalid (already reported).
    pub async fn survey(&self) -> anyhow::Result<Option<(Definitions, Survey)>> {
        let Some(definitions) = super::validate::load(&self.definitions)? else {
            return Ok(None);
        };
        let templates = Templates::load(&definitions.root)?;
        let selection = Selection {
            servers: self.servers.iter().map(ServerName::new).collect(),
            apps: self.apps.iter().map(AppName::new).collect(),
        };
        let (hosts, scope) = converge::select(&definitions, &templates, &selection)
            .context("cannot select servers")?;
        let count = hosts.len();
        let survey = converge::survey(
            hosts,
            scope,
            &self.ssh.options(),
            self.parallel,
            &show_progress,
        )
        .await;
        tracing::info!(
            servers = count,
            elapsed_ms = survey.elapsed.as_millis() as u64,
            "gathered facts"
        );
        Ok(Some((definitions, survey)))
    }
}
