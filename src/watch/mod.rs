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
//! Apps are kept the same way (`apps`): the release each should run is
//! compared with what its servers run on every commit and drift check,
//! after its servers' configuration, and repaired or reported.
//!
//! Time comes from tokio (schedules, testable with a paused clock) and a
//! wall clock passed in (windows, status). Nothing here reads a server or
//! git itself: `source` and the connector do.

mod apps;
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
use crate::release;
use crate::transport::Connector;

use crate::board as status;
pub use crate::board::{Board, Status};
pub use backoff::Backoff;
pub use source::{GitSource, Head, PollError, Source};

use apps::{AppEntry, AppJob, AppOutcome};

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
    /// Where app repositories are mirrored for the releases the daemon
    /// keeps live (`apps`); without it apps are not checked.
    pub apps_cache: Option<std::path::PathBuf>,
}

/// Why a host or an app is due.
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

/// What a finished app task hands back.
struct AppFinished {
    app: String,
    commit: CommitId,
    outcome: AppOutcome,
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
    /// The daemon's background jobs (the webhook's deploys): one owner,
    /// which the daemon drains on shutdown.
    pub tasks: tokio_util::task::TaskTracker,
    /// Cancelled when the daemon is asked to stop: a release the loop
    /// started stops if it has not switched yet, else finishes.
    pub stop: release::Stop,
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
        let mut apps: BTreeMap<String, AppEntry> = BTreeMap::new();
        let mut app_tasks: JoinSet<AppFinished> = JoinSet::new();
        let mut head: Option<CommitId> = None;

