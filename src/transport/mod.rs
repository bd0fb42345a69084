//! How reconciler reaches a server: run a script as root.
//!
//! Two real implementations, `ssh` (the `openssh` crate, one multiplexed
//! master connection per host, strict host key checking) and `local` for
//! servers whose address is `local`, and `fake`, which answers from
//! fixtures for offline tests of everything above. Everything above this
//! module talks to a `&dyn Transport` and never builds an ssh command line.
//!
//! Errors say what was dialled (`root@203.0.113.10:22`), never the server's
//! name: the caller already prints that.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::definitions::{Server, ServerName};

mod error;
pub mod fake;
mod local;
mod runner;
mod ssh;

pub use error::{Cause, TransportError};
pub use local::LocalTransport;
pub use ssh::SshTransport;

/// What a script reads on its file descriptor 3, in the same round trip
/// as the script: nothing, bytes, or a file streamed from disk (a release
/// archive is never held whole in memory).
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// fd 3 is empty.
    None,
    /// These bytes, held in memory (small inputs only).
    Bytes(&'a [u8]),
    /// This local file, streamed as it is read.
    File(&'a std::path::Path),
}

/// The most a script may print on stdout (its records) before reading it
/// stops with an error: whatever a server sends, reconciler never holds
/// more. Scripts bound what they send far below it.
pub const MAX_STDOUT: usize = 256 * 1024 * 1024;
/// The same for stderr, which carries commands' own output.
pub const MAX_STDERR: usize = 16 * 1024 * 1024;

/// What a script printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Output {
    /// The exit status; `None` when it was killed by a signal.
    pub status: Option<i32>,
    /// Everything the script wrote to stdout (its records, for scripts that
    /// report).
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// Whether the script exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stdout as text, invalid UTF-8 replaced by `U+FFFD`.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text, invalid UTF-8 replaced by `U+FFFD`.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
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
    /// How long ssh may take to connect (`ConnectTimeout`, whole seconds).
    pub connect_timeout: Duration,
    /// Keep each connection busy with an idle channel, so that it stays up
    /// between scripts however long the pause (for the daemon). Without
    /// it a connection unused for a few seconds closes and is opened again
    /// when needed, which suits a command that runs once.
    pub keep_warm: bool,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            known_hosts: None,
            accept_new_host_keys: false,
            identity: None,
            connect_timeout: Duration::from_secs(10),
            keep_warm: false,
        }
    }
}

impl ConnectOptions {
    /// Checks the files named here before any server is dialled, so that a
    /// mistyped `--ssh-key` does not read as "the login was refused".
    pub fn check(&self) -> Result<(), TransportError> {
        for (what, path) in [
            ("SSH key", &self.identity),
            ("known_hosts file", &self.known_hosts),
        ] {
            if let Some(path) = path
                && let Err(source) = std::fs::File::open(path)
            {
                return Err(TransportError::MissingFile {
                    what,
                    path: path.clone(),
                    source,
                });
            }
        }
        Ok(())
    }
}

/// A connection to one server.
#[async_trait]
pub trait Transport: Send + Sync + fmt::Debug {
    /// The server this transport reaches.
    fn server(&self) -> &ServerName;

    /// Runs `script` with bash as root (through `sudo -n` when the SSH user
    /// is not root) and returns its output, whatever its exit status. Gives
    /// up after `limit`, returning what the script printed so far.
    async fn run(&self, script: &str, limit: Duration) -> Result<Output, TransportError> {
        self.run_with(script, Input::None, limit).await
    }

    /// Like `run`, with `input` for the script to read on its file
    /// descriptor 3 (an upload, in the same round trip). Output past
    /// `MAX_STDOUT` or `MAX_STDERR` is an error.
    async fn run_with(
        &self,
        script: &str,
        input: Input<'_>,
        limit: Duration,
    ) -> Result<Output, TransportError>;

    /// Starts `script` and returns once it writes a `held` record
    /// (`remote::protocol`): it then
    /// holds something (a lock) until it reads the end of its file
    /// descriptor 3, which comes when the `Held` is released or dropped,
    /// or when this process or its connection dies. `limit` bounds the
    /// start only.
    async fn hold(&self, script: &str, limit: Duration) -> Result<Holding, TransportError>;
}

/// What a script started by `Transport::hold` did.
pub enum Holding {
    /// It printed `stdout` (records), then its `held` record, and waits.
    Held {
        /// What it printed before its `held` record.
        stdout: Vec<u8>,
        /// The script, still running, to let go of.
        guard: Box<dyn Held>,
    },
    /// It ended without holding anything.
    Ended(Output),
}

/// A script that holds something on a server until it is let go.
#[async_trait]
pub trait Held: Send + Sync {
    /// Lets the script go on (its fd 3 ends) and waits, at most `limit`,
    /// for it to end; returns what it printed after its `held` record.
    async fn release(self: Box<Self>, limit: Duration) -> Result<Output, TransportError>;
}

/// Opens transports to servers: the real one, or a fake for tests.
#[async_trait]
pub trait Connector: Send + Sync {
    /// A transport to `server`, connected.
    ///
    /// # Errors
    ///
    /// A `TransportError` when the server cannot be reached or refuses.
    async fn connect(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError>;
}

/// Connects over SSH, or directly when a server's address is `local`.
#[derive(Debug, Clone, Default)]
pub struct RealConnector {
    /// How to reach servers over SSH (unused for `local`).
    pub options: ConnectOptions,
}

#[async_trait]
impl Connector for RealConnector {
    async fn connect(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        if server.is_local() {
            Ok(Arc::new(LocalTransport::new(server).await?))
        } else {
            Ok(Arc::new(
                SshTransport::connect(server, &self.options).await?,
            ))
        }
    }
}

/// Connects to `server` with `options`.
pub async fn connect(
    server: &Server,
    options: &ConnectOptions,
) -> Result<Arc<dyn Transport>, TransportError> {
    RealConnector {
        options: options.clone(),
    }
    .connect(server)
    .await
}

/// Keeps one transport per server for a long-lived process, so that a
/// cycle with nothing to do costs one round trip per host. A transport
/// reconnects by itself when its connection broke; a server that cannot be
/// reached is not kept, and is dialled again next time.
pub struct CachedConnector {
    inner: RealConnector,
    cache: tokio::sync::Mutex<std::collections::HashMap<String, Arc<dyn Transport>>>,
}

impl CachedConnector {
    /// An empty cache that connects with `options`.
    pub fn new(options: ConnectOptions) -> Self {
        Self {
            inner: RealConnector { options },
            cache: tokio::sync::Mutex::new(Default::default()),
        }
    }
}

#[async_trait]
impl Connector for CachedConnector {
    async fn connect(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        // Keyed by what is dialled: a server that moved is dialled anew.
        let key = format!(
            "{}={}@{}:{}",
            server.name, server.user, server.address, server.port
        );
        if let Some(transport) = self.cache.lock().await.get(&key) {
            return Ok(Arc::clone(transport));
        }
        let transport = self.inner.connect(server).await?;
        self.cache.lock().await.insert(key, Arc::clone(&transport));
        Ok(transport)
    }
}
