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
mod hosts;
pub mod source;
mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::converge::{self, Loaded, Outcome, Roll, Selection, Target};
use crate::definitions::{ClusterName, ServerName};
use crate::git::CommitId;
use crate::release;
use crate::transport::Connector;

use crate::board as status;
pub use crate::board::Board;
pub use backoff::Backoff;
pub use source::{GitSource, Head, PollError, Source};

use apps::{AppEntry, AppOutcome};

/// What `--drift` says to do with changes found on a drift check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drift {
    /// Apply the changes, as for a new commit.
    Correct,
    /// Only report them (status, metrics, notices); apply the reloads
    /// that are due anyway.
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
    /// How often to read the web servers' access logs for the request
    /// metrics (`traffic`); `None`: never.
    pub traffic_interval: Option<Duration>,
    /// What a drift check does with the changes it finds.
    pub drift: Drift,
    /// Hosts reconciled at once.
    pub parallel: usize,
    /// Who reconciles, for host locks and apply logs.
    pub holder: String,
    /// How long a failing host or app waits before it is tried again.
    pub backoff: Backoff,
    /// A commit that validated before the daemon last stopped: in force
    /// until a newer one validates.
    pub resume: Option<CommitId>,
    /// Where app repositories are mirrored for the releases the daemon
    /// keeps live (`apps`); without it apps are not checked.
    pub apps_cache: Option<std::path::PathBuf>,
    /// Elastic members: the ready ones are added to every commit taken,
    /// which is taken again when they change.
    pub members: Option<Arc<crate::elastic::Members>>,
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
    /// Where the definitions come from: the followed branch.
    pub source: Box<dyn Source>,
    /// How hosts are reached.
    pub connector: Arc<dyn Connector>,
    /// Intervals, parallelism, drift policy and backoff.
    pub options: WatchOptions,
    /// The status and metrics the loop writes, which the listener reads.
    pub board: Arc<Board>,
    /// The time windows, retries and the status are judged at.
    pub clock: Clock,
    /// Notified to fetch at once (the git hook).
    pub fetch_now: Arc<Notify>,
    /// Cancelled when the daemon is asked to stop: a release the loop
    /// started stops if it has not switched yet, else finishes.
    pub stop: release::Stop,
    /// Where word of what happens goes (`notify:`); `None`: nowhere.
    pub notifier: Option<crate::notify::Notifier>,
}

impl Watch {
    /// Sends `notice` of `event` to the targets `targets` picks from the
    /// definitions in force, if any.
    fn notify(
        &self,
        targets: impl FnOnce(&crate::definitions::Definitions) -> Vec<crate::definitions::NotifyTarget>,
        event: crate::definitions::NotifyEvent,
        notice: crate::notify::Notice,
    ) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let definitions = self
            .board
            .definitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(definitions) = definitions {
            notifier.send(&targets(&definitions), event, &notice);
        }
    }
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
                Ok(files) => match self.load(&files) {
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
        let mut traffic = traffic::Reads::new(self.options.traffic_interval);
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
                () = members_changed(self.options.members.as_deref()) => {
                    self.retake(&mut in_force, &mut hosts, &mut apps, &mut rolls).await;
                }
                () = tokio::time::sleep_until(next_poll) => {
                    self.poll(&mut head, &mut in_force, &mut hosts, &mut apps, &mut rolls).await;
                    next_poll = Instant::now() + self.options.interval;
                }
                Some(joined) = traffic.task.join_next(), if !traffic.task.is_empty() => {
                    if let Ok(done) = joined {
                        traffic.finished(done, &self.board, (self.clock)());
                    }
                }
                () = tokio::time::sleep_until(traffic.next), if traffic.ready() => {
                    traffic.start(&apps, &self.connector);
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
                "stopping: waiting for the hosts in flight and the apps being checked"
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

    /// The definitions of `files`, with the ready elastic members (and,
    /// with members, the files' own definitions, which `take` hands them).
    fn load(
        &self,
        files: &crate::definitions::DefinitionFiles,
    ) -> Result<(Loaded, Option<crate::definitions::Definitions>), crate::definitions::LoadError>
    {
        crate::elastic::load(files, self.options.members.as_deref())
    }

    /// Takes the commit in force again, with the elastic members as they
    /// are now: a member that became ready is reconciled and released to
    /// like a static server from now on; one that left, failed or was lost
    /// no longer is. The others are checked (as a drift check).
    async fn retake(
        &mut self,
        in_force: &mut Option<InForce>,
        hosts: &mut BTreeMap<ServerName, Host>,
        apps: &mut BTreeMap<String, AppEntry>,
        rolls: &mut HashMap<ClusterName, Arc<Roll>>,
    ) {
        let Some(commit) = in_force.as_ref().map(|f| f.commit.clone()) else {
            return;
        };
        let loaded = match self.source.files_of(&commit).await {
            Ok(files) => self.load(&files),
            Err(error) => {
                tracing::warn!(%commit, %error, "cannot read the commit in force again for the elastic members");
                return;
            }
        };
        match loaded {
            Ok(loaded) => {
                tracing::info!("the elastic members changed: taking the commit in force again");
                self.take(&commit, loaded, in_force, hosts, apps, rolls, Why::Check);
            }
            Err(error) => {
                tracing::warn!(%commit, error = %crate::error_chain(&error), "the commit in force does not load with the elastic members");
            }
        }
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
                self.board.fetched(now, true, |s| {
                    s.fetch_error = None;
                    s.fetch_failing_since = None;
                    s.branch_missing = false;
                    s.last_fetch_at = Some(now);
                });
                new
            }
            Err(error) => {
                tracing::warn!(%error, "cannot fetch the definitions");
                self.board.fetched(now, false, |s| {
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
        match self.load(&files) {
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
                let mut notice = crate::notify::Notice::new(
                    crate::definitions::NotifyEvent::CommitRejected,
                    format!(
                        "commit {} of the definitions is rejected: nothing of it is applied",
                        short(&commit)
                    ),
                );
                notice.commit = Some(commit.clone());
                notice.details.clone_from(&errors);
                self.notify(
                    |d| crate::notify::cluster_targets(d, |_| true),
                    crate::definitions::NotifyEvent::CommitRejected,
                    notice,
                );
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
    /// what left the definitions leaves the status and the metrics. With
    /// elastic members, the definitions shared with the deploy webhook and
    /// joins are the members' (`Members::put_in_force`, from the files'
    /// own definitions and the members as they are now), never `loaded`'s
    /// copy: a member that left since the load is not put back (a change
    /// of the members also takes the commit again here).
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        commit: &str,
        (loaded, base): (Loaded, Option<crate::definitions::Definitions>),
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
        match (self.options.members.as_deref(), base) {
            (Some(members), Some(base)) => {
                members.put_in_force(base);
            }
            _ => {
                *self
                    .board
                    .definitions
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Arc::new(loaded.definitions.clone()));
            }
        }
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
}

/// Completes when the elastic members changed; never without members.
async fn members_changed(members: Option<&crate::elastic::Members>) {
    match members {
        Some(members) => members.changed.notified().await,
        None => std::future::pending().await,
    }
}

/// A short commit id for logs.
fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

#[cfg(test)]
mod tests;
