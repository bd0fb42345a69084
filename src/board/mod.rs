//! What the daemon knows, for people and machines: the status document
//! (`GET /v1/status`, `reconciler status`, and `status.json` in the state
//! directory) and the Prometheus metrics, updated together on one board;
//! and the definitions in force. The loop (`watch`) writes it, the
//! listener (`serve`) reads it: it sits below both, which never import
//! each other.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use crate::definitions::Definitions;

mod elastic;
mod journal;
mod metrics;
mod status;

pub use elastic::{Member, MemberState};
pub use journal::{CommitSeen, Event, Journal, OPCACHE_READS, OpcacheRead, ReleaseRecord};
use metrics::{AppLabel, HostLabel, KindLabel, Metrics, RESULTS, ResultLabel};
pub use metrics::{AuthFailureCounter, NotifyFailureCounter};
pub use status::{
    AppStatus, CommitRecord, DaemonInfo, HostStatus, PROBLEM_KINDS, PendingReload, Problem,
    Rejected, Status, TrafficStatus,
};

/// The definitions the daemon acts on: the commit in force (or, for
/// `reconciler serve`, the directory it was given); `None` before the
/// first commit validates.
pub type DefinitionsInForce = Arc<RwLock<Option<Arc<Definitions>>>>;

use chrono::{DateTime, Utc};

/// The status and metrics, shared by the loop and the HTTP server.
pub struct Board {
    status: Mutex<Status>,
    metrics: Metrics,
    /// Where the status is kept for `reconciler status --state-dir`.
    path: Option<PathBuf>,
    /// The definitions of the commit in force, for the deploy webhook.
    pub definitions: DefinitionsInForce,
    /// Each app's requests and 5xx (every web server's, summed) per
    /// traffic read, the last `HISTORY` reads, oldest first: the
    /// dashboard's charts. Kept in memory only.
    history: Mutex<BTreeMap<String, VecDeque<(u64, u64)>>>,
    /// What happened (`journal`): followed on every update, in memory.
    journal: Mutex<Journal>,
}

