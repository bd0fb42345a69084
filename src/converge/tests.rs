//! The seam with fake transports: ordering, matching by name and error
//! paths, without servers.

use crate::Hint as _;
use std::path::Path;
use std::time::Duration;

use super::*;
use crate::definitions::DefinitionFiles;
use crate::transport::fake::{FakeConnector, FakeTransport, Reply};

fn loaded() -> Loaded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    load(&DefinitionFiles::read_dir(&dir).expect("reads")).expect("the fleet example is valid")
}

fn options() -> ReconcileOptions {
    ReconcileOptions {
        now: DateTime::UNIX_EPOCH,
        reload_now: false,
        holder: "test".into(),
        revision: None,
        lock_wait: Duration::ZERO,
    }
}

fn targets(loaded: &Loaded) -> Vec<Target> {
    select(&loaded.definitions, &loaded.desired, &Selection::default()).expect("selects")
}

fn target(loaded: &Loaded, server: &str) -> Target {
    targets(loaded)
        .into_iter()
        .find(|t| t.server().as_str() == server)
        .expect("a target")
}

/// A bare server answering an apply with `apply`.
fn server(name: &str, apply: Reply) -> FakeTransport {
    FakeTransport::new(name)
        .on("'gather_main'", Reply::stdout(crate::facts::bare_server()))
        .on("'apply_main'", apply)
}

fn report(kind: &str, output: &str) -> Reply {
    Reply::stdout(crate::remote::protocol::encode_text(kind, &["-", output]))
}

#[tokio::test]
async fn a_host_that_cannot_be_reached_fails_alone_and_says_what_was_dialled() {
    let loaded = loaded();
    // jobs-1 has no fake: it is refused like a stopped server.
    let connector = FakeConnector::default().with(server("web-1", report("done", "")));
    let surveyed = survey(targets(&loaded), &connector, &options(), 4, &|_, _| {}).await;
    let plan = plan_of(&surveyed);
    let servers: Vec<&str> = plan.hosts.iter().map(|h| h.server.as_str()).collect();
    assert_eq!(servers, ["web-1", "jobs-1"], "in the definitions' order");
    assert_eq!(plan.hosts[0].error, None);
    let error = plan.hosts[1].error.as_ref().expect("jobs-1 failed");
    assert_eq!(
        error.message,
        "connection to `root@203.0.113.11:22` refused"
    );
    assert!(
        !error.message.contains("jobs-1"),
        "the caller names the server"
    );
    assert!(error.hint.is_some());

    let reports = apply_all(&surveyed, &options(), 4, &|_| {}).await;
    let outcomes: Vec<(&str, bool)> = reports
        .iter()
        .map(|r| (r.server.as_str(), r.succeeded()))
        .collect();
    assert_eq!(outcomes, [("web-1", true), ("jobs-1", false)]);
}

#[tokio::test]
async fn each_host_is_applied_with_its_own_plan() {
    let loaded = loaded();
    let connector = FakeConnector::default()
        .with(server("web-1", report("done", "")))
        .with(server("jobs-1", report("done", "")));
    // Surveyed in reverse: results must still pair by name.
    let mut reversed = targets(&loaded);
    reversed.reverse();
    let surveyed = survey(reversed, &connector, &options(), 1, &|_, _| {}).await;
    apply_all(&surveyed, &options(), 2, &|_| {}).await;
    let applied = |server: &str| {
        let sent = connector.transport(server).expect("fake").sent();
        sent.into_iter()
            .find(|s| s.contains("apply_main"))
            .expect("an apply script")
    };
    assert!(applied("web-1").contains("/etc/nginx/sites-enabled/shop.conf"));
    assert!(!applied("jobs-1").contains("plan_file '/etc/nginx/"));
    assert!(applied("jobs-1").contains("/etc/supervisor/conf.d/shop.conf"));
}

#[tokio::test]
async fn a_held_lock_asks_to_be_requeued_and_names_the_holder() {
    let loaded = loaded();
    let connector = FakeConnector::default().with(server(
        "web-1",
        report("locked", "ops@laptop (pid 42) since 2026-11-22T03:00:00Z"),
    ));
    let target = target(&loaded, "web-1");
    let outcome = reconcile_host(&target, &connector, &options(), Act::Always, None).await;
    assert!(!outcome.succeeded());
    assert_eq!(outcome.requeue_after, Some(LOCKED_RETRY));
    match outcome.report.map(|r| r.outcome) {
        Some(ApplyOutcome::Locked { holder }) => {
            assert_eq!(holder, "ops@laptop (pid 42) since 2026-11-22T03:00:00Z");
        }
        other => panic!("{other:?}"),
    }
    // New pools start at once: nothing waits for a window.
    assert!(outcome.pending.is_empty(), "{:?}", outcome.pending);
}

