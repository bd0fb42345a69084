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
