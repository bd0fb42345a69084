//! Guarded releases (`guard:`): a release whose health check passes but
//! whose real traffic fails is rolled back on every server.

use super::daemon::{last_log_line, wait_body, wait_serving_in, wait_status, watch};
use super::*;

/// Requests on both web servers, every 50 ms until stopped (two minutes
/// at most): the home page, and `/report.php`, which the health check
/// never asks for.
struct Load {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<u16>>>,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(repo: &Repo) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<u16>>> = Arc::default();
        let clients = SERVERS
            .iter()
            .map(|name| {
                let server = repo.server(name).clone();
                let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
                std::thread::spawn(move || {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        for path in ["/", "/report.php"] {
                            let (status, _) = server.http_get(path, "rel.test");
                            seen.lock().unwrap().push(status);
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                })
            })
            .collect();
        Self {
            stop,
            seen,
            clients,
        }
    }

    /// Stops the clients: every status they saw.
    fn stop(self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        for client in self.clients {
            client.join().expect("client");
        }
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

/// Adds `guard` to the app's definition.
fn add_guard(repo: &Repo, guard: &str) {
    let path = repo.dir.path().join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    let yaml = yaml.replacen("servers:\n", &format!("guard: {guard}\nservers:\n"), 1);
    std::fs::write(&path, yaml).expect("write");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_rise_in_5xx_after_the_switch_rolls_back_every_server_and_says_why() {
    let app = AppRepo::new();
    let good = app.commit("g1", &[]);
    let repo = definitions(&app, 3);
    add_guard(
        &repo,
        "{ window: 10s, max_5xx_ratio: 0.05, min_requests: 20 }",
    );

    // Traffic on both servers all along: the home page, and a route the
    // health check never asks for (404 until the second commit breaks it).
    let load = Load::start(&repo);

    // Healthy traffic for the whole window: live.
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert!(text.contains("guard     done in"), "{text}");
    assert_serves(&repo, "g1");

    // The second commit's report page fails; its health check (/) passes.
    let bad = app.commit(
        "g2",
        &[(
            "public/report.php",
            "<?php http_response_code(500); echo 'boom';\n",
        )],
    );
    let started = Instant::now();
    let out = run(&repo, &app, &["release", "rel"]);
    let took = started.elapsed();
    let seen = load.stop();
    let text = expect(&out, 1);
    assert!(
        text.contains("(guard), so every server went back to"),
        "{text}"
    );
    assert!(text.contains("5xx "), "{text}");
    assert!(took < Duration::from_secs(60), "rolled back after {took:?}");
    assert_serves(&repo, "g1");
    for server in SERVERS {
        assert_eq!(live(&repo, server), format!("releases/{good}"));
        let log = repo.ssh(server, "tail -n 1 /var/lib/reconciler/apps/rel/release.log");
        let entry: serde_json::Value = serde_json::from_str(log.trim()).expect("a log line");
        assert_eq!(entry["sha"], bad.as_str(), "{log}");
        assert_eq!(entry["result"], "rolled-back", "{log}");
        assert!(
            entry["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("5xx ")),
            "{log}"
        );
    }
    assert!(seen.contains(&500), "the clients saw the 500s");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn top_counts_the_requests_each_server_answered() {
    let app = AppRepo::new();
    app.commit(
        "t1",
        &[("public/report.php", "<?php http_response_code(500);\n")],
    );
    let repo = definitions(&app, 3);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    for server in SERVERS {
        repo.ssh(server, ": > /var/log/reconciler/rel/access.log");
    }
    let fleet_1 = repo.server("fleet-1");
    for _ in 0..30 {
        assert_eq!(fleet_1.http_get("/", "rel.test").0, 200);
    }
    for _ in 0..10 {
        assert_eq!(fleet_1.http_get("/report.php", "rel.test").0, 500);
    }
    for _ in 0..4 {
        assert_eq!(fleet_1.http_get("/no-such.php", "rel.test").0, 404);
    }
    let text = expect(
        &run(&repo, &app, &["top", "rel", "--once", "--window", "1h"]),
        0,
    );
    let row = |server: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.starts_with("rel ") && l.contains(&format!(" {server} ")))
            .unwrap_or_else(|| panic!("no row for {server}:\n{text}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    // APP SERVER REQUESTS REQ/S 5XX 4XX P50 P99
    let one = row("fleet-1");
    assert_eq!(one[2], "44", "{text}");
    assert_eq!(
        (one[4].as_str(), one[5].as_str()),
        ("22.7%", "9.1%"),
        "{text}"
    );
    let two = row("fleet-2");
    assert_eq!((two[2].as_str(), two[4].as_str()), ("0", "0.0%"), "{text}");
}

/// The in-flight record `server` keeps of `rel` (null: none).
fn in_flight(repo: &Repo, server: &str) -> serde_json::Value {
    let text = repo.ssh(
        server,
        "cat /var/lib/reconciler/apps/rel/in-flight 2>/dev/null || echo null",
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Stops the daemon with `signal` and waits for it to exit.
fn stop_daemon(daemon: &mut Killed, signal: &str) {
    let pid = daemon.0.id().to_string();
    let sent = Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(sent.success(), "kill {signal} {pid}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while daemon.0.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the daemon did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_daemon_stopped_or_killed_during_a_guard_window_judges_the_release_on_after_its_restart() {
    let app = AppRepo::new();
    let good = app.commit("r1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel", &good]), 0);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    add_guard(
        &repo,
        "{ window: 40s, max_5xx_ratio: 0.05, min_requests: 20 }",
    );
    pin(&repo, &good);
    commit_all(defs, "pin r1, guarded");
    let state = tempfile::tempdir().expect("tempdir");
    let mut daemon = watch(&repo, state.path(), "10m", "correct");
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["apps"]["rel"]["state"] == "converged"
    });

    // The pin moves to a commit whose report page fails. No traffic yet,
    // so its guard cannot judge it before the daemon is restarted
    // (SIGTERM) in the window.
    let bad = app.commit(
        "r2",
        &[("public/report.php", "<?php http_response_code(500);\n")],
    );
    pin(&repo, &bad);
    commit_all(defs, "pin r2");
    for server in SERVERS {
        wait_body(&repo, server, "r2", Duration::from_secs(60));
    }
    stop_daemon(&mut daemon, "-TERM");
    // Left live and in flight, with where its guard stood; not logged.
    for server in SERVERS {
        let record = in_flight(&repo, server);
        assert_eq!(record["sha"], bad.as_str(), "{server}: {record}");
        assert!(record["guard"]["until"].is_string(), "{server}: {record}");
        assert!(record["guard"]["from"].is_u64(), "{server}: {record}");
        assert_ne!(last_log_line(&repo, server)["sha"], bad.as_str());
    }
    let load = Load::start(&repo);
    let started = Instant::now();
    let mut daemon = watch(&repo, state.path(), "10m", "correct");
    wait_serving_in(&repo, state.path(), "r1", Duration::from_secs(60));
    let took = started.elapsed();
    // Back everywhere, then logged: the check ends failed (the pinned
    // release failed its guard).
    wait_status(state.path(), Duration::from_secs(30), |_, s| {
        s["apps"]["rel"]["state"] == "failed"
    });
    for server in SERVERS {
        let line = last_log_line(&repo, server);
        assert_eq!(line["sha"], bad.as_str(), "{server}: {line}");
        assert_eq!(line["result"], "rolled-back", "{server}: {line}");
        assert!(
            line["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("5xx ")),
            "{server}: {line}"
        );
        assert!(in_flight(&repo, server).is_null(), "{server}");
    }
    eprintln!("rolled back {took:?} after the restart");

    // A release whose traffic is fine, and a daemon killed (SIGKILL) in
    // its window: after the restart the guard runs out its window and the
    // release is logged live.
    let fine = app.commit("r3", &[("public/report.php", "<?php echo 'ok';\n")]);
    pin(&repo, &fine);
    commit_all(defs, "pin r3");
    for server in SERVERS {
        wait_body(&repo, server, "r3", Duration::from_secs(60));
    }
    stop_daemon(&mut daemon, "-KILL");
    for server in SERVERS {
        assert_eq!(in_flight(&repo, server)["sha"], fine.as_str(), "{server}");
    }
    let _daemon = watch(&repo, state.path(), "10m", "correct");
    wait_status(state.path(), Duration::from_secs(90), |_, s| {
        s["apps"]["rel"]["state"] == "repaired"
    });
    let seen = load.stop();
    assert_serves(&repo, "r3");
    for server in SERVERS {
        let line = last_log_line(&repo, server);
        assert_eq!(line["sha"], fine.as_str(), "{server}: {line}");
        assert_eq!(line["result"], "live", "{server}: {line}");
        assert!(in_flight(&repo, server).is_null(), "{server}");
    }
    assert!(seen.contains(&500), "the clients saw r2's 500s");
}
