//! Commits, drift, stopped servers, concurrent watches and shutdown.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn commits_converge_an_invalid_commit_changes_nothing_and_a_fix_applies() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.cluster_yaml("fpm_reload: immediate\n");
    repo.app("alpha", &SERVERS, 3, "");
    let first = defs.commit("alpha on three servers");
    let state = tempfile::tempdir().expect("state");
    let mut daemon = Daemon::start(&defs, state.path(), &["--traffic-interval", "1s"]);
    daemon.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);

    // The requests alpha's vhost answers are counted from its access log
    // (a 404 without a release, a 200 where an earlier test left one).
    let counted = |metrics: &str| -> u64 {
        metrics
            .lines()
            .filter_map(|l| {
                l.strip_prefix(
                    "reconciler_http_requests_total{app=\"alpha\",server=\"fleet-1\",class=\"",
                )
            })
            .filter_map(|rest| rest.split_once("\"} "))
            .filter_map(|(_, n)| n.parse::<u64>().ok())
            .sum()
    };
    std::thread::sleep(Duration::from_millis(1500)); // the logs' first reads
    let before = counted(&daemon.metrics());
    for _ in 0..7 {
        repo.server("fleet-1").http_get("/", "alpha.test");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while counted(&daemon.metrics()) < before + 7 {
        assert!(Instant::now() < deadline, "{}", daemon.metrics());
        std::thread::sleep(Duration::from_millis(250));
    }

    // A change converges within an interval or two (1 s each).
    repo.app("alpha", &SERVERS, 4, "");
    let second = defs.commit("alpha: 4 workers");
    let started = Instant::now();
    daemon.wait_converged(&second, &SERVERS, Duration::from_secs(30));
    let took = started.elapsed();
    for server in SERVERS {
        assert_eq!(max_children(repo, server), "4", "{server}");
        // Loaded, not only written: no reload waits.
        let pending = &daemon.wait_for("the status", Duration::ZERO, |_| true)["hosts"][server]["pending_reloads"];
        assert_eq!(pending, &serde_json::json!([]), "{server}");
    }
    assert!(took < Duration::from_secs(15), "{took:?}");

    // An invalid commit is rejected whole: its file:line and commit id in
    // the status, nothing of it on any server.
    let applies: Vec<usize> = SERVERS.iter().map(|s| apply_log(repo, s).len()).collect();
    let yaml = std::fs::read_to_string(repo.dir.path().join("apps/alpha.yaml")).expect("alpha");
    repo.write(
        "apps/alpha.yaml",
        &yaml
            .replace("max_workers: 4", "max_workers: 9")
            .replace("php: \"8.2\"", "php: [8.2"),
    );
    let broken = defs.commit("alpha: 9 workers, and a typo");
    let status = daemon.wait_for(
        "the broken commit to be rejected",
        Duration::from_secs(30),
        |s| s["last_rejected"]["commit"] == broken.as_str(),
    );
    let errors = status["last_rejected"]["errors"]
        .as_array()
        .expect("errors");
    assert!(
        errors[0]
            .as_str()
            .is_some_and(|e| e.starts_with("apps/alpha.yaml:5:")),
        "{errors:?}"
    );
    assert_eq!(status["last_good"]["commit"], second.as_str());
    assert_eq!(status["head"], broken.as_str());
    common::assert_follows(include_str!("../../../schemas/status.schema.json"), &status);
    std::thread::sleep(Duration::from_secs(3)); // a few more intervals
    for (server, before) in SERVERS.iter().zip(&applies) {
        assert_eq!(max_children(repo, server), "4", "{server}");
        assert_eq!(
            apply_log(repo, server).len(),
            *before,
            "{server} was applied to"
        );
    }
    assert!(
        daemon
            .metrics()
            .contains("\nreconciler_rejected_commits_total 1\n"),
        "{}",
        daemon.metrics()
    );

    // `reconciler status` says the same, from the daemon and from its
    // state, and fails while the head is rejected.
    let url = format!("http://{}", daemon.addr);
    let out = status_command(&["--url", &url]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&broken[..12]), "{text}");
    assert!(text.contains("apps/alpha.yaml:5:"), "{text}");
    assert!(text.contains(&second[..12]), "{text}");
    let out = status_command(&[
        "--state-dir",
        &daemon.state.to_string_lossy(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let saved: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(saved["last_rejected"]["commit"], broken.as_str());

    // The fix applies normally.
    repo.app("alpha", &SERVERS, 6, "");
    let fixed = defs.commit("alpha: 6 workers");
    daemon.wait_converged(&fixed, &SERVERS, Duration::from_secs(30));
    for server in SERVERS {
        assert_eq!(max_children(repo, server), "6", "{server}");
    }
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    assert!(stdout_of(&status_command(&["--url", &url])).contains(&fixed[..12]));
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn drift_is_only_reported_with_warn_and_corrected_with_correct() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let commit = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let mut warn = Daemon::start(
        &defs,
        state.path(),
        &["--drift", "warn", "--drift-interval", "1s"],
    );
    warn.wait_converged(&commit, &servers, Duration::from_secs(60));

    repo.ssh(
        "fleet-2",
        "sed -i 's/^pm.max_children = 3$/pm.max_children = 30/' /etc/php/8.2/fpm/pool.d/alpha.conf",
    );
    let status = warn.wait_for("the drift to be reported", Duration::from_secs(20), |s| {
        s["hosts"]["fleet-2"]["drift"] == 1
    });
    assert_eq!(status["hosts"]["fleet-2"]["last_result"], "drift");
    assert_eq!(status["hosts"]["fleet-1"]["drift"], 0);
    assert!(
        warn.metrics()
            .contains("\nreconciler_drift_changes{server=\"fleet-2\"} 1\n"),
        "{}",
        warn.metrics()
    );
    std::thread::sleep(Duration::from_secs(2)); // more drift checks: still left alone
    assert_eq!(max_children(repo, "fleet-2"), "30");
    assert!(warn.terminate(Duration::from_secs(30)).success());

    // Started again with the same commit in force: a drift check, never a
    // full apply; the edit is reported again and stays.
    let mut again = Daemon::start(
        &defs,
        state.path(),
        &["--drift", "warn", "--drift-interval", "1s"],
    );
    again.wait_for(
        "the drift to be reported after a restart",
        Duration::from_secs(30),
        |s| s["hosts"]["fleet-2"]["last_result"] == "drift",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(max_children(repo, "fleet-2"), "30", "a restart reverted it");
    assert!(again.terminate(Duration::from_secs(30)).success());

    // The same state directory: the daemon resumes with the commit in
    // force and its first check corrects the edit.
    let correct = Daemon::start(&defs, state.path(), &["--drift-interval", "1s"]);
    let started = Instant::now();
    while max_children(repo, "fleet-2") != "3" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drift was not corrected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = correct.wait_for("the host to be clean", Duration::from_secs(20), |s| {
        s["hosts"]["fleet-2"]["drift"] == 0 && s["hosts"]["fleet-2"]["last_result"] == "applied"
    });
    assert_eq!(
        status["hosts"]["fleet-2"]["last_applied_commit"],
        commit.as_str()
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_stopped_server_is_retried_with_backoff_and_converges_when_back() {
    let servers = ["fleet-1", "fleet-2", "fleet-4"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let commit = defs.commit("alpha, fleet-4 included");
    let restart = repo.fleet.stop("fleet-4");

    let state = tempfile::tempdir().expect("state");
    let daemon = Daemon::start(&defs, state.path(), &[]);
    // The others do not wait for it.
    daemon.wait_converged(&commit, &["fleet-1", "fleet-2"], Duration::from_secs(60));
    let status = daemon.wait_for("fleet-4 to fail twice", Duration::from_secs(60), |s| {
        s["hosts"]["fleet-4"]["failures"].as_u64() >= Some(2)
    });
    let fleet4 = &status["hosts"]["fleet-4"];
    assert_eq!(fleet4["last_result"], "failed");
    assert!(
        fleet4["last_message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{fleet4:#}"
    );
    // The next try is later than the last one (backoff), not at once.
    let last: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(fleet4["last_at"].clone()).expect("last_at");
    let retry: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(fleet4["retry_at"].clone()).expect("retry_at");
    assert!(retry - last >= chrono::Duration::seconds(2), "{fleet4:#}");
    assert!(
        daemon
            .metrics()
            .contains("reconciler_failures_total{server=\"fleet-4\"} "),
        "{}",
        daemon.metrics()
    );

    drop(restart); // starts fleet-4 again
    let status = daemon.wait_converged(&commit, &servers, Duration::from_secs(90));
    assert_eq!(status["hosts"]["fleet-4"]["failures"], 0);
    assert!(status["hosts"]["fleet-4"].get("retry_at").is_none());
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn two_watches_never_interleave_and_an_apply_during_one_names_it() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.beta(&SERVERS, None);
    let first = defs.commit("beta");
    let (state_a, state_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = Daemon::start(&defs, state_a.path(), &[]);
    let b = Daemon::start(&defs, state_b.path(), &[]);
    a.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    for server in SERVERS {
        common::install_release(repo, server, "beta"); // the worker's directory
    }
    defs.beta(&SERVERS, Some("600"));
    let second = defs.commit("beta: a worker");
    a.wait_converged(&second, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&second, &SERVERS, Duration::from_secs(60));
    let before: Vec<usize> = SERVERS.iter().map(|s| apply_log(repo, s).len()).collect();

    // Restarting the worker takes its 4 s stop_wait: a CLI apply in that
    // time finds the host held and names the watch holding it.
    defs.beta(&SERVERS, Some("601"));
    let third = defs.commit("beta: the worker changed");
    let holder = wait_for_an_apply_on(repo, "fleet-1", Duration::from_secs(20));
    assert!(holder.starts_with("watch "), "{holder}");
    let out = repo.run(&[
        "apply",
        "--yes",
        "--now",
        "--server",
        "fleet-1",
        "--lock-wait",
        "0",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("fleet-1: error: another apply holds this host: watch "),
        "{text}"
    );
    a.wait_converged(&third, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&third, &SERVERS, Duration::from_secs(60));

    // Each change landed once per host, and no two applies overlapped.
    for (server, before) in SERVERS.iter().zip(before) {
        let log = apply_log(repo, server);
        let changed: Vec<&Value> = log[before..]
            .iter()
            .filter(|l| l["revision"] == third.as_str() && l["result"] == "applied")
            .collect();
        assert_eq!(changed.len(), 1, "{server}: {log:#?}");
        let mut spans: Vec<(&str, &str)> = log
            .iter()
            .map(|l| {
                (
                    l["started"].as_str().expect("started"),
                    l["time"].as_str().expect("time"),
                )
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{server}: applies overlap: {pair:?}"
            );
        }
    }
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn sigterm_lets_the_applies_in_flight_finish_and_the_next_start_converges() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    defs.beta(&servers, None);
    let first = defs.commit("beta");
    let state = tempfile::tempdir().expect("state");
    let mut daemon = Daemon::start(&defs, state.path(), &[]);
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));
    for server in servers {
        common::install_release(repo, server, "beta");
    }
    defs.beta(&servers, Some("600"));
    let second = defs.commit("beta: a worker");
    daemon.wait_converged(&second, &servers, Duration::from_secs(60));

    defs.beta(&servers, Some("602"));
    let third = defs.commit("beta: the worker changed");
    wait_for_an_apply_on(repo, "fleet-1", Duration::from_secs(20));
    let started = Instant::now();
    let exit = daemon.terminate(Duration::from_secs(60));
    assert!(exit.success(), "{exit}");
    let log = daemon.log_text();
    assert!(log.contains("waiting for the hosts in flight"), "{log}");
    // It waited for the apply (the worker's 4 s stop) instead of leaving it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Every server is whole: no apply running or interrupted, and each one
    // that started applying the commit finished it.
    let plan = repo.plan_json();
    for server in servers {
        let host = host(&plan, server);
        assert!(
            host.get("interrupted").is_none_or(Value::is_null),
            "{host:#}"
        );
        assert!(host.get("locked_by").is_none_or(Value::is_null), "{host:#}");
        let applied = apply_log(repo, server)
            .iter()
            .any(|l| l["revision"] == third.as_str());
        let changes = host["changes"].as_array().map_or(0, Vec::len);
        assert_eq!(changes == 0, applied, "{server}: {host:#}");
    }
    assert!(
        apply_log(repo, "fleet-1")
            .iter()
            .any(|l| l["revision"] == third.as_str())
    );

    // The next start converges what is left.
    defs.beta(&servers, Some("603"));
    let fourth = defs.commit("beta: once more");
    let again = Daemon::start(&defs, state.path(), &[]);
    again.wait_converged(&fourth, &servers, Duration::from_secs(60));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

/// alpha's page on `server` answers `code`: a release whose index.php sets
/// it (the reload's web check wants anything but a 5xx).
fn alpha_answers(repo: &Repo, server: &str, code: u16) {
    repo.ssh(
        server,
        &format!(
            "set -e\nd=/home/alpha/releases/r1/public; mkdir -p $d\n\
             echo '<?php http_response_code({code}); echo \"{code}\";' > $d/index.php.new\n\
             mv $d/index.php.new $d/index.php\n\
             chown -R alpha:alpha /home/alpha/releases\n\
             ln -sfn releases/r1 /home/alpha/current.new && chown -h alpha:alpha /home/alpha/current.new\n\
             mv -T /home/alpha/current.new /home/alpha/current\n"
        ),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while repo.server(server).http_get("/", "alpha.test").0 != code {
        assert!(Instant::now() < deadline, "{server} does not answer {code}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The apply log entries of `server` for the definitions `commit`.
fn applies_of(repo: &Repo, server: &str, commit: &str) -> Vec<Value> {
    apply_log(repo, server)
        .into_iter()
        .filter(|e| e["revision"] == commit)
        .collect()
}

/// Settings take effect with the commit that sets them: a commit that
/// lowers `reload_parallel` from 3 to 1 and changes a pool has its php-fpm
/// reloads done one server after the other by the daemon that was already
/// running (it read 3 at its start).
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_commit_that_lowers_reload_parallel_reloads_one_server_at_a_time() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.cluster_yaml("fpm_reload: immediate\nreload_parallel: 3\n");
    repo.app("alpha", &SERVERS, 3, "");
    let first = defs.commit("alpha, three reloads at once");
    let state = tempfile::tempdir().expect("state");
    let daemon = Daemon::start(&defs, state.path(), &[]);
    daemon.wait_converged(&first, &SERVERS, Duration::from_secs(60));

    let path = repo.dir.path().join("clusters/fleet.yaml");
    let cluster = std::fs::read_to_string(&path).expect("cluster");
    std::fs::write(
        &path,
        cluster.replacen("reload_parallel: 3", "reload_parallel: 1", 1),
    )
    .expect("write");
    repo.app("alpha", &SERVERS, 4, "");
    let second = defs.commit("one reload at a time, and 4 workers");
    daemon.wait_converged(&second, &SERVERS, Duration::from_secs(60));
    let mut applies: Vec<Value> = SERVERS
        .iter()
        .map(|server| {
            let entries = applies_of(repo, server, &second);
            assert_eq!(entries.len(), 1, "{server}: {entries:#?}");
            assert_eq!(max_children(repo, server), "4", "{server}");
            entries[0].clone()
        })
        .collect();
    applies.sort_by(|a, b| a["started"].as_str().cmp(&b["started"].as_str()));
    for pair in applies.windows(2) {
        assert!(
            pair[0]["time"].as_str() <= pair[1]["started"].as_str(),
            "two servers reloaded at once:\n{:#}\n{:#}",
            pair[0],
            pair[1]
        );
    }
}

/// The daemon's rolling reload stops at the first server whose app does
/// not answer after php-fpm reloaded: the others are not applied while
/// the app still fails, and the roll goes on once that server succeeds.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_daemons_roll_stops_at_a_failed_server_and_resumes_when_it_succeeds() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.cluster_yaml("fpm_reload: immediate\nreload_parallel: 1\n");
    repo.app("alpha", &SERVERS, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let daemon = Daemon::start(&defs, state.path(), &[]);
    daemon.wait_converged(&first, &SERVERS, Duration::from_secs(60));

    // alpha answers 500 everywhere; a pool change reloads php-fpm.
    for server in SERVERS {
        alpha_answers(repo, server, 500);
    }
    repo.app("alpha", &SERVERS, 4, "");
    let second = defs.commit("alpha: 4 workers");
    let refused = |s: &Value, server: &str| {
        s["hosts"][server]["last_message"]
            .as_str()
            .is_some_and(|m| m.contains("rolling php-fpm reload of cluster `fleet` stopped"))
    };
    let status = daemon.wait_for(
        "the roll to stop at one server",
        Duration::from_secs(60),
        |s| SERVERS.iter().filter(|server| refused(s, server)).count() == 2,
    );
    let stopper = SERVERS
        .into_iter()
        .find(|server| !refused(&status, server))
        .expect("the stopper");
    let message = status["hosts"][stopper]["last_message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("answered 500"), "{status:#}");
    for server in SERVERS {
        let applied = applies_of(repo, server, &second);
        if server == stopper {
            assert_eq!(applied.len(), 1, "{server}: {applied:#?}");
        } else {
            assert_eq!(
                refused(&status, server).then_some(server),
                Some(server),
                "{status:#}"
            );
            assert!(
                status["hosts"][server]["last_message"]
                    .as_str()
                    .is_some_and(|m| m.contains(&format!("because `{stopper}` failed"))),
                "{status:#}"
            );
            assert_eq!(applied, Vec::<Value>::new(), "{server} was applied to");
            assert_eq!(max_children(repo, server), "3", "{server}");
        }
    }

    // The app fixed: the stopper succeeds, and the others follow.
    for server in SERVERS {
        alpha_answers(repo, server, 200);
    }
    daemon.wait_converged(&second, &SERVERS, Duration::from_secs(90));
    for server in SERVERS {
        assert_eq!(max_children(repo, server), "4", "{server}");
    }
}

/// A window that cannot be open: 03:00 on January 1st, 2099.
const NO_WINDOW: &str = "reload_windows: [{ schedule: \"0 0 3 1 1 * 2099\", duration: 1h }]\n";

/// A server that goes down keeps its last known state (a reload pending on
/// it) in the status and the metrics, marked with when it was read, and is
/// reported as failing; a server removed from the definitions loses its
/// series.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_server_that_goes_down_keeps_its_last_known_state_and_one_removed_loses_its_series() {
    let servers = ["fleet-1", "fleet-4"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    defs.cluster_yaml(NO_WINDOW);
    repo.app("alpha", &servers, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let daemon = Daemon::start(&defs, state.path(), &["--drift-interval", "1s"]);
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));

    // A pool change: its php-fpm reload waits for the window.
    repo.app("alpha", &servers, 4, "");
    let second = defs.commit("alpha: 4 workers");
    let pending = |s: &Value| s["hosts"]["fleet-4"]["pending_reloads"].clone();
    let status = daemon.wait_for("fleet-4's pending reload", Duration::from_secs(60), |s| {
        s["hosts"]["fleet-4"]["last_applied_commit"] == second.as_str()
            && pending(s).as_array().is_some_and(|p| p.len() == 1)
    });
    let reload = pending(&status);
    assert_eq!(reload[0]["label"], "php8.2-fpm", "{status:#}");
    let series = "reconciler_pending_reloads{server=\"fleet-4\"} 1\n";
    assert!(daemon.metrics().contains(series), "{}", daemon.metrics());

    // Down: its drift checks fail; what was read last stays, as of then.
    let restart = repo.fleet.stop("fleet-4");
    // (The first failure may still have read it: a connection lost later.)
    let status = daemon.wait_for("fleet-4 to fail unread", Duration::from_secs(60), |s| {
        let host = &s["hosts"]["fleet-4"];
        host["failures"].as_u64() >= Some(1) && host["known_at"] != host["last_at"]
    });
    let host = &status["hosts"]["fleet-4"];
    assert_eq!(pending(&status), reload, "{host:#}");
    let at = |field: &str| -> chrono::DateTime<chrono::Utc> {
        serde_json::from_value(host[field].clone()).unwrap_or_else(|e| panic!("{field}: {e}"))
    };
    assert!(at("known_at") < at("last_at"), "{host:#}");
    assert_eq!(host["last_result"], "failed", "{host:#}");
    let problems = status["problems"].as_array().expect("problems");
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "host-failed" && p["subject"] == "fleet-4"),
        "{status:#}"
    );
    assert!(daemon.metrics().contains(series), "{}", daemon.metrics());

    // Removed from the definitions (still down): its series go.
    let cluster =
        std::fs::read_to_string(repo.dir.path().join("clusters/fleet.yaml")).expect("cluster");
    let kept: String = cluster
        .lines()
        .filter(|l| !l.contains("name: fleet-4"))
        .map(|l| format!("{l}\n"))
        .collect();
    repo.write("clusters/fleet.yaml", &kept);
    repo.app("alpha", &["fleet-1"], 4, "");
    let third = defs.commit("without fleet-4");
    daemon.wait_converged(&third, &["fleet-1"], Duration::from_secs(60));
    let status = daemon.wait_for("fleet-4 to leave", Duration::from_secs(10), |s| {
        s["hosts"].get("fleet-4").is_none()
    });
    assert!(status["hosts"]["fleet-1"].is_object(), "{status:#}");
    let metrics = daemon.metrics();
    assert!(!metrics.contains("server=\"fleet-4\""), "{metrics}");
    assert!(metrics.contains("server=\"fleet-1\""), "{metrics}");
    drop(restart);
}
