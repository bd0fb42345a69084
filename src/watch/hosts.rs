//! The hosts' side of the loop: starting a host's reconcile when it is
//! due, and recording what it did (status, metrics, the next time).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Drift, Finished, Host, InForce, Watch, Why, short};
use crate::apply::Outcome as ApplyOutcome;
use crate::board as status;
use crate::converge::{self, Act, ReconcileOptions, Roll};
use crate::definitions::{ClusterName, ServerName};

impl Watch {
    /// Starts every host that is due, up to `parallel` at once.
    pub(super) fn start_due(
        &self,
        in_force: Option<&InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        rolls: &HashMap<ClusterName, Arc<Roll>>,
        tasks: &mut JoinSet<Finished>,
    ) {
        let Some(in_force) = in_force else {
            return;
        };
        let now = Instant::now();
        for (server, host) in hosts.iter_mut() {
            if tasks.len() >= self.options.parallel.max(1) {
                // Not started: due again shortly, after one finishes.
                if !host.running && host.due <= now {
                    host.due = now + Duration::from_millis(100);
                }
                continue;
            }
            if host.running || host.due > now {
                continue;
            }
            host.running = true;
            let target = host.target.clone();
            let connector = Arc::clone(&self.connector);
            let roll = rolls.get(&target.desired.cluster).cloned();
            let options = ReconcileOptions {
                now: (self.clock)(),
                reload_now: false,
                holder: self.options.holder.clone(),
                revision: Some(in_force.commit.clone()),
                lock_wait: Duration::ZERO,
            };
            let act = match (host.why, self.options.drift) {
                (Why::Commit, _) | (Why::Check, Drift::Correct) => Act::Always,
                (Why::Check, Drift::Warn) => Act::OnlyReloads,
            };
            let (commit, server) = (in_force.commit.clone(), server.clone());
            tasks.spawn(async move {
                let started = Instant::now();
                let outcome = converge::reconcile_host(
                    &target,
                    connector.as_ref(),
                    &options,
                    act,
                    roll.as_deref(),
                )
                .await;
                Finished {
                    server,
                    commit,
                    outcome,
                    took: started.elapsed(),
                }
            });
        }
    }

