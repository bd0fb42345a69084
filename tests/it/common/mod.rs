//! Shared helpers for tests that run against the test fleet (`tests/fleet/fleet up N`):
//! real PHP servers in Docker containers, reachable on 127.0.0.1 only.
//!
//! The fleet is described by `inventory.json`, found through `$RECONCILER_FLEET`
//! (see `tests/fleet/fleet env`) or at `tests/fleet/.state/inventory.json`.
#![allow(dead_code)] // each test binary uses a subset of these helpers

pub mod apps;
pub mod apt;
pub mod daemon;
mod http;
pub mod laravel;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

pub use http::{HttpResponse, http};

/// `ssh -o` options of every fleet login (plus `UserKnownHostsFile`).
const SSH_OPTIONS: &[&str] = &[
    "IdentitiesOnly=yes",
    "StrictHostKeyChecking=yes", // never "no": known_hosts holds each server's real key
    "BatchMode=yes",
    "ConnectTimeout=10",
    "LogLevel=ERROR",
];

/// The running test fleet, as written by `tests/fleet/fleet up`.
#[derive(Debug, Clone, Deserialize)]
pub struct Fleet {
    /// Docker image of the servers, e.g. `reconciler-fleet:3f2a9c81d0b4`.
    pub image: String,
    /// Private SSH key accepted by root on every server.
    pub key: PathBuf,
    /// known_hosts with each server's real host key, as `[127.0.0.1]:PORT ssh-ed25519 ...`.
    pub known_hosts: PathBuf,
    /// The fleet's container name prefix (`reconciler-fleet`), which the
    /// fleet script takes as `$FLEET_PREFIX`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Redis as seen from inside the servers (`redis:6379`); not published on the host.
    pub redis: String,
    /// The memcached nodes as seen from inside the servers (`memcached-1:11211`, ...).
    #[serde(default)]
    pub memcached: Vec<String>,
    pub servers: Vec<FleetServer>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FleetServer {
    /// Inventory name, e.g. `fleet-1` (also its hostname and network alias).
    pub name: String,
    /// Docker container name, e.g. `reconciler-fleet-1`.
    pub container: String,
    /// Always `127.0.0.1`: container ports are only published on loopback.
    pub address: String,
    pub ssh_port: u16,
    pub http_port: u16,
    pub user: String,
}

impl Fleet {
    /// Where the inventory is: under nextest, a test of the `two-fleets`
    /// group in slot N (`$NEXTEST_TEST_GROUP_SLOT`) uses the N-th path of
    /// `$RECONCILER_FLEETS` (`:`-separated; `tests/run` starts one fleet per
    /// slot, so two fleet tests run at once, each alone on its servers);
    /// else `$RECONCILER_FLEET`, else the default state dir of the fleet
    /// script.
    pub fn inventory_path() -> PathBuf {
        let slot = std::env::var("NEXTEST_TEST_GROUP_SLOT")
            .ok()
            .filter(|_| std::env::var("NEXTEST_TEST_GROUP").as_deref() == Ok("two-fleets"))
            .and_then(|slot| slot.parse::<usize>().ok());
        if let (Some(slot), Some(fleets)) = (slot, std::env::var_os("RECONCILER_FLEETS")) {
            let fleets: Vec<PathBuf> = std::env::split_paths(&fleets).collect();
            if let Some(path) = fleets.get(slot % fleets.len().max(1)) {
                return path.clone();
            }
        }
        match std::env::var_os("RECONCILER_FLEET") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/.state/inventory.json"),
        }
    }

