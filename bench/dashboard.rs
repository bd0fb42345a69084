//! Benchmark (run by `bench/dashboard`): the dashboard of a full board,
//! `APPS` apps (50) on `SERVERS` servers (12), every bounded history at
//! its bound: 240 OPcache reads per server, 240 traffic reads per app, 50
//! release log lines per app, 500 events, 20 commits. Prints the page's
//! size and the median time to render it on the server (`/`: the board's
//! snapshot, its journal and the template), next to the median time to
//! serialize the same board's status document (`/v1/status`), the
//! baseline, measured in the same run. `PAGE=FILE` keeps the page.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reconciler::board::{AppStatus, Board, CommitRecord, HostStatus, PendingReload};
use reconciler::definitions::{AppName, ServerName};
use reconciler::release::{LogEntry, LogResult, Sha};
use reconciler::serve::dashboard::{Extras, Filter, render};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A commit id whose first 12 digits differ from `i` to `i`.
fn sha(i: usize) -> String {
    format!("{:08x}{:032x}", i.wrapping_mul(2_654_435_761) as u32, i)
}

fn board(apps: usize, servers: usize) -> Board {
    let board = Board::new("/srv/defs.git", "main", None);
    let now = chrono::Utc::now();
    let server = |s: usize| format!("web-{s}");
    // 240 updates: each a commit in force, an OPcache read per server.
    for read in 0..240usize {
        let at = now - chrono::Duration::seconds(60 * (240 - read as i64));
        board.update(at, |status| {
            let commit = sha(read / 12);
            status.head = Some(commit.clone());
            status.last_good = Some(CommitRecord {
                commit: commit.clone(),
                at,
            });
            for s in 0..servers {
                let used = ((read + s) % 100) as u64;
                status.hosts.insert(
                    server(s),
                    HostStatus {
                        cluster: "production".into(),
                        last_result: Some(if s % 5 == 0 { "failed" } else { "applied" }.into()),
                        last_message: Some(format!("{} changes", read % 7)),
                        last_at: Some(at),
                        last_applied_commit: Some(commit.clone()),
                        known_at: Some(at),
                        drift: s % 3,
                        pending_reloads: vec![PendingReload {
                            label: "php8.2-fpm".into(),
                            next_window: Some(now + chrono::Duration::hours(2)),
                        }],
                        opcache: BTreeMap::from([(
                            "8.2".into(),
                            serde_json::json!({"memory_used": used << 20, "memory_wasted": 4u64 << 20, "memory_free": (124 - used) << 20}),
                        )]),
                        ..HostStatus::default()
                    },
                );
            }
            for a in 0..apps {
                let live = (0..servers)
                    .map(|s| (server(s), Some(sha(a + usize::from(s == 3))[..12].to_owned())))
                    .collect();
                status.apps.insert(
                    format!("app-{a}"),
                    AppStatus {
                        intended: Some(sha(a)[..12].to_owned()),
                        live,
                        state: "converged".into(),
                        message: String::new(),
                        last_at: Some(at),
                        ..AppStatus::default()
                    },
                );
            }
        });
    }
    // 50 release log lines per app, spread over its servers.
    for a in 0..apps {
        for s in 0..servers {
            let lines: Vec<LogEntry> = (0..50 / servers + 1)
                .map(|i| LogEntry {
                    sha: Sha::parse(&sha(a * 100 + i)).expect("sha"),
                    time: (now - chrono::Duration::minutes((50 - i) as i64))
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string(),
                    trigger: "webhook".into(),
                    result: if i % 9 == 8 {
                        LogResult::RolledBack
                    } else {
                        LogResult::Live
                    },
                    duration_ms: 12_345,
                    who: "ci@example.com".into(),
                    previous: None,
                    reason: (i % 9 == 8).then(|| "5xx 14.2% over 180 requests".into()),
                    warmed: None,
                })
                .collect();
            board.release_logs(&format!("app-{a}"), &server(s), &lines, now);
        }
    }
    // 240 traffic reads of every app on every server.
    for read in 0..240u64 {
        let figures = (0..apps)
            .flat_map(|a| {
                (0..servers).map(move |s| reconciler::traffic::AppFigures {
                    server: ServerName::new(format!("web-{s}")),
                    app: AppName::new(format!("app-{a}")),
                    figures: reconciler::traffic::Figures {
                        requests: 100 + read % 50,
                        errors: read % 3,
                        client_errors: 0,
                        buckets: [100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                        time_ms: 300,
                    },
                    first: read == 0,
                })
            })
            .collect();
        let read = reconciler::traffic::Read {
            figures,
            failed: Vec::new(),
        };
        board.traffic(&read, 15.0, now);
    }
    board
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let (apps, servers, runs) = (env("APPS", 50), env("SERVERS", 12), env("RUNS", 50));
    let board = board(apps, servers);
    let page = render(board.snapshot(), Extras::of(&board), Filter::default()).expect("rendered");
    let status = serde_json::to_string(&board.snapshot()).expect("status");
    // `PAGE=FILE`: the page, to look at.
    if let Ok(path) = std::env::var("PAGE") {
        std::fs::write(path, &page).expect("page written");
    }
    let mut dashboard = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let html = render(board.snapshot(), Extras::of(&board), Filter::default()).expect("page");
        dashboard.push(started.elapsed());
        std::hint::black_box(html);
        let started = Instant::now();
        let json = serde_json::to_string(&board.snapshot()).expect("status");
        baseline.push(started.elapsed());
        std::hint::black_box(json);
    }
    let (page_ms, status_ms) = (
        median(dashboard).as_secs_f64() * 1000.0,
        median(baseline).as_secs_f64() * 1000.0,
    );
    println!("{apps} apps on {servers} servers, {runs} runs");
    println!(
        "dashboard `/`: median {page_ms:.2} ms to render, {} KB (target < 100 ms, < 300 KB)",
        page.len() / 1024
    );
    println!(
        "baseline `/v1/status` of the same board: median {status_ms:.2} ms, {} KB",
        status.len() / 1024
    );
    println!(
        "ratio: render {:.1}x the status document's time, {:.1}x its size",
        page_ms / status_ms,
        page.len() as f64 / status.len() as f64
    );
}
