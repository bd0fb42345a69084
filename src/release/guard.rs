//! Guarded releases (`guard:`): after the switch and the health check, the
//! release is judged by its real traffic. Every `GUARD_INTERVAL` each web
//! server's access log is read from where the last read ended (one round
//! trip per server); when the 5xx share of every web server's requests
//! since the switch exceeds `max_5xx_ratio` (over at least `min_requests`,
//! and with `compare`, clearly above the share in the window before the
//! switch), the release fails like a failed health check: every server
//! goes back, and the release log says why.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use tokio::time::Instant;

use super::run::Run;
use super::state::GuardRecord;
use super::{ServerReleases, Sha};
use crate::app::{Event, Step, StepFailure};
use crate::definitions::{Guard, ServerName};
use crate::traffic::Figures;

/// How often the servers' access logs are read during the guard window.
pub const GUARD_INTERVAL: Duration = Duration::from_secs(5);

/// Why `since` (every web server's traffic since the switch) fails
/// `guard`, given `before` (the window before the switch); `None` while it
/// does not, or while too few requests came to say.
pub fn judge(guard: &Guard, before: Figures, since: Figures) -> Option<String> {
    let ratio = since.error_ratio();
    if since.requests < u64::from(guard.min_requests) || ratio <= guard.max_5xx_ratio {
        return None;
    }
    let usual = before.error_ratio();
    if guard.compare
        && before.requests > 0
        && (ratio <= 2.0 * usual || ratio <= usual + guard.max_5xx_ratio)
    {
        return None;
    }
    Some(format!(
        "5xx {:.1}% over {} requests since the switch (limit {:.1}%), before {:.1}% over {}",
        ratio * 100.0,
        since.requests,
        guard.max_5xx_ratio * 100.0,
        usual * 100.0,
        before.requests
    ))
}

/// Where each web server's access log is read from next.
pub(super) type Marks = Vec<(ServerName, u64)>;

/// A guard's state: where each web server's log is read from, the
/// traffic before the switch, and when the window ends. Kept in each
/// server's in-flight record (`GuardRecord`), so that a guard whose client
/// stopped is judged on by the next check.
#[derive(Debug, Clone)]
pub(super) struct Guarding {
    pub marks: Marks,
    pub before: Figures,
    pub until: DateTime<Utc>,
}

/// What the guard of a release found.
#[derive(Debug)]
pub(super) enum Judged {
    /// The window passed without a rise in 5xx.
    Passed,
    /// A rise: the release fails like a failed health check.
    Failed(StepFailure),
    /// A stop (the daemon's SIGTERM, Ctrl-C) came during the window: the
    /// release stays live, unjudged, and its in-flight record, with the
    /// guard's, stays for the next check to judge it on.
    Suspended,
}

impl Guarding {
    /// `server`'s part of it, for its in-flight record.
    pub fn record(&self, server: &ServerName) -> GuardRecord {
        GuardRecord {
            until: self
                .until
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            from: self
                .marks
                .iter()
                .find(|(s, _)| s == server)
                .map(|(_, at)| *at),
            before_requests: self.before.requests,
            before_5xx: self.before.errors,
        }
    }

    /// The guard a release that stopped during its window left on
    /// `servers`, under the app lock: the release, and where its guard
    /// stood. `Err` says why it cannot go on: a server without the
    /// record, or another release there.
    pub fn resumed(servers: &[(ServerName, &ServerReleases)]) -> Result<(Sha, Guarding), String> {
        let mut found: Option<(Sha, Guarding)> = None;
        for (server, state) in servers {
            let Some(in_flight) = &state.in_flight else {
                return Err(format!("{server} has no release in flight"));
            };
            let Some(record) = &in_flight.guard else {
                return Err(format!(
                    "{server}: the release in flight there has no guard record"
                ));
            };
            if state.live.as_ref() != Some(&in_flight.sha) {
                return Err(format!(
                    "{server} no longer serves {}",
                    in_flight.sha.short()
                ));
            }
            let until = DateTime::parse_from_rfc3339(&record.until)
                .map_err(|_| format!("{server}: `{}` is not a time", record.until))?
                .with_timezone(&Utc);
            match &found {
                Some((sha, _)) if *sha != in_flight.sha => {
                    return Err(format!(
                        "the servers have different releases in flight ({} and {})",
                        sha.short(),
                        in_flight.sha.short()
                    ));
                }
                Some(_) => {}
                None => {
                    let before = Figures {
                        requests: record.before_requests,
                        errors: record.before_5xx,
                        ..Figures::default()
                    };
                    let guarding = Guarding {
                        marks: Vec::new(),
                        before,
                        until,
                    };
                    found = Some((in_flight.sha.clone(), guarding));
                }
            }
            if let (Some(from), Some((_, guarding))) = (record.from, &mut found) {
                guarding.marks.push((server.clone(), from));
            }
        }
        found.ok_or_else(|| "no server".to_owned())
    }
}

