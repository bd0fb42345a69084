//! What a server has of an app's releases, as its records say, and the
//! release log's lines, written and read by serde.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};

use super::Sha;
use super::warm::Warmed;
use crate::remote::Record;

/// How a release ended, in the release log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogResult {
    /// It went live.
    Live,
    /// It failed before any server switched to it.
    Failed,
    /// It went live, failed after the switch, and the servers went back.
    RolledBack,
    /// `reconciler rollback` made it live again.
    Rollback,
    /// It switched on this server, and its client stopped (killed, or its
    /// connection lost) before it finished: the line is written by the
    /// release or check that found its in-flight record.
    Interrupted,
}

impl LogResult {
    /// Its word in the release log's JSON (`live`, `failed`,
    /// `rolled-back`, `rollback`, `interrupted`), as the status shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogResult::Live => "live",
            LogResult::Failed => "failed",
            LogResult::RolledBack => "rolled-back",
            LogResult::Rollback => "rollback",
            LogResult::Interrupted => "interrupted",
        }
    }

    /// Whether the release was live after it.
    pub fn went_live(self) -> bool {
        matches!(self, LogResult::Live | LogResult::Rollback)
    }
}

/// One line of a server's release log
/// (`/var/lib/reconciler/apps/<app>/release.log`), serialized here and
/// appended whole by the server; a line that does not read back as one
/// (a log from before this format, or damaged) is left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The release (or rollback target) the line is about.
    pub sha: Sha,
    /// When it ended, by this machine's clock (RFC 3339, UTC).
    pub time: String,
    /// What started it: `cli`, `webhook`, `definitions`, `rollback`.
    pub trigger: String,
    /// How it ended.
    pub result: LogResult,
    /// Milliseconds from the start of the run (the app lock included) to
    /// this line; 0 for an `interrupted` line, written by the run that
    /// found the release's in-flight record.
    pub duration_ms: u64,
    /// Who ran it: `user@machine (pid N)`, or the daemon's name.
    pub who: String,
    /// What was live on this server before.
    #[serde(default, deserialize_with = "optional_sha")]
    pub previous: Option<Sha>,
    /// Why it was rolled back, when its guard failed it (`5xx 14.2% over
    /// 180 requests ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What warming OPcache did on this server before the switch
    /// (`opcache_prewarm`): none when it was off, could not run, or the
    /// run did not get that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmed: Option<Warmed>,
}

/// A release that switched a server and has not finished there: the
/// record `release_switch` keeps in `/var/lib/reconciler/apps/<app>/in-flight`
/// until `release_finish` removes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    /// The release it switched to.
    pub sha: Sha,
    /// What was live on this server before it.
    #[serde(default, deserialize_with = "optional_sha")]
    pub previous: Option<Sha>,
    /// When it started, by its client's clock (RFC 3339, UTC).
    pub started: String,
    /// What started it (`cli`, `webhook`, `definitions`, ...).
    pub trigger: String,
    /// Who ran it: `user@machine (pid N)`, or the daemon's name.
    pub who: String,
    /// Its guard, when the app has `guard:`: what the release, or the
    /// check, that finds this record needs to go on judging it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardRecord>,
}

/// Where a guarded release's guard stood at its switch, kept in each
/// server's in-flight record: a release whose client stopped during its
/// guard window is judged on by the next check (`release::repair`), from
/// the traffic since its switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardRecord {
    /// When the guard's window ends, by its client's clock (RFC 3339, UTC).
    pub until: String,
    /// The byte of this server's access log the traffic since the switch
    /// is read from; none on a server that serves no web requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// Every web server's requests, and how many of them were 5xx, in the
    /// guard's window before the switch (`compare`).
    pub before_requests: u64,
    pub before_5xx: u64,
}

/// A commit id, or nothing (`""` in older lines).
fn optional_sha<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Sha>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    if text.is_empty() {
        return Ok(None);
    }
    Sha::parse(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a commit id")))
}

/// What a server has of an app: from `app_state` (under the lock) or
/// `release_list`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerReleases {
    /// The release `current` names.
    pub live: Option<Sha>,
    /// Where `current` points when it names no release of the app (the
    /// app pointed it elsewhere, or a directory stands there): never taken
    /// for a release.
    pub stray_current: Option<String>,
    /// What stands at `current` when it is no link at all: `directory`
    /// (an adopted app's code, served as it is), `file`, ... A release
    /// or rollback refuses to replace it.
    pub current_not_link: Option<&'static str>,
    /// Releases root recorded complete (and whose directory is there).
    pub complete: BTreeSet<Sha>,
    /// Release directories (and `ab` sides holding a complete release),
    /// with their modification time (Unix seconds).
    pub present: Vec<(Sha, i64)>,
    /// The release log's last lines, oldest first.
    pub log: Vec<LogEntry>,
    /// A release that switched here and did not finish (its client
    /// stopped): to be put right by the next release or check.
    pub in_flight: Option<InFlight>,
    /// Who holds the app lock, when `release_list` found it held (a
    /// release, rollback or `env push` runs).
    pub locked_by: Option<String>,
    /// `release_layout: ab`: the complete release each side (`a`, `b`)
    /// holds, as root recorded it.
    pub sides: Vec<(String, Sha)>,
}

impl ServerReleases {
    /// Reads a server's records.
    pub fn from_records(records: &[Record]) -> Self {
        let mut state = Self::default();
        for r in records {
            match r.kind.as_str() {
                "live" => {
                    let target = r.text(0);
                    match Sha::of_current(&target) {
                        Some(sha) => state.live = Some(sha),
                        None if target.is_empty() => {}
                        None => state.stray_current = Some(target.into_owned()),
                    }
                }
                "current-kind" => {
                    state.current_not_link = Some(match r.text(0).as_ref() {
                        "d" => "directory",
                        "f" => "file",
                        _ => "special file",
                    });
                }
                "complete" => state.complete.extend(Sha::parse(&r.text(0))),
                "present" => {
                    if let Some(sha) = Sha::parse(&r.text(0)) {
                        let time = r.text(1).split('.').next().and_then(|t| t.parse().ok());
                        state.present.push((sha, time.unwrap_or_default()));
                    }
                }
                "in-flight" => state.in_flight = serde_json::from_str(r.text(0).trim()).ok(),
                "locked" => state.locked_by = Some(r.text(0).into_owned()),
                "side" => {
                    let side = r.text(0);
                    if let ("a" | "b", Some(sha)) = (side.as_ref(), Sha::parse(&r.text(1))) {
                        let time = r.text(2).split('.').next().and_then(|t| t.parse().ok());
                        state.complete.insert(sha.clone());
                        state.present.push((sha.clone(), time.unwrap_or_default()));
                        state.sides.push((side.into_owned(), sha));
                    }
                }
                "log" => {
                    state.log = r
                        .text(0)
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect();
                }
                _ => {}
            }
        }
        // `current` links to a side: the release that side holds.
        let on_side = state.stray_current.as_ref().and_then(|target| {
            state
                .sides
                .iter()
                .find(|(side, _)| side == target)
                .map(|(_, sha)| sha.clone())
        });
        if let Some(sha) = on_side {
            state.live = Some(sha);
            state.stray_current = None;
        }
        state
    }

    /// The release to roll back to: the newest one that went live, is not
    /// live now, and is complete here.
    pub fn previous_good(&self) -> Option<&Sha> {
        self.log
            .iter()
            .rev()
            .filter(|e| e.result.went_live())
            .map(|e| &e.sha)
            .find(|sha| Some(*sha) != self.live.as_ref() && self.complete.contains(*sha))
    }
}
