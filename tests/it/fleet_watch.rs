//! `reconciler watch` against the test fleet: a definitions repository made
//! by each test with git, the daemon following it, and its status read over
//! HTTP. These tests change the shared servers, so nextest runs them one at
//! a time with the other fleet tests.

use crate::common;

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Repo, host};
use serde_json::Value;

const SERVERS: [&str; 3] = ["fleet-1", "fleet-2", "fleet-3"];

/// A definitions repository under git on the `main` branch.
struct Definitions {
    repo: Repo,
}

impl Definitions {
    fn new(servers: &[&str]) -> Self {
        let repo = Repo::new(servers);
        git(repo.dir.path(), &["init", "-q", "-b", "main"]);
        Self { repo }
    }

    /// Commits everything; returns the commit id.
    fn commit(&self, message: &str) -> String {
        let dir = self.repo.dir.path();
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
        git(dir, &["rev-parse", "HEAD"]).trim().to_owned()
    }

    /// Adds `yaml` to the cluster, before its servers.
    fn cluster_yaml(&self, yaml: &str) {
        let path = self.repo.dir.path().join("clusters/fleet.yaml");
        let cluster = std::fs::read_to_string(&path).expect("cluster");
        std::fs::write(
            path,
            cluster.replacen("servers:\n", &format!("{yaml}servers:\n"), 1),
        )
        .expect("write");
    }