impl Run<'_> {
    /// Reads `from` (per server; `None`: the log's last 64 MiB, counting
    /// only the last `window` seconds) on every web server of the app:
    /// where to read next, and the traffic, summed. A server that cannot
    /// be read keeps its mark and adds nothing (logged).
    async fn traffic(&self, from: Option<&Marks>, window: Duration) -> (Marks, Figures) {
        let window = window.as_secs().to_string();
        let reads = self
            .locked
            .iter()
            .filter(|l| l.host.role.web.is_some())
            .map(|l| {
                let name = l.host.server.name.clone();
                let mark = from.and_then(|marks| marks.iter().find(|(s, _)| *s == name));
                let offset = mark.map_or("tail".to_owned(), |(_, at)| at.to_string());
                let window = window.clone();
                async move {
                    let call = ["release_traffic", offset.as_str(), window.as_str()];
                    let read = self
                        .session
                        .ask(&l.host, &call, Duration::from_secs(30))
                        .await;
                    (name, mark.map(|(_, at)| *at), read)
                }
            });
        let mut marks = Vec::new();
        let mut total = Figures::default();
        for (server, kept, read) in join_all(reads).await {
            let counted = read.ok().and_then(|records| {
                Figures::parse(&crate::remote::first(&records, "traffic")?.texts_from(0))
            });
            if let Some((end, traffic)) = counted {
                total.add(&traffic);
                marks.push((server, end));
            } else {
                tracing::warn!(%server, "the access log could not be read: this read counts nothing there");
                marks.push((server, kept.unwrap_or(0)));
            }
        }
        (marks, total)
    }

    /// Before the switch: where to read each log from after it, the
    /// traffic of the guard's window before it (for `compare`), and the
    /// window's end.
    pub(super) async fn guard_mark(&self, guard: &Guard) -> Guarding {
        let (marks, before) = self.traffic(None, window(guard)).await;
        Guarding {
            marks,
            before,
            until: Utc::now() + window(guard),
        }
    }

    /// Watches every web server's traffic from `guarding`'s marks until
    /// its window ends (at least one read: a guard resumed after its
    /// window judges the traffic since the switch at once): `Failed`
    /// (naming the first web server; the figures are all of theirs) as
    /// soon as `judge` fails it.
    pub(super) async fn guard_watch(&self, guard: &Guard, guarding: Guarding) -> Judged {
        let progress = self.session.progress();
        let started = Instant::now();
        let left = (guarding.until - Utc::now()).to_std().unwrap_or_default();
        let deadline = started + left;
        let Guarding {
            mut marks, before, ..
        } = guarding;
        for (server, _) in &marks {
            progress.step(server, Step::Guard, &Event::Started);
        }
        let mut since = Figures::default();
        loop {
            let pause = GUARD_INTERVAL.min(deadline.saturating_duration_since(Instant::now()));
            if !pause.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = self.stop.cancelled() => {
                        tracing::warn!(
                            watched = ?started.elapsed(),
                            "the guard was cut short by a stop: the release stays live, and the next check judges it"
                        );
                        for (server, _) in &marks {
                            progress.step(server, Step::Guard, &Event::Skipped("stopped: the next check judges it"));
                        }
                        return Judged::Suspended;
                    }
                }
            }
            let (next, traffic) = self.traffic(Some(&marks), Duration::ZERO).await;
            marks = next;
            since.add(&traffic);
            tracing::debug!(
                requests = since.requests,
                errors = since.errors,
                before_requests = before.requests,
                before_errors = before.errors,
                ?marks,
                "the guard read the traffic since the switch"
            );
            if let Some(reason) = judge(guard, before, since) {
                let server = marks
                    .first()
                    .map_or_else(|| ServerName::new("-"), |(s, _)| s.clone());
                for (name, _) in &marks {
                    progress.step(name, Step::Guard, &Event::Failed(reason.clone()));
                }
                return Judged::Failed(StepFailure {
                    server,
                    step: Step::Guard,
                    output: reason,
                });
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        tracing::info!(
            requests = since.requests,
            errors = since.errors,
            before_requests = before.requests,
            before_errors = before.errors,
            "the guard passed: no rise in 5xx over its window"
        );
        for (server, _) in &marks {
            progress.step(server, Step::Guard, &Event::Done(started.elapsed()));
        }
        Judged::Passed
    }
}

