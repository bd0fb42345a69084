//! The SSH transport: one multiplexed OpenSSH master connection per server.
//!
//! It drives the system `ssh` through the `openssh` crate rather than an SSH
//! library, so that what operators already rely on keeps working: their
//! `~/.ssh/config`, ssh-agent, jump hosts and known_hosts files. `connect`
//! starts the master (key exchange and authentication happen once); every
//! `run` then opens a channel by talking to the master's control socket
//! directly (`openssh`'s native mux), without starting an `ssh` client per
//! run, which halves the cost of a short script.
//!
//! Host keys are checked strictly; `--accept-new-host-keys` may record keys
//! of servers never seen before, but nothing here may ever accept a changed
//! key (`StrictHostKeyChecking=no`).
//!
//! The master must not outlive reconciler: dropping the transport shuts it
//! down, and for a reconciler killed with SIGKILL (no destructors run) the
//! master exits by itself `MASTER_IDLE` after its last client left. For
//! the daemon (`keep_warm`), one idle channel keeps the master from ever
//! being idle while the transport lives, so connections stay warm between
//! cycles. A master that is gone (idle, the server rebooted, the network
//! dropped) is started again before the next script; a script already
//! running is never resent.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openssh::{Child, Session, Stdio};
use tokio::sync::{Mutex, Semaphore};

mod failure;
mod held;
mod options;

use super::runner::{Exchanged, Started, exchange, runner_command, start_holding};
use super::{ConnectOptions, Holding, Output, Transport, TransportError};
use crate::definitions::{Server, ServerName};
use failure::{connect_error, known_failure, ssh_message};
use held::SshHeld;
use options::{control_directory, session_builder, sweep_stale_control_directories};

/// Scripts run at once over one connection: sshd refuses more than
/// `MaxSessions` (10 by default) channels per connection, and one is the
/// keep-alive channel.
const MAX_CHANNELS: usize = 7;

/// How often a session sshd refused (see `run`) is asked for again.
const SESSION_RETRIES: u64 = 5;

/// How often the master checks that the server still answers; after three
/// unanswered checks it gives up, and so does every `run` using it.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How long a master without clients stays up: bounds how long it outlives
/// a reconciler killed with SIGKILL.
const MASTER_IDLE: u64 = 10;

/// A live master connection and the channel that keeps it busy.
struct Master {
    session: Arc<Session>,
    _keepalive: Option<Child<Arc<Session>>>,
}

/// A master SSH connection to one server; closed when dropped.
pub struct SshTransport {
    server: Server,
    options: ConnectOptions,
    dialed: String,
    master: Mutex<Option<Master>>,
    as_root: bool,
    channels: Arc<Semaphore>,
}

impl std::fmt::Debug for SshTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshTransport")
            .field("dialed", &self.dialed)
            .finish_non_exhaustive()
    }
}

impl SshTransport {
    /// Connects to `server` and, for a user other than root, checks that it
    /// may use sudo without a password.
    pub async fn connect(
        server: &Server,
        options: &ConnectOptions,
    ) -> Result<Self, TransportError> {
        let dialed = format!("{}@{}:{}", server.user, server.address, server.port);
        if server.address.starts_with('-') || server.address.is_empty() {
            // ssh would read it as an option; validation refuses it already.
            return Err(TransportError::other(format!(
                "`{}` is not a host name or an IP address",
                server.address
            )));
        }
        let transport = Self {
            server: server.clone(),
            options: options.clone(),
            dialed,
            master: Mutex::new(None),
            as_root: server.user == "root",
            channels: Arc::new(Semaphore::new(MAX_CHANNELS)),
        };
        transport.session().await?;
        if !transport.as_root {
            transport.check_sudo().await?;
        }
        Ok(transport)
    }

    /// What was dialled: `user@address:port`.
    pub fn dialed(&self) -> &str {
        &self.dialed
    }

