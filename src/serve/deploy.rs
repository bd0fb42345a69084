//! The deploy webhook: `POST /v1/deploy` with `{"app", "revision"}` and
//! `Authorization: Bearer <token>` releases that revision of the app, as
//! a CI pipeline's last step; `GET /v1/deploys/<id>` follows it.
//!
//! Tokens live in a file outside the definitions repository, one line per
//! token: `<app> <sha256 hex of the token>` (`reconciler deploy-token`
//! makes one). Only hashes are stored, and a presented token is compared
//! with every one in constant time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{AppTarget, Origin, Trigger};
use crate::definitions::Definitions;
use crate::release;
use crate::transport::Connector;

use super::error;

/// Deploy tokens by app, as hashes.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    hashes: Vec<(String, [u8; 32])>,
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", .path.display())]
pub struct TokensError {
    path: PathBuf,
    line: usize,
    message: String,
}

impl Tokens {
    /// Reads a tokens file: `<app> <sha256 hex>` lines, `#` comments.
    pub fn read(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError {
            path: path.to_owned(),
            line: 0,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text).map_err(|(line, message)| TokensError {
            path: path.to_owned(),
            line,
            message,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut hashes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |m: &str| (i + 1, m.to_owned());
            let mut words = line.split_whitespace();
            let (Some(app), Some(hash), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `<app> <sha256 hex of the token>`"));
            };
            let hash: [u8; 32] = hex::decode(hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("the hash is not 64 hex digits (a sha256)"))?;
            hashes.push((app.to_owned(), hash));
        }
        Ok(Self { hashes })
    }

    /// The line that stores `token` for `app`.
    pub fn line(app: &str, token: &str) -> String {
        format!("{app} {}", hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// The app whose token `token` is. Every stored hash is compared, in
    /// constant time, whatever matches.
    pub fn app_of(&self, token: &str) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (app, hash) in &self.hashes {
            let diff = hash
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 {
                found = Some(app.as_str());
            }
        }
        found
    }
}

/// A deploy the webhook started.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: String,
    pub app: String,
    pub revision: String,
    pub sha: String,
    /// `running`, `live` or `failed`.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started: chrono::DateTime<chrono::Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<chrono::DateTime<chrono::Utc>>,
}

/// The definitions deploys read: the directory `serve` was given, or the
/// commit the watch daemon has in force.
pub type DefinitionsInForce = Arc<RwLock<Option<Arc<Definitions>>>>;

/// What the deploy routes share.
pub struct Deployer {
    pub tokens: Tokens,
    pub definitions: DefinitionsInForce,
    pub connector: Arc<dyn Connector>,
    /// Where the app repositories are mirrored.
    pub cache: PathBuf,
    jobs: Mutex<BTreeMap<String, Job>>,
    releasing: Mutex<BTreeSet<String>>,
}

/// How many finished deploys are remembered for `GET /v1/deploys/<id>`.
const KEEP_JOBS: usize = 200;

impl Deployer {
    pub fn new(
        tokens: Tokens,
        definitions: DefinitionsInForce,
        connector: Arc<dyn Connector>,
        cache: PathBuf,
    ) -> Self {
        Self {
            tokens,
            definitions,
            connector,
            cache,
            jobs: Mutex::default(),
            releasing: Mutex::default(),
        }
    }

    fn token_app(&self, headers: &HeaderMap) -> Option<String> {
        let token = headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .trim();
        self.tokens.app_of(token).map(str::to_owned)
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(job) = jobs.get_mut(id) {
            change(job);
        }
    }
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
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.app);
    }
}

pub async fn deploy(
    State(deployer): State<Arc<Deployer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token_app) = deployer.token_app(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
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
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let target = match definitions.map(|d| AppTarget::find(&d, &request.app)) {
        Some(Ok(target)) => target,
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("no app `{}` in the definitions in force", request.app),
            );
        }
    };
    if request.revision.is_empty()
        || request.revision.len() > 255
        || request.revision.starts_with('-')
        || request.revision.chars().any(char::is_control)
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "not a revision");
    }
    {
        let mut releasing = deployer.releasing.lock().unwrap_or_else(|e| e.into_inner());
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
    let (source, cache, rev) = (
        target.clone(),
        deployer.cache.clone(),
        request.revision.clone(),
    );
    let archived =
        tokio::task::spawn_blocking(move || release::fetch_and_archive(&source, &cache, &rev))
            .await;
    let archive = match archived {
        Ok(Ok(archive)) => archive,
        Ok(Err(e)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "cannot release revision `{}`: {}",
                    request.revision,
                    crate::error_chain(&e)
                ),
            );
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let sha = archive.sha.to_string();
    let id = crate::secret::hex(8);
    let job = Job {
        id: id.clone(),
        app: request.app.clone(),
        revision: request.revision.clone(),
        sha: sha.clone(),
        state: "running".into(),
        error: None,
        started: chrono::Utc::now(),
        finished: None,
    };
    {
        let mut jobs = deployer.jobs.lock().unwrap_or_else(|e| e.into_inner());
        while jobs.len() >= KEEP_JOBS {
            let oldest = jobs
                .values()
                .filter(|j| j.state != "running")
                .min_by_key(|j| j.started)
                .map(|j| j.id.clone());
            match oldest {
                Some(oldest) => jobs.remove(&oldest),
                None => break,
            };
        }
        jobs.insert(id.clone(), job.clone());
    }
    tracing::info!(app = %request.app, revision = %request.revision, %sha, %id, "deploy requested");
    let task_deployer = Arc::clone(&deployer);
    tokio::spawn(async move {
        let _guard = guard;
        let origin = Origin {
            who: "webhook".into(),
            trigger: Trigger::Webhook,
        };
        let result = release::release(
            &target,
            &archive,
            &origin,
            task_deployer.connector.as_ref(),
            &(),
        )
        .await;
        match &result {
            Ok(_) => tracing::info!(app = %target.app.name, %sha, "deploy is live"),
            Err(e) => {
                tracing::warn!(app = %target.app.name, %sha, error = %crate::text::visible(&crate::error_chain(&e)), "deploy failed")
            }
        }
        task_deployer.update(&id, |job| {
            job.finished = Some(chrono::Utc::now());
            match result {
                Ok(_) => job.state = "live".into(),
                Err(e) => {
                    job.state = "failed".into();
                    job.error = Some(e.to_string());
                }
            }
        });
    });
    let mut body = serde_json::to_value(&job).unwrap_or_default();
    body["status_url"] = format!("/v1/deploys/{}", job.id).into();
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

pub async fn deploy_status(
    State(deployer): State<Arc<Deployer>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let Some(token_app) = deployer.token_app(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    };
    let job = deployer
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
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

    #[test]
    fn a_token_matches_only_its_own_hash() {
        let text = format!(
            "# deploy tokens\n{}\n\n{}\n",
            Tokens::line("shop", "s3cret-shop-token"),
            Tokens::line("blog", "s3cret-blog-token")
        );
        let tokens = Tokens::parse(&text).expect("parses");
        assert_eq!(tokens.app_of("s3cret-shop-token"), Some("shop"));
        assert_eq!(tokens.app_of("s3cret-blog-token"), Some("blog"));
        assert_eq!(tokens.app_of("s3cret-shop-toke"), None);
        assert_eq!(tokens.app_of(""), None);
        assert!(!text.contains("s3cret"), "only hashes are stored");
    }

    #[test]
    fn a_bad_tokens_line_is_named() {
        assert_eq!(Tokens::parse("shop\n").unwrap_err().0, 1);
        assert_eq!(Tokens::parse("# c\nshop abc\n").unwrap_err().0, 2);
    }
}
