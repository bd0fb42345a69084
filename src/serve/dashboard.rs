//! The dashboard at `/`: the board as one server-rendered page (problems,
//! every server, every app), readable without JavaScript; a small script
//! of our own (`/dashboard.js`, embedded like the page and its style)
//! fetches the page again every 5 s and swaps the board in place, and
//! counts down to reload windows. Every value is escaped by the template
//! engine (messages may quote what an app printed), and the page's
//! Content-Security-Policy allows only its own script and style.
//!
//! The recent commits, the events feed, the release histories and the
//! OPcache trends come from the board's journal. The feed is filtered by
//! `/?app=NAME&server=NAME` (links on every event), so filtering needs no
//! script either; the script fetches the same address.

use std::sync::OnceLock;

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;

use super::AppState;
use crate::board::{Board, CommitSeen, Event, OpcacheRead, ReleaseRecord, Status};

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
    commits: Vec<CommitView>,
    events: Vec<EventView>,
    filter: Filter,
}

/// The events feed's filter: `/?app=NAME&server=NAME`, each optional.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

impl Filter {
    fn keeps(&self, event: &Event) -> bool {
        let matches = |wanted: &Option<String>, has: &Option<String>| {
            wanted.as_ref().is_none_or(|w| has.as_ref() == Some(w))
        };
        matches(&self.app, &event.app) && matches(&self.server, &event.server)
    }
}

/// Events the page shows (the newest that pass the filter).
const EVENTS_SHOWN: usize = 100;
/// Release log lines each app shows.
const RELEASES_SHOWN: usize = 15;

#[derive(Debug, Serialize)]
struct CommitView {
    commit: String,
    at: String,
    class: &'static str,
    /// `in force`, `was in force`, `rejected`, `fetched`.
    outcome: &'static str,
    /// The commit in force: on how many servers it is applied.
    applied: Option<String>,
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct EventView {
    at: String,
    kind: &'static str,
    class: &'static str,
    app: Option<String>,
    app_href: Option<String>,
    server: Option<String>,
    server_href: Option<String>,
    text: String,
}

#[derive(Debug, Serialize)]
struct ReleaseView {
    time: String,
    server: String,
    release: String,
    trigger: String,
    who: String,
    duration: String,
    result: &'static str,
    class: &'static str,
    reason: Option<String>,
}

/// A link to the feed of one app or server: names are percent-encoded
/// whole (the template escapes the rest).
fn feed_href(key: &str, value: &str) -> String {
    let mut href = format!("/?{key}=");
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            href.push(char::from(b));
        } else {
            href.push_str(&format!("%{b:02X}"));
        }
    }
    href.push_str("#events");
    href
}

fn event_view(event: Event) -> EventView {
    EventView {
        at: time(Some(&event.at)),
        kind: event.kind,
        class: match event.kind {
            "rejected" | "failed" | "rolled-back" => "bad",
            "drift" | "rollback" | "app" => "warn",
            _ => "ok",
        },
        app_href: event.app.as_deref().map(|a| feed_href("app", a)),
        server_href: event.server.as_deref().map(|s| feed_href("server", s)),
        app: event.app,
        server: event.server,
        text: event.text,
    }
}

fn release_view(r: &ReleaseRecord) -> ReleaseView {
    ReleaseView {
        time: chrono::DateTime::parse_from_rfc3339(&r.time).map_or_else(
            |_| r.time.clone(),
            |t| time(Some(&t.with_timezone(&chrono::Utc))),
        ),
        server: r.server.clone(),
        release: short(&r.sha),
        trigger: r.trigger.clone(),
        who: r.who.clone(),
        duration: format!("{:.1} s", r.duration_ms as f64 / 1000.0),
        result: r.result,
        class: match r.result {
            "live" => "ok",
            "rollback" => "warn",
            _ => "bad",
        },
        reason: r.reason.clone(),
    }
}

