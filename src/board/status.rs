//! The status document (`schemas/status.schema.json`) and the problems it
//! shows.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The daemon's status document.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct Status {
    /// The definitions repository and branch it follows; credentials in
    /// a URL are shown as `***`.
    pub repo: String,
    /// The branch of `repo` it follows (`--branch`).
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
    /// Every server of the commit in force, by its name in the
    /// definitions (and ready elastic members).
    pub hosts: BTreeMap<String, HostStatus>,
    /// Elastic members by name (servers that joined through the listener),
    /// in every state; a `ready` one is also in `hosts`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub elastic: BTreeMap<String, super::Member>,
    /// Each app's live releases against the release it should run.
    #[serde(default)]
    pub apps: BTreeMap<String, AppStatus>,
    /// Each app's requests on each web server over the daemon's last
    /// traffic read (`--traffic-interval`), by app, then server.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traffic: BTreeMap<String, BTreeMap<String, TrafficStatus>>,
    /// Everything that is not as the commit in force says, recomputed on
    /// every update; `reconciler status` exits non-zero when any is here
    /// (or when the document is stale).
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// The daemon that writes it: its process id and intervals (seconds),
    /// from which a reader judges whether the document is stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daemon: Option<DaemonInfo>,
    /// When the daemon last changed this document (any change, each
    /// fetch among them); with `daemon`, what tells a stale document.
    pub updated: Option<DateTime<Utc>>,
}

/// One app's requests on one web server between two traffic reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficStatus {
    /// When the read ended.
    pub at: DateTime<Utc>,
    /// The seconds between the previous read and this one.
    pub seconds: f64,
    /// Requests answered in those seconds, every status.
    pub requests: u64,
    /// Requests answered 5xx.
    pub errors: u64,
    /// Requests answered 4xx.
    pub client_errors: u64,
    /// Median and 99th-percentile request time, in seconds (the upper
    /// bound of a histogram bucket; none without requests, past 10 s
    /// none either).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// The 99th-percentile request time, in seconds, read like `p50`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99: Option<f64>,
}

/// Who writes the status, and how often it is written at least.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DaemonInfo {
    /// The daemon's process id on the machine that runs it.
    pub pid: u32,
    /// The fetch interval: the document is written at least this often.
    pub interval_seconds: u64,
    /// How often every server is checked against the commit in force
    /// (`--drift-interval`), in seconds.
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
    /// When the app was last checked (or released), whatever came of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
    /// Failed checks or repairs in a row; 0 after one that did not fail.
    pub failures: u32,
    /// When the next try after a failure is (the backoff's), if one is
    /// scheduled.
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

/// A commit of the definitions the daemon put in force.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CommitRecord {
    /// Its id, 40 hex characters.
    pub commit: String,
    /// When the daemon put it in force (its clock, not the commit's date).
    pub at: DateTime<Utc>,
}

/// A commit of the definitions that did not validate; nothing of it was
/// applied.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Rejected {
    /// Its id, 40 hex characters.
    pub commit: String,
    /// When the daemon rejected it (its clock, not the commit's date).
    pub at: DateTime<Utc>,
    /// Every problem, as `file:line:col: message`.
    pub errors: Vec<String>,
}

/// One server, as the daemon last saw it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct HostStatus {
    /// The cluster the server belongs to, by its name in the definitions.
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
    /// When the daemon last reconciled this server, whatever came of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_at: Option<DateTime<Utc>>,
    /// When a reconcile of this server last succeeded.
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
    /// Failed reconciles in a row; 0 after one that succeeded.
    pub failures: u32,
    /// When the next try after a failure is (the backoff's), if one is
    /// scheduled.
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

/// A service reload on a server that waits for a reload window (or
/// `--now`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PendingReload {
    /// The service, as operators name it: `php8.2-fpm`.
    pub label: String,
    /// When the next window opens, if one will.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<DateTime<Utc>>,
}