fn window(guard: &Guard) -> Duration {
    guard.window.get().map_or(Duration::from_secs(300), |w| w.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(compare: bool) -> Guard {
        serde_yaml::from_str(&format!(
            "{{ window: 1m, max_5xx_ratio: 0.02, min_requests: 100, compare: {compare} }}"
        ))
        .expect("a guard")
    }

    fn traffic(requests: u64, errors: u64) -> Figures {
        Figures {
            requests,
            errors,
            ..Figures::default()
        }
    }

    #[test]
    fn too_few_requests_say_nothing_and_a_rise_fails_with_its_figures() {
        let g = guard(true);
        assert_eq!(judge(&g, traffic(1000, 3), traffic(99, 99)), None);
        assert_eq!(
            judge(&g, traffic(1000, 3), traffic(200, 4)),
            None,
            "2% is the limit"
        );
        assert_eq!(
            judge(&g, traffic(1000, 3), traffic(180, 26)).as_deref(),
            Some(
                "5xx 14.4% over 180 requests since the switch (limit 2.0%), before 0.3% over 1000"
            )
        );
    }

    #[test]
    fn a_guard_cut_short_is_found_where_every_server_keeps_its_record() {
        let sha = |c: char| Sha::parse(&c.to_string().repeat(40)).expect("a sha");
        let guarding = Guarding {
            marks: vec![(ServerName::new("web-1"), 4096)],
            before: traffic(500, 2),
            until: DateTime::parse_from_rfc3339("2026-12-01T10:05:00Z")
                .expect("a time")
                .with_timezone(&Utc),
        };
        let server = |name: &str, live: char, in_flight: char| ServerReleases {
            live: Some(sha(live)),
            in_flight: Some(super::super::InFlight {
                sha: sha(in_flight),
                previous: Some(sha('b')),
                started: "2026-12-01T10:00:00Z".into(),
                trigger: "webhook".into(),
                who: "webhook".into(),
                guard: Some(guarding.record(&ServerName::new(name))),
            }),
            ..ServerReleases::default()
        };
        // A worker server has no log to read, and no mark.
        let (web, jobs) = (server("web-1", 'a', 'a'), server("jobs-1", 'a', 'a'));
        assert_eq!(
            jobs.in_flight.as_ref().and_then(|f| f.guard.as_ref()?.from),
            None
        );
        fn named(states: [&ServerReleases; 2]) -> Vec<(ServerName, &ServerReleases)> {
            ["web-1", "jobs-1"]
                .map(ServerName::new)
                .into_iter()
                .zip(states)
                .collect()
        }
        let (found, resumed) = Guarding::resumed(&named([&web, &jobs])).expect("resumed");
        assert_eq!(found, sha('a'));
        assert_eq!(resumed.marks, guarding.marks);
        assert_eq!(resumed.until, guarding.until);
        assert_eq!((resumed.before.requests, resumed.before.errors), (500, 2));

        // Another release in flight, one that no longer serves, or a
        // server without the record: not resumed.
        let other = server("jobs-1", 'c', 'c');
        assert!(Guarding::resumed(&named([&web, &other])).is_err());
        let back = server("jobs-1", 'b', 'a');
        assert!(Guarding::resumed(&named([&web, &back])).is_err());
        let none = ServerReleases::default();
        assert!(Guarding::resumed(&named([&web, &none])).is_err());
    }

    #[test]
    fn compare_spares_an_app_that_failed_as_often_before() {
        assert_eq!(
            judge(&guard(true), traffic(1000, 100), traffic(200, 30)),
            None
        );
        assert!(judge(&guard(false), traffic(1000, 100), traffic(200, 30)).is_some());
        // Without traffic before, there is nothing to compare with.
        assert!(judge(&guard(true), traffic(0, 0), traffic(200, 30)).is_some());
        // Clearly more than before: twice, and by the limit more.
        assert!(judge(&guard(true), traffic(1000, 100), traffic(200, 70)).is_some());
    }
}
