//! `reconciler watch`: the long-running GitOps loop.
//!
//! kube-rs style: the loop keeps one entry per host with the time it is due
//! and why, and reconciles each host on its own (`converge::reconcile_host`);
//! the outcome says what was done and when to look again, and a failing
//! host backs off (`backoff`) without holding back the others. What makes a
//! host due:
//!
//! - a new commit on the branch that validates: every host, applied in
//!   full (a commit that does not validate is rejected whole: nothing of
//!   it is applied and the last good commit stays in force);
//! - the drift interval: a check against the commit in force, which
//!   corrects what it finds (`--drift correct`) or only reports it
//!   (`--drift warn`);
//! - a reload window opening for the host's cluster: due reloads and
//!   OPcache hygiene, php-fpm on one host of a cluster at a time;
//! - a retry: after a failure (backoff), a held host lock, a server that
//!   changed since its plan.
//!
//! Time comes from tokio (schedules, testable with a paused clock) and a
//! wall clock passed in (windows, status). Nothing here reads a server or
//! git itself: `source` and the connector do.

mod backoff;
pub mod source;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::apply::Outcome as ApplyOutcome;
use crate::converge::{self, Act, Loaded, Outcome, ReconcileOptions, Roll, Selection, Target};
use crate::definitions::{ClusterName, ServerName};
use crate::git::CommitId;
use crate::transport::Connector;

use crate::board as status;
pub use crate::board::{Board, Status};
pub use backoff::Backoff;
pub use source::{GitSource, Head, Source};

/// What `--drift` says to do with changes found on a drift check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    Correct,
    Warn,
}

/// The wall clock: windows and the status are judged against it.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// How often to fetch the branch.
    pub interval: Duration,
    /// How often to check each host against the commit in force.
    pub drift_interval: Duration,
    pub drift: Drift,
    /// Hosts reconciled at once.
    pub parallel: usize,
    /// Who reconciles, for host locks and apply logs.
    pub holder: String,
    pub backoff: Backoff,
    /// A commit that validated before the daemon last stopped: in force
    /// until a newer one validates.
    pub resume: Option<CommitId>,
    /// Where app repositories are mirrored for pinned revisions
    /// (`revision:`); without it pins are not released.
    pub apps_cache: Option<std::path::PathBuf>,
}

/// Why a host is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A new commit: apply it in full.
    Commit,
    /// A drift check, a window opening or a retry.
    Check,
}

struct Host {
    target: Target,
    due: Instant,
    why: Why,
    failures: u32,
    running: bool,
}

/// The commit in force.
struct InForce {
    commit: CommitId,
}

/// What a finished host task hands back.
struct Finished {
    server: ServerName,
    commit: CommitId,
    outcome: Outcome,
    took: Duration,
}

/// The daemon's loop.
pub struct Watch {
    pub source: Box<dyn Source>,
    pub connector: Arc<dyn Connector>,
    pub options: WatchOptions,
    pub board: Arc<Board>,
    pub clock: Clock,
    /// Notified to fetch at once (the git hook).
    pub fetch_now: Arc<Notify>,
    /// The daemon's background jobs (pinned releases, and the webhook's
    /// deploys): one owner, which the daemon drains on shutdown.
    pub tasks: tokio_util::task::TaskTracker,
}

impl Watch {
    /// Runs until `shutdown` completes; then starts nothing new, lets the
    /// hosts in flight finish, and returns.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut in_force: Option<InForce> = None;
        let mut hosts: BTreeMap<ServerName, Host> = BTreeMap::new();
        let mut rolls: HashMap<ClusterName, Arc<Roll>> = HashMap::new();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut head: Option<CommitId> = None;

        if let Some(commit) = self.options.resume.clone() {
            match self.source.files_of(&commit).await {
                Ok(files) => match converge::load(&files) {
                    Ok(loaded) => {
                        tracing::info!(%commit, "resuming with the last good commit");
                        self.take(
                            &commit,
                            loaded,
                            &mut in_force,
                            &mut hosts,
                            &mut rolls,
                            Why::Check,
                        );
                    }
                    Err(error) => {
                        tracing::warn!(%commit, %error, "the last good commit no longer loads");
                    }
                },
                Err(error) => tracing::warn!(%commit, %error, "cannot read the last good commit"),
            }
        }

