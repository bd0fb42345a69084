//! The attack of security round 3 on the daemon's listener, against the
//! real binary on a loopback port (no servers): connections that send half
//! a request or nothing, idle ones, and more of them than the cap.

use crate::common;

use std::io::Read as _;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, closed_by_server, stall};

/// The listener's documented limits (README, "Running the daemon").
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CONNECTIONS: usize = 256;

/// Half a request: a request line and one header, never the blank line.
const HALF: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// `reconciler watch` on a repository that does not exist (fetches fail,
/// nothing is contacted), with `extra` arguments.
fn watch(dir: &Path, extra: &[&str], nofile: Option<u64>) -> Daemon {
    let missing = dir.join("missing.git");
    let state = dir.join("state");
    let mut args = vec![
        "watch",
        "--repo",
        missing.to_str().expect("path"),
        "--state-dir",
        state.to_str().expect("path"),
        "--interval",
        "1h",
    ];
    args.extend_from_slice(extra);
    Daemon::start(&args, nofile, "/v1/status", &dir.join("watch.log"))
}

#[test]
fn half_sent_requests_do_not_exhaust_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A soft limit of 128 open files: 200 connections would take them all.
    let daemon = watch(dir.path(), &[], Some(128));
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..200)
        .map(|i| stall(daemon.addr, if i % 2 == 0 { b"" } else { HALF }))
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let asked = Instant::now();
    let status = daemon.get("/v1/status");
    let took = asked.elapsed();
    eprintln!("status with 200 stalled connections open: {took:?}");
    assert!(
        status.as_ref().is_ok_and(|r| r.status == 200),
        "{status:?}\n{}",
        daemon.log_text()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");

    // The daemon closes every one of them once its header timeout passes.
    let deadline = opened + HEADER_TIMEOUT + Duration::from_secs(3);
    let mut last = opened;
    for (i, stream) in stalled.iter_mut().enumerate() {
        let closed = closed_by_server(stream, deadline);
        assert!(closed.is_some(), "connection {i} is still open");
        last = last.max(closed.unwrap_or(last));
    }
    eprintln!(
        "the last stalled connection closed after {:?}",
        last - opened
    );
    assert!(last - opened >= HEADER_TIMEOUT - Duration::from_millis(500));

    // It raised its soft limit of open files to the hard one at start.
    let (soft, hard) = daemon.nofile_limits();
    assert_eq!(soft, hard, "{}", daemon.log_text());
}

#[test]
fn connections_past_the_cap_wait_and_the_daemon_keeps_its_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = watch(dir.path(), &[], None);
    let before = daemon.open_files();
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS + 44)
        .map(|_| stall(daemon.addr, b""))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let during = daemon.open_files();
    eprintln!("open files: {before} before, {during} with 300 connections waiting");
    assert!(
        during <= before + MAX_CONNECTIONS + 4,
        "{before} -> {during}"
    );

    // A request past the cap waits in the kernel's queue and is answered
    // once the idle connections before it are closed.
    let asked = Instant::now();
    let status = daemon.get("/v1/status");
    let took = asked.elapsed();
    eprintln!("status behind 300 idle connections: {took:?}");
    assert!(status.is_ok_and(|r| r.status == 200));
    assert!(took < HEADER_TIMEOUT + Duration::from_secs(3), "{took:?}");

    // Those past the cap are served, then closed, in their turn.
    let deadline = opened + 2 * HEADER_TIMEOUT + Duration::from_secs(4);
    for (i, stream) in stalled.iter_mut().enumerate() {
        assert!(
            closed_by_server(stream, deadline).is_some(),
            "connection {i} is still open"
        );
    }
}

#[test]
fn an_idle_keep_alive_connection_and_a_stalled_body_are_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("hook-secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").expect("secret");
    let daemon = watch(
        dir.path(),
        &["--hook-secret-file", secret.to_str().expect("path")],
        None,
    );

    // One whole request on a kept-alive connection, then nothing.
    let mut idle = stall(
        daemon.addr,
        b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    );
    let answered = Instant::now();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).expect("an answer");
    assert_eq!(&first, b"HTTP/1.1 200");

    // A body announced as 100 bytes of which 10 come.
    let mut body = stall(
        daemon.addr,
        b"POST /v1/hooks/git HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n0123456789",
    );
    let sent = Instant::now();

    let closed = closed_by_server(
        &mut idle,
        answered + HEADER_TIMEOUT + Duration::from_secs(3),
    );
    assert!(closed.is_some(), "the idle keep-alive connection is open");
    eprintln!(
        "idle keep-alive closed after {:?}",
        closed.map(|c| c - answered)
    );

    let mut answer = Vec::new();
    body.set_read_timeout(Some(BODY_TIMEOUT + Duration::from_secs(3)))
        .expect("timeout");
    let read = body.read_to_end(&mut answer);
    let took = sent.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("stalled body: {took:?}, {:?}", answer.lines().next());
    assert!(read.is_ok(), "{read:?} after {took:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < BODY_TIMEOUT + Duration::from_secs(2), "{took:?}");
}
