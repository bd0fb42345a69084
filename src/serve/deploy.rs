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

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};

use crate::Hint as _;
use crate::app::{AppTarget, Event, Origin, Progress, Step, Trigger};
use crate::release;
use crate::transport::Connector;

use super::tokens::Unauthenticated;
use super::{AuthGuard, error};

pub use super::tokens::{Tokens, TokensError};

/// A deploy the webhook started, as `GET /v1/deploys/<id>` shows it and
/// its record file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    /// 32 hex digits.
    pub id: String,
    pub app: String,
    /// The revision asked for, and the commit it named then.
    pub revision: String,
    pub sha: String,
    /// `running`, `guarding` once a guarded release watches its traffic
    /// (`guard:`); then `live`, `rolled-back` (its guard failed it, with
    /// `error`) or `failed` (with `error`); or `interrupted` (with
    /// `error`): the process stopped while it was running, and how it
    /// ended is not known.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a person can do about `error`, when there is something, as
    /// the CLI prints it under the same error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    pub started: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
}

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
    jobs: Mutex<BTreeMap<String, Job>>,
    releasing: Mutex<BTreeSet<String>>,
    /// Stops the deploys in flight when the daemon stops (see
    /// `release::Stop`): set with `stopped_by`.
    stop: release::Stop,
    /// Where each deploy's record is kept (`<id>.json`), if anywhere: set
    /// with `recorded_in`.
    records: Option<PathBuf>,
}

/// How many finished deploys are remembered for `GET /v1/deploys/<id>`
/// (and kept as record files).
pub const KEEP_JOBS: usize = 200;

/// The largest record file read back: anything larger was not written
/// here.
const MAX_RECORD: u64 = 1024 * 1024;

/// What a deploy that was running when its process stopped says.
const INTERRUPTED: &str = "the process serving the webhook stopped while this deploy ran, \
    so how it ended is not known; `reconciler releases APP` shows what each server runs";

/// Random bytes in a deploy's id (32 hex digits).
const JOB_ID_BYTES: usize = 16;

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
            jobs: Mutex::default(),
            releasing: Mutex::default(),
            stop: release::Stop::new(),
            records: None,
        }
    }

    /// This deployer, with its deploys in flight stopped by `stop`.
    #[must_use]
    pub fn stopped_by(self, stop: release::Stop) -> Self {
        Self { stop, ..self }
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
        let jobs = match load_records(&dir) {
            Ok(jobs) => jobs,
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read the deploy records");
                BTreeMap::new()
            }
        };
        if !jobs.is_empty() {
            tracing::info!(deploys = jobs.len(), dir = %dir.display(), "read the deploy records");
        }
        Self {
            jobs: Mutex::new(jobs),
            records: Some(dir),
            ..self
        }
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

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(job) = jobs.get_mut(id) {
            change(job);
            self.record(job);
        }
    }

    /// Remembers `job`, forgetting the oldest finished deploys past
    /// `KEEP_JOBS`.
    fn insert(&self, job: Job) {
        let mut jobs = self
            .jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while jobs.len() >= KEEP_JOBS {
            let oldest = jobs
                .values()
                .filter(|j| !in_progress(&j.state))
                .min_by_key(|j| j.started)
                .map(|j| j.id.clone());
            let Some(oldest) = oldest else { break };
            jobs.remove(&oldest);
            if let Some(dir) = &self.records {
                remove_record(dir, &oldest);
            }
        }
        self.record(&job);
        jobs.insert(job.id.clone(), job);
    }

    /// Writes `job`'s record file, when records are kept.
    fn record(&self, job: &Job) {
        let Some(dir) = &self.records else { return };
        if let Err(error) = write_record(dir, job) {
            tracing::warn!(id = %job.id, dir = %dir.display(), %error, "cannot write the deploy's record");
        }
    }
}

/// Whether `name` is a record file's name: `<32 hex digits>.json`.
fn record_id(name: &str) -> Option<&str> {
    let id = name.strip_suffix(".json")?;
    let valid =
        id.len() == JOB_ID_BYTES * 2 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then_some(id)
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

fn write_record(dir: &Path, job: &Job) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(job).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomically(&record_path(dir, &job.id), &bytes)
}