        let mut next_poll = Instant::now();
        // The commit whose pinned revisions were last seen to.
        let mut pinned_for: Option<CommitId> = None;
        loop {
            // Once a commit is applied on every host (or failed there), the
            // apps it pins to a revision are released where they differ.
            if let Some(force) = &in_force
                && pinned_for.as_ref() != Some(&force.commit)
                && tasks.is_empty()
                && hosts.values().all(|h| h.why != Why::Commit)
            {
                pinned_for = Some(force.commit.clone());
                self.release_pins();
            }
            let next_due = hosts.values().filter(|h| !h.running).map(|h| h.due).min();
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(finished) = joined {
                        self.finished(finished, in_force.as_ref(), &mut hosts);
                    }
                }
                () = self.fetch_now.notified() => {
                    self.poll(&mut head, &mut in_force, &mut hosts, &mut rolls).await;
                    next_poll = Instant::now() + self.options.interval;
                }
                () = tokio::time::sleep_until(next_poll) => {
                    self.poll(&mut head, &mut in_force, &mut hosts, &mut rolls).await;
                    next_poll = Instant::now() + self.options.interval;
                }
                () = tokio::time::sleep_until(next_due.unwrap_or(far)), if next_due.is_some() => {
                    self.start_due(in_force.as_ref(), &mut hosts, &rolls, &mut tasks);
                }
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                hosts = tasks.len(),
                "stopping: waiting for the hosts in flight"
            );
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(finished) = joined {
                self.finished(finished, in_force.as_ref(), &mut hosts);
            }
        }
    }

    /// Releases, in the daemon's task set, every pinned revision that is
    /// not live everywhere (the app lock keeps two from interleaving).
    fn release_pins(&self) {
        let Some(cache) = self.options.apps_cache.clone() else {
            return;
        };
        let Some(definitions) = self
            .board
            .definitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
        else {
            return;
        };
        if crate::app::AppTarget::pinned(&definitions, &[]).is_empty() {
            return;
        }
        let connector = Arc::clone(&self.connector);
        let origin = crate::app::Origin {
            who: self.options.holder.clone(),
            trigger: crate::app::Trigger::Definitions,
        };
        self.tasks.spawn(async move {
            let pins = crate::release::release_pins(
                &definitions,
                &[],
                &cache,
                &origin,
                connector.as_ref(),
                &(),
            )
            .await;
            for pinned in pins {
                let (app, revision) = (&pinned.app, &pinned.revision);
                match pinned.result {
                    Ok(None) => tracing::debug!(%app, %revision, "pinned revision is live"),
                    Ok(Some(done)) => {
                        tracing::info!(%app, %revision, sha = %done.sha, took_ms = done.elapsed.as_millis() as u64, "released the pinned revision");
                    }
                    Err(error) => {
                        let repo = definitions
                            .apps
                            .iter()
                            .find(|a| a.name.as_str() == app)
                            .map_or("", |a| a.repo.as_str());
                        let error = crate::text::visible(&crate::redact::scrub(
                            &crate::error_chain(&error),
                            repo,
                        ))
                        .into_owned();
                        tracing::warn!(%app, %revision, %error, "cannot release the pinned revision");
                    }
                }
            }
        });
    }

    /// Fetches the branch; a new head is loaded and, when it validates,
    /// put in force.
    async fn poll(
        &mut self,
        head: &mut Option<CommitId>,
        in_force: &mut Option<InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        rolls: &mut HashMap<ClusterName, Arc<Roll>>,
    ) {
        let now = (self.clock)();
        let polled = self.source.poll(head.as_deref()).await;
        let new = match polled {
            Ok(new) => {
                self.board.update(now, |s| s.fetch_error = None);
                new
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the definitions");
                self.board.update(now, |s| s.fetch_error = Some(error));
                return;
            }
        };
        let Some(Head { commit, files }) = new else {
            return;
        };
        *head = Some(commit.clone());
        let span = tracing::info_span!("commit", commit = %short(&commit));
        let _entered = span.enter();
        self.board.update(now, |s| s.head = Some(commit.clone()));
        match converge::load(&files) {
            Ok(loaded) => {
                tracing::info!("a new commit validates: applying it");
                self.take(&commit, loaded, in_force, hosts, rolls, Why::Commit);
            }
            Err(error) => {
                let errors: Vec<String> = match &error {
                    crate::definitions::LoadError::Invalid(problems) => {
                        problems.iter().map(ToString::to_string).collect()
                    }
                    other => vec![crate::error_chain(other)],
                };
                let errors: Vec<String> = errors
                    .iter()
                    .map(|e| crate::redact::scrub_urls(e).into_owned())
                    .collect();
                for problem in &errors {
                    tracing::error!(problem = %problem, "the commit is rejected");
                }
                self.board.count_rejected();
                self.board.update(now, |s| {
                    s.last_rejected = Some(status::Rejected {
                        commit: commit.clone(),
                        at: now,
                        errors,
                    });
                });
            }
        }
    }

    /// Puts `loaded` in force: every host becomes due now.
    fn take(
        &self,
        commit: &str,
        loaded: Loaded,
        in_force: &mut Option<InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        rolls: &mut HashMap<ClusterName, Arc<Roll>>,
        why: Why,
    ) {
        *self
            .board
            .definitions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some(Arc::new(loaded.definitions.clone()));
        let now = (self.clock)();
        let targets = converge::select(&loaded.definitions, &loaded.desired, &Selection::default())
            .unwrap_or_default();
        let mut next: BTreeMap<ServerName, Host> = BTreeMap::new();
        let mut next_rolls: HashMap<ClusterName, Arc<Roll>> = HashMap::new();
        for target in targets {
            let server = target.server().clone();
            let running = hosts.get(&server).is_some_and(|h| h.running);
            // Each commit rolls anew, with its own `reload_parallel`.
            if !next_rolls.contains_key(&target.desired.cluster) {
                next_rolls.insert(
                    target.desired.cluster.clone(),
                    Arc::new(Roll::new(
                        target.desired.cluster.clone(),
                        target.reload_parallel,
                    )),
                );
            }
            next.insert(
                server,
                Host {
                    target,
                    due: Instant::now(),
                    why,
                    failures: 0,
                    running,
                },
            );
        }
        *hosts = next;
        *rolls = next_rolls;
        self.board.update(now, |s| {
            s.last_good = Some(status::CommitRecord {
                commit: commit.to_owned(),
                at: now,
            });
            s.hosts
                .retain(|name, _| hosts.contains_key(&ServerName::new(name.as_str())));
            for (name, host) in hosts.iter() {
                s.hosts.entry(name.to_string()).or_default().cluster =
                    host.target.desired.cluster.to_string();
            }
        });
        *in_force = Some(InForce {
            commit: commit.to_owned(),
        });
    }

    /// Starts every host that is due, up to `parallel` at once.
    fn start_due(
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
    fn finished(
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
        let (result, message) = describe(outcome);
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
        self.board.count(
            done.server.as_str(),
            result,
            done.took.as_secs_f64(),
            !succeeded,
        );
        self.board.gauges(
            done.server.as_str(),
            outcome.drift,
            pending.len(),
            success_at.map(|t| t.timestamp()),
        );
        let failures = host.failures;
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
            entry.drift = outcome.drift;
            entry.pending_reloads = pending;
            entry.opcache = outcome
                .plan
                .opcache
                .iter()
                .map(|(v, r)| (v.to_string(), serde_json::to_value(r).unwrap_or_default()))
                .collect();
            entry.failures = failures;
            entry.retry_at = retry;
            entry.lock_holder = match outcome.report.as_ref().map(|r| &r.outcome) {
                Some(ApplyOutcome::Locked { holder }) => Some(holder.clone()),
                _ => outcome.plan.locked_by.clone(),
            };
        });
    }
}