    /// Stops server `name` (`tests/fleet/fleet stop`); it starts again when
    /// the guard is dropped, whatever happened. Panics if it cannot stop.
    pub fn stop(&self, name: &str) -> Stopped<'_> {
        let out = self.script(&["stop", name]);
        assert!(
            out.status.success(),
            "fleet stop {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Stopped {
            fleet: self,
            name: name.to_owned(),
        }
    }

    /// `tests/fleet/fleet ARGS` on this fleet (its prefix and state dir, not
    /// whatever the environment names).
    pub fn script(&self, args: &[&str]) -> std::process::Output {
        let state = Self::inventory_path();
        let mut command =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/fleet"));
        command.args(args);
        if let Some(dir) = state.parent() {
            command.env("FLEET_STATE", dir);
        }
        if let Some(prefix) = &self.prefix {
            command.env("FLEET_PREFIX", prefix);
        }
        command.output().expect("run tests/fleet/fleet")
    }

    /// Loads the inventory; panics with instructions when no fleet is running.
    pub fn load() -> Fleet {
        let path = Self::inventory_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
            panic!(
                "no test fleet inventory at {} ({err}).\n\
                 Start the fleet first: tests/fleet/fleet up 3\n\
                 (and, if FLEET_STATE is set: eval \"$(tests/fleet/fleet env)\")",
                path.display()
            )
        });
        let fleet: Fleet = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("bad fleet inventory {}: {err}", path.display()));
        assert!(
            !fleet.servers.is_empty(),
            "fleet inventory {} lists no servers",
            path.display()
        );
        fleet
    }

    pub fn server(&self, name: &str) -> &FleetServer {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no server {name} in the fleet"))
    }

    /// A definitions-ready YAML list of the servers:
    /// ```yaml
    /// servers:
    ///   - { name: fleet-1, address: 127.0.0.1, port: 32001, user: root, web_server: true }
    /// ```
    pub fn servers_yaml(&self) -> String {
        let mut yaml = String::from("servers:\n");
        for s in &self.servers {
            yaml.push_str(&format!(
                "  - {{ name: {}, address: {}, port: {}, user: {}, web_server: true }}\n",
                s.name, s.address, s.ssh_port, s.user
            ));
        }
        yaml
    }
}

/// A server stopped by [`Fleet::stop`]: started again on drop.
pub struct Stopped<'a> {
    fleet: &'a Fleet,
    name: String,
}

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        let _ = self.fleet.script(&["start", &self.name]);
    }
}

impl FleetServer {
    /// `ssh` with the fleet key and STRICT host key checking against `known_hosts`,
    /// ready for a remote command to be appended.
    pub fn ssh_command_with(&self, key: &Path, known_hosts: &Path) -> Command {
        let known_hosts = format!("UserKnownHostsFile={}", known_hosts.display());
        let target = format!("{}@{}", self.user, self.address);
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "none"]); // ignore the user's ~/.ssh/config
        for option in SSH_OPTIONS {
            cmd.arg("-o").arg(option);
        }
        cmd.arg("-i").arg(key).arg("-o").arg(known_hosts);
        cmd.arg("-p").arg(self.ssh_port.to_string()).arg(target);
        cmd
    }

    pub fn ssh_command(&self, fleet: &Fleet) -> Command {
        self.ssh_command_with(&fleet.key, &fleet.known_hosts)
    }

    /// Runs `script` with `bash -s` on the server (script on stdin).
    pub fn ssh(&self, fleet: &Fleet, script: &str) -> Output {
        run_with_stdin(self.ssh_command(fleet).args(["--", "bash", "-s"]), script)
    }

    /// Like [`ssh`](Self::ssh) but panics, showing stdout and stderr, unless the script succeeds.
    /// Returns stdout.
    pub fn ssh_ok(&self, fleet: &Fleet, script: &str) -> String {
        let out = self.ssh(fleet, script);
        assert!(
            out.status.success(),
            "{}: script failed ({}):\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Plain HTTP/1.0 GET to the server's published HTTP port: (status, body).
    pub fn http_get(&self, path: &str, host_header: &str) -> (u16, String) {
        let resp = self.http_response(path, host_header);
        (resp.status, resp.body)
    }

    pub fn http_response(&self, path: &str, host_header: &str) -> HttpResponse {
        let addr: SocketAddr = format!("{}:{}", self.address, self.http_port)
            .parse()
            .unwrap();
        http(addr, "GET", path, &[("Host", host_header)], b"")
            .unwrap_or_else(|err| panic!("{}: {err}", self.name))
    }
}

/// Runs `cmd` with `input` on stdin (written from a thread, so large outputs can't deadlock).
pub fn run_with_stdin(cmd: &mut Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot run {cmd:?}: {err}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes()); // the command may exit without reading it
    });
    let out = child.wait_with_output().expect("wait for child");
    writer.join().unwrap();
    out
}

