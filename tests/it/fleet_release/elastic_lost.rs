//! An elastic member that stays unreachable past the grace period is
//! marked `lost` and no longer worked on, rather than retried forever.

use super::elastic::{
    call, commit_elastic, host_key, join_body, join_token, settled, wait_host, watch,
};
use super::*;

/// Polls the member until it is `state`; returns it.
fn wait_state(
    addr: std::net::SocketAddr,
    token: &str,
    name: &str,
    state: &str,
    log: &Path,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = call(
            addr,
            "GET",
            &format!("/v1/clusters/fleet/servers/{name}"),
            Some(token),
            "",
        );
        let member: serde_json::Value = serde_json::from_str(&got.body).expect("JSON");
        if member["state"] == state {
            return member;
        }
        assert!(
            Instant::now() < deadline,
            "{name} is not {state}: {member}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The daemon's log lines about `server`.
fn lines_about(log: &Path, server: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(server))
        .count()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_member_unreachable_past_the_grace_period_is_lost_and_no_longer_tried() {
    let app = AppRepo::new();
    app.commit("l1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    super::elastic::forget_rel(&repo, "fleet-4");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_elastic(&repo, "{ max_servers: 1, template: { like: fleet-2 } }");
    let home = tempfile::tempdir().expect("tempdir");
    let state = home.path().join("watch");
    let log = state.with_extension("log");
    let tokens = home.path().join("deploy-tokens");
    super::webhook::deploy_token(&tokens, "rel");
    let token = join_token(&state, "fleet");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _daemon = watch(
        &repo,
        defs,
        &state,
        addr,
        &tokens,
        &["--elastic-grace", "5s"],
    );
    super::elastic::wait_in_force(addr);

    let body = join_body(&repo, "fleet-4", "fleet-4", &host_key(&repo, "fleet-4"));
    let accepted = call(
        addr,
        "POST",
        "/v1/clusters/fleet/servers",
        Some(&token),
        &body,
    );
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let ready = settled(addr, &token, "fleet-4", &log);
    assert_eq!(ready["state"], "ready", "{ready}");
    wait_host(addr, "fleet-4", true);

    // Unreachable: its reconciles fail, and 5 s on it is lost.
    let stopped = repo.fleet.stop("fleet-4");
    let went = Instant::now();
    let lost = wait_state(addr, &token, "fleet-4", "lost", &log);
    eprintln!("stopped to lost: {:?}", went.elapsed());
    assert!(
        went.elapsed() >= Duration::from_secs(5),
        "not before the grace period: {lost}"
    );
    let cause = lost["cause"].as_str().unwrap_or_default();
    assert!(
        cause.starts_with("unreachable since") || cause.starts_with("failing since"),
        "{cause}"
    );
    let status: serde_json::Value =
        serde_json::from_str(&call(addr, "GET", "/v1/status", None, "").body).expect("status");
    assert_eq!(status["elastic"]["fleet-4"]["state"], "lost", "{status}");
    let metrics = call(addr, "GET", "/metrics", None, "").body;
    assert!(
        metrics.contains(
            r#"reconciler_elastic_member{cluster="fleet",server="fleet-4",state="lost"} 1"#
        ),
        "{metrics}"
    );

    // No longer worked on: out of the loop, nothing more about it logged
    // over several cycles (the interval is 1 s), and still lost once it
    // is back (it joins again to be worked on).
    wait_host(addr, "fleet-4", false);
    std::thread::sleep(Duration::from_secs(2));
    let before = lines_about(&log, "fleet-4");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        lines_about(&log, "fleet-4"),
        before,
        "tried again:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(stopped);
    std::thread::sleep(Duration::from_secs(3));
    let kept = call(
        addr,
        "GET",
        "/v1/clusters/fleet/servers/fleet-4",
        Some(&token),
        "",
    );
    assert!(kept.body.contains("\"lost\""), "{}", kept.body);
    assert_eq!(lines_about(&log, "fleet-4"), before);
}