fn remove_record(dir: &Path, id: &str) {
    match std::fs::remove_file(record_path(dir, id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%id, dir = %dir.display(), %error, "cannot remove an old deploy's record");
        }
    }
}

/// Reads the records in `dir` (made, private, if missing): the newest
/// `KEEP_JOBS` (the older ones' files removed), a `running` one rewritten
/// as `interrupted`. A file that is not a record of this shape is logged
/// and left alone.
fn load_records(dir: &Path) -> std::io::Result<BTreeMap<String, Job>> {
    use std::io::Read as _;
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(record_id) else {
            continue;
        };
        let path = entry.path();
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|file| file.take(MAX_RECORD).read_to_end(&mut bytes));
        let job = read
            .map_err(|e| e.to_string())
            .and_then(|_| serde_json::from_slice::<Job>(&bytes).map_err(|e| e.to_string()))
            .and_then(|job| {
                if job.id == id {
                    Ok(job)
                } else {
                    Err(format!("it holds the deploy {}", job.id))
                }
            });
        match job {
            Ok(job) => found.push(job),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "not a deploy record; left alone");
            }
        }
    }
    found.sort_by(|a, b| b.started.cmp(&a.started).then_with(|| a.id.cmp(&b.id)));
    for old in found.split_off(found.len().min(KEEP_JOBS)) {
        remove_record(dir, &old.id);
    }
    let mut jobs = BTreeMap::new();
    for mut job in found {
        if in_progress(&job.state) {
            job.state = "interrupted".into();
            job.error = Some(INTERRUPTED.into());
            if let Err(error) = write_record(dir, &job) {
                tracing::warn!(id = %job.id, %error, "cannot write the deploy's record");
            }
        }
        jobs.insert(job.id.clone(), job);
    }
    Ok(jobs)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeployRequest {
    app: String,
    revision: String,
}