#[tokio::test]
async fn a_failed_apply_keeps_the_scripts_error_output() {
    let loaded = loaded();
    let connector = FakeConnector::default().with(server(
        "web-1",
        Reply::Output(crate::transport::Output {
            status: Some(2),
            stdout: Vec::new(),
            stderr: b"bash: line 1: syntax error".to_vec(),
        }),
    ));
    let target = target(&loaded, "web-1");
    let outcome = reconcile_host(&target, &connector, &options(), Act::Always, None).await;
    match outcome.report.map(|r| r.outcome) {
        Some(ApplyOutcome::Failed { message, output }) => {
            assert_eq!(
                message,
                "the apply script stopped without a report (exit status 2)"
            );
            assert_eq!(output, "bash: line 1: syntax error");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_mistyped_server_or_app_gets_a_suggestion() {
    let loaded = loaded();
    let selection = Selection {
        servers: vec![ServerName::new("web-2")],
        apps: Vec::new(),
    };
    let error = select(&loaded.definitions, &loaded.desired, &selection).expect_err("unknown");
    assert_eq!(error.to_string(), "no server `web-2` in the definitions");
    assert_eq!(error.hint(), Some("did you mean `web-1`?"));
    let selection = Selection {
        servers: Vec::new(),
        apps: vec![crate::definitions::AppName::new("shpo")],
    };
    let error = select(&loaded.definitions, &loaded.desired, &selection).expect_err("unknown");
    assert_eq!(error.hint(), Some("did you mean `shop`?"));
}

/// Two web servers in one cluster, one app on both.
fn two_web_servers() -> Loaded {
    let mut files = DefinitionFiles::new("repo");
    files.insert(
        "clusters/c.yaml",
        b"name: c\nphp: [\"8.2\"]\nservers:\n  - { name: web-1, address: 192.0.2.1, web_server: true }\n  - { name: web-2, address: 192.0.2.2, web_server: true }\n".to_vec(),
    );
    files.insert(
        "apps/shop.yaml",
        b"name: shop\ncluster: c\nrepo: /srv/shop.git\nphp: \"8.2\"\ndomains: [shop.test]\nservers: [{ name: web-1, web: {} }, { name: web-2, web: {} }]\n".to_vec(),
    );
    load(&files).expect("valid")
}

#[tokio::test]
async fn a_host_that_does_not_answer_after_reloading_stops_the_roll() {
    let loaded = two_web_servers();
    let unanswered = {
        use crate::remote::protocol::encode_text;
        Reply::stdout(
            [
                encode_text("reloaded", &["php8.2-fpm", ""]),
                encode_text(
                    "unanswered",
                    &[
                        "shop.test",
                        "GET / answered 502 for 15 s after php-fpm reloaded",
                    ],
                ),
                encode_text("done", &["-", ""]),
            ]
            .concat(),
        )
    };
    let connector = FakeConnector::default()
        .with(server("web-1", unanswered))
        .with(server("web-2", report("done", "")));
    let targets =
        select(&loaded.definitions, &loaded.desired, &Selection::default()).expect("select");
    let surveyed = survey(targets, &connector, &options(), 4, &|_, _| {}).await;
    // New pools: both reload php-fpm now, so they roll.
    let reports = apply_all(&surveyed, &options(), 4, &|_| {}).await;
    assert!(!reports[0].succeeded());
    match &reports[1].outcome {
        ApplyOutcome::Failed { message, .. } => assert_eq!(
            message,
            "not applied: the rolling php-fpm reload of cluster `c` stopped because `web-1` failed"
        ),
        other => panic!("{other:?}"),
    }
    let web2 = connector.transport("web-2").expect("fake").sent();
    assert!(
        !web2.iter().any(|s| s.contains("apply_main")),
        "web-2 was not applied"
    );
    let web1 = connector.transport("web-1").expect("fake").sent();
    let script = web1
        .iter()
        .find(|s| s.contains("apply_main"))
        .expect("applied");
    assert!(
        script.contains("plan_web_check 'shop.test' '/'"),
        "the check is asked for"
    );
}
