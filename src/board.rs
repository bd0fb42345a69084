//! What the daemon knows, for people and machines: the status document
//! (`GET /v1/status`, `reconciler status`, and `status.json` in the state
//! directory) and the Prometheus metrics, updated together on one board;
//! and the definitions in force. The loop (`watch`) writes it, the
//! listener (`serve`) reads it: it sits below both, which never import
//! each other.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::definitions::Definitions;

/// The definitions the daemon acts on: the commit in force (or, for
/// `reconciler serve`, the directory it was given); `None` before the
/// first commit validates.
pub type DefinitionsInForce = Arc<RwLock<Option<Arc<Definitions>>>>;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The daemon's status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// The definitions repository and branch it follows; credentials in
    /// a URL are shown as `***`.
    pub repo: String,
    pub branch: String,
    /// The branch head last fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The commit in force: the last one that validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<CommitRecord>,
    /// The last commit that did not validate (nothing of it was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rejected: Option<Rejected>,
    /// Why the repository could not be fetched, while fetching fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    /// Since when fetching fails (the first failure in a row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_failing_since: Option<DateTime<Utc>>,
    /// The watched branch is not on the remote (deleted or renamed): the
    /// last commit in force stays.
    #[serde(default)]
    pub branch_missing: bool,
    /// When the branch was last fetched without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetch_at: Option<DateTime<Utc>>,
    pub hosts: BTreeMap<String, HostStatus>,
    /// Each app's live releases against the release it should run.
    #[serde(default)]
    pub apps: BTreeMap<String, AppStatus>,
    /// Everything that is not as the commit in force says, recomputed on
    /// every update; `reconciler status` exits non-zero when any is here
    /// (or when the document is stale).
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// The daemon that writes it: its process id and intervals (seconds),
    /// from which a reader judges whether the document is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonInfo>,
    pub updated: Option<DateTime<Utc>>,
}

/// Who writes the status, and how often it is written at least.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DaemonInfo {
    pub pid: u32,
    /// The fetch interval: the document is written at least this often.
    pub interval_seconds: u64,
    pub drift_interval_seconds: u64,
}

/// One app: what should be live, and what each server has.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct AppStatus {
    /// The release that should be live: `revision v2 (1a2b3c4d5e6f)` for a
    /// pin, or the newest one the release logs say went live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intended: Option<String>,
    /// The live release per server, as last read (`null`: none).
    #[serde(default)]
    pub live: BTreeMap<String, Option<String>>,
    /// `pending` (not checked yet under the commit in force), `converged`,
    /// `repaired`, `diverged` (left alone: `--drift warn`), `busy`
    /// (another release holds the app), `failed`, `unreleased`.
    pub state: String,
    /// What the state means here, for a person.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
    /// Failures in a row, and when the next try is.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
}

impl AppStatus {
    /// Whether this state is a problem: the servers do not run what they
    /// should, and nothing is about to fix it.
    pub fn is_problem(&self) -> bool {
        matches!(self.state.as_str(), "diverged" | "failed")
    }
}

/// The kinds of problem, each a value of the metric
/// `reconciler_problems{kind}`.
pub const PROBLEM_KINDS: [&str; 8] = [
    "converging",
    "fetch-failing",
    "branch-missing",
    "commit-rejected",
    "host-failed",
    "drift",
    "release-failed",
    "release-diverged",
];

/// Something that is not as the commit in force says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Problem {
    /// One of `PROBLEM_KINDS`, or `stale` (judged by the reader).
    pub kind: String,
    /// The server or app it is about; empty for the definitions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subject: String,
    /// Its cause, for a person.
    pub message: String,
}

