//! The transports against real sshd servers (the test fleet) and this machine.
//!
//! tests/fleet/fleet up 3 && cargo test --test transport -- --ignored --test-threads=2
//!
//! Tests that only need the local `ssh` client (nothing listening, a silent
//! server) and the local transport run without the fleet. Timings are printed
//! (`--nocapture` shows them), never asserted.

use crate::common;

use reconciler::Hint as _;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Fleet, FleetServer};
use reconciler::definitions::{Server, ServerName};
use reconciler::shell::quote;
use reconciler::transport::{
    self, ConnectOptions, Holding, Input, SshTransport, Transport, TransportError,
};

/// Time limit of the scripts these tests run.
const LIMIT: Duration = Duration::from_secs(60);

fn server(fleet_server: &FleetServer) -> Server {
    Server {
        name: ServerName::new(fleet_server.name.clone()),
        address: fleet_server.address.clone(),
        port: fleet_server.ssh_port,
        user: fleet_server.user.clone(),
        web_server: true,
        known_hosts: None,
    }
}

/// The fleet's key and known_hosts: what a correct setup looks like.
fn options(fleet: &Fleet) -> ConnectOptions {
    ConnectOptions {
        known_hosts: Some(fleet.known_hosts.clone()),
        identity: Some(fleet.key.clone()),
        connect_timeout: Duration::from_secs(5),
        ..ConnectOptions::default()
    }
}

async fn connect(fleet: &Fleet, name: &str) -> SshTransport {
    let server = server(fleet.server(name));
    SshTransport::connect(&server, &options(fleet))
        .await
        .unwrap_or_else(|err| panic!("connect to {name}: {err}"))
}

async fn run_ok(transport: &dyn Transport, script: &str) -> String {
    let out = transport.run(script, LIMIT).await.expect("run");
    assert!(
        out.success(),
        "script failed ({:?}):\n{script}\n--- stderr\n{}",
        out.status,
        out.stderr_text()
    );
    out.stdout_text()
}

/// A known_hosts file in `dir` with `lines`.
fn known_hosts_file(dir: &Path, lines: &str) -> PathBuf {
    let path = dir.join("known_hosts");
    std::fs::write(&path, lines).expect("write known_hosts");
    path
}

/// The base64 key material of the known_hosts line for `port`.
fn host_key(fleet: &Fleet, port: u16) -> String {
    let known_hosts = std::fs::read_to_string(&fleet.known_hosts).expect("read known_hosts");
    let prefix = format!("[127.0.0.1]:{port} ");
    let line = known_hosts
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no host key for port {port}"));
    line.split_whitespace().nth(2).expect("key").to_owned()
}

