//! One release or rollback in progress, and its steps: each a round trip
//! per server under the app lock, run on every server in parallel.

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::guard::{Guarding, Judged};
use super::state::InFlight;
use super::{
    Archive, HEALTH_TRIES, LogResult, RELEASE_SH, ReleaseError, ReleasePlan, Released,
    SWITCH_LIMIT, ServerReleases, Sha, UPLOAD_LIMIT,
};
use crate::app::{
    self, AppError, AppTarget, COMMAND_LIMIT, Locked, Origin, Progress, Session, Step, StepFailure,
    connect_all,
};
use crate::definitions::{Guard, ReleaseLayout, ServerName, SharedKind};
use crate::transport::{Connector, Input};

/// One release or rollback in progress: its session and its servers.
pub(super) struct Run<'a> {
    pub session: Session<'a>,
    pub locked: Vec<Locked>,
    pub states: Vec<ServerReleases>,
    /// Asks the run to stop: before the switch it stops; after it, a
    /// guard window is cut short (the release passed its health check).
    pub stop: super::Stop,
    /// With `release_layout: ab`: seconds to wait after `current` left the
    /// idle side before rewriting it (`AppTarget::ab_wait`).
    pub ab_wait: u64,
}

/// reconciler's A/B release writer (`ab-sync.php`) as `php -n -r` takes
/// it: without its `<?php` line. Arguments: `STAGING SIDE MANIFEST`.
fn ab_sync_script() -> &'static str {
    const SCRIPT: &str = include_str!("ab-sync.php");
    SCRIPT.strip_prefix("<?php\n").unwrap_or(SCRIPT)
}

impl<'a> Run<'a> {
    /// Connects to every server of `target` and takes the app lock on all,
    /// for a release of `sha` (a rollback learns its target later).
    pub(super) async fn start(
        target: &'a AppTarget,
        sha: Option<&Sha>,
        origin: &'a Origin,
        progress: &'a dyn Progress,
        connector: &dyn Connector,
    ) -> Result<Run<'a>, ReleaseError> {
        let mut session =
            Session::new(&target.app, RELEASE_SH, origin, progress).map_err(AppError::from)?;
        session.set("HEALTH_TRIES", HEALTH_TRIES.to_string());
        session.set("FASTCGI_CLIENT", crate::facts::fastcgi_client());
        session.set(
            "LAYOUT",
            match target.app.release_layout {
                ReleaseLayout::Releases => "releases",
                ReleaseLayout::Ab => "ab",
            },
        );
        if target.app.release_layout == ReleaseLayout::Ab {
            session.set("AB_SYNC", ab_sync_script());
        }
        if let Some(sha) = sha {
            session.set("SHA", sha.as_str());
        }
        let hosts = connect_all(target, connector).await?;
        let locked = session.lock_all(hosts).await?;
        let states: Vec<ServerReleases> = locked
            .iter()
            .map(|l| ServerReleases::from_records(&l.state))
            .collect();
        // A directory at `current` (an adopted app) is served as it is: a
        // switch could only fail on it, after every upload.
        let found: Vec<(ServerName, &'static str)> = locked
            .iter()
            .zip(&states)
            .filter_map(|(l, s)| Some((l.host.server.name.clone(), s.current_not_link?)))
            .collect();
        if !found.is_empty() {
            app::unlock_all(locked).await;
            let app = target.app.name.clone();
            return Err(ReleaseError::CurrentNotALink {
                hint: super::adopt_hint(&app),
                app,
                found,
            });
        }
        Ok(Run {
            session,
            locked,
            states,
            stop: super::Stop::new(),
            ab_wait: target.ab_wait,
        })
    }

    pub(super) fn servers(&self) -> Vec<(ServerName, &ServerReleases)> {
        self.locked
            .iter()
            .zip(&self.states)
            .map(|(l, s)| (l.host.server.name.clone(), s))
            .collect()
    }

