//! What happened, as the dashboard tells it: the recent commits with
//! their outcome, one feed of events, each app's release history and each
//! server's OPcache fill over time. Kept in memory only and bounded: a
//! restarted daemon starts a new journal (the release history comes back
//! from the servers' release logs on the first app check).
//!
//! Most of it is read off the status itself: [`Marks`] are what the
//! journal compares of a status before and after each
//! [`Board::update`](super::Board::update), so the loop writes the status
//! once and the journal follows. The release history is the release logs'
//! lines the daemon's app check reads anyway ([`Journal::release_logs`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Status;

/// Events the feed keeps.
pub const EVENTS: usize = 500;
/// Commits the definitions' list keeps.
pub const COMMITS: usize = 20;
/// Release log lines kept per app (every server's, newest first).
pub const RELEASES: usize = 50;
/// OPcache reads kept per server and PHP version.
pub const OPCACHE_READS: usize = 240;

/// One thing that happened, for the feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// `commit`, `rejected`, `apply`, `failed`, `drift`, `reload`,
    /// `release`, `rollback`, `rolled-back`, `app`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// For a person; may quote what a server or an app printed.
    pub text: String,
}

/// A commit the daemon fetched, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommitSeen {
    pub commit: String,
    /// When it was first fetched (or put in force, on a resume).
    pub at: DateTime<Utc>,
    /// `fetched` (not loaded yet), `in force` (it validated), or
    /// `rejected`.
    pub outcome: &'static str,
    /// A rejected commit's problems, as `file:line:col: message`.
    pub errors: Vec<String>,
}

/// One line of a server's release log, as the daemon's app check read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleaseRecord {
    pub server: String,
    /// The full commit id.
    pub sha: String,
    /// When it ended (RFC 3339, as the log says).
    pub time: String,
    /// `cli`, `webhook`, `definitions`, `repair`, `rollback`, ...
    pub trigger: String,
    pub who: String,
    pub duration_ms: u64,
    /// `live`, `failed`, `rolled-back`, `rollback`, `interrupted`.
    pub result: &'static str,
    /// Why its guard rolled it back, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One OPcache read of a PHP version: percent of its memory used and
/// wasted.
pub type OpcacheRead = (u8, u8);

/// The journal: see the module doc.
#[derive(Debug, Default)]
pub struct Journal {
    events: VecDeque<Event>,
    commits: VecDeque<CommitSeen>,
    releases: BTreeMap<String, Vec<ReleaseRecord>>,
    /// By app and server: the time of the newest release log line taken
    /// in (a log only grows at its end, and holds more lines than the
    /// history keeps).
    releases_until: BTreeMap<(String, String), String>,
    /// By server, then PHP version; oldest first.
    opcache: BTreeMap<String, BTreeMap<String, VecDeque<OpcacheRead>>>,
}

/// What the journal compares of a status before and after an update.
#[derive(Debug, Default)]
pub struct Marks {
    head: Option<String>,
    in_force: Option<String>,
    rejected: Option<(String, DateTime<Utc>)>,
    /// By server: when last reconciled, drift, pending reload labels,
    /// when its figures were read.
    hosts: BTreeMap<String, HostMarks>,
    /// By app: when last checked.
    apps: BTreeMap<String, Option<DateTime<Utc>>>,
}

#[derive(Debug, Default)]
struct HostMarks {
    last_at: Option<DateTime<Utc>>,
    drift: usize,
    pending: BTreeSet<String>,
    known_at: Option<DateTime<Utc>>,
}