    /// `beta` on `servers` with a web role and, when `worker` is given, a
    /// worker running it that ignores SIGTERM: supervisord waits its 4 s
    /// `stop_wait` for it on every restart, so an apply that changes it
    /// takes that long.
    fn beta(&self, servers: &[&str], worker: Option<&str>) {
        let mut yaml = String::from(
            "name: beta\ncluster: fleet\nrepo: https://git.example.com/beta.git\nphp: \"8.2\"\n\
             domains: [beta.test]\nservers:\n",
        );
        for server in servers {
            yaml.push_str(&format!(
                "  - name: {server}\n    web: {{ max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }}\n"
            ));
            if let Some(worker) = worker {
                yaml.push_str(&format!(
                    "    workers:\n      - {{ name: slow, command: 'trap \"\" TERM; exec sleep {worker}', processes: 1, stop_wait: 4 }}\n"
                ));
            }
        }
        self.repo.write("apps/beta.yaml", &yaml);
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free port on loopback for the daemon to listen on.
fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A running `reconciler watch`, stopped (SIGKILL) when dropped.
struct Daemon {
    child: Option<Child>,
    addr: SocketAddr,
    state: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts the daemon on `defs` with its state in `state` and `extra`
    /// arguments; a 1 s interval unless `extra` says otherwise.
    fn start(defs: &Definitions, state: &Path, extra: &[&str]) -> Daemon {
        Self::start_with_open_files(defs, state, extra, None)
    }

    /// `start`, with the soft limit of open files set to `nofile` first
    /// when given.
    fn start_with_open_files(
        defs: &Definitions,
        state: &Path,
        extra: &[&str],
        nofile: Option<u64>,
    ) -> Daemon {
        std::fs::create_dir_all(state).expect("state dir");
        let addr = free_port();
        let log = state.join(format!("watch-{}.log", addr.port()));
        let fleet = &defs.repo.fleet;
        let binary = common::BIN;
        let mut command = match nofile {
            // The shell lowers the limit, then becomes reconciler.
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .arg("watch")
            .arg("--repo")
            .arg(defs.repo.dir.path())
            .arg("--state-dir")
            .arg(state)
            .args(["--listen", &addr.to_string(), "--log-format", "json"])
            .arg("--known-hosts")
            .arg(&fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&fleet.key);
        if !extra.contains(&"--interval") {
            command.args(["--interval", "1s"]);
        }
        let child = command
            .args(extra)
            .env("RUST_LOG", "reconciler=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start reconciler watch");
        let daemon = Daemon {
            child: Some(child),
            addr,
            state: state.to_owned(),
            log,
        };
        daemon.wait_for(
            "the status address to answer",
            Duration::from_secs(20),
            |_| true,
        );
        daemon
    }

    fn get(&self, path: &str) -> Result<common::HttpResponse, String> {
        common::http(self.addr, "GET", path, &[], b"")
    }

    fn metrics(&self) -> String {
        self.get("/metrics").unwrap_or_else(|e| self.fail(&e)).body
    }

    /// Polls the status until `done` holds; panics after `limit`, showing
    /// the last status and the daemon's log.
    fn wait_for(&self, what: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let last = match self.get("/v1/status") {
                Ok(response) if response.status == 200 => {
                    let status: Value = serde_json::from_str(&response.body).expect("status JSON");
                    if done(&status) {
                        return status;
                    }
                    format!("{status:#}")
                }
                Ok(response) => format!("{} {}", response.status, response.body),
                Err(error) => error,
            };
            if started.elapsed() > limit {
                self.fail(&format!(
                    "waited {limit:?} for {what}; last status:\n{last}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every host in `servers` has applied `commit`.
    fn wait_converged(&self, commit: &str, servers: &[&str], limit: Duration) -> Value {
        self.wait_for(&format!("{servers:?} to apply {commit}"), limit, |s| {
            servers.iter().all(|server| {
                s["hosts"][server]["last_applied_commit"] == commit
                    && s["hosts"][server]["failures"] == 0
            })
        })
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `limit`).
    fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!("did not stop within {limit:?} of SIGTERM"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn fail(&self, message: &str) -> ! {
        let log = self.log_text();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "watch on {}: {message}\n--- the daemon's log (last 40 lines)\n{}",
            self.addr,
            tail.join("\n")
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `reconciler status` with `args`.
fn status_command(args: &[&str]) -> Output {
    common::reconciler()
        .arg("status")
        .args(args)
        .args(["--color", "never"])
        .output()
        .expect("run reconciler status")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The apply log of `server`: one JSON object per apply.
fn apply_log(repo: &Repo, server: &str) -> Vec<Value> {
    repo.ssh(
        server,
        "cat /var/lib/reconciler/apply.log 2>/dev/null || true",
    )
    .lines()
    .map(|line| serde_json::from_str(line).expect("apply log line"))
    .collect()
}

fn max_children(repo: &Repo, server: &str) -> String {
    repo.ssh(
        server,
        "sed -n 's/^pm.max_children = //p' /etc/php/8.2/fpm/pool.d/alpha.conf",
    )
    .trim()
    .to_owned()
}

/// Starts the server again when the test ends, whatever happened.
struct Stopped<'a>(&'a str);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = fleet_script(&["start", self.0]);
    }
}

fn fleet_script(args: &[&str]) -> Output {
    Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/fleet"))
        .args(args)
        .output()
        .expect("run tests/fleet/fleet")
}

/// Waits until a plan of `server` shows an apply running there.
fn wait_for_an_apply_on(repo: &Repo, server: &str, limit: Duration) -> String {
    let started = Instant::now();
    loop {
        let out = repo.run(&["plan", "--server", server, "--format", "json"]);
        if let Ok(plan) = serde_json::from_slice::<Value>(&out.stdout)
            && let Some(holder) = host(&plan, server)["locked_by"].as_str()
        {
            return holder.to_owned();
        }
        assert!(
            started.elapsed() < limit,
            "no apply ran on {server} within {limit:?}"
        );
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn commits_converge_an_invalid_commit_changes_nothing_and_a_fix_applies() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.cluster_yaml("fpm_reload: immediate\n");
    repo.app("alpha", &SERVERS, 3, "");
    let first = defs.commit("alpha on three servers");
    let state = tempfile::tempdir().expect("state");
    let mut daemon = Daemon::start(&defs, state.path(), &[]);
    daemon.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);

    // A change converges within an interval or two (1 s each).
    repo.app("alpha", &SERVERS, 4, "");
    let second = defs.commit("alpha: 4 workers");
    let started = Instant::now();
    daemon.wait_converged(&second, &SERVERS, Duration::from_secs(30));
    let took = started.elapsed();
    for server in SERVERS {
        assert_eq!(max_children(repo, server), "4", "{server}");
        // Loaded, not only written: no reload waits.
        let pending = &daemon.wait_for("the status", Duration::ZERO, |_| true)["hosts"][server]["pending_reloads"];
        assert_eq!(pending, &serde_json::json!([]), "{server}");
    }
    assert!(took < Duration::from_secs(15), "{took:?}");

    // An invalid commit is rejected whole: its file:line and commit id in
    // the status, nothing of it on any server.
    let applies: Vec<usize> = SERVERS.iter().map(|s| apply_log(repo, s).len()).collect();
    let yaml = std::fs::read_to_string(repo.dir.path().join("apps/alpha.yaml")).expect("alpha");
    repo.write(
        "apps/alpha.yaml",
        &yaml
            .replace("max_workers: 4", "max_workers: 9")
            .replace("php: \"8.2\"", "php: [8.2"),
    );
    let broken = defs.commit("alpha: 9 workers, and a typo");
    let status = daemon.wait_for(
        "the broken commit to be rejected",
        Duration::from_secs(30),
        |s| s["last_rejected"]["commit"] == broken.as_str(),
    );
    let errors = status["last_rejected"]["errors"]
        .as_array()
        .expect("errors");
    assert!(
        errors[0]
            .as_str()
            .is_some_and(|e| e.starts_with("apps/alpha.yaml:5:")),
        "{errors:?}"
    );
    assert_eq!(status["last_good"]["commit"], second.as_str());
    assert_eq!(status["head"], broken.as_str());
    common::assert_follows(include_str!("../../schemas/status.schema.json"), &status);
    std::thread::sleep(Duration::from_secs(3)); // a few more intervals
    for (server, before) in SERVERS.iter().zip(&applies) {
        assert_eq!(max_children(repo, server), "4", "{server}");
        assert_eq!(
            apply_log(repo, server).len(),
            *before,
            "{server} was applied to"
        );
    }
    assert!(
        daemon
            .metrics()
            .contains("\nreconciler_rejected_commits_total 1\n"),
        "{}",
        daemon.metrics()
    );

    // `reconciler status` says the same, from the daemon and from its
    // state, and fails while the head is rejected.
    let url = format!("http://{}", daemon.addr);
    let out = status_command(&["--url", &url]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&broken[..12]), "{text}");
    assert!(text.contains("apps/alpha.yaml:5:"), "{text}");
    assert!(text.contains(&second[..12]), "{text}");
    let out = status_command(&[
        "--state-dir",
        &daemon.state.to_string_lossy(),
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let saved: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(saved["last_rejected"]["commit"], broken.as_str());

    // The fix applies normally.
    repo.app("alpha", &SERVERS, 6, "");
    let fixed = defs.commit("alpha: 6 workers");
    daemon.wait_converged(&fixed, &SERVERS, Duration::from_secs(30));
    for server in SERVERS {
        assert_eq!(max_children(repo, server), "6", "{server}");
    }
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    assert!(stdout_of(&status_command(&["--url", &url])).contains(&fixed[..12]));
    let status = daemon.terminate(Duration::from_secs(30));
    assert!(status.success(), "{status}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn drift_is_only_reported_with_warn_and_corrected_with_correct() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let commit = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let mut warn = Daemon::start(
        &defs,
        state.path(),
        &["--drift", "warn", "--drift-interval", "1s"],
    );
    warn.wait_converged(&commit, &servers, Duration::from_secs(60));

    repo.ssh(
        "fleet-2",
        "sed -i 's/^pm.max_children = 3$/pm.max_children = 30/' /etc/php/8.2/fpm/pool.d/alpha.conf",
    );
    let status = warn.wait_for("the drift to be reported", Duration::from_secs(20), |s| {
        s["hosts"]["fleet-2"]["drift"] == 1
    });
    assert_eq!(status["hosts"]["fleet-2"]["last_result"], "drift");
    assert_eq!(status["hosts"]["fleet-1"]["drift"], 0);
    assert!(
        warn.metrics()
            .contains("\nreconciler_drift_changes{server=\"fleet-2\"} 1\n"),
        "{}",
        warn.metrics()
    );
    std::thread::sleep(Duration::from_secs(2)); // more drift checks: still left alone
    assert_eq!(max_children(repo, "fleet-2"), "30");
    assert!(warn.terminate(Duration::from_secs(30)).success());

    // The same state directory: the daemon resumes with the commit in
    // force and its first check corrects the edit.
    let correct = Daemon::start(&defs, state.path(), &["--drift-interval", "1s"]);
    let started = Instant::now();
    while max_children(repo, "fleet-2") != "3" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the drift was not corrected"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = correct.wait_for("the host to be clean", Duration::from_secs(20), |s| {
        s["hosts"]["fleet-2"]["drift"] == 0 && s["hosts"]["fleet-2"]["last_result"] == "applied"
    });
    assert_eq!(
        status["hosts"]["fleet-2"]["last_applied_commit"],
        commit.as_str()
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_stopped_server_is_retried_with_backoff_and_converges_when_back() {
    let servers = ["fleet-1", "fleet-2", "fleet-4"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let commit = defs.commit("alpha, fleet-4 included");
    let stopped = fleet_script(&["stop", "fleet-4"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let restart = Stopped("fleet-4");

    let state = tempfile::tempdir().expect("state");
    let daemon = Daemon::start(&defs, state.path(), &[]);
    // The others do not wait for it.
    daemon.wait_converged(&commit, &["fleet-1", "fleet-2"], Duration::from_secs(60));
    let status = daemon.wait_for("fleet-4 to fail twice", Duration::from_secs(60), |s| {
        s["hosts"]["fleet-4"]["failures"].as_u64() >= Some(2)
    });
    let fleet4 = &status["hosts"]["fleet-4"];
    assert_eq!(fleet4["last_result"], "failed");
    assert!(
        fleet4["last_message"]
            .as_str()
            .is_some_and(|m| m.contains("refused")),
        "{fleet4:#}"
    );
    // The next try is later than the last one (backoff), not at once.
    let last: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(fleet4["last_at"].clone()).expect("last_at");
    let retry: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(fleet4["retry_at"].clone()).expect("retry_at");
    assert!(retry - last >= chrono::Duration::seconds(2), "{fleet4:#}");
    assert!(
        daemon
            .metrics()
            .contains("reconciler_failures_total{server=\"fleet-4\"} "),
        "{}",
        daemon.metrics()
    );

    drop(restart); // starts fleet-4 again
    let status = daemon.wait_converged(&commit, &servers, Duration::from_secs(90));
    assert_eq!(status["hosts"]["fleet-4"]["failures"], 0);
    assert!(status["hosts"]["fleet-4"].get("retry_at").is_none());
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn two_watches_never_interleave_and_an_apply_during_one_names_it() {
    let defs = Definitions::new(&SERVERS);
    let repo = &defs.repo;
    defs.beta(&SERVERS, None);
    let first = defs.commit("beta");
    let (state_a, state_b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let a = Daemon::start(&defs, state_a.path(), &[]);
    let b = Daemon::start(&defs, state_b.path(), &[]);
    a.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&first, &SERVERS, Duration::from_secs(60));
    for server in SERVERS {
        common::install_release(repo, server, "beta"); // the worker's directory
    }
    defs.beta(&SERVERS, Some("600"));
    let second = defs.commit("beta: a worker");
    a.wait_converged(&second, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&second, &SERVERS, Duration::from_secs(60));
    let before: Vec<usize> = SERVERS.iter().map(|s| apply_log(repo, s).len()).collect();

    // Restarting the worker takes its 4 s stop_wait: a CLI apply in that
    // time finds the host held and names the watch holding it.
    defs.beta(&SERVERS, Some("601"));
    let third = defs.commit("beta: the worker changed");
    let holder = wait_for_an_apply_on(repo, "fleet-1", Duration::from_secs(20));
    assert!(holder.starts_with("watch "), "{holder}");
    let out = repo.run(&[
        "apply",
        "--yes",
        "--now",
        "--server",
        "fleet-1",
        "--lock-wait",
        "0",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("fleet-1: error: another apply holds this host: watch "),
        "{text}"
    );
    a.wait_converged(&third, &SERVERS, Duration::from_secs(60));
    b.wait_converged(&third, &SERVERS, Duration::from_secs(60));

    // Each change landed once per host, and no two applies overlapped.
    for (server, before) in SERVERS.iter().zip(before) {
        let log = apply_log(repo, server);
        let changed: Vec<&Value> = log[before..]
            .iter()
            .filter(|l| l["revision"] == third.as_str() && l["result"] == "applied")
            .collect();
        assert_eq!(changed.len(), 1, "{server}: {log:#?}");
        let mut spans: Vec<(&str, &str)> = log
            .iter()
            .map(|l| {
                (
                    l["started"].as_str().expect("started"),
                    l["time"].as_str().expect("time"),
                )
            })
            .collect();
        spans.sort();
        for pair in spans.windows(2) {
            assert!(
                pair[0].1 <= pair[1].0,
                "{server}: applies overlap: {pair:?}"
            );
        }
    }
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn sigterm_lets_the_applies_in_flight_finish_and_the_next_start_converges() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    defs.beta(&servers, None);
    let first = defs.commit("beta");
    let state = tempfile::tempdir().expect("state");
    let mut daemon = Daemon::start(&defs, state.path(), &[]);
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));
    for server in servers {
        common::install_release(repo, server, "beta");
    }
    defs.beta(&servers, Some("600"));
    let second = defs.commit("beta: a worker");
    daemon.wait_converged(&second, &servers, Duration::from_secs(60));

    defs.beta(&servers, Some("602"));
    let third = defs.commit("beta: the worker changed");
    wait_for_an_apply_on(repo, "fleet-1", Duration::from_secs(20));
    let started = Instant::now();
    let exit = daemon.terminate(Duration::from_secs(60));
    assert!(exit.success(), "{exit}");
    let log = daemon.log_text();
    assert!(log.contains("waiting for the hosts in flight"), "{log}");
    // It waited for the apply (the worker's 4 s stop) instead of leaving it.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Every server is whole: no apply running or interrupted, and each one
    // that started applying the commit finished it.
    let plan = repo.plan_json();
    for server in servers {
        let host = host(&plan, server);
        assert!(
            host.get("interrupted").is_none_or(Value::is_null),
            "{host:#}"
        );
        assert!(host.get("locked_by").is_none_or(Value::is_null), "{host:#}");
        let applied = apply_log(repo, server)
            .iter()
            .any(|l| l["revision"] == third.as_str());
        let changes = host["changes"].as_array().map_or(0, Vec::len);
        assert_eq!(changes == 0, applied, "{server}: {host:#}");
    }
    assert!(
        apply_log(repo, "fleet-1")
            .iter()
            .any(|l| l["revision"] == third.as_str())
    );

    // The next start converges what is left.
    defs.beta(&servers, Some("603"));
    let fourth = defs.commit("beta: once more");
    let again = Daemon::start(&defs, state.path(), &[]);
    again.wait_converged(&fourth, &servers, Duration::from_secs(60));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_signed_git_hook_converges_at_once_without_waiting_for_the_interval() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    let secret_file = state.path().join("hook-secret");
    let secret = "0123456789abcdef0123456789abcdef";
    std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
    let daemon = Daemon::start(
        &defs,
        &state.path().join("watch"),
        &[
            "--interval",
            "10m",
            "--hook-secret-file",
            &secret_file.to_string_lossy(),
        ],
    );
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));

    repo.app("alpha", &servers, 5, "");
    let second = defs.commit("alpha: 5 workers");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{second}"}}"#);
    let refused = common::http(
        daemon.addr,
        "POST",
        "/v1/hooks/git",
        &[("X-Hub-Signature-256", "sha256=00")],
        body.as_bytes(),
    )
    .expect("hook");
    assert_eq!(refused.status, 401);
    let signature = reconciler::serve::signature(secret.as_bytes(), body.as_bytes());
    let started = Instant::now();
    let accepted = common::http(
        daemon.addr,
        "POST",
        "/v1/hooks/git",
        &[
            ("X-Hub-Signature-256", &signature),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
    .expect("hook");
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    daemon.wait_converged(&second, &servers, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(max_children(repo, "fleet-2"), "5");
}

/// Keeps `count` connections to `addr` open, each sending half a request
/// (or nothing), and opens a new one whenever the daemon closes one, until
/// `stop` is set or `limit` passes (and at most 20,000 in all). Returns
/// how many it opened.
fn hold_connections(
    addr: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
    limit: Duration,
) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let started = Instant::now();
        // Every other one sends half a request.
        let open = |i: usize| {
            let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            if i % 2 == 1 {
                stream
                    .write_all(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")
                    .ok()?;
            }
            stream.set_nonblocking(true).ok()?;
            Some(stream)
        };
        let mut streams: Vec<Option<TcpStream>> = (0..count).map(open).collect();
        let mut opened = streams.iter().flatten().count();
        let mut buffer = [0u8; 1024];
        while !stop.load(Ordering::Relaxed) && started.elapsed() < limit && opened < 20_000 {
            for (i, slot) in streams.iter_mut().enumerate() {
                let closed = match slot {
                    None => true,
                    Some(stream) => match stream.read(&mut buffer) {
                        Ok(0) => true,
                        Ok(_) => false,
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    },
                };
                if closed {
                    *slot = open(i);
                    opened += usize::from(slot.is_some());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        opened
    })
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn idle_connections_to_the_listener_do_not_keep_a_commit_from_converging() {
    let servers = ["fleet-1", "fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    repo.app("alpha", &servers, 3, "");
    let first = defs.commit("alpha");
    let state = tempfile::tempdir().expect("state");
    // 300 connections would take every open file of a daemon limited to
    // 256, and its SSH connections and fetches with them.
    let daemon = Daemon::start_with_open_files(&defs, state.path(), &[], Some(256));
    daemon.wait_converged(&first, &servers, Duration::from_secs(60));

    let stop = Arc::new(AtomicBool::new(false));
    let attack = hold_connections(
        daemon.addr,
        300,
        Arc::clone(&stop),
        Duration::from_secs(150),
    );
    // Past the listener's 5 s header timeout: the first ones are closed
    // and opened again, and it is full all along.
    std::thread::sleep(Duration::from_secs(7));
    repo.app("alpha", &servers, 5, "");
    let second = defs.commit("alpha: 5 workers");
    let started = Instant::now();
    daemon.wait_converged(&second, &servers, Duration::from_secs(120));
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let opened = attack.join().expect("the attacking thread");
    eprintln!("converged in {took:?} under 300 held connections ({opened} opened in all)");
    for server in servers {
        assert_eq!(max_children(repo, server), "5", "{server}");
    }
    // The daemon closed idle connections all along (300 were opened first).
    assert!(opened >= 500, "{opened}");
}
