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

pub mod fake;
mod local;
mod runner;
mod ssh;

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

/// How connecting to or talking with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing listens on the server's SSH port.
    #[error("connection to `{dialed}` refused")]
    Refused {
        /// The address dialled (`user@host:port`, as ssh was given it).
        dialed: String,
    },
    /// The server did not answer within the connect timeout.
    #[error("no answer from `{dialed}` in time")]
    Timeout {
        /// The address dialled.
        dialed: String,
    },
    /// The server's host key is not the one known_hosts has for it, or
    /// known_hosts has none.
    #[error("{}", if *.changed {
        format!("host key of `{dialed}` has CHANGED: someone may be intercepting the connection, or the server was reinstalled")
    } else {
        format!("host key of `{dialed}` is not known, and host keys are checked strictly")
    })]
    HostKey {
        /// The address dialled.
        dialed: String,
        /// Whether known_hosts has another key for this server (rather than none).
        changed: bool,
    },
    /// The server refused the login (no key it accepts, or too many tried).
    #[error("`{dialed}` refused the login")]
    Auth {
        /// The address dialled.
        dialed: String,
    },
    /// A file the connection needs is missing; found before dialling.
    #[error("cannot read the {what} `{}`", .path.display())]
    MissingFile {
        /// What the file is (`SSH key`, `known_hosts file`).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The script ran longer than its limit; it may go on on the server.
    #[error("the script did not finish within {}", crate::humantime(*.after))]
    ScriptTimeout {
        /// The limit it ran into.
        after: Duration,
        /// What it printed before the limit.
        partial: Output,
    },
    /// Any other failure of the connection, of ssh or of a script's
    /// framing; the message says which.
    #[error("{message}")]
    Other {
        /// What went wrong, one line.
        message: String,
    },
}

/// A failure to reach a server or to talk with it, as every path that
/// reaches servers reports it (plan, apply and the daemon through
/// `converge`; release, rollback, the deploy webhook and `env push`
/// through `app::AppError`; `releases`, `env pull`, `env diff`, `logs`
/// and `provision` per server): the error's own words, which name the
/// cause (a changed host key, a refused login, a refused or unanswered
/// connection) rather than "cannot reach", and the remedy a person can
/// apply, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// What happened, on one line: ``host key of `root@203.0.113.10:22`
    /// has CHANGED: …``.
    pub message: String,
    /// What to do about it, as the CLI prints it under an error.
    pub hint: Option<&'static str>,
}

/// One line: the message, then `; hint: ` and the hint when there is one,
/// for the places that have room for one line only (a server's line in a
/// listing, a status, a log).
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl TransportError {
    /// This failure as every path reports it (see `Cause`).
    pub fn cause(&self) -> Cause {
        Cause {
            message: crate::error_chain(self),
            hint: self.remedy(),
        }
    }

    /// What a person can do about this failure, if anything.
    fn remedy(&self) -> Option<&'static str> {
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
            TransportError::MissingFile { .. } => Some("check the path given on the command line"),
            TransportError::Refused { .. } | TransportError::Timeout { .. } => {
                Some("check that the server is up and its SSH port is reachable")
            }
            TransportError::ScriptTimeout { .. } | TransportError::Other { .. } => None,
        }
    }

    /// Whether trying again later may succeed (the server was unreachable),
    /// as opposed to a setup problem that only a person can fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Refused { .. }
                | TransportError::Timeout { .. }
                | TransportError::ScriptTimeout { .. }
                | TransportError::Other { .. }
        )
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        TransportError::Other {
            message: message.into(),
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

impl crate::Hint for TransportError {
    fn hint(&self) -> Option<&str> {
        self.remedy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hint as _;

    #[test]
    fn a_cause_is_the_errors_words_and_its_remedy_on_one_line() {
        let changed = TransportError::HostKey {
            dialed: "root@203.0.113.10:22".into(),
            changed: true,
        };
        let cause = changed.cause();
        assert_eq!(cause.message, changed.to_string());
        assert_eq!(cause.hint, changed.hint());
        assert!(cause.hint.is_some());
        let line = cause.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("host key of `root@203.0.113.10:22` has CHANGED"));
        assert!(line.ends_with("; hint: verify the new key with the server's operator; only then replace its line in known_hosts (`ssh-keygen -R HOST`)"));

        let other = TransportError::other("the connection was lost");
        assert_eq!(other.cause().to_string(), "the connection was lost");
    }

    #[test]
    fn a_server_that_cannot_be_reached_is_named_with_the_cause_alone() {
        let error = crate::app::AppError::Unreachable {
            server: ServerName::new("web-2"),
            error: TransportError::Auth {
                dialed: "deploy@203.0.113.11:22".into(),
            },
        };
        assert_eq!(
            crate::error_chain(&error),
            "web-2: `deploy@203.0.113.11:22` refused the login"
        );
        assert_eq!(
            error.hint(),
            Some("check the SSH user and key (ssh-agent, ~/.ssh/config or --ssh-key FILE)")
        );
    }
}