impl Marks {
    /// The marks of `status`.
    pub fn of(status: &Status) -> Marks {
        Marks {
            head: status.head.clone(),
            in_force: status.last_good.as_ref().map(|c| c.commit.clone()),
            rejected: status
                .last_rejected
                .as_ref()
                .map(|r| (r.commit.clone(), r.at)),
            hosts: status
                .hosts
                .iter()
                .map(|(name, h)| {
                    let marks = HostMarks {
                        last_at: h.last_at,
                        drift: h.drift,
                        pending: h.pending_reloads.iter().map(|p| p.label.clone()).collect(),
                        known_at: h.known_at,
                    };
                    (name.clone(), marks)
                })
                .collect(),
            apps: status
                .apps
                .iter()
                .map(|(name, a)| (name.clone(), a.last_at))
                .collect(),
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..12.min(commit.len())]
}

fn push<T>(list: &mut VecDeque<T>, item: T, keep: usize) {
    if list.len() == keep {
        list.pop_front();
    }
    list.push_back(item);
}

impl Journal {
    fn event(&mut self, event: Event) {
        push(&mut self.events, event, EVENTS);
    }

    fn commit(&mut self, commit: &str, at: DateTime<Utc>) -> &mut CommitSeen {
        if let Some(i) = self.commits.iter().position(|c| c.commit == commit) {
            return &mut self.commits[i];
        }
        let seen = CommitSeen {
            commit: commit.to_owned(),
            at,
            outcome: "fetched",
            errors: Vec::new(),
        };
        push(&mut self.commits, seen, COMMITS);
        self.commits.back_mut().expect("just pushed")
    }

    /// Notes what changed from `before` to `status` (updated at `at`).
    pub fn follow(&mut self, before: &Marks, status: &Status, at: DateTime<Utc>) {
        if let Some(head) = &status.head {
            if before.head.as_ref() != Some(head) {
                self.commit(head, at);
            }
        }
        if let Some(good) = &status.last_good {
            if before.in_force.as_ref() != Some(&good.commit) {
                self.commit(&good.commit, good.at).outcome = "in force";
                self.event(Event {
                    at: good.at,
                    kind: "commit",
                    server: None,
                    app: None,
                    text: format!("{} is in force", short(&good.commit)),
                });
            }
        }
        if let Some(rejected) = &status.last_rejected {
            if before.rejected.as_ref() != Some(&(rejected.commit.clone(), rejected.at)) {
                let seen = self.commit(&rejected.commit, rejected.at);
                seen.outcome = "rejected";
                seen.errors.clone_from(&rejected.errors);
                self.event(Event {
                    at: rejected.at,
                    kind: "rejected",
                    server: None,
                    app: None,
                    text: format!(
                        "{} is rejected: {}",
                        short(&rejected.commit),
                        rejected.errors.first().map_or("", String::as_str)
                    ),
                });
            }
        }
        for (name, host) in &status.hosts {
            let old = before.hosts.get(name);
            if host.known_at.is_some() && old.and_then(|o| o.known_at) != host.known_at {
                self.read_opcache(name, &host.opcache);
            }
            let Some(last_at) = host.last_at else {
                continue;
            };
            if old.and_then(|o| o.last_at) == Some(last_at) {
                continue;
            }
            let result = host.last_result.as_deref().unwrap_or("");
            let message = host.last_message.clone().unwrap_or_default();
            let server = Some(name.clone());
            let event = |kind, text| Event {
                at: last_at,
                kind,
                server: server.clone(),
                app: None,
                text,
            };
            match result {
                "applied" => self.event(event("apply", message)),
                "unchanged" => {}
                "drift" => {
                    // Reported on every drift check: an event when it changes.
                    if old.is_none_or(|o| o.drift != host.drift) {
                        self.event(event("drift", message));
                    }
                }
                "failed" => self.event(event("failed", message)),
                other => self.event(event("failed", format!("{other}: {message}"))),
            }
            if matches!(result, "applied" | "unchanged") {
                let now: BTreeSet<&String> =
                    host.pending_reloads.iter().map(|p| &p.label).collect();
                for label in old.iter().flat_map(|o| &o.pending) {
                    if !now.contains(label) {
                        self.event(event(
                            "reload",
                            format!("{label}: no longer waiting for its window"),
                        ));
                    }
                }
            }
        }
        for (name, app) in &status.apps {
            let Some(last_at) = app.last_at else {
                continue;
            };
            if before.apps.get(name).copied().flatten() == Some(last_at) {
                continue;
            }
            if matches!(app.state.as_str(), "repaired" | "failed" | "diverged") {
                self.event(Event {
                    at: last_at,
                    kind: "app",
                    server: None,
                    app: Some(name.clone()),
                    text: format!("{}: {}", app.state, app.message),
                });
            }
        }
    }

