//! The listener: signed git hooks, and connections that hold it.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_signed_git_hook_converges_at_once_without_waiting_for_the_interval() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let secret_file = state.path().join("hook-secret");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
    let daemon = Daemon::start(
        &defs,
        &state.path().join("watch"),
        &[
            "--interval",
            "10m",
            "--hook-secret-file",
            &secret_file.to_string_lossy(),
        ],
    );
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));

    repo.app("alpha", &servers, 5, "");
    let second = defs.commit("alpha: 5 workers");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{second}"}}"#);
    let refused = common::http(
        daemon.addr,
        "POST",
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", "sha256=00")],
        body.as_bytes(),
    )
    .expect("hook");
    assert_eq!(refused.status, 401);
    let signature = reconciler::serve::signature(secret.as_bytes(), body.as_bytes());
    let started = Instant::now();
    let accepted = common::http(
        daemon.addr,
        "POST",
        "/v1/hooks/git",
        &[
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("hook");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    daemon.wait_converged(&second, &servers, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(max_children(repo, "fleet-2"), "5");
}

/// Keeps `count` connections to `addr` open, each sending half a request
/// (or nothing), and opens a new one whenever the daemon closes one, until
/// `stop` is set or `limit` passes (and at most 20,000 in all). Returns
/// how many it opened.
fn hold_connections(
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let started = Instant::now();
        // Every other one sends half a request.
        let open = |i: usize| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
                    .ok()?;
            }
            stream.set_nonblocking(true).ok()?;
            Some(stream)
        };
        let mut streams: Vec<Option<TcpStream>> = (0..count).map(open).collect();
        let mut opened = streams.iter().flatten().count();
        let mut buffer = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) && started.elapsed() < limit && opened < 20_000 {
            for (i, slot) in streams.iter_mut().enumerate() {
                let closed = match slot {
                    None => true,
                    Some(stream) => match stream.read(&mut buffer) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *slot = open(i);
                    opened += usize::from(slot.is_some());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        opened
    })
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn idle_connections_to_the_listener_do_not_keep_a_commit_from_converging() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    // 300 connections would take every open file of a daemon limited to
    // 256, and its SSH connections and fetches with them.
    let daemon = Daemon::start_with_open_files(&defs, state.path(), &[], Some(256));
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let attack = hold_connections(
        daemon.addr,
        300,
        Arc::clone(&stop),
        Duration::from_secs(150),
    );
    // Past the listener's 5 s header timeout: the first ones are closed
    // and opened again, and it is full all along.
    std::thread::sleep(Duration::from_secs(7));
    repo.app("alpha", &servers, 5, "");
    let second = defs.commit("alpha: 5 workers");
    let started = Instant::now();
    daemon.wait_converged(&second, &servers, Duration::from_secs(120));
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let opened = attack.join().expect("the attacking thread");
    eprintln!("converged in {took:?} under 300 held connections ({opened} opened in all)");
    for server in servers {
        assert_eq!(max_children(repo, server), "5", "{server}");
    }
    // The daemon closed idle connections all along (300 were opened first).
    assert!(opened >= 500, "{opened}");
}