/// The binary under test, as every test runs it: from the project's
/// root, with none of the caller's `RECONCILER_*` or `RUST_LOG`, no colors.
pub fn reconciler() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1");
    for name in [
        "RUST_LOG",
        "RECONCILER_SSH_KEY",
        "RECONCILER_KNOWN_HOSTS",
        "RECONCILER_CACHE_DIR",
        "RECONCILER_DEPLOY_TOKENS",
    ] {
        cmd.env_remove(name);
    }
    cmd
}

/// Where the binary under test is (for a shell that becomes it).
pub const BIN: &str = env!("CARGO_BIN_EXE_reconciler");

/// A definitions repository in a temporary directory.
pub struct Repo {
    pub dir: tempfile::TempDir,
    pub fleet: Fleet,
}

impl Repo {
    /// A cluster of `servers` (fleet names) sharing sessions in the fleet's redis.
    pub fn new(servers: &[&str]) -> Repo {
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

    pub fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.path().join(path)).expect("remove");
    }

    /// An app with a web role on `web` servers; `extra` is YAML added to
    /// the first server's role.
    pub fn app(&self, name: &str, web: &[&str], max_workers: u32, extra: &str) {
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

    /// `reconciler ARGS` on these definitions and the fleet's servers.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = reconciler();
        cmd.args(args)
            .arg("-d")
            .arg(self.dir.path())
            .arg("--known-hosts")
            .arg(&self.fleet.known_hosts)
            .arg("--ssh-key")
            .arg(&self.fleet.key)
            .args(["--color", "never"]);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run reconciler")
    }

    /// Runs and asserts the exit code, showing the output when it differs.
    pub fn run_expect(&self, args: &[&str], code: i32) -> String {
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

    pub fn plan_json(&self) -> Value {
        let text = self.run_expect(&["plan", "--format", "json"], 0);
        serde_json::from_str(&text).expect("plan JSON")
    }

    pub fn server(&self, name: &str) -> &FleetServer {
        self.fleet.server(name)
    }

    pub fn ssh(&self, server: &str, script: &str) -> String {
        self.server(server).ssh_ok(&self.fleet, script)
    }
}

pub fn host<'a>(plan: &'a Value, server: &str) -> &'a Value {
    plan["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .find(|h| h["server"] == server)
        .unwrap_or_else(|| panic!("no {server} in {plan:#}"))
}

pub fn kinds(host: &Value) -> Vec<String> {
    host["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["kind"].as_str().unwrap_or(""),
                ["path", "program", "service"]
                    .iter()
                    .find_map(|key| c[*key].as_str())
                    .unwrap_or("")
            )
        })
        .collect()
}

/// A release whose index.php prints the user PHP runs as and the session
/// handler, made live by pointing `current` at it: the app's own link, as
/// a release makes it (nginx follows no link to another owner's files).
pub fn install_release(repo: &Repo, server: &str, app: &str) {
    repo.ssh(
        server,
        &format!(
            "set -e\nmkdir -p /home/{app}/releases/t1/public\n\
             echo '<?php echo posix_getpwuid(posix_geteuid())[\"name\"], \" \", ini_get(\"session.save_handler\");' \
             > /home/{app}/releases/t1/public/index.php\n\
             chown -R {app}:{app} /home/{app}/releases/t1\n\
             ln -sfn releases/t1 /home/{app}/current && chown -h {app}:{app} /home/{app}/current\n"
        ),
    );
}

/// Panics, listing every violation, unless `value` follows the JSON Schema
/// `schema`.
pub fn assert_follows(schema: &str, value: &Value) {
    let schema: Value = serde_json::from_str(schema).expect("schema JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new(), "{value:#}");
}
