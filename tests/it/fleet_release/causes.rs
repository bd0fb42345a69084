//! The same cause, reported the same way by every path that reaches a
//! server: a changed host key, a full disk.

use super::*;

/// What ssh's refusal of a changed key reads as, for the server on `port`.
fn changed_key(port: u16) -> String {
    format!(
        "host key of `root@127.0.0.1:{port}` has CHANGED: someone may be intercepting the \
         connection, or the server was reinstalled"
    )
}

const CHANGED_KEY_HINT: &str = "verify the new key with the server's operator; only then \
                                replace its line in known_hosts (`ssh-keygen -R HOST`)";

/// A copy of the fleet's known_hosts in `dir` where `server`'s line holds
/// another server's key: to ssh, `server`'s key has changed.
fn known_hosts_with_changed_key(repo: &Repo, dir: &Path, server: &str, other: &str) -> PathBuf {
    let port = |name: &str| format!("[127.0.0.1]:{} ", repo.server(name).ssh_port);
    let text = std::fs::read_to_string(&repo.fleet.known_hosts).expect("known_hosts");
    let other_key = text
        .lines()
        .find_map(|l| l.strip_prefix(&port(other)))
        .expect("the other server's key")
        .to_owned();
    let mut changed = String::new();
    for line in text.lines() {
        if line.starts_with(&port(server)) {
            changed.push_str(&format!("{}{other_key}\n", port(server)));
        } else {
            changed.push_str(line);
            changed.push('\n');
        }
    }
    let path = dir.join("known_hosts");
    std::fs::write(&path, changed).expect("write known_hosts");
    path
}

