//! Apps as the daemon keeps them: the release each app should run
//! (`release::intent`: its pinned `revision:`, or the newest release its
//! logs say went live) live on every one of its servers.
//!
//! Level-triggered like the hosts' configuration: every app is checked
//! when a commit comes into force and on every drift check, after its
//! servers' configuration (an app waits while one of its hosts has a
//! commit to apply). What a check finds:
//!
//! - converged: nothing to do;
//! - diverged (a new pin, a server that was rebuilt or down during a
//!   release, a release that stopped after switching): repaired on a new
//!   commit and under `--drift correct`; under `--drift warn` reported and
//!   left, except a release the daemon itself left half-done (in flight),
//!   which is always finished;
//! - busy (another release holds the app lock): checked again in ten
//!   seconds;
//! - failed (a server cannot be read, the revision cannot be resolved, the
//!   repair failed): retried with backoff. A release that went live, failed
//!   its health check and went back everywhere is not released again until
//!   the definitions change: each try would serve it for a moment.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use std::collections::BTreeMap;

use tokio::task::JoinSet;

use super::{AppFinished, Drift, Host, InForce, Watch, Why, short};
use crate::app::{AppTarget, Origin, Trigger};
use crate::board::{AppStatus, Board};
use crate::definitions::Definitions;
use crate::definitions::ServerName;
use crate::release::{self, Check, Intended, ReleaseError, Sha, Stop, Verdict};
use crate::transport::Connector;

/// How soon an app whose lock another release holds is checked again.
pub(super) const BUSY_RETRY: Duration = Duration::from_secs(10);

/// One app in the loop.
pub(super) struct AppEntry {
    pub target: AppTarget,
    pub due: Instant,
    pub why: Why,
    pub failures: u32,
    pub running: bool,
    /// A release that went live and failed its health check: not tried
    /// again until the definitions change.
    pub gave_up: Option<Sha>,
}

impl AppEntry {
    /// Every app of `definitions` that runs on a server, due now for
    /// `why`; `running` flags carried over from `before`.
    pub fn all(
        definitions: &Definitions,
        why: Why,
        before: &std::collections::BTreeMap<String, AppEntry>,
    ) -> std::collections::BTreeMap<String, AppEntry> {
        definitions
            .apps
            .iter()
            .filter_map(|a| AppTarget::find(definitions, a.name.as_str()).ok())
            .filter(|t| !t.servers.is_empty())
            .map(|target| {
                let name = target.app.name.to_string();
                let running = before.get(&name).is_some_and(|e| e.running);
                let entry = AppEntry {
                    target,
                    due: Instant::now(),
                    why,
                    failures: 0,
                    running,
                    gave_up: None,
                };
                (name, entry)
            })
            .collect()
    }
}

/// What one app check did.
pub(super) enum AppOutcome {
    /// Every server runs the intended release.
    Converged(Check),
    /// It diverged and was brought to the intended release.
    Repaired(Check, release::Released),
    /// It diverged and was left (`--drift warn`), or a person must say.
    Left(Check),
    /// Another release holds the app lock.
    Busy(Check, String),
    /// The check or the repair failed; `gave_up` names a release that
    /// failed its health check.
    Failed {
        check: Option<Check>,
        message: String,
        gave_up: Option<Sha>,
    },
}

/// What the app task needs, cloned into it.
pub(super) struct AppJob {
    pub target: AppTarget,
    pub cache: PathBuf,
    pub connector: Arc<dyn Connector>,
    /// Repair what diverged (a commit, or `--drift correct`); a release the
    /// daemon left in flight is finished either way.
    pub repair: bool,
    pub gave_up: Option<Sha>,
    pub holder: String,
    pub stop: Stop,
    /// The definitions in force now (the board's): a repair whose app's
    /// servers changed since the job started (an elastic member left or
    /// joined) is not made; the app is checked again.
    pub in_force: crate::board::DefinitionsInForce,
}

impl AppJob {
    /// Whether the app still runs on the servers the job was made for.
    fn servers_unchanged(&self) -> bool {
        let names = |t: &AppTarget| -> Vec<ServerName> {
            t.servers.iter().map(|(s, _)| s.name.clone()).collect()
        };
        let now = self
            .in_force
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        now.and_then(|d| AppTarget::find(&d, self.target.app.name.as_str()).ok())
            .is_some_and(|t| names(&t) == names(&self.target))
    }

