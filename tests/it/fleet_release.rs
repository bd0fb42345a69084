//! Releases, rollbacks and their lock, against the test fleet: a fixture
//! app in a local git repository (no network) released to two web servers.
//! These tests change the shared servers, so nextest runs them one at a
//! time with the other fleet tests.

use crate::common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Repo;

const SERVERS: [&str; 2] = ["fleet-1", "fleet-2"];

/// The fixture app's git repository. Each commit's `public/index.php`
/// prints what two included files return; both carry the release id, so a
/// response that mixes two releases shows.
struct AppRepo {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl AppRepo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Self {
            dir,
            cache: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// A commit whose page answers `id id`; `extra` files are added (or,
    /// with empty content, removed).
    fn commit(&self, id: &str, extra: &[(&str, &str)]) -> String {
        self.write(
            "public/index.php",
            "<?php\n$a = require __DIR__ . '/../src/a.php';\nusleep(5000);\n\
             $b = require __DIR__ . '/../src/b.php';\necho \"$a $b\";\n",
        );
        self.write("src/a.php", &format!("<?php return '{id}';\n"));
        self.write("src/b.php", &format!("<?php return '{id}';\n"));
        self.write(
            "composer.json",
            r#"{"name": "fixture/app", "require": {}, "repositories": [{"packagist.org": false}]}"#,
        );
        self.write(
            "worker.php",
            "<?php\nfile_put_contents(getenv('HOME') . '/shared/storage/worker.txt', realpath(__DIR__));\n\
             while (true) { sleep(60); }\n",
        );
        for (path, text) in extra {
            let full = self.dir.path().join(path);
            if text.is_empty() {
                let _ = std::fs::remove_file(full);
            } else {
                self.write(path, text);
            }
        }
        commit_all(self.dir.path(), id);
        git(self.dir.path(), &["rev-parse", "HEAD"])
            .trim()
            .to_owned()
    }
}

/// Commits everything in `dir` with `message`.
fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ],
    );
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Definitions with the app `rel` on both web servers, a worker on the
/// first, released from `app`.
fn definitions(app: &AppRepo, keep: u32) -> Repo {
    let repo = Repo::new(&SERVERS);
    repo.write(
        "apps/rel.yaml",
        &format!(
            "name: rel\ncluster: fleet\nrepo: {}\nphp: \"8.2\"\ndomains: [rel.test]\n\
             composer: install --no-interaction --no-progress\n\
             release_commands:\n  - \"test ! -f fail.txt || {{ echo boom: the build broke; exit 3; }}\"\n\
             \x20 - \"test ! -f slow.txt || sleep $(cat slow.txt)\"\n\
             \x20 - \"php -r 'echo PHP_VERSION;' > php-version.txt\"\n\
             shared: [.env, storage]\nkeep_releases: {keep}\n\
             env_commands: [\"date +%s%N > env-ran.txt\"]\n\
             health_check: {{ path: /, status: 200 }}\nservers:\n\
             \x20 - name: fleet-1\n    web: {{ max_workers: 8, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }}\n\
             \x20   workers: [{{ name: w, command: php worker.php, processes: 1, stop_wait: 2 }}]\n\
             \x20 - name: fleet-2\n    web: {{ max_workers: 8, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }}\n",
            app.dir.path().display()
        ),
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo
}

/// `reconciler ARGS` for the repo, with the app mirror cache of `app`.
fn reconciler(repo: &Repo, app: &AppRepo, args: &[&str]) -> Command {
    let mut cmd = repo.command(args);
    cmd.env("RECONCILER_CACHE_DIR", app.cache.path());
    cmd
}

fn run(repo: &Repo, app: &AppRepo, args: &[&str]) -> Output {
    reconciler(repo, app, args)
        .output()
        .expect("run reconciler")
}

fn expect(out: &Output, code: i32) -> String {
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{text}");
    text
}

fn page(repo: &Repo, server: &str) -> (u16, String) {
    repo.server(server).http_get("/", "rel.test")
}

fn assert_serves(repo: &Repo, id: &str) {
    for server in SERVERS {
        assert_eq!(page(repo, server), (200, format!("{id} {id}")), "{server}");
    }
}

/// The release directories on `server`.
fn releases(repo: &Repo, server: &str) -> Vec<String> {
    let mut names: Vec<String> = repo
        .ssh(server, "ls /home/rel/releases")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn live(repo: &Repo, server: &str) -> String {
    repo.ssh(server, "readlink /home/rel/current")
        .trim()
        .to_owned()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn ten_releases_under_load_fail_no_request_and_mix_no_release() {
    let app = AppRepo::new();
    let first = app.commit("r0", &[]);
    let repo = definitions(&app, 3);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert!(text.contains("is live on fleet-1, fleet-2"), "{text}");
    assert_serves(&repo, "r0");
    for server in SERVERS {
        assert_eq!(live(&repo, server), format!("releases/{first}"));
        // Shared paths are links into shared/, the build ran with the app's
        // PHP, and everything in the release is the app's.
        let check = repo.ssh(
            server,
            "cd /home/rel/current && readlink .env storage && cat php-version.txt && echo\n\
             test -f vendor/autoload.php && echo composer-ran\n\
             find /home/rel/releases -not -user rel | wc -l\n\
             test -f /var/lib/reconciler/apps/rel/complete/$(basename $(readlink /home/rel/current)) && echo complete",
        );
        let lines: Vec<&str> = check.lines().collect();
        assert_eq!(
            lines[..2],
            ["/home/rel/shared/.env", "/home/rel/shared/storage"],
            "{check}"
        );
        assert!(
            lines[2].starts_with("8.2."),
            "the app's PHP built it: {check}"
        );
        assert_eq!(
            lines[3..],
            ["composer-ran", "0", "complete"],
            "{server}: {check}"
        );
    }

    // Load on both servers while ten releases go live one after another.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let server = repo.server(SERVERS[i % 2]).clone();
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, body) = server.http_get("/", "rel.test");
                    seen.lock().unwrap().push((started, status, body));
                }
            })
        })
        .collect();
    let mut switched = Vec::new();
    for i in 1..=10 {
        let id = format!("r{i}");
        app.commit(&id, &[]);
        expect(&run(&repo, &app, &["release", "rel"]), 0);
        switched.push((Instant::now(), id));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    let seen = seen.lock().unwrap();
    let failed = seen.iter().filter(|(_, status, _)| *status != 200).count();
    let mixed = seen
        .iter()
        .filter(|(_, _, body)| {
            let mut ids = body.split(' ');
            ids.next() != ids.next()
        })
        .count();
    // A request that starts 100 ms after a release returned is served by
    // it (or a later one).
    let mut stale = 0;
    for (k, (at, id)) in switched.iter().enumerate() {
        let later: Vec<&str> = switched[k..].iter().map(|(_, id)| id.as_str()).collect();
        let until = switched.get(k + 1).map(|(t, _)| *t);
        stale += seen
            .iter()
            .filter(|(t, _, _)| {
                *t > *at + Duration::from_millis(100) && until.is_none_or(|u| *t < u)
            })
            .filter(|(_, _, body)| !later.contains(&body.split(' ').next().unwrap_or("")))
            .count();
        let _ = id;
    }
    eprintln!(
        "load during 10 releases: {} requests, {failed} failed, {mixed} mixed, {stale} stale",
        seen.len()
    );
    let odd: Vec<_> = seen
        .iter()
        .filter(|(_, status, body)| *status != 200 || body.split(' ').count() != 2)
        .map(|(_, status, body)| format!("{status} {body}"))
        .take(5)
        .collect();
    assert!(seen.len() > 100, "the load ran: {} requests", seen.len());
    assert!(odd.is_empty(), "{odd:#?}");
    assert_eq!((failed, mixed, stale), (0, 0, 0));
    assert_serves(&repo, "r10");

    // keep_releases: 3, the live one included.
    for server in SERVERS {
        assert_eq!(releases(&repo, server).len(), 3, "{server}");
    }
    // The worker runs the live release.
    std::thread::sleep(Duration::from_secs(1));
    let worker = repo.ssh("fleet-1", "cat /home/rel/shared/storage/worker.txt");
    assert_eq!(worker, format!("/home/rel/{}", live(&repo, "fleet-1")));

    // Rollback: the previous release again, healthy.
    let text = expect(&run(&repo, &app, &["rollback", "rel"]), 0);
    assert!(text.contains("rolled back"), "{text}");
    assert_serves(&repo, "r9");
    let listing = expect(&run(&repo, &app, &["releases", "rel"]), 0);
    assert!(listing.contains("live  rollback"), "{listing}");
    std::thread::sleep(Duration::from_secs(1));
    let worker = repo.ssh("fleet-1", "cat /home/rel/shared/storage/worker.txt");
    assert_eq!(worker, format!("/home/rel/{}", live(&repo, "fleet-1")));
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_failing_build_or_health_check_leaves_the_old_release_serving() {
    let app = AppRepo::new();
    app.commit("good", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let before: Vec<Vec<String>> = SERVERS.iter().map(|s| releases(&repo, s)).collect();

    let broken = app.commit("broken", &[("fail.txt", "x")]);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(text.contains("build failed on"), "{text}");
    assert!(text.contains("boom: the build broke"), "{text}");
    assert_serves(&repo, "good");
    for (server, before) in SERVERS.iter().zip(&before) {
        assert_eq!(
            &releases(&repo, server),
            before,
            "no partial {broken} on {server}"
        );
    }

    // A release whose page fails goes live, fails its health check, and
    // every server goes back.
    app.commit(
        "unhealthy",
        &[
            ("fail.txt", ""),
            (
                "public/index.php",
                "<?php http_response_code(500); echo 'down';\n",
            ),
        ],
    );
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(text.contains("every server went back to"), "{text}");
    assert_serves(&repo, "good");
    let listing = expect(&run(&repo, &app, &["releases", "rel"]), 0);
    assert!(
        !listing.contains("rolled-back"),
        "the failed release was pruned: {listing}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn releases_of_one_app_never_interleave_and_a_killed_one_leaves_it_serving() {
    let app = AppRepo::new();
    app.commit("one", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    // A slow release holds the lock; a second one is refused with its holder.
    app.commit("slow", &[("slow.txt", "4")]);
    let slow = reconciler(&repo, &app, &["release", "rel"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(2500));
    let second = run(&repo, &app, &["release", "rel"]);
    let text = expect(&second, 1);
    assert!(text.contains("rel is being released on"), "{text}");
    assert!(text.contains("cli of"), "names the holder: {text}");
    let first = slow.wait_with_output().expect("slow release");
    expect(&first, 0);
    assert_serves(&repo, "slow");

    // SIGKILL in the middle of a build: `current` still serves, the lock
    // is free, and the next release succeeds.
    app.commit("killed", &[("slow.txt", "6")]);
    let mut killed = reconciler(&repo, &app, &["release", "rel"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(2500));
    killed.kill().expect("SIGKILL");
    killed.wait().expect("wait");
    assert_serves(&repo, "slow");
    app.commit("after", &[("slow.txt", "")]);
    let started = Instant::now();
    let out = run(&repo, &app, &["release", "rel"]);
    expect(&out, 0);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_serves(&repo, "after");
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Kills the child when dropped, so a failing test leaves no server.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

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

/// Sets the app's pinned `revision:` in the definitions.
fn pin(repo: &Repo, revision: &str) {
    let path = repo.dir.path().join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.starts_with("revision:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let yaml = yaml.replacen(
        "php: \"8.2\"\n",
        &format!("php: \"8.2\"\nrevision: {revision}\n"),
        1,
    );
    std::fs::write(path, yaml).expect("write");
}

fn wait_serving(repo: &Repo, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let want = (200, format!("{id} {id}"));
    while SERVERS.iter().any(|s| page(repo, s) != want) {
        assert!(
            Instant::now() < deadline,
            "{id} is not served after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
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

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_hung_release_holds_the_lock_until_force_unlock_and_then_cannot_go_on() {
    let app = AppRepo::new();
    app.commit("base", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    // A client that hangs (stopped) in the middle of a slow build keeps
    // its session, so its lock holds.
    app.commit("hung", &[("slow.txt", "4")]);
    let hung = Killed(
        reconciler(&repo, &app, &["release", "rel"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let pid = hung.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(
        text.contains(&format!("(pid {pid})")),
        "names the holder: {text}"
    );
    assert!(text.contains("--force-unlock"), "{text}");

    app.commit("forced", &[("slow.txt", "")]);
    let text = expect(&run(&repo, &app, &["release", "rel", "--force-unlock"]), 0);
    assert!(text.contains("broke the release lock of"), "{text}");
    assert_serves(&repo, "forced");

    // The hung client, let go, finds its lock gone and changes nothing.
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut hung = hung;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = hung.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the hung release did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(1), "it lost its lock: it must fail");
    assert_serves(&repo, "forced");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn env_push_pull_and_diff_never_show_a_value_but_to_pull() {
    let app = AppRepo::new();
    app.commit("e1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    let secret = "s3cr3t-Value-9f2c";
    let file = repo.dir.path().join("../rel.env");
    let text = format!("APP_NAME=rel\nDB_PASSWORD={secret}\n# a comment\nexport MAIL_HOST=mail\n");
    std::fs::write(&file, &text).expect("write");
    let file_arg = file.to_string_lossy().into_owned();
    let push = expect(&run(&repo, &app, &["env", "push", "rel", &file_arg]), 0);
    assert!(
        push.contains(".env with 3 keys is on fleet-1, fleet-2"),
        "{push}"
    );
    for server in SERVERS {
        let got = repo.ssh(
            server,
            "stat -c '%U %a' /home/rel/shared/.env; cat /home/rel/shared/.env; test -s /home/rel/current/env-ran.txt && echo ran",
        );
        assert_eq!(got, format!("rel 600\n{text}ran\n"), "{server}");
    }

    let pulled = run(&repo, &app, &["env", "pull", "rel", "--server", "fleet-2"]);
    expect(&pulled, 0);
    assert_eq!(String::from_utf8_lossy(&pulled.stdout), text);

    let changed = format!("DB_PASSWORD={secret}-new\nMAIL_HOST=mail\nQUEUE=redis\n");
    std::fs::write(&file, &changed).expect("write");
    let diff = expect(&run(&repo, &app, &["env", "diff", "rel", &file_arg]), 2);
    for line in [
        "fleet-1:",
        "fleet-2:",
        "  - APP_NAME",
        "  ~ DB_PASSWORD",
        "  + QUEUE",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line:?} in {diff}");
    }
    assert!(
        !diff.contains("MAIL_HOST"),
        "unchanged keys are not listed: {diff}"
    );
    for output in [
        &push,
        &diff,
        &String::from_utf8_lossy(&pulled.stderr).into_owned(),
    ] {
        assert!(!output.contains(secret), "a value leaked: {output}");
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn logs_from_two_servers_come_back_merged_and_follow_shows_new_lines() {
    let app = AppRepo::new();
    app.commit("l1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    // shared/ outlives a test: start from an empty log.
    for server in SERVERS {
        repo.ssh(server, "rm -f /home/rel/shared/storage/logs/laravel.log");
    }
    let write = |server: &str, lines: &str| {
        repo.ssh(
            server,
            &format!(
                "setpriv --reuid=rel --regid=rel --init-groups sh -c \
                 'printf \"%s\" \"$1\" >> /home/rel/shared/storage/logs/laravel.log' _ '{lines}'"
            ),
        );
    };
    write(
        "fleet-1",
        "[2030-01-02 10:00:01] local.INFO: one\n[2030-01-02 10:00:03] local.INFO: three\n#0 trace of three\n",
    );
    write(
        "fleet-2",
        "[2030-01-02 10:00:02] local.INFO: two\n[2030-01-02 10:00:04] local.INFO: four\n",
    );
    let out = expect(&run(&repo, &app, &["logs", "rel", "-n", "10"]), 0);
    let ours: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("laravel.log") && l.contains("2030-01-02") || l.contains("#0 trace"))
        .collect();
    assert_eq!(ours.len(), 5, "{out}");
    for (line, (server, text)) in ours.iter().zip([
        ("fleet-1", "one"),
        ("fleet-2", "two"),
        ("fleet-1", "three"),
        ("fleet-1", "#0 trace of three"),
        ("fleet-2", "four"),
    ]) {
        assert!(line.starts_with(&format!("{server} laravel.log")), "{line}");
        assert!(line.ends_with(text), "{line}");
    }

    // --follow shows a line written after it started.
    let mut follow = Killed(
        reconciler(&repo, &app, &["logs", "rel", "--follow", "-n", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("logs --follow"),
    );
    let stdout = follow.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    write(
        "fleet-2",
        "[2030-01-02 10:00:05] local.INFO: five, followed\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.ends_with("five, followed") => {
                assert!(line.starts_with("fleet-2 laravel.log"), "{line}");
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("--follow did not show the new line"),
        }
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn links_the_app_plants_give_it_nothing_through_env_or_logs() {
    let app = AppRepo::new();
    app.commit("a1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let shadow = |server: &str| repo.ssh(server, "sha256sum /etc/shadow");
    let before = shadow("fleet-1");

    // As the app: its .env and a log become links to root's secrets.
    repo.ssh(
        "fleet-1",
        "setpriv --reuid=rel --regid=rel --init-groups sh -c \
         'rm -f /home/rel/shared/.env && ln -s /etc/shadow /home/rel/shared/.env && \
          ln -sf /etc/shadow /home/rel/shared/storage/logs/evil.log'",
    );
    let pulled = run(&repo, &app, &["env", "pull", "rel", "--server", "fleet-1"]);
    let text = expect(&pulled, 1);
    assert!(
        text.contains("rel cannot read /home/rel/shared/.env"),
        "{text}"
    );
    assert!(!text.contains("root:"), "{text}");
    let logs = expect(
        &run(&repo, &app, &["logs", "rel", "--server", "fleet-1"]),
        0,
    );
    assert!(
        !logs.contains("evil.log") && !logs.contains("root:"),
        "{logs}"
    );

    // A push replaces the link; what it pointed at is untouched.
    let file = repo.dir.path().join("../links.env");
    std::fs::write(&file, "APP_NAME=rel\n").expect("write");
    expect(
        &run(
            &repo,
            &app,
            &["env", "push", "rel", &file.to_string_lossy()],
        ),
        0,
    );
    assert_eq!(shadow("fleet-1"), before);
    assert_eq!(
        repo.ssh("fleet-1", "stat -c '%F %U %a' /home/rel/shared/.env"),
        "regular file rel 600\n"
    );
}