/// `reconciler ARGS` on `repo` with `known_hosts` instead of the fleet's:
/// exit code and everything it printed.
fn run_with_known_hosts(repo: &Repo, app: &AppRepo, known_hosts: &Path, args: &[&str]) -> String {
    let out = common::reconciler()
        .args(args)
        .arg("-d")
        .arg(repo.dir.path())
        .arg("--known-hosts")
        .arg(known_hosts)
        .arg("--ssh-key")
        .arg(&repo.fleet.key)
        .args(["--color", "never"])
        .env("RECONCILER_CACHE_DIR", app.cache.path())
        .output()
        .expect("run reconciler");
    format!(
        "$ reconciler {}\n--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A changed host key reads the same from every path that reaches the
/// server: its words and its hint, never "cannot reach" (which reads as a
/// network problem), and nothing changes there.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_changed_host_key_is_named_with_its_hint_by_every_path() {
    let app = AppRepo::new();
    app.commit("k1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    app.commit("k2", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    let known_hosts = known_hosts_with_changed_key(&repo, dir.path(), "fleet-2", "fleet-1");
    let env_file = dir.path().join("env");
    std::fs::write(&env_file, "APP_KEY=x\n").expect("env");
    let env_file = env_file.display().to_string();
    let message = changed_key(repo.server("fleet-2").ssh_port);

    let mut outputs = Vec::new();
    for args in [
        &["plan"][..],
        &["release", "rel"],
        &["rollback", "rel"],
        &["releases", "rel"],
        &["env", "push", "rel", &env_file],
        &["env", "pull", "rel", "--server", "fleet-2"],
        &["env", "diff", "rel", &env_file],
        &["logs", "rel", "-n", "1"],
    ] {
        outputs.push(run_with_known_hosts(&repo, &app, &known_hosts, args));
    }
    for text in &outputs {
        assert!(text.contains(&message), "the cause is named:\n{text}");
        assert!(text.contains(CHANGED_KEY_HINT), "with its hint:\n{text}");
        assert!(
            !text.contains("cannot reach"),
            "not as a network problem:\n{text}"
        );
    }
    assert_serves(&repo, "k1");

    // The deploy webhook: the job's error and hint.
    let tokens = dir.path().join("deploy-tokens");
    let out = common::reconciler()
        .args(["deploy-token", "rel", "--deploy-tokens"])
        .arg(&tokens)
        .output()
        .expect("deploy-token");
    assert!(out.status.success());
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _server = Killed(
        common::reconciler()
            .args(["serve", "--listen", &listen, "--deploy-tokens"])
            .arg(&tokens)
            .arg("-d")
            .arg(repo.dir.path())
            .arg("--known-hosts")
            .arg(&known_hosts)
            .arg("--ssh-key")
            .arg(&repo.fleet.key)
            .env("RECONCILER_CACHE_DIR", app.cache.path())
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
    let bearer = format!("Bearer {token}");
    let headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let accepted = common::http(
        addr,
        "POST",
        "/v1/deploy",
        &headers,
        br#"{"app": "rel", "revision": "main"}"#,
    )
    .expect("POST");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let job: serde_json::Value = serde_json::from_str(&accepted.body).expect("JSON");
    let url = job["status_url"].as_str().expect("status_url").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let job = loop {
        let answer = common::http(addr, "GET", &url, &headers[1..], b"").expect("GET");
        let job: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
        if job["state"] != "running" {
            break job;
        }
        assert!(Instant::now() < deadline, "the deploy did not end: {job}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap_or_default();
    assert_eq!(error, format!("fleet-2: {message}"), "{job}");
    assert_eq!(job["hint"], CHANGED_KEY_HINT, "{job}");
    assert_serves(&repo, "k1");
}

/// Makes `server`'s disk full where reconciler keeps its state: its
/// /var/lib/reconciler moved onto the container's own /dev/shm (a 64 MiB
/// tmpfs), which is then filled. Put back when dropped.
struct FullDisk<'a> {
    repo: &'a Repo,
    server: &'static str,
}

impl<'a> FullDisk<'a> {
    fn new(repo: &'a Repo, server: &'static str) -> Self {
        let full = FullDisk { repo, server };
        full.repo.ssh(
            server,
            "set -e\n\
             test ! -L /var/lib/reconciler\n\
             cp -a /var/lib/reconciler /dev/shm/reconciler\n\
             mv /var/lib/reconciler /var/lib/reconciler.before-full-disk\n\
             ln -s /dev/shm/reconciler /var/lib/reconciler\n\
             dd if=/dev/zero of=/dev/shm/fill bs=1M 2>/dev/null || true\n\
             dd if=/dev/zero of=/dev/shm/fill-small bs=1k 2>/dev/null || true\n\
             if head -c 65536 /dev/zero >/dev/shm/probe 2>/dev/null; then echo 'not full' >&2; exit 1; fi\n\
             rm -f /dev/shm/probe\n",
        );
        full
    }
}

impl Drop for FullDisk<'_> {
    fn drop(&mut self) {
        self.repo.ssh(
            self.server,
            "set -e\n\
             rm -f /dev/shm/fill /dev/shm/fill-small /dev/shm/probe\n\
             if [ -L /var/lib/reconciler ]; then\n\
               rm /var/lib/reconciler\n\
               cp -a /dev/shm/reconciler /var/lib/reconciler\n\
               rm -rf /dev/shm/reconciler /var/lib/reconciler.before-full-disk\n\
             fi\n",
        );
    }
}

/// A full disk on a server: the daemon's status and log name "No space
/// left on device", as `apply` does, rather than a script that stopped
/// without a report.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_full_disk_is_named_by_the_daemon_as_by_apply() {
    const FULL: &str = "No space left on device";
    let app = AppRepo::new();
    app.commit("f1", &[]);
    let repo = definitions(&app, 5);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "f1");

    // A change for both servers: a domain more in rel's vhost.
    let yaml_path = defs.join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&yaml_path).expect("app");
    std::fs::write(
        &yaml_path,
        yaml.replace("domains: [rel.test]", "domains: [rel.test, www.rel.test]"),
    )
    .expect("write");
    let full = FullDisk::new(&repo, "fleet-2");

    let apply = repo.run(&["apply", "--yes", "--server", "fleet-2"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&apply.stdout),
        String::from_utf8_lossy(&apply.stderr)
    );
    assert_ne!(apply.status.code(), Some(0), "{text}");
    assert!(text.contains(FULL), "apply names it:\n{text}");

    commit_all(defs, "www");
    let state = tempfile::tempdir().expect("tempdir");
    let log = state.path().join("watch.log");
    let args: Vec<String> = vec![
        "watch".into(),
        "--repo".into(),
        defs.display().to_string(),
        "--state-dir".into(),
        state.path().join("state").display().to_string(),
        "--interval".into(),
        "1s".into(),
        "--known-hosts".into(),
        repo.fleet.known_hosts.display().to_string(),
        "--ssh-key".into(),
        repo.fleet.key.display().to_string(),
        "--color".into(),
        "never".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let daemon = common::daemon::Daemon::start(&args, None, "/v1/status", &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    let host = loop {
        let answer = daemon.get("/v1/status").expect("status");
        let status: serde_json::Value = serde_json::from_str(&answer.body).expect("JSON");
        let host = status["hosts"]["fleet-2"].clone();
        if host["last_result"] == "failed" {
            break host;
        }
        assert!(
            Instant::now() < deadline,
            "fleet-2 did not fail: {status:#}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let message = host["last_message"].as_str().unwrap_or_default();
    assert!(message.contains(FULL), "the status names it: {host:#}");
    assert!(
        daemon
            .log_text()
            .lines()
            .any(|l| l.contains("fleet-2") && l.contains(FULL)),
        "the log names it:\n{}",
        daemon.log_text()
    );
    drop(daemon);
    drop(full);
}