    pub(super) async fn step(
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
    pub(super) async fn prepare(&self, l: &Locked, archive: &Archive) -> Result<(), StepFailure> {
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
        if app.release_layout == ReleaseLayout::Ab {
            let php = format!("/usr/bin/php{}", app.php);
            let wait = self.ab_wait.to_string();
            self.step(
                l,
                Step::Side,
                &["release_side", &php, &wait],
                Input::None,
                Duration::from_secs(self.ab_wait + 630),
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
    /// restart (they switched). A switch `Way::Forward` leaves each server
    /// the record of this release in flight (with its guard's), which the
    /// finish removes.
    pub(super) async fn switch_all(
        &self,
        to: impl Fn(&ServerName) -> Option<Sha>,
        way: Way<'_>,
    ) -> (Vec<StepFailure>, Vec<(ServerName, String)>) {
        let origin = self.session.origin();
        let started = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let steps = self.locked.iter().zip(&self.states).map(|(l, state)| {
            let target = to(&l.host.server.name);
            let intent = match (&target, &way) {
                (Some(sha), Way::Forward(guarding)) => serde_json::to_string(&InFlight {
                    sha: sha.clone(),
                    previous: state.live.clone(),
                    started: started.clone(),
                    trigger: origin.trigger.to_string(),
                    who: origin.who.clone(),
                    guard: guarding.map(|g| g.record(&l.host.server.name)),
                })
                .ok(),
                _ => None,
            };
            async move {
                let call = match (&target, &intent) {
                    (Some(sha), Some(intent)) => vec!["release_switch", sha.as_str(), intent],
                    (Some(sha), None) => vec!["release_switch", sha.as_str()],
                    (None, _) => vec!["release_unswitch"],
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
    pub(super) async fn health_all(&self) -> Option<StepFailure> {
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

    /// Switches to `sha` everywhere and checks health, then (with
    /// `guard:`) watches the traffic (`judged`). What the workers said,
    /// when they did not restart.
    pub(super) async fn go_live(
        &self,
        plan: &ReleasePlan,
    ) -> Result<Vec<(ServerName, String)>, ReleaseError> {
        let guard = self.session.app.guard.as_ref();
        let guarding = match guard {
            Some(guard) => Some(self.guard_mark(guard).await),
            None => None,
        };
        let to = |_: &ServerName| Some(plan.sha.clone());
        let (failures, workers) = self.switch_all(to, Way::Forward(guarding.as_ref())).await;
        let failure = match failures.into_iter().next() {
            Some(failure) => Some(failure),
            None => self.health_all().await,
        };
        self.judged(plan, failure, guard.zip(guarding))
            .await
            .map(|()| workers)
    }

    /// After the switch to `plan.sha` and `failure` (of the switch or the
    /// health check, if any): with `guarded`, the guard's watch; on a
    /// failure, every server switches back to what it had (`plan.back`).
    /// A stop during the guard's window leaves the release live and in
    /// flight (`GuardStopped`).
    pub(super) async fn judged(
        &self,
        plan: &ReleasePlan,
        failure: Option<StepFailure>,
        guarded: Option<(&Guard, Guarding)>,
    ) -> Result<(), ReleaseError> {
        let failure = match (failure, guarded) {
            (Some(failure), _) => failure,
            (None, None) => return Ok(()),
            (None, Some((guard, guarding))) => match self.guard_watch(guard, guarding).await {
                Judged::Passed => return Ok(()),
                Judged::Failed(failure) => failure,
                Judged::Suspended => {
                    return Err(ReleaseError::GuardStopped(plan.sha.clone()));
                }
            },
        };
        let (not_back, _) = self
            .switch_all(|server| plan.back.get(server).cloned().flatten(), Way::Back)
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

    /// Switches to `plan.sha` everywhere and checks health (`go_live`),
    /// then logs the run as `result`, or as rolled back when it went back.
    pub(super) async fn go_to(
        &self,
        plan: &ReleasePlan,
        result: LogResult,
        started: Instant,
    ) -> Result<Released, ReleaseError> {
        let warmed = self.warm_all().await;
        let outcome = self.go_live(plan).await;
        self.logged(plan, result, started, outcome, warmed).await
    }

    /// Goes on with a release a stopped client left in its guard window:
    /// the health check again, then the guard for what is left of its
    /// window (at least one read of the traffic since the switch), and the
    /// log and pruning as `go_to`. The run's states are what each server
    /// had before the switch.
    pub(super) async fn resume(
        &self,
        plan: &ReleasePlan,
        guarding: Guarding,
        started: Instant,
    ) -> Result<Released, ReleaseError> {
        let failure = self.health_all().await;
        let guard = self.session.app.guard.as_ref();
        let outcome = self
            .judged(plan, failure, guard.map(|g| (g, guarding)))
            .await
            .map(|()| Vec::new());
        self.logged(plan, LogResult::Live, started, outcome, Vec::new())
            .await
    }

    /// Logs a run that switched to `plan.sha` and ended in `outcome` (the
    /// workers that did not restart, or why it did not stay live) as
    /// `result` or rolled back; a guard cut short by a stop logs nothing:
    /// the release stays in flight.
    async fn logged(
        &self,
        plan: &ReleasePlan,
        result: LogResult,
        started: Instant,
        outcome: Result<Vec<(ServerName, String)>, ReleaseError>,
        warmed: Vec<(ServerName, Result<super::Warmed, String>)>,
    ) -> Result<Released, ReleaseError> {
        match outcome {
            Ok(workers_failed) => {
                let live = |_: usize| Some(plan.sha.clone());
                let (pruned, prune_failed) = self
                    .finish_all(&plan.sha, result, live, started.elapsed(), None, &warmed)
                    .await;
                Ok(Released {
                    sha: plan.sha.clone(),
                    previous: self
                        .servers()
                        .into_iter()
                        .map(|(s, st)| (s, st.live.clone()))
                        .collect(),
                    reused: plan.reuse.clone(),
                    pruned,
                    prune_failed,
                    workers_failed,
                    warmed,
                    elapsed: started.elapsed(),
                })
            }
            Err(error @ ReleaseError::GuardStopped(_)) => Err(error),
            Err(error) => {
                let live = |i: usize| self.states[i].live.clone();
                let reason = match &error {
                    ReleaseError::RolledBack { failure, .. } if failure.step == Step::Guard => {
                        Some(failure.output.clone())
                    }
                    _ => None,
                };
                self.finish_all(
                    &plan.sha,
                    LogResult::RolledBack,
                    live,
                    started.elapsed(),
                    reason,
                    &warmed,
                )
                .await;
                Err(error)
            }
        }
    }
}

/// Which way a switch goes.
pub(super) enum Way<'g> {
    /// To the release being made live: each server keeps a record of it
    /// in flight, with the guard's when it is guarded.
    Forward(Option<&'g Guarding>),
    /// Back to what a server had: no record.
    Back,
}
