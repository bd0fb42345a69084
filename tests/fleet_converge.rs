//! plan and apply against the test fleet: real servers with sshd, nginx,
//! php-fpm, supervisor and cron. These tests share the servers fleet-1..3,
//! so nextest runs them one at a time (.config/nextest.toml); the
//! stopped-server test stops fleet-4, which no other test uses.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{Fleet, FleetServer};
use serde_json::Value;

/// A definitions repository in a temporary directory.
struct Repo {
    dir: tempfile::TempDir,
    fleet: Fleet,
}

impl Repo {
    /// A cluster of `servers` (fleet names) sharing sessions in the fleet's redis.
    fn new(servers: &[&str]) -> Repo {
        let fleet = Fleet::load();
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Repo { dir, fleet };
        let mut cluster = String::from(
            "name: fleet\nphp: [\"8.2\"]\nrequest: { duration: 30, payload: 8, memory: 256 }\n\
             sessions: { handler: redis, save_path: \"tcp://redis:6379\" }\nservers:\n",
        );
        for name in servers {
            let s = repo.fleet.server(name);
            cluster.push_str(&format!(
                "  - {{ name: {}, address: {}, port: {}, web_server: true }}\n",
                s.name, s.address, s.ssh_port
            ));
        }
        repo.write("clusters/fleet.yaml", &cluster);
        repo
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join(path)).expect("remove");
    }

    /// An app with a web role on `web` servers; `extra` is YAML added to
    /// the first server's role.
    fn app(&self, name: &str, web: &[&str], max_workers: u32, extra: &str) {
        let mut yaml = format!(
            "name: {name}\ncluster: fleet\nrepo: https://git.example.com/{name}.git\nphp: \"8.2\"\n\
             domains: [{name}.test]\nservers:\n"
        );
        for (i, server) in web.iter().enumerate() {
            yaml.push_str(&format!(
                "  - name: {server}\n    web: {{ max_workers: {max_workers}, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 2 }}\n"
            ));
            if i == 0 {
                yaml.push_str(extra);
            }
        }
        self.write(&format!("apps/{name}.yaml"), &yaml);
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_reconciler"))
            .args(args)
            .arg("-d")
            .arg(self.dir.path())
            .arg("--known-hosts")
            .arg(&self.fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&self.fleet.key)
            .args(["--color", "never"])
            .output()
            .expect("run reconciler")
    }

    /// Runs and asserts the exit code, showing the output when it differs.
    fn run_expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "reconciler {args:?}\n--- stdout\n{stdout}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn plan_json(&self) -> Value {
        let text = self.run_expect(&["plan", "--format", "json"], 0);
        serde_json::from_str(&text).expect("plan JSON")
    }

    fn server(&self, name: &str) -> &FleetServer {
        self.fleet.server(name)
    }

    fn ssh(&self, server: &str, script: &str) -> String {
        self.server(server).ssh_ok(&self.fleet, script)
    }
}

/// A release whose index.php prints the user PHP runs as and the session
/// handler, made live by pointing `current` at it.
fn install_release(repo: &Repo, server: &str, app: &str) {
    repo.ssh(
        server,
        &format!(
            "set -e\nmkdir -p /home/{app}/releases/t1/public\n\
             echo '<?php echo posix_getpwuid(posix_geteuid())[\"name\"], \" \", ini_get(\"session.save_handler\");' \
             > /home/{app}/releases/t1/public/index.php\n\
             chown -R {app}:{app} /home/{app}/releases/t1\n\
             ln -sfn releases/t1 /home/{app}/current\n"
        ),
    );
}

fn host<'a>(plan: &'a Value, server: &str) -> &'a Value {
    plan["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["server"] == server)
        .unwrap_or_else(|| panic!("no {server} in {plan:#}"))
}