/// Traffic reads each app's history keeps (an hour at the default 15 s).
pub const HISTORY: usize = 240;

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
            history: Mutex::default(),
            journal: Mutex::default(),
        }
    }

    /// Reads the journal: the recent commits, the events, each app's
    /// release history, each server's OPcache reads.
    pub fn journal<R>(&self, read: impl FnOnce(&Journal) -> R) -> R {
        read(
            &self
                .journal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Takes in the release log lines (oldest first) an app check read
    /// from `server` for `app`: its release history and the events feed.
    pub fn release_logs(
        &self,
        app: &str,
        server: &str,
        log: &[crate::release::LogEntry],
        now: DateTime<Utc>,
    ) {
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .release_logs(app, server, log, now);
    }

    /// Each app's requests and 5xx per traffic read, oldest first.
    pub fn traffic_history(&self) -> BTreeMap<String, Vec<(u64, u64)>> {
        self.history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(app, points)| (app.clone(), points.iter().copied().collect()))
            .collect()
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
        self.update_with(at, change, |_| {});
    }

    /// `update`, with `record` changing the metrics in the same step: the
    /// status lock is held while both change and while `metrics_text`
    /// encodes, so a scrape sees the metrics of one status, never half of
    /// a change (`reconciler_fetch_failing 1` with no `fetch-failing`
    /// problem).
    fn update_with(
        &self,
        at: DateTime<Utc>,
        change: impl FnOnce(&mut Status),
        record: impl FnOnce(&Metrics),
    ) {
        let snapshot = {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = journal::Marks::of(&status);
            change(&mut status);
            record(&self.metrics);
            self.journal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .follow(&before, &status, at);
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

    /// Records a fetch of the definitions at `at` (`succeeded`: whether
    /// it did) in the metrics, and `change` in the status, in one step
    /// (`update_with`): `reconciler_fetch_failing` and the status's
    /// `fetch-failing` problem always agree.
    pub fn fetched(&self, at: DateTime<Utc>, succeeded: bool, change: impl FnOnce(&mut Status)) {
        self.update_with(at, change, |metrics| {
            if succeeded {
                metrics.fetch_failing.set(0);
                metrics.last_fetch.set(at.timestamp());
            } else {
                metrics.fetch_failing.set(1);
                metrics.fetch_failures.inc();
            }
        });
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
    /// something that is gone; and their traffic: the status's figures,
    /// the request series, and a gone app's chart history.
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
        self.journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget(servers, apps);
        // Traffic: the status's figures and the request series of the
        // apps and servers that left, and the apps' chart history.
        let gone: Vec<(String, String)> = {
            let mut status = self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut gone = Vec::new();
            for (app, on) in &mut status.traffic {
                on.retain(|server, _| {
                    let left = apps.contains(app) || servers.contains(server);
                    if left {
                        gone.push((app.clone(), server.clone()));
                    }
                    !left
                });
            }
            status.traffic.retain(|_, on| !on.is_empty());
            gone
        };
        for (app, server) in gone {
            metrics.request_times.remove(&metrics::AppServerLabel {
                app: app.clone(),
                server: server.clone(),
            });
            for class in ["5xx", "4xx", "other"] {
                metrics.http_requests.remove(&metrics::RequestLabel {
                    app: app.clone(),
                    server: server.clone(),
                    class: class.to_owned(),
                });
            }
        }
        let mut history = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        history.retain(|app, _| !apps.contains(app));
    }

    /// Counts the requests of a traffic read (`traffic::read`); a log's
    /// first read only marks where the next one starts, so the counters
    /// hold what came after the daemon began.
    pub fn traffic(&self, read: &crate::traffic::Read, seconds: f64, at: DateTime<Utc>) {
        {
            let mut history = self
                .history
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut this_read: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for f in read.figures.iter().filter(|f| !f.first) {
                let sum = this_read.entry(f.app.to_string()).or_default();
                sum.0 += f.figures.requests;
                sum.1 += f.figures.errors;
            }
            for (app, sum) in this_read {
                let points = history.entry(app).or_default();
                if points.len() == HISTORY {
                    points.pop_front();
                }
                points.push_back(sum);
            }
        }
        self.update(at, |status| {
            for f in read.figures.iter().filter(|f| !f.first) {
                let finite = |p: Option<f64>| p.filter(|s| s.is_finite());
                status.traffic.entry(f.app.to_string()).or_default().insert(
                    f.server.to_string(),
                    TrafficStatus {
                        at,
                        seconds,
                        requests: f.figures.requests,
                        errors: f.figures.errors,
                        client_errors: f.figures.client_errors,
                        p50: finite(f.figures.percentile(0.5)),
                        p99: finite(f.figures.percentile(0.99)),
                    },
                );
            }
        });
        for f in read.figures.iter().filter(|f| !f.first) {
            let figures = &f.figures;
            self.metrics
                .request_times
                .get_or_create(&metrics::AppServerLabel {
                    app: f.app.to_string(),
                    server: f.server.to_string(),
                })
                .add(figures);
            let other = figures
                .requests
                .saturating_sub(figures.errors + figures.client_errors);
            for (class, count) in [
                ("5xx", figures.errors),
                ("4xx", figures.client_errors),
                ("other", other),
            ] {
                self.metrics
                    .http_requests
                    .get_or_create(&metrics::RequestLabel {
                        app: f.app.to_string(),
                        server: f.server.to_string(),
                        class: class.to_owned(),
                    })
                    .inc_by(count);
            }
        }
    }

    /// Counts one commit of the definitions that did not validate
    /// (`reconciler_rejected_commits_total`).
    pub fn count_rejected(&self) {
        self.metrics.rejected.inc();
    }

    /// The counter of failed authentications, for the listener's guard.
    pub fn auth_failures(&self) -> AuthFailureCounter {
        self.metrics.auth_failures.clone()
    }

    /// The counter of notifications given up, for the notifier.
    pub fn notify_failures(&self) -> NotifyFailureCounter {
        self.metrics.notify_failures.clone()
    }

    /// The metrics in Prometheus' text format, of one status: encoded
    /// under the status lock, so no `update` is half seen.
    pub fn metrics_text(&self) -> String {
        let _status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.metrics.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests;
