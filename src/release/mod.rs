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
//! 3. only when every server is ready: switch `current` everywhere at once
//!    and restart the workers; then the health check through each web
//!    server's own nginx. A failure switches every server back;
//! 4. finish: a line in each server's release log, and pruning.
//!
//! A failure before the switch leaves `current` untouched and removes the
//! release where it was being prepared.

mod plan;
mod sha;
pub mod source;
mod state;

use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::app::{
    self, AppError, AppTarget, COMMAND_LIMIT, Locked, Lockless, Origin, Progress, Session, Step,
    StepFailure, connect_all, on_every_server, unlock_all,
};
use crate::definitions::{ServerName, SharedKind};
use crate::transport::{Connector, Input};

pub use plan::{ReleasePlan, keep, plan, rollback_target};
pub use sha::Sha;
pub use source::{Archive, Limits, SourceError, mirror_path};
pub use state::{LogEntry, LogResult, ServerReleases};

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
    #[error(transparent)]
    App(#[from] AppError),
    #[error("{} failed on {}; nothing was switched\n{}", .0.step, .0.server, .0.output)]
    NotPrepared(StepFailure),
    #[error("{}", rolled_back(.failure, .previous.as_ref(), .not_back))]
    RolledBack {
        failure: StepFailure,
        /// What the servers went back to (none: no release).
        previous: Option<Sha>,
        /// Servers that could not be switched back, with why.
        not_back: Vec<(ServerName, String)>,
    },
    #[error("nothing to roll back to: {0}")]
    NothingToRollBackTo(String),
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
    let mut text = format!(
        "the release went live but failed on {} ({})",
        failure.server, failure.step
    );
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

/// A release that went live.
#[derive(Debug, Clone)]
pub struct Released {
    pub sha: Sha,
    /// What was live before, per server.
    pub previous: Vec<(ServerName, Option<Sha>)>,
    /// Servers where it was already complete: nothing was uploaded.
    pub reused: Vec<ServerName>,
    /// Release directories pruned, and those that could not be (with why).
    pub pruned: usize,
    pub prune_failed: Vec<(ServerName, Sha, String)>,
    /// Servers whose workers did not restart on it, with why.
    pub workers_failed: Vec<(ServerName, String)>,
    pub elapsed: Duration,
}

/// One release or rollback in progress: its session and its servers.
struct Run<'a> {
    session: Session<'a>,
    locked: Vec<Locked>,
    states: Vec<ServerReleases>,
}

