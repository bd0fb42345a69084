//! What the dashboard's template receives: the status and the board's
//! journal, shaped for the page (short commit ids, times as text, a colour
//! per row). Pure: no request, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Filter;
use super::charts::{ChartView, OpcacheView, TrendView, chart, opcache, trend};
use crate::board::{Board, CommitSeen, Event, OpcacheRead, ReleaseRecord, Status};

/// What the page's template receives.
#[derive(Debug, Serialize)]
pub(super) struct View {
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

#[derive(Debug, Serialize)]
struct AppView {
    name: String,
    /// Its logs page (behind the login).
    logs_href: String,
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

pub(super) fn time(at: Option<&chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(String::new, |t| {
        t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
    })
}

pub(super) fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
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

impl View {
    pub(super) fn of(status: Status, extras: Extras, filter: Filter) -> View {
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
                    logs_href: super::console::app_href(name, "logs"),
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
