//! The dashboard's private pages, behind a login (`session`): an app's
//! merged logs (`/apps/<app>/logs`, read as `reconciler logs` reads them:
//! the last lines of each log of each server; `?follow=1` loads the
//! dashboard's script, which fetches the page again every 5 s) and its
//! actions (`actions`: `POST /apps/<app>/rollback`).
//!
//! Served only with the deploy tokens (they are its tokens): without a
//! session or token these answer 401 with the login form, with another
//! app's 403. Log lines are what apps wrote: the template escapes them.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use handlebars::Handlebars;
use serde::{Deserialize, Serialize};

use super::actions::{self, ReleaseChoice, choices};
use super::session::{self, ADMIN, Sessions};
use crate::app::AppTarget;
use crate::board::Board;
use crate::serve::deploy::Deployer;
use crate::serve::tokens::Unauthenticated;

const LOGS: &str = include_str!("logs.html.hbs");
const LOGIN: &str = include_str!("login.html.hbs");

/// The lines of each log a logs page shows unless asked (`?lines=`), and
/// the most it may ask.
pub const LINES: usize = 200;
pub const MAX_LINES: usize = 2000;

/// What the private pages share: the deploy webhook's tokens, definitions
/// and connector (`deployer`), the board's release histories, the sessions.
pub struct Console {
    pub deployer: Arc<Deployer>,
    pub board: Arc<Board>,
    pub sessions: Sessions,
}

/// The login, the logs pages and the rollback.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/apps/{app}/logs", get(logs_page))
        .route("/apps/{app}/rollback", post(actions::rollback))
        .layer(DefaultBodyLimit::max(crate::serve::MAX_BODY))
        .with_state(console)
}

/// Its own script and style, and forms posted to itself only.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn templates() -> &'static Handlebars<'static> {
    static TEMPLATES: OnceLock<Handlebars<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut handlebars = Handlebars::new();
        // Ours and tested: they always register.
        let _ = handlebars.register_template_string("logs", LOGS);
        let _ = handlebars.register_template_string("login", LOGIN);
        handlebars
    })
}

pub(super) fn html(status: StatusCode, template: &str, data: &impl Serialize) -> Response {
    match templates().render(template, data) {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, POLICY),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => crate::serve::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `/apps/<app>/<tail>`, the name percent-encoded whole.
pub(super) fn app_href(app: &str, tail: &str) -> String {
    let mut href = String::from("/apps/");
    for b in app.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            href.push(char::from(b));
        } else {
            href.push_str(&format!("%{b:02X}"));
        }
    }
    href.push('/');
    href.push_str(tail);
    href
}

#[derive(Debug, Serialize)]
struct LoginView<'a> {
    app: Option<&'a str>,
    message: &'a str,
}

fn login_form(status: StatusCode, app: Option<&str>, message: &str) -> Response {
    html(status, "login", &LoginView { app, message })
}

#[derive(Debug, Default, Deserialize)]
struct ForApp {
    app: Option<String>,
}

async fn login_page(Query(query): Query<ForApp>) -> Response {
    login_form(StatusCode::OK, query.app.as_deref(), "")
}

#[derive(Deserialize)]
struct Login {
    token: String,
    app: Option<String>,
}

async fn login(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Form(form): Form<Login>,
) -> Response {
    let guard = &console.deployer.guard;
    if let Err(held) = guard.admit(peer.ip()) {
        return held.into_response();
    }
    let app = form.app.as_deref().filter(|a| !a.is_empty());
    let Some(owner) = console.deployer.tokens.app_of(form.token.trim()) else {
        guard.failed(peer.ip(), "/login", "unknown token");
        return login_form(StatusCode::UNAUTHORIZED, app, "unknown token");
    };
    let cookie = match console.sessions.open(owner, std::time::Instant::now()) {
        Ok(cookie) => cookie,
        Err(e) => return crate::serve::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let to = match app {
        Some(app) if session::may(owner, app) => app_href(app, "logs"),
        _ if owner != ADMIN => app_href(owner, "logs"),
        _ => "/".to_owned(),
    };
    tracing::info!(owner, peer = %peer.ip(), "signed in to the dashboard");
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::set_cookie(&cookie)),
            (header::LOCATION, to),
        ],
    )
        .into_response()
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(cookie) = session::cookie(&headers) {
        console.sessions.close(cookie);
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, session::set_cookie("")),
            (header::LOCATION, "/".to_owned()),
        ],
    )
        .into_response()
}

