//! Reload windows, OPcache hygiene and rolling php-fpm reloads, against
//! the test fleet. These tests change the shared servers, so nextest runs
//! no other fleet test on their fleet beside them.

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Repo, host};
use serde_json::Value;

/// A window that cannot be open: 03:00 on January 1st, 2099.
const FAR: &str = "[{ schedule: \"0 0 3 1 1 * 2099\", duration: 1h }]";
/// A window that is always open: every minute, for an hour.
const OPEN: &str = "[{ schedule: \"0 * * * * *\", duration: 1h }]";

/// A cluster of `servers` with `windows` and `extra` cluster YAML, and the
/// app `alpha` on them with `max_workers`, live (a release answering).
fn cluster(servers: &[&str], windows: &str, extra: &str, max_workers: u32) -> Repo {
    let repo = Repo::new(servers);
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let yaml = std::fs::read_to_string(&path).expect("cluster");
    let yaml = yaml.replacen(
        "servers:\n",
        &format!("reload_windows: {windows}\n{extra}servers:\n"),
        1,
    );
    std::fs::write(path, yaml).expect("write");
    repo.app("alpha", servers, max_workers, "");
    repo
}

fn set_windows(repo: &Repo, from: &str, to: &str) {
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let yaml = std::fs::read_to_string(&path).expect("cluster");
    assert!(yaml.contains(from));
    std::fs::write(path, yaml.replace(from, to)).expect("write");
}

/// alpha's page on `server`: a few PHP files, so the cache has something.
fn release(repo: &Repo, server: &str) {
    repo.ssh(
        server,
        "set -e\nd=/home/alpha/releases/w1/public; mkdir -p $d\n\
         for i in $(seq 1 20); do echo \"<?php function f$i() { return $i; }\" > $d/f$i.php; done\n\
         echo '<?php for ($i = 1; $i <= 20; $i++) { require __DIR__ . \"/f$i.php\"; } usleep(20000); echo \"ok\";' > $d/index.php\n\
         chown -R alpha:alpha /home/alpha/releases/w1\n\
         ln -sfn releases/w1 /home/alpha/current.new && chown -h alpha:alpha /home/alpha/current.new\n\
         mv -T /home/alpha/current.new /home/alpha/current\n\
         sleep 2 # OPcache skips files younger than opcache.file_update_protection\n",
    );
}

fn warm(repo: &Repo, server: &str) {
    for _ in 0..5 {
        let (status, body) = repo.server(server).http_get("/", "alpha.test");
        assert_eq!((status, body.as_str()), (200, "ok"), "{server}");
    }
}

/// The pids of alpha's FPM workers on `server`: a reload replaces them.
fn workers(repo: &Repo, server: &str) -> String {
    repo.ssh(server, "pgrep -f 'php-fpm: pool alpha' | sort")
}

