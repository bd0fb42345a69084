//! Notifications end to end (`notify:` and `watch --notify-urls`): a
//! guarded release that real traffic fails is rolled back by the daemon,
//! and a webhook receiver on loopback is told once, with the reason; a
//! restarted daemon does not make that release again.

use super::daemon::{last_log_line, wait_body, wait_serving_in, wait_status, watch_with};
use super::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

/// A webhook receiver on 127.0.0.1 (never another address): it answers
/// every POST 200 and keeps its JSON body.
struct Receiver {
    port: u16,
    stop: Arc<AtomicBool>,
    bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("non-blocking");
        let stop = Arc::new(AtomicBool::new(false));
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let thread = {
            let (stop, bodies) = (Arc::clone(&stop), Arc::clone(&bodies));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(body) = Self::answer(stream) {
                                bodies.lock().unwrap().push(body);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Self {
            port,
            stop,
            bodies,
            thread: Some(thread),
        }
    }

    /// Reads one request (headers, then `Content-Length` bytes), answers
    /// 200: its body as JSON.
    fn answer(stream: std::net::TcpStream) -> Option<serde_json::Value> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut reader = BufReader::new(stream);
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        let mut stream = reader.into_inner();
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        serde_json::from_slice(&body).ok()
    }

    /// The bodies received so far.
    fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Requests on both web servers every 50 ms until stopped (two minutes
/// at most): the home page, and `/report.php`, which the health check
/// never asks for. Every status seen.
fn load(repo: &Repo, stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<Vec<u16>>> {
    SERVERS
        .iter()
        .map(|name| {
            let server = repo.server(name).clone();
            let stop = Arc::clone(stop);
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    for path in ["/", "/report.php"] {
                        seen.push(server.http_get(path, "rel.test").0);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                seen
            })
        })
        .collect()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_release_its_guard_rolls_back_is_told_once_with_the_reason_and_held_after_a_restart() {
    let receiver = Receiver::start();
    let app = AppRepo::new();
    let good = app.commit("n1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel", &good]), 0);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    let path = defs.join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    let yaml = yaml.replacen(
        "servers:\n",
        "guard: { window: 20s, max_5xx_ratio: 0.05, min_requests: 20 }\n\
         notify:\n  - { to: hook, events: [rolled-back, release-failed] }\nservers:\n",
        1,
    );
    std::fs::write(&path, yaml).expect("write");
    pin(&repo, &good);
    commit_all(defs, "pin n1, guarded, notifying");

    let state = tempfile::tempdir().expect("tempdir");
    let urls = state.path().join("notify-urls");
    std::fs::write(
        &urls,
        format!("hook http://127.0.0.1:{}/hook\n", receiver.port),
    )
    .expect("urls");
    let urls = urls.to_str().expect("a UTF-8 path").to_owned();
    let daemon = watch_with(&repo, state.path(), &["--notify-urls", &urls]);
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["apps"]["rel"]["state"] == "converged"
    });

    // Traffic on both servers, then a pin to a commit whose report page
    // fails while its health check (/) passes.
    let stop = Arc::new(AtomicBool::new(false));
    let clients = load(&repo, &stop);
    let bad = app.commit(
        "n2",
        &[("public/report.php", "<?php http_response_code(500);\n")],
    );
    pin(&repo, &bad);
    commit_all(defs, "pin n2");
    for server in SERVERS {
        wait_body(&repo, server, "n2", Duration::from_secs(60));
    }
    wait_serving_in(&repo, state.path(), "n1", Duration::from_secs(60));
    wait_status(state.path(), Duration::from_secs(30), |_, s| {
        s["apps"]["rel"]["state"] == "failed"
    });
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<u16> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("client"))
        .collect();
    assert!(seen.contains(&500), "the clients saw n2's 500s");
    let reason = last_log_line(&repo, SERVERS[0])["reason"]
        .as_str()
        .expect("a reason in the release log")
        .to_owned();
    assert!(reason.starts_with("5xx "), "{reason}");

    // Told once (the first delivery is immediate; a retry would come
    // after 1 s): the event, the app, the commit and the reason.
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.bodies().is_empty() {
        assert!(Instant::now() < deadline, "no notification came");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let bodies = receiver.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:#?}");
    let notice = &bodies[0];
    assert_eq!(notice["event"], "rolled-back", "{notice}");
    assert_eq!(notice["app"], "rel", "{notice}");
    assert_eq!(notice["commit"], bad.as_str(), "{notice}");
    let message = notice["message"].as_str().expect("a message");
    assert!(message.contains(&reason), "{message}\nreason: {reason}");

    // A restarted daemon reads the rollback from the release logs: the
    // pin still names n2, and n2 is not released again (without traffic
    // its guard would pass it). It says why, as a failed release.
    let lines = |server| {
        repo.ssh(server, "wc -l < /var/lib/reconciler/apps/rel/release.log")
            .trim()
            .to_owned()
    };
    let before: Vec<String> = SERVERS.iter().map(|s| lines(s)).collect();
    drop(daemon);
    let _daemon = watch_with(&repo, state.path(), &["--notify-urls", &urls]);
    wait_status(state.path(), Duration::from_secs(60), |_, s| {
        s["apps"]["rel"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("released again only by `reconciler release`"))
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !receiver
        .bodies()
        .iter()
        .any(|b| b["event"] == "release-failed")
    {
        assert!(Instant::now() < deadline, "{:#?}", receiver.bodies());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(5));
    assert_serves(&repo, "n1");
    let after: Vec<String> = SERVERS.iter().map(|s| lines(s)).collect();
    assert_eq!(after, before, "no release since the rollback");
    let bodies = receiver.bodies();
    let told = |event: &str| bodies.iter().filter(|b| b["event"] == event).count();
    assert_eq!(
        (told("rolled-back"), told("release-failed")),
        (1, 1),
        "{bodies:#?}"
    );
    let held = bodies
        .iter()
        .find(|b| b["event"] == "release-failed")
        .expect("told");
    assert!(
        held["message"]
            .as_str()
            .is_some_and(|m| m.contains(&reason)),
        "{held}"
    );
}