impl Status {
    /// Every problem this document shows, in a stable order.
    pub fn find_problems(&self) -> Vec<Problem> {
        let problem = |kind: &str, subject: &str, message: String| Problem {
            kind: kind.to_owned(),
            subject: subject.to_owned(),
            message,
        };
        let mut found = Vec::new();
        if self.last_good.is_none() {
            found.push(problem(
                "converging",
                "",
                "no commit of the definitions is in force yet".into(),
            ));
        }
        if self.branch_missing {
            found.push(problem(
                "branch-missing",
                "",
                format!(
                    "the branch `{}` is not on the remote; the last commit in force stays",
                    self.branch
                ),
            ));
        } else if let Some(error) = &self.fetch_error {
            let since = self
                .fetch_failing_since
                .map(|t| format!(" (since {})", t.format("%Y-%m-%d %H:%M:%S UTC")))
                .unwrap_or_default();
            found.push(problem("fetch-failing", "", format!("{error}{since}")));
        }
        if let Some(rejected) = &self.last_rejected
            && self.head.as_ref() == Some(&rejected.commit)
        {
            found.push(problem(
                "commit-rejected",
                "",
                format!(
                    "the branch head {} does not validate: {}",
                    &rejected.commit[..12.min(rejected.commit.len())],
                    rejected.errors.first().map_or("", String::as_str)
                ),
            ));
        }
        for (server, host) in &self.hosts {
            if host.converging && host.failures == 0 {
                found.push(problem(
                    "converging",
                    server,
                    "the commit in force is being applied or checked".into(),
                ));
            }
            if host.failures > 0 {
                let message = host
                    .last_message
                    .clone()
                    .unwrap_or_else(|| host.last_result.clone().unwrap_or_default());
                found.push(problem("host-failed", server, message));
            } else if host.drift > 0 {
                found.push(problem(
                    "drift",
                    server,
                    format!(
                        "{} left alone (--drift warn)",
                        crate::definitions::plural(host.drift, "change")
                    ),
                ));
            }
        }
        for (app, status) in &self.apps {
            if status.state == "pending" {
                found.push(problem(
                    "converging",
                    app,
                    "its releases are not checked yet".into(),
                ));
            }
            if status.is_problem() {
                let kind = if status.state == "failed" {
                    "release-failed"
                } else {
                    "release-diverged"
                };
                found.push(problem(kind, app, status.message.clone()));
            }
        }
        found
    }

    /// Why this document cannot be trusted as the daemon's current view,
    /// judged at `now`: its daemon is gone (`alive` says whether its pid
    /// runs; `None` when that cannot be told, as over HTTP), or it was not
    /// written for three fetch intervals and a minute.
    pub fn staleness(&self, now: DateTime<Utc>, alive: Option<bool>) -> Option<String> {
        let Some(daemon) = &self.daemon else {
            return Some("written by a daemon that does not say who it is".into());
        };
        if alive == Some(false) {
            return Some(format!(
                "the daemon that wrote it (pid {}) is not running",
                daemon.pid
            ));
        }
        let updated = self.updated?;
        let limit = chrono::Duration::seconds(
            i64::try_from(daemon.interval_seconds.saturating_mul(3).saturating_add(60))
                .unwrap_or(i64::MAX),
        );
        let age = now - updated;
        (age > limit).then(|| {
            format!(
                "not updated for {} s (the daemon writes it every {} s at least)",
                age.num_seconds(),
                daemon.interval_seconds
            )
        })
    }
}