fn opcache(plan: &Value, server: &str) -> Value {
    host(plan, server)["opcache"]["8.2"].clone()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_reload_waits_for_its_window_and_happens_in_it() {
    let repo = cluster(&["fleet-1"], FAR, "", 3);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    release(&repo, "fleet-1");
    warm(&repo, "fleet-1");
    let before = workers(&repo, "fleet-1");
    let started = opcache(&repo.plan_json(), "fleet-1")["start_time"].clone();

    // Outside a window: written and validated, not reloaded; pending.
    repo.app("alpha", &["fleet-1"], 4, "");
    let plan = repo.run_expect(&["plan"], 0);
    assert!(
        plan.contains(
            "reload php8.2-fpm in the next reload window, 2099-01-01 03:00 UTC (03:00 UTC), in "
        ),
        "{plan}"
    );
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(
        out.contains("php8.2-fpm is pending until the next reload window"),
        "{out}"
    );
    assert_eq!(
        workers(&repo, "fleet-1"),
        before,
        "php-fpm was not reloaded"
    );
    let plan = repo.plan_json();
    assert_eq!(opcache(&plan, "fleet-1")["start_time"], started);
    assert_eq!(host(&plan, "fleet-1")["reloads"][0]["pending"], true);
    assert_eq!(
        repo.ssh("fleet-1", "cat /var/lib/reconciler/pending-reloads"),
        "php8.2-fpm\n"
    );

    // In a window: the pending reload is due now, and done.
    std::thread::sleep(Duration::from_secs(1));
    set_windows(&repo, FAR, OPEN);
    repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(out.contains("reloaded php8.2-fpm"), "{out}");
    assert_ne!(workers(&repo, "fleet-1"), before, "php-fpm reloaded");
    warm(&repo, "fleet-1");
    let plan = repo.plan_json();
    assert_ne!(opcache(&plan, "fleet-1")["start_time"], started);
    assert_eq!(host(&plan, "fleet-1")["reloads"], Value::Array(vec![]));
    assert_eq!(
        repo.ssh("fleet-1", "cat /var/lib/reconciler/pending-reloads"),
        ""
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn opcache_figures_come_from_fpm_and_a_full_cache_is_reloaded_in_a_window() {
    let repo = cluster(&["fleet-2"], OPEN, "opcache_hygiene: { max_fill: 1 }\n", 3);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    release(&repo, "fleet-2");
    warm(&repo, "fleet-2");
    let plan = repo.plan_json();
    let cache = opcache(&plan, "fleet-2");
    assert!(cache["cached_scripts"].as_u64() > Some(20), "{cache}");
    assert!(cache["hits"].as_u64() > Some(0), "{cache}");
    assert_eq!(cache["enabled"], true);
    let due = cache["due"].as_array().expect("due");
    assert!(
        due.iter().any(|d| d
            .as_str()
            .is_some_and(|d| d.contains("full (more than 1%)"))),
        "{cache}"
    );
    let reload = &host(&plan, "fleet-2")["reloads"][0];
    assert_eq!(
        (reload["label"].as_str(), reload["when"].as_str()),
        (Some("php8.2-fpm"), Some("now"))
    );

    std::thread::sleep(Duration::from_secs(1));
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(out.contains("reloaded php8.2-fpm"), "{out}");
    let after = opcache(&repo.plan_json(), "fleet-2");
    assert!(
        after["start_time"].as_i64() > cache["start_time"].as_i64(),
        "{after}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn two_web_servers_reload_one_after_the_other() {
    let repo = cluster(&["fleet-1", "fleet-2"], OPEN, "", 3);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    for server in ["fleet-1", "fleet-2"] {
        release(&repo, server);
    }
    repo.app("alpha", &["fleet-1", "fleet-2"], 5, "");
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(
        out.contains("fleet-1: applied 1 change; reloaded php8.2-fpm"),
        "{out}"
    );
    assert!(
        out.contains("fleet-2: applied 1 change; reloaded php8.2-fpm"),
        "{out}"
    );
    let entry = |server: &str| -> Value {
        serde_json::from_str(&repo.ssh(server, "tail -n1 /var/lib/reconciler/apply.log"))
            .expect("a JSON line")
    };
    let (first, second) = (entry("fleet-1"), entry("fleet-2"));
    // Each apply ends after its web apps answered; the next starts after.
    let (a, b) = if first["started"].as_str() < second["started"].as_str() {
        (&first, &second)
    } else {
        (&second, &first)
    };
    assert!(
        a["time"].as_str() <= b["started"].as_str(),
        "they overlapped:\n{first}\n{second}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_reload_under_load_fails_no_request() {
    let repo = cluster(&["fleet-3"], OPEN, "", 4);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    release(&repo, "fleet-3");
    warm(&repo, "fleet-3");
    let server = repo.server("fleet-3").clone();
    let addr: SocketAddr = format!("{}:{}", server.address, server.http_port)
        .parse()
        .expect("address");

    // A few hundred requests over a few seconds from 8 clients, while an
    // apply changes the pool and reloads php-fpm in the middle.
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::<(u16, Duration)>::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let status = request(addr);
                    let mut results = results
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    results.push((status, started.elapsed()));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    repo.app("alpha", &["fleet-3"], 6, "");
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(out.contains("reloaded php8.2-fpm"), "{out}");
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    let results = results
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let failed = results.iter().filter(|(status, _)| *status != 200).count();
    let longest = results.iter().map(|(_, d)| *d).max().unwrap_or_default();
    println!(
        "{} requests during a php-fpm reload: {failed} not 200, longest {longest:?}",
        results.len()
    );
    assert!(results.len() > 200, "only {} requests", results.len());
    assert_eq!(failed, 0, "requests that did not get 200 during the reload");
}

/// One GET / for alpha.test: the status (0 when the connection failed).
fn request(addr: SocketAddr) -> u16 {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        return 0;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: alpha.test\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return 0;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
