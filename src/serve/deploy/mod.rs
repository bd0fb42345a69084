//! The deploy webhook: `POST /v1/deploy` with `{"app", "revision"}` and
//! `Authorization: Bearer <token>` releases that revision of the app, as
//! a CI pipeline's last step; `GET /v1/deploys/<id>` follows it.
//!
//! Tokens are checked against the tokens file (`super::tokens`); an
//! address whose tokens fail too often is held back (`super::guard`).
//!
//! An app whose definition pins `revision:` takes no deploy of another
//! commit: the commit in force would release the pin again, so such a
//! deploy is refused (409) with the pin and the file that sets it.
//!
//! With `recorded_in`, each deploy's record is also a file, so that its id
//! answers after the process restarts; a deploy that was running when the
//! process stopped reads back as `interrupted`.
//!
//! Here: the routes and the release each deploy runs; `jobs`: the deploys
//! and their record files; `revision`: the commit a deploy asks for, or
//! the pin that refuses it.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde::Deserialize;

use crate::Hint as _;
use crate::app::{AppTarget, Event, Origin, Progress, Step, Trigger};
use crate::release;
use crate::transport::Connector;

use super::tokens::Unauthenticated;
use super::{AuthGuard, error};

mod jobs;
mod revision;

use jobs::{JOB_ID_BYTES, Jobs};
pub use jobs::{Job, KEEP_JOBS};
use revision::{Prepared, pinned, prepare};

pub use super::tokens::{Tokens, TokensError};

pub use crate::board::DefinitionsInForce;

/// What the deploy routes share.
pub struct Deployer {
    pub tokens: Tokens,
    pub definitions: DefinitionsInForce,
    pub connector: Arc<dyn Connector>,
    /// Where the app repositories are mirrored.
    pub cache: PathBuf,
    /// Failed tokens by client address.
    pub guard: Arc<AuthGuard>,
    /// The daemon's background jobs: each deploy runs in it.
    pub tasks: tokio_util::task::TaskTracker,
    jobs: Jobs,
    releasing: Mutex<BTreeSet<String>>,
    /// Stops the deploys in flight when the daemon stops (see
    /// `release::Stop`): set with `stopped_by`.
    stop: release::Stop,
    /// Told how each deploy ended (the app's `notify:`): set with
    /// `notifying`.
    notifier: Option<crate::notify::Notifier>,
}

impl Deployer {
    /// Deploys checked against `tokens`, released from `definitions` with
    /// app mirrors in `cache`; failed tokens counted against their address
    /// in `guard` (shared with the git hook).
    pub fn new(
        tokens: Tokens,
        definitions: DefinitionsInForce,
        connector: Arc<dyn Connector>,
        cache: PathBuf,
        guard: Arc<AuthGuard>,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            tokens,
            definitions,
            connector,
            cache,
            guard,
            tasks,
            jobs: Jobs::default(),
            releasing: Mutex::default(),
            stop: release::Stop::new(),
            notifier: None,
        }
    }

    /// This deployer, with its deploys in flight stopped by `stop`.
    #[must_use]
    pub fn stopped_by(self, stop: release::Stop) -> Self {
        Self { stop, ..self }
    }

    /// This deployer, telling `notifier` (if any) how each deploy ended
    /// (the app's `notify:`).
    #[must_use]
    pub fn notifying(self, notifier: Option<crate::notify::Notifier>) -> Self {
        Self { notifier, ..self }
    }

    /// This deployer, with each deploy's record kept in `dir` (made, 0700,
    /// if missing) as `<id>.json`, written atomically when the deploy
    /// starts and when it ends, and the last `KEEP_JOBS` kept. The
    /// records already there are read now: a deploy they show `running`
    /// was cut off when its process stopped, and reads back (and is
    /// rewritten) as `interrupted`. Records that cannot be read or written
    /// are logged, never fatal: the webhook goes on without them.
    #[must_use]
    pub fn recorded_in(self, dir: PathBuf) -> Self {
        Self {
            jobs: Jobs::recorded_in(dir),
            ..self
        }
    }

    /// Marks `app` as being released (by a deploy, or the dashboard's
    /// rollback) until the mark is dropped; `None` when it already is.
    pub fn releasing(self: &Arc<Self>, app: &str) -> Option<Releasing> {
        let fresh = self
            .releasing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(app.to_owned());
        fresh.then(|| Releasing {
            deployer: Arc::clone(self),
            app: app.to_owned(),
        })
    }

    /// The app of the bearer token in `headers`, unless `peer` is held
    /// back or the token is missing or unknown (a failure held against
    /// `peer`).
    fn authenticate(
        &self,
        peer: IpAddr,
        route: &'static str,
        headers: &HeaderMap,
    ) -> Result<String, Unauthenticated> {
        super::tokens::authenticate(&self.guard, &self.tokens, peer, route, headers)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    app: String,
    revision: String,
}