/// A short commit id for logs.
fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// A result word and a message, for the status and the metrics.
fn describe(outcome: &Outcome) -> (&'static str, String) {
    if let Some(error) = &outcome.plan.error {
        return ("failed", error.message.clone());
    }
    if outcome.drift > 0 {
        return (
            "drift",
            format!(
                "{} changes found and left alone (--drift warn)",
                outcome.drift
            ),
        );
    }
    match outcome.report.as_ref().map(|r| &r.outcome) {
        None | Some(ApplyOutcome::Unchanged) => ("unchanged", String::new()),
        Some(ApplyOutcome::Applied { changes, .. }) if outcome.succeeded() => {
            ("applied", crate::definitions::plural(*changes, "change"))
        }
        Some(ApplyOutcome::Applied {
            reload_failures,
            unanswered,
            ..
        }) => (
            "failed",
            reload_failures
                .iter()
                .chain(unanswered)
                .map(|f| format!("{}: {}", f.step, f.output.trim()))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(ApplyOutcome::Invalid { failures }) => (
            "invalid",
            failures
                .iter()
                .map(|f| {
                    format!(
                        "{} refused the new configuration: {}",
                        f.step,
                        f.output.trim()
                    )
                })
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Some(ApplyOutcome::Failed { message, .. }) => ("failed", message.clone()),
        Some(ApplyOutcome::Locked { holder }) => {
            ("locked", format!("another apply holds the host: {holder}"))
        }
        Some(ApplyOutcome::Stale { .. }) => (
            "stale",
            "the server changed since the plan; planning again".into(),
        ),
    }
}

#[cfg(test)]
mod tests;