    fn read_opcache(&mut self, server: &str, figures: &BTreeMap<String, serde_json::Value>) {
        let by_version = self.opcache.entry(server.to_owned()).or_default();
        for (version, f) in figures {
            let number = |key: &str| f[key].as_u64();
            let (Some(used), Some(wasted), Some(free)) = (
                number("memory_used"),
                number("memory_wasted"),
                number("memory_free"),
            ) else {
                continue;
            };
            let total = (used + wasted + free).max(1);
            let pct = |part: u64| u8::try_from(part * 100 / total).unwrap_or(100);
            let reads = by_version.entry(version.clone()).or_default();
            push(reads, (pct(used), pct(wasted)), OPCACHE_READS);
        }
    }

    /// Takes in `server`'s release log lines for `app` (oldest first, as
    /// the app check read them); lines not seen before join the app's
    /// history and the feed, at the time the log gives.
    pub fn release_logs(
        &mut self,
        app: &str,
        server: &str,
        log: &[crate::release::LogEntry],
        now: DateTime<Utc>,
    ) {
        let mut new = Vec::new();
        {
            let until = self
                .releases_until
                .entry((app.to_owned(), server.to_owned()))
                .or_default();
            let history = self.releases.entry(app.to_owned()).or_default();
            for line in log {
                // RFC 3339 in UTC sorts as text.
                if line.time < *until {
                    continue;
                }
                let record = ReleaseRecord {
                    server: server.to_owned(),
                    sha: line.sha.as_str().to_owned(),
                    time: line.time.clone(),
                    trigger: line.trigger.clone(),
                    who: line.who.clone(),
                    duration_ms: line.duration_ms,
                    result: line.result.as_str(),
                    reason: line.reason.clone(),
                };
                if line.time == *until && history.contains(&record) {
                    continue;
                }
                until.clone_from(&line.time);
                history.push(record.clone());
                new.push(record);
            }
            // Newest first.
            history.sort_by(|a, b| b.time.cmp(&a.time));
            history.truncate(RELEASES);
        }
        for r in new {
            let at = DateTime::parse_from_rfc3339(&r.time).map_or(now, |t| t.with_timezone(&Utc));
            let kind = match r.result {
                "live" => "release",
                "rollback" => "rollback",
                "rolled-back" => "rolled-back",
                _ => "failed",
            };
            let mut text = format!(
                "{} {} by {} ({}, {:.1} s)",
                short(&r.sha),
                r.result,
                r.who,
                r.trigger,
                r.duration_ms as f64 / 1000.0
            );
            if let Some(reason) = &r.reason {
                text.push_str(": ");
                text.push_str(reason);
            }
            self.event(Event {
                at,
                kind,
                server: Some(r.server),
                app: Some(app.to_owned()),
                text,
            });
        }
    }

    /// The events, newest first.
    pub fn events(&self) -> Vec<Event> {
        let mut events: Vec<Event> = self.events.iter().cloned().collect();
        events.sort_by_key(|e| std::cmp::Reverse(e.at));
        events
    }

    /// The commits, newest first.
    pub fn commits(&self) -> Vec<CommitSeen> {
        self.commits.iter().rev().cloned().collect()
    }

    /// Each app's release history, newest first.
    pub fn releases(&self) -> BTreeMap<String, Vec<ReleaseRecord>> {
        self.releases.clone()
    }

    /// Each server's OPcache reads by PHP version, oldest first.
    pub fn opcache(&self) -> BTreeMap<String, BTreeMap<String, Vec<OpcacheRead>>> {
        self.opcache
            .iter()
            .map(|(server, versions)| {
                let versions = versions
                    .iter()
                    .map(|(v, reads)| (v.clone(), reads.iter().copied().collect()))
                    .collect();
                (server.clone(), versions)
            })
            .collect()
    }

