//! The daemon's HTTP routes on a loopback port: the git hook's signature
//! check and body limit, the status document, the metrics.

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reconciler::board::Board;
use reconciler::serve::{self, AppState};
use tokio::sync::Notify;

const SECRET: &[u8] = b"a-long-enough-shared-secret";

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    fetch_now: Arc<Notify>,
    board: Arc<Board>,
    _runtime: tokio::runtime::Runtime,
}

fn start() -> Server {
    start_with(Arc::new(Board::new("/srv/defs.git", "main", None)))
}

/// The daemon's routes (the git hook signed with `SECRET`) answering
/// from `board` on a loopback port, until the server is dropped.
pub(crate) fn start_with(board: Arc<Board>) -> Server {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let fetch_now = Arc::new(Notify::new());
    let state = AppState {
        board: Arc::clone(&board),
        fetch_now: Arc::clone(&fetch_now),
        hook_secret: Some(Arc::new(SECRET.to_vec())),
        guard: Arc::new(serve::AuthGuard::new(board.auth_failures())),
    };
    let listener = runtime
        .block_on(serve::bind("127.0.0.1:0".parse().expect("addr")))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(serve::serve(
        listener,
        serve::router(state),
        serve::Limits::default(),
        std::future::pending(),
    ));
    Server {
        addr,
        fetch_now,
        board,
        _runtime: runtime,
    }
}

/// Sends a request; returns (status, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let response = common::http(addr, method, path, headers, body).expect("HTTP");
    (response.status, response.body)
}

/// Whether the loop was asked to fetch (within a second).
fn fetch_asked(server: &Server) -> bool {
    server._runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(1), server.fetch_now.notified())
            .await
            .is_ok()
    })
}

#[test]
fn a_signed_git_hook_asks_for_a_fetch() {
    let server = start();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let signature = serve::signature(SECRET, body);
    let (status, text) = request(
        server.addr,
        "POST",
        "/v1/hooks/git",
        &[
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        body,
    );
    assert_eq!(status, 202, "{text}");
    assert!(fetch_asked(&server));
}

#[test]
fn a_wrong_or_missing_signature_is_refused() {
    let server = start();
    let body = br#"{"ref":"refs/heads/main"}"#;
    let wrong = serve::signature(b"another-secret-entirely", body);
    for headers in [vec![("X-Hub-Signature-256", wrong.as_str())], vec![]] {
        let (status, text) = request(server.addr, "POST", "/v1/hooks/git", &headers, body);
        assert_eq!(status, 401, "{text}");
    }
    // A signature of another body is no signature of this one.
    let other = serve::signature(SECRET, b"{}");
    let (status, _) = request(
        server.addr,
        "POST",
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", &other)],
        body,
    );
    assert_eq!(status, 401);
    assert!(!fetch_asked(&server));
}

#[test]
fn an_oversized_body_is_refused() {
    let server = start();
    let body = vec![b'x'; serve::MAX_BODY + 1];
    let signature = serve::signature(SECRET, &body);
    let (status, _) = request(
        server.addr,
        "POST",
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", &signature)],
        &body,
    );
    assert_eq!(status, 413);
}

#[test]
fn status_and_metrics_answer() {
    let server = start();
    server.board.count("web-1", "applied", 0.42, false);
    server.board.count("web-2", "failed", 1.5, true);
    server.board.gauges("web-1", 0, 1, Some(1_795_300_000));
    server.board.count_rejected();
    let (status, text) = request(server.addr, "GET", "/v1/status", &[], b"");
    assert_eq!(status, 200);
    let document: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(document["branch"], "main");

    let (status, text) = request(server.addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    // Prometheus text: comments, and `name{labels} value` samples.
    let sample = regex_lite_sample();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        if line.starts_with('#') {
            continue;
        }
        assert!(sample(line), "not a sample line: {line:?}");
        samples += 1;
    }
    assert!(samples >= 6, "{text}");
    assert!(
        text.contains("reconciler_reconciles_total{server=\"web-1\",result=\"applied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_rejected_commits_total 1"),
        "{text}"
    );
    assert!(
        text.contains("reconciler_last_success_timestamp_seconds{server=\"web-1\"} 1795300000"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

/// `name`, optional `{label="value",...}`, a space, a number.
fn regex_lite_sample() -> impl Fn(&str) -> bool {
    |line: &str| {
        let Some((series, value)) = line.rsplit_once(' ') else {
            return false;
        };
        let number = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        let labels = &series[name_end..];
        let labels_ok = labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}'));
        number && name_ok && labels_ok
    }
}
