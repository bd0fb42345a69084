//! Starts: a service that should run is started, asked whether it runs,
//! and reported as it is; its reload becomes moot.

use super::*;

/// Stubs for the init system: `start_clean` records what it was asked to
/// run and which of the worker's descriptors the start would see;
/// `service_running` says yes for what was started, unless `never_runs`
/// names it. (Functions only: the detached worker gets the script's
/// functions and its plan, not other variables.)
fn init_stubs(sandbox: &Sandbox, never_runs: &str) -> String {
    let log = sandbox.path("starts");
    format!(
        "start_clean() {{ echo \"$*\" >>'{log}'; echo \"$2: starting\"; }}\n\
         service_running() {{ [ \"$1\" != '{never_runs}' ] && grep -q -- \" $1 \" '{log}'; }}\n\
         {VALID}"
    )
}

fn start(service: &str) -> Change {
    Change::StartService {
        service: service.into(),
    }
}

#[test]
fn a_stopped_service_is_started_and_its_pending_reload_is_done() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.state()).expect("state");
    fs::write(sandbox.state().join("pending-reloads"), "php8.2-fpm\n").expect("pending");
    let fpm = Reload {
        service: Service::PhpFpm {
            version: PhpVersion::new("8.2"),
        },
        label: "php8.2-fpm".into(),
        when: ReloadWhen::Window,
        pending: true,
        interrupted: false,
        next_window: None,
        window_open_until: None,
        reasons: Vec::new(),
        for_changes_only: false,
        groups: Vec::new(),
    };
    let plan = plan(vec![start("php8.2-fpm")], vec![fpm]);
    let script = sandbox.script(&plan, &HostFacts::default(), &init_stubs(&sandbox, "-"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("bash");
    let records = crate::remote::protocol::parse(&out.stdout).expect("records");
    let started = crate::remote::first(&records, "started").expect("a started record");
    assert_eq!(started.text(0), "php8.2-fpm");
    assert_eq!(started.text(1), "php8.2-fpm: starting");
    assert!(
        crate::remote::first(&records, "deferred").is_none(),
        "started with its new configuration: nothing left for the window"
    );
    let outcome = read(&out.stdout, &plan);
    assert!(
        matches!(&outcome, Outcome::Applied { changes: 1, reloaded, deferred, .. }
            if reloaded.is_empty() && deferred.is_empty()),
        "{outcome:?}"
    );
    let starts = fs::read_to_string(sandbox.path("starts")).expect("starts");
    assert_eq!(starts, "service php8.2-fpm start\n");
    let pending = fs::read_to_string(sandbox.state().join("pending-reloads")).expect("pending");
    assert_eq!(pending, "", "no longer pending");
    let log = fs::read_to_string(sandbox.state().join("apply.log")).expect("apply log");
    let entry: ApplyLogEntry = serde_json::from_str(log.trim()).expect("one JSON line");
    assert_eq!(entry.started_services, ["php8.2-fpm"]);
    assert_eq!(entry.not_started, Vec::<String>::new());
    assert_eq!(entry.reloaded, Vec::<String>::new());
}

#[test]
fn a_service_that_does_not_run_after_its_start_fails_the_apply_by_name() {
    let sandbox = Sandbox::new();
    let plan = plan(vec![start("cron"), start("nginx")], Vec::new());
    let script = sandbox.script(&plan, &HostFacts::default(), &init_stubs(&sandbox, "cron"));
    let (outcome, stderr) = sandbox.run(&script);
    match outcome {
        Outcome::Failed { message, output } => {
            assert_eq!(message, "cannot start cron");
            assert!(
                output.contains("cron does not run after it was started"),
                "{output}"
            );
        }
        other => panic!("{other:?} {stderr}"),
    }
    let starts = fs::read_to_string(sandbox.path("starts")).expect("starts");
    assert_eq!(
        starts, "service cron start\nservice nginx start\n",
        "one failed start does not stop the others"
    );
    let log = fs::read_to_string(sandbox.state().join("apply.log")).expect("apply log");
    let entry: ApplyLogEntry = serde_json::from_str(log.trim()).expect("one JSON line");
    assert_eq!(
        (entry.started_services, entry.not_started),
        (vec!["nginx".to_owned()], vec!["cron".to_owned()])
    );
}

#[test]
fn a_start_runs_without_the_workers_lock_report_or_ignored_signals() {
    // The real start_clean, with `timeout` running a command that shows
    // what it inherited.
    let sandbox = Sandbox::new();
    let probe = sandbox.path("probe");
    let seen = sandbox.path("seen");
    fs::write(
        &probe,
        format!(
            "#!/bin/bash\nls /proc/$$/fd >'{seen}'\ngrep '^SigIgn' /proc/$$/status >>'{seen}'\n"
        ),
    )
    .expect("probe");
    fs::set_permissions(&probe, fs::Permissions::from_mode(0o755)).expect("chmod");
    let stubs = format!(
        "{VALID}\nservice_running() {{ true; }}\n\
         start_service_probe() {{ capture start_clean '{probe}'; }}\n\
         start_service() {{ start_service_probe; }}"
    );
    let plan = plan(vec![start("nginx")], Vec::new());
    let (outcome, stderr) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), &stubs));
    assert!(
        matches!(outcome, Outcome::Applied { .. }),
        "{outcome:?} {stderr}"
    );
    let seen = fs::read_to_string(&seen).expect("seen");
    let fds: Vec<&str> = seen.lines().filter(|l| !l.starts_with("Sig")).collect();
    assert!(
        !fds.contains(&"5") && !fds.contains(&"9"),
        "the report and lock descriptors reached the service: {fds:?}"
    );
    let ignored = seen
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("SigIgn");
    let mask = u64::from_str_radix(ignored.trim(), 16).expect("hex");
    // SIGHUP is 1, SIGTERM 15, SIGPIPE 13: bits 0, 14 and 12.
    assert_eq!(mask & (1 | 1 << 14 | 1 << 12), 0, "ignored: {ignored}");
}
