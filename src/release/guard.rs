//! Guarded releases (`guard:`): after the switch and the health check, the
//! release is judged by its real traffic. Every `GUARD_INTERVAL` each web
//! server's access log is read from where the last read ended (one round
//! trip per server); when the 5xx share of every web server's requests
//! since the switch exceeds `max_5xx_ratio` (over at least `min_requests`,
//! and with `compare`, clearly above the share in the window before the
//! switch), the release fails like a failed health check: every server
//! goes back, and the release log says why.

use std::time::{Duration, Instant};

use futures::future::join_all;

use super::run::Run;
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

    /// Before the switch: where to read each log from after it, and the
    /// traffic of the guard's window before it (for `compare`).
    pub(super) async fn guard_mark(&self, guard: &Guard) -> (Marks, Figures) {
        self.traffic(None, window(guard)).await
    }

    /// Watches every web server's traffic from `marks` for the guard's
    /// window: `Err` (naming the first web server; the figures are all of
    /// theirs) as soon as
    /// `judge` fails it.
    pub(super) async fn guard_watch(
        &self,
        guard: &Guard,
        mut marks: Marks,
        before: Figures,
    ) -> Result<Figures, StepFailure> {
        let progress = self.session.progress();
        let started = Instant::now();
        for (server, _) in &marks {
            progress.step(server, Step::Guard, &Event::Started);
        }
        let mut since = Figures::default();
        while started.elapsed() < window(guard) {
            let pause = GUARD_INTERVAL.min(window(guard).saturating_sub(started.elapsed()));
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                // A stop (the daemon's SIGTERM, Ctrl-C) ends the watch: the
                // release passed its health check and stays live.
                () = self.stop.cancelled() => {
                    tracing::warn!(
                        watched = ?started.elapsed(),
                        "the guard was cut short by a stop: the release stays live unjudged"
                    );
                    break;
                }
            }
            let (next, traffic) = self.traffic(Some(&marks), Duration::ZERO).await;
            marks = next;
            since.add(&traffic);
            if let Some(reason) = judge(guard, before, since) {
                let server = marks
                    .first()
                    .map_or_else(|| ServerName::new("-"), |(s, _)| s.clone());
                for (name, _) in &marks {
                    progress.step(name, Step::Guard, &Event::Failed(reason.clone()));
                }
                return Err(StepFailure {
                    server,
                    step: Step::Guard,
                    output: reason,
                });
            }
        }
        for (server, _) in &marks {
            progress.step(server, Step::Guard, &Event::Done(started.elapsed()));
        }
        Ok(since)
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
