//! The transport for a server whose address is `local`: the machine
//! reconciler itself runs on.
//!
//! Scripts run exactly as over SSH (same runner, same stdin protocol, see
//! `connect`), as child processes instead of remote ones, so that a
//! single-server setup needs no SSH daemon or key. Like the SSH transport it
//! runs scripts as root: directly when reconciler runs as root, through
//! `sudo -n` otherwise.

use std::io;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::connect::{runner_command, send};
use super::{Output, Transport, TransportError};
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
        // `id -u` rather than a libc call: no unsafe code, no extra crate.
        let id = transport.command_output("id", &["-u"]).await?;
        let as_root = String::from_utf8_lossy(&id.stdout).trim() == "0";
        if !as_root {
            let sudo = transport.command_output("sudo", &["-n", "true"]).await?;
            if !sudo.status.success() {
                return Err(transport.other(format!(
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
            .map_err(|err| self.other(format!("cannot run `{program}`: {err}")))
    }

    fn other(&self, message: String) -> TransportError {
        TransportError::Other {
            server: self.server.clone(),
            message,
        }
    }
}

#[async_trait]
impl Transport for LocalTransport {
    fn server(&self) -> &ServerName {
        &self.server
    }

    async fn run(&self, script: &str) -> Result<Output, TransportError> {
        let argv = runner_command(self.as_root);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A caller that gives up on the script (a timeout) stops it too.
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| self.other(format!("cannot run `{}`: {err}", argv[0])))?;
        let stdin = child.stdin.take();
        let input = send(script);
        let write = async move {
            match stdin {
                Some(mut stdin) => stdin.write_all(&input).await,
                None => Ok::<(), io::Error>(()),
            }
        };
        let (written, output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(|err| self.other(format!("cannot wait for `bash`: {err}")))?;
        if let Err(err) = written {
            // Only when the runner stopped reading early, and then it did not
            // run the script.
            return Err(self.other(format!(
                "cannot send the script: {err}: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        // One line per round trip: `bench/noop-plan` counts them.
        tracing::debug!(
            server = %self.server,
            sent = script.len(),
            received = output.stdout.len(),
            status = ?output.status.code(),
            "script done"
        );
        Ok(Output {
            status: output.status.code(),
            stdout: output.stdout,
            stderr: output.stderr,
        })
    }
}
