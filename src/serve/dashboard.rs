//! The dashboard at `/`: the board as one server-rendered page (problems,
//! every server, every app), readable without JavaScript; a small script
//! of our own (`/dashboard.js`, embedded like the page and its style)
//! fetches the page again every 5 s and swaps the board in place, and
//! counts down to reload windows. Every value is escaped by the template
//! engine (messages may quote what an app printed), and the page's
//! Content-Security-Policy allows only its own script and style.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;

use super::AppState;
use crate::board::Status;

const PAGE: &str = include_str!("dashboard.html.hbs");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// What the page's template receives.
#[derive(Debug, Serialize)]
struct View {
    repo: String,
    branch: String,
    /// Short commit ids; `none` before the first.
    head: String,
    in_force: String,
    in_force_at: Option<String>,
    updated: String,
    daemon: Option<crate::board::DaemonInfo>,
    problems: Vec<crate::board::Problem>,
    rejected: Option<crate::board::Rejected>,
    fetch_error: Option<String>,
    hosts: Vec<HostView>,
    apps: Vec<AppView>,
    traffic: Vec<ChartView>,
}

/// One app's requests and 5xx per traffic read as two lines of an SVG
/// chart 240 × 40 (the newest read at the right edge).
#[derive(Debug, Serialize)]
struct ChartView {
    app: String,
    /// `x,y` pairs for `<polyline points>`.
    requests: String,
    errors: String,
    /// The newest read's figures.
    last_requests: u64,
    last_errors: u64,
    /// The largest request count, the chart's top.
    peak: u64,
}