/// The owner signed in on `headers` if it may see `app`, else the answer:
/// 401 with the login form, 403, or 429.
pub(super) fn allowed(
    console: &Console,
    peer: SocketAddr,
    route: &'static str,
    headers: &HeaderMap,
    app: &str,
) -> Result<String, Box<Response>> {
    let deployer = &console.deployer;
    match session::signed_in(
        &console.sessions,
        &deployer.guard,
        &deployer.tokens,
        peer.ip(),
        route,
        headers,
    ) {
        Ok(owner) if session::may(&owner, app) => Ok(owner),
        Ok(_) => Err(Box::new(crate::serve::error(
            StatusCode::FORBIDDEN,
            "this token is not for that app",
        ))),
        Err(Unauthenticated::HeldBack(held)) => Err(Box::new(held.into_response())),
        Err(Unauthenticated::Unknown) => Err(Box::new(login_form(
            StatusCode::UNAUTHORIZED,
            Some(app),
            "sign in with the app's token or the admin token",
        ))),
    }
}

pub(super) fn target(console: &Console, app: &str) -> Result<AppTarget, Box<Response>> {
    let definitions = console
        .deployer
        .definitions
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match definitions.as_deref().map(|d| AppTarget::find(d, app)) {
        Some(Ok(target)) => Ok(target),
        _ => Err(Box::new(crate::serve::error(
            StatusCode::NOT_FOUND,
            &format!("no app `{app}` in the definitions in force"),
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct LogsQuery {
    lines: Option<usize>,
    follow: Option<String>,
    /// Set by the rollback's redirect: the release it goes back to.
    rolling_back: Option<String>,
}

#[derive(Debug, Serialize)]
struct LogsView {
    app: String,
    /// `shop` or `admin`.
    signed_in_as: String,
    lines_asked: usize,
    follow: bool,
    follow_href: String,
    rollback_href: String,
    read_at: String,
    lines: Vec<LineView>,
    failed: Vec<(String, String)>,
    cut: Vec<String>,
    releases: Vec<ReleaseChoice>,
    note: Option<String>,
}

#[derive(Debug, Serialize)]
struct LineView {
    time: String,
    server: String,
    source: String,
    text: String,
}

async fn logs_page(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(app): Path<String>,
    Query(query): Query<LogsQuery>,
    headers: HeaderMap,
) -> Response {
    let owner = match allowed(&console, peer, "/apps/logs", &headers, &app) {
        Ok(owner) => owner,
        Err(refused) => return *refused,
    };
    let target = match target(&console, &app) {
        Ok(target) => target,
        Err(missing) => return *missing,
    };
    let lines = query.lines.unwrap_or(LINES).clamp(1, MAX_LINES);
    let read = crate::logs::read(
        &target,
        console.deployer.connector.as_ref(),
        &mut crate::logs::Cursor::default(),
        lines,
    )
    .await;
    let view = LogsView {
        signed_in_as: if owner == ADMIN {
            "admin".into()
        } else {
            owner
        },
        lines_asked: lines,
        follow: query.follow.is_some(),
        follow_href: format!("{}?lines={lines}&follow=1", app_href(&app, "logs")),
        rollback_href: app_href(&app, "rollback"),
        read_at: chrono::Utc::now()
            .format("%Y-%m-%d %H:%M:%S UTC")
            .to_string(),
        lines: read
            .lines
            .into_iter()
            .map(|l| LineView {
                time: l
                    .time
                    .map(|t| t.format("%F %T").to_string())
                    .unwrap_or_default(),
                server: l.server.to_string(),
                source: l.source,
                text: l.text,
            })
            .collect(),
        failed: read
            .failed
            .into_iter()
            .map(|(s, why)| (s.to_string(), why))
            .collect(),
        cut: read
            .cut
            .into_iter()
            .map(|(s, log)| format!("{log} on {s}"))
            .collect(),
        releases: choices(&console.board, &app),
        note: query
            .rolling_back
            .map(|to| format!("rolling back to {to}: the release history shows it when done")),
        app,
    };
    html(StatusCode::OK, "logs", &view)
}
