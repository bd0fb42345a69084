//! Ordering and error paths of a release, against fake servers; and the
//! release steps run by the local bash where they need no server. What the
//! steps do on a server is tested on the fleet (tests/fleet_release.rs).

use std::path::Path;

use super::*;
use crate::app::{APP_SH, Trigger};
use crate::definitions::Definitions;
use crate::remote::protocol::encode_text;
use crate::transport::Output;
use crate::transport::fake::{FakeConnector, FakeTransport, Reply};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn sha(text: &str) -> Sha {
    Sha::parse(text).expect("a sha")
}

fn shop() -> AppTarget {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let definitions = Definitions::load(&dir).expect("the fleet example is valid");
    AppTarget::find(&definitions, "shop").expect("shop")
}

/// The archive of `SHA`: seven bytes in a file.
fn archive() -> Archive {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), b"archive").expect("write");
    Archive {
        sha: sha(SHA),
        path: file.into_temp_path(),
        size: 7,
        sha256: crate::units::sha256(b"archive"),
        files: 1,
        unpacked: 7,
        export_ignored: 0,
    }
}

fn line(kind: &str, name: &str, text: &str) -> Vec<u8> {
    encode_text(kind, &[name, text])
}

fn record(kind: &str, fields: &[&str]) -> Vec<u8> {
    encode_text(kind, fields)
}

fn out(stdout: Vec<u8>) -> Output {
    Output {
        status: Some(0),
        stdout,
        stderr: Vec::new(),
    }
}

/// What `app_lock` says of a server where `live` is live and `complete`
/// are complete, then `held`.
fn locked(live: &str, complete: &[&str], log: &str) -> Output {
    let mut state = record("live", &[&format!("releases/{live}")]);
    for sha in complete {
        state.extend(record("complete", &[sha]));
    }
    if !log.is_empty() {
        state.extend(record("log", &[log]));
    }
    state.extend(line("done", "state", ""));
    state.extend(record("held", &[]));
    out(state)
}

/// A server where `OLD` is live and every step succeeds.
fn server(name: &str) -> FakeTransport {
    FakeTransport::new(name)
        .on_every("'app_lock'", locked(OLD, &[OLD], ""))
        .on_every("'release_health'", out(line("done", "health", "200")))
        .on_every("'release_", out(line("done", "step", "")))
}

fn origin() -> Origin {
    Origin {
        who: "ci@build (pid 1)".into(),
        trigger: Trigger::Cli,
    }
}

/// The steps a server was sent, by their shell function.
fn calls(connector: &FakeConnector, server: &str) -> Vec<String> {
    connector
        .transport(server)
        .expect("server")
        .sent()
        .iter()
        .map(|script| {
            let last = script.trim_end().lines().last().unwrap_or_default();
            last.split(' ')
                .next()
                .unwrap_or_default()
                .trim_matches('\'')
                .to_owned()
        })
        .collect()
}

/// The last line of each script a server was sent that calls `function`.
fn call_lines(connector: &FakeConnector, server: &str, function: &str) -> Vec<String> {
    connector
        .transport(server)
        .expect("server")
        .sent()
        .into_iter()
        .filter_map(|s| s.trim_end().lines().last().map(str::to_owned))
        .filter(|l| l.starts_with(&format!("'{function}'")))
        .collect()
}

#[tokio::test]
async fn every_server_is_prepared_before_any_switches() {
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("jobs-1"));
    let released = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect("released");
    assert_eq!(released.sha, sha(SHA));
    for name in ["web-1", "jobs-1"] {
        let calls = calls(&connector, name);
        let first_switch = calls
            .iter()
            .position(|c| c == "release_switch")
            .expect("switched");
        assert!(
            calls[..first_switch].contains(&"release_complete".to_owned()),
            "{calls:?}"
        );
        assert_eq!(calls[0], "app_lock");
        assert_eq!(calls.last().map(String::as_str), Some("release_finish"));
    }
    // shop builds (composer and its release_commands) on both servers and
    // deploys only where it has deploy commands.
    assert!(calls(&connector, "jobs-1").contains(&"release_commands".to_owned()));
    // The health check runs on the web server only.
    assert!(calls(&connector, "web-1").contains(&"release_health".to_owned()));
    assert!(!calls(&connector, "jobs-1").contains(&"release_health".to_owned()));
    // The archive went to each server once.
    assert_eq!(connector.transport("web-1").unwrap().inputs(), [7]);
    // The lock says which release it is for.
    let lock = &connector.transport("web-1").unwrap().sent()[0];
    assert!(lock.contains("\nREASON='cli of 0123456789ab'\n"), "{lock}");
}