fn chart(app: &str, points: &[(u64, u64)]) -> ChartView {
    let peak = points.iter().map(|(r, _)| *r).max().unwrap_or(0).max(1);
    let step = 240.0 / (crate::board::HISTORY.max(2) - 1) as f64;
    let start = 240.0 - step * (points.len().max(1) - 1) as f64;
    let line = |pick: fn(&(u64, u64)) -> u64| -> String {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let y = 40.0 - 38.0 * pick(p) as f64 / peak as f64;
                format!("{:.1},{y:.1}", start + step * i as f64)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (last_requests, last_errors) = points.last().copied().unwrap_or_default();
    ChartView {
        app: app.to_owned(),
        requests: line(|p| p.0),
        errors: line(|p| p.1),
        last_requests,
        last_errors,
        peak,
    }
}

#[derive(Debug, Serialize)]
struct HostView {
    name: String,
    cluster: String,
    /// `ok`, `warn` or `bad`: the row's colour.
    class: &'static str,
    result: String,
    message: String,
    at: String,
    commit: String,
    drift: usize,
    pending: Vec<PendingView>,
    failures: u32,
    retry_at: Option<String>,
    lock_holder: Option<String>,
    opcache: Vec<OpcacheView>,
}

#[derive(Debug, Serialize)]
struct PendingView {
    label: String,
    /// RFC 3339: the script counts down to it.
    window: Option<String>,
}

/// One php-fpm's OPcache as a bar of 120 pixels: used, wasted, free.
#[derive(Debug, Serialize)]
struct OpcacheView {
    version: String,
    used_pct: u64,
    wasted_pct: u64,
    used_mb: u64,
    wasted_mb: u64,
    free_mb: u64,
    used_px: u64,
    wasted_px: u64,
    free_x: u64,
    free_px: u64,
}

#[derive(Debug, Serialize)]
struct AppView {
    name: String,
    class: &'static str,
    intended: String,
    live: Vec<LiveView>,
    state: String,
    message: String,
    at: String,
    failures: u32,
    retry_at: Option<String>,
}

#[derive(Debug, Serialize)]
struct LiveView {
    server: String,
    release: String,
    /// Not what most of the app's servers run.
    differs: bool,
}

fn time(at: Option<&chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(String::new, |t| {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}

fn opcache(version: &str, figures: &serde_json::Value) -> Option<OpcacheView> {
    let number = |key: &str| figures[key].as_u64();
    let (used, wasted, free) = (
        number("memory_used")?,
        number("memory_wasted")?,
        number("memory_free")?,
    );
    let total = (used + wasted + free).max(1);
    let px = |part: u64| part * 120 / total;
    Some(OpcacheView {
        version: version.to_owned(),
        used_pct: used * 100 / total,
        wasted_pct: wasted * 100 / total,
        used_mb: used >> 20,
        wasted_mb: wasted >> 20,
        free_mb: free >> 20,
        used_px: px(used),
        wasted_px: px(wasted),
        free_x: px(used) + px(wasted),
        free_px: 120 - px(used) - px(wasted),
    })
}

impl View {
    fn of(status: Status, history: &std::collections::BTreeMap<String, Vec<(u64, u64)>>) -> View {
        let hosts = status
            .hosts
            .iter()
            .map(|(name, host)| HostView {
                name: name.clone(),
                cluster: host.cluster.clone(),
                class: match host.last_result.as_deref() {
                    Some("applied" | "unchanged") => "ok",
                    Some("failed" | "invalid") => "bad",
                    _ => "warn",
                },
                result: host.last_result.clone().unwrap_or_else(|| "not yet".into()),
                message: host.last_message.clone().unwrap_or_default(),
                at: time(host.last_at.as_ref()),
                commit: host
                    .last_applied_commit
                    .as_deref()
                    .map(short)
                    .unwrap_or_default(),
                drift: host.drift,
                pending: host
                    .pending_reloads
                    .iter()
                    .map(|p| PendingView {
                        label: p.label.clone(),
                        window: p.next_window.map(|t| t.to_rfc3339()),
                    })
                    .collect(),
                failures: host.failures,
                retry_at: host.retry_at.as_ref().map(|t| time(Some(t))),
                lock_holder: host.lock_holder.clone(),
                opcache: host
                    .opcache
                    .iter()
                    .filter_map(|(version, figures)| opcache(version, figures))
                    .collect(),
            })
            .collect();
        let apps = status
            .apps
            .iter()
            .map(|(name, app)| {
                let releases: Vec<String> = app
                    .live
                    .values()
                    .map(|r| r.clone().unwrap_or_else(|| "none".into()))
                    .collect();
                let most = releases
                    .iter()
                    .max_by_key(|r| releases.iter().filter(|o| o == r).count())
                    .cloned()
                    .unwrap_or_default();
                AppView {
                    name: name.clone(),
                    class: if app.is_problem() {
                        "bad"
                    } else if app.state == "converged" || app.state == "repaired" {
                        "ok"
                    } else {
                        "warn"
                    },
                    intended: app.intended.clone().unwrap_or_else(|| "nothing yet".into()),
                    live: app
                        .live
                        .keys()
                        .zip(releases.iter())
                        .map(|(server, release)| LiveView {
                            server: server.clone(),
                            release: release.clone(),
                            differs: *release != most,
                        })
                        .collect(),
                    state: app.state.clone(),
                    message: app.message.clone(),
                    at: time(app.last_at.as_ref()),
                    failures: app.failures,
                    retry_at: app.retry_at.as_ref().map(|t| time(Some(t))),
                }
            })
            .collect();
        View {
            repo: status.repo,
            branch: status.branch,
            head: status.head.as_deref().map_or_else(|| "none".into(), short),
            in_force: status
                .last_good
                .as_ref()
                .map_or_else(|| "none".into(), |c| short(&c.commit)),
            in_force_at: status.last_good.as_ref().map(|c| time(Some(&c.at))),
            updated: time(status.updated.as_ref()),
            daemon: status.daemon,
            problems: status.problems,
            rejected: status.last_rejected,
            fetch_error: status.fetch_error,
            hosts,
            apps,
            traffic: history
                .iter()
                .map(|(app, points)| chart(app, points))
                .collect(),
        }
    }
}

fn templates() -> &'static Handlebars<'static> {
    static TEMPLATES: OnceLock<Handlebars<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        // Not strict: fields the status leaves out when empty (a
        // problem's subject) render as nothing.
        let mut handlebars = Handlebars::new();
        // The template is ours and tested: it always registers.
        let _ = handlebars.register_template_string("page", PAGE);
        handlebars
    })
}

/// The page for `status`, with each app's traffic `history` (requests
/// and 5xx per read, oldest first) as charts.
pub fn render(
    status: Status,
    history: &std::collections::BTreeMap<String, Vec<(u64, u64)>>,
) -> Result<String, String> {
    templates()
        .render("page", &View::of(status, history))
        .map_err(|e| e.to_string())
}

/// Only this page's own script, style and requests.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn page(State(state): State<AppState>) -> Response {
    match render(state.board.snapshot(), &state.board.traffic_history()) {
        Ok(html) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, POLICY),
                (header::CACHE_CONTROL, "no-store"),
            ],
            html,
        )
            .into_response(),
        Err(e) => super::error(axum::http::StatusCode::INTERNAL_SERVER_ERROR, &e),
    }
}

pub(super) async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        SCRIPT,
    )
        .into_response()
}

pub(super) async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_board_renders_and_every_value_is_escaped() {
        let mut status = Status {
            repo: "/srv/defs.git".into(),
            branch: "main".into(),
            ..Status::default()
        };
        status.fetch_error = Some("<script>alert(1)</script>".into());
        let html = render(status, &Default::default()).expect("rendered");
        assert!(html.contains("No server seen yet."), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
}
