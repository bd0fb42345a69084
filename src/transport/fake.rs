//! A transport that answers scripts from fixtures, for offline tests of
//! what sits above the transports: converge's ordering and error paths,
//! apply's reading of reports. It records every script it was sent.
//!
//! It proves nothing about servers; whatever crosses SSH is tested against
//! the test fleet.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Connector, Held, Holding, Output, Transport, TransportError};
use crate::definitions::{Server, ServerName};

/// What the fake answers to one script.
pub enum Reply {
    /// The script ran and printed this.
    Output(Output),
    /// Running it failed this way.
    Error(TransportError),
}

impl Reply {
    /// A script that printed `stdout` and exited 0.
    pub fn stdout(stdout: impl Into<Vec<u8>>) -> Self {
        Reply::Output(Output {
            status: Some(0),
            stdout: stdout.into(),
            stderr: Vec::new(),
        })
    }
}

/// A server that answers each script with the next reply, choosing among
/// the replies whose marker the script contains (`@facts` for gathering,
/// `apply_main` for applying), so tests need not know the order.
#[derive(Debug)]
pub struct FakeTransport {
    server: ServerName,
    replies: Mutex<Vec<(String, VecDeque<ReplyCell>)>>,
    /// Answers for scripts no queued reply matches, by marker.
    every: Mutex<Vec<(String, Output)>>,
    /// How long each script takes.
    delay: Duration,
    sent: Mutex<Vec<String>>,
    /// The size of each script's input (`run_with`), in order.
    inputs: Mutex<Vec<usize>>,
}

/// A reply that can be stored in a `Debug` struct.
struct ReplyCell(Reply);

impl std::fmt::Debug for ReplyCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reply")
    }
}

impl FakeTransport {
    /// A transport for the server named `server` that has no replies yet.
    pub fn new(server: &str) -> Self {
        Self {
            server: ServerName::new(server),
            replies: Mutex::new(Vec::new()),
            every: Mutex::new(Vec::new()),
            delay: Duration::ZERO,
            sent: Mutex::new(Vec::new()),
            inputs: Mutex::new(Vec::new()),
        }
    }

    /// Answers every script containing `marker` with `output`, once the
    /// queued replies for it are used up.
    pub fn on_every(self, marker: &str, output: Output) -> Self {
        self.every
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((marker.to_owned(), output));
        self
    }

    /// Makes every script take `delay` (tokio time: tests pause it).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Answers the next script containing `marker` with `reply`.
    pub fn on(self, marker: &str, reply: Reply) -> Self {
        {
            let mut replies = self
                .replies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match replies.iter_mut().find(|(m, _)| m == marker) {
                Some((_, queue)) => queue.push_back(ReplyCell(reply)),
                None => replies.push((marker.to_owned(), VecDeque::from([ReplyCell(reply)]))),
            }
        }
        self
    }

    /// Every script sent so far, in order.
    pub fn sent(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The size of every input sent with a script so far, in order.
    pub fn inputs(&self) -> Vec<usize> {
        self.inputs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn answer(&self, script: &str) -> Result<Output, TransportError> {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(script.to_owned());
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let reply = {
            let mut replies = self
                .replies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            replies
                .iter_mut()
                .find(|(marker, queue)| script.contains(marker.as_str()) && !queue.is_empty())
                .and_then(|(_, queue)| queue.pop_front())
        };
        let every = || {
            self.every
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .find(|(marker, _)| script.contains(marker.as_str()))
                .map(|(_, output)| output.clone())
        };
        match reply {
            Some(ReplyCell(Reply::Output(output))) => Ok(output),
            Some(ReplyCell(Reply::Error(error))) => Err(error),
            None => every().ok_or_else(|| {
                TransportError::other(format!(
                    "the fake `{}` has no reply for this script",
                    self.server
                ))
            }),
        }
    }
}

#[async_trait]
impl Transport for FakeTransport {
    fn server(&self) -> &ServerName {
        &self.server
    }

    async fn run_with(
        &self,
        script: &str,
        input: super::Input<'_>,
        _limit: Duration,
    ) -> Result<Output, TransportError> {
        let size = match input {
            super::Input::None => 0,
            super::Input::Bytes(bytes) => bytes.len(),
            super::Input::File(path) => std::fs::metadata(path)
                .map(|m| usize::try_from(m.len()).unwrap_or(usize::MAX))
                .map_err(|e| TransportError::other(format!("cannot read the input: {e}")))?,
        };
        if size > 0 {
            self.inputs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(size);
        }
        self.answer(script).await
    }

    /// Holds when the reply has a `held` record; what follows it is what
    /// the release returns.
    async fn hold(&self, script: &str, _limit: Duration) -> Result<Holding, TransportError> {
        let output = self.answer(script).await?;
        let held = crate::remote::protocol::find(&output.stdout, "held")
            .map_err(|e| TransportError::other(e.to_string()))?;
        match held {
            Some(record) => Ok(Holding::Held {
                stdout: output.stdout[..record.start].to_vec(),
                guard: Box::new(FakeHeld(Output {
                    stdout: output.stdout[record.end..].to_vec(),
                    ..output
                })),
            }),
            None => Ok(Holding::Ended(output)),
        }
    }
}

/// What a fake held script prints when let go.
struct FakeHeld(Output);

#[async_trait]
impl Held for FakeHeld {
    async fn release(self: Box<Self>, _limit: Duration) -> Result<Output, TransportError> {
        Ok(self.0)
    }
}

/// Hands out fake transports by server name; a server without one is
/// refused like a stopped server.
#[derive(Default)]
pub struct FakeConnector {
    hosts: BTreeMap<ServerName, Arc<FakeTransport>>,
}

impl FakeConnector {
    /// This connector, also reaching `transport`'s server.
    pub fn with(mut self, transport: FakeTransport) -> Self {
        self.hosts
            .insert(transport.server.clone(), Arc::new(transport));
        self
    }

    /// The transport of the server named `server`, to look at the scripts
    /// it was sent.
    pub fn transport(&self, server: &str) -> Option<Arc<FakeTransport>> {
        self.hosts.get(&ServerName::new(server)).cloned()
    }
}

#[async_trait]
impl Connector for FakeConnector {
    async fn connect(&self, server: &Server) -> Result<Arc<dyn Transport>, TransportError> {
        match self.hosts.get(&server.name) {
            Some(transport) => Ok(transport.clone()),
            None => Err(TransportError::Refused {
                dialed: format!("{}@{}:{}", server.user, server.address, server.port),
            }),
        }
    }
}