    /// Closes the master connection, reporting what went wrong if anything did.
    pub async fn close(self) -> Result<(), TransportError> {
        let Some(master) = self.master.into_inner() else {
            return Ok(());
        };
        drop(master._keepalive);
        match Arc::try_unwrap(master.session) {
            Ok(session) => session.close().await.map_err(|err| {
                TransportError::other(format!(
                    "cannot close the connection: {}",
                    crate::error_chain(&err)
                ))
            }),
            Err(_) => Ok(()),
        }
    }

    /// The live master, started first when there is none.
    async fn session(&self) -> Result<Arc<Session>, TransportError> {
        let mut master = self.master.lock().await;
        if let Some(live) = master.as_ref() {
            return Ok(live.session.clone());
        }
        let started = Instant::now();
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| sweep_stale_control_directories(&control_directory()));
        let builder = session_builder(&self.server, &self.options);
        // ConnectTimeout covers the TCP connection and the banner; this also
        // bounds a server that hangs later, in key exchange or authentication.
        let limit = self.options.connect_timeout.saturating_mul(2) + Duration::from_secs(5);
        let session =
            match tokio::time::timeout(limit, builder.connect_mux(&self.server.address)).await {
                Ok(Ok(session)) => Arc::new(session),
                Ok(Err(err)) => return Err(connect_error(&self.dialed, err)),
                Err(_) => {
                    return Err(TransportError::Timeout {
                        dialed: self.dialed.clone(),
                    });
                }
            };
        let keepalive = if self.options.keep_warm {
            Session::to_command(session.clone(), "cat")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .await
                .ok()
        } else {
            None
        };
        tracing::debug!(
            dialed = %self.dialed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connected over ssh"
        );
        *master = Some(Master {
            session: session.clone(),
            _keepalive: keepalive,
        });
        Ok(session)
    }

    /// Forgets a master that is gone, so the next script starts a new one.
    async fn forget(&self, dead: &Arc<Session>) {
        let mut master = self.master.lock().await;
        if master
            .as_ref()
            .is_some_and(|m| Arc::ptr_eq(&m.session, dead))
        {
            *master = None;
        }
    }

    async fn check_sudo(&self) -> Result<(), TransportError> {
        let session = self.session().await?;
        let output = session
            .command("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) => return Err(self.lost_or(&session, err, "cannot check `sudo`").await),
        };
        if output.status.success() {
            Ok(())
        } else {
            Err(TransportError::other(format!(
                "user `{}` cannot run `sudo` without a password: {}",
                self.server.user,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Why the connection ended when the master is gone, else `err` itself.
    async fn lost_or(
        &self,
        session: &Arc<Session>,
        err: openssh::Error,
        what: &str,
    ) -> TransportError {
        match session.check().await {
            Err(_) => {
                self.forget(session).await;
                self.lost(session, &err)
            }
            Ok(()) => TransportError::other(format!("{what}: {}", crate::error_chain(&err))),
        }
    }

    /// Why the master connection ended, from its log (ssh's stderr).
    fn lost(&self, session: &Session, err: &openssh::Error) -> TransportError {
        let log = session.control_socket().with_file_name("log");
        let text = ssh_message(&std::fs::read_to_string(log).unwrap_or_default());
        known_failure(&self.dialed, &text).unwrap_or_else(|| {
            TransportError::other(match err {
                _ if !text.is_empty() => format!("the connection was lost: {text}"),
                openssh::Error::Disconnected => "the connection was lost".into(),
                _ => format!("the connection was lost: {}", crate::error_chain(err)),
            })
        })
    }

    /// Starts the runner on a channel; starts a new master once when the
    /// old one is gone (nothing ran yet, so that is safe).
    async fn spawn(&self) -> Result<(Arc<Session>, Child<Arc<Session>>), TransportError> {
        let argv = runner_command(self.as_root);
        let mut reconnected = false;
        let mut attempt = 0;
        loop {
            let session = self.session().await?;
            let child = Session::to_command(session.clone(), argv[0].as_str())
                .args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await;
            match child {
                Ok(child) => return Ok((session, child)),
                // sshd counts a finished session until it has torn its
                // channel down, so it may refuse a new one for a moment
                // even below MaxSessions. Nothing ran: try again.
                Err(err)
                    if attempt < SESSION_RETRIES
                        && crate::error_chain(&err).contains("Session open refused") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                Err(err) => {
                    if !reconnected && session.check().await.is_err() {
                        tracing::debug!(dialed = %self.dialed, "master gone; connecting again");
                        self.forget(&session).await;
                        reconnected = true;
                        continue;
                    }
                    return Err(self.lost_or(&session, err, "cannot start the script").await);
                }
            }
        }
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn server(&self) -> &ServerName {
        &self.server.name
    }

    async fn run_with(
        &self,
        script: &str,
        input: super::Input<'_>,
        limit: Duration,
    ) -> Result<Output, TransportError> {
        let started = Instant::now();
        let _channel = self
            .channels
            .acquire()
            .await
            .map_err(|_| TransportError::other("the connection is closed"))?;
        let (session, mut child) = self.spawn().await?;

        let stdin = child.stdin().take();
        let (stdout_pipe, stderr_pipe) = (child.stdout().take(), child.stderr().take());
        let Exchanged {
            written,
            read,
            stdout,
            stderr,
        } = exchange(stdin, stdout_pipe, stderr_pipe, script, input, limit).await?;
        if let Err(err) = read {
            if session.check().await.is_err() {
                self.forget(&session).await;
                return Err(self.lost(&session, &openssh::Error::Disconnected));
            }
            return Err(TransportError::other(format!(
                "cannot read the script's output: {err}"
            )));
        }

        let status = match child.wait().await {
            Ok(status) => status.code(),
            // `openssh` turns exit status 127 into an error of its own.
            Err(openssh::Error::Remote(err)) if err.kind() == io::ErrorKind::NotFound => Some(127),
            // No exit status: killed by a signal, or the connection is gone.
            Err(openssh::Error::RemoteProcessTerminated) => {
                if session.check().await.is_err() {
                    self.forget(&session).await;
                    return Err(self.lost(&session, &openssh::Error::Disconnected));
                }
                None
            }
            Err(err) => {
                return Err(self
                    .lost_or(&session, err, "the script did not finish")
                    .await);
            }
        };
        if let Err(err) = written {
            // The remote side stopped reading early; the runner then did not
            // run the script.
            return Err(TransportError::other(format!(
                "cannot send the script: {err}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        // One line per round trip: `bench/noop-plan` counts them.
        tracing::debug!(
            server = %self.server.name,
            sent = script.len(),
            received = stdout.len(),
            status = ?status,
            took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "script done"
        );
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    async fn hold(&self, script: &str, limit: Duration) -> Result<Holding, TransportError> {
        // The held script keeps its channel until it is let go.
        let channel = Arc::clone(&self.channels)
            .acquire_owned()
            .await
            .map_err(|_| TransportError::other("the connection is closed"))?;
        let (session, mut child) = self.spawn().await?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) = (
            child.stdin().take(),
            child.stdout().take(),
            child.stderr().take(),
        ) else {
            return Err(TransportError::other("the script's pipes are missing"));
        };
        let mut stdout = tokio::io::BufReader::new(stdout);
        let started = match start_holding(&mut stdin, &mut stdout, script, limit).await {
            Ok(started) => started,
            Err(err) => {
                if session.check().await.is_err() {
                    self.forget(&session).await;
                    return Err(self.lost(&session, &openssh::Error::Disconnected));
                }
                return Err(err);
            }
        };
        let mut held = SshHeld {
            session,
            child: Some(child),
            stdin: Some(stdin),
            stdout,
            stderr,
            _channel: channel,
        };
        match started {
            Started::Held(printed) => Ok(Holding::Held {
                stdout: printed,
                guard: Box::new(held),
            }),
            Started::Ended(printed) => {
                let mut output = held.finish(limit).await?;
                output.stdout = [printed, output.stdout].concat();
                Ok(Holding::Ended(output))
            }
        }
    }
}
