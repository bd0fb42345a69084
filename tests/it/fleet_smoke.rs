//! Smoke tests of the test fleet itself: every server answers SSH (our key, strict host keys)
//! and runs the PHP stack the reconciler manages.
//!
//! tests/fleet/fleet up 3 && cargo nextest run --run-ignored only --test fleet_smoke

use crate::common;

use common::{Fleet, run_with_stdin};

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
fn every_server_runs_the_php_stack() {
    let fleet = Fleet::load();
    for server in &fleet.servers {
        let out = server.ssh_ok(
            &fleet,
            r#"
            set -euo pipefail
            nginx -v 2>&1
            php-fpm8.2 -v | head -n1
            supervisorctl status
            pgrep -x cron >/dev/null || { echo "cron is not running" >&2; exit 1; }
            pgrep -f '^php-fpm: master process' >/dev/null || { echo "no php-fpm master" >&2; exit 1; }
            pgrep -x sshd >/dev/null
            nginx -t 2>&1
            php-fpm8.2 -t 2>&1
            for d in /etc/php/8.2/fpm/pool.d /etc/nginx/sites-enabled /etc/supervisor/conf.d /etc/cron.d; do
              test -d "$d" || { echo "missing $d" >&2; exit 1; }
            done
            hostname
            "#,
        );
        assert!(
            out.contains("nginx version: nginx/"),
            "{}: {out}",
            server.name
        );
        assert!(out.contains("PHP 8.2."), "{}: {out}", server.name);
        assert!(
            out.trim_end().ends_with(&server.name),
            "{}: hostname: {out}",
            server.name
        );
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
fn services_can_be_reloaded() {
    let fleet = Fleet::load();
    for server in &fleet.servers {
        server.ssh_ok(
            &fleet,
            r"
            set -euo pipefail
            test ! -e /usr/sbin/policy-rc.d  # nothing may block init scripts
            service nginx reload
            service php8.2-fpm reload
            supervisorctl reread
            supervisorctl update
            ",
        );
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
fn nginx_answers_on_the_published_http_port() {
    let fleet = Fleet::load();
    for server in &fleet.servers {
        let resp = server.http_response("/", "localhost");
        assert_eq!(resp.status, 200, "{}: {resp:?}", server.name);
        let software = resp.header("server").unwrap_or_default();
        assert!(
            software.starts_with("nginx"),
            "{}: Server: {software:?}",
            server.name
        );
        assert!(
            resp.body.contains("nginx"),
            "{}: {}",
            server.name,
            resp.body
        );
        let (status, _) = server.http_get("/no-such-page", "localhost");
        assert_eq!(status, 404, "{}", server.name);
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
fn servers_reach_redis() {
    let fleet = Fleet::load();
    let (host, port) = fleet.redis.split_once(':').expect("redis is host:port");
    for server in &fleet.servers {
        let out = server.ssh_ok(&fleet, &format!("redis-cli -h {host} -p {port} ping"));
        assert_eq!(out.trim(), "PONG", "{}", server.name);
    }
}

/// Strict host key checking is real: the same login fails when known_hosts holds a
/// different key for the server's address, or no key at all.
#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up"]
fn ssh_rejects_a_wrong_host_key() {
    let fleet = Fleet::load();
    let target = &fleet.servers[0];
    let dir = tempfile::tempdir().unwrap();

    // Another server's real host key, or a freshly made one when the fleet has one server.
    let wrong_key = if let Some(other) = fleet.servers.get(1) {
        known_host_key(&fleet, other.ssh_port)
    } else {
        let path = dir.path().join("other");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_ne!(wrong_key, known_host_key(&fleet, target.ssh_port));

    let wrong = dir.path().join("wrong_known_hosts");
    std::fs::write(
        &wrong,
        format!("[127.0.0.1]:{} {wrong_key}\n", target.ssh_port),
    )
    .unwrap();
    let empty = dir.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();

    // Control: the very same command with the fleet's known_hosts works.
    let ok = run_with_stdin(target.ssh_command(&fleet).args(["--", "true"]), "");
    assert!(
        ok.status.success(),
        "control login failed: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    for known_hosts in [&wrong, &empty] {
        let out = run_with_stdin(
            target
                .ssh_command_with(&fleet.key, known_hosts)
                .args(["--", "true"]),
            "",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "login accepted with {}",
            known_hosts.display()
        );
        assert!(stderr.contains("Host key verification failed"), "{stderr}");
    }
    // ssh must not have "learned" the key.
    assert_eq!(std::fs::read_to_string(&empty).unwrap(), "");
}

/// `ssh-ed25519 AAAA...` recorded in the fleet's known_hosts for `[127.0.0.1]:port`.
fn known_host_key(fleet: &Fleet, port: u16) -> String {
    let text = std::fs::read_to_string(&fleet.known_hosts).unwrap();
    let pattern = format!("[127.0.0.1]:{port}");
    text.lines()
        .find_map(|line| line.strip_prefix(&pattern))
        .map_or_else(
            || panic!("no known_hosts entry for {pattern}"),
            |key| key.trim().to_owned(),
        )
}
