//! The attacks of the security review, run against the test fleet. Each
//! was reproduced on the fleet before the fix; the app-user attacks run as
//! the app's Unix user on the server (`setpriv`), as the app's own code
//! would. These tests change the shared servers fleet-1..3, so nextest
//! runs them one at a time with the other fleet tests.

use crate::common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::apps::{as_app, web_app};
use common::{Repo, install_release};
use reconciler::converge::{self, ReconcileOptions, Selection};
use reconciler::definitions::{DefinitionFiles, ServerName};
use reconciler::transport::{self, ConnectOptions};

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_worker_log_is_never_opened_by_root_where_the_app_can_write() {
    let repo = Repo::new(&["fleet-1"]);
    web_app(
        &repo,
        "logger",
        "fleet-1",
        "    workers: [{ name: w, command: sleep 600 }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "logger");
    let conf = repo.ssh("fleet-1", "cat /etc/supervisor/conf.d/logger.conf");
    assert!(
        conf.contains("stdout_logfile=/var/log/reconciler/logger/worker-w.log"),
        "{conf}"
    );

    // The attack: plant a link where the log was, and where it is now,
    // then kill the worker so supervisord (root) reopens its log.
    let attack = as_app(
        "logger",
        "mkdir -p /home/logger/shared/storage/logs; \
         ln -sfn /etc/cron.d/pwn /home/logger/shared/storage/logs/worker-w.log; \
         ln -sfn /etc/cron.d/pwn /var/log/reconciler/logger/worker-w.log 2>&1 || echo refused; \
         pkill -KILL -u logger sleep || true",
    );
    let out = repo.ssh("fleet-1", &attack);
    assert!(out.contains("Permission denied"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let check = repo.ssh(
        "fleet-1",
        "test -e /etc/cron.d/pwn && echo PWNED; stat -c '%U:%G %a %F' /var/log/reconciler/logger /var/log/reconciler/logger/worker-w.log",
    );
    assert!(!check.contains("PWNED"), "{check}");
    assert!(check.starts_with("root:logger 750 directory\n"), "{check}");
    assert!(check.contains("regular"), "{check}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn commands_with_shell_and_config_syntax_run_as_written() {
    let repo = Repo::new(&["fleet-1"]);
    // ` ;` once became a supervisor comment (BACKOFF after a "successful"
    // apply); `%` an expansion; `'` broke the quoting.
    web_app(
        &repo,
        "quoted",
        "fleet-1",
        "    workers: [{ name: w, command: \"echo \\\"it's 100%\\\" ; echo 'done # a hash' ; sleep 600\" }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "quoted");
    repo.ssh(
        "fleet-1",
        "supervisorctl start quoted:* >/dev/null 2>&1 || true",
    );
    let started = Instant::now();
    let status = loop {
        let status = repo.ssh("fleet-1", "supervisorctl status quoted:* || true");
        if status.contains("RUNNING") || started.elapsed() > Duration::from_secs(10) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status.contains("RUNNING"), "{status}");
    let log = repo.ssh(
        "fleet-1",
        "sleep 1; cat /var/log/reconciler/quoted/worker-w.log",
    );
    assert!(log.contains("it's 100%\ndone # a hash\n"), "{log}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_real_parsers_read_hostile_values_as_written() {
    // The property tests check the renderers against models of these
    // parsers; this checks the models' verdicts with the parsers
    // themselves: supervisor's (Python) and PHP's.
    let fleet = common::Fleet::load();
    let server = fleet.server("fleet-1");
    let hostile = [
        "sleep 30 ; echo done",
        "a # b",
        "it's",
        "100%",
        "%(ENV_HOME)s",
        "\"${HOME}\"",
        "x = y ; [program:pwn]",
        "back\\slash\\",
        "$(id) `id`",
    ];
    for value in hostile {
        let command = reconciler::units::escape::supervisor_command(value);
        let ini = reconciler::units::escape::php_ini_string(value);
        let script = format!(
            "set -e\ncat > /tmp/t.conf <<'EOF'\n[program:x]\ncommand={command}\nEOF\n\
             cat > /tmp/t.ini <<'EOF'\nsession.name = {ini}\nEOF\n\
             python3 -c 'from supervisor.options import UnhosedConfigParser\n\
import shlex, json\np = UnhosedConfigParser()\np.read(\"/tmp/t.conf\")\n\
print(json.dumps(shlex.split(p.get(\"program:x\", \"command\") % {{}})))'\n\
             php -n -c /tmp/t.ini -r 'echo json_encode(ini_get(\"session.name\")), \"\\n\";'\n"
        );
        let out = server.ssh_ok(&fleet, &script);
        let mut lines = out.lines();
        let argv: Vec<String> =
            serde_json::from_str(lines.next().expect("argv")).expect("argv JSON");
        let script = format!("{}{value}", reconciler::units::escape::shell_prefix(value));
        assert_eq!(argv, ["/bin/sh", "-c", &script], "{value}");
        let read: String = serde_json::from_str(lines.next().expect("ini")).expect("ini JSON");
        assert_eq!(read, value);
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_symlink_swapped_in_after_the_plan_gives_the_app_nothing() {
    let repo = Repo::new(&["fleet-2"]);
    repo.write(
        "apps/racer.yaml",
        "name: racer\ncluster: fleet\nrepo: /srv/racer.git\nphp: \"8.2\"\n\
         servers: [{ name: fleet-2, scheduler: true }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    // Drift the app made itself: apply wants to put the mode back.
    let logs = "/home/racer/shared/storage/logs";
    repo.ssh(
        "fleet-2",
        &format!(
            "mkdir -p /opt/victim && chmod 700 /opt/victim && chown root:root /opt/victim\n{}",
            as_app("racer", &format!("chmod 700 {logs}"))
        ),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let files = DefinitionFiles::read_dir(repo.dir.path()).expect("read");
        let loaded = converge::load(&files).expect("valid");
        let selection = Selection {
            servers: vec![ServerName::new("fleet-2")],
            apps: Vec::new(),
        };
        let target = converge::select(&loaded.definitions, &loaded.desired, &selection)
            .expect("select")
            .remove(0);
        let options = ConnectOptions {
            known_hosts: Some(repo.fleet.known_hosts.clone()),
            identity: Some(repo.fleet.key.clone()),
            ..ConnectOptions::default()
        };
        let transport = transport::connect(&target.desired.server, &options)
            .await
            .expect("connect");
        let reconcile = ReconcileOptions {
            now: chrono::Utc::now(),
            reload_now: true,
            holder: "test".into(),
            revision: None,
            lock_wait: Duration::from_secs(10),
        };
        let observed = converge::observe(&target, transport.as_ref(), &reconcile)
            .await
            .expect("observe");
        let kinds: Vec<String> = observed
            .plan
            .changes
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert!(
            kinds.iter().any(|k| k.contains(logs)),
            "the plan fixes the mode: {kinds:?}"
        );
        // The race: between plan and apply, the app swaps in a link.
        repo.ssh(
            "fleet-2",
            &as_app(
                "racer",
                &format!("mv {logs} {logs}.old && ln -s /opt/victim {logs}"),
            ),
        );
        let report = converge::act(&target, transport.as_ref(), &observed, &reconcile).await;
        assert!(!report.succeeded(), "{report:?}");
    });
    let victim = repo.ssh("fleet-2", "stat -c '%U:%G %a' /opt/victim");
    assert_eq!(victim, "root:root 700\n");
    repo.ssh(
        "fleet-2",
        &format!("rm -f {logs} && mv {logs}.old {logs}; rmdir /opt/victim"),
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn nginx_serves_no_link_into_another_apps_files() {
    let repo = Repo::new(&["fleet-1"]);
    web_app(&repo, "shop", "fleet-1", "");
    web_app(&repo, "blog", "fleet-1", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "shop");
    install_release(&repo, "fleet-1", "blog");
    repo.ssh(
        "fleet-1",
        &format!(
            "{}\n{}",
            as_app(
                "blog",
                "echo DB_PASSWORD=hunter2 > /home/blog/shared/.env && chmod 640 /home/blog/shared/.env"
            ),
            as_app(
                "shop",
                "ln -sfn /home/blog/shared/.env /home/shop/releases/t1/public/leak.txt; \
                 echo own > /home/shop/shared/own.txt; \
                 ln -sfn /home/shop/shared/own.txt /home/shop/releases/t1/public/own.txt"
            ),
        ),
    );
    let server = repo.server("fleet-1");
    // nginx refuses the link; `try_files` then hands the request to the
    // app's index.php.
    let leak = server.http_response("/leak.txt", "shop.test");
    assert!(!leak.body.contains("hunter2"), "{leak:?}");
    assert_eq!(leak.body, "shop redis", "{leak:?}");
    // The app's own links and releases (through `current`) still work.
    assert_eq!(
        server.http_get("/own.txt", "shop.test"),
        (200, "own\n".into())
    );
    assert_eq!(server.http_get("/", "shop.test").0, 200);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_existing_login_user_is_not_taken_over() {
    let repo = Repo::new(&["fleet-3"]);
    repo.ssh(
        "fleet-3",
        "id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups sudo deploy",
    );
    repo.write(
        "apps/deploy.yaml",
        "name: deploy\ncluster: fleet\nrepo: /srv/deploy.git\nphp: \"8.2\"\n\
         servers: [{ name: fleet-3, scheduler: true }]\n",
    );
    let out = repo.run_expect(&["plan"], 1);
    assert!(
        out.contains(
            "fleet-3: error: user `deploy` exists and reconciler did not create it: \
             it has the login shell `/bin/bash`, its uid"
        ),
        "{out}"
    );
    assert!(out.contains("it is in the group `sudo`"), "{out}");
    assert!(out.contains("adopt_user: true"), "{out}");
    let out = repo.run_expect(&["apply", "--yes"], 1);
    assert!(out.contains("Apply: 0 applied"), "{out}");
    let untouched = repo.ssh(
        "fleet-3",
        "test -e /etc/cron.d/deploy && echo written || echo none",
    );
    assert_eq!(untouched, "none\n");

    // Said explicitly, the user is taken over.
    repo.write(
        "apps/deploy.yaml",
        "name: deploy\ncluster: fleet\nrepo: /srv/deploy.git\nphp: \"8.2\"\nadopt_user: true\n\
         servers: [{ name: fleet-3, scheduler: true }]\n",
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    repo.ssh("fleet-3", "userdel -r deploy >/dev/null 2>&1 || true");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_path_planted_in_the_manifest_is_neither_shown_nor_removed() {
    let repo = Repo::new(&["fleet-3"]);
    web_app(&repo, "plain", "fleet-3", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.ssh(
        "fleet-3",
        "echo 'TOP SECRET' > /root/secret.txt\n\
         printf '%s\\n' /root/secret.txt /etc/nginx/sites-enabled/../../shadow >> /var/lib/reconciler/manifest",
    );
    let plan = repo.run_expect(&["plan"], 0);
    assert!(!plan.contains("secret"), "{plan}");
    assert!(!plan.contains("TOP SECRET"), "{plan}");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    let left = repo.ssh(
        "fleet-3",
        "cat /root/secret.txt; test -e /etc/shadow && echo shadow",
    );
    assert_eq!(left, "TOP SECRET\nshadow\n");
    let manifest = repo.ssh("fleet-3", "cat /var/lib/reconciler/manifest");
    assert!(
        !manifest.contains("secret"),
        "rewritten without it: {manifest}"
    );
    repo.ssh("fleet-3", "rm -f /root/secret.txt");
}

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
        "supervisorctl start steady:* >/dev/null 2>&1 || true; sleep 1",
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