    /// Checks the app and repairs it where the job says to.
    pub async fn run(self) -> AppOutcome {
        let check = match release::check(&self.target, &self.cache, self.connector.as_ref()).await {
            Ok(check) => check,
            Err(error) => {
                return AppOutcome::Failed {
                    check: None,
                    message: scrubbed(&self.target, &error),
                    gave_up: None,
                };
            }
        };
        // A release whose guard was cut short (the daemon stopped during
        // its window) is judged on, whatever else the check found.
        let resumed = release::guard_to_resume(&check);
        match &check.verdict {
            Verdict::Converged => AppOutcome::Converged(check),
            Verdict::Unknown { .. } if resumed.is_none() => AppOutcome::Converged(check),
            Verdict::Busy(holder) => {
                let holder = holder.clone();
                AppOutcome::Busy(check, holder)
            }
            Verdict::Unreachable(_) => AppOutcome::Failed {
                message: check.verdict.describe(check.intended.as_ref()),
                check: Some(check),
                gave_up: None,
            },
            Verdict::Diverged { interrupted, .. } | Verdict::Unknown { interrupted } => {
                // What the repair makes live, or judges.
                let resuming = resumed.is_some();
                let releasing =
                    resumed.or_else(|| check.intended.as_ref().map(Intended::sha).cloned());
                if self.gave_up.is_some() && self.gave_up == releasing {
                    let message = format!(
                        "{}; it failed its health check, and is not released again until the definitions change",
                        check.verdict.describe(check.intended.as_ref())
                    );
                    return AppOutcome::Failed {
                        check: Some(check),
                        message,
                        gave_up: self.gave_up,
                    };
                }
                // A release its guard rolled back, by the release logs:
                // held until a person releases it or the pin moves, also
                // across restarts and other commits of the definitions
                // (which forget `gave_up`). Told as a failed release, not
                // a new rollback.
                if let Some(sha) = releasing.as_ref().filter(|_| !resuming) {
                    let states: Vec<&release::ServerReleases> = check
                        .servers
                        .iter()
                        .filter_map(|(_, state)| state.as_ref().ok())
                        .collect();
                    if let Some(reason) = release::guard_refused(&states, sha) {
                        let message = format!(
                            "{}; its guard rolled {} back ({reason}): it is released again only by \
                             `reconciler release` or when the pin names another commit",
                            check.verdict.describe(check.intended.as_ref()),
                            sha.short()
                        );
                        return AppOutcome::Failed {
                            check: Some(check),
                            message,
                            gave_up: None,
                        };
                    }
                }
                if !self.repair && interrupted.is_empty() {
                    return AppOutcome::Left(check);
                }
                if !self.servers_unchanged() {
                    return AppOutcome::Busy(
                        check,
                        "its servers changed since the check began".into(),
                    );
                }
                let origin = Origin {
                    who: self.holder.clone(),
                    trigger: match check.intended {
                        Some(Intended::Pinned { .. }) => Trigger::Definitions,
                        _ => Trigger::Repair,
                    },
                };
                let repaired = release::repair(
                    &self.target,
                    &check,
                    &self.cache,
                    &origin,
                    self.connector.as_ref(),
                    &(),
                    &self.stop,
                )
                .await;
                match repaired {
                    Ok(released) => AppOutcome::Repaired(check, released),
                    Err(error) => {
                        // Failed its health check and every server went
                        // back: the release itself is at fault. A server
                        // that could not go back (down meanwhile) is
                        // retried instead.
                        let gave_up = matches!(
                            &error,
                            ReleaseError::RolledBack { not_back, .. } if not_back.is_empty()
                        )
                        .then_some(releasing)
                        .flatten();
                        AppOutcome::Failed {
                            message: scrubbed(&self.target, &error),
                            check: Some(check),
                            gave_up,
                        }
                    }
                }
            }
        }
    }
}

/// An error's chain, without the credentials of the app's repository and
/// with control bytes made visible.
fn scrubbed(target: &AppTarget, error: &dyn std::error::Error) -> String {
    crate::text::visible(&crate::redact::scrub(
        &crate::error_chain(error),
        target.app.repo.as_str(),
    ))
    .into_owned()
}