    /// Forgets servers and apps that left the definitions.
    pub fn forget(&mut self, servers: &[String], apps: &[String]) {
        for server in servers {
            self.opcache.remove(server);
        }
        for app in apps {
            self.releases.remove(app);
        }
        self.releases_until
            .retain(|(app, server), _| !apps.contains(app) && !servers.contains(server));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::{HostStatus, Status};
    use crate::release::{LogEntry, LogResult, Sha};

    fn line(sha: &str, time: &str, result: LogResult) -> LogEntry {
        LogEntry {
            sha: Sha::parse(sha).expect("sha"),
            time: time.into(),
            trigger: "cli".into(),
            result,
            duration_ms: 1500,
            who: "ops@deploy (pid 1)".into(),
            previous: None,
            reason: None,
            warmed: None,
        }
    }

    #[test]
    fn a_release_log_read_on_every_check_is_one_history_and_one_event_per_line() {
        let mut journal = Journal::default();
        let now = Utc::now();
        let log = [
            line(&"a".repeat(40), "2026-12-01T10:00:00Z", LogResult::Live),
            line(&"b".repeat(40), "2026-12-01T11:00:00Z", LogResult::Failed),
        ];
        journal.release_logs("shop", "web-1", &log[..1], now);
        journal.release_logs("shop", "web-1", &log, now);
        journal.release_logs("shop", "web-1", &log, now);
        let history = &journal.releases()["shop"];
        assert_eq!(
            history.iter().map(|r| r.result).collect::<Vec<_>>(),
            ["failed", "live"],
            "newest first"
        );
        let events = journal.events();
        assert_eq!(
            events.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["failed", "release"]
        );
        assert_eq!(events[1].at.to_rfc3339(), "2026-12-01T10:00:00+00:00");
        assert_eq!(
            events[1].text,
            "aaaaaaaaaaaa live by ops@deploy (pid 1) (cli, 1.5 s)"
        );
    }

    #[test]
    fn drift_found_on_every_check_is_an_event_when_it_changes() {
        let mut journal = Journal::default();
        let mut status = Status::default();
        let start = Utc::now();
        for (minute, drift) in [(1, 2), (2, 2), (3, 2), (4, 3)] {
            let before = Marks::of(&status);
            let at = start + chrono::Duration::minutes(minute);
            status.hosts.insert(
                "web-1".into(),
                HostStatus {
                    last_result: Some("drift".into()),
                    last_message: Some(format!("{drift} changes found")),
                    last_at: Some(at),
                    drift,
                    ..HostStatus::default()
                },
            );
            journal.follow(&before, &status, at);
        }
        let texts: Vec<String> = journal.events().into_iter().map(|e| e.text).collect();
        assert_eq!(texts, ["3 changes found", "2 changes found"]);
    }

    #[test]
    fn the_feed_keeps_the_newest_events() {
        let mut journal = Journal::default();
        let now = Utc::now();
        let log: Vec<LogEntry> = (0..EVENTS + 10)
            .map(|i| {
                let time = (now + chrono::Duration::seconds(i as i64)).to_rfc3339();
                line(
                    &format!("{i:012x}{}", "0".repeat(28)),
                    &time,
                    LogResult::Live,
                )
            })
            .collect();
        journal.release_logs("shop", "web-1", &log, now);
        // Read again on the next check: more lines than the history keeps.
        journal.release_logs("shop", "web-1", &log, now);
        let events = journal.events();
        assert_eq!(events.len(), EVENTS);
        assert!(
            events[0].text.starts_with(&format!("{:012x}", EVENTS + 9)),
            "{events:?}"
        );
        assert!(
            events[EVENTS - 1].text.starts_with(&format!("{:012x}", 10)),
            "{events:?}"
        );
        assert_eq!(journal.releases()["shop"].len(), RELEASES);
    }
}
