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

mod converge;
mod listener;
mod services;