/// The board's record of an app after `outcome`, with the failures in a
/// row and the next try.
pub(super) fn record(
    board: &Board,
    app: &str,
    outcome: &AppOutcome,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) {
    let (check, state, message) = match outcome {
        AppOutcome::Converged(check) => {
            let (state, message) = match (&check.intended, &check.verdict) {
                (None, Verdict::Unknown { interrupted }) if !interrupted.is_empty() => {
                    ("diverged", check.verdict.describe(None))
                }
                (None, _) => ("unreleased", "no release is known to have gone live".into()),
                _ => ("converged", String::new()),
            };
            (Some(check), state, message)
        }
        AppOutcome::Repaired(check, released) => (
            Some(check),
            "repaired",
            format!(
                "{}; {} is live on every server",
                check.verdict.describe(check.intended.as_ref()),
                released.sha.short()
            ),
        ),
        AppOutcome::Left(check) => (
            Some(check),
            "diverged",
            format!(
                "{} (left alone: --drift warn)",
                check.verdict.describe(check.intended.as_ref())
            ),
        ),
        AppOutcome::Busy(check, holder) => (
            Some(check),
            "busy",
            format!("the app lock is held by {holder}; checking again shortly"),
        ),
        AppOutcome::Failed { check, message, .. } => (check.as_ref(), "failed", message.clone()),
    };
    let converged = matches!(state, "converged" | "repaired" | "unreleased");
    board.app_converged(app, converged);
    // The release logs the check read: the dashboard's release history.
    for (server, state) in check.iter().flat_map(|c| &c.servers) {
        if let Ok(state) = state {
            board.release_logs(app, server.as_str(), &state.log, now);
        }
    }
    board.update(now, |s| {
        let entry = s
            .apps
            .entry(app.to_owned())
            .or_insert_with(AppStatus::default);
        entry.state = state.to_owned();
        entry.message = crate::text::visible(&message).into_owned();
        entry.last_at = Some(now);
        entry.failures = failures;
        entry.retry_at = retry_at;
        if let Some(check) = check {
            entry.intended = check.intended.as_ref().map(ToString::to_string);
            for (server, state) in &check.servers {
                // A server that cannot be read keeps what it last said.
                if let Ok(state) = state {
                    entry.live.insert(
                        server.to_string(),
                        state.live.as_ref().map(|s| s.as_str().to_owned()),
                    );
                }
            }
            entry
                .live
                .retain(|server, _| check.servers.iter().any(|(s, _)| s.as_str() == server));
        }
        if let AppOutcome::Repaired(_, released) = outcome {
            for (server, _) in &released.previous {
                entry
                    .live
                    .insert(server.to_string(), Some(released.sha.as_str().to_owned()));
            }
        }
    });
}

impl Watch {
    /// Starts every app that is due and whose servers have their commit
    /// applied, up to `parallel` at once.
    pub(super) fn start_due_apps(
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
                in_force: Arc::clone(&self.board.definitions),
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
    pub(super) fn app_finished(
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
                entry.due = Instant::now() + BUSY_RETRY;
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
        self.notify_app(&done, entry.failures);
        record(
            &self.board,
            &done.app,
            &done.outcome,
            entry.failures,
            retry_at,
            now,
        );
    }
}

impl Watch {
    /// Word of an app check's outcome for the app's `notify:`: a release
    /// made live, one rolled back (its health check or guard failed it),
    /// or a release that failed (the first failure in a row).
    fn notify_app(&self, done: &AppFinished, failures: u32) {
        use crate::definitions::NotifyEvent;
        let (event, message, commit) = match &done.outcome {
            AppOutcome::Repaired(_, released) => (
                NotifyEvent::ReleaseLive,
                format!(
                    "{} {} is live on every server",
                    done.app,
                    released.sha.short()
                ),
                Some(released.sha.to_string()),
            ),
            AppOutcome::Failed {
                message,
                gave_up: Some(sha),
                ..
            } if failures == 1 => (
                NotifyEvent::RolledBack,
                format!("{} {} was rolled back: {message}", done.app, sha.short()),
                Some(sha.to_string()),
            ),
            AppOutcome::Failed { message, .. } if failures == 1 => (
                NotifyEvent::ReleaseFailed,
                format!("{}: {message}", done.app),
                None,
            ),
            _ => return,
        };
        let mut notice = crate::notify::Notice::new(event, message);
        notice.app = Some(done.app.clone());
        notice.commit = commit;
        self.notify(|d| crate::notify::app_targets(d, &done.app), event, notice);
    }
}
