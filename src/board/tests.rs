//! The board: problems, staleness, and the metrics the example alerts use.

use super::*;

/// Every `reconciler_*` name in an `expr:` of the example alert rules.
fn alerted_metrics() -> Vec<String> {
    let rules: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../../examples/alerts/reconciler.rules.yml"))
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
    board.fetched(Utc::now(), false, |_| {});
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

/// The value of the series `name` (its whole name with labels) in `text`.
fn series(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn a_scrape_never_sees_the_fetch_gauge_and_its_problem_disagree() {
    let board = std::sync::Arc::new(Board::new("repo", "main", None));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fetcher = {
        let (board, stop) = (board.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ok = false;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Utc::now();
                board.fetched(now, ok, |s| {
                    s.fetch_error = (!ok).then(|| "cannot fetch".to_owned());
                    s.fetch_failing_since = (!ok).then_some(now);
                });
                ok = !ok;
            }
        })
    };
    let mut seen = std::collections::BTreeSet::new();
    let started = std::time::Instant::now();
    let mut scrapes = 0;
    while (scrapes < 2000 || seen.len() < 2) && started.elapsed().as_secs() < 10 {
        scrapes += 1;
        let text = board.metrics_text();
        let gauge = series(&text, "reconciler_fetch_failing");
        let problem = series(&text, "reconciler_problems{kind=\"fetch-failing\"}");
        assert!(gauge.is_some(), "{text}");
        assert_eq!(gauge, problem, "{text}");
        seen.insert(gauge);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    fetcher.join().expect("fetcher");
    assert_eq!(seen.len(), 2, "both states scraped: {seen:?}");
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

#[test]
fn requests_are_counted_by_class_after_each_logs_first_read() {
    use crate::definitions::{AppName, ServerName};
    use crate::traffic::{AppFigures, Figures, Read};
    let board = Board::new("repo", "main", None);
    let read = |first: bool| Read {
        figures: vec![AppFigures {
            server: ServerName::new("web-1"),
            app: AppName::new("shop"),
            figures: Figures {
                requests: 10,
                errors: 2,
                client_errors: 3,
                buckets: [10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            first,
        }],
        failed: Vec::new(),
    };
    // The first read marks where counting starts: history is not counted.
    let at = chrono::Utc::now();
    board.traffic(&read(true), 15.0, at);
    assert!(
        !board
            .metrics_text()
            .contains("reconciler_http_requests_total{")
    );
    assert!(board.snapshot().traffic.is_empty());
    board.traffic(&read(false), 15.0, at);
    board.traffic(&read(false), 15.0, at);
    let shown = &board.snapshot().traffic["shop"]["web-1"];
    assert_eq!(
        (shown.requests, shown.errors, shown.p50),
        (10, 2, Some(0.005))
    );
    let text = board.metrics_text();
    for (class, count) in [("5xx", 4), ("4xx", 6), ("other", 10)] {
        let line = format!(
            "reconciler_http_requests_total{{app=\"shop\",server=\"web-1\",class=\"{class}\"}} {count}\n"
        );
        assert!(text.contains(&line), "{line}\n{text}");
    }
}

#[test]
fn an_app_or_server_that_left_loses_its_traffic_figures_series_and_history() {
    use crate::definitions::{AppName, ServerName};
    use crate::traffic::{AppFigures, Figures, Read};
    let board = Board::new("repo", "main", None);
    let figures = |app: &str, server: &str| AppFigures {
        server: ServerName::new(server),
        app: AppName::new(app),
        figures: Figures {
            requests: 4,
            errors: 1,
            ..Figures::default()
        },
        first: false,
    };
    let read = Read {
        figures: vec![
            figures("shop", "web-1"),
            figures("shop", "web-2"),
            figures("blog", "web-1"),
        ],
        failed: Vec::new(),
    };
    board.traffic(&read, 15.0, chrono::Utc::now());
    board.forget(&["web-2".to_owned()], &["blog".to_owned()]);
    let text = board.metrics_text();
    assert!(
        text.contains(
            "reconciler_http_requests_total{app=\"shop\",server=\"web-1\",class=\"5xx\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("web-2"), "{text}");
    assert!(!text.contains("blog"), "{text}");
    let traffic = board.snapshot().traffic;
    assert_eq!(traffic.keys().collect::<Vec<_>>(), ["shop"]);
    assert_eq!(traffic["shop"].keys().collect::<Vec<_>>(), ["web-1"]);
    assert_eq!(board.traffic_history().keys().collect::<Vec<_>>(), ["shop"]);
}
