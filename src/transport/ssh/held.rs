//! A script that holds something on a server (a lock) over SSH, for as
//! long as its channel stays open.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use openssh::{Child, Session};

use crate::transport::runner::finish_reading;
use crate::transport::{Held, Output, TransportError};

/// A script holding something on a server over SSH, with its channel.
pub(super) struct SshHeld {
    pub(super) session: Arc<Session>,
    pub(super) child: Option<Child<Arc<Session>>>,
    pub(super) stdin: Option<openssh::ChildStdin>,
    pub(super) stdout: tokio::io::BufReader<openssh::ChildStdout>,
    pub(super) stderr: openssh::ChildStderr,
    pub(super) _channel: tokio::sync::OwnedSemaphorePermit,
}

impl SshHeld {
    /// Ends fd 3 and reads what the script prints until it ends.
    pub(super) async fn finish(&mut self, limit: Duration) -> Result<Output, TransportError> {
        drop(self.stdin.take());
        let (stdout, stderr) = finish_reading(&mut self.stdout, &mut self.stderr, limit).await?;
        let status = match self.child.take() {
            Some(child) => match child.wait().await {
                Ok(status) => status.code(),
                Err(_) if self.session.check().await.is_err() => {
                    return Err(TransportError::other(
                        "the connection was lost while the script held the server",
                    ));
                }
                Err(_) => None,
            },
            None => None,
        };
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }
}

#[async_trait]
impl Held for SshHeld {
    async fn release(mut self: Box<Self>, limit: Duration) -> Result<Output, TransportError> {
        self.finish(limit).await
    }
}
