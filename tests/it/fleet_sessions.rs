//! Sessions shared by two web servers through redis and memcached, against
//! the test fleet: a page counts requests in its session. These tests
//! change the shared servers, so nextest runs no other fleet test on their
//! fleet beside them.

use crate::common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::Repo;

const SERVERS: [&str; 2] = ["fleet-1", "fleet-2"];

/// The counting page: read, wait `?wait=` ms, write, so that two requests
/// of one session that are not serialized lose an increment.
const PAGE: &str = r"<?php
session_start();
$n = $_SESSION['n'] ?? 0;
usleep(1000 * (int) ($_GET['wait'] ?? 0));
$_SESSION['n'] = $n + 1;
echo $_SESSION['n'];
";

/// Both web servers with `sessions` (cluster YAML) and the app `sess`
/// serving PAGE.
fn cluster(sessions: &str) -> Repo {
    let repo = Repo::new(&SERVERS);
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let yaml = std::fs::read_to_string(&path).expect("cluster");
    let start = yaml.find("sessions:").expect("sessions");
    let end = start + yaml[start..].find('\n').expect("line");
    std::fs::write(
        &path,
        format!("{}{sessions}{}", &yaml[..start], &yaml[end..]),
    )
    .expect("write");
    repo.app("sess", &SERVERS, 8, "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    for server in SERVERS {
        repo.ssh(
            server,
            &format!(
                "set -e\nd=/home/sess/releases/s1/public; mkdir -p $d\ncat > $d/index.php <<'PHP'\n{PAGE}PHP\n\
                 chown -R sess:sess /home/sess/releases\n\
                 ln -sfn releases/s1 /home/sess/current && chown -h sess:sess /home/sess/current\n"
            ),
        );
    }
    repo
}

fn addr(repo: &Repo, server: &str) -> SocketAddr {
    let s = repo.server(server);
    format!("{}:{}", s.address, s.http_port)
        .parse()
        .expect("addr")
}

/// One request of the session `cookie` (none: a new session): the count
/// and the session cookie.
fn count(repo: &Repo, server: &str, cookie: Option<&str>, wait_ms: u32) -> (u32, String) {
    let mut headers = vec![("Host", "sess.test")];
    let cookie_header = cookie.map(|c| format!("PHPSESSID={c}"));
    if let Some(c) = &cookie_header {
        headers.push(("Cookie", c.as_str()));
    }
    let path = format!("/?wait={wait_ms}");
    let response = common::http(addr(repo, server), "GET", &path, &headers, b"").expect("GET");
    assert_eq!(response.status, 200, "{server}: {}", response.body);
    let cookie = response
        .header("set-cookie")
        .and_then(|c| c.strip_prefix("PHPSESSID="))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .or_else(|| cookie.map(str::to_owned))
        .expect("a session cookie");
    let n = response
        .body
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{server}: {}", response.body));
    (n, cookie)
}

/// Requests alternating between the servers, from `from` on: each count
/// is one more than the last.
fn alternate(repo: &Repo, cookie: &str, from: u32, requests: u32) {
    for i in 0..requests {
        let server = SERVERS[(i % 2) as usize];
        let (n, _) = count(repo, server, Some(cookie), 0);
        assert_eq!(n, from + i, "request {i} on {server}");
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn redis_sessions_are_shared_and_locking_loses_no_increment() {
    let repo =
        cluster("sessions: { handler: redis, save_path: \"tcp://redis:6379\", locking: true }");
    let (first, cookie) = count(&repo, "fleet-1", None, 0);
    assert_eq!(first, 1);
    alternate(&repo, &cookie, 2, 10);

    concurrent_requests_lose_no_increment(&repo, &cookie, 11);
}

/// 8 concurrent requests of the session `cookie`, half on each server,
/// each holding it 300 ms: 2.4 s for the last one's lock, longer than
/// php-memcached's own wait (0.75 s) but well within the request
/// duration. Then one more request must count `last` + 9: none lost.
fn concurrent_requests_lose_no_increment(repo: &Repo, cookie: &str, last: u32) {
    const REQUESTS: u32 = 8;
    let started = std::time::Instant::now();
    let threads: Vec<_> = (0..REQUESTS)
        .map(|i| {
            let header = format!("PHPSESSID={cookie}");
            let addr = addr(repo, SERVERS[(i % 2) as usize]);
            std::thread::spawn(move || {
                let r = common::http(
                    addr,
                    "GET",
                    "/?wait=300",
                    &[("Host", "sess.test"), ("Cookie", &header)],
                    b"",
                )
                .expect("GET");
                (r.status, r.body)
            })
        })
        .collect();
    let answers: Vec<(u16, String)> = threads
        .into_iter()
        .map(|t| t.join().expect("request"))
        .collect();
    let (n, _) = count(repo, "fleet-2", Some(cookie), 0);
    let expected = last + REQUESTS + 1;
    assert_eq!(
        n,
        expected,
        "{} of {REQUESTS} concurrent increments lost in {:.1} s; answers: {answers:?}",
        expected.saturating_sub(n),
        started.elapsed().as_secs_f64()
    );
}

/// Stops a container of the fleet until dropped.
struct Stopped(String);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["start", &self.0]).status();
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn memcached_sessions_lock_and_with_a_replica_survive_the_loss_of_a_node() {
    let nodes = common::Fleet::load().memcached.join(",");
    let repo = cluster(&format!(
        "sessions: {{ handler: memcached, save_path: \"{nodes}\", replicas: 1, locking: true }}"
    ));
    let ini = repo.ssh("fleet-1", "cat /etc/php/8.2/fpm/conf.d/99-reconciler.ini");
    assert!(
        ini.contains("memcached.sess_number_of_replicas = 1"),
        "{ini}"
    );
    // Locking that works: concurrent requests of one session wait for its
    // lock as long as through redis.
    let (first, cookie) = count(&repo, "fleet-1", None, 0);
    assert_eq!(first, 1);
    concurrent_requests_lose_no_increment(&repo, &cookie, 1);
    // Either node may hold a session's primary copy: lose each in turn,
    // with a new session each time (a node that comes back is empty, and
    // php-memcached reads a replica only while the primary is down).
    let prefix = repo.fleet.servers[0]
        .container
        .strip_suffix("-1")
        .expect("a fleet container name")
        .to_owned();
    for node in ["memcached-1", "memcached-2"] {
        let (first, cookie) = count(&repo, "fleet-1", None, 0);
        assert_eq!(first, 1);
        alternate(&repo, &cookie, 2, 5);
        let container = format!("{prefix}-{node}");
        let status = Command::new("docker")
            .args(["stop", "-t", "1", &container])
            .status()
            .expect("docker");
        assert!(status.success());
        let stopped = Stopped(container);
        alternate(&repo, &cookie, 7, 6);
        drop(stopped);
        std::thread::sleep(Duration::from_secs(1));
    }
}
