//! The daemon exports the series the alert rules in `examples/alerts`
//! rely on from its start (the rules' every name is checked against the
//! board in `src/board.rs`'s tests): one per kind of problem, and fetch
//! failures as they happen.

use std::time::{Duration, Instant};

use crate::common::daemon::Daemon;

#[test]
fn a_daemon_exports_every_kind_of_problem_and_a_failing_fetch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    // A repository that does not exist: the daemon runs, fetching fails.
    let missing = dir.path().join("no-such-repo");
    let daemon = Daemon::start(
        &[
            "watch",
            "--repo",
            missing.to_str().expect("path"),
            "--state-dir",
            state.to_str().expect("path"),
            "--interval",
            "1s",
        ],
        None,
        "/v1/status",
        &dir.path().join("watch.log"),
    );
    let started = Instant::now();
    let metrics = loop {
        let metrics = daemon.get("/metrics").expect("metrics").body;
        // The whole line: the family's HELP text starts with the same words.
        if metrics.lines().any(|l| l == "reconciler_fetch_failing 1") {
            break metrics;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "fetching never failed:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Each kind of problem has its series, at 0 when there is none.
    for kind in [
        "converging",
        "fetch-failing",
        "branch-missing",
        "commit-rejected",
        "host-failed",
        "drift",
        "release-failed",
        "release-diverged",
    ] {
        assert!(
            metrics.contains(&format!("reconciler_problems{{kind=\"{kind}\"}}")),
            "no series for {kind}:\n{metrics}"
        );
    }
    assert!(
        metrics.contains("reconciler_problems{kind=\"fetch-failing\"} 1"),
        "{metrics}"
    );
}
