//! How reconciler reaches a server: run a script as root and write files.
//!
//! Two implementations: `ssh` (the `openssh` crate, one multiplexed master
//! connection per host, strict host key checking) and `local` for servers
//! whose address is `local`. Everything above this module talks to a
//! `&dyn Transport` and never builds an ssh command line itself.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::definitions::{Server, ServerName};
use crate::shell::quote;

mod connect;
mod local;
mod ssh;

pub use local::LocalTransport;
pub use ssh::SshTransport;

/// Connects to `server`: directly when its address is `local`, otherwise over
/// SSH with one master connection kept open until the transport is dropped.
pub async fn connect(
    server: &Server,
    options: &ConnectOptions,
) -> Result<Box<dyn Transport>, TransportError> {
    if server.is_local() {
        Ok(Box::new(LocalTransport::new(server).await?))
    } else {
        Ok(Box::new(SshTransport::connect(server, options).await?))
    }
}

/// What a script printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when it was killed by a signal.
    pub status: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// How connecting to or talking with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("`{server}`: connection refused")]
    Refused { server: ServerName },
    #[error("`{server}`: connection timed out")]
    Timeout { server: ServerName },
    #[error("`{server}`: {}", if *.changed {
        "host key has CHANGED: someone may be intercepting the connection, or the server was reinstalled"
    } else {
        "host key is not known, and host keys are checked strictly"
    })]
    HostKey {
        server: ServerName,
        /// Whether known_hosts has another key for this server (rather than none).
        changed: bool,
    },
    #[error("`{server}`: authentication failed")]
    Auth { server: ServerName },
    #[error("`{server}`: {message}")]
    Other { server: ServerName, message: String },
}

impl TransportError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            TransportError::HostKey { changed: false, .. } => Some(
                "add the server's key to known_hosts (or pass --known-hosts FILE); \
                 --accept-new-host-keys trusts keys of servers never seen before",
            ),
            TransportError::HostKey { changed: true, .. } => Some(
                "verify the new key with the server's operator; only then replace its line in \
                 known_hosts (`ssh-keygen -R HOST`)",
            ),
            TransportError::Auth { .. } => {
                Some("check the SSH user and key (ssh-agent, ~/.ssh/config or --ssh-key FILE)")
            }
            _ => None,
        }
    }
}

/// How to connect to servers; from the command line.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// known_hosts file to check host keys against instead of the user's.
    pub known_hosts: Option<PathBuf>,
    /// Trust and record the keys of hosts not in known_hosts yet (never a changed key).
    pub accept_new_host_keys: bool,
    /// Private key to authenticate with instead of ssh's defaults.
    pub identity: Option<PathBuf>,
    pub connect_timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            known_hosts: None,
            accept_new_host_keys: false,
            identity: None,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection to one server.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The server this transport reaches.
    fn server(&self) -> &ServerName;

    /// Runs `script` with bash as root (through `sudo -n` when the SSH user
    /// is not root) and returns its output, whatever its exit status.
    async fn run(&self, script: &str) -> Result<Output, TransportError>;

    /// Writes `content` to `path` atomically (a temporary file in the same
    /// directory, then a rename) with the given owner, group and mode.
    async fn upload(
        &self,
        path: &str,
        content: &[u8],
        owner: &str,
        group: &str,
        mode: u32,
    ) -> Result<(), TransportError> {
        let script = upload_script(path, content, owner, group, mode);
        let output = self.run(&script).await?;
        if output.success() {
            Ok(())
        } else {
            Err(TransportError::Other {
                server: self.server().clone(),
                message: format!("cannot write `{path}`: {}", output.stderr_text().trim()),
            })
        }
    }
}

/// A script that writes one file atomically; its content travels base64
/// encoded inside a quoted here-document, so no byte of it is shell syntax.
pub fn upload_script(path: &str, content: &[u8], owner: &str, group: &str, mode: u32) -> String {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    let path = quote(path);
    format!(
        "set -eu\n\
         target={path}\n\
         tmp=$(mktemp \"$(dirname \"$target\")/.reconciler.XXXXXX\")\n\
         trap 'rm -f \"$tmp\"' EXIT\n\
         base64 -d > \"$tmp\" <<'RECONCILER_EOF'\n{encoded}\nRECONCILER_EOF\n\
         chown {owner}:{group} \"$tmp\"\n\
         chmod {mode:o} \"$tmp\"\n\
         mv -f \"$tmp\" \"$target\"\n\
         trap - EXIT\n",
        owner = quote(owner),
        group = quote(group),
    )
}
