//! Credentials in repository URLs are never printed: the definitions
//! repository of `watch --repo` and the `repo:` of an app, each an https
//! URL with a user and password, to a port on loopback that refuses
//! (nothing is fetched; every fetch fails and says so). Every output is
//! searched for the password: the status document (HTTP and the state
//! file), `reconciler status` in both formats, `/metrics`, the daemon's
//! log in text and JSON, and the errors of `release`, `validate` and the
//! deploy webhook.

use crate::common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::daemon::Daemon;

const PASSWORD: &str = "s3cr3t-value";
const REPO: &str = "https://user:s3cr3t-value@127.0.0.1:9/defs.git";
/// A URL gix cannot parse: its own error quotes it whole.
const BAD_PORT_REPO: &str = "https://user:s3cr3t-value@127.0.0.1:badport/defs.git";
/// An app's password, percent-encoded in its URL (`p@ss-w0rd-xyz`).
const APP_REPO: &str = "https://deploy:p%40ss-w0rd-xyz@127.0.0.1:9/hello.git";
const APP_SECRETS: [&str; 2] = ["p%40ss-w0rd-xyz", "ss-w0rd-xyz"];

fn reconciler(args: &[&str]) -> Output {
    crate::common::reconciler()
        .args(args)
        .args(["--color", "never"])
        .output()
        .expect("run reconciler")
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Panics when `secret` is in `output`, naming the output.
fn assert_hidden(what: &str, output: &str, secret: &str) {
    assert!(
        !output.contains(secret),
        "{what} shows the password `{secret}`:\n{output}"
    );
}

#[test]
fn the_definitions_repository_password_is_never_printed() {
    for (repo, format) in [(REPO, "text"), (REPO, "json"), (BAD_PORT_REPO, "text")] {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let state_arg = state.to_str().expect("path");
        let mut daemon = Daemon::start(
            &[
                "watch",
                "--repo",
                repo,
                "--state-dir",
                state_arg,
                "--interval",
                "1s",
                "--log-format",
                format,
            ],
            None,
            "/v1/status",
            &dir.path().join("watch.log"),
        );
        // Two fetches failed (the clone, then its retry).
        let started = Instant::now();
        let status = loop {
            let status = daemon.get("/v1/status").expect("status").body;
            if status.contains("fetch_error")
                && daemon.log_text().matches("cannot fetch").count() >= 2
            {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no fetch failed: {status}\n{}",
                daemon.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let document: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
        assert_eq!(document["repo"], repo.replace("user:s3cr3t-value", "***"));
        let fetch_error = document["fetch_error"].as_str().expect("fetch_error");
        assert!(fetch_error.contains("://***@127.0.0.1:"), "{fetch_error}");

        let url = format!("http://{}", daemon.addr);
        let mut outputs = vec![
            ("GET /v1/status".to_owned(), status),
            (
                "GET /metrics".to_owned(),
                daemon.get("/metrics").expect("metrics").body,
            ),
        ];
        for from in [["--url", url.as_str()], ["--state-dir", state_arg]] {
            for shown in ["text", "json"] {
                let out = reconciler(&["status", from[0], from[1], "--format", shown]);
                // Fetching fails: a problem, so exit 1.
                assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
                outputs.push((
                    format!("status {} --format {shown}", from[0]),
                    text_of(&out),
                ));
            }
        }
        assert!(daemon.terminate(Duration::from_secs(20)).success());
        let log = daemon.log_text();
        assert!(log.contains("://***@127.0.0.1:"), "{log}");
        outputs.push((format!("the log in {format}"), log));
        let saved = std::fs::read_to_string(state.join("status.json")).expect("status.json");
        outputs.push(("status.json".to_owned(), saved));
        for (what, output) in &outputs {
            assert_hidden(what, output, PASSWORD);
        }
    }
}

/// The quickstart's definitions with `hello`'s `repo:` set to `repo`.
fn definitions(dir: &Path, repo: &str) {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart");
    for sub in ["clusters", "apps"] {
        std::fs::create_dir_all(dir.join(sub)).expect("mkdir");
    }
    std::fs::copy(
        examples.join("clusters/local.yaml"),
        dir.join("clusters/local.yaml"),
    )
    .expect("cluster");
    let app = std::fs::read_to_string(examples.join("apps/hello.yaml")).expect("app");
    let app = app.replace(
        "repo: https://git.example.com/org/hello.git",
        &format!("repo: \"{repo}\""),
    );
    assert!(app.contains(repo));
    std::fs::write(dir.join("apps/hello.yaml"), app).expect("write");
}

#[test]
fn an_app_repository_password_is_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let defs = dir.path().join("defs");
    definitions(&defs, APP_REPO);
    let defs_arg = defs.to_str().expect("path");
    let cache = dir.path().join("cache");
    let cache_arg = cache.to_str().expect("path");
    let mut outputs = Vec::new();

    // A release fails at the fetch, before any server is contacted.
    let out = reconciler(&[
        "release",
        "hello",
        "-d",
        defs_arg,
        "--cache-dir",
        cache_arg,
        "-vv",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(text_of(&out).contains("127.0.0.1:9"), "{}", text_of(&out));
    outputs.push(("release".to_owned(), text_of(&out)));

    // The deploy webhook answers with the same error.
    let tokens = dir.path().join("tokens");
    let out = reconciler(&[
        "deploy-token",
        "hello",
        "--deploy-tokens",
        tokens.to_str().expect("path"),
    ]);
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut daemon = Daemon::start(
        &[
            "serve",
            "--deploy-tokens",
            tokens.to_str().expect("path"),
            "-d",
            defs_arg,
            "--cache-dir",
            cache_arg,
        ],
        None,
        "/v1/deploys/none",
        &dir.path().join("serve.log"),
    );
    let answer = common::http(
        daemon.addr,
        "POST",
        "/v1/deploy",
        &[("Authorization", &format!("Bearer {token}"))],
        br#"{"app": "hello", "revision": "main"}"#,
    )
    .expect("deploy");
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert!(answer.body.contains("127.0.0.1:9"), "{}", answer.body);
    outputs.push(("POST /v1/deploy".to_owned(), answer.body));
    assert!(daemon.terminate(Duration::from_secs(20)).code().is_some());
    outputs.push(("serve's log".to_owned(), daemon.log_text()));

    // A URL that validation refuses is named without its password.
    definitions(&defs, &format!("-{APP_REPO}"));
    let out = reconciler(&["validate", "-d", defs_arg]);
    assert_eq!(out.status.code(), Some(1), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("is not a git URL"),
        "{}",
        text_of(&out)
    );
    outputs.push(("validate".to_owned(), text_of(&out)));

    for (what, output) in &outputs {
        for secret in APP_SECRETS {
            assert_hidden(what, output, secret);
        }
    }
}
