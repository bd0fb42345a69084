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
    /// Why the repository could not be fetched, the last time it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_error: Option<String>,
    pub hosts: BTreeMap<String, HostStatus>,
    pub updated: Option<DateTime<Utc>>,
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
        Self {
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
