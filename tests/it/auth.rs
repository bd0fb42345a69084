//! The attacks of security round 3 on the daemon's authentication:
//! deploy tokens that could be guessed, and guessing tokens or hook
//! signatures without limit. Against the real binary on a loopback port.

use crate::common;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::daemon::Daemon;

/// Failed checks an address may make in a minute (README, "Security").
const FAILURES_A_MINUTE: usize = 10;

/// `reconciler watch` on a repository that does not exist (fetches fail,
/// nothing is contacted), with `extra` arguments.
fn watch(dir: &Path, extra: &[&str]) -> Daemon {
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
    Daemon::start(&args, None, "/v1/status", &dir.join("watch.log"))
}

/// `reconciler deploy-token APP --deploy-tokens FILE`: the token printed.
fn deploy_token(app: &str, file: &Path) -> String {
    let out = crate::common::reconciler()
        .args(["deploy-token", app, "--deploy-tokens"])
        .arg(file)
        .output()
        .expect("run reconciler deploy-token");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_deploy_token_is_32_random_bytes_and_only_its_hash_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("tokens");
    let tokens: Vec<String> = (0..3).map(|_| deploy_token("shop", &file)).collect();
    for token in &tokens {
        assert!(token.len() >= 64, "{token}: fewer than 32 bytes");
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    }
    assert_ne!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    let stored = std::fs::read_to_string(&file).expect("tokens file");
    assert_eq!(stored.lines().count(), 3, "{stored}");
    assert!(
        tokens.iter().all(|t| !stored.contains(t.as_str())),
        "{stored}"
    );
}

/// One request from the address `from` (any of 127.0.0.0/8) to `addr`;
/// returns the response's head.
fn request_from(from: &str, addr: SocketAddr, request: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{from}:0").parse().expect("addr"))
            .expect("bind");
        socket.connect(addr).await.expect("connect")
    });
    let mut stream = stream.into_std().expect("std stream");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request.as_bytes()).expect("write");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    response
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn status_of(head: &str) -> u16 {
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn guessed_deploy_tokens_are_limited_per_address_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    let token = deploy_token("shop", &tokens);
    let daemon = watch(
        dir.path(),
        &["--deploy-tokens", tokens.to_str().expect("path")],
    );
    let guess = "guessed-0123456789abcdef-not-a-token";
    let deploy = |from: &str, bearer: &str| {
        let body = r#"{"app": "shop", "revision": "main"}"#;
        request_from(
            from,
            daemon.addr,
            &format!(
                "POST /v1/deploy HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    for i in 0..FAILURES_A_MINUTE {
        let head = deploy("127.0.0.1", guess);
        assert_eq!(status_of(&head), 401, "guess {i}: {head}");
    }
    // The next try from that address is refused unchecked, even with the
    // right token, and says when to come back.
    for bearer in [guess, token.as_str()] {
        let head = deploy("127.0.0.1", bearer);
        assert_eq!(status_of(&head), 429, "{head}");
        let retry = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("retry-after:")
                    .map(|v| v.trim().to_owned())
            })
            .and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "{head}");
    }
    // Another address is not held back.
    assert_eq!(status_of(&deploy("127.0.0.2", guess)), 401);

    let metrics = daemon.get("/metrics").expect("metrics").body;
    assert!(
        metrics.contains("reconciler_auth_failures_total{route=\"/v1/deploy\"} 11\n"),
        "{metrics}"
    );
    let log = daemon.log_text();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        !log.contains(guess),
        "the presented token is logged:\n{log}"
    );
    assert!(!log.contains(token.as_str()), "{log}");
}

#[test]
fn forged_git_hook_signatures_are_limited_per_address_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("hook-secret");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
    let daemon = watch(
        dir.path(),
        &["--hook-secret-file", secret_file.to_str().expect("path")],
    );
    let body = r#"{"ref":"refs/heads/main"}"#;
    let hook = |from: &str, signature: &str| {
        request_from(
            from,
            daemon.addr,
            &format!(
                "POST /v1/hooks/git HTTP/1.0\r\nHost: x\r\nX-Hub-Signature-256: {signature}\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let forged = format!("sha256={}", "ab".repeat(32));
    for i in 0..FAILURES_A_MINUTE {
        assert_eq!(status_of(&hook("127.0.0.1", &forged)), 401, "forgery {i}");
    }
    let good = reconciler::serve::signature(secret.as_bytes(), body.as_bytes());
    let head = hook("127.0.0.1", &good);
    assert_eq!(status_of(&head), 429, "{head}");
    assert!(head.to_ascii_lowercase().contains("retry-after:"), "{head}");
    assert_eq!(status_of(&hook("127.0.0.3", &good)), 202);

    let metrics = daemon.get("/metrics").expect("metrics").body;
    assert!(
        metrics.contains("reconciler_auth_failures_total{route=\"/v1/hooks/git\"} 10\n"),
        "{metrics}"
    );
    assert!(!daemon.log_text().contains(&forged));
}
