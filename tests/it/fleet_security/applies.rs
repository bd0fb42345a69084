//! Applies that are killed, concurrent or fail: they finish or are repaired.

use super::*;

/// A worker that ignores SIGTERM: supervisor needs its whole `stop_wait` to
/// stop it, so an apply that changes it takes that long on the server.
fn slow_worker(repo: &Repo, app: &str, server: &str, tag: &str) {
    web_app(
        repo,
        app,
        server,
        &format!(
            "    workers: [{{ name: w, command: \"trap '' TERM; echo {tag}; sleep 600\", stop_wait: 6 }}]\n"
        ),
    );
}

/// The app `steady` applied on `server` with its slow worker running.
fn steady_running(repo: &Repo, server: &str) {
    slow_worker(repo, "steady", server, "one");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(repo, server, "steady");
    repo.ssh(
        server,
        "supervisorctl start steady-w:* >/dev/null 2>&1 || true; sleep 1",
    );
}

fn spawn_apply(repo: &Repo, dir: &Path) -> std::process::Child {
    common::reconciler()
        .args(["apply", "--yes", "--now", "--color", "never", "-d"])
        .arg(dir)
        .arg("--known-hosts")
        .arg(&repo.fleet.known_hosts)
        .arg("--ssh-key")
        .arg(&repo.fleet.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run reconciler")
}

/// Waits until no apply holds the host, for at most `limit`.
fn wait_for_no_apply(repo: &Repo, server: &str, limit: Duration) {
    let started = Instant::now();
    while started.elapsed() < limit {
        let busy = repo.ssh(
            server,
            "test -e /var/lib/reconciler/journal && echo busy; \
             flock -n /var/lib/reconciler/lock true || echo busy",
        );
        if busy.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("an apply was still running on {server} after {limit:?}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_killed_client_leaves_an_apply_that_finishes_on_the_server() {
    let repo = Repo::new(&["fleet-2"]);
    steady_running(&repo, "fleet-2");

    // The next apply stops the old worker, which takes 6 s on the server;
    // the client is killed one second in.
    slow_worker(&repo, "steady", "fleet-2", "two");
    let mut child = spawn_apply(&repo, repo.dir.path());
    std::thread::sleep(Duration::from_secs(2));
    child.kill().expect("SIGKILL");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(9));
    wait_for_no_apply(&repo, "fleet-2", Duration::from_secs(30));
    let log = repo.ssh("fleet-2", "tail -n1 /var/lib/reconciler/apply.log");
    assert!(log.contains("\"result\":\"applied\""), "{log}");
    assert!(log.contains("supervisor:steady"), "{log}");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_killed_apply_is_shown_by_the_next_plan_and_repaired_by_the_next_apply() {
    let repo = Repo::new(&["fleet-2"]);
    steady_running(&repo, "fleet-2");

    // This time the worker on the server is killed half-way.
    slow_worker(&repo, "steady", "fleet-2", "two");
    let child = spawn_apply(&repo, repo.dir.path());
    std::thread::sleep(Duration::from_secs(2));
    repo.ssh(
        "fleet-2",
        "pkill -KILL -f '^bash /var/lib/reconciler/run/apply' || true; \
         pkill -KILL -f 'supervisorctl update' || true",
    );
    let _ = child.wait_with_output();
    let plan = repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("interrupted apply"), "{plan}");
    assert!(
        plan.contains("/etc/supervisor/conf.d/steady.conf"),
        "{plan}"
    );
    let out = repo.run_expect(&["apply", "--yes", "--now"], 0);
    assert!(out.contains("fleet-2: applied"), "{out}");
    assert_eq!(
        repo.ssh(
            "fleet-2",
            "test -e /var/lib/reconciler/journal || echo gone"
        ),
        "gone\n"
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn two_applies_at_once_never_interleave() {
    let first = Repo::new(&["fleet-3"]);
    steady_running(&first, "fleet-3");

    // Two people change the same app differently at the same time.
    slow_worker(&first, "steady", "fleet-3", "two");
    let second = Repo::new(&["fleet-3"]);
    slow_worker(&second, "steady", "fleet-3", "three");
    let a = spawn_apply(&first, first.dir.path());
    std::thread::sleep(Duration::from_millis(500));
    let b = spawn_apply(&second, second.dir.path());
    let (a, b) = (
        a.wait_with_output().expect("a"),
        b.wait_with_output().expect("b"),
    );
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(a.status.code(), Some(0), "{}", text(&a));
    let b_out = text(&b);
    // The second either waited for the first and then applied what its
    // plan showed (the first had finished with exactly the files it saw),
    // or found the server changed since its plan and did nothing.
    let (expected, entries) = match b.status.code() {
        Some(0) => ("echo three", 2),
        Some(1) => {
            assert!(
                b_out.contains("the server changed since the plan"),
                "{b_out}"
            );
            ("echo two", 1)
        }
        other => panic!("{other:?}: {b_out}"),
    };
    assert!(!b_out.contains("interrupted apply"), "{b_out}");
    let log = first.ssh(
        "fleet-3",
        &format!("tail -n {entries} /var/lib/reconciler/apply.log"),
    );
    let runs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    for pair in runs.windows(2) {
        assert!(
            pair[0]["time"].as_str() <= pair[1]["started"].as_str(),
            "applies overlapped: {log}"
        );
    }
    assert!(runs.iter().all(|r| r["result"] == "applied"), "{log}");
    let conf = first.ssh("fleet-3", "cat /etc/supervisor/conf.d/steady.conf");
    assert!(conf.contains(expected), "{conf}");
    let last = if entries == 2 { &second } else { &first };
    last.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_apply_failure_shows_its_real_cause() {
    let repo = Repo::new(&["fleet-3"]);
    repo.write(
        "apps/cronly.yaml",
        "name: cronly\ncluster: fleet\nrepo: /srv/cronly.git\nphp: \"8.2\"\n\
         servers: [{ name: fleet-3, scheduler: true }]\n",
    );
    // /sys is mounted read-only in the container: /etc/cron.d on it. A
    // copy, not a rename: on the containers' overlayfs, renaming a
    // directory that hides one of the image can bring the image's back.
    repo.ssh(
        "fleet-3",
        "set -e; rm -f /etc/cron.d/cronly; rm -rf /etc/cron.d.saved\n\
         cp -a /etc/cron.d /etc/cron.d.saved; rm -rf /etc/cron.d; ln -s /sys/kernel /etc/cron.d",
    );
    let out = {
        let _restore = Restore {
            repo: &repo,
            server: "fleet-3",
            script: "rm -f /etc/cron.d && mv -T /etc/cron.d.saved /etc/cron.d",
        };
        repo.run(&["apply", "--yes", "--now"])
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("fleet-3: error: cannot write /etc/cron.d/cronly"),
        "{stdout}"
    );
    assert!(stdout.contains("Read-only file system"), "{stdout}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_interrupted_reconciler_leaves_no_ssh_master_behind() {
    let repo = Repo::new(&["fleet-1"]);
    web_app(&repo, "plain", "fleet-1", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    // Hold the host lock so that the next apply waits on the server.
    let mut holder = repo
        .server("fleet-1")
        .ssh_command(&repo.fleet)
        .arg("flock --no-fork /var/lib/reconciler/lock sleep 60")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hold the lock");
    web_app(&repo, "plain", "fleet-1", "    scheduler: true\n");
    for (signal, code) in [("TERM", 143), ("INT", 130), ("KILL", 0)] {
        let control = tempfile::tempdir_in("/tmp").expect("tempdir");
        let child = common::reconciler()
            .args([
                "apply",
                "--yes",
                "--lock-wait",
                "60",
                "--color",
                "never",
                "-d",
            ])
            .arg(repo.dir.path())
            .arg("--known-hosts")
            .arg(&repo.fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&repo.fleet.key)
            .env("TMPDIR", control.path())
            .env_remove("XDG_RUNTIME_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run reconciler");
        std::thread::sleep(Duration::from_secs(2));
        let pid = child.id().to_string();
        Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        let status = child.wait_with_output().expect("wait").status;
        if code != 0 {
            assert_eq!(status.code(), Some(code), "{signal}");
        }
        let masters = |dir: &Path| {
            let out = Command::new("pgrep")
                .args(["-f", &dir.to_string_lossy()])
                .output()
                .expect("pgrep");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        if signal == "KILL" {
            // No destructor ran: the master exits by itself once idle.
            let started = Instant::now();
            while !masters(control.path()).is_empty() && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(500));
            }
            println!("master gone {:?} after SIGKILL", started.elapsed());
        } else {
            std::thread::sleep(Duration::from_millis(500));
            let left: Vec<_> = std::fs::read_dir(control.path()).expect("list").collect();
            assert!(
                left.is_empty(),
                "{signal}: control directories left: {left:?}"
            );
        }
        assert_eq!(
            masters(control.path()),
            "",
            "{signal}: an ssh master is left"
        );
    }
    let _ = holder.kill();
    let _ = holder.wait();
    repo.ssh("fleet-1", "pkill -xf 'sleep 60' || true");
}

/// Runs `script` on `server` when dropped: puts back what a test broke,
/// even when it fails.
struct Restore<'a> {
    repo: &'a Repo,
    server: &'a str,
    script: &'a str,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let out = self
            .repo
            .server(self.server)
            .ssh(&self.repo.fleet, self.script);
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "{}: cannot restore: {}",
                self.server,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
