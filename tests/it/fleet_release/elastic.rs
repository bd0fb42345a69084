//! Elastic members: a fleet server that is not in the definitions joins a
//! cluster through the daemon's listener with its host key, and is served
//! releases until it leaves.

use super::*;

/// The host key of `server` as the fleet's known_hosts holds it
/// (`ssh-ed25519 AAAA...`).
pub(super) fn host_key(repo: &Repo, server: &str) -> String {
    let port = repo.fleet.server(server).ssh_port;
    let known = std::fs::read_to_string(&repo.fleet.known_hosts).expect("known_hosts");
    let prefix = format!("[127.0.0.1]:{port} ");
    known
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .expect("a key of the server")
        .trim()
        .to_owned()
}

/// A daemon on `defs` with its state in `state`, listening on `addr`, its
/// log in `state/../watch.log`, with `extra` options.
pub(super) fn watch(
    repo: &Repo,
    defs: &Path,
    state: &Path,
    addr: std::net::SocketAddr,
    tokens: &Path,
    extra: &[&str],
) -> Killed {
    let log = std::fs::File::create(state.with_extension("log")).expect("log");
    let child = common::reconciler()
        .arg("watch")
        .arg("--repo")
        .arg(defs)
        .arg("--state-dir")
        .arg(state)
        .args([
            "--interval",
            "1s",
            "--color",
            "never",
            "--traffic-interval",
            "0s",
        ])
        .arg(format!("--listen={addr}"))
        .arg(format!("--deploy-tokens={}", tokens.display()))
        .arg("--known-hosts")
        .arg(&repo.fleet.known_hosts)
        .arg("--ssh-key")
        .arg(&repo.fleet.key)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "watch did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Killed(child)
}

pub(super) fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> common::HttpResponse {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(b) = &bearer {
        headers.push(("Authorization", b.as_str()));
    }
    common::http(addr, method, path, &headers, body.as_bytes()).expect("HTTP")
}

pub(super) fn join_body(repo: &Repo, name: &str, server: &str, key: &str) -> String {
    let s = repo.fleet.server(server);
    serde_json::json!({ "name": name, "address": s.address, "port": s.ssh_port, "host_key": key })
        .to_string()
}

