//! The deploy webhook and pinned revisions.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_deploy_webhook_answers_each_status_and_releases() {
    let app = AppRepo::new();
    app.commit("v1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    // Tokens: one for rel, one for another app, one for an app that is not
    // in the definitions.
    let tokens = repo.dir.path().join("../deploy-tokens");
    let token = |name: &str| {
        let out = common::reconciler()
            .args(["deploy-token", name, "--deploy-tokens"])
            .arg(&tokens)
            .output()
            .expect("deploy-token");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (rel, other, ghost) = (token("rel"), token("other"), token("ghost"));
    let stored = std::fs::read_to_string(&tokens).expect("tokens");
    assert!(!stored.contains(&rel), "only the hash is stored");

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let tokens_arg = format!("--deploy-tokens={}", tokens.display());
    let _server = Killed(
        reconciler(&repo, &app, &["serve", "--listen", &listen, &tokens_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let post = |token: Option<&str>, body: &[u8]| {
        let bearer = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(b) = &bearer {
            headers.push(("Authorization", b.as_str()));
        }
        common::http(addr, "POST", "/v1/deploy", &headers, body).expect("POST")
    };
    let deploy = |rev: &str| format!(r#"{{"app": "rel", "revision": "{rev}"}}"#);

    assert_eq!(post(None, deploy("main").as_bytes()).status, 401);
    assert_eq!(
        post(Some("not-a-token"), deploy("main").as_bytes()).status,
        401
    );
    assert_eq!(post(Some(&other), deploy("main").as_bytes()).status, 403);
    assert_eq!(post(Some(&rel), &vec![b' '; 65 * 1024]).status, 413);
    assert_eq!(post(Some(&rel), b"{not json").status, 422);
    assert_eq!(
        post(Some(&ghost), br#"{"app": "ghost", "revision": "main"}"#).status,
        422
    );
    let unknown = post(Some(&rel), deploy("no-such-branch").as_bytes());
    assert_eq!(unknown.status, 422, "{}", unknown.body);

    // A slow deploy, and a second one while it runs.
    app.commit("v2", &[("slow.txt", "3")]);
    let accepted = post(Some(&rel), deploy("main").as_bytes());
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let busy = post(Some(&rel), deploy("main").as_bytes());
    assert_eq!(busy.status, 409, "{}", busy.body);
    let job: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    let url = job["status_url"].as_str().expect("status_url").to_owned();
    let get = |token: &str| {
        let bearer = format!("Bearer {token}");
        common::http(
            addr,
            "GET",
            &url,
            &[("Authorization", bearer.as_str())],
            b"",
        )
        .expect("GET")
    };
    assert_eq!(get(&other).status, 403);
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let status = get(&rel);
        assert_eq!(status.status, 200, "{}", status.body);
        let job: serde_json::Value = serde_json::from_str(&status.body).expect("JSON");
        if job["state"] != "running" {
            break job;
        }
        assert!(
            Instant::now() < deadline,
            "the deploy did not finish: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(state["state"], "live", "{state}");
    assert_serves(&repo, "v2");
    let log = repo.ssh(
        "fleet-1",
        "tail -n1 /var/lib/reconciler/apps/rel/release.log",
    );
    assert!(log.contains(r#""trigger":"webhook""#), "{log}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_pinned_revision_is_released_by_apply_and_by_watch() {
    let app = AppRepo::new();
    let v1 = app.commit("p1", &[]);
    git(app.dir.path(), &["tag", "v1"]);
    let v2 = app.commit("p2", &[]);
    let repo = definitions(&app, 5);

    // apply: the configuration, then the pinned tag.
    pin(&repo, "v1");
    let apply = |args: &[&str]| {
        let mut cmd = reconciler(&repo, &app, args);
        expect(&cmd.output().expect("apply"), 0)
    };
    let text = apply(&["apply", "--yes"]);
    assert!(text.contains("rel: released revision v1"), "{text}");
    assert_serves(&repo, "p1");
    assert_eq!(live(&repo, "fleet-1"), format!("releases/{v1}"));
    let text = apply(&["apply", "--yes"]);
    assert!(
        text.contains("rel: revision v1 is live on every server"),
        "{text}"
    );

    // watch: a commit that moves the pin releases it.
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "v1");
    let state = tempfile::tempdir().expect("tempdir");
    let _watch = Killed(
        common::reconciler()
            .arg("watch")
            .arg("--repo")
            .arg(defs)
            .arg("--state-dir")
            .arg(state.path())
            .args(["--interval", "1s", "--color", "never"])
            .arg("--known-hosts")
            .arg(&repo.fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&repo.fleet.key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("watch"),
    );
    pin(&repo, &v2);
    commit_all(defs, "v2");
    wait_serving(&repo, "p2", Duration::from_secs(60));
    let log = repo.ssh(
        "fleet-2",
        "tail -n1 /var/lib/reconciler/apps/rel/release.log",
    );
    assert!(log.contains(r#""trigger":"definitions""#), "{log}");
}

/// A deploy token for `app`, added to `tokens`.
pub(super) fn deploy_token(tokens: &Path, app: &str) -> String {
    let out = common::reconciler()
        .args(["deploy-token", app, "--deploy-tokens"])
        .arg(tokens)
        .output()
        .expect("deploy-token");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `POST /v1/deploy` of `revision` of rel with `token`.
pub(super) fn post_deploy(
    addr: std::net::SocketAddr,
    token: &str,
    revision: &str,
) -> common::HttpResponse {
    let bearer = format!("Bearer {token}");
    let body = format!(r#"{{"app": "rel", "revision": "{revision}"}}"#);
    common::http(
        addr,
        "POST",
        "/v1/deploy",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", bearer.as_str()),
        ],
        body.as_bytes(),
    )
    .expect("POST")
}

/// `GET /v1/deploys/<id>` with `token`: its status and JSON.
fn deploy_state(addr: std::net::SocketAddr, token: &str, id: &str) -> (u16, serde_json::Value) {
    let bearer = format!("Bearer {token}");
    let answer = common::http(
        addr,
        "GET",
        &format!("/v1/deploys/{id}"),
        &[("Authorization", bearer.as_str())],
        b"",
    )
    .expect("GET");
    let json = serde_json::from_str(&answer.body).unwrap_or(serde_json::Value::Null);
    (answer.status, json)
}

/// Polls the deploy `id` until it is no longer running.
pub(super) fn finished(addr: std::net::SocketAddr, token: &str, id: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, job) = deploy_state(addr, token, id);
        assert_eq!(status, 200, "{job}");
        if job["state"] != "running" {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "the deploy did not finish: {job}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pin wins over the webhook: a deploy of another commit is refused
/// with the pin and the file that sets it, and nothing reaches a server;
/// the pinned commit itself, by any name, is taken.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_pinned_app_refuses_a_webhook_deploy_of_another_commit() {
    let app = AppRepo::new();
    let v1 = app.commit("p1", &[]);
    git(app.dir.path(), &["tag", "v1"]);
    app.commit("p2", &[]);
    let repo = definitions(&app, 5);
    pin(&repo, "v1");
    let text = expect(&run(&repo, &app, &["apply", "--yes"]), 0);
    assert!(text.contains("rel: released revision v1"), "{text}");
    assert_serves(&repo, "p1");

    let tokens = repo.dir.path().join("../deploy-tokens");
    let token = deploy_token(&tokens, "rel");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let tokens_arg = format!("--deploy-tokens={}", tokens.display());
    let _server = Killed(
        reconciler(&repo, &app, &["serve", "--listen", &listen, &tokens_arg])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve"),
    );
    let addr: std::net::SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let before: Vec<(String, Vec<String>, String)> = SERVERS
        .iter()
        .map(|s| {
            let log = repo.ssh(s, "cat /var/lib/reconciler/apps/rel/release.log");
            (live(&repo, s), releases(&repo, s), log)
        })
        .collect();
    let refused = post_deploy(addr, &token, "main");
    assert_eq!(refused.status, 409, "{}", refused.body);
    let reason: serde_json::Value = serde_json::from_str(&refused.body).expect("JSON");
    assert_eq!(
        reason["error"],
        "app rel pins revision v1 in apps/rel.yaml; change the pin to deploy another revision",
        "{reason}"
    );
    assert_eq!(reason["pinned"], "v1", "{reason}");
    assert_eq!(reason["file"], "apps/rel.yaml", "{reason}");
    // Nothing started: no release directory, no log line, the pin live.
    std::thread::sleep(Duration::from_secs(2));
    let after: Vec<(String, Vec<String>, String)> = SERVERS
        .iter()
        .map(|s| {
            let log = repo.ssh(s, "cat /var/lib/reconciler/apps/rel/release.log");
            (live(&repo, s), releases(&repo, s), log)
        })
        .collect();
    assert_eq!(after, before);
    assert_serves(&repo, "p1");

    // The pinned commit, named by its id rather than the pin's tag, is
    // what the commit in force says: taken.
    let accepted = post_deploy(addr, &token, &v1);
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let job: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    let id = job["id"].as_str().expect("id").to_owned();
    let job = finished(addr, &token, &id);
    assert_eq!(job["state"], "live", "{job}");
    assert_serves(&repo, "p1");
}

/// A deploy's id answers after the daemon restarts: with its result when
/// it finished, and as `interrupted` when the daemon died while it ran.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn deploy_ids_survive_a_restart_of_the_daemon() {
    let app = AppRepo::new();
    app.commit("d1", &[]);
    let repo = definitions(&app, 5);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "d1");
    let tokens = defs.join("../deploy-tokens");
    let token = deploy_token(&tokens, "rel");
    let state = tempfile::tempdir().expect("tempdir");
    let log_dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = vec![
        "watch".into(),
        "--repo".into(),
        defs.display().to_string(),
        "--state-dir".into(),
        state.path().display().to_string(),
        "--interval".into(),
        "1s".into(),
        "--known-hosts".into(),
        repo.fleet.known_hosts.display().to_string(),
        "--ssh-key".into(),
        repo.fleet.key.display().to_string(),
        "--deploy-tokens".into(),
        tokens.display().to_string(),
        "--color".into(),
        "never".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = |n: u32| {
        common::daemon::Daemon::start(
            &args,
            None,
            "/v1/status",
            &log_dir.path().join(format!("watch-{n}.log")),
        )
    };

    // A slow deploy (its build sleeps 6 s), cut off by SIGKILL.
    app.commit("d2", &[("slow.txt", "6")]);
    let daemon = start(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        // 422 until the daemon has definitions in force.
        let answer = post_deploy(daemon.addr, &token, "main");
        if answer.status != 422 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        accepted.status,
        202,
        "{}\n{}",
        accepted.body,
        daemon.log_text()
    );
    let job: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    let cut = job["id"].as_str().expect("id").to_owned();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        deploy_state(daemon.addr, &token, &cut).1["state"],
        "running"
    );
    drop(daemon); // SIGKILL

    let daemon = start(2);
    let (status, job) = deploy_state(daemon.addr, &token, &cut);
    assert_eq!(status, 200, "{job}\n{}", daemon.log_text());
    assert_eq!(job["state"], "interrupted", "{job}");
    assert!(
        job["error"].as_str().is_some_and(|e| e.contains("stopped")),
        "{job}"
    );

    // A deploy that finishes, then a restart: its result is kept.
    app.commit("d3", &[("slow.txt", "")]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let (done, job) = loop {
        // 422 until definitions are in force; a failure while a server
        // still holds the lock of the deploy that was cut off.
        let answer = post_deploy(daemon.addr, &token, "main");
        if answer.status == 202 {
            let job: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
            let id = job["id"].as_str().expect("id").to_owned();
            let job = finished(daemon.addr, &token, &id);
            let busy = job["error"]
                .as_str()
                .is_some_and(|e| e.contains("is being released"));
            if !busy || Instant::now() > deadline {
                break (id, job);
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} {}\n{}",
            answer.status,
            answer.body,
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(job["state"], "live", "{job}\n{}", daemon.log_text());
    assert_serves(&repo, "d3");
    drop(daemon);

    let daemon = start(3);
    for (id, state) in [(&done, "live"), (&cut, "interrupted")] {
        let (status, job) = deploy_state(daemon.addr, &token, id);
        assert_eq!(status, 200, "{job}\n{}", daemon.log_text());
        assert_eq!(job["state"], state, "{job}");
    }
    for id in [&done, &cut] {
        let record = state.path().join(format!("deploys/{id}.json"));
        assert!(record.is_file(), "one record file per deploy: {record:?}");
    }
}

/// SIGTERM to `watch` while a webhook deploy is in its health check: the
/// daemon rolls the deploy back on every server, logs it, and exits 0.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn sigterm_during_a_webhook_deploys_health_check_goes_back_logs_it_and_exits() {
    let app = AppRepo::new();
    app.commit("w1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert_serves(&repo, "w1");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "w1");
    let tokens = defs.join("../deploy-tokens");
    let token = deploy_token(&tokens, "rel");
    let state = tempfile::tempdir().expect("tempdir");
    let log_dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = vec![
        "watch".into(),
        "--repo".into(),
        defs.display().to_string(),
        "--state-dir".into(),
        state.path().display().to_string(),
        "--interval".into(),
        "1s".into(),
        "--known-hosts".into(),
        repo.fleet.known_hosts.display().to_string(),
        "--ssh-key".into(),
        repo.fleet.key.display().to_string(),
        "--deploy-tokens".into(),
        tokens.display().to_string(),
        "--color".into(),
        "never".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut daemon =
        common::daemon::Daemon::start(&args, None, "/v1/status", &log_dir.path().join("watch.log"));

    // A deploy of a commit whose health check fails; SIGTERM once it is
    // live on the first server, during its health check.
    let bad = app.commit(
        "w2",
        &[(
            "public/index.php",
            "<?php http_response_code(500); echo 'w2 w2';\n",
        )],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let accepted = loop {
        // 422 until the daemon has definitions in force.
        let answer = post_deploy(daemon.addr, &token, "main");
        if answer.status != 422 || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(
        accepted.status,
        202,
        "{}\n{}",
        accepted.body,
        daemon.log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while page(&repo, "fleet-1").1 != "w2 w2" {
        assert!(
            Instant::now() < deadline,
            "fleet-1 never served w2\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit = daemon.terminate(Duration::from_secs(60));
    assert!(exit.success(), "{exit:?}\n{}", daemon.log_text());

    // It finished what it started: back on the good release, logged.
    assert_serves(&repo, "w1");
    for server in SERVERS {
        let line = repo.ssh(server, "tail -n1 /var/lib/reconciler/apps/rel/release.log");
        let line: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(line["sha"], bad.as_str(), "{server}: {line}");
        assert_eq!(line["trigger"], "webhook", "{server}: {line}");
        assert_eq!(line["result"], "rolled-back", "{server}: {line}");
        let in_flight = repo.ssh(
            server,
            "test -e /var/lib/reconciler/apps/rel/in-flight && echo left || echo none",
        );
        assert_eq!(in_flight.trim(), "none", "{server}");
    }
}
