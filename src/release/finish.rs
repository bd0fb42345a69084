//! The end of a release or rollback on every server: its line in each
//! release log, pruning to what `plan::keep` keeps, and removing a
//! release where a failed run prepared it.

use std::time::Duration;

use futures::future::join_all;

use super::run::Run;
use super::warm::Warmed;
use super::{LogEntry, LogResult, Sha, keep};
use crate::app::Step;
use crate::definitions::ServerName;
use crate::transport::Input;

impl Run<'_> {
    /// A line in each server's release log (with what warming did there,
    /// from `warmed`), then pruning to what `plan::keep` keeps there: the
    /// directories pruned, and those that could not be.
    pub(super) async fn finish_all(
        &self,
        sha: &Sha,
        result: LogResult,
        live: impl Fn(usize) -> Option<Sha>,
        elapsed: Duration,
        reason: Option<String>,
        warmed: &[(ServerName, Result<Warmed, String>)],
    ) -> (usize, Vec<(ServerName, Sha, String)>) {
        let keep_count = self.session.app.keep_releases;
        let origin = self.session.origin();
        let results = join_all(self.locked.iter().zip(&self.states).enumerate().map(
            |(i, (l, state))| {
                let entry = LogEntry {
                    reason: reason.clone(),
                    sha: sha.clone(),
                    time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    trigger: origin.trigger.to_string(),
                    result,
                    duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    who: origin.who.clone(),
                    previous: state.live.clone(),
                    warmed: warmed
                        .iter()
                        .find(|(server, _)| *server == l.host.server.name)
                        .and_then(|(_, result)| result.as_ref().ok().cloned()),
                };
                // A release that stopped after switching here gets its line
                // first: this run put the server right.
                let interrupted = state.in_flight.as_ref().map(|stopped| LogEntry {
                    reason: None,
                    sha: stopped.sha.clone(),
                    time: entry.time.clone(),
                    trigger: stopped.trigger.clone(),
                    result: LogResult::Interrupted,
                    duration_ms: 0,
                    who: stopped.who.clone(),
                    previous: stopped.previous.clone(),
                    warmed: None,
                });
                let mut log = state.log.clone();
                let lines: Vec<String> = interrupted
                    .into_iter()
                    .chain([entry])
                    .map(|entry| {
                        let line = serde_json::to_string(&entry).unwrap_or_default();
                        log.push(entry);
                        line
                    })
                    .collect();
                let now_live = live(i);
                let kept = keep(state, now_live.as_ref(), &log, keep_count);
                async move {
                    let mut call = vec!["release_finish".to_owned(), lines.len().to_string()];
                    call.extend(lines);
                    call.extend(kept.iter().map(ToString::to_string));
                    let call: Vec<&str> = call.iter().map(String::as_str).collect();
                    let records = self
                        .step(
                            l,
                            Step::Finish,
                            &call,
                            Input::None,
                            Duration::from_secs(300),
                        )
                        .await;
                    (l.host.server.name.clone(), records)
                }
            },
        ))
        .await;
        let mut pruned = 0;
        let mut failed = Vec::new();
        for (server, records) in results {
            let Ok(records) = records else { continue };
            for r in &records {
                match (r.kind.as_str(), Sha::parse(&r.text(0))) {
                    ("pruned", Some(_)) => pruned += 1,
                    ("prune-failed", Some(sha)) => {
                        failed.push((server.clone(), sha, r.text(1).into_owned()));
                    }
                    _ => {}
                }
            }
        }
        (pruned, failed)
    }

    /// Removes the release where this run prepared it.
    pub(super) async fn discard(&self, prepared: &[ServerName]) {
        join_all(
            self.locked
                .iter()
                .filter(|l| prepared.contains(&l.host.server.name))
                .map(|l| {
                    self.step(
                        l,
                        Step::Discard,
                        &["release_discard"],
                        Input::None,
                        Duration::from_secs(300),
                    )
                }),
        )
        .await;
    }
}