/// Marks an app as being released until dropped.
struct Releasing {
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
    {
        let mut releasing = deployer
            .releasing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !releasing.insert(request.app.clone()) {
            return error(
                StatusCode::CONFLICT,
                &format!(
                    "{} is being released; try again when it is done",
                    request.app
                ),
            );
        }
    }
    let guard = Releasing {
        deployer: Arc::clone(&deployer),
        app: request.app.clone(),
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
    deployer.insert(job.clone());
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
        task_deployer.update(&id, |job| {
            job.finished = Some(chrono::Utc::now());
            match failure {
                None => job.state = "live".into(),
                Some((error, hint)) => {
                    job.state = if guarded { "rolled-back" } else { "failed" }.into();
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

/// Whether a deploy in `state` has not ended.
fn in_progress(state: &str) -> bool {
    matches!(state, "running" | "guarding")
}

/// A deploy's progress: `guarding` once its guard starts watching.
struct JobProgress<'a> {
    deployer: &'a Deployer,
    id: &'a str,
}

impl Progress for JobProgress<'_> {
    fn step(&self, _: &crate::definitions::ServerName, step: Step, event: &Event) {
        if step == Step::Guard && matches!(event, Event::Started) {
            self.deployer.update(self.id, |job| {
                if job.state == "running" {
                    job.state = "guarding".into();
                }
            });
        }
    }
}

/// What the webhook makes of a revision: its archive, or a refusal
/// because the app pins another commit.
enum Prepared {
    Archive(release::Archive),
    Pinned,
}

/// Fetches `target`'s mirror in `cache` and resolves `rev`; when the app
/// pins `pin` (a revision other than `rev`) that names another commit, or
/// none, it is `Pinned`; otherwise the commit's archive. Blocks (gix).
fn prepare(
    target: &AppTarget,
    cache: &Path,
    rev: &str,
    pin: Option<&str>,
) -> Result<Prepared, release::SourceError> {
    let mirror = release::mirror_path(cache, &target.app);
    let sha = release::source::resolve(&target.app.repo, &mirror, rev)?;
    if let Some(pin) = pin {
        // The mirror was just fetched: the pin resolves without a fetch.
        let pinned = crate::git::Mirror::open_or_clone(&target.app.repo, &mirror)?
            .resolve(pin)
            .ok()
            .and_then(|commit| release::Sha::parse(&commit));
        if pinned.as_ref() != Some(&sha) {
            return Ok(Prepared::Pinned);
        }
    }
    release::source::archive(
        &target.app.repo,
        &mirror,
        &sha,
        release::Limits::of(&target.app),
    )
    .map(Prepared::Archive)
}

/// 409 for a deploy of `app` that its pin `pin` (set in `file`) would
/// undo: `{"error", "pinned", "file"}`.
fn pinned(app: &str, pin: &str, file: Option<&Path>) -> Response {
    let file = file.map_or_else(|| "its definition".to_owned(), |f| f.display().to_string());
    let message = format!(
        "app {app} pins revision {pin} in {file}; change the pin to deploy another revision"
    );
    tracing::info!(%app, %pin, %file, "deploy refused: the app is pinned");
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({ "error": message, "pinned": pin, "file": file })),
    )
        .into_response()
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
    let job = deployer
        .jobs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(&id)
        .cloned();
    match job {
        None => error(StatusCode::NOT_FOUND, "no such deploy"),
        Some(job) if job.app != token_app => {
            error(StatusCode::FORBIDDEN, "this token is not for that app")
        }
        Some(job) => Json(job).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(n: u32, state: &str) -> Job {
        Job {
            id: format!("{n:032x}"),
            app: "shop".into(),
            revision: "v1".into(),
            sha: "4ba7558d2b6700000000000000000000000000aa".into(),
            state: state.into(),
            error: None,
            hint: None,
            started: chrono::DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0)
                .expect("a time"),
            finished: None,
        }
    }

    #[test]
    fn records_read_back_and_a_running_one_as_interrupted() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_record(dir.path(), &job(1, "live")).expect("write");
        write_record(dir.path(), &job(2, "running")).expect("write");
        write_record(dir.path(), &job(6, "guarding")).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a record").expect("write");
        std::fs::write(dir.path().join(format!("{:032x}.json", 3)), "{garbled").expect("write");
        // A record under another deploy's name is not believed.
        let mut moved = job(4, "live");
        moved.id = format!("{:032x}", 5);
        std::fs::write(
            dir.path().join(format!("{:032x}.json", 4)),
            serde_json::to_vec(&moved).expect("JSON"),
        )
        .expect("write");

        let jobs = load_records(dir.path()).expect("read");
        let states: Vec<(&str, &str)> = jobs
            .values()
            .map(|j| (j.id.as_str(), j.state.as_str()))
            .collect();
        let (one, two, six) = (
            format!("{:032x}", 1),
            format!("{:032x}", 2),
            format!("{:032x}", 6),
        );
        assert_eq!(
            states,
            [
                (one.as_str(), "live"),
                (two.as_str(), "interrupted"),
                (six.as_str(), "interrupted")
            ]
        );
        assert!(
            jobs[&two]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("stopped"))
        );
        // Rewritten: a second start reads it as interrupted too.
        let again = load_records(dir.path()).expect("read");
        assert_eq!(again[&two].state, "interrupted");
        assert!(
            dir.path().join("notes.txt").exists(),
            "other files are left alone"
        );
    }

    #[test]
    fn only_the_newest_records_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let total = u32::try_from(KEEP_JOBS).expect("small") + 5;
        for n in 1..=total {
            write_record(dir.path(), &job(n, "live")).expect("write");
        }
        let jobs = load_records(dir.path()).expect("read");
        assert_eq!(jobs.len(), KEEP_JOBS);
        assert!(!jobs.contains_key(&format!("{:032x}", 5)), "the oldest go");
        assert!(jobs.contains_key(&format!("{:032x}", 6)));
        let files = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, KEEP_JOBS, "and so do their files");
    }

    #[test]
    fn a_record_file_is_named_by_its_id_only() {
        assert_eq!(
            record_id("0123456789abcdef0123456789abcdef.json"),
            Some("0123456789abcdef0123456789abcdef")
        );
        for name in [
            "0123456789abcdef0123456789abcdef",
            "0123456789ABCDEF0123456789ABCDEF.json",
            "../0123456789abcdef0123456789abc.json",
            ".0123456789abcdef0123456789abcdef.json.tmp",
        ] {
            assert_eq!(record_id(name), None, "{name}");
        }
    }
}