    /// Records a host's outcome and schedules it again.
    pub(super) fn finished(
        &self,
        done: Finished,
        in_force: Option<&InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
    ) {
        let now = (self.clock)();
        let Some(host) = hosts.get_mut(&done.server) else {
            return; // the host left the definitions meanwhile
        };
        host.running = false;
        let outcome = &done.outcome;
        let succeeded = outcome.succeeded();
        let (result, message) = outcome.describe();
        let span =
            tracing::info_span!("host", server = %done.server, commit = %short(&done.commit));
        let _entered = span.enter();
        let took_ms = u64::try_from(done.took.as_millis()).unwrap_or(u64::MAX);
        if succeeded && outcome.drift > 0 {
            tracing::warn!(
                changes = outcome.drift,
                took_ms,
                "drift found and left alone (--drift warn)"
            );
        } else if succeeded {
            tracing::info!(result, took_ms, "reconciled");
        } else {
            tracing::warn!(result, took_ms, message = %crate::text::visible(&message), "reconcile failed");
        }

        // The next time: at once for a commit that came while this ran, a
        // requeue, the next check or window, or a retry.
        let superseded = in_force.is_some_and(|f| f.commit != done.commit);
        let retry = if superseded {
            host.due = Instant::now();
            host.why = Why::Commit;
            host.failures = 0;
            None
        } else if let Some(after) = outcome.requeue_after {
            host.due = Instant::now() + after;
            host.why = Why::Check;
            None
        } else if succeeded {
            host.failures = 0;
            host.why = Why::Check;
            let mut next = self.options.drift_interval;
            if let Some(opening) = host.target.windows.next_opening(now)
                && let Ok(until) = (opening - now).to_std()
            {
                next = next.min(until + Duration::from_secs(1));
            }
            host.due = Instant::now() + next;
            None
        } else {
            // A commit that failed is applied in full when retried: `why`
            // stays.
            host.failures += 1;
            let delay = self.options.backoff.next(host.failures);
            host.due = Instant::now() + delay;
            Some(now + chrono::Duration::from_std(delay).unwrap_or_default())
        };

        let pending: Vec<status::PendingReload> = outcome
            .pending
            .iter()
            .map(|r| status::PendingReload {
                label: r.label.clone(),
                next_window: r.next_window.as_ref().and_then(|w| w.start),
            })
            .collect();
        let applied = succeeded
            && outcome.report.as_ref().is_some_and(|r| {
                matches!(
                    r.outcome,
                    ApplyOutcome::Applied { .. } | ApplyOutcome::Unchanged
                )
            })
            && outcome.drift == 0;
        let success_at = succeeded.then_some(now);
        // A server that could not be read keeps its last known figures.
        let read = outcome.plan.error.is_none();
        self.board.count(
            done.server.as_str(),
            result,
            done.took.as_secs_f64(),
            !succeeded,
        );
        if read {
            self.board.gauges(
                done.server.as_str(),
                outcome.drift,
                pending.len(),
                success_at.map(|t| t.timestamp()),
            );
        }
        let failures = host.failures;
        self.notify_host(&done, host, succeeded && read, &message);
        let commit_in_force = in_force.map(|f| f.commit.clone());
        self.board.update(now, |s| {
            let entry = s.hosts.entry(done.server.to_string()).or_default();
            entry.last_result = Some(result.to_owned());
            entry.last_message = (!message.is_empty()).then_some(message);
            entry.last_at = Some(now);
            if let Some(at) = success_at {
                entry.last_success_at = Some(at);
            }
            if applied && commit_in_force.as_deref() == Some(done.commit.as_str()) {
                entry.last_applied_commit = Some(done.commit.clone());
            }
            if read {
                entry.known_at = Some(now);
                entry.drift = outcome.drift;
                entry.pending_reloads = pending;
                entry.opcache = outcome
                    .plan
                    .opcache
                    .iter()
                    .map(|(v, r)| (v.to_string(), serde_json::to_value(r).unwrap_or_default()))
                    .collect();
            }
            entry.failures = failures;
            entry.retry_at = retry;
            // Done with the commit in force when it succeeded for it.
            entry.converging =
                !(succeeded && commit_in_force.as_deref() == Some(done.commit.as_str()));
            entry.lock_holder = match outcome.report.as_ref().map(|r| &r.outcome) {
                Some(ApplyOutcome::Locked { holder }) => Some(holder.clone()),
                _ => outcome.plan.locked_by.clone(),
            };
        });
    }
}

impl Watch {
    /// Word of a host's outcome for its cluster's `notify:`: an apply
    /// that failed (the first failure in a row), drift found (where the
    /// last read found none).
    fn notify_host(&self, done: &Finished, host: &Host, read: bool, message: &str) {
        use crate::definitions::NotifyEvent;
        use crate::notify::{Notice, cluster_targets};
        if self.notifier.is_none() {
            return;
        }
        let cluster = host.target.desired.cluster.clone();
        let tell = |event: NotifyEvent, text: String| {
            let mut notice = Notice::new(event, text);
            notice.server = Some(done.server.to_string());
            notice.commit = Some(done.commit.clone());
            self.notify(|d| cluster_targets(d, |c| c.name == cluster), event, notice);
        };
        if !done.outcome.succeeded() && host.failures == 1 {
            tell(
                NotifyEvent::ApplyFailed,
                format!(
                    "applying commit {} to {} failed: {}",
                    short(&done.commit),
                    done.server,
                    crate::text::visible(message)
                ),
            );
        }
        let before = self
            .board
            .snapshot()
            .hosts
            .get(done.server.as_str())
            .map_or(0, |h| h.drift);
        if read && done.outcome.drift > 0 && before == 0 {
            tell(
                NotifyEvent::DriftFound,
                format!(
                    "{} differs from commit {} in {} change(s)",
                    done.server,
                    short(&done.commit),
                    done.outcome.drift
                ),
            );
        }
    }
}
