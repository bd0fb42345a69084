//! What an apply restarts: only what changed. Each worker is a supervisor
//! program of its own, so a change to one worker's command restarts that
//! worker and no other (not waiting for the others' `stop_wait`), a worker
//! added or removed starts or stops alone, and a server set up when an
//! app's programs were one group is brought to one group per program. And
//! all that must: a changed CLI php.ini restarts every worker (long-running
//! PHP reads it when it starts).

use crate::common;

use std::time::{Duration, Instant};

use common::apps::live_release;
use common::{Repo, host, kinds};

const RELEASE: &str = "7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a7a";

/// `gamma` on fleet-1 with `workers` (YAML flow items).
fn gamma(repo: &Repo, workers: &[&str]) {
    let mut extra = String::new();
    if !workers.is_empty() {
        extra.push_str("    workers:\n");
        for worker in workers {
            extra.push_str(&format!("      - {worker}\n"));
        }
    }
    repo.app("gamma", &["fleet-1"], 2, &extra);
}

/// `a` and `c` stop at once; `b` ignores SIGTERM when /tmp/gamma-hold
/// exists as it starts, so stopping it takes its whole `stop_wait`.
const A: &str = "{ name: a, command: sleep 100000, stop_wait: 1 }";
const B: &str = "{ name: b, command: \"[ -e /tmp/gamma-hold ] && trap '' TERM; exec sleep 100001\", stop_wait: 20 }";
const C: &str = "{ name: c, command: sleep 100003, stop_wait: 1 }";

/// Each of gamma's worker processes (by the name after the group: `gamma-a_00`)
/// with its state and pid, as `supervisorctl status` lists them; `full`
/// is the whole name (`gamma-a:gamma-a_00`).
#[derive(Debug, Clone, PartialEq)]
struct Process {
    full: String,
    state: String,
    pid: Option<u32>,
}

fn processes(repo: &Repo) -> std::collections::BTreeMap<String, Process> {
    let status = repo.ssh("fleet-1", "supervisorctl status || true");
    status
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let full = words.next()?.to_owned();
            let name = full.rsplit(':').next()?.to_owned();
            if !name.starts_with("gamma-") {
                return None;
            }
            let state = words.next().unwrap_or("").to_owned();
            let pid = line
                .split_once("pid ")
                .and_then(|(_, rest)| rest.split(',').next())
                .and_then(|pid| pid.trim().parse().ok());
            Some((name, Process { full, state, pid }))
        })
        .collect()
}