/// Marks an app as being released until dropped (`Deployer::releasing`).
pub struct Releasing {
    deployer: Arc<Deployer>,
    app: String,
}

impl Drop for Releasing {
    fn drop(&mut self) {
        self.deployer
            .releasing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.app);
    }
}

pub async fn deploy(
    State(deployer): State<Arc<Deployer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token_app = match deployer.authenticate(peer.ip(), "/v1/deploy", &headers) {
        Ok(app) => app,
        Err(refused) => return refused.into_response(),
    };
    let request: DeployRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("expected JSON {{\"app\": ..., \"revision\": ...}}: {e}"),
            );
        }
    };
    if request.app != token_app {
        return error(StatusCode::FORBIDDEN, "this token is not for that app");
    }
    let definitions = deployer
        .definitions
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(Ok(target)) = definitions
        .as_deref()
        .map(|d| AppTarget::find(d, &request.app))
    else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("no app `{}` in the definitions in force", request.app),
        );
    };
    if request.revision.is_empty()
        || request.revision.len() > 255
        || request.revision.starts_with('-')
        || request.revision.chars().any(char::is_control)
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "not a revision");
    }
    let Some(guard) = deployer.releasing(&request.app) else {
        return error(
            StatusCode::CONFLICT,
            &format!(
                "{} is being released; try again when it is done",
                request.app
            ),
        );
    };
    // A pin other than the revision asked for: whether both name the same
    // commit is known once the mirror is fetched.
    let pin = target
        .app
        .revision
        .clone()
        .filter(|pin| *pin != request.revision);
    let (source, cache, rev, other_pin) = (
        target.clone(),
        deployer.cache.clone(),
        request.revision.clone(),
        pin.clone(),
    );
    let archived =
        tokio::task::spawn_blocking(move || prepare(&source, &cache, &rev, other_pin.as_deref()))
            .await;
    let archive = match archived {
        Ok(Ok(Prepared::Archive(archive))) => archive,
        Ok(Ok(Prepared::Pinned)) => {
            let file = definitions
                .as_deref()
                .and_then(|d| d.app_file(&target.app.name))
                .map(Path::to_owned);
            return pinned(
                &request.app,
                pin.as_deref().unwrap_or_default(),
                file.as_deref(),
            );
        }
        Ok(Err(e)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "cannot release revision `{}`: {}",
                    request.revision,
                    crate::redact::scrub(&crate::error_chain(&e), &target.app.repo)
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let sha = archive.sha.to_string();
    let id = match crate::secret::token(JOB_ID_BYTES) {
        Ok(id) => id,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let job = Job {
        id: id.clone(),
        app: request.app.clone(),
        revision: request.revision.clone(),
        sha: sha.clone(),
        state: "running".into(),
        error: None,
        hint: None,
        started: chrono::Utc::now(),
        finished: None,
    };
    deployer.jobs.insert(job.clone());
    tracing::info!(app = %request.app, revision = %request.revision, %sha, %id, "deploy requested");
    let task_deployer = Arc::clone(&deployer);
    deployer.tasks.spawn(async move {
        let _guard = guard;
        let origin = Origin {
            who: "webhook".into(),
            trigger: Trigger::Webhook,
        };
        let progress = JobProgress {
            deployer: &task_deployer,
            id: &id,
        };
        let result = release::release(
            &target,
            &archive,
            &origin,
            task_deployer.connector.as_ref(),
            &progress,
            &task_deployer.stop,
        )
        .await;
        let guarded = matches!(
            &result,
            Err(release::ReleaseError::RolledBack { failure, .. }) if failure.step == Step::Guard
        );
        // Stopped during its guard's window: live, judged on by the next
        // check (the daemon's, after its restart), which this record does
        // not follow.
        let stopped = matches!(&result, Err(release::ReleaseError::GuardStopped(_)));
        let failure = result.as_ref().err().map(|e| {
            let error = crate::text::visible(&crate::redact::scrub(
                &crate::error_chain(e),
                &target.app.repo,
            ))
            .into_owned();
            (error, e.hint().map(str::to_owned))
        });
        match &failure {
            None => tracing::info!(app = %target.app.name, %sha, "deploy is live"),
            Some((error, hint)) => {
                tracing::warn!(app = %target.app.name, %sha, %error, hint, "deploy failed");
            }
        }
        if let Some(notifier) = &task_deployer.notifier {
            use crate::definitions::NotifyEvent;
            let short = &sha[..sha.len().min(12)];
            let (event, message) = match &failure {
                None => (
                    NotifyEvent::ReleaseLive,
                    format!(
                        "{} {} is live (deployed by the webhook)",
                        target.app.name, short
                    ),
                ),
                Some((error, _)) if guarded => (
                    NotifyEvent::RolledBack,
                    format!("{} {short} was rolled back: {error}", target.app.name),
                ),
                Some((error, _)) => (
                    NotifyEvent::ReleaseFailed,
                    format!("{} {short} did not go live: {error}", target.app.name),
                ),
            };
            let mut notice = crate::notify::Notice::new(event, message);
            notice.app = Some(target.app.name.to_string());
            notice.commit = Some(sha.clone());
            let definitions = task_deployer
                .definitions
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(definitions) = definitions {
                let targets = crate::notify::app_targets(&definitions, target.app.name.as_str());
                notifier.send(&targets, event, &notice);
            }
        }
        task_deployer.jobs.update(&id, |job| {
            job.finished = Some(chrono::Utc::now());
            match failure {
                None => job.state = "live".into(),
                Some((error, hint)) => {
                    job.state = match (guarded, stopped) {
                        (true, _) => "rolled-back",
                        (_, true) => "interrupted",
                        _ => "failed",
                    }
                    .into();
                    job.error = Some(error);
                    job.hint = hint;
                }
            }
        });
    });
    let mut body = serde_json::to_value(&job).unwrap_or_default();
    body["status_url"] = format!("/v1/deploys/{}", job.id).into();
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// A deploy's progress: `guarding` once its guard starts watching.
struct JobProgress<'a> {
    deployer: &'a Deployer,
    id: &'a str,
}

impl Progress for JobProgress<'_> {
    fn step(&self, _: &crate::definitions::ServerName, step: Step, event: &Event) {
        if step == Step::Guard && matches!(event, Event::Started) {
            self.deployer.jobs.update(self.id, |job| {
                if job.state == "running" {
                    job.state = "guarding".into();
                }
            });
        }
    }
}

pub async fn deploy_status(
    State(deployer): State<Arc<Deployer>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let token_app = match deployer.authenticate(peer.ip(), "/v1/deploys", &headers) {
        Ok(app) => app,
        Err(refused) => return refused.into_response(),
    };
    let job = deployer.jobs.get(&id);
    match job {
        None => error(StatusCode::NOT_FOUND, "no such deploy"),
        Some(job) if job.app != token_app => {
            error(StatusCode::FORBIDDEN, "this token is not for that app")
        }
        Some(job) => Json(job).into_response(),
    }
}
