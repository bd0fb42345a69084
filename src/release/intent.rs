//! Which release an app should have live, and how its servers stand
//! against it. Pure: decided from the servers' records and the pin.
//!
//! An app's intended release is its pinned `revision:` when the
//! definitions pin one; otherwise the newest release the servers' release
//! logs say went live (a `release`, a webhook deploy, a `rollback`, or a
//! repair). A release that stopped after switching (its in-flight record
//! is still on a server) never counts: it was never checked.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{ServerReleases, Sha};
use crate::definitions::ServerName;

/// What an app should have live, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intended {
    /// The definitions pin `revision:` (a branch, tag or commit), which
    /// names `sha` now.
    Pinned {
        /// As the app's definition writes it.
        revision: String,
        /// What it resolved to in the app's mirror, after a fetch.
        sha: Sha,
    },
    /// No pin: the newest release the logs say went live.
    Logged {
        /// The commit of that release.
        sha: Sha,
    },
}

impl Intended {
    /// The commit that should be live.
    pub fn sha(&self) -> &Sha {
        match self {
            Intended::Pinned { sha, .. } | Intended::Logged { sha } => sha,
        }
    }
}

impl fmt::Display for Intended {
    /// `revision v2 (1a2b3c4d5e6f)` for a pin, `1a2b3c4d5e6f (the release
    /// log)` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Intended::Pinned { revision, sha } => {
                write!(f, "revision {revision} ({})", sha.short())
            }
            Intended::Logged { sha } => write!(f, "{} (the release log)", sha.short()),
        }
    }
}

/// How an app's servers stand against its intended release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every server runs the intended release, and nothing is in flight.
    Converged,
    /// Nothing says which release should be live: no pin, and no release
    /// log line that went live. Servers a stopped release left in flight
    /// are named: with no earlier release known, only a person can say.
    Unknown {
        /// Servers holding an in-flight record; may be empty.
        interrupted: Vec<ServerName>,
    },
    /// Servers that could not say what they have, with why: nothing can be
    /// released until every server answers.
    Unreachable(Vec<(ServerName, String)>),
    /// A release, rollback or `env push` holds the app lock (who).
    Busy(String),
    /// Servers that run another release (or none), and servers where a
    /// release that stopped after switching left its record.
    Diverged {
        /// Servers whose `current` is not the intended release, with what
        /// it is (`None`: no release).
        off: Vec<(ServerName, Option<Sha>)>,
        /// Servers holding an in-flight record, whatever they run.
        interrupted: Vec<ServerName>,
    },
}

impl Verdict {
    /// A line for logs and the status: what is wrong, or `converged`.
    pub fn describe(&self, intended: Option<&Intended>) -> String {
        match self {
            Verdict::Converged => "converged".into(),
            Verdict::Unknown { interrupted } if interrupted.is_empty() => {
                "no release is known to have gone live".into()
            }
            Verdict::Unknown { interrupted } => format!(
                "a release stopped after switching on {}, and no earlier release is known to go back to",
                names(interrupted)
            ),
            Verdict::Unreachable(servers) => {
                let list: Vec<String> = servers
                    .iter()
                    .map(|(server, why)| format!("{server}: {why}"))
                    .collect();
                format!("cannot read every server: {}", list.join("; "))
            }
            Verdict::Busy(holder) => format!("the app lock is held by {holder}"),
            Verdict::Diverged { off, interrupted } => {
                let want = intended.map_or_else(|| "?".to_owned(), ToString::to_string);
                let mut parts: Vec<String> = off
                    .iter()
                    .map(|(server, live)| match live {
                        Some(sha) => format!("{server} runs {}", sha.short()),
                        None => format!("{server} runs no release"),
                    })
                    .collect();
                if !interrupted.is_empty() {
                    parts.push(format!(
                        "a release stopped after switching on {}",
                        names(interrupted)
                    ));
                }
                format!("should run {want}: {}", parts.join(", "))
            }
        }
    }
}

