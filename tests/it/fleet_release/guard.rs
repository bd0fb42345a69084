//! Guarded releases (`guard:`): a release whose health check passes but
//! whose real traffic fails is rolled back on every server.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_rise_in_5xx_after_the_switch_rolls_back_every_server_and_says_why() {
    let app = AppRepo::new();
    let good = app.commit("g1", &[]);
    let repo = definitions(&app, 3);
    let path = repo.dir.path().join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    std::fs::write(
        &path,
        yaml.replacen(
            "servers:\n",
            "guard: { window: 10s, max_5xx_ratio: 0.05, min_requests: 20 }\nservers:\n",
            1,
        ),
    )
    .expect("write");

    // Traffic on both servers all along: the home page, and a route the
    // health check never asks for (404 until the second commit breaks it).
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<u16>>> = Arc::default();
    let clients: Vec<_> = SERVERS
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
    let stop_clients = || {
        stop.store(true, Ordering::Relaxed);
    };

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
    stop_clients();
    for client in clients {
        client.join().expect("client");
    }
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
    assert!(
        seen.lock().unwrap().contains(&500),
        "the clients saw the 500s"
    );
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
