//! Shared helpers for tests that run against the test fleet (`tests/fleet/fleet up N`):
//! real PHP servers in Docker containers, reachable on 127.0.0.1 only.
//!
//! The fleet is described by `inventory.json`, found through `$RECONCILER_FLEET`
//! (see `tests/fleet/fleet env`) or at `tests/fleet/.state/inventory.json`.
#![allow(dead_code)] // each test binary uses a subset of these helpers

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde::Deserialize;

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
    /// Redis as seen from inside the servers (`redis:6379`); not published on the host.
    pub redis: String,
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

/// Status, headers and body of an HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Fleet {
    /// Where the inventory is: `$RECONCILER_FLEET`, else the default state dir of the fleet script.
    pub fn inventory_path() -> PathBuf {
        match std::env::var_os("RECONCILER_FLEET") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fleet/.state/inventory.json"),
        }
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
        let timeout = Duration::from_secs(10);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)
            .unwrap_or_else(|err| panic!("{}: connect to {addr}: {err}", self.name));
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {host_header}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        stream
            .read_to_end(&mut raw)
            .unwrap_or_else(|err| panic!("{}: read from {addr}: {err}", self.name));
        parse_http(&raw).unwrap_or_else(|| {
            panic!(
                "{}: not an HTTP response: {:?}",
                self.name,
                String::from_utf8_lossy(&raw)
            )
        })
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

fn parse_http(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let body = String::from_utf8_lossy(&raw[split + 4..]).into_owned();
    let mut lines = head.split("\r\n");
    // "HTTP/1.1 200 OK"
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}
