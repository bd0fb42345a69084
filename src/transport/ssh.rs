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

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use openssh::{KnownHosts, Session, SessionBuilder, Stdio};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::Semaphore;

use super::connect::{runner_command, send};
use super::{ConnectOptions, Output, Transport, TransportError};
use crate::definitions::{Server, ServerName};

/// Scripts run at once over one connection: sshd refuses more than
/// `MaxSessions` (10 by default) channels per connection.
const MAX_CHANNELS: usize = 8;

/// How often a session sshd refused (see `run`) is asked for again.
const SESSION_RETRIES: u64 = 5;

/// How often the master checks that the server still answers; after three
/// unanswered checks it gives up, and so does every `run` using it.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// A master SSH connection to one server; closed when dropped.
#[derive(Debug)]
pub struct SshTransport {
    server: ServerName,
    session: Session,
    as_root: bool,
    channels: Semaphore,
}

impl SshTransport {
    /// Connects to `server` and, for a user other than root, checks that it
    /// may use sudo without a password.
    pub async fn connect(
        server: &Server,
        options: &ConnectOptions,
    ) -> Result<Self, TransportError> {
        let name = server.name.clone();
        if server.address.starts_with('-') || server.address.is_empty() {
            // ssh would read it as an option; validation refuses it already.
            return Err(TransportError::Other {
                server: name,
                message: format!("`{}` is not a host name or an IP address", server.address),
            });
        }
        let started = Instant::now();
        let builder = session_builder(server, options);
        // ConnectTimeout covers the TCP connection and the banner; this also
        // bounds a server that hangs later, in key exchange or authentication.
        let limit = options.connect_timeout * 2 + Duration::from_secs(5);
        let session = match tokio::time::timeout(limit, builder.connect_mux(&server.address)).await
        {
            Ok(Ok(session)) => session,
            Ok(Err(err)) => return Err(connect_error(&name, err)),
            Err(_) => return Err(TransportError::Timeout { server: name }),
        };
        let transport = Self {
            server: name,
            session,
            as_root: server.user == "root",
            channels: Semaphore::new(MAX_CHANNELS),
        };
        if !transport.as_root {
            transport.check_sudo(&server.user).await?;
        }
        tracing::debug!(
            server = %transport.server,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connected over ssh"
        );
        Ok(transport)
    }

    /// Closes the master connection, reporting what went wrong if anything did.
    pub async fn close(self) -> Result<(), TransportError> {
        let server = self.server;
        self.session
            .close()
            .await
            .map_err(|err| TransportError::Other {
                server,
                message: format!("cannot close the connection: {}", crate::error_chain(&err)),
            })
    }

