//! The transport for a server whose address is `local`: the machine
//! reconciler itself runs on.
//!
//! Scripts run exactly as over SSH (same runner, same stdin protocol, see
//! `connect`), as child processes instead of remote ones, so that a
//! single-server setup needs no SSH daemon or key. Like the SSH transport it
//! runs scripts as root: directly when reconciler runs as root, through
//! `sudo -n` otherwise.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use tokio::process::Command;

use super::runner::{Exchanged, Started, exchange, finish_reading, runner_command, start_holding};
use super::{Held, Holding, Output, Transport, TransportError};
use crate::definitions::{Server, ServerName};

/// Runs scripts on this machine.
#[derive(Debug)]
pub struct LocalTransport {
    server: ServerName,
    as_root: bool,
}

impl LocalTransport {
    /// Finds out whether reconciler runs as root and, when not, checks that
    /// `sudo` works without a password.
    pub async fn new(server: &Server) -> Result<Self, TransportError> {
        let transport = Self {
            server: server.name.clone(),
            as_root: true,
        };
        let as_root = nix::unistd::Uid::effective().is_root();
        if !as_root {
            let sudo = transport.command_output("sudo", &["-n", "true"]).await?;
            if !sudo.status.success() {
                return Err(TransportError::other(format!(
                    "cannot run `sudo` without a password: {}",
                    String::from_utf8_lossy(&sudo.stderr).trim()
                )));
            }
        }
        Ok(Self {
            as_root,
            ..transport
        })
    }

    /// Starts the runner with its pipes.
    fn spawn(&self) -> Result<tokio::process::Child, TransportError> {
        let argv = runner_command(self.as_root);
        Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A caller that gives up on the script (a timeout) stops it too.
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| TransportError::other(format!("cannot run `{}`: {err}", argv[0])))
    }

    async fn command_output(
        &self,
        program: &str,
        args: &[&str],
    ) -> Result<std::process::Output, TransportError> {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|err| TransportError::other(format!("cannot run `{program}`: {err}")))
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn server(&self) -> &ServerName {
        &self.server
    }

    async fn run_with(
        &self,
        script: &str,
        input: super::Input<'_>,
        limit: Duration,
    ) -> Result<Output, TransportError> {
        let mut child = self.spawn()?;
        let (stdin, stdout_pipe, stderr_pipe) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let Exchanged {
            written,
            read,
            stdout,
            stderr,
        } = exchange(stdin, stdout_pipe, stderr_pipe, script, input, limit).await?;
        read.map_err(|err| {
            TransportError::other(format!("cannot read the script's output: {err}"))
        })?;
        let status = child
            .wait()
            .await
            .map_err(|err| TransportError::other(format!("cannot wait for `bash`: {err}")))?;
        if let Err(err) = written {
            // Only when the runner stopped reading early, and then it did not
            // run the script.
            return Err(TransportError::other(format!(
                "cannot send the script: {err}: {}",
                String::from_utf8_lossy(&stderr).trim()
            )));
        }
        // One line per round trip: `bench/noop-plan` counts them.
        tracing::debug!(
            server = %self.server,
            sent = script.len(),
            received = stdout.len(),
            status = ?status.code(),
            "script done"
        );
        Ok(Output {
            status: status.code(),
            stdout,
            stderr,
        })
    }

    async fn hold(&self, script: &str, limit: Duration) -> Result<Holding, TransportError> {
        let mut child = self.spawn()?;
        let (Some(mut stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(TransportError::other("the script's pipes are missing"));
        };
        let mut stdout = tokio::io::BufReader::new(stdout);
        match start_holding(&mut stdin, &mut stdout, script, limit).await? {
            Started::Held(printed) => Ok(Holding::Held {
                stdout: printed,
                guard: Box::new(LocalHeld {
                    child,
                    stdin: Some(stdin),
                    stdout,
                    stderr,
                }),
            }),
            Started::Ended(printed) => {
                drop(stdin);
                let (rest, stderr) = finish_reading(&mut stdout, &mut stderr, limit).await?;
                let status = child.wait().await.map_err(|err| {
                    TransportError::other(format!("cannot wait for `bash`: {err}"))
                })?;
                Ok(Holding::Ended(Output {
                    status: status.code(),
                    stdout: [printed, rest].concat(),
                    stderr,
                }))
            }
        }
    }
}

/// A script holding something on this machine.
struct LocalHeld {
    child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    stdout: tokio::io::BufReader<tokio::process::ChildStdout>,
    stderr: tokio::process::ChildStderr,
}

#[async_trait]
impl Held for LocalHeld {
    async fn release(mut self: Box<Self>, limit: Duration) -> Result<Output, TransportError> {
        drop(self.stdin.take());
        let (stdout, stderr) = finish_reading(&mut self.stdout, &mut self.stderr, limit).await?;
        let status = self
            .child
            .wait()
            .await
            .map_err(|err| TransportError::other(format!("cannot wait for `bash`: {err}")))?;
        Ok(Output {
            status: status.code(),
            stdout,
            stderr,
        })
    }
}
