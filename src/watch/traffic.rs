//! The daemon's traffic reads: every `--traffic-interval`, each web
//! server's access logs are read (what is new since the last read) in a
//! task of their own, so a slow or unreachable server never holds the
//! loop, and the board counts the figures (`Board::traffic`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::apps::AppEntry;
use crate::board::Board;
use crate::traffic::{self, Cursor, Read};
use crate::transport::Connector;

/// The reads' schedule, and the one read in flight (which holds the
/// cursor meanwhile).
pub(super) struct Reads {
    interval: Option<Duration>,
    pub(super) next: Instant,
    cursor: Option<Cursor>,
    pub(super) task: JoinSet<(Cursor, Read)>,
}

impl Reads {
    /// Reads every `interval`; never when `None`.
    pub(super) fn new(interval: Option<Duration>) -> Self {
        Reads {
            interval,
            next: Instant::now() + interval.unwrap_or(Duration::from_secs(86_400)),
            cursor: Some(Cursor::default()),
            task: JoinSet::new(),
        }
    }

    /// Whether a read may start at `next`: on, and none in flight.
    pub(super) fn ready(&self) -> bool {
        self.interval.is_some() && self.cursor.is_some()
    }

    /// Starts a read of the web servers of `apps`.
    pub(super) fn start(
        &mut self,
        apps: &BTreeMap<String, AppEntry>,
        connector: &Arc<dyn Connector>,
    ) {
        let Some(interval) = self.interval else {
            return;
        };
        self.next = Instant::now() + interval;
        let Some(mut cursor) = self.cursor.take() else {
            return;
        };
        let servers = traffic::by_server(apps.values().map(|entry| &entry.target));
        let connector = Arc::clone(connector);
        self.task.spawn(async move {
            let read =
                traffic::read(&servers, connector.as_ref(), &mut cursor, Duration::ZERO).await;
            (cursor, read)
        });
    }

    /// A read ended: the board counts it, and the cursor is back.
    pub(super) fn finished(
        &mut self,
        (cursor, read): (Cursor, Read),
        board: &Board,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let seconds = self.interval.unwrap_or_default().as_secs_f64();
        board.traffic(&read, seconds, at);
        self.cursor = Some(cursor);
    }
}
