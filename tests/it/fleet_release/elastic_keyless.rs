//! Elastic members whose join carries no host key: refused, unless the
//! cluster accepts new host keys; then the first connection trusts the key
//! the server offers, the daemon logs it with its fingerprint, and the
//! member keeps it.

use super::elastic::{
    call, commit_elastic, forget_rel, host_key, join_token, settled, wait_host, watch,
};
use super::*;

/// Waits until `commit` is the daemon's commit in force.
fn wait_commit(addr: std::net::SocketAddr, commit: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&call(addr, "GET", "/v1/status", None, "").body).expect("status");
        if status["last_good"]["commit"].as_str() == Some(commit) {
            return;
        }
        assert!(Instant::now() < deadline, "{commit} not in force: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ssh-keygen -lf`'s SHA256 fingerprint of a host key line.
fn keygen_fingerprint(key: &str) -> String {
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), format!("{key}\n")).expect("write");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(file.path())
        .output()
        .expect("ssh-keygen");
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    shown
        .split_ascii_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_join_without_a_host_key_is_refused_unless_the_cluster_accepts_new_keys_then_its_first_key_is_kept()
 {
    let app = AppRepo::new();
    app.commit("k1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    forget_rel(&repo, "fleet-3");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    let strict = commit_elastic(&repo, "{ max_servers: 1, template: { like: fleet-2 } }");
    let home = tempfile::tempdir().expect("tempdir");
    let state = home.path().join("watch");
    let log = state.with_extension("log");
    let tokens = home.path().join("deploy-tokens");
    super::webhook::deploy_token(&tokens, "rel");
    let token = join_token(&state, "fleet");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let _daemon = watch(&repo, defs, &state, addr, &tokens, &[]);
    wait_commit(addr, &strict);

    let s = repo.fleet.server("fleet-3");
    let keyless =
        serde_json::json!({ "name": "fleet-3", "address": s.address, "port": s.ssh_port })
            .to_string();
    let servers = "/v1/clusters/fleet/servers";
    let refused = call(addr, "POST", servers, Some(&token), &keyless);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("accept_new_host_keys"),
        "{}",
        refused.body
    );
    let none = call(addr, "GET", &format!("{servers}/fleet-3"), Some(&token), "");
    assert_eq!(none.status, 404, "nothing is recorded: {}", none.body);

    let trusting = commit_elastic(
        &repo,
        "{ max_servers: 1, accept_new_host_keys: true, template: { like: fleet-2 } }",
    );
    wait_commit(addr, &trusting);
    let accepted = call(addr, "POST", servers, Some(&token), &keyless);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let joining: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    assert!(joining["host_key"].is_null(), "{joining}");
    let ready = settled(addr, &token, "fleet-3", &log);
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(page(&repo, "fleet-3"), (200, "k1 k1".into()));

    // The key the server offered is the member's, and logged with its
    // fingerprint as a warning.
    let key = host_key(&repo, "fleet-3");
    assert_eq!(ready["host_key"].as_str(), Some(key.as_str()), "{ready}");
    let logged = std::fs::read_to_string(&log).expect("log");
    let fingerprint = keygen_fingerprint(&key);
    let warning = logged
        .lines()
        .find(|l| l.contains("accepted unchecked on first contact"))
        .unwrap_or_else(|| panic!("no warning:\n{logged}"));
    assert!(
        warning.contains("WARN") && warning.contains(&format!("fingerprint={fingerprint}")),
        "{warning}"
    );
    let file = std::fs::read_to_string(state.join("elastic/known_hosts/fleet-3")).expect("file");
    assert!(file.trim_end().ends_with(&key), "{file}");
    // The loop works on it with that key.
    wait_host(addr, "fleet-3", true);
}
