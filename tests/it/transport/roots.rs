//! Scripts as root through sudo and on this machine, and held uploads.

use super::*;

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn sudo_user_runs_scripts_as_root() {
    let fleet = Fleet::load();
    let fleet_server = fleet.server("fleet-3");
    let users = SudoUsers::create(&fleet, fleet_server);

    let as_sudoer = Server {
        user: users.sudoer.into(),
        ..server(fleet_server)
    };
    let transport = SshTransport::connect(&as_sudoer, &options(&fleet))
        .await
        .expect("connect as the sudoer");
    assert_eq!(
        run_ok(&transport, "id -un; echo $SUDO_USER").await,
        "root\nrt-sudoer\n"
    );
    let out = transport
        .run("cat; echo done; exit 4", LIMIT)
        .await
        .expect("run");
    assert_eq!((out.status, out.stdout_text()), (Some(4), "done\n".into()));

    let without_sudo = Server {
        user: users.plain.into(),
        ..server(fleet_server)
    };
    let err = expect_error(SshTransport::connect(&without_sudo, &options(&fleet)).await);
    let message = err.to_string();
    assert!(
        message.starts_with("user `rt-nosudo` cannot run `sudo` without a password"),
        "{message}"
    );
}

/// Two users on a fleet server, removed again when dropped: one with
/// passwordless sudo, one without sudo at all.
struct SudoUsers<'a> {
    fleet: &'a Fleet,
    server: &'a FleetServer,
    sudoer: &'static str,
    plain: &'static str,
}

impl<'a> SudoUsers<'a> {
    fn create(fleet: &'a Fleet, server: &'a FleetServer) -> Self {
        let users = Self {
            fleet,
            server,
            sudoer: "rt-sudoer",
            plain: "rt-nosudo",
        };
        let mut public_key = String::new();
        std::fs::File::open(fleet.key.with_extension("pub"))
            .and_then(|mut file| file.read_to_string(&mut public_key))
            .expect("read the fleet's public key");
        server.ssh_ok(
            fleet,
            &format!(
                "set -eu\n{cleanup}\n\
                 for u in {sudoer} {plain}; do\n\
                   useradd --system --create-home --home-dir /var/lib/$u --shell /bin/bash $u\n\
                   install -d -m 700 -o $u -g $u /var/lib/$u/.ssh\n\
                   printf '%s\\n' {key} > /var/lib/$u/.ssh/authorized_keys\n\
                   chown $u: /var/lib/$u/.ssh/authorized_keys\n\
                   usermod -p '*' $u\n\
                 done\n\
                 echo '{sudoer} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{sudoer}\n\
                 chmod 440 /etc/sudoers.d/{sudoer}\n",
                cleanup = users.cleanup_script(),
                sudoer = users.sudoer,
                plain = users.plain,
                key = quote(public_key.trim()),
            ),
        );
        users
    }

    fn cleanup_script(&self) -> String {
        format!(
            "rm -f /etc/sudoers.d/{0}; for u in {0} {1}; do pkill -u $u || true; \
             userdel -r $u 2>/dev/null || true; done",
            self.sudoer, self.plain
        )
    }
}

impl Drop for SudoUsers<'_> {
    fn drop(&mut self) {
        self.server.ssh(self.fleet, &self.cleanup_script());
    }
}

#[tokio::test]
async fn local_transport_runs_scripts() {
    let server = Server {
        name: ServerName::new("here"),
        address: "local".into(),
        port: 22,
        user: "root".into(),
        web_server: false,
        known_hosts: None,
    };
    // As root, as CI runs; a user without root or passwordless sudo sees
    // the transport's own error here.
    let transport = transport::connect(&server, &ConnectOptions::default())
        .await
        .unwrap_or_else(|err| panic!("local transport: {err}"));
    assert_eq!(transport.server().as_str(), "here");
    let out = transport
        .run("echo out; echo err >&2; id -u; exit 7", LIMIT)
        .await
        .expect("run");
    assert_eq!(out.status, Some(7));
    assert_eq!(out.stdout_text(), "out\n0\n");
    assert_eq!(out.stderr_text(), "err\n");

    // A script over its limit is stopped, and what it printed comes back.
    let err = transport
        .run("echo started; sleep 30", Duration::from_millis(500))
        .await
        .expect_err("over its limit");
    match err {
        TransportError::ScriptTimeout { partial, .. } => {
            assert_eq!(partial.stdout_text(), "started\n");
        }
        other => panic!("{other:?}"),
    }
}

