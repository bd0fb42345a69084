//! The Prometheus metrics of the board: their families, labels and
//! registration.

use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::PROBLEM_KINDS;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct HostLabel {
    pub(super) server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabel {
    pub(super) server: String,
    pub(super) result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) kind: String,
}

/// One app's requests on one server, by class: `5xx`, `4xx` or `other`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RequestLabel {
    pub(super) app: String,
    pub(super) server: String,
    pub(super) class: String,
}

/// One app on one server.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AppServerLabel {
    pub(super) app: String,
    pub(super) server: String,
}

/// The request times of one app on one server, as its access log counts
/// them (`traffic::Figures`): a histogram built from counts already in
/// buckets, which `Histogram` (one observation at a time) cannot take.
/// Its buckets are `traffic::BUCKETS` and `+Inf`; its sum is exact to the
/// millisecond. Clones count together.
#[derive(Clone, Debug, Default)]
pub(super) struct RequestTimes(Arc<Mutex<RequestTimesInner>>);

#[derive(Debug, Default)]
struct RequestTimesInner {
    time_ms: u64,
    buckets: [u64; 12],
}

impl RequestTimes {
    /// Adds the request times of `figures`.
    pub(super) fn add(&self, figures: &crate::traffic::Figures) {
        let mut inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        inner.time_ms += figures.time_ms;
        for (sum, count) in inner.buckets.iter_mut().zip(figures.buckets) {
            *sum += count;
        }
    }
}

impl TypedMetric for RequestTimes {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for RequestTimes {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (time_ms, counts) = {
            let inner = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            (inner.time_ms, inner.buckets)
        };
        // Per bucket, not cumulated: the encoder sums them up.
        let buckets: Vec<(f64, u64)> = crate::traffic::BUCKETS
            .into_iter()
            .chain([f64::INFINITY])
            .zip(counts)
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            time_ms as f64 / 1000.0,
            counts.iter().sum(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AppLabel {
    pub(super) app: String,
}

/// Every result word a host reconcile reports (`describe` in `watch`).
pub(super) const RESULTS: [&str; 7] = [
    "applied",
    "unchanged",
    "drift",
    "failed",
    "invalid",
    "locked",
    "stale",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TargetLabel {
    target: String,
}

/// Notifications that could not be delivered after their retries, by
/// target (its name in the notify URLs file): the metric
/// `reconciler_notifications_failed_total{target}`. Clones count together.
#[derive(Clone, Debug, Default)]
pub struct NotifyFailureCounter(Family<TargetLabel, Counter>);

impl NotifyFailureCounter {
    /// Counts one notification to `target` given up.
    pub fn inc(&self, target: &str) {
        self.0
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .inc();
    }

    /// Notifications to `target` given up so far.
    pub fn get(&self, target: &str) -> u64 {
        self.0
            .get_or_create(&TargetLabel {
                target: target.to_owned(),
            })
            .get()
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The Prometheus metrics.
pub(super) struct Metrics {
    pub(super) registry: Registry,
    pub(super) reconciles: Family<ResultLabel, Counter>,
    pub(super) failures: Family<HostLabel, Counter>,
    pub(super) durations: Family<HostLabel, Histogram, fn() -> Histogram>,
    pub(super) drift: Family<HostLabel, Gauge>,
    pub(super) pending: Family<HostLabel, Gauge>,
    pub(super) last_success: Family<HostLabel, Gauge>,
    pub(super) rejected: Counter,
    pub(super) auth_failures: AuthFailureCounter,
    pub(super) notify_failures: NotifyFailureCounter,
    pub(super) problems: Family<KindLabel, Gauge>,
    pub(super) fetch_failures: Counter,
    pub(super) fetch_failing: Gauge,
    pub(super) last_fetch: Gauge,
    pub(super) app_converged: Family<AppLabel, Gauge>,
    pub(super) http_requests: Family<RequestLabel, Counter>,
    pub(super) request_times: Family<AppServerLabel, RequestTimes>,
    pub(super) elastic: Family<MemberLabel, Gauge>,
}

/// An elastic member and its state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct MemberLabel {
    pub(super) cluster: String,
    pub(super) server: String,
    pub(super) state: String,
}

impl Metrics {
    pub(super) fn new() -> Self {
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
        let notify_failures = NotifyFailureCounter::default();
        registry.register(
            "notifications_failed",
            "Notifications not delivered after their retries, by target",
            notify_failures.0.clone(),
        );
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
        let http_requests = Family::<RequestLabel, Counter>::default();
        registry.register(
            "http_requests",
            "Requests an app's vhost answered on a web server since the daemon started, by class \
             (5xx, 4xx, other), from its access log",
            http_requests.clone(),
        );
        let request_times = Family::<AppServerLabel, RequestTimes>::default();
        registry.register(
            "http_request_duration_seconds",
            "How long an app's vhost took to answer on a web server (nginx's request time) since \
             the daemon started, from its access log",
            request_times.clone(),
        );
        let elastic = Family::<MemberLabel, Gauge>::default();
        registry.register(
            "elastic_member",
            "1 for each elastic member (a server that joined through the listener), labelled with \
             its cluster and state",
            elastic.clone(),
        );
        Self {
            elastic,
            http_requests,
            request_times,
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
            notify_failures,
        }
    }
}