/// A new join token of `cluster` in the daemon's `state` (made if missing).
pub(super) fn join_token(state: &Path, cluster: &str) -> String {
    std::fs::create_dir_all(state).expect("state dir");
    let out = common::reconciler()
        .args(["join-token", cluster, "--state-dir"])
        .arg(state)
        .output()
        .expect("join-token");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes whatever an earlier test left of rel on `server` (one in no
/// definitions), so that only a join can make it serve rel.
pub(super) fn forget_rel(repo: &Repo, server: &str) {
    repo.ssh(
        server,
        "rm -rf /home/rel/current /home/rel/releases /var/lib/reconciler/apps/rel \
         /etc/nginx/sites-enabled/rel.conf; nginx -s reload || true",
    );
}

/// Commits the cluster `fleet` of `repo` (a git repository) with
/// `elastic: <elastic>` in place of any it had; the commit.
pub(super) fn commit_elastic(repo: &Repo, elastic: &str) -> String {
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let cluster = std::fs::read_to_string(&path).expect("cluster");
    let kept: String = cluster
        .lines()
        .filter(|l| !l.starts_with("elastic:"))
        .map(|l| format!("{l}\n"))
        .collect();
    repo.write(
        "clusters/fleet.yaml",
        &format!("{kept}elastic: {elastic}\n"),
    );
    commit_all(repo.dir.path(), "elastic");
    git(repo.dir.path(), &["rev-parse", "HEAD"])
        .trim()
        .to_owned()
}

/// Polls the member until its state is not a joining one; returns it.
pub(super) fn settled(
    addr: std::net::SocketAddr,
    token: &str,
    name: &str,
    log: &Path,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = call(
            addr,
            "GET",
            &format!("/v1/clusters/fleet/servers/{name}"),
            Some(token),
            "",
        );
        assert_eq!(got.status, 200, "{}", got.body);
        let member: serde_json::Value = serde_json::from_str(&got.body).expect("JSON");
        let state = member["state"].as_str().unwrap_or_default().to_owned();
        if !["joining", "provisioning", "configuring", "releasing"].contains(&state.as_str()) {
            return member;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not settle: {member}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until `server` answers `id id` for rel.
pub(super) fn wait_page(repo: &Repo, server: &str, id: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while page(repo, server) != (200, format!("{id} {id}")) {
        assert!(
            Instant::now() < deadline,
            "{server} does not serve {id}: {:?}\n{}",
            page(repo, server),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Releases rel's `main` through the daemon's deploy webhook; the job.
pub(super) fn deploy_and_wait(addr: std::net::SocketAddr, token: &str) -> serde_json::Value {
    let accepted = super::webhook::post_deploy(addr, token, "main");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let job: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    super::webhook::finished(addr, token, job["id"].as_str().expect("id"))
}

/// Waits until a commit is in force (the status names it).
pub(super) fn wait_in_force(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !call(addr, "GET", "/v1/status", None, "")
        .body
        .contains("\"last_good\"")
    {
        assert!(Instant::now() < deadline, "nothing in force");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the loop works on `server` (or no longer does).
pub(super) fn wait_host(addr: std::net::SocketAddr, server: &str, present: bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&call(addr, "GET", "/v1/status", None, "").body).expect("status");
        if status["hosts"].get(server).is_some() == present {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{server} in the loop: not {present}: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_server_joins_through_the_listener_with_its_host_key_is_served_releases_and_leaves() {
    let app = AppRepo::new();
    app.commit("e1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    forget_rel(&repo, "fleet-3");
    assert_ne!(page(&repo, "fleet-3"), (200, "e1 e1".into()));

    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_elastic(&repo, "{ max_servers: 1, template: { like: fleet-2 } }");
    let home = tempfile::tempdir().expect("tempdir");
    let state = home.path().join("watch");
    let log = state.with_extension("log");
    let tokens = home.path().join("deploy-tokens");
    let deploy = super::webhook::deploy_token(&tokens, "rel");
    std::fs::create_dir_all(&state).expect("state dir");
    let (token, other) = (join_token(&state, "fleet"), join_token(&state, "other"));
    assert!(
        !std::fs::read_to_string(state.join("join-tokens"))
            .expect("tokens")
            .contains(&token)
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut daemon = watch(&repo, defs, &state, addr, &tokens, &[]);
    wait_in_force(addr);

    // Refused joins reach no server.
    let key3 = host_key(&repo, "fleet-3");
    let servers = "/v1/clusters/fleet/servers";
    let good = join_body(&repo, "fleet-3", "fleet-3", &key3);
    assert_eq!(call(addr, "POST", servers, None, &good).status, 401);
    assert_eq!(call(addr, "POST", servers, Some("nope"), &good).status, 401);
    assert_eq!(call(addr, "POST", servers, Some(&other), &good).status, 401);
    let no_elastic = call(
        addr,
        "POST",
        "/v1/clusters/other/servers",
        Some(&other),
        &good,
    );
    assert_eq!(no_elastic.status, 404, "{}", no_elastic.body);
    let static_name = join_body(&repo, "fleet-1", "fleet-3", &key3);
    assert_eq!(
        call(addr, "POST", servers, Some(&token), &static_name).status,
        409
    );

    // A wrong host key: the join fails at its first connection.
    let wrong = join_body(&repo, "fleet-3", "fleet-3", &host_key(&repo, "fleet-4"));
    let accepted = call(addr, "POST", servers, Some(&token), &wrong);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let failed = settled(addr, &token, "fleet-3", &log);
    assert_eq!(failed["state"], "failed", "{failed}");
    let cause = failed["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("host key"), "{cause}");
    assert_ne!(page(&repo, "fleet-3"), (200, "e1 e1".into()));
    let removed = call(
        addr,
        "DELETE",
        &format!("{servers}/fleet-3"),
        Some(&token),
        "",
    );
    assert_eq!(removed.status, 200, "{}", removed.body);

    // The right key: provisioned, configured, released, ready.
    let started = Instant::now();
    let accepted = call(addr, "POST", servers, Some(&token), &good);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let full = call(
        addr,
        "POST",
        servers,
        Some(&token),
        &join_body(&repo, "fleet-4", "fleet-4", &host_key(&repo, "fleet-4")),
    );
    assert_eq!(full.status, 409, "max_servers: 1: {}", full.body);
    let ready = settled(addr, &token, "fleet-3", &log);
    eprintln!("join to ready: {:?}", started.elapsed());
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(
        page(&repo, "fleet-3"),
        (200, "e1 e1".into()),
        "ready serves the live release"
    );
    let status = call(addr, "GET", "/v1/status", None, "").body;
    let status: serde_json::Value = serde_json::from_str(&status).expect("status");
    assert_eq!(status["elastic"]["fleet-3"]["state"], "ready", "{status}");
    let metrics = call(addr, "GET", "/metrics", None, "").body;
    assert!(
        metrics.contains(
            r#"reconciler_elastic_member{cluster="fleet",server="fleet-3",state="ready"} 1"#
        ),
        "{metrics}"
    );

    // The next release (the deploy webhook) reaches it.
    wait_host(addr, "fleet-3", true);
    app.commit("e2", &[]);
    let job = deploy_and_wait(addr, &deploy);
    assert_eq!(job["state"], "live", "{job}");
    for server in ["fleet-1", "fleet-2", "fleet-3"] {
        wait_page(&repo, server, "e2", &log);
    }

    // A restart keeps it.
    drop(daemon);
    daemon = watch(&repo, defs, &state, addr, &tokens, &[]);
    let kept = settled(addr, &token, "fleet-3", &log);
    assert_eq!(kept["state"], "ready", "{kept}");

    // From a terminal: `servers` lists it; `leave` (DELETE) makes it
    // leave, and the next release skips it.
    let cli = |args: &[&str]| {
        let out = common::reconciler()
            .args(args)
            .args(["--url", &format!("http://{addr}")])
            .env("RECONCILER_JOIN_TOKEN", &token)
            .output()
            .expect("reconciler");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cli(&["servers", "fleet"]);
    assert!(listed.contains("\"ready\""), "{listed}");
    let leaving = cli(&["leave", "fleet", "fleet-3"]);
    assert!(leaving.contains("\"leaving\""), "{leaving}");
    let left = call(addr, "GET", &format!("{servers}/fleet-3"), Some(&token), "");
    assert!(left.body.contains("\"leaving\""), "{}", left.body);
    // The leave may come while the restarted daemon still loads the
    // commit in force (it did, and its take put fleet-3 back for the
    // webhook): the deploy waits only for something to be in force.
    wait_in_force(addr);
    wait_host(addr, "fleet-3", false);
    app.commit("e3", &[]);
    let job = deploy_and_wait(addr, &deploy);
    assert_eq!(job["state"], "live", "{job}");
    wait_page(&repo, "fleet-1", "e3", &log);
    assert_eq!(
        page(&repo, "fleet-3"),
        (200, "e2 e2".into()),
        "a member that left gets no release\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(daemon);
}