    async fn check_sudo(&self, user: &str) -> Result<(), TransportError> {
        let output = self
            .session
            .command("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .await;
        let output = match output {
            Ok(output) => output,
            Err(err) => return Err(self.lost_or(err, "cannot check `sudo`").await),
        };
        if output.status.success() {
            Ok(())
        } else {
            Err(self.other(format!(
                "user `{user}` cannot run `sudo` without a password: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    fn other(&self, message: String) -> TransportError {
        TransportError::Other {
            server: self.server.clone(),
            message,
        }
    }

    /// Whether the master connection is still up; why it ended when not.
    async fn check_master(&self) -> Result<(), TransportError> {
        match self.session.check().await {
            Ok(()) => Ok(()),
            Err(err) => Err(self.lost(&err)),
        }
    }

    /// Why the connection ended when the master is gone, else `err` itself.
    async fn lost_or(&self, err: openssh::Error, what: &str) -> TransportError {
        match self.check_master().await {
            Err(lost) => lost,
            Ok(()) => self.other(format!("{what}: {}", crate::error_chain(&err))),
        }
    }

    /// Why the master connection ended, from its log (ssh's stderr).
    fn lost(&self, err: &openssh::Error) -> TransportError {
        let log = self.session.control_socket().with_file_name("log");
        let text = ssh_message(&std::fs::read_to_string(log).unwrap_or_default());
        known_failure(&self.server, &text).unwrap_or_else(|| {
            self.other(match err {
                _ if !text.is_empty() => format!("the connection was lost: {text}"),
                openssh::Error::Disconnected => "the connection was lost".into(),
                _ => format!("the connection was lost: {}", crate::error_chain(err)),
            })
        })
    }
}

#[async_trait]
impl Transport for SshTransport {
    fn server(&self) -> &ServerName {
        &self.server
    }

    async fn run(&self, script: &str) -> Result<Output, TransportError> {
        let _channel = self
            .channels
            .acquire()
            .await
            .map_err(|_| self.other("the connection is closed".into()))?;
        let argv = runner_command(self.as_root);
        let mut attempt = 0;
        let mut child = loop {
            let child = self
                .session
                .command(&argv[0])
                .args(&argv[1..])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .await;
            match child {
                Ok(child) => break child,
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
                Err(err) => return Err(self.lost_or(err, "cannot start the script").await),
            }
        };

        let stdin = child.stdin().take();
        let input = send(script);
        let write = async move {
            match stdin {
                Some(mut stdin) => stdin.write_all(&input).await,
                None => Ok(()),
            }
            // Dropping stdin here ends the script for the remote side.
        };
        let (written, stdout, stderr) = tokio::join!(
            write,
            read_all(child.stdout().take()),
            read_all(child.stderr().take())
        );
        let (stdout, stderr) = match (stdout, stderr) {
            (Ok(stdout), Ok(stderr)) => (stdout, stderr),
            (Err(err), _) | (_, Err(err)) => {
                self.check_master().await?;
                return Err(self.other(format!("cannot read the script's output: {err}")));
            }
        };

        let status = match child.wait().await {
            Ok(status) => status.code(),
            // `openssh` turns exit status 127 into an error of its own.
            Err(openssh::Error::Remote(err)) if err.kind() == io::ErrorKind::NotFound => Some(127),
            // No exit status: killed by a signal, or the connection is gone.
            Err(openssh::Error::RemoteProcessTerminated) => {
                self.check_master().await?;
                None
            }
            Err(err) => return Err(self.lost_or(err, "the script did not finish").await),
        };
        if let Err(err) = written {
            // The remote side stopped reading early; the runner then did not
            // run the script.
            return Err(self.other(format!(
                "cannot send the script: {err}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        // One line per round trip: `bench/noop-plan` counts them.
        tracing::debug!(
            server = %self.server,
            sent = script.len(),
            received = stdout.len(),
            status = ?status,
            "script done"
        );
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(mut stream) = stream {
        stream.read_to_end(&mut bytes).await?;
    }
    Ok(bytes)
}

fn session_builder(server: &Server, options: &ConnectOptions) -> SessionBuilder {
    let mut builder = SessionBuilder::default();
    builder
        .user(server.user.clone())
        .port(server.port)
        .known_hosts_check(if options.accept_new_host_keys {
            KnownHosts::Add
        } else {
            KnownHosts::Strict
        })
        .connect_timeout(whole_seconds(options.connect_timeout))
        .server_alive_interval(SERVER_ALIVE_INTERVAL)
        .control_directory(control_directory());
    if let Some(known_hosts) = &options.known_hosts {
        builder.user_known_hosts_file(known_hosts);
    }
    if let Some(identity) = &options.identity {
        builder.keyfile(identity);
    }
    builder
}

/// `ssh` takes whole seconds, and 0 would mean no timeout at all: round up.
fn whole_seconds(duration: Duration) -> Duration {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// The longest control directory path: a Unix socket path holds at most 104
/// bytes on macOS (108 on Linux), and ssh binds
/// `<dir>/.ssh-connectionXXXXXX/master.<16 random characters>`.
const MAX_CONTROL_DIRECTORY: usize = 103 - "/.ssh-connectionXXXXXX/master.XXXXXXXXXXXXXXXX".len();

/// Where `openssh` makes the fresh private (0700) directory holding the
/// master's control socket: the first of $XDG_RUNTIME_DIR and the temp dir
/// whose path is short enough, else /tmp.
fn control_directory() -> PathBuf {
    let fits = |dir: &Path| {
        dir.is_absolute() && dir.as_os_str().len() <= MAX_CONTROL_DIRECTORY && dir.is_dir()
    };
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([std::env::temp_dir()])
        .find(|dir| fits(dir))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

fn connect_error(server: &ServerName, err: openssh::Error) -> TransportError {
    let other = |message| TransportError::Other {
        server: server.clone(),
        message,
    };
    match &err {
        // The log of an ssh that ran and failed; when ssh could not start at
        // all, an OS error instead.
        openssh::Error::Connect(io) if io.raw_os_error().is_none() => {
            classify(server, &io.to_string())
        }
        openssh::Error::Connect(io) => other(format!("cannot run `ssh`: {io}")),
        _ => other(format!("cannot connect: {}", crate::error_chain(&err))),
    }
}

/// What went wrong, from what ssh printed.
fn classify(server: &ServerName, ssh_stderr: &str) -> TransportError {
    let text = ssh_message(ssh_stderr);
    known_failure(server, &text).unwrap_or_else(|| TransportError::Other {
        server: server.clone(),
        message: if text.is_empty() {
            "`ssh` failed without saying why".into()
        } else {
            text
        },
    })
}

/// What ssh printed, without carriage returns, `ssh: ` prefixes and notes
/// about keys it just recorded.
fn ssh_message(ssh_stderr: &str) -> String {
    ssh_stderr
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.starts_with("Warning: Permanently added "))
        .map(|line| line.strip_prefix("ssh: ").unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

/// The failures that have a variant of their own.
fn known_failure(server: &ServerName, text: &str) -> Option<TransportError> {
    let server = server.clone();
    let changed = text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED");
    if changed
        || text.contains("Host key verification failed")
        || (text.contains("No ") && text.contains(" host key is known for "))
    {
        Some(TransportError::HostKey { server, changed })
    } else if text.contains("Connection refused") {
        Some(TransportError::Refused { server })
    } else if text.contains("Permission denied (")
        || text.contains("Too many authentication failures")
    {
        Some(TransportError::Auth { server })
    } else if text.contains("timed out") || text.contains("not responding") {
        Some(TransportError::Timeout { server })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name() -> ServerName {
        ServerName::new("web-1")
    }

    // What OpenSSH 9.2 wrote to the master's log in each case.

    #[test]
    fn unknown_host_key_is_a_host_key_error() {
        let stderr = "No ED25519 host key is known for [127.0.0.1]:26579 and you have requested strict checking.\r\n\
                      Host key verification failed.\r\n";
        assert!(matches!(
            classify(&name(), stderr),
            TransportError::HostKey { changed: false, .. }
        ));
    }

    #[test]
    fn changed_host_key_is_a_host_key_error() {
        let stderr = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\r\n\
            @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\r\n\
            IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\r\n\
            Someone could be eavesdropping on you right now (man-in-the-middle attack)!\r\n\
            It is also possible that a host key has just been changed.\r\n\
            The fingerprint for the ED25519 key sent by the remote host is\n\
            SHA256:eZY9Bng4Pz2hfFdiK7ixDjGTSaCs6mnF9n4w9uxWiik.\r\n\
            Please contact your system administrator.\r\n\
            Add correct host key in /tmp/known_hosts to get rid of this message.\r\n\
            Offending ED25519 key in /tmp/known_hosts:1\r\n\
            \x20 remove with:\r\n\
            \x20 ssh-keygen -f \"/tmp/known_hosts\" -R \"[127.0.0.1]:26579\"\r\n\
            Host key for [127.0.0.1]:26579 has changed and you have requested strict checking.\r\n\
            Host key verification failed.\r\n";
        assert!(matches!(
            classify(&name(), stderr),
            TransportError::HostKey { changed: true, .. }
        ));
    }

    #[test]
    fn refused_connection() {
        let stderr = "ssh: connect to host 127.0.0.1 port 40123: Connection refused\r\n";
        assert!(matches!(
            classify(&name(), stderr),
            TransportError::Refused { .. }
        ));
    }

    #[test]
    fn rejected_key_is_an_auth_error() {
        let stderr = "root@127.0.0.1: Permission denied (publickey).\r\n";
        assert!(matches!(
            classify(&name(), stderr),
            TransportError::Auth { .. }
        ));
    }

    #[test]
    fn timeouts() {
        for stderr in [
            "ssh: connect to host 10.255.255.1 port 22: Connection timed out\r\n",
            "Connection timed out during banner exchange\r\nConnection to 127.0.0.1 port 40123 timed out\r\n",
            "Timeout, server 127.0.0.1 not responding.\r\n",
        ] {
            let err = classify(&name(), stderr);
            assert!(matches!(err, TransportError::Timeout { .. }), "{stderr}");
        }
    }

    #[test]
    fn anything_else_keeps_what_ssh_said() {
        let stderr = "Warning: Permanently added '[127.0.0.1]:2222' (ED25519) to the list of known hosts.\r\n\
                      ssh: Could not resolve hostname nowhere.invalid: Name or service not known\r\n";
        match classify(&name(), stderr) {
            TransportError::Other { server, message } => {
                assert_eq!(server, name());
                assert_eq!(
                    message,
                    "Could not resolve hostname nowhere.invalid: Name or service not known"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        let err = classify(&name(), "\r\n");
        assert_eq!(err.to_string(), "`web-1`: `ssh` failed without saying why");
    }

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            whole_seconds(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn control_socket_path_fits_in_sun_path() {
        assert!(control_directory().as_os_str().len() <= MAX_CONTROL_DIRECTORY);
    }
}
