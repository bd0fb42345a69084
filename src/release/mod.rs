//! Releases: one commit of an app on every server it runs on, switched live
//! on all of them together, or nowhere.
//!
//! - `source`: the app's git mirror and the commit's archive, checked
//!   (no submodule or LFS pointer left out, the app's size limits) and
//!   streamed from a file;
//! - `plan`: what happens on each server, decided from what the servers
//!   reported (where to prepare, what each goes back to, what is kept);
//! - this module: the steps, each a round trip per server under the app
//!   lock (`app::Session`), with the shell side in `release.sh`:
//!
//! 1. lock: take the app lock and learn what the server has;
//! 2. prepare, in parallel, where the release is not complete: upload and
//!    unpack, link the shared paths, build (composer, `release_commands`),
//!    run the server's `deploy_commands`, record the release complete;
//! 3. only when every server is ready: warm each web server's OPcache
//!    with the release's PHP files (`warm`; never a reason to stop), then
//!    switch `current` everywhere at once
//!    and restart the workers; then the health check through each web
//!    server's own nginx. A failure switches every server back;
//! 4. with `guard:`, the release's real traffic for the guard's window
//!    (`guard`): a rise in 5xx fails it like a failed health check;
//! 5. finish: a line in each server's release log, and pruning.
//!
//! A failure before the switch leaves `current` untouched and removes the
//! release where it was being prepared.

mod ensure;
mod finish;
mod guard;
pub mod intent;
mod plan;
mod run;
mod sha;
pub mod source;
mod state;
mod warm;

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::app::{
    self, AppError, AppTarget, Lockless, Origin, Progress, Step, StepFailure, on_every_server,
    unlock_all,
};
use crate::definitions::{AppName, ServerName};
use crate::transport::Connector;

use run::Run;

pub use ensure::{Check, Pinned, check, fetch_and_archive, release_pins, repair};
pub use guard::{GUARD_INTERVAL, judge};
pub use intent::{Intended, Verdict, guard_refused};
pub use plan::{ReleasePlan, keep, plan, rollback_target};
pub use sha::Sha;
pub use source::{Archive, Limits, SourceError, mirror_path};
pub use state::{InFlight, LogEntry, LogResult, ServerReleases};
pub use warm::{Fill, WARM_SECONDS, Warmed};

const RELEASE_SH: &str = include_str!("release.sh");

/// Seconds an upload may take to unpack.
const UPLOAD_LIMIT: u64 = 600;
/// Seconds a switch, with the workers' restart, may take.
const SWITCH_LIMIT: u64 = 120;
/// Tenths of a second the health check is retried: 10 s.
const HEALTH_TRIES: u32 = 100;

/// Why a release or rollback did not go live.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// Work on the app could not start: a server could not be reached,
    /// another run holds the app lock, the lock step failed, or the run's
    /// secret could not be made. Nothing changed.
    #[error(transparent)]
    App(#[from] AppError),
    /// A server failed to prepare the release (the first failure found);
    /// `current` was switched nowhere and the release was removed where
    /// it was being prepared.
    #[error("{} failed on {}; nothing was switched\n{}", .0.step, .0.server, .0.output)]
    NotPrepared(StepFailure),
    /// The switch failed on a server, or the release went live and failed
    /// its health check or its guard: every server was switched back to
    /// what it had, except `not_back`. (Workers that did not restart fail
    /// nothing: see [`Released::workers_failed`].)
    #[error("{}", rolled_back(.failure, .previous.as_ref(), .not_back))]
    RolledBack {
        /// The step that failed, on which server, with its output (the
        /// guard's verdict for a guard).
        failure: StepFailure,
        /// What the servers went back to (none: no release).
        previous: Option<Sha>,
        /// Servers that could not be switched back, with why.
        not_back: Vec<(ServerName, String)>,
    },
    /// `current` is no link on some servers (an adopted app's directory):
    /// refused before anything is uploaded or switched.
    #[error("{}", not_links(.app, .found))]
    CurrentNotALink {
        /// The app being released.
        app: AppName,
        /// Per server, what stands at `current` (`directory`, `file`).
        found: Vec<(ServerName, &'static str)>,
        /// How to hand it over, naming the app.
        hint: String,
    },
    /// A stop came during the guard's window: the release is live on
    /// every server, unjudged, and each keeps its in-flight record with
    /// the guard's, so that the next check (the daemon's, or `apply`'s)
    /// judges it on from the traffic since the switch.
    #[error(
        "stopped during the guard's window: {} stays live, and the next check judges it on from its traffic since the switch",
        .0.short()
    )]
    GuardStopped(Sha),
    /// A rollback found no release to go to: the one asked for (by a
    /// commit id or prefix) or the previous good one is not complete on
    /// every server; the text says which. Nothing was switched.
    #[error("nothing to roll back to: {0}")]
    NothingToRollBackTo(String),
    /// What the servers hold does not allow this now (a repair whose
    /// decision no longer holds under the lock, a guard that cannot be
    /// resumed, an app that is neither converged nor diverged): the text
    /// says why. Nothing was changed.
    #[error("cannot release now: {0}")]
    Unready(String),
    /// `stop` came before the switch: nothing went live, the release was
    /// removed where it was being prepared and logged failed.
    #[error(
        "stopped before the switch: nothing went live, and the release was removed where it was being prepared"
    )]
    Stopped,
    /// The app's commit could not be fetched, archived or checked (see
    /// [`SourceError`]): nothing was uploaded.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// What a release that failed after its switch says: only what happened.