/// gamma's processes once each of `names` runs (RUNNING for a second:
/// supervisor's `startsecs`), within 20 s.
fn running(repo: &Repo, names: &[&str]) -> std::collections::BTreeMap<String, Process> {
    let started = Instant::now();
    loop {
        let now = processes(repo);
        let all = names
            .iter()
            .all(|n| now.get(*n).is_some_and(|p| p.state == "RUNNING"));
        if all {
            return now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{names:?} do not all run: {now:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn pid(processes: &std::collections::BTreeMap<String, Process>, name: &str) -> u32 {
    processes
        .get(name)
        .and_then(|p| p.pid)
        .unwrap_or_else(|| panic!("no pid for {name}: {processes:#?}"))
}

/// gamma applied without workers, a release made live, then `workers`
/// added and applied: they start on the live release. `b` holds SIGTERM
/// when `hold`.
fn deployed(repo: &Repo, workers: &[&str], hold: bool) {
    gamma(repo, &[]);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    live_release(
        repo,
        "fleet-1",
        "gamma",
        RELEASE,
        &[("public/index.php", "<?php echo 'ok';")],
    );
    let hold = if hold { "touch" } else { "rm -f" };
    repo.ssh("fleet-1", &format!("{hold} /tmp/gamma-hold"));
    gamma(repo, workers);
    repo.run_expect(&["apply", "--yes"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_change_to_one_worker_restarts_only_that_worker() {
    let repo = Repo::new(&["fleet-1"]);
    deployed(&repo, &[A, B, C], true);
    let before = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-c_00"]);

    // One worker's command changes: the plan rewrites the program file;
    // the apply restarts `a` alone and does not wait for `b`'s 20 s.
    gamma(&repo, &[&A.replace("100000", "100002"), B, C]);
    let plan = repo.plan_json();
    assert_eq!(
        kinds(host(&plan, "fleet-1")),
        ["update_file /etc/supervisor/conf.d/gamma.conf"]
    );
    let started = Instant::now();
    let out = repo.run_expect(&["apply", "--yes"], 0);
    let took = started.elapsed();
    eprintln!("the apply that changed one of three workers took {took:.1?}");
    let after = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-c_00"]);
    assert_ne!(pid(&after, "gamma-a_00"), pid(&before, "gamma-a_00"));
    for unchanged in ["gamma-b_00", "gamma-c_00"] {
        assert_eq!(
            pid(&after, unchanged),
            pid(&before, unchanged),
            "{unchanged} restarted: {out}"
        );
    }
    assert!(
        took < Duration::from_secs(20),
        "the apply waited for an unchanged worker's stop_wait: {took:?}"
    );
    assert!(
        out.contains("reloaded supervisor:gamma (updated gamma-a)"),
        "{out}"
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);

    // A worker goes and another comes: only they stop and start.
    gamma(
        &repo,
        &[
            &A.replace("100000", "100002"),
            B,
            "{ name: d, command: sleep 100004, stop_wait: 1 }",
        ],
    );
    let out = repo.run_expect(&["apply", "--yes"], 0);
    assert!(
        out.contains("reloaded supervisor:gamma (updated gamma-c, gamma-d)"),
        "{out}"
    );
    let now = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-d_00"]);
    assert!(!now.contains_key("gamma-c_00"), "{now:#?}");
    assert_eq!(pid(&now, "gamma-a_00"), pid(&after, "gamma-a_00"));
    assert_eq!(pid(&now, "gamma-b_00"), pid(&after, "gamma-b_00"));

    // A server set up by an earlier reconciler has the app's programs in
    // one group `gamma`: the next apply makes each its own group, and no
    // process runs twice. (`b` is killed first: it would hold the old
    // group's stop for 20 s.)
    repo.ssh(
        "fleet-1",
        "rm -f /tmp/gamma-hold && supervisorctl signal KILL gamma-b:* >/dev/null && \
         printf '\\n[group:gamma]\\nprograms=gamma-a,gamma-b,gamma-d\\n' >> /etc/supervisor/conf.d/gamma.conf && \
         supervisorctl update >/dev/null",
    );
    let old = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-d_00"]);
    assert_eq!(old["gamma-a_00"].full, "gamma:gamma-a_00", "{old:#?}");
    repo.run_expect(&["apply", "--yes"], 0);
    let new = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-d_00"]);
    let names: Vec<&str> = new.values().map(|p| p.full.as_str()).collect();
    assert_eq!(
        names,
        [
            "gamma-a:gamma-a_00",
            "gamma-b:gamma-b_00",
            "gamma-d:gamma-d_00"
        ]
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_changed_cli_php_ini_restarts_every_worker() {
    let repo = Repo::new(&["fleet-1"]);
    deployed(&repo, &[A, B, C], false);
    let before = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-c_00"]);

    // The cluster's php_ini changes: the CLI php.ini with it. Before, the
    // plan showed the file alone and the workers kept the old values.
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let cluster = std::fs::read_to_string(&path).expect("cluster");
    let cluster = cluster.replacen(
        "servers:\n",
        "php_ini: { max_input_vars: 2345 }\nservers:\n",
        1,
    );
    repo.write("clusters/fleet.yaml", &cluster);
    let plan = repo.run_expect(&["plan"], 0);
    let out = repo.run_expect(&["apply", "--yes", "--now"], 0);
    let after = running(&repo, &["gamma-a_00", "gamma-b_00", "gamma-c_00"]);
    for worker in ["gamma-a_00", "gamma-b_00", "gamma-c_00"] {
        assert_ne!(
            pid(&after, worker),
            pid(&before, worker),
            "{worker} kept the php.ini it started with: {out}"
        );
    }
    assert!(plan.contains("/etc/php/8.2/cli/conf.d/"), "{plan}");
    assert!(
        plan.contains("* restart workers gamma-a:*, gamma-b:*, gamma-c:* now"),
        "{plan}"
    );
    assert!(
        out.contains("workers:gamma (restarted gamma-a, gamma-b, gamma-c)"),
        "{out}"
    );
    // The CLI reads the new value (what a restarted worker reads).
    let value = repo.ssh("fleet-1", "php -r 'echo ini_get(\"max_input_vars\");'");
    assert_eq!(value.trim(), "2345");
    repo.run_expect(&["plan", "--detailed-exitcode"], 0);
}

/// `delta` on fleet-1: a site printing the greeting its cached config
/// holds, which its `env_commands` compile from shared/.env (as Laravel's
/// `config:cache` does), and one worker.
fn delta(repo: &Repo, workers: bool) {
    let worker = if workers {
        "    workers: [{ name: w, command: sleep 100005, stop_wait: 1 }]\n"
    } else {
        ""
    };
    repo.write(
        "apps/delta.yaml",
        &format!(
            "name: delta\ncluster: fleet\nrepo: https://git.example.com/delta.git\nphp: \"8.2\"\n\
             domains: [delta.test]\nenv_commands: [php make-config.php]\nservers:\n\
             \x20 - name: fleet-1\n    web: {{ max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }}\n{worker}"
        ),
    );
}

const MAKE_CONFIG: &str = "<?php\n$env = parse_ini_file(getenv('HOME') . '/shared/.env');\n\
    file_put_contents(__DIR__ . '/config.php', '<?php return ' . var_export(['greeting' => $env['GREETING']], true) . ';');\n";

/// The greeting the site serves, once OPcache may cache the config
/// (`opcache.file_update_protection`: not within 2 s of its writing).
fn greeting(repo: &Repo) -> String {
    std::thread::sleep(Duration::from_millis(2200));
    let (status, body) = repo.server("fleet-1").http_get("/", "delta.test");
    assert_eq!(status, 200, "{body}");
    body
}

fn push(repo: &Repo, greeting: &str, extra: &[&str]) -> String {
    let file = repo.dir.path().join("../delta.env");
    std::fs::write(&file, format!("GREETING={greeting}\n")).expect("env file");
    let file = file.to_string_lossy().into_owned();
    let mut args = vec!["env", "push", "delta", file.as_str()];
    args.extend(extra);
    repo.run_expect(&args, 0)
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn env_push_makes_the_site_and_the_workers_read_the_new_values() {
    let repo = Repo::new(&["fleet-1"]);
    // OPcache as examples/fleet sets it: files are never checked again.
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let plain = std::fs::read_to_string(&path).expect("cluster");
    let cluster = plain.replacen(
        "servers:\n",
        "php_ini: { opcache.validate_timestamps: false }\nservers:\n",
        1,
    );
    repo.write("clusters/fleet.yaml", &cluster);
    delta(&repo, false);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    // A release directory of its own: OPcache never checks a file again,
    // so an earlier run's config in the same path would stay cached.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let sha = format!("{nanos:040x}");
    live_release(
        &repo,
        "fleet-1",
        "delta",
        &sha,
        &[
            ("make-config.php", MAKE_CONFIG),
            (
                "public/index.php",
                "<?php echo (require __DIR__ . '/../config.php')['greeting'];",
            ),
        ],
    );
    delta(&repo, true);
    repo.run_expect(&["apply", "--yes"], 0);
    // The worker's pid once it runs (whatever its group's name).
    let worker = |repo: &Repo| {
        let started = Instant::now();
        loop {
            let status = repo.ssh("fleet-1", "supervisorctl status || true");
            let pid = status
                .lines()
                .find(|l| {
                    l.split_whitespace()
                        .next()
                        .is_some_and(|n| n.ends_with(":delta-w_00"))
                })
                .filter(|l| l.contains(" RUNNING "))
                .and_then(|l| {
                    l.split_once("pid ")?
                        .1
                        .split(',')
                        .next()?
                        .parse::<u32>()
                        .ok()
                });
            if let Some(pid) = pid {
                return pid;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "{status}");
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    push(&repo, "one", &[]);
    assert_eq!(greeting(&repo), "one");
    assert_eq!(greeting(&repo), "one", "cached now");
    let before = worker(&repo);

    // A new value: the page shows it (OPcache emptied) and the worker
    // restarted. Before, the page kept "one" and the worker its pid.
    let out = push(&repo, "two", &[]);
    assert_eq!(greeting(&repo), "two", "{out}");
    assert_ne!(worker(&repo), before, "{out}");
    assert!(
        out.contains(
            "fleet-1: restarted workers delta-w; reloaded php8.2-fpm (its OPcache emptied)"
        ),
        "{out}"
    );
    assert_eq!(greeting(&repo), "two", "cached now");

    // --no-restart: neither, and the output says the old values stay live.
    let before = worker(&repo);
    let out = push(&repo, "three", &["--no-restart"]);
    assert!(
        out.contains(
            "fleet-1: nothing restarted (--no-restart): the workers and OPcache keep the old values"
        ),
        "{out}"
    );
    assert_eq!(greeting(&repo), "two", "{out}");
    assert_eq!(worker(&repo), before);

    // OPcache as the other tests expect it again.
    repo.write("clusters/fleet.yaml", &plain);
    repo.run_expect(&["apply", "--yes", "--now"], 0);
}
