//! plan and apply against the test fleet: real servers with sshd, nginx,
//! php-fpm, supervisor and cron. These tests share the servers fleet-1..3,
//! so nextest runs no two of them on one fleet (.config/nextest.toml); the
//! stopped-server test stops fleet-4, which no other test uses.

use crate::common;

use common::{Repo, host, install_release, kinds};
use serde_json::Value;

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

    // Releases put in place by hand restart no workers: beta's, which
    // supervisor gave up on while `current` was missing, wait for an apply
    // (a real release restarts them itself). After it, nothing is left.
    repo.run_expect(&["apply", "--yes", "--now"], 0);
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
        assert_eq!(host["reloads"][0]["when"], "manual");
        assert_eq!(host["reloads"].as_array().map(Vec::len), Some(1));
    }
    let text = repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        text.contains("fleet-2: 0 to create, 1 to update, 0 to remove; reload php8.2-fpm on --now"),
        "{text}"
    );

    // Applied without --now, the reload waits: the pool keeps its old size,
    // and a plan shows the pending reload without calling it a change.
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(
        out.contains(
            "php8.2-fpm is pending until `apply --now` (the cluster has no reload windows)"
        ),
        "{out}"
    );
    let pending = repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    assert!(
        pending.contains(
            "reload php8.2-fpm on `apply --now`: the cluster has no reload windows (pending from an earlier apply)"
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

    let embedded = include_str!("../../src/units/templates/nginx-vhost.conf.hbs");
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
    assert!(status.contains("beta-mail:beta-mail_00"), "{status}");

    repo.remove("apps/beta.yaml");
    let plan = repo.plan_json();
    assert_eq!(
        kinds(host(&plan, "fleet-1")),
        [
            "remove_file /etc/cron.d/beta",
            "remove_file /etc/logrotate.d/reconciler-beta",
            "remove_file /etc/nginx/sites-enabled/beta.conf",
            "remove_file /etc/php/8.2/fpm/pool.d/beta.conf",
            "remove_file /etc/supervisor/conf.d/beta.conf",
        ]
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);

    let left = repo.ssh(
        "fleet-1",
        "ls /etc/cron.d /etc/logrotate.d /etc/nginx/sites-enabled /etc/php/8.2/fpm/pool.d /etc/supervisor/conf.d",
    );
    assert!(!left.contains("beta"), "{left}");
    let status = repo.ssh("fleet-1", "supervisorctl status || true");
    assert!(!status.contains("beta"), "{status}");
    let (code, body) = repo.server("fleet-1").http_get("/", "alpha.test");
    assert_eq!((code, body.as_str()), (200, "alpha redis"));
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_stopped_server_fails_alone() {
    let repo = Repo::new(&["fleet-1", "fleet-2", "fleet-4"]);
    repo.app("alpha", &["fleet-1", "fleet-2", "fleet-4"], 5, "");
    let _restart = repo.fleet.stop("fleet-4");

    let out = repo.run_expect(&["apply", "--yes", "--now"], 1);
    // The server is named once; the message says what was dialled.
    let port = repo.server("fleet-4").ssh_port;
    assert!(
        out.contains(&format!(
            "fleet-4: error: connection to `root@127.0.0.1:{port}` refused\n  hint: check that the server is up"
        )),
        "{out}"
    );
    // Earlier tests may have converged fleet-1 and fleet-2 already.
    assert!(out.contains(", 1 failed (fleet-4)\n"), "{out}");
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
        plan.contains("Plan: 0 hosts to change, 2 unchanged, 0 failed"),
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

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn apply_as_json_follows_its_schema_and_each_apply_is_logged_on_the_server() {
    let repo = Repo::new(&["fleet-1"]);
    repo.app("alpha", &["fleet-1"], 3, "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.app("alpha", &["fleet-1"], 4, "");
    let text = repo.run_expect(&["apply", "--yes", "--now", "--format", "json"], 0);
    let result: Value = serde_json::from_str(&text).expect("one JSON document");
    common::assert_follows(include_str!("../../schemas/apply.schema.json"), &result);
    let host = &result["results"][0];
    assert_eq!(host["server"], "fleet-1");
    assert_eq!(host["result"], "applied");
    assert_eq!(host["changes"], 1);
    assert_eq!(host["reloaded"], serde_json::json!(["php8.2-fpm"]));
    assert_eq!(
        kinds(common::host(&result["plan"], "fleet-1")),
        ["update_file /etc/php/8.2/fpm/pool.d/alpha.conf"]
    );

    let log = repo.ssh("fleet-1", "tail -n1 /var/lib/reconciler/apply.log");
    let entry: Value = serde_json::from_str(&log).expect("a JSON line");
    assert_eq!(entry["result"], "applied");
    assert_eq!(
        entry["files"],
        serde_json::json!(["/etc/php/8.2/fpm/pool.d/alpha.conf"])
    );
    assert_eq!(entry["reloaded"], serde_json::json!(["php8.2-fpm"]));
    assert!(
        entry["holder"].as_str().is_some_and(|h| h.contains("@")),
        "{log}"
    );
    assert!(entry["started"].as_str() <= entry["time"].as_str(), "{log}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_opcache_status_answers_in_time_with_thousands_of_scripts_cached() {
    // The status lists every cached script, each with its last use as a
    // date: without TZ set, glibc stat()ed /etc/localtime per script, and
    // with 12,000 scripts (two or three Laravel releases) the status took
    // 7-10 s, past the fact gathering's 5 s: plans lost OPcache's figures.
    let repo = Repo::new(&["fleet-1"]);
    repo.app("many", &["fleet-1"], 2, "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    let client = include_str!("../../src/facts/fastcgi-client.php");
    let status = "/run/php/php8.2-fpm-_reconciler-status.sock";
    // 12,000 one-line scripts in /run (tmpfs: on the container's overlay,
    // writing them took minutes), dated a minute ago (older than
    // opcache.file_update_protection), compiled into php-fpm's OPcache by
    // a script in reconciler's directory (the only one opcache.restrict_api
    // lets use the OPcache API), run by the status pool.
    let out = repo.ssh(
        "fleet-1",
        &format!(
            "set -e\n\
             cat > /tmp/fastcgi-client.php <<'PHP'\n{client}PHP\n\
             mkdir -p /run/many-scripts\n\
             for i in $(seq 12000); do echo \"<?php return $i;\" > /run/many-scripts/s$i.php; done\n\
             touch -d '1 minute ago' /run/many-scripts/*.php\n\
             cat > /usr/local/lib/reconciler/test-compile-many.php <<'PHP'\n\
             <?php foreach (glob('/run/many-scripts/*.php') as $f) {{ opcache_compile_file($f); }}\n\
             echo opcache_get_status(false)['opcache_statistics']['num_cached_scripts'];\n\
             PHP\n\
             php8.2 -n /tmp/fastcgi-client.php {status} /usr/local/lib/reconciler/test-compile-many.php 60; echo\n\
             start=$(date +%s%N)\n\
             php8.2 -n /tmp/fastcgi-client.php {status} /usr/local/lib/reconciler/opcache-status.php 30 \
             | head -c 300 | tr -d '\\n'; echo\n\
             echo $(( ($(date +%s%N) - start) / 1000000 ))\n\
             cat > /usr/local/lib/reconciler/test-compile-many.php <<'PHP'\n\
             <?php opcache_reset();\n\
             PHP\n\
             php8.2 -n /tmp/fastcgi-client.php {status} /usr/local/lib/reconciler/test-compile-many.php 10\n\
             rm -rf /run/many-scripts /tmp/fastcgi-client.php /usr/local/lib/reconciler/test-compile-many.php"
        ),
    );
    let mut lines = out.lines().filter(|l| !l.is_empty());
    let cached: u64 = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(cached >= 12_000, "scripts cached: {out}");
    let answer = lines.next().unwrap_or_default();
    assert!(
        answer.starts_with(r#"{"opcache_enabled":true"#),
        "{answer:?} in {out}"
    );
    let ms: u64 = lines.next().and_then(|l| l.parse().ok()).expect("ms");
    eprintln!("the status took {ms} ms with {cached} scripts cached");
    // 0.9-10 s before the fix on the test fleet (where /etc/localtime is
    // on fuse-overlayfs), 50-190 ms after. The bound is no performance
    // target: the answer must come well within the gather's 5 s, which
    // the status shares with the rest of the facts, on a loaded machine.
    assert!(
        ms < 2000,
        "the status took {ms} ms with {cached} scripts cached"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_fastcgi_client_lints_and_reads_the_opcache_status_pool() {
    let repo = Repo::new(&["fleet-1"]);
    repo.app("fcgi", &["fleet-1"], 2, "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    let client = include_str!("../../src/facts/fastcgi-client.php");
    let out = repo.ssh(
        "fleet-1",
        &format!(
            "cat > /tmp/fastcgi-client.php <<'PHP'\n{client}PHP\n\
             php8.2 -l /tmp/fastcgi-client.php\n\
             php8.2 -n /tmp/fastcgi-client.php /run/php/php8.2-fpm-_reconciler-status.sock \
             /usr/local/lib/reconciler/opcache-status.php\n\
             php8.2 -n /tmp/fastcgi-client.php /run/php/no-such.sock /x.php; echo \"exit $?\"\n\
             rm -f /tmp/fastcgi-client.php"
        ),
    );
    let mut lines = out.lines();
    assert_eq!(
        lines.next(),
        Some("No syntax errors detected in /tmp/fastcgi-client.php")
    );
    let status: serde_json::Value =
        serde_json::from_str(lines.next().unwrap_or_default()).expect("the status as JSON");
    assert!(status["opcache_enabled"].is_boolean(), "{status}");
    assert!(status["reconciler_release_scripts"].is_object(), "{status}");
    assert_eq!(
        lines.next(),
        Some("exit 1"),
        "a socket that does not answer: {out}"
    );
}
