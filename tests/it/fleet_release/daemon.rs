//! What the daemon keeps true about releases, and what its status says
//! when it cannot: every app's intended release live on every server,
//! checked on each commit and drift check (issue 20).

use super::*;

/// `reconciler watch` on the definitions in `repo` (a git repository on
/// `main`), checking every server every `drift` seconds with `mode`; its
/// status and stderr in `state`.
pub(super) fn watch(repo: &Repo, state: &Path, drift: &str, mode: &str) -> Killed {
    watch_at(
        repo,
        repo.dir.path(),
        state,
        &["--drift-interval", drift, "--drift", mode],
    )
}

/// `watch` checking every server every 10 minutes under `correct`, with
/// more `args`.
pub(super) fn watch_with(repo: &Repo, state: &Path, args: &[&str]) -> Killed {
    let mut all = vec!["--drift-interval", "10m", "--drift", "correct"];
    all.extend_from_slice(args);
    watch_at(repo, repo.dir.path(), state, &all)
}

/// `reconciler watch` following the definitions repository `at`, with
/// the fleet's SSH settings and `args`; its stderr in `state`/watch.log.
fn watch_at(repo: &Repo, at: &Path, state: &Path, args: &[&str]) -> Killed {
    let log = std::fs::File::create(state.join("watch.log")).expect("log");
    Killed(
        common::reconciler()
            .args(["watch", "--interval", "1s", "--color", "never"])
            .args(args)
            .arg("--repo")
            .arg(at)
            .arg("--state-dir")
            .arg(state)
            .arg("--known-hosts")
            .arg(&repo.fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&repo.fleet.key)
            .env("RUST_LOG", "reconciler=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("watch"),
    )
}

/// `reconciler status --state-dir STATE --format json`: its exit code and
/// document.
fn status(state: &Path) -> (i32, serde_json::Value) {
    let out = common::reconciler()
        .args(["status", "--format", "json", "--state-dir"])
        .arg(state)
        .output()
        .expect("status");
    // Before the daemon writes its first status there is none: `null`.
    let document = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), document)
}