fn commit_views(commits: &[CommitSeen], status: &Status) -> Vec<CommitView> {
    let in_force = status.last_good.as_ref().map(|c| c.commit.as_str());
    commits
        .iter()
        .map(|c| {
            let current = in_force == Some(c.commit.as_str());
            let (outcome, class) = match c.outcome {
                "in force" if current => ("in force", "ok"),
                "in force" => ("was in force", "ok"),
                "rejected" => ("rejected", "bad"),
                other => (other, "warn"),
            };
            let applied = current.then(|| {
                let on = status
                    .hosts
                    .values()
                    .filter(|h| h.last_applied_commit.as_deref() == Some(c.commit.as_str()))
                    .count();
                format!("applied on {on} of {} servers", status.hosts.len())
            });
            CommitView {
                commit: short(&c.commit),
                at: time(Some(&c.at)),
                class,
                outcome,
                applied,
                errors: c.errors.clone(),
            }
        })
        .collect()
}

/// An OPcache's reads (at most [`OPCACHE_READS`](crate::board::OPCACHE_READS))
/// as two lines (used, wasted) of a chart 120 × 20 across its width, with
/// a label from its first to its last read; `None` under two reads.
fn trend(version: &str, reads: &[OpcacheRead]) -> Option<TrendView> {
    let (first, last) = (reads.first()?, reads.last()?);
    if reads.len() < 2 {
        return None;
    }
    // Over the whole width: the label says how many reads.
    let step = 120.0 / (reads.len() - 1) as f64;
    let line = |pick: fn(&OpcacheRead) -> u8| -> String {
        reads
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let y = 20.0 - 19.0 * f64::from(pick(r)) / 100.0;
                format!("{:.1},{y:.1}", step * i as f64)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(TrendView {
        label: format!(
            "PHP {version} OPcache used {}% to {}% over {} reads",
            first.0,
            last.0,
            reads.len()
        ),
        used: line(|r| r.0),
        wasted: line(|r| r.1),
    })
}

#[derive(Debug, Serialize)]
struct TrendView {
    label: String,
    /// `x,y` pairs for `<polyline points>`.
    used: String,
    wasted: String,
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
    trends: Vec<TrendView>,
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
    releases: Vec<ReleaseView>,
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

/// What the page shows besides the status: from the board.
#[derive(Debug, Default)]
pub struct Extras {
    /// Each app's requests and 5xx per traffic read, oldest first.
    pub traffic: BTreeMap<String, Vec<(u64, u64)>>,
    /// The journal's commits and events (newest first), release
    /// histories and OPcache reads.
    pub commits: Vec<CommitSeen>,
    pub events: Vec<Event>,
    pub releases: BTreeMap<String, Vec<ReleaseRecord>>,
    pub opcache: BTreeMap<String, BTreeMap<String, Vec<OpcacheRead>>>,
}

impl Extras {
    /// Everything `board` has for the page.
    pub fn of(board: &Board) -> Extras {
        let (commits, events, releases, opcache) =
            board.journal(|j| (j.commits(), j.events(), j.releases(), j.opcache()));
        Extras {
            traffic: board.traffic_history(),
            commits,
            events,
            releases,
            opcache,
        }
    }
}

use std::collections::BTreeMap;

impl View {
    fn of(status: Status, extras: Extras, filter: Filter) -> View {
        let commits = commit_views(&extras.commits, &status);
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
                trends: extras
                    .opcache
                    .get(name)
                    .into_iter()
                    .flatten()
                    .filter_map(|(version, reads)| trend(version, reads))
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
                    releases: extras
                        .releases
                        .get(name)
                        .into_iter()
                        .flatten()
                        .take(RELEASES_SHOWN)
                        .map(release_view)
                        .collect(),
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
            traffic: extras
                .traffic
                .iter()
                .map(|(app, points)| chart(app, points))
                .collect(),
            commits,
            events: extras
                .events
                .into_iter()
                .filter(|e| filter.keeps(e))
                .take(EVENTS_SHOWN)
                .map(event_view)
                .collect(),
            filter,
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

/// The page for `status` with the board's `extras`, its events feed
/// filtered by `filter`.
pub fn render(status: Status, extras: Extras, filter: Filter) -> Result<String, String> {
    templates()
        .render("page", &View::of(status, extras, filter))
        .map_err(|e| e.to_string())
}

/// Only this page's own script, style and requests.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(super) async fn page(State(state): State<AppState>, Query(filter): Query<Filter>) -> Response {
    let board = &state.board;
    match render(board.snapshot(), Extras::of(board), filter) {
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
        let html = render(status, Extras::default(), Filter::default()).expect("rendered");
        assert!(html.contains("No server seen yet."), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
}