fn rolled_back(
    failure: &StepFailure,
    previous: Option<&Sha>,
    not_back: &[(ServerName, String)],
) -> String {
    let to = previous.map_or("no release".to_owned(), |s| s.short().to_owned());
    // A switch that failed on a server did not go live there.
    let mut text = if failure.step == Step::Switch {
        format!("the switch failed on {}", failure.server)
    } else {
        format!(
            "the release went live but failed on {} ({})",
            failure.server, failure.step
        )
    };
    if not_back.is_empty() {
        text.push_str(&format!(", so every server went back to {to}"));
    } else {
        let names: Vec<String> = not_back.iter().map(|(s, _)| s.to_string()).collect();
        text.push_str(&format!(
            "; the servers went back to {to} except {}, which may still serve it:",
            names.join(", ")
        ));
        for (server, why) in not_back {
            text.push_str(&format!("\n  {server}: {why}"));
        }
    }
    text.push('\n');
    text.push_str(&failure.output);
    text
}

/// What a release refused for `current`s that are no links says.
fn not_links(app: &AppName, found: &[(ServerName, &'static str)]) -> String {
    let current = crate::layout::AppPaths::new(app).current;
    let mut kinds: Vec<&str> = found.iter().map(|(_, kind)| *kind).collect();
    kinds.dedup();
    let on = if let [kind] = kinds[..] {
        let servers: Vec<String> = found.iter().map(|(s, _)| s.to_string()).collect();
        format!("is a {kind} on {}", servers.join(", "))
    } else {
        let each: Vec<String> = found.iter().map(|(s, k)| format!("{s} (a {k})")).collect();
        format!("is no link on {}", each.join(", "))
    };
    format!(
        "`{current}` {on}, not a link to one of {app}'s releases: a release would replace what \
         it serves, so none was made (nothing was uploaded or changed)"
    )
}

/// The way to hand an adopted app's `current` to releases, keeping it
/// served until one switches.
fn adopt_hint(app: &AppName) -> String {
    format!(
        "to hand it to releases and keep serving it until one switches, run as {app} on each of \
         those servers `{}`, then release again (remove current.adopted once a release is live)",
        crate::layout::AppPaths::new(app).adopt_current()
    )
}

/// A release that went live.
#[derive(Debug, Clone)]
pub struct Released {
    /// The commit now live on every server.
    pub sha: Sha,
    /// What was live before, per server.
    pub previous: Vec<(ServerName, Option<Sha>)>,
    /// Servers where it was already complete: nothing was uploaded.
    pub reused: Vec<ServerName>,
    /// Release directories pruned, and those that could not be (with why).
    pub pruned: usize,
    /// Per release directory left in place: its server, its commit, and
    /// the server's reason.
    pub prune_failed: Vec<(ServerName, Sha, String)>,
    /// Servers whose workers did not restart on it, with why.
    pub workers_failed: Vec<(ServerName, String)>,
    /// Per web server, what warming OPcache did before the switch, or why
    /// it could not (`opcache_prewarm`; none when it is off).
    pub warmed: Vec<(ServerName, Result<Warmed, String>)>,
    /// Wall time from the start of the run (the app locks included) to
    /// after the release logs and pruning.
    pub elapsed: Duration,
}

/// Asks a release to stop: before its switch it stops at once, removes
/// what it prepared and logs itself failed; once it has switched it
/// finishes (its health check, and going back when that fails), so that
/// no server is left on a release nobody checked.
pub type Stop = tokio_util::sync::CancellationToken;

/// Releases `archive` (a commit's tree, made once whatever the number of
/// servers) of `target`.
///
/// # Errors
/// The app could not be locked everywhere (`App`), a server failed to
/// prepare it (`NotPrepared`: nothing switched), `stop` came before the
/// switch (`Stopped`), or it went live and failed its health check
/// (`RolledBack`, with the servers that could not go back).
pub async fn release(
    target: &AppTarget,
    archive: &Archive,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<Released, ReleaseError> {
    release_if(target, archive, origin, connector, progress, stop, &|_| {
        Ok(())
    })
    .await
}

/// A condition on what the servers have, checked under the app lock
/// before anything changes: a repair decided from a read without the lock
/// checks that its decision still holds. `Err` says why not.
type Still<'a> = &'a (dyn Fn(&[(ServerName, &ServerReleases)]) -> Result<(), String> + Sync);

/// `release`, when `still` holds under the lock (else `Unready`).
async fn release_if(
    target: &AppTarget,
    archive: &Archive,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
    stop: &Stop,
    still: Still<'_>,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let mut run = Run::start(target, Some(&archive.sha), origin, progress, connector).await?;
    run.stop = stop.clone();
    if let Err(why) = still(&run.servers()) {
        unlock_all(run.locked).await;
        return Err(ReleaseError::Unready(why));
    }
    let plan = plan(&archive.sha, &run.servers());
    for server in &plan.reuse {
        progress.step(
            server,
            Step::Upload,
            &app::Event::Skipped("already complete"),
        );
    }
    let prepare = join_all(
        run.locked
            .iter()
            .filter(|l| plan.prepare.contains(&l.host.server.name))
            .map(|l| run.prepare(l, archive)),
    );
    let prepared = tokio::select! {
        biased;
        () = stop.cancelled() => None,
        prepared = prepare => Some(prepared),
    };
    let failure = match prepared {
        None => Some(ReleaseError::Stopped),
        Some(prepared) => prepared
            .into_iter()
            .find_map(Result::err)
            .map(ReleaseError::NotPrepared),
    }
    .or_else(|| stop.is_cancelled().then_some(ReleaseError::Stopped));
    let outcome = match failure {
        Some(error) => {
            run.discard(&plan.prepare).await;
            let live = |i: usize| run.states[i].live.clone();
            run.finish_all(
                &archive.sha,
                LogResult::Failed,
                live,
                started.elapsed(),
                None,
                &[],
            )
            .await;
            Err(error)
        }
        None => run.go_to(&plan, LogResult::Live, started).await,
    };
    unlock_all(run.locked).await;
    outcome
}

/// Makes `to` (or the previous good release) live again on every server.
///
/// # Errors
/// As `release`; and `NothingToRollBackTo` when no such release is
/// complete on every server.
pub async fn rollback(
    target: &AppTarget,
    to: Option<&str>,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Released, ReleaseError> {
    switch_to(
        target,
        to,
        LogResult::Rollback,
        origin,
        connector,
        progress,
        &|_| Ok(()),
    )
    .await
}

/// Switches every server to `to` (a release complete everywhere, by its
/// commit id or a prefix; or the previous good release) and logs it as
/// `result`, when `still` holds under the lock (else `Unready`):
/// nothing is uploaded.
async fn switch_to(
    target: &AppTarget,
    to: Option<&str>,
    result: LogResult,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
    still: Still<'_>,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let mut run = Run::start(target, None, origin, progress, connector).await?;
    let outcome = match still(&run.servers()).and(Ok(())) {
        Err(why) => Err(ReleaseError::Unready(why)),
        Ok(()) => match rollback_target(&run.servers(), to) {
            Err(why) => Err(ReleaseError::NothingToRollBackTo(why)),
            Ok(sha) => {
                run.session.set("SHA", sha.as_str());
                let plan = plan(&sha, &run.servers());
                run.go_to(&plan, result, started)
                    .await
                    .map(|released| Released {
                        reused: Vec::new(),
                        ..released
                    })
            }
        },
    };
    unlock_all(run.locked).await;
    outcome
}

/// Goes on with the guard of a release whose client stopped during its
/// guard window (`ReleaseError::GuardStopped`, or killed): under the app
/// lock, the health check again, then the guard for what is left of its
/// window from where its in-flight records say it stood (at least one
/// read, judging the traffic since the switch); then logged `live`, or
/// rolled back everywhere with the reason.
///
/// # Errors
/// As `release`; `Unready` when the servers no longer hold one guarded
/// release in flight (why).
pub async fn resume_guard(
    target: &AppTarget,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let mut run = Run::start(target, None, origin, progress, connector).await?;
    run.stop = stop.clone();
    let outcome = match guard::Guarding::resumed(&run.servers()) {
        Err(why) => Err(ReleaseError::Unready(format!(
            "the guard cannot be resumed: {why}"
        ))),
        Ok((sha, guarding)) => {
            tracing::info!(sha = %sha.short(), until = %guarding.until, "resuming the guard of a release whose client stopped");
            run.session.set("SHA", sha.as_str());
            // The run goes on from before the switch: each server's state
            // as the release found it.
            for state in &mut run.states {
                if let Some(in_flight) = state.in_flight.take() {
                    state.live = in_flight.previous;
                }
            }
            let plan = plan(&sha, &run.servers());
            run.resume(&plan, guarding, started).await
        }
    };
    unlock_all(run.locked).await;
    outcome
}

/// The release whose guard `check` found cut short (every server serves
/// it and keeps its in-flight record with the guard's), unless the app
/// pins another commit: `resume_guard` judges it on.
pub fn guard_to_resume(check: &Check) -> Option<Sha> {
    let servers: Vec<(ServerName, &ServerReleases)> = check
        .servers
        .iter()
        .map(|(server, state)| Some((server.clone(), state.as_ref().ok()?)))
        .collect::<Option<_>>()?;
    if servers.iter().any(|(_, s)| s.locked_by.is_some()) {
        return None;
    }
    let (sha, _) = guard::Guarding::resumed(&servers).ok()?;
    match &check.intended {
        Some(Intended::Pinned { sha: pinned, .. }) if *pinned != sha => None,
        _ => Some(sha),
    }
}

/// What every server of `target` has: per server, its releases or why it
/// could not say.
pub async fn list(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Vec<(ServerName, Result<ServerReleases, String>)> {
    let work = Lockless {
        body: RELEASE_SH,
        vars: &[],
        call: &["release_list"],
        limit: Duration::from_secs(60),
    };
    on_every_server(target, connector, &work)
        .await
        .into_iter()
        .map(|(server, r)| {
            (
                server,
                r.map(|records| ServerReleases::from_records(&records)),
            )
        })
        .collect()
}

/// Breaks the app lock on every server of `target`; per server, whose
/// lock was broken, if any.
pub async fn force_unlock(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Vec<(ServerName, Result<Option<String>, String>)> {
    let work = Lockless {
        body: RELEASE_SH,
        vars: &[],
        call: &["force_unlock"],
        limit: Duration::from_secs(30),
    };
    on_every_server(target, connector, &work)
        .await
        .into_iter()
        .map(|(server, r)| {
            let broken = r.map(|records| {
                crate::remote::first(&records, "unlocked")
                    .map(|r| r.text(1).into_owned())
                    .filter(|holder| !holder.is_empty())
            });
            (server, broken)
        })
        .collect()
}

impl crate::Hint for ReleaseError {
    fn hint(&self) -> Option<&str> {
        match self {
            ReleaseError::App(e) => e.hint(),
            ReleaseError::Source(e) => e.hint(),
            ReleaseError::CurrentNotALink { hint, .. } => Some(hint),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
