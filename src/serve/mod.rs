//! The daemon's HTTP side (`--listen`): status, metrics, the git hook and
//! the deploy webhook (`deploy`), served by `listener` within its limits.
//!
//! Everything here answers from the status board or pokes the loop; it
//! never touches a server itself. Bodies are limited to 64 KiB (413 past
//! that), and the git hook is refused (401) unless its body is signed with
//! the shared secret, as git hosting services sign their webhooks
//! (`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`). Failed
//! signatures and tokens are limited per client address (`guard`).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::board::Board;

pub mod dashboard;
pub mod deploy;
pub mod elastic;
pub mod guard;
pub mod listener;
pub mod tokens;

pub use guard::AuthGuard;
pub use listener::{Limits, raise_open_files, serve};
pub use tokens::Tokens;

/// The largest body any route takes.
pub const MAX_BODY: usize = 64 * 1024;

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    pub board: Arc<Board>,
    /// Notified to fetch the definitions at once.
    pub fetch_now: Arc<Notify>,
    /// The git hook's shared secret; without one the hook is off.
    pub hook_secret: Option<Arc<Vec<u8>>>,
    /// Failed signatures by client address (shared with the deploy routes).
    pub guard: Arc<AuthGuard>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/hooks/git", post(git_hook))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// The deploy webhook's routes, with the same body limit.
pub fn deploy_router(deployer: Arc<deploy::Deployer>) -> Router {
    Router::new()
        .route("/v1/deploy", post(deploy::deploy))
        .route("/v1/deploys/{id}", get(deploy::deploy_status))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(deployer)
}

/// Binds `addr` (an error says which address).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn status(State(state): State<AppState>) -> Json<crate::board::Status> {
    Json(state.board.snapshot())
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.board.metrics_text(),
    )
        .into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn git_hook(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(secret) = &state.hook_secret else {
        return error(
            StatusCode::NOT_FOUND,
            "the git hook is off: start watch with --hook-secret-file",
        );
    };
    if let Err(held) = state.guard.admit(peer.ip()) {
        return held.into_response();
    }
    if !signed(secret, &headers, &body) {
        state
            .guard
            .failed(peer.ip(), "/v1/hooks/git", "missing or wrong signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong X-Hub-Signature-256",
        );
    }
    state.fetch_now.notify_one();
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "fetching": true })),
    )
        .into_response()
}

/// Whether `body` carries a valid `X-Hub-Signature-256` for `secret`
/// (compared in constant time).
pub fn signed(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(signature) = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex.trim()).ok())
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The signature header value for `body`, as a hook sender computes it.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