/// The kinds of problem the status shows.
fn problems(document: &serde_json::Value) -> Vec<String> {
    document["problems"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| p["kind"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until `done` holds of the status, or panics with the status and
/// the daemon's log.
pub(super) fn wait_status(
    state: &Path,
    within: Duration,
    done: impl Fn(i32, &serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + within;
    loop {
        let (code, document) = status(state);
        if done(code, &document) {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(state.join("watch.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "status not reached after {within:?}: exit {code}\n{document:#}\n--- log (newest first)\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Waits until both servers serve `id`, or panics with the daemon's log.
pub(super) fn wait_serving_in(repo: &Repo, state: &Path, id: &str, within: Duration) {
    wait_serving_or(repo, id, within, || {
        let log = std::fs::read_to_string(state.join("watch.log")).unwrap_or_default();
        // The apps' lines: the hosts' checks repeat every few seconds.
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .filter(|l| !l.contains("host{") && !l.contains("reconcile{"))
            .take(60)
            .collect();
        format!("--- log (newest first)\n{}", tail.join("\n"))
    });
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn pins_in_quick_succession_end_on_the_last_and_a_rebuilt_server_gets_the_live_release() {
    let app = AppRepo::new();
    app.commit("q1", &[]);
    git(app.dir.path(), &["tag", "v1"]);
    let v2 = app.commit("q2", &[]);
    let v3 = app.commit("q3", &[]);
    let repo = definitions(&app, 5);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    pin(&repo, "v1");
    commit_all(defs, "pin v1");
    let state = tempfile::tempdir().expect("tempdir");
    let _watch = watch(&repo, state.path(), "3s", "correct");
    wait_serving_in(&repo, state.path(), "q1", Duration::from_secs(90));

    // Two commits in quick succession: the second comes while the first
    // one's release holds the app lock, and must still win.
    pin(&repo, &v2);
    commit_all(defs, "pin v2");
    std::thread::sleep(Duration::from_millis(1500));
    pin(&repo, &v3);
    commit_all(defs, "pin v3");
    wait_serving_in(&repo, state.path(), "q3", Duration::from_secs(120));
    assert_eq!(live(&repo, "fleet-1"), format!("releases/{v3}"));
    // Served once switched; done once its health check passed.
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0
            && ["converged", "repaired"]
                .contains(&s["apps"]["rel"]["state"].as_str().unwrap_or_default())
    });

    // A rebuilt server: its releases gone; the daemon gives it the live
    // release at its next check, without a commit.
    repo.ssh(
        "fleet-2",
        "rm -rf /home/rel/current /home/rel/releases/* /var/lib/reconciler/apps/rel/complete",
    );
    assert_ne!(page(&repo, "fleet-2").0, 200, "the release is gone");
    wait_serving_in(&repo, state.path(), "q3", Duration::from_secs(90));
    assert_eq!(live(&repo, "fleet-2"), format!("releases/{v3}"));
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0
            && ["converged", "repaired"]
                .contains(&s["apps"]["rel"]["state"].as_str().unwrap_or_default())
    });
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_split_fleet_is_reported_under_warn_and_converged_under_correct() {
    let app = AppRepo::new();
    let v1 = app.commit("s1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let v2 = app.commit("s2", &[]);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert_serves(&repo, "s2");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "definitions");
    let state = tempfile::tempdir().expect("tempdir");
    let warn = watch(&repo, state.path(), "2s", "warn");
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["apps"]["rel"]["state"] == "converged"
    });

    // fleet-2 back on the first release, as a server that missed the
    // switch back of a failed release would be.
    repo.ssh(
        "fleet-2",
        &format!(
            "runuser -u rel -- sh -c 'ln -sfn releases/{v1} /home/rel/current.new && mv -T /home/rel/current.new /home/rel/current'"
        ),
    );
    assert_eq!(page(&repo, "fleet-2"), (200, "s1 s1".into()));

    // --drift warn: reported at the next check (status exits 1), left
    // alone.
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 1
            && s["apps"]["rel"]["state"] == "diverged"
            && problems(s).contains(&"release-diverged".to_owned())
    });
    let (_, document) = status(state.path());
    let message = document["apps"]["rel"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains(&format!("fleet-2 runs {}", &v1[..12])),
        "{message}"
    );
    assert_eq!(page(&repo, "fleet-2"), (200, "s1 s1".into()), "left alone");
    let kept = std::fs::read_to_string(state.path().join("status.json")).expect("status");
    assert!(kept.contains("release-diverged"), "{kept}");
    drop(warn);

    // --drift correct: every server on the newest release that went live.
    let _correct = watch(&repo, state.path(), "2s", "correct");
    wait_serving_in(&repo, state.path(), "s2", Duration::from_secs(90));
    assert_eq!(live(&repo, "fleet-2"), format!("releases/{v2}"));
    // Served once switched; logged once its health check passed.
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["apps"]["rel"]["state"] == "repaired"
    });
    let log = repo.ssh(
        "fleet-2",
        "tail -n1 /var/lib/reconciler/apps/rel/release.log",
    );
    assert!(
        log.contains(r#""trigger":"repair""#),
        "{log}\n{}",
        std::fs::read_to_string(state.path().join("watch.log")).unwrap_or_default()
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn status_exits_non_zero_for_a_failing_fetch_a_missing_branch_a_failed_pin_and_a_dead_daemon() {
    let app = AppRepo::new();
    app.commit("f1", &[]);
    let repo = definitions(&app, 5);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_all(defs, "definitions");
    // The daemon follows a bare clone, which the test can break.
    let remote = tempfile::tempdir().expect("tempdir");
    let bare = remote.path().join("defs.git");
    git(
        defs,
        &["clone", "-q", "--bare", ".", bare.to_str().expect("utf-8")],
    );
    git(
        defs,
        &["remote", "add", "origin", bare.to_str().expect("utf-8")],
    );
    let state = tempfile::tempdir().expect("tempdir");
    let mut daemon = watch_at(&repo, &bare, state.path(), &[]);
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["last_good"].is_object()
    });

    // A pin to a revision that does not exist: reported, exit 1.
    pin(&repo, "no-such-tag");
    commit_all(defs, "pin nothing");
    git(defs, &["push", "-q", "origin", "main"]);
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 1 && problems(s).contains(&"release-failed".to_owned())
    });
    let (_, document) = status(state.path());
    let message = document["apps"]["rel"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("no-such-tag"), "{message}");

    // The branch deleted on the remote: named, and not shown as the head.
    git(defs, &["push", "-q", "origin", "main:other"]);
    git(
        Path::new(&bare),
        &["symbolic-ref", "HEAD", "refs/heads/other"],
    );
    git(Path::new(&bare), &["branch", "-D", "main"]);
    wait_status(state.path(), Duration::from_secs(30), |code, s| {
        code == 1 && problems(s).contains(&"branch-missing".to_owned()) && s["head"].is_null()
    });

    // The repository gone: fetching fails, with since when.
    std::fs::rename(&bare, remote.path().join("moved.git")).expect("move");
    wait_status(state.path(), Duration::from_secs(30), |code, s| {
        code == 1
            && problems(s).contains(&"fetch-failing".to_owned())
            && s["fetch_failing_since"].is_string()
    });

    // The daemon killed: the status it left is stale, exit 1.
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let (code, document) = status(state.path());
    assert_eq!(code, 1, "{document:#}");
    assert_eq!(
        problems(&document).first().map(String::as_str),
        Some("stale"),
        "{document:#}"
    );
    let text = common::reconciler()
        .args(["status", "--state-dir"])
        .arg(state.path())
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("is not running"), "{text}");
}

/// A commit whose page answers 500 (its health check fails), printing
/// `id id`.
fn unhealthy(app: &AppRepo, id: &str) -> String {
    app.commit(
        id,
        &[(
            "public/index.php",
            &format!("<?php http_response_code(500); echo '{id} {id}';\n"),
        )],
    )
}

/// Waits until `server` answers `id id` (whatever the status).
pub(super) fn wait_body(repo: &Repo, server: &str, id: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while page(repo, server).1 != format!("{id} {id}") {
        assert!(Instant::now() < deadline, "{server} never served {id}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The last line of `server`'s release log of `rel`.
pub(super) fn last_log_line(repo: &Repo, server: &str) -> serde_json::Value {
    let line = repo.ssh(server, "tail -n1 /var/lib/reconciler/apps/rel/release.log");
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn sigterm_during_a_pinned_releases_health_check_goes_back_logs_it_and_exits() {
    let app = AppRepo::new();
    let good = app.commit("t1", &[]);
    let bad = unhealthy(&app, "t2");
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel", &good]), 0);
    assert_serves(&repo, "t1");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    pin(&repo, &good);
    commit_all(defs, "pin the good one");
    let state = tempfile::tempdir().expect("tempdir");
    let mut daemon = watch(&repo, state.path(), "10m", "correct");
    wait_status(state.path(), Duration::from_secs(60), |code, s| {
        code == 0 && s["apps"]["rel"]["state"] == "converged"
    });

    // The pin moves to a release whose health check fails; SIGTERM once
    // it is live, during its health check.
    pin(&repo, &bad);
    commit_all(defs, "pin the bad one");
    wait_body(&repo, "fleet-1", "t2", Duration::from_secs(60));
    let pid = daemon.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(exit) = daemon.0.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not exit within 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "{exit:?}");
    // It finished what it started: back on the good release, logged.
    assert_serves(&repo, "t1");
    for server in SERVERS {
        let line = last_log_line(&repo, server);
        assert_eq!(line["sha"], bad.as_str(), "{server}: {line}");
        assert_eq!(line["result"], "rolled-back", "{server}: {line}");
        let in_flight = repo.ssh(
            server,
            "test -e /var/lib/reconciler/apps/rel/in-flight && echo left || echo none",
        );
        assert_eq!(in_flight.trim(), "none", "{server}");
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn ctrl_c_of_release_during_its_health_check_goes_back_and_logs_it() {
    let app = AppRepo::new();
    app.commit("c1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let bad = unhealthy(&app, "c2");
    let release = reconciler(&repo, &app, &["release", "rel"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("release");
    wait_body(&repo, "fleet-1", "c2", Duration::from_secs(60));
    let pid = release.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let out = release.wait_with_output().expect("release");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert_serves(&repo, "c1");
    for server in SERVERS {
        let line = last_log_line(&repo, server);
        assert_eq!(line["sha"], bad.as_str(), "{server}: {line}\n{text}");
        assert_eq!(line["result"], "rolled-back", "{server}: {line}\n{text}");
    }
}

/// A small deterministic generator (a seed printed by the test reproduces
/// a run).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_daemon_killed_at_random_moments_converges_and_says_so_only_then() {
    const KILLS: usize = 20;
    let app = AppRepo::new();
    let revisions: Vec<(String, &str)> = ["k1", "k2", "k3"]
        .into_iter()
        .map(|id| (app.commit(id, &[]), id))
        .collect();
    let repo = definitions(&app, 3);
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    pin(&repo, &revisions[0].0);
    commit_all(defs, "start");
    let seed = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    eprintln!("chaos seed {seed} (CHAOS_SEED={seed} repeats this run)");
    let mut rng = Lcg(seed);
    let state = tempfile::tempdir().expect("tempdir");
    let app_file = defs.join("apps/rel.yaml");
    let mut pinned = 0;
    for kill in 0..KILLS {
        // A commit (a new pin, a pool setting, or both) now and then, so
        // that kills land in applies, releases and their health checks.
        let change = rng.below(4);
        if change & 1 == 1 {
            pinned = usize::try_from(rng.below(3)).expect("small");
            pin(&repo, &revisions[pinned].0);
        }
        if change & 2 == 2 {
            let yaml = std::fs::read_to_string(&app_file).expect("app");
            let yaml = if yaml.contains("max_workers: 8") {
                yaml.replacen("max_workers: 8", "max_workers: 9", 1)
            } else {
                yaml.replacen("max_workers: 9", "max_workers: 8", 1)
            };
            std::fs::write(&app_file, yaml).expect("write");
        }
        commit_all(defs, &format!("chaos {kill}"));
        let mut daemon = watch(&repo, state.path(), "2s", "correct");
        std::thread::sleep(Duration::from_millis(300 + rng.below(2500)));
        let _ = daemon.0.kill();
        let _ = daemon.0.wait();
    }

    // Once more, left running: status says 0 only when every server runs
    // what the commit in force says.
    let _daemon = watch(&repo, state.path(), "2s", "correct");
    let id = revisions[pinned].1;
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (code, document) = status(state.path());
        if code == 0 {
            let pages = SERVERS.map(|s| page(&repo, s));
            assert!(
                pages.iter().all(|p| *p == (200, format!("{id} {id}"))),
                "status says all is well, but the servers answer {pages:?} (want {id}):\n{document:#}"
            );
            let plan = repo.run(&["plan", "--detailed-exitcode"]);
            assert_eq!(
                plan.status.code(),
                Some(0),
                "status says all is well, but plan finds changes:\n{}\n{document:#}",
                String::from_utf8_lossy(&plan.stdout)
            );
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(state.path().join("watch.log")).unwrap_or_default();
            panic!(
                "not converged after {KILLS} kills (seed {seed}): exit {code}\n{document:#}\n{}",
                log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