fn names(servers: &[ServerName]) -> String {
    servers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The newest release that went live by any server's log, by the time its
/// line was written.
pub fn logged(states: &[&ServerReleases]) -> Option<Sha> {
    states
        .iter()
        .flat_map(|s| &s.log)
        .filter(|e| e.result.went_live())
        .filter_map(|e| {
            let at = DateTime::parse_from_rfc3339(&e.time).ok()?;
            Some((at.with_timezone(&Utc), &e.sha))
        })
        .max_by_key(|(at, _)| *at)
        .map(|(_, sha)| sha.clone())
}

/// The reason `sha`'s guard gave when it rolled `sha` back, when that is
/// the newest line any server's log (`states`) has of `sha`. The daemon
/// does not make such a release again, across its restarts and other
/// commits of the definitions: a person does (`reconciler release`, which
/// logs it anew), or the pin names another commit. A rollback after a
/// failed health check logs no reason, and is not held so.
pub fn guard_refused(states: &[&ServerReleases], sha: &Sha) -> Option<String> {
    states
        .iter()
        .flat_map(|s| &s.log)
        .filter(|e| &e.sha == sha)
        .filter_map(|e| Some((DateTime::parse_from_rfc3339(&e.time).ok()?, e)))
        .max_by_key(|(at, _)| *at)
        .filter(|(_, e)| e.result == super::LogResult::RolledBack)
        .and_then(|(_, e)| e.reason.clone())
}

/// How `servers` (each with what it has, or why it could not say) stand
/// against `intended`.
pub fn verdict(
    intended: Option<&Sha>,
    servers: &[(ServerName, Result<ServerReleases, String>)],
) -> Verdict {
    let unreachable: Vec<(ServerName, String)> = servers
        .iter()
        .filter_map(|(server, state)| state.as_ref().err().map(|e| (server.clone(), e.clone())))
        .collect();
    if !unreachable.is_empty() {
        return Verdict::Unreachable(unreachable);
    }
    let states: Vec<(&ServerName, &ServerReleases)> = servers
        .iter()
        .filter_map(|(server, state)| state.as_ref().ok().map(|s| (server, s)))
        .collect();
    if let Some(holder) = states.iter().find_map(|(_, s)| s.locked_by.clone()) {
        return Verdict::Busy(holder);
    }
    let interrupted: Vec<ServerName> = states
        .iter()
        .filter(|(_, s)| s.in_flight.is_some())
        .map(|(server, _)| (*server).clone())
        .collect();
    let Some(intended) = intended else {
        return Verdict::Unknown { interrupted };
    };
    let off: Vec<(ServerName, Option<Sha>)> = states
        .iter()
        .filter(|(_, s)| s.live.as_ref() != Some(intended))
        .map(|(server, s)| ((*server).clone(), s.live.clone()))
        .collect();
    if off.is_empty() && interrupted.is_empty() {
        Verdict::Converged
    } else {
        Verdict::Diverged { off, interrupted }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::state::InFlight;
    use crate::release::{LogEntry, LogResult};

    fn sha(c: char) -> Sha {
        Sha::parse(&c.to_string().repeat(40)).expect("a sha")
    }

    fn entry(c: char, result: LogResult, time: &str) -> LogEntry {
        LogEntry {
            reason: None,
            warmed: None,
            sha: sha(c),
            time: time.into(),
            trigger: "cli".into(),
            result,
            duration_ms: 1,
            who: "me".into(),
            previous: None,
        }
    }

    fn server(live: Option<char>, log: Vec<LogEntry>) -> ServerReleases {
        ServerReleases {
            live: live.map(sha),
            log,
            ..ServerReleases::default()
        }
    }

    fn named(states: Vec<ServerReleases>) -> Vec<(ServerName, Result<ServerReleases, String>)> {
        states
            .into_iter()
            .enumerate()
            .map(|(i, s)| (ServerName::new(format!("web-{}", i + 1)), Ok(s)))
            .collect()
    }

    #[test]
    fn the_newest_release_that_went_live_on_any_server_is_intended() {
        let a = server(
            Some('a'),
            vec![
                entry('a', LogResult::Live, "2026-11-30T10:00:00.000Z"),
                entry('b', LogResult::RolledBack, "2026-11-30T12:00:00.000Z"),
            ],
        );
        // A server that missed the last line (it was down) has an older log.
        let b = server(
            Some('c'),
            vec![entry('c', LogResult::Live, "2026-11-30T09:00:00.000Z")],
        );
        assert_eq!(logged(&[&b, &a]), Some(sha('a')));
        let rollback = server(
            None,
            vec![entry('d', LogResult::Rollback, "2026-11-30T10:30:00+01:00")],
        );
        // 10:30+01:00 is 09:30Z: older than `a`'s line, whatever its text.
        assert_eq!(logged(&[&a, &rollback]), Some(sha('a')));
        assert_eq!(logged(&[]), None);
    }

    #[test]
    fn a_release_its_guard_rolled_back_is_held_until_its_log_says_otherwise() {
        let guarded = |c, time| LogEntry {
            reason: Some("5xx 14.2% over 180 requests".into()),
            ..entry(c, LogResult::RolledBack, time)
        };
        let web1 = server(
            Some('a'),
            vec![
                entry('a', LogResult::Live, "2026-11-30T10:00:00.000Z"),
                guarded('b', "2026-11-30T11:00:00.000Z"),
            ],
        );
        // A server that missed the rollback's line (down) holds nothing.
        let web2 = server(
            Some('a'),
            vec![entry('a', LogResult::Live, "2026-11-30T10:00:00.000Z")],
        );
        assert_eq!(
            guard_refused(&[&web2, &web1], &sha('b')).as_deref(),
            Some("5xx 14.2% over 180 requests")
        );
        assert_eq!(guard_refused(&[&web1], &sha('a')), None);
        // A person released it since: newer than the rollback, on any server.
        let released = server(
            Some('b'),
            vec![entry('b', LogResult::Live, "2026-11-30T12:00:00.000Z")],
        );
        assert_eq!(guard_refused(&[&web1, &released], &sha('b')), None);
        // A failed health check logs no reason: not held.
        let unhealthy = server(
            Some('a'),
            vec![entry(
                'c',
                LogResult::RolledBack,
                "2026-11-30T11:00:00.000Z",
            )],
        );
        assert_eq!(guard_refused(&[&unhealthy], &sha('c')), None);
    }

    #[test]
    fn a_server_on_another_release_or_a_stopped_release_diverges() {
        let on = |c| server(Some(c), vec![]);
        assert_eq!(
            verdict(Some(&sha('a')), &named(vec![on('a'), on('a')])),
            Verdict::Converged
        );
        assert_eq!(
            verdict(
                Some(&sha('a')),
                &named(vec![on('a'), on('b'), server(None, vec![])])
            ),
            Verdict::Diverged {
                off: vec![
                    (ServerName::new("web-2"), Some(sha('b'))),
                    (ServerName::new("web-3"), None)
                ],
                interrupted: vec![],
            }
        );
        let mut stopped = on('a');
        stopped.in_flight = Some(InFlight {
            sha: sha('a'),
            previous: Some(sha('b')),
            started: "2026-11-30T10:00:00Z".into(),
            trigger: "cli".into(),
            who: "me".into(),
            guard: None,
        });
        assert_eq!(
            verdict(Some(&sha('a')), &named(vec![on('a'), stopped.clone()])),
            Verdict::Diverged {
                off: vec![],
                interrupted: vec![ServerName::new("web-2")],
            }
        );
        assert_eq!(
            verdict(None, &named(vec![stopped])),
            Verdict::Unknown {
                interrupted: vec![ServerName::new("web-1")]
            }
        );
    }

    #[test]
    fn an_unreachable_server_or_a_held_lock_comes_first() {
        let mut servers = named(vec![server(Some('b'), vec![])]);
        servers.push((ServerName::new("web-9"), Err("cannot reach".into())));
        assert_eq!(
            verdict(Some(&sha('a')), &servers),
            Verdict::Unreachable(vec![(ServerName::new("web-9"), "cannot reach".into())])
        );
        let mut locked = server(Some('b'), vec![]);
        locked.locked_by = Some("ci (release since now)".into());
        assert_eq!(
            verdict(Some(&sha('a')), &named(vec![locked])),
            Verdict::Busy("ci (release since now)".into())
        );
    }
}