impl<'a> Run<'a> {
    /// Connects to every server of `target` and takes the app lock on all,
    /// for a release of `sha` (a rollback learns its target later).
    async fn start(
        target: &'a AppTarget,
        sha: Option<&Sha>,
        origin: &'a Origin,
        progress: &'a dyn Progress,
        connector: &dyn Connector,
    ) -> Result<Run<'a>, ReleaseError> {
        let mut session =
            Session::new(&target.app, RELEASE_SH, origin, progress).map_err(AppError::from)?;
        session.set("HEALTH_TRIES", HEALTH_TRIES.to_string());
        if let Some(sha) = sha {
            session.set("SHA", sha.as_str());
        }
        let hosts = connect_all(target, connector).await?;
        let locked = session.lock_all(hosts).await?;
        let states = locked
            .iter()
            .map(|l| ServerReleases::from_records(&l.state))
            .collect();
        Ok(Run {
            session,
            locked,
            states,
        })
    }

    fn servers(&self) -> Vec<(ServerName, &ServerReleases)> {
        self.locked
            .iter()
            .zip(&self.states)
            .map(|(l, s)| (l.host.server.name.clone(), s))
            .collect()
    }

    async fn step(
        &self,
        l: &Locked,
        step: Step,
        call: &[&str],
        input: Input<'_>,
        limit: Duration,
    ) -> Result<Vec<crate::remote::Record>, StepFailure> {
        self.session
            .step(&l.host, step, call, input, limit)
            .await
            .map_err(|output| StepFailure {
                server: l.host.server.name.clone(),
                step,
                output,
            })
    }

    /// Prepares the release on `l`'s server.
    async fn prepare(&self, l: &Locked, archive: &Archive) -> Result<(), StepFailure> {
        let app = self.session.app;
        let size = archive.size.to_string();
        self.step(
            l,
            Step::Upload,
            &["release_upload", &size, &archive.sha256],
            Input::File(&archive.path),
            Duration::from_secs(UPLOAD_LIMIT + 60),
        )
        .await?;
        if !app.shared.is_empty() {
            let mut call = vec!["release_shared"];
            for shared in &app.shared {
                call.push(match shared.kind() {
                    SharedKind::Dir => "dir",
                    SharedKind::File => "file",
                });
                call.push(&shared.path);
            }
            self.step(
                l,
                Step::Shared,
                &call,
                Input::None,
                Duration::from_secs(150),
            )
            .await?;
        }
        let composer = app.composer.as_ref().map(|c| format!("composer {c}"));
        let build: Vec<&str> = composer
            .iter()
            .chain(&app.release_commands)
            .map(String::as_str)
            .collect();
        let deploy: Vec<&str> = l
            .host
            .role
            .deploy_commands
            .iter()
            .map(String::as_str)
            .collect();
        for (step, commands) in [(Step::Build, build), (Step::Deploy, deploy)] {
            if commands.is_empty() {
                continue;
            }
            let limit = COMMAND_LIMIT.to_string();
            let name = step.to_string();
            let mut call = vec!["release_commands", name.as_str(), limit.as_str()];
            call.extend(commands.iter().copied());
            let total = Duration::from_secs((COMMAND_LIMIT + 10) * commands.len() as u64);
            self.step(l, step, &call, Input::None, total).await?;
        }
        self.step(
            l,
            Step::Complete,
            &["release_complete"],
            Input::None,
            Duration::from_secs(30),
        )
        .await?;
        Ok(())
    }

    /// Switches every server to `to` (`None`: no release), all at once:
    /// the servers whose switch failed, and those whose workers did not
    /// restart (they switched).
    async fn switch_all(
        &self,
        to: impl Fn(&ServerName) -> Option<Sha>,
    ) -> (Vec<StepFailure>, Vec<(ServerName, String)>) {
        let steps = self.locked.iter().map(|l| {
            let target = to(&l.host.server.name);
            async move {
                let call = match &target {
                    Some(sha) => vec!["release_switch", sha.as_str()],
                    None => vec!["release_unswitch"],
                };
                let limit = SWITCH_LIMIT + app::worker_limit(&l.host.role);
                let result = self
                    .step(
                        l,
                        Step::Switch,
                        &call,
                        Input::None,
                        Duration::from_secs(limit),
                    )
                    .await;
                (l.host.server.name.clone(), result)
            }
        });
        let mut failures = Vec::new();
        let mut workers = Vec::new();
        for (server, result) in join_all(steps).await {
            match result {
                Ok(records) => {
                    if let Some(r) = crate::remote::first(&records, "workers-failed") {
                        workers.push((server, r.text(1).into_owned()));
                    }
                }
                Err(failure) => failures.push(failure),
            }
        }
        (failures, workers)
    }

    /// The health check on every web server of the app; the first failure.
    async fn health_all(&self) -> Option<StepFailure> {
        let app = self.session.app;
        let domain = app.domains.first()?;
        let (path, status) = match &app.health_check {
            Some(h) => (h.path.clone(), h.status.to_string()),
            None => ("/".to_owned(), "-".to_owned()),
        };
        let results = join_all(
            self.locked
                .iter()
                .filter(|l| l.host.role.web.is_some())
                .map(|l| {
                    let call = [
                        "release_health",
                        domain.as_str(),
                        path.as_str(),
                        status.as_str(),
                    ];
                    async move {
                        self.step(l, Step::Health, &call, Input::None, Duration::from_secs(60))
                            .await
                    }
                }),
        )
        .await;
        results.into_iter().find_map(Result::err)
    }

    /// Switches to `sha` everywhere and checks health; on a failure,
    /// switches every server back to what it had (`plan.back`). What the
    /// workers said, when they did not restart.
    async fn go_live(&self, plan: &ReleasePlan) -> Result<Vec<(ServerName, String)>, ReleaseError> {
        let (failures, workers) = self.switch_all(|_| Some(plan.sha.clone())).await;
        let failure = match failures.into_iter().next() {
            Some(failure) => Some(failure),
            None => self.health_all().await,
        };
        let Some(failure) = failure else {
            return Ok(workers);
        };
        let (not_back, _) = self
            .switch_all(|server| plan.back.get(server).cloned().flatten())
            .await;
        for failed in &not_back {
            tracing::error!(server = %failed.server, output = %failed.output, "switching back failed");
        }
        let previous = plan.back.values().next().cloned().flatten();
        Err(ReleaseError::RolledBack {
            failure,
            previous,
            not_back: not_back.into_iter().map(|f| (f.server, f.output)).collect(),
        })
    }

    /// A line in each server's release log, then pruning to what
    /// `plan::keep` keeps there: the directories pruned, and those that
    /// could not be.
    async fn finish_all(
        &self,
        sha: &Sha,
        result: LogResult,
        live: impl Fn(usize) -> Option<Sha>,
        elapsed: Duration,
    ) -> (usize, Vec<(ServerName, Sha, String)>) {
        let keep_count = self.session.app.keep_releases;
        let origin = self.session.origin();
        let results = join_all(self.locked.iter().zip(&self.states).enumerate().map(
            |(i, (l, state))| {
                let entry = LogEntry {
                    sha: sha.clone(),
                    time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    trigger: origin.trigger.to_string(),
                    result,
                    duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    who: origin.who.clone(),
                    previous: state.live.clone(),
                };
                let line = serde_json::to_string(&entry).unwrap_or_default();
                let mut log = state.log.clone();
                log.push(entry);
                let now_live = live(i);
                let kept = keep(state, now_live.as_ref(), &log, keep_count);
                async move {
                    let mut call = vec!["release_finish".to_owned(), line];
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
                        failed.push((server.clone(), sha, r.text(1).into_owned()))
                    }
                    _ => {}
                }
            }
        }
        (pruned, failed)
    }

    /// Removes the release where this run prepared it.
    async fn discard(&self, prepared: &[ServerName]) {
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

/// Releases `archive` (a commit's tree, made once whatever the number of
/// servers) of `target`.
pub async fn release(
    target: &AppTarget,
    archive: &Archive,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let run = Run::start(target, Some(&archive.sha), origin, progress, connector).await?;
    let plan = plan(&archive.sha, &run.servers());
    for server in &plan.reuse {
        progress.step(
            server,
            Step::Upload,
            &app::Event::Skipped("already complete"),
        );
    }
    let prepared = join_all(
        run.locked
            .iter()
            .filter(|l| plan.prepare.contains(&l.host.server.name))
            .map(|l| run.prepare(l, archive)),
    )
    .await;
    let outcome = match prepared.into_iter().find_map(Result::err) {
        Some(failure) => {
            run.discard(&plan.prepare).await;
            let live = |i: usize| run.states[i].live.clone();
            run.finish_all(&archive.sha, LogResult::Failed, live, started.elapsed())
                .await;
            Err(ReleaseError::NotPrepared(failure))
        }
        None => match run.go_live(&plan).await {
            Ok(workers_failed) => {
                let live = |_: usize| Some(archive.sha.clone());
                let (pruned, prune_failed) = run
                    .finish_all(&archive.sha, LogResult::Live, live, started.elapsed())
                    .await;
                Ok(Released {
                    sha: archive.sha.clone(),
                    previous: run
                        .servers()
                        .into_iter()
                        .map(|(s, st)| (s, st.live.clone()))
                        .collect(),
                    reused: plan.reuse.clone(),
                    pruned,
                    prune_failed,
                    workers_failed,
                    elapsed: started.elapsed(),
                })
            }
            Err(e) => {
                let live = |i: usize| run.states[i].live.clone();
                run.finish_all(&archive.sha, LogResult::RolledBack, live, started.elapsed())
                    .await;
                Err(e)
            }
        },
    };
    unlock_all(run.locked).await;
    outcome
}

/// Resolves `rev` in the app's mirror in `cache` and archives it,
/// checked against the app's limits. Blocks on git: call from a blocking
/// thread.
pub fn fetch_and_archive(
    target: &AppTarget,
    cache: &std::path::Path,
    rev: &str,
) -> Result<Archive, SourceError> {
    let mirror = mirror_path(cache, &target.app);
    let sha = source::resolve(&target.app.repo, &mirror, rev)?;
    source::archive(&target.app.repo, &mirror, &sha, Limits::of(&target.app))
}

/// Releases the app's pinned `revision:` unless every server runs it
/// already; `Ok(None)` when nothing was to do.
pub async fn ensure_revision(
    target: &AppTarget,
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Option<Released>, ReleaseError> {
    let Some(revision) = target.app.revision.clone() else {
        return Ok(None);
    };
    let mirror = mirror_path(cache, &target.app);
    let url = target.app.repo.clone();
    let sha = {
        let (url, mirror) = (url.clone(), mirror.clone());
        blocking(move || source::resolve(&url, &mirror, &revision)).await?
    };
    let live_everywhere = list(target, connector)
        .await
        .iter()
        .all(|(_, state)| state.as_ref().is_ok_and(|s| s.live.as_ref() == Some(&sha)));
    if live_everywhere {
        return Ok(None);
    }
    // Archived only when some server needs it.
    let limits = Limits::of(&target.app);
    let archive = blocking(move || source::archive(&url, &mirror, &sha, limits)).await?;
    Ok(Some(
        release(target, &archive, origin, connector, progress).await?,
    ))
}

/// What releasing one app's pinned `revision:` did.
#[derive(Debug)]
pub struct Pinned {
    pub app: String,
    pub revision: String,
    /// `None`: it was live on every server already.
    pub result: Result<Option<Released>, ReleaseError>,
}

/// The pinned-release step of every driver (`apply`, `watch`): releases
/// the pinned `revision:` of every app of `definitions` (or of `only`,
/// when it names some) wherever another release is live, one app after
/// another.
pub async fn release_pins(
    definitions: &crate::definitions::Definitions,
    only: &[String],
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Vec<Pinned> {
    let mut done = Vec::new();
    for target in AppTarget::pinned(definitions, only) {
        let result = ensure_revision(&target, cache, origin, connector, progress).await;
        done.push(Pinned {
            app: target.app.name.to_string(),
            revision: target.app.revision.clone().unwrap_or_default(),
            result,
        });
    }
    done
}

/// Runs git work (which blocks) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(SourceError::Interrupted(e.to_string())))
}

/// Makes `to` (or the previous good release) live again on every server.
pub async fn rollback(
    target: &AppTarget,
    to: Option<&str>,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let mut run = Run::start(target, None, origin, progress, connector).await?;
    let outcome = match rollback_target(&run.servers(), to) {
        Err(why) => Err(ReleaseError::NothingToRollBackTo(why)),
        Ok(sha) => {
            run.session.set("SHA", sha.as_str());
            let plan = plan(&sha, &run.servers());
            match run.go_live(&plan).await {
                Ok(workers_failed) => {
                    let live = |_: usize| Some(sha.clone());
                    let (pruned, prune_failed) = run
                        .finish_all(&sha, LogResult::Rollback, live, started.elapsed())
                        .await;
                    Ok(Released {
                        sha: sha.clone(),
                        previous: run
                            .servers()
                            .into_iter()
                            .map(|(s, st)| (s, st.live.clone()))
                            .collect(),
                        reused: Vec::new(),
                        pruned,
                        prune_failed,
                        workers_failed,
                        elapsed: started.elapsed(),
                    })
                }
                Err(e) => Err(e),
            }
        }
    };
    unlock_all(run.locked).await;
    outcome
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
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