fn expect_error(result: Result<SshTransport, TransportError>) -> TransportError {
    match result {
        Ok(transport) => panic!("connected to {}", transport.server()),
        Err(err) => err,
    }
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn run_returns_output_and_exit_status() {
    let fleet = Fleet::load();
    let transport = connect(&fleet, "fleet-1").await;

    let out = transport
        .run("echo out; echo err >&2; printf 'no newline'; exit 3", LIMIT)
        .await
        .expect("run");
    assert_eq!(out.status, Some(3));
    assert_eq!(out.stdout_text(), "out\nno newline");
    assert_eq!(out.stderr_text(), "err\n");

    assert_eq!(run_ok(&transport, "id -u").await, "0\n");
    // Exit statuses the ssh client treats specially are still the script's.
    for status in [1, 127, 255] {
        let out = transport
            .run(&format!("exit {status}"), LIMIT)
            .await
            .expect("run");
        assert_eq!(out.status, Some(status));
    }
    assert_eq!(
        transport
            .run("no-such-command", LIMIT)
            .await
            .expect("run")
            .status,
        Some(127)
    );
    // Killed by a signal: no exit status.
    let out = transport
        .run("echo before; kill -9 $$", LIMIT)
        .await
        .expect("run");
    assert_eq!((out.status, out.stdout_text()), (None, "before\n".into()));
    // A command reading stdin gets nothing, not the rest of the script.
    assert_eq!(
        run_ok(&transport, "cat; read -r line || echo eof\necho still here").await,
        "eof\nstill here\n"
    );
    // After all that, the master connection still works.
    assert_eq!(run_ok(&transport, "echo ok").await, "ok\n");
    transport.close().await.expect("close");
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn unknown_host_key_is_refused() {
    let fleet = Fleet::load();
    let tmp = tempfile::tempdir().expect("tempdir");
    let options = ConnectOptions {
        known_hosts: Some(known_hosts_file(tmp.path(), "")),
        ..options(&fleet)
    };
    let err = expect_error(SshTransport::connect(&server(fleet.server("fleet-1")), &options).await);
    assert!(
        matches!(err, TransportError::HostKey { changed: false, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "host key of `root@127.0.0.1:{}` is not known, and host keys are checked strictly",
            fleet.server("fleet-1").ssh_port
        )
    );
    assert!(err.hint().is_some());
    // Strict checking never records the key.
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("known_hosts")).unwrap(),
        ""
    );
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn changed_host_key_is_refused_even_when_accepting_new_keys() {
    let fleet = Fleet::load();
    let (target, other) = (fleet.server("fleet-1"), fleet.server("fleet-2"));
    let tmp = tempfile::tempdir().expect("tempdir");
    // fleet-2's key, claimed for fleet-1's port.
    let forged = format!(
        "[127.0.0.1]:{} ssh-ed25519 {}\n",
        target.ssh_port,
        host_key(&fleet, other.ssh_port)
    );
    for accept_new_host_keys in [false, true] {
        let options = ConnectOptions {
            known_hosts: Some(known_hosts_file(tmp.path(), &forged)),
            accept_new_host_keys,
            ..options(&fleet)
        };
        let err = expect_error(SshTransport::connect(&server(target), &options).await);
        assert!(
            matches!(err, TransportError::HostKey { changed: true, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "host key of `root@127.0.0.1:{}` has CHANGED",
                target.ssh_port
            )),
            "{err}"
        );
    }
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn accepting_new_host_keys_records_the_key() {
    let fleet = Fleet::load();
    let target = fleet.server("fleet-2");
    let tmp = tempfile::tempdir().expect("tempdir");
    let known_hosts = known_hosts_file(tmp.path(), "");
    let options = ConnectOptions {
        known_hosts: Some(known_hosts.clone()),
        accept_new_host_keys: true,
        ..options(&fleet)
    };
    let transport = SshTransport::connect(&server(target), &options)
        .await
        .expect("connect");
    assert_eq!(run_ok(&transport, "hostname").await, "fleet-2\n");
    let recorded = std::fs::read_to_string(&known_hosts).expect("read known_hosts");
    assert!(
        recorded.contains(&host_key(&fleet, target.ssh_port)),
        "{recorded}"
    );
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn wrong_key_is_an_auth_error() {
    let fleet = Fleet::load();
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let options = ConnectOptions {
        identity: Some(key),
        ..options(&fleet)
    };
    let err = expect_error(SshTransport::connect(&server(fleet.server("fleet-3")), &options).await);
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "`root@127.0.0.1:{}` refused the login",
            fleet.server("fleet-3").ssh_port
        )
    );
}

/// A server on a loopback port that is not the fleet's.
fn loopback(name: &str, port: u16) -> Server {
    Server {
        name: ServerName::new(name),
        address: "127.0.0.1".into(),
        port,
        user: "root".into(),
        web_server: false,
        known_hosts: None,
    }
}

#[tokio::test]
async fn nothing_listening_is_refused() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = loopback("nobody", port);
    let options = ConnectOptions {
        known_hosts: Some(known_hosts_file(tmp.path(), "")),
        ..ConnectOptions::default()
    };
    let err = expect_error(SshTransport::connect(&server, &options).await);
    assert!(matches!(err, TransportError::Refused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("connection to `root@127.0.0.1:{port}` refused")
    );
}

#[tokio::test]
async fn silent_server_times_out() {
    // Accepts connections and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let tmp = tempfile::tempdir().expect("tempdir");
    let server = loopback("silent", port);
    let options = ConnectOptions {
        known_hosts: Some(known_hosts_file(tmp.path(), "")),
        connect_timeout: Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let started = Instant::now();
    let err = expect_error(SshTransport::connect(&server, &options).await);
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    println!("timed out after {:?}", started.elapsed());
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn lost_connection_is_an_error_not_an_exit_status() {
    let fleet = Fleet::load();
    let transport = connect(&fleet, "fleet-3").await;
    // Kill the sshd process serving this connection (the first sshd above
    // the script): the master connection dies, the other clients' live on.
    let result = transport
        .run(
            r#"p=$$
            while [ "$p" -gt 1 ]; do
              if [ "$(cat /proc/$p/comm)" = sshd ]; then kill -9 "$p"; sleep 5; exit 0; fi
              p=$(awk '{print $4}' /proc/$p/stat)
            done
            exit 1"#,
            LIMIT,
        )
        .await;
    let err = result.expect_err("the connection is gone");
    assert!(
        err.to_string().starts_with("the connection was lost"),
        "{err}"
    );
    println!("lost connection: {err}");
    // The script that was running is not sent again; the next one starts
    // a new master connection.
    assert_eq!(run_ok(&transport, "echo back").await, "back\n");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn concurrent_runs_share_one_connection() {
    let fleet = Fleet::load();
    let transport = Arc::new(connect(&fleet, "fleet-2").await);
    // More at once than sshd's MaxSessions (10) allows on one connection.
    let started = Instant::now();
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..25 {
        let transport = Arc::clone(&transport);
        runs.spawn(async move {
            let out = run_ok(transport.as_ref(), &format!("sleep 0.2; echo {i}")).await;
            (i, out)
        });
    }
    while let Some(joined) = runs.join_next().await {
        let (i, out) = joined.expect("run task");
        assert_eq!(out, format!("{i}\n"));
    }
    println!("25 concurrent runs of `sleep 0.2`: {:?}", started.elapsed());
}

mod roots;
