//! The rolling php-fpm reload of a cluster, the one policy of every driver
//! (`apply`, `watch`): at most `reload_parallel` of the cluster's servers
//! apply a php-fpm reload at a time, each answering over HTTP before its
//! turn ends, and the roll stops at the first server that fails: servers
//! that have not had their turn yet are not applied, so a cluster behind a
//! load balancer never loses all its web servers to one bad change.
//!
//! A stopped roll stays stopped until the server that stopped it applies
//! successfully again, or is found with nothing left to reload (fixed by
//! hand, by another apply, or by a new commit): the daemon
//! does not walk the same bad change through the rest of the cluster,
//! window after window. A new commit gets a new roll.

use std::sync::Mutex;

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::definitions::{ClusterName, ServerName};

/// One cluster's rolling php-fpm reload.
#[derive(Debug)]
pub struct Roll {
    cluster: ClusterName,
    parallel: usize,
    gate: Semaphore,
    stopped: Mutex<Option<ServerName>>,
}

impl Roll {
    /// The roll of `cluster`, `parallel` servers at a time (at least one).
    pub fn new(cluster: ClusterName, parallel: u32) -> Self {
        let parallel = parallel.max(1) as usize;
        Self {
            cluster,
            parallel,
            gate: Semaphore::new(parallel),
            stopped: Mutex::new(None),
        }
    }

    /// How many servers reload at once.
    pub fn parallel(&self) -> usize {
        self.parallel
    }

    /// Waits for `server`'s turn (turns are given in the order they are
    /// asked for). `Err` says why it gets none: the roll stopped at
    /// another server.
    pub async fn turn(&self, server: &ServerName) -> Result<SemaphorePermit<'_>, String> {
        let refused = |stopper: &ServerName| {
            format!(
                "not applied: the rolling php-fpm reload of cluster `{}` stopped because `{stopper}` failed",
                self.cluster
            )
        };
        if let Some(stopper) = self.stopper().filter(|s| s != server) {
            return Err(refused(&stopper));
        }
        let permit = self
            .gate
            .acquire()
            .await
            .map_err(|_| "the roll was closed".to_owned())?;
        match self.stopper().filter(|s| s != server) {
            Some(stopper) => Err(refused(&stopper)),
            None => Ok(permit),
        }
    }

    /// Records how `server`'s turn ended: a failure stops the roll; the
    /// stopper's success resumes it.
    pub fn record(&self, server: &ServerName, succeeded: bool) {
        let mut stopped = self
            .stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match (&*stopped, succeeded) {
            (None, false) => *stopped = Some(server.clone()),
            (Some(stopper), true) if stopper == server => *stopped = None,
            _ => {}
        }
    }

    /// Records how `server`'s apply in its turn ended (`record`), where an
    /// apply that did not happen says nothing about the change: `Stale`
    /// (the server changed since the plan: planned again at once) and
    /// `Locked` (another apply holds it) neither stop nor resume the roll.
    pub fn record_outcome(&self, server: &ServerName, report: &crate::apply::HostReport) {
        use crate::apply::Outcome;
        if !matches!(
            report.outcome,
            Outcome::Stale { .. } | Outcome::Locked { .. }
        ) {
            self.record(server, report.succeeded());
        }
    }

    /// The server the roll stopped at, if it did.
    pub fn stopper(&self) -> Option<ServerName> {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ServerName {
        ServerName::new(s)
    }

    #[tokio::test]
    async fn an_apply_that_did_not_happen_neither_stops_nor_resumes_the_roll() {
        use crate::apply::{HostReport, Outcome};
        let roll = Roll::new(ClusterName::new("prod"), 1);
        let report = |outcome| HostReport::new(name("web-1"), outcome);
        roll.record_outcome(
            &name("web-1"),
            &report(Outcome::Stale { paths: Vec::new() }),
        );
        roll.record_outcome(
            &name("web-1"),
            &report(Outcome::Locked {
                holder: "ci".into(),
            }),
        );
        assert!(roll.turn(&name("web-2")).await.is_ok(), "not stopped");
        roll.record_outcome(
            &name("web-1"),
            &report(Outcome::Failed {
                message: "boom".into(),
                output: String::new(),
            }),
        );
        assert!(roll.turn(&name("web-2")).await.is_err(), "stopped");
        roll.record_outcome(
            &name("web-1"),
            &report(Outcome::Stale { paths: Vec::new() }),
        );
        assert!(roll.turn(&name("web-2")).await.is_err(), "still stopped");
        roll.record_outcome(&name("web-1"), &report(Outcome::Unchanged));
        assert!(roll.turn(&name("web-2")).await.is_ok(), "resumed");
    }

    #[tokio::test]
    async fn a_failure_stops_the_roll_until_the_same_server_succeeds() {
        let roll = Roll::new(ClusterName::new("prod"), 1);
        let permit = roll.turn(&name("web-1")).await.expect("first turn");
        drop(permit);
        roll.record(&name("web-1"), false);
        let refused = roll.turn(&name("web-2")).await.expect_err("stopped");
        assert_eq!(
            refused,
            "not applied: the rolling php-fpm reload of cluster `prod` stopped because `web-1` failed"
        );
        // Another server's success does not resume it; the stopper's does.
        roll.record(&name("web-3"), true);
        assert!(roll.turn(&name("web-2")).await.is_err());
        assert!(
            roll.turn(&name("web-1")).await.is_ok(),
            "the stopper may try again"
        );
        roll.record(&name("web-1"), true);
        assert!(roll.turn(&name("web-2")).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_parallel_servers_hold_a_turn() {
        let roll = std::sync::Arc::new(Roll::new(ClusterName::new("prod"), 2));
        let first = roll.turn(&name("a")).await.expect("a");
        let _second = roll.turn(&name("b")).await.expect("b");
        let waiting = {
            let roll = std::sync::Arc::clone(&roll);
            tokio::spawn(async move { roll.turn(&name("c")).await.map(|_| ()) })
        };
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "a third waits");
        drop(first);
        assert!(waiting.await.expect("task").is_ok());
    }
}
