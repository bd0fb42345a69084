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
                time_ms: 30,
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

/// One histogram series as scraped: its buckets (`le`, cumulative count),
/// its `_sum` and its `_count`.
type Series = (Vec<(f64, u64)>, Option<f64>, Option<u64>);

/// Checks every histogram family of `text` as OpenMetrics wants it: per
/// series, a `_sum`, a `_count`, buckets whose `le` rise and whose counts
/// never fall, and a last `+Inf` bucket equal to `_count`. The families
/// checked, by name.
fn valid_histograms(text: &str) -> Vec<String> {
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram"))
        .collect();
    for family in &families {
        // Per label set (without `le`): the buckets, the sum and the count.
        let mut series: BTreeMap<String, Series> = BTreeMap::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(*family) else {
                continue;
            };
            let (name_and_labels, value) = rest.rsplit_once(' ').expect("a value");
            let (suffix, labels) = name_and_labels
                .split_once('{')
                .map_or((name_and_labels, ""), |(s, l)| (s, l));
            let labels = labels.trim_end_matches('}');
            match suffix {
                "_bucket" => {
                    // `le` among the others, wherever it is (no value here
                    // has a comma).
                    let (le, others): (Vec<&str>, Vec<&str>) =
                        labels.split(',').partition(|l| l.starts_with("le=\""));
                    let labels = others.join(",");
                    let le = le.first().expect("a bucket has `le`");
                    let le = le.trim_start_matches("le=\"").trim_end_matches('"');
                    let le = if le == "+Inf" {
                        f64::INFINITY
                    } else {
                        le.parse().expect("le is a number")
                    };
                    let count = value.parse().expect("a bucket count is an integer");
                    series.entry(labels).or_default().0.push((le, count));
                }
                "_sum" => {
                    let sum: f64 = value.parse().expect("a sum");
                    assert!(sum >= 0.0, "{line}");
                    series.entry(labels.to_owned()).or_default().1 = Some(sum);
                }
                "_count" => {
                    series.entry(labels.to_owned()).or_default().2 =
                        Some(value.parse().expect("a count is an integer"));
                }
                _ => {}
            }
        }
        for (labels, (buckets, sum, count)) in &series {
            assert!(sum.is_some(), "{family}{{{labels}}} has no _sum:\n{text}");
            let count = count.unwrap_or_else(|| panic!("{family}{{{labels}}} has no _count"));
            assert!(
                buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
                "{family}{{{labels}}}: buckets not rising: {buckets:?}"
            );
            assert_eq!(
                buckets.last().copied(),
                Some((f64::INFINITY, count)),
                "{family}{{{labels}}}: the +Inf bucket is not _count"
            );
        }
    }
    families.into_iter().map(str::to_owned).collect()
}

#[test]
fn request_times_are_a_histogram_of_the_access_logs_buckets_with_their_exact_sum() {
    use crate::definitions::{AppName, ServerName};
    use crate::traffic::{AppFigures, Figures, Read};
    let board = Board::new("repo", "main", None);
    board.count("web-1", "applied", 0.5, false);
    let read = |first: bool| Read {
        figures: vec![AppFigures {
            server: ServerName::new("web-1"),
            app: AppName::new("shop"),
            figures: Figures {
                requests: 10,
                errors: 1,
                client_errors: 0,
                buckets: [6, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1],
                time_ms: 12_345,
            },
            first,
        }],
        failed: Vec::new(),
    };
    // A log's first read is history: not counted.
    board.traffic(&read(true), 15.0, Utc::now());
    board.traffic(&read(false), 15.0, Utc::now());
    board.traffic(&read(false), 15.0, Utc::now());
    let text = board.metrics_text();
    let name = "reconciler_http_request_duration_seconds";
    let labels = "app=\"shop\",server=\"web-1\"";
    for line in [
        format!("# TYPE {name} histogram"),
        format!("{name}_sum{{{labels}}} 24.69"),
        format!("{name}_count{{{labels}}} 20"),
        format!("{name}_bucket{{le=\"0.005\",{labels}}} 12"),
        format!("{name}_bucket{{le=\"0.05\",{labels}}} 16"),
        format!("{name}_bucket{{le=\"1.0\",{labels}}} 18"),
        format!("{name}_bucket{{le=\"10.0\",{labels}}} 18"),
        format!("{name}_bucket{{le=\"+Inf\",{labels}}} 20"),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert_eq!(
        valid_histograms(&text),
        ["reconciler_reconcile_duration_seconds", name]
    );

    board.forget(&[], &["shop".to_owned()]);
    assert!(!board.metrics_text().contains("shop"));
}