impl Status {
    /// The document with every URL's credentials shown as `***`: for one
    /// written by a daemon that kept them.
    pub fn redacted(mut self) -> Self {
        use crate::redact::scrub_urls;
        self.repo = crate::redact::url(&self.repo);
        let scrub = |text: &mut String| *text = scrub_urls(text).into_owned();
        if let Some(error) = &mut self.fetch_error {
            scrub(error);
        }
        if let Some(rejected) = &mut self.last_rejected {
            rejected.errors.iter_mut().for_each(scrub);
        }
        for host in self.hosts.values_mut() {
            if let Some(message) = &mut host.last_message {
                scrub(message);
            }
        }
        for app in self.apps.values_mut() {
            scrub(&mut app.message);
        }
        for problem in &mut self.problems {
            scrub(&mut problem.message);
        }
        self
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CommitRecord {
    pub commit: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    pub commit: String,
    pub at: DateTime<Utc>,
    /// Every problem, as `file:line:col: message`.
    pub errors: Vec<String>,
}

/// One server, as the daemon last saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostStatus {
    pub cluster: String,
    /// The last commit applied here in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit: Option<String>,
    /// `applied`, `unchanged`, `drift`, `locked`, `failed`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<String>,
    /// What the last result says, for a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<DateTime<Utc>>,
    /// When the figures below (drift, pending reloads, OPcache) were read
    /// from the server: while it cannot be reached they are its last
    /// known state, as of this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_at: Option<DateTime<Utc>>,
    /// Changes found on a drift check (`--drift warn` leaves them).
    pub drift: usize,
    /// Reloads waiting for a window (or `--now`).
    pub pending_reloads: Vec<PendingReload>,
    /// OPcache figures by PHP version, as the plan reports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opcache: BTreeMap<String, serde_json::Value>,
    /// Failures in a row, and when the next try is.
    pub failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Who held the host lock when the daemon found it held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_holder: Option<String>,
    /// The commit in force is not applied here yet (new, or the daemon
    /// just started and has not checked this server).
    #[serde(default)]
    pub converging: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PendingReload {
    pub label: String,
    /// When the next window opens, if one will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabel {
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    server: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: String,
}

/// Every result word a host reconcile reports (`describe` in `watch`).
const RESULTS: [&str; 7] = [
    "applied",
    "unchanged",
    "drift",
    "failed",
    "invalid",
    "locked",
    "stale",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Failed token and signature checks by route (such as `/v1/deploy`): the
/// metric `reconciler_auth_failures_total{route}`. Clones count together.
#[derive(Clone, Debug, Default)]
pub struct AuthFailureCounter(Family<RouteLabel, Counter>);

impl AuthFailureCounter {
    /// Counts one failed check on `route`.
    pub fn inc(&self, route: &str) {
        self.0
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .inc();
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The Prometheus metrics.
struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    failures: Family<HostLabel, Counter>,
    durations: Family<HostLabel, Histogram, fn() -> Histogram>,
    drift: Family<HostLabel, Gauge>,
    pending: Family<HostLabel, Gauge>,
    last_success: Family<HostLabel, Gauge>,
    rejected: Counter,
    auth_failures: AuthFailureCounter,
    problems: Family<KindLabel, Gauge>,
    fetch_failures: Counter,
    fetch_failing: Gauge,
    last_fetch: Gauge,
    app_converged: Family<AppLabel, Gauge>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("reconciler");
        let reconciles = Family::<ResultLabel, Counter>::default();
        let failures = Family::<HostLabel, Counter>::default();
        let durations: Family<HostLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(duration_histogram);
        let drift = Family::<HostLabel, Gauge>::default();
        let pending = Family::<HostLabel, Gauge>::default();
        let last_success = Family::<HostLabel, Gauge>::default();
        let rejected = Counter::default();
        let auth_failures = AuthFailureCounter::default();
        registry.register(
            "reconciles",
            "Host reconciles, by result",
            reconciles.clone(),
        );
        registry.register("failures", "Host reconciles that failed", failures.clone());
        registry.register(
            "reconcile_duration_seconds",
            "How long a host reconcile took",
            durations.clone(),
        );
        registry.register(
            "drift_changes",
            "Changes a drift check found on a host",
            drift.clone(),
        );
        registry.register(
            "pending_reloads",
            "Reloads waiting for a window on a host",
            pending.clone(),
        );
        registry.register(
            "last_success_timestamp_seconds",
            "When a host last reconciled without error",
            last_success.clone(),
        );
        registry.register(
            "rejected_commits",
            "Definitions commits that did not validate",
            rejected.clone(),
        );
        registry.register(
            "auth_failures",
            "Deploy tokens and git hook signatures that failed their check",
            auth_failures.0.clone(),
        );
        let problems = Family::<KindLabel, Gauge>::default();
        for kind in PROBLEM_KINDS {
            problems
                .get_or_create(&KindLabel { kind: kind.into() })
                .set(0);
        }
        registry.register(
            "problems",
            "Things not as the commit in force says, by kind (the status's problems)",
            problems.clone(),
        );
        let fetch_failures = Counter::default();
        registry.register(
            "fetch_failures",
            "Fetches of the definitions repository that failed",
            fetch_failures.clone(),
        );
        let fetch_failing = Gauge::default();
        registry.register(
            "fetch_failing",
            "1 while fetching the definitions fails (or the branch is missing), else 0",
            fetch_failing.clone(),
        );
        let last_fetch = Gauge::default();
        registry.register(
            "last_fetch_success_timestamp_seconds",
            "When the definitions were last fetched without error",
            last_fetch.clone(),
        );
        let app_converged = Family::<AppLabel, Gauge>::default();
        registry.register(
            "app_converged",
            "1 when every server of an app runs the release it should, else 0",
            app_converged.clone(),
        );
        Self {
            problems,
            fetch_failures,
            fetch_failing,
            last_fetch,
            app_converged,
            registry,
            reconciles,
            failures,
            durations,
            drift,
            pending,
            last_success,
            rejected,
            auth_failures,
        }
    }
}

/// The status and metrics, shared by the loop and the HTTP server.
pub struct Board {
    status: Mutex<Status>,
    metrics: Metrics,
    /// Where the status is kept for `reconciler status --state-dir`.
    path: Option<PathBuf>,
    /// The definitions of the commit in force, for the deploy webhook.
    pub definitions: DefinitionsInForce,
}

impl Board {
    /// A board for `repo` (shown without its credentials) and `branch`,
    /// kept in `path` when given.
    pub fn new(repo: &str, branch: &str, path: Option<PathBuf>) -> Self {
        Self {
            status: Mutex::new(Status {
                repo: crate::redact::url(repo),
                branch: branch.to_owned(),
                ..Status::default()
            }),
            metrics: Metrics::new(),
            path,
            definitions: Default::default(),
        }
    }

    /// The status document now.
    pub fn snapshot(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Changes the status, then writes it to the state directory.
    pub fn update(&self, at: DateTime<Utc>, change: impl FnOnce(&mut Status)) {
        let snapshot = {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            change(&mut status);
            status.updated = Some(at);
            status.problems = status.find_problems();
            for kind in PROBLEM_KINDS {
                let count = status.problems.iter().filter(|p| p.kind == kind).count();
                self.metrics
                    .problems
                    .get_or_create(&KindLabel { kind: kind.into() })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
            status.clone()
        };
        if let Some(path) = &self.path {
            let text = serde_json::to_vec_pretty(&snapshot).unwrap_or_default();
            if let Err(error) = crate::fsutil::write_atomically(path, &text) {
                tracing::warn!(path = %path.display(), %error, "cannot write the status file");
            }
        }
    }

    /// Records one host reconcile in the metrics.
    pub fn count(&self, server: &str, result: &str, seconds: f64, failed: bool) {
        let host = HostLabel {
            server: server.to_owned(),
        };
        let metrics = &self.metrics;
        metrics
            .reconciles
            .get_or_create(&ResultLabel {
                server: server.to_owned(),
                result: result.to_owned(),
            })
            .inc();
        metrics.durations.get_or_create(&host).observe(seconds);
        if failed {
            metrics.failures.get_or_create(&host).inc();
        }
    }

    /// Sets a host's gauges.
    pub fn gauges(&self, server: &str, drift: usize, pending: usize, success_at: Option<i64>) {
        let host = HostLabel {
            server: server.to_owned(),
        };
        let metrics = &self.metrics;
        metrics.drift.get_or_create(&host).set(drift as i64);
        metrics.pending.get_or_create(&host).set(pending as i64);
        if let Some(at) = success_at {
            metrics.last_success.get_or_create(&host).set(at);
        }
    }

    /// Records a fetch of the definitions: its time when it succeeded.
    pub fn fetched(&self, success_at: Option<DateTime<Utc>>) {
        let metrics = &self.metrics;
        if let Some(at) = success_at {
            metrics.fetch_failing.set(0);
            metrics.last_fetch.set(at.timestamp());
        } else {
            metrics.fetch_failing.set(1);
            metrics.fetch_failures.inc();
        }
    }

    /// Sets whether `app` runs the release it should everywhere.
    pub fn app_converged(&self, app: &str, converged: bool) {
        self.metrics
            .app_converged
            .get_or_create(&AppLabel {
                app: app.to_owned(),
            })
            .set(i64::from(converged));
    }

    /// Drops the series of servers and apps that left the definitions, so
    /// that no frozen value (a last success time) fires an alert for
    /// something that is gone.
    pub fn forget(&self, servers: &[String], apps: &[String]) {
        let metrics = &self.metrics;
        for server in servers {
            let host = HostLabel {
                server: server.clone(),
            };
            metrics.failures.remove(&host);
            metrics.durations.remove(&host);
            metrics.drift.remove(&host);
            metrics.pending.remove(&host);
            metrics.last_success.remove(&host);
            for result in RESULTS {
                metrics.reconciles.remove(&ResultLabel {
                    server: server.clone(),
                    result: result.to_owned(),
                });
            }
        }
        for app in apps {
            metrics.app_converged.remove(&AppLabel { app: app.clone() });
        }
    }

    pub fn count_rejected(&self) {
        self.metrics.rejected.inc();
    }

    /// The counter of failed authentications, for the listener's guard.
    pub fn auth_failures(&self) -> AuthFailureCounter {
        self.metrics.auth_failures.clone()
    }

    /// The metrics in Prometheus' text format.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.metrics.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `reconciler_*` name in an `expr:` of the example alert rules.
    fn alerted_metrics() -> Vec<String> {
        let rules: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../examples/alerts/reconciler.rules.yml"))
                .expect("the rules are YAML");
        let mut names = Vec::new();
        for group in rules["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let expr = rule["expr"].as_str().expect("expr");
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("reconciler_") && !names.iter().any(|n| n == word) {
                        names.push(word.to_owned());
                    }
                }
            }
        }
        names
    }

    #[test]
    fn every_metric_the_example_alerts_name_is_exported() {
        let board = Board::new("repo", "main", None);
        board.count("web-1", "applied", 0.5, false);
        board.gauges("web-1", 0, 1, Some(1));
        board.app_converged("shop", true);
        board.auth_failures().inc("/v1/deploy");
        board.fetched(None);
        let text = board.metrics_text();
        let names = alerted_metrics();
        assert!(names.len() >= 7, "{names:?}");
        for name in &names {
            // Counters are declared without `_total`.
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "the rules name `{name}`, which /metrics does not declare:\n{text}"
            );
        }
    }

    #[test]
    fn servers_and_apps_that_left_lose_their_series() {
        let board = Board::new("repo", "main", None);
        for server in ["web-1", "web-2"] {
            board.count(server, "failed", 0.5, true);
            board.gauges(server, 2, 1, Some(1));
        }
        board.app_converged("shop", false);
        board.forget(&["web-2".to_owned()], &["shop".to_owned()]);
        let text = board.metrics_text();
        assert!(text.contains("server=\"web-1\""), "{text}");
        assert!(!text.contains("web-2"), "{text}");
        assert!(!text.contains("shop"), "{text}");
    }

    #[test]
    fn problems_follow_the_status_and_a_stale_document_says_why() {
        let board = Board::new("repo", "main", None);
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().expect("time");
        board.update(now, |s| {
            s.last_good = Some(CommitRecord {
                commit: "1a2b".into(),
                at: now,
            });
            s.fetch_error = Some("cannot fetch".into());
            s.hosts.insert(
                "web-1".into(),
                HostStatus {
                    drift: 2,
                    ..HostStatus::default()
                },
            );
            s.apps.insert(
                "shop".into(),
                AppStatus {
                    state: "diverged".into(),
                    message: "web-2 runs 1a2b".into(),
                    ..AppStatus::default()
                },
            );
        });
        let status = board.snapshot();
        let kinds: Vec<&str> = status.problems.iter().map(|p| p.kind.as_str()).collect();
        assert_eq!(kinds, ["fetch-failing", "drift", "release-diverged"]);
        assert!(
            board
                .metrics_text()
                .contains("reconciler_problems{kind=\"drift\"} 1")
        );
        board.update(now, |s| {
            s.fetch_error = None;
            s.hosts.clear();
            s.apps.clear();
        });
        assert!(board.snapshot().problems.is_empty());

        let mut status = board.snapshot();
        assert!(status.staleness(now, None).is_some(), "no daemon named");
        status.daemon = Some(DaemonInfo {
            pid: 1,
            interval_seconds: 30,
            drift_interval_seconds: 600,
        });
        assert_eq!(
            status.staleness(now + chrono::Duration::seconds(100), Some(true)),
            None
        );
        let old = status
            .staleness(now + chrono::Duration::seconds(200), None)
            .expect("stale");
        assert!(old.contains("not updated for 200 s"), "{old}");
        let dead = status.staleness(now, Some(false)).expect("stale");
        assert!(dead.contains("pid 1"), "{dead}");
    }
}