fn kinds(host: &Value) -> Vec<String> {
    host["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap_or(""),
                c["path"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// The base definitions of most tests: `alpha` on all three servers, `beta`
/// on fleet-1 with a worker and the scheduler.
fn base(repo: &Repo) {
    repo.app("alpha", &["fleet-1", "fleet-2", "fleet-3"], 5, "");
    repo.app(
        "beta",
        &["fleet-1"],
        4,
        "    workers:\n      - { name: mail, command: sleep 600, processes: 2, stop_wait: 5 }\n    scheduler: true\n",
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn converges_three_servers_and_each_app_answers_as_its_pool_user() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-3"]);
    base(&repo);
    // Earlier tests may have left some of this in place: only failures count.
    let out = repo.run_expect(&["apply", "--yes", "--now"], 0);
    assert!(out.contains(", 0 failed"), "{out}");

    for server in ["fleet-1", "fleet-2", "fleet-3"] {
        install_release(&repo, server, "alpha");
        let (status, body) = repo.server(server).http_get("/", "alpha.test");
        assert_eq!((status, body.as_str()), (200, "alpha redis"), "{server}");
    }
    install_release(&repo, "fleet-1", "beta");
    let (status, body) = repo.server("fleet-1").http_get("/", "beta.test");
    assert_eq!((status, body.as_str()), (200, "beta redis"));

    // One app cannot read another's files.
    let denied = repo.server("fleet-1").ssh(
        &repo.fleet,
        "sudo -u alpha cat /home/beta/releases/t1/public/index.php",
    );
    assert!(!denied.status.success());

    // Idempotent: nothing left to do.
    let plan = repo.plan_json();
    for server in ["fleet-1", "fleet-2", "fleet-3"] {
        assert_eq!(kinds(host(&plan, server)), Vec::<String>::new(), "{server}");
    }
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(!out.contains("applied"), "{out}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_new_max_workers_shows_only_that_pool_and_waits_for_a_window() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-3"]);
    base(&repo);
    repo.run_expect(&["apply", "--yes", "--now"], 0);

    repo.app("alpha", &["fleet-1", "fleet-2", "fleet-3"], 9, "");
    let plan = repo.plan_json();
    for server in ["fleet-1", "fleet-2", "fleet-3"] {
        let host = host(&plan, server);
        assert_eq!(
            kinds(host),
            ["update_file /etc/php/8.2/fpm/pool.d/alpha.conf"],
            "{server}"
        );
        let diff = host["changes"][0]["diff"].as_str().expect("diff");
        assert!(
            diff.contains("\n-pm.max_children = 5\n+pm.max_children = 9\n"),
            "{diff}"
        );
        assert_eq!(host["reloads"][0]["label"], "php8.2-fpm");
        assert_eq!(host["reloads"][0]["when"], "window");
        assert_eq!(host["reloads"].as_array().map(Vec::len), Some(1));
    }
    let text = repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        text.contains(
            "fleet-2: 0 to create, 1 to update, 0 to remove; reload php8.2-fpm in window"
        ),
        "{text}"
    );

    // Applied without --now, the reload waits: the pool keeps its old size,
    // and a plan shows the pending reload without calling it a change.
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(
        out.contains("php8.2-fpm waits for a reload window"),
        "{out}"
    );
    let pending = repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    assert!(
        pending.contains(
            "reload php8.2-fpm in the next reload window (pending from an earlier apply)"
        ),
        "{pending}"
    );

    // --now runs it, and then nothing is pending.
    let out = repo.run_expect(&["apply", "--yes", "--now"], 0);
    assert!(out.contains("reloaded php8.2-fpm"), "{out}");
    let plan = repo.plan_json();
    assert_eq!(host(&plan, "fleet-1")["reloads"], Value::Array(vec![]));
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_template_that_breaks_nginx_restores_the_previous_files() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-3"]);
    base(&repo);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "alpha");
    let vhost = "cat /etc/nginx/sites-enabled/alpha.conf";
    let before = repo.ssh("fleet-1", vhost);

    let embedded = include_str!("../src/units/templates/nginx-vhost.conf.hbs");
    let broken = embedded.replace(
        "charset utf-8;",
        "charset utf-8;\n    no_such_directive on;",
    );
    repo.write("templates/nginx-vhost.conf.hbs", &broken);
    let out = repo.run_expect(&["apply", "--yes", "--now"], 1);
    assert!(
        out.contains("fleet-1: nginx refused the new configuration; the previous files are back and nothing was reloaded:"),
        "{out}"
    );
    assert!(
        out.contains("unknown directive \"no_such_directive\""),
        "{out}"
    );
    assert!(
        out.contains("Apply: 0 applied, 0 unchanged, 3 failed"),
        "{out}"
    );

    assert_eq!(repo.ssh("fleet-1", vhost), before);
    let (status, body) = repo.server("fleet-1").http_get("/", "alpha.test");
    assert_eq!((status, body.as_str()), (200, "alpha redis"));
    // Nothing half-applied: the change is still planned.
    let plan = repo.plan_json();
    assert_eq!(
        kinds(host(&plan, "fleet-1")),
        [
            "update_file /etc/nginx/sites-enabled/alpha.conf",
            "update_file /etc/nginx/sites-enabled/beta.conf",
        ]
    );

    repo.remove("templates/nginx-vhost.conf.hbs");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_app_removed_from_the_definitions_is_pruned() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-3"]);
    base(&repo);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "alpha");
    let status = repo.ssh("fleet-1", "supervisorctl status || true");
    assert!(status.contains("beta:beta-mail_00"), "{status}");

    repo.remove("apps/beta.yaml");
    let plan = repo.plan_json();
    assert_eq!(
        kinds(host(&plan, "fleet-1")),
        [
            "remove_file /etc/cron.d/beta",
            "remove_file /etc/nginx/sites-enabled/beta.conf",
            "remove_file /etc/php/8.2/fpm/pool.d/beta.conf",
            "remove_file /etc/supervisor/conf.d/beta.conf",
        ]
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);

    let left = repo.ssh(
        "fleet-1",
        "ls /etc/cron.d /etc/nginx/sites-enabled /etc/php/8.2/fpm/pool.d /etc/supervisor/conf.d",
    );
    assert!(!left.contains("beta"), "{left}");
    let status = repo.ssh("fleet-1", "supervisorctl status || true");
    assert!(!status.contains("beta"), "{status}");
    let (code, body) = repo.server("fleet-1").http_get("/", "alpha.test");
    assert_eq!((code, body.as_str()), (200, "alpha redis"));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
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

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_stopped_server_fails_alone() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-4"]);
    repo.app("alpha", &["fleet-1", "fleet-2", "fleet-4"], 5, "");
    let stopped = fleet_script(&["stop", "fleet-4"]);
    assert!(
        stopped.status.success(),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    let _restart = Stopped("fleet-4");

    let out = repo.run_expect(&["apply", "--yes", "--now"], 1);
    assert!(
        out.contains("fleet-4: error: `fleet-4`: connection refused"),
        "{out}"
    );
    assert!(
        out.contains("Apply: 2 applied, 0 unchanged, 1 failed (fleet-4)"),
        "{out}"
    );
    let plan = repo.run_expect(
        &[
            "plan",
            "--server",
            "fleet-1",
            "--server",
            "fleet-2",
            "--detailed-exitcode",
        ],
        0,
    );
    assert!(
        plan.contains("Plan: 0 to change, 2 unchanged, 0 failed"),
        "{plan}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_manual_edit_is_drift_that_apply_corrects() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-3"]);
    base(&repo);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.ssh(
        "fleet-2",
        "sed -i 's/^pm.max_children = 5$/pm.max_children = 50/' /etc/php/8.2/fpm/pool.d/alpha.conf\n\
         chmod 600 /etc/nginx/sites-enabled/alpha.conf",
    );

    let plan = repo.plan_json();
    let fleet2 = host(&plan, "fleet-2");
    assert_eq!(
        kinds(fleet2),
        [
            "update_file /etc/nginx/sites-enabled/alpha.conf",
            "update_file /etc/php/8.2/fpm/pool.d/alpha.conf",
        ]
    );
    assert_eq!(fleet2["changes"][0]["from"]["mode"], "0600");
    assert_eq!(
        fleet2["changes"][0].get("diff"),
        None,
        "only the mode drifted"
    );
    let diff = fleet2["changes"][1]["diff"].as_str().expect("diff");
    assert!(
        diff.contains("\n-pm.max_children = 50\n+pm.max_children = 5\n"),
        "{diff}"
    );
    assert_eq!(kinds(host(&plan, "fleet-1")), Vec::<String>::new());

    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    let mode = repo.ssh("fleet-2", "stat -c %a /etc/nginx/sites-enabled/alpha.conf");
    assert_eq!(mode.trim(), "644");
}