/// Uploads and holds, the same on every transport: `input` arrives whole on
/// the script's fd 3 (from memory or streamed from a file), and a held
/// lock is held until it is let go (or its holder is dropped), and by
/// nobody else meanwhile. The `held` record is found by reading records:
/// a field that spells it is just a field.
async fn uploads_and_holds(transport: &dyn Transport, lock: &str) {
    use reconciler::remote::protocol::encode_text;
    let input: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(file.path(), &input).expect("write");
    for (what, sent) in [
        ("memory", Input::Bytes(&input)),
        ("a file", Input::File(file.path())),
    ] {
        let out = transport
            .run_with("head -c 5000000 <&3 | sha256sum | cut -c1-64", sent, LIMIT)
            .await
            .expect("upload");
        assert_eq!(
            out.stdout_text().trim(),
            reconciler::units::sha256(&input),
            "from {what}: {}",
            out.stderr_text()
        );
    }

    // `record KIND FIELD...` as the remote kit writes it.
    let record = r#"record() { local k=$1 f='' i; shift; for ((i = 0; i < $#; i++)); do f+='%s\0'; done; printf "@%s\\0%d\\0${f}\\n" "$k" "$#" "$@"; }"#;
    let script = format!(
        "{record}\nexec 9>>{lock}; flock -n 9 || {{ record busy; exit 0; }}\n\
         record got $'a\\n@held' 0\nrecord held\n\
         cat <&3 >/dev/null 9>&-; record released"
    );
    let first = match transport.hold(&script, LIMIT).await.expect("hold") {
        Holding::Held { stdout, guard } => {
            assert_eq!(stdout, encode_text("got", &["a\n@held", "0"]));
            guard
        }
        Holding::Ended(out) => panic!("not held: {out:?}"),
    };
    match transport.hold(&script, LIMIT).await.expect("hold") {
        Holding::Ended(out) => assert_eq!(out.stdout, encode_text("busy", &[])),
        Holding::Held { .. } => panic!("held twice"),
    }
    let released = first.release(LIMIT).await.expect("release");
    assert_eq!(
        (released.status, released.stdout),
        (Some(0), encode_text("released", &[]))
    );

    // Dropped without a release: the lock goes as soon as the script sees
    // its fd 3 end.
    match transport.hold(&script, LIMIT).await.expect("hold") {
        Holding::Held { guard, .. } => drop(guard),
        Holding::Ended(out) => panic!("not held after a release: {out:?}"),
    }
    let started = Instant::now();
    loop {
        match transport.hold(&script, LIMIT).await.expect("hold") {
            Holding::Held { guard, .. } => {
                guard.release(LIMIT).await.expect("release");
                break;
            }
            Holding::Ended(_) => {
                assert!(started.elapsed() < Duration::from_secs(10), "never let go");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
async fn uploads_and_holds_over_ssh() {
    let fleet = Fleet::load();
    let transport = connect(&fleet, "fleet-1").await;
    uploads_and_holds(&transport, "/tmp/transport-test.lock").await;
    transport.close().await.expect("close");
}

#[tokio::test]
async fn uploads_and_holds_on_this_machine() {
    let server = Server {
        name: ServerName::new("here"),
        address: "local".into(),
        port: 22,
        user: "root".into(),
        web_server: false,
        known_hosts: None,
    };
    // As root, as CI runs; a user without root or passwordless sudo sees
    // the transport's own error here.
    let transport = transport::connect(&server, &ConnectOptions::default())
        .await
        .unwrap_or_else(|err| panic!("local transport: {err}"));
    let dir = tempfile::tempdir().expect("tempdir");
    let lock = dir.path().join("lock");
    uploads_and_holds(transport.as_ref(), &quote(&lock.to_string_lossy())).await;
}