        if let Some(commit) = self.options.resume.clone() {
            match self.source.files_of(&commit).await {
                Ok(files) => match converge::load(&files) {
                    Ok(loaded) => {
                        tracing::info!(%commit, "resuming with the last good commit");
                        // The same commit at the head is not new: a
                        // restart is a drift check, never a full apply.
                        head = Some(commit.clone());
                        self.take(
                            &commit,
                            loaded,
                            &mut in_force,
                            &mut hosts,
                            &mut apps,
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
        loop {
            let next_due = hosts
                .values()
                .filter(|h| !h.running)
                .map(|h| h.due)
                .chain(apps.values().filter(|a| !a.running).map(|a| a.due))
                .min();
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok(finished) = joined {
                        self.finished(finished, in_force.as_ref(), &mut hosts);
                    }
                }
                Some(joined) = app_tasks.join_next(), if !app_tasks.is_empty() => {
                    if let Ok(finished) = joined {
                        self.app_finished(finished, in_force.as_ref(), &mut apps);
                    }
                }
                () = self.fetch_now.notified() => {
                    self.poll(&mut head, &mut in_force, &mut hosts, &mut apps, &mut rolls).await;
                    next_poll = Instant::now() + self.options.interval;
                }
                () = tokio::time::sleep_until(next_poll) => {
                    self.poll(&mut head, &mut in_force, &mut hosts, &mut apps, &mut rolls).await;
                    next_poll = Instant::now() + self.options.interval;
                }
                () = tokio::time::sleep_until(next_due.unwrap_or(far)), if next_due.is_some() => {
                    self.start_due(in_force.as_ref(), &mut hosts, &rolls, &mut tasks);
                    self.start_due_apps(in_force.as_ref(), &hosts, &mut apps, &mut app_tasks);
                }
            }
        }
        if !tasks.is_empty() || !app_tasks.is_empty() {
            tracing::info!(
                hosts = tasks.len(),
                apps = app_tasks.len(),
                "stopping: waiting for the hosts and apps in flight"
            );
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok(finished) = joined {
                self.finished(finished, in_force.as_ref(), &mut hosts);
            }
        }
        while let Some(joined) = app_tasks.join_next().await {
            if let Ok(finished) = joined {
                self.app_finished(finished, in_force.as_ref(), &mut apps);
            }
        }
    }

    /// Starts every app that is due and whose servers have their commit
    /// applied, up to `parallel` at once.
    fn start_due_apps(
        &self,
        in_force: Option<&InForce>,
        hosts: &BTreeMap<ServerName, Host>,
        apps: &mut BTreeMap<String, AppEntry>,
        tasks: &mut JoinSet<AppFinished>,
    ) {
        let (Some(in_force), Some(cache)) = (in_force, &self.options.apps_cache) else {
            return;
        };
        let now = Instant::now();
        for (name, entry) in apps.iter_mut() {
            if entry.running || entry.due > now {
                continue;
            }
            if self.stop.is_cancelled() {
                // Stopping: nothing new starts.
                entry.due = now + Duration::from_secs(1);
                continue;
            }
            let waiting = entry.target.servers.iter().any(|(server, _)| {
                hosts
                    .get(&server.name)
                    .is_some_and(|h| h.running || h.why == Why::Commit)
            });
            if waiting || tasks.len() >= self.options.parallel.max(1) {
                entry.due = now + Duration::from_secs(1);
                continue;
            }
            entry.running = true;
            let job = AppJob {
                target: entry.target.clone(),
                cache: cache.clone(),
                connector: Arc::clone(&self.connector),
                repair: entry.why == Why::Commit || self.options.drift == Drift::Correct,
                gave_up: entry.gave_up.clone(),
                holder: self.options.holder.clone(),
                stop: self.stop.clone(),
            };
            let (app, commit) = (name.clone(), in_force.commit.clone());
            tasks.spawn(async move {
                let outcome = job.run().await;
                AppFinished {
                    app,
                    commit,
                    outcome,
                }
            });
        }
    }

    /// Records an app's outcome and schedules it again.
    fn app_finished(
        &self,
        done: AppFinished,
        in_force: Option<&InForce>,
        apps: &mut BTreeMap<String, AppEntry>,
    ) {
        let now = (self.clock)();
        let Some(entry) = apps.get_mut(&done.app) else {
            return; // the app left the definitions meanwhile
        };
        entry.running = false;
        let span = tracing::info_span!("app", app = %done.app, commit = %short(&done.commit));
        let _entered = span.enter();
        let superseded = in_force.is_some_and(|f| f.commit != done.commit);
        let mut retry_at = None;
        match &done.outcome {
            AppOutcome::Busy(_, holder) => {
                tracing::info!(%holder, "the app lock is held: checking again shortly");
                entry.due = Instant::now() + apps::BUSY_RETRY;
            }
            AppOutcome::Failed {
                message, gave_up, ..
            } => {
                tracing::warn!(message = %message, "the app's release is not as it should be");
                entry.failures += 1;
                if gave_up.is_some() {
                    entry.gave_up.clone_from(gave_up);
                }
                let delay = self.options.backoff.next(entry.failures);
                entry.due = Instant::now() + delay;
                retry_at = Some(now + chrono::Duration::from_std(delay).unwrap_or_default());
            }
            outcome => {
                match outcome {
                    AppOutcome::Repaired(check, released) => tracing::info!(
                        sha = %released.sha.short(),
                        was = %check.verdict.describe(check.intended.as_ref()),
                        "the app's intended release is live on every server"
                    ),
                    AppOutcome::Left(check) => tracing::warn!(
                        found = %check.verdict.describe(check.intended.as_ref()),
                        "the app's servers differ from its release; left alone (--drift warn)"
                    ),
                    _ => tracing::debug!("the app runs its intended release"),
                }
                entry.failures = 0;
                entry.why = Why::Check;
                entry.due = Instant::now() + self.options.drift_interval;
            }
        }
        if superseded {
            entry.due = Instant::now();
            entry.why = Why::Commit;
        }
        apps::record(
            &self.board,
            &done.app,
            &done.outcome,
            entry.failures,
            retry_at,
            now,
        );
    }

    /// Fetches the branch; a new head is loaded and, when it validates,
    /// put in force.
    async fn poll(
        &mut self,
        head: &mut Option<CommitId>,
        in_force: &mut Option<InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        apps: &mut BTreeMap<String, AppEntry>,
        rolls: &mut HashMap<ClusterName, Arc<Roll>>,
    ) {
        let now = (self.clock)();
        let polled = self.source.poll(head.as_deref()).await;
        let new = match polled {
            Ok(new) => {
                self.board.fetched(Some(now));
                self.board.update(now, |s| {
                    s.fetch_error = None;
                    s.fetch_failing_since = None;
                    s.branch_missing = false;
                    s.last_fetch_at = Some(now);
                });
                new
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the definitions");
                self.board.fetched(None);
                self.board.update(now, |s| {
                    s.branch_missing = matches!(error, PollError::NoBranch(_));
                    s.fetch_error = Some(error.to_string());
                    s.fetch_failing_since.get_or_insert(now);
                    if s.branch_missing {
                        s.head = None;
                    }
                });
                if matches!(error, PollError::NoBranch(_)) {
                    *head = None;
                }
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
        if in_force.as_ref().is_some_and(|f| f.commit == commit) {
            // The commit in force came back (a branch reset to it): not new.
            return;
        }
        match converge::load(&files) {
            Ok(loaded) => {
                tracing::info!("a new commit validates: applying it");
                self.take(&commit, loaded, in_force, hosts, apps, rolls, Why::Commit);
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

    /// Puts `loaded` in force: every host and app becomes due now, and
    /// what left the definitions leaves the status and the metrics.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        commit: &str,
        loaded: Loaded,
        in_force: &mut Option<InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        apps: &mut BTreeMap<String, AppEntry>,
        rolls: &mut HashMap<ClusterName, Arc<Roll>>,
        why: Why,
    ) {
        // Without a mirror cache the apps are not checked at all.
        *apps = if self.options.apps_cache.is_some() {
            AppEntry::all(&loaded.definitions, why, apps)
        } else {
            BTreeMap::new()
        };
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
        let (gone_servers, gone_apps) = {
            let status = self.board.snapshot();
            let servers: Vec<String> = status
                .hosts
                .keys()
                .filter(|name| !hosts.contains_key(&ServerName::new(name.as_str())))
                .cloned()
                .collect();
            let apps: Vec<String> = status
                .apps
                .keys()
                .filter(|name| !apps.contains_key(*name))
                .cloned()
                .collect();
            (servers, apps)
        };
        self.board.forget(&gone_servers, &gone_apps);
        self.board.update(now, |s| {
            s.apps.retain(|name, _| apps.contains_key(name));
            // Not checked under this commit yet.
            for name in apps.keys() {
                s.apps.entry(name.clone()).or_default().state = "pending".into();
            }
            s.last_good = Some(status::CommitRecord {
                commit: commit.to_owned(),
                at: now,
            });
            s.hosts
                .retain(|name, _| hosts.contains_key(&ServerName::new(name.as_str())));
            for (name, host) in hosts.iter() {
                let entry = s.hosts.entry(name.to_string()).or_default();
                entry.cluster = host.target.desired.cluster.to_string();
                entry.converging = true;
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

/// A short commit id for logs.
fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

/// A result word and a message, for the status and the metrics.
fn describe(outcome: &Outcome) -> (&'static str, String) {
    if let Some(error) = &outcome.plan.error {
        // The same cause and remedy the commands print.
        let message = match &error.hint {
            Some(hint) => format!("{}; hint: {hint}", error.message),
            None => error.message.clone(),
        };
        return ("failed", message);
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