#[tokio::test]
async fn a_failed_build_on_one_server_switches_nothing_anywhere() {
    let failing = FakeTransport::new("jobs-1")
        .on(
            "'release_commands' 'deploy'",
            Reply::stdout(line(
                "failed",
                "deploy",
                "$ php artisan migrate --force\nSQLSTATE[HY000]",
            )),
        )
        .on_every("'app_lock'", locked(OLD, &[], ""))
        .on_every("'release_", out(line("done", "step", "")));
    let connector = FakeConnector::default().with(server("web-1")).with(failing);
    let error = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect_err("failed");
    let text = error.to_string();
    assert!(text.contains("deploy failed on jobs-1"), "{text}");
    assert!(text.contains("SQLSTATE[HY000]"), "{text}");
    for name in ["web-1", "jobs-1"] {
        let calls = calls(&connector, name);
        assert!(
            !calls.contains(&"release_switch".to_owned()),
            "{name}: {calls:?}"
        );
        assert!(
            calls.contains(&"release_discard".to_owned()),
            "{name}: {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_health_check_switches_every_server_back() {
    let unhealthy = FakeTransport::new("web-1")
        .on_every("'app_lock'", locked(OLD, &[OLD], ""))
        .on_every(
            "'release_health'",
            out(line(
                "failed",
                "health",
                "GET /up for shop.example.com answered 500",
            )),
        )
        .on_every("'release_", out(line("done", "step", "")));
    let connector = FakeConnector::default()
        .with(unhealthy)
        .with(server("jobs-1"));
    let error = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect_err("rolled back");
    assert!(matches!(error, ReleaseError::RolledBack { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("every server went back to fedcba987654"),
        "{text}"
    );
    for name in ["web-1", "jobs-1"] {
        let switches = call_lines(&connector, name, "release_switch");
        assert_eq!(switches.len(), 2, "{name}: {switches:?}");
        // Forward, with the record of what it would go back to; then back.
        assert!(
            switches[0].starts_with(&format!("'release_switch' '{SHA}' '{{")),
            "{name}: {switches:?}"
        );
        assert!(
            switches[0].contains(&format!("\"previous\":\"{OLD}\"")),
            "{name}: {switches:?}"
        );
        assert_eq!(switches[1], format!("'release_switch' '{OLD}'"), "{name}");
    }
}

#[tokio::test]
async fn a_server_that_cannot_switch_back_is_named_never_called_back() {
    let unhealthy = FakeTransport::new("web-1")
        .on_every("'app_lock'", locked(OLD, &[OLD], ""))
        .on_every(
            "'release_health'",
            out(line("failed", "health", "GET /up answered 500")),
        )
        .on_every("'release_", out(line("done", "step", "")));
    // jobs-1 switches to the release, then cannot go back.
    let stuck = server("jobs-1").on(
        &format!("'release_switch' '{OLD}'"),
        Reply::stdout(line(
            "failed",
            "switch",
            "mv: cannot move: No space left on device",
        )),
    );
    let connector = FakeConnector::default().with(unhealthy).with(stuck);
    let error = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect_err("rolled back");
    let text = error.to_string();
    assert!(!text.contains("every server went back"), "{text}");
    assert!(
        text.contains("except jobs-1, which may still serve it"),
        "{text}"
    );
    assert!(text.contains("No space left on device"), "{text}");
}

#[tokio::test]
async fn a_busy_app_names_its_holder_and_nothing_runs() {
    let busy = FakeTransport::new("jobs-1").on_every(
        "'app_lock'",
        out(line(
            "busy",
            "shop",
            "ana@laptop (pid 7) (cli of 0123456789ab since 2026-11-22T10:00:00Z)",
        )),
    );
    let connector = FakeConnector::default().with(server("web-1")).with(busy);
    let error = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect_err("busy");
    assert!(error.to_string().contains("ana@laptop (pid 7)"), "{error}");
    assert_eq!(calls(&connector, "web-1"), ["app_lock"]);
    assert_eq!(calls(&connector, "jobs-1"), ["app_lock"]);
}

#[tokio::test]
async fn a_release_complete_everywhere_is_not_uploaded_again() {
    let complete = |name: &str| {
        FakeTransport::new(name)
            .on_every("'app_lock'", locked(OLD, &[OLD, SHA], ""))
            .on_every("'release_health'", out(line("done", "health", "200")))
            .on_every("'release_", out(line("done", "step", "")))
    };
    let connector = FakeConnector::default()
        .with(complete("web-1"))
        .with(complete("jobs-1"));
    let released = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect("released");
    assert_eq!(released.reused.len(), 2);
    assert!(connector.transport("web-1").unwrap().inputs().is_empty());
    assert!(!calls(&connector, "jobs-1").contains(&"release_commands".to_owned()));
}

#[tokio::test]
async fn the_finish_keeps_what_the_plan_keeps_and_counts_only_checked_prunes() {
    let pruning = |name: &str| {
        let mut finished = line("pruned", &"a".repeat(40), "");
        finished.extend(line(
            "prune-failed",
            &"b".repeat(40),
            "rm: cannot remove: Permission denied",
        ));
        finished.extend(line("done", "finish", ""));
        server(name).on("'release_finish'", Reply::stdout(finished))
    };
    let connector = FakeConnector::default()
        .with(pruning("web-1"))
        .with(server("jobs-1"));
    let released = release(
        &shop(),
        &archive(),
        &origin(),
        &connector,
        &(),
        &Stop::new(),
    )
    .await
    .expect("released");
    assert_eq!(released.pruned, 1, "a failed prune is not counted");
    assert_eq!(released.prune_failed.len(), 1);
    assert!(released.prune_failed[0].2.contains("Permission denied"));
    // The release log line is serde's, and the new release and the one
    // before are kept.
    let finish = &call_lines(&connector, "web-1", "release_finish")[0];
    assert!(
        finish.contains(&format!(r#"'{{"sha":"{SHA}","#)),
        "{finish}"
    );
    assert!(
        finish.contains(&format!(r#""previous":"{OLD}""#)),
        "{finish}"
    );
    assert!(finish.ends_with(&format!("'{SHA}' '{OLD}'")), "{finish}");
}

#[tokio::test]
async fn rollback_goes_to_the_newest_other_release_that_was_live() {
    let log = [
        format!(r#"{{"sha":"{OLD}","time":"t1","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":""}}"#),
        format!(r#"{{"sha":"{SHA}","time":"t2","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":"{OLD}"}}"#),
    ]
    .join("\n");
    let server = |name: &str| {
        FakeTransport::new(name)
            .on_every("'app_lock'", locked(SHA, &[SHA, OLD], &log))
            .on_every("'release_health'", out(line("done", "health", "200")))
            .on_every("'release_", out(line("done", "step", "")))
    };
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("jobs-1"));
    let done = rollback(&shop(), None, &origin(), &connector, &())
        .await
        .expect("rolled back");
    assert_eq!(done.sha, sha(OLD));
    let error = rollback(&shop(), Some("abc"), &origin(), &connector, &())
        .await
        .expect_err("unknown");
    assert!(error.to_string().contains("no release `abc`"), "{error}");
}

#[tokio::test]
async fn with_ab_sides_the_live_release_is_the_sides_and_rollback_goes_to_the_other() {
    let log = [
        format!(r#"{{"sha":"{OLD}","time":"t1","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":""}}"#),
        format!(r#"{{"sha":"{SHA}","time":"t2","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":"{OLD}"}}"#),
    ]
    .join("\n");
    let mut state = record("live", &["b"]);
    state.extend(record("side", &["a", OLD, "1795000000.25"]));
    state.extend(record("side", &["b", SHA, "1795000100.5"]));
    state.extend(record("log", &[&log]));
    state.extend(line("done", "state", ""));
    state.extend(record("held", &[]));
    let server = |name: &str| {
        FakeTransport::new(name)
            .on_every("'app_lock'", out(state.clone()))
            .on_every("'release_list'", out(state.clone()))
            .on_every("'release_health'", out(line("done", "health", "200")))
            .on_every("'release_", out(line("done", "step", "")))
    };
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("jobs-1"));
    let listed = list(&shop(), &connector).await;
    let (_, first) = &listed[0];
    let first = first.as_ref().expect("listed");
    assert_eq!(first.live, Some(sha(SHA)));
    assert_eq!(first.stray_current, None);
    assert!(first.complete.contains(&sha(OLD)) && first.complete.contains(&sha(SHA)));
    assert_eq!(
        first.present,
        [(sha(OLD), 1795000000), (sha(SHA), 1795000100)]
    );
    let done = rollback(&shop(), None, &origin(), &connector, &())
        .await
        .expect("rolled back");
    assert_eq!(done.sha, sha(OLD));
    let sent = connector.transport("web-1").unwrap().sent();
    assert!(
        sent.iter()
            .any(|script| script.contains(&format!("'release_switch' '{OLD}'"))),
        "{sent:#?}"
    );
}

mod script;
