//! Services that must run: php-fpm stopped by hand, a worker process
//! stopped, seen by `plan`, started by `apply` and by `watch --drift
//! correct`, reported and left alone by `--drift warn`.

use super::*;
use common::apps::live_release;

const RELEASE: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// `alpha` on `server`: a site (answering `ok`) and one worker process,
/// `alpha-w:alpha-w_00`, that runs while /tmp/alpha-runs exists and dies at
/// once without it.
fn alpha(repo: &Repo, server: &str) {
    repo.app(
        "alpha",
        &[server],
        2,
        "    workers:\n      - { name: w, command: 'sh -c \"[ -e /tmp/alpha-runs ] && exec sleep 100000\"', processes: 1, stop_wait: 1 }\n",
    );
}

/// Applies, makes a release live and applies again (the worker waited for
/// the release): the site answers and the worker runs.
fn deployed(repo: &Repo, server: &str) {
    repo.ssh(server, "touch /tmp/alpha-runs");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    live_release(
        repo,
        server,
        "alpha",
        RELEASE,
        &[("public/index.php", "<?php echo 'ok';")],
    );
    repo.ssh(
        server,
        "supervisorctl restart 'alpha-w:*' >/dev/null 2>&1 || true",
    );
    assert_eq!(site(repo, server), 200);
    assert_eq!(worker(repo, server), "RUNNING");
}

fn site(repo: &Repo, server: &str) -> u16 {
    repo.server(server).http_get("/", "alpha.test").0
}

/// The state supervisorctl gives alpha's worker process.
fn worker(repo: &Repo, server: &str) -> String {
    let line = repo.ssh(
        server,
        "supervisorctl status alpha-w:alpha-w_00 2>/dev/null || true",
    );
    line.split_whitespace().nth(1).unwrap_or("").to_owned()
}

fn fpm_runs(repo: &Repo, server: &str) -> bool {
    repo.ssh(
        server,
        "service php8.2-fpm status >/dev/null 2>&1 && echo yes || echo no",
    )
    .trim()
        == "yes"
}

/// Starts php-fpm and every worker again when the test ends, whatever
/// happened: the fleet is shared.
struct Restart<'a>(&'a Repo, &'a str);

impl Drop for Restart<'_> {
    fn drop(&mut self) {
        let _ = self.0.server(self.1).ssh(
            &self.0.fleet,
            "service php8.2-fpm start >/dev/null 2>&1; touch /tmp/alpha-runs; \
             supervisorctl start 'alpha-w:*' >/dev/null 2>&1; true",
        );
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn php_fpm_stopped_by_hand_is_planned_and_apply_starts_it_and_the_site_answers() {
    let repo = Repo::new(&["fleet-1"]);
    alpha(&repo, "fleet-1");
    deployed(&repo, "fleet-1");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
    let _restart = Restart(&repo, "fleet-1");

    repo.ssh("fleet-1", "service php8.2-fpm stop >/dev/null");
    assert_eq!(site(&repo, "fleet-1"), 502, "the site is down");

    let text = repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    assert!(
        text.contains("> start php8.2-fpm (it is stopped)"),
        "{text}"
    );
    assert!(text.contains("1 to start"), "{text}");
    let plan = repo.plan_json();
    let changes = &host(&plan, "fleet-1")["changes"];
    assert_eq!(
        changes,
        &serde_json::json!([{ "kind": "start_service", "service": "php8.2-fpm" }]),
        "{plan:#}"
    );

    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(out.contains("fleet-1: applied 1 change"), "{out}");
    assert!(fpm_runs(&repo, "fleet-1"), "php-fpm was started");
    assert_eq!(site(&repo, "fleet-1"), 200, "the site answers again");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_stopped_or_dead_worker_is_planned_and_apply_starts_it() {
    let repo = Repo::new(&["fleet-1"]);
    alpha(&repo, "fleet-1");
    deployed(&repo, "fleet-1");
    let _restart = Restart(&repo, "fleet-1");

    // Stopped by hand.
    repo.ssh(
        "fleet-1",
        "supervisorctl stop alpha-w:alpha-w_00 >/dev/null",
    );
    assert_eq!(worker(&repo, "fleet-1"), "STOPPED");
    let plan = repo.plan_json();
    assert_eq!(
        host(&plan, "fleet-1")["changes"],
        serde_json::json!([{
            "kind": "start_program", "program": "alpha-w:alpha-w_00", "state": "STOPPED"
        }]),
        "{plan:#}"
    );
    let text = repo.run_expect(&["plan"], 0);
    assert!(
        text.contains("> start program alpha-w:alpha-w_00 (it is STOPPED)"),
        "{text}"
    );
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(out.contains("fleet-1: applied 1 change"), "{out}");
    assert_eq!(worker(&repo, "fleet-1"), "RUNNING");

    // Dying as it starts: supervisor retries (BACKOFF, STARTING between
    // tries), then gives up (FATAL). Once it can run again, apply starts
    // it.
    repo.ssh(
        "fleet-1",
        "rm /tmp/alpha-runs && supervisorctl stop alpha-w:alpha-w_00 >/dev/null && \
         { supervisorctl start alpha-w:alpha-w_00 >/dev/null 2>&1 || true; }",
    );
    let started = Instant::now();
    while worker(&repo, "fleet-1") != "FATAL" {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "supervisor did not give up on the worker"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let plan = repo.plan_json();
    assert_eq!(
        host(&plan, "fleet-1")["changes"],
        serde_json::json!([{
            "kind": "start_program", "program": "alpha-w:alpha-w_00", "state": "FATAL"
        }]),
        "{plan:#}"
    );
    repo.ssh("fleet-1", "touch /tmp/alpha-runs");
    repo.run_expect(&["apply", "--yes"], 0);
    assert_eq!(worker(&repo, "fleet-1"), "RUNNING");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn stopped_services_are_reported_by_drift_warn_and_started_by_drift_correct() {
    let servers = ["fleet-2"];
    let defs = Definitions::new(&servers);
    let repo = &defs.repo;
    alpha(repo, "fleet-2");
    let commit = defs.commit("alpha");
    deployed(repo, "fleet-2");
    let _restart = Restart(repo, "fleet-2");

    let state = tempfile::tempdir().expect("state");
    let mut warn = Daemon::start(
        &defs,
        state.path(),
        &["--drift", "warn", "--drift-interval", "1s"],
    );
    warn.wait_converged(&commit, &servers, Duration::from_secs(60));

    repo.ssh(
        "fleet-2",
        "service php8.2-fpm stop >/dev/null && supervisorctl stop alpha-w:alpha-w_00 >/dev/null",
    );
    let status = warn.wait_for("the drift to be reported", Duration::from_secs(30), |s| {
        s["hosts"]["fleet-2"]["drift"] == 2
    });
    assert_eq!(status["hosts"]["fleet-2"]["last_result"], "drift");
    std::thread::sleep(Duration::from_secs(3)); // more drift checks: still left alone
    assert!(!fpm_runs(repo, "fleet-2"), "warn started php-fpm");
    assert_eq!(
        worker(repo, "fleet-2"),
        "STOPPED",
        "warn started the worker"
    );
    assert_eq!(site(repo, "fleet-2"), 502);
    assert!(warn.terminate(Duration::from_secs(30)).success());

    let correct = Daemon::start(&defs, state.path(), &["--drift-interval", "1s"]);
    let started = Instant::now();
    while !(fpm_runs(repo, "fleet-2") && worker(repo, "fleet-2") == "RUNNING") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the stopped services were not started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    correct.wait_for("the host to be clean", Duration::from_secs(20), |s| {
        s["hosts"]["fleet-2"]["drift"] == 0 && s["hosts"]["fleet-2"]["failures"] == 0
    });
    assert_eq!(site(repo, "fleet-2"), 200, "the site answers again");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}
