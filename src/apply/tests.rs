//! The apply script (prelude.sh, steps.sh, worker.sh) run by the local
//! bash in a temporary directory: the apply's logic and its report parser
//! together, without a server. Validators and
//! reloads are replaced by shell functions the test defines; everything
//! else (staging, backups, journal, lock, detaching) is the real script.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::report::read;
use super::*;
use crate::definitions::{AppName, PhpVersion, ServerName};
use crate::facts::{HostFacts, Journal};
use crate::plan::{Change, Ownership, Reload, ReloadWhen, Service};
use crate::units::sha256;

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, relative: &str) -> String {
        self.dir
            .path()
            .join(relative)
            .to_string_lossy()
            .into_owned()
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The apply script for `plan`, its state in the sandbox, `stubs`
    /// defining the validators and reloads.
    fn script(&self, plan: &HostPlan, facts: &HostFacts, stubs: &str) -> String {
        let (script, _) = super::script::build(plan, facts, &ScriptOptions::default());
        self.with_overrides(&script, stubs)
    }

    /// `script` with its state in the sandbox and `stubs` defined.
    fn with_overrides(&self, script: &str, stubs: &str) -> String {
        let state = self.state();
        let state = state.to_string_lossy();
        let overrides = format!(
            "STATE={state}; MANIFEST={state}/manifest; PENDING={state}/pending-reloads; \
             JOURNAL={state}/journal; BACKUPS={state}/backup; LOCK={state}/lock; \
             LOCK_HOLDER={state}/lock.holder; GENERATION={state}/generation; RUN_DIR={state}/run; APPLY_LOG={state}/apply.log; \
             USERS_FILE={state}/users\n{stubs}\n"
        );
        script.replacen(
            "\n'apply_main'\n",
            &format!("\n{overrides}'apply_main'\n"),
            1,
        )
    }

    fn run(&self, script: &str) -> (Outcome, String) {
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .output()
            .expect("bash");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (read(&out.stdout, &dummy_plan()), stderr)
    }
}

fn dummy_plan() -> HostPlan {
    HostPlan::failed(crate::definitions::ServerName::new("here"), "", None)
}

fn plan(changes: Vec<Change>, reloads: Vec<Reload>) -> HostPlan {
    let mut plan = dummy_plan();
    plan.error = None;
    plan.changes = changes;
    plan.reloads = reloads;
    plan
}

fn root(mode: u32) -> Ownership {
    Ownership::new("root", "root", mode)
}

fn create(path: &str, content: &str) -> Change {
    Change::CreateFile {
        path: path.into(),
        to: root(0o640),
        diff: String::new(),
        content: content.into(),
    }
}

fn update(path: &str, old: &str, content: &str) -> Change {
    Change::UpdateFile {
        path: path.into(),
        from: root(0o644),
        to: root(0o644),
        diff: Some(String::new()),
        adopt: false,
        content: content.into(),
        expected: sha256(old.as_bytes()),
    }
}

fn nginx_reload() -> Reload {
    Reload {
        service: Service::Nginx,
        label: "nginx".into(),
        when: ReloadWhen::Now,
        pending: false,
        interrupted: false,
        next_window: None,
        window_open_until: None,
        reasons: Vec::new(),
        for_changes_only: true,
        groups: Vec::new(),
    }
}

const VALID: &str = "validate_one() { out=\"$1 ok\"; }\nreload_one() { out=reloaded; }";
const INVALID: &str = "validate_one() { out='nginx: [emerg] unknown directive \"x\"'; return 1; }\nreload_one() { out=reloaded; }";

#[test]
fn a_valid_plan_lands_with_owner_mode_and_manifest() {
    let sandbox = Sandbox::new();
    let (new, old) = (sandbox.path("new.conf"), sandbox.path("old.conf"));
    fs::write(&old, "old\n").expect("write");
    let mut plan = plan(
        vec![create(&new, "new\n"), update(&old, "old\n", "changed\n")],
        vec![nginx_reload()],
    );
    plan.manifest = vec![new.clone(), old.clone()];
    let (outcome, stderr) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), VALID));
    assert!(
        matches!(&outcome, Outcome::Applied { reloaded, .. } if reloaded == &["nginx"]),
        "{outcome:?} {stderr}"
    );
    assert_eq!(fs::read_to_string(&new).expect("new"), "new\n");
    assert_eq!(fs::read_to_string(&old).expect("old"), "changed\n");
    let mode = fs::metadata(&new).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let manifest = fs::read_to_string(sandbox.state().join("manifest")).expect("manifest");
    assert_eq!(manifest, format!("{new}\n{old}\n"));
    assert!(!sandbox.state().join("journal").exists(), "journal removed");
    let backups = fs::read_dir(sandbox.state().join("backup"))
        .expect("backups")
        .count();
    assert_eq!(backups, 0, "backups removed");
    // The log line reads back as the type whose parts serde wrote.
    let log = fs::read_to_string(sandbox.state().join("apply.log")).expect("apply log");
    let entry: ApplyLogEntry = serde_json::from_str(log.trim()).expect("one JSON line");
    assert_eq!(entry.result, "applied");
    assert_eq!(entry.reloaded, ["nginx"]);
    assert_eq!(entry.planned.files, [new.clone(), old.clone()]);
    assert_eq!(entry.planned.holder, "reconciler");
}

#[test]
fn a_refused_validation_puts_every_file_back() {
    let sandbox = Sandbox::new();
    let (new, old) = (sandbox.path("new.conf"), sandbox.path("old.conf"));
    fs::write(&old, "old\n").expect("write");
    let plan = plan(
        vec![create(&new, "new\n"), update(&old, "old\n", "changed\n")],
        vec![nginx_reload()],
    );
    let (outcome, _) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), INVALID));
    match outcome {
        Outcome::Invalid { failures } => assert_eq!(
            failures,
            [StepOutput::new(
                "nginx",
                "nginx: [emerg] unknown directive \"x\""
            )]
        ),
        other => panic!("{other:?}"),
    }
    assert!(!Path::new(&new).exists(), "a new file is removed again");
    assert_eq!(fs::read_to_string(&old).expect("old"), "old\n");
    assert!(!sandbox.state().join("journal").exists());
}

#[test]
fn a_failing_chown_shows_its_error_and_restores_what_was_staged() {
    let sandbox = Sandbox::new();
    let (first, second) = (sandbox.path("first.conf"), sandbox.path("second.conf"));
    fs::write(&first, "before\n").expect("write");
    let mut bad = create(&second, "x\n");
    if let Change::CreateFile { to, .. } = &mut bad {
        to.owner = "no-such-user".into();
    }
    let plan = plan(vec![update(&first, "before\n", "after\n"), bad], vec![]);
    let (outcome, _) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), VALID));
    match outcome {
        Outcome::Failed { message, output } => {
            assert_eq!(message, format!("cannot write {second}"));
            assert!(
                output.contains("chown: invalid user: 'no-such-user:root'"),
                "{output}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read_to_string(&first).expect("first"), "before\n");
    assert!(!Path::new(&second).exists());
    let leftovers: Vec<_> = fs::read_dir(sandbox.dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".reconciler."))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn a_file_changed_since_the_plan_stops_the_apply_before_anything_changes() {
    let sandbox = Sandbox::new();
    let (a, b) = (sandbox.path("a.conf"), sandbox.path("b.conf"));
    fs::write(&a, "edited by someone else\n").expect("write");
    let plan = plan(
        vec![
            update(&a, "what the plan saw\n", "new\n"),
            create(&b, "b\n"),
        ],
        vec![nginx_reload()],
    );
    let (outcome, _) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), VALID));
    assert_eq!(
        outcome,
        Outcome::Stale {
            paths: vec![a.clone()]
        }
    );
    assert_eq!(
        fs::read_to_string(&a).expect("a"),
        "edited by someone else\n"
    );
    assert!(!Path::new(&b).exists());
}

#[test]
fn the_worker_finishes_when_its_foreground_is_killed() {
    let sandbox = Sandbox::new();
    let conf = sandbox.path("slow.conf");
    let plan = plan(vec![create(&conf, "new\n")], vec![nginx_reload()]);
    // A validator that takes a while: the foreground is killed meanwhile.
    let stubs = "validate_one() { sleep 1; out=ok; }\nreload_one() { out=reloaded; }";
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(sandbox.script(&plan, &HostFacts::default(), stubs))
        .stdout(Stdio::null())
        .spawn()
        .expect("bash");
    let journal = sandbox.state().join("journal");
    let started = Instant::now();
    while !journal.exists() && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(journal.exists(), "the worker started");
    child.kill().expect("kill the foreground");
    let _ = child.wait();
    while journal.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!journal.exists(), "the worker finished");
    assert_eq!(fs::read_to_string(&conf).expect("conf"), "new\n");
    let log = fs::read_to_string(sandbox.state().join("apply.log"));
    let reports: Vec<String> = fs::read_dir(sandbox.state().join("run"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    let log = log.unwrap_or_else(|e| panic!("apply log: {e}; run dir: {reports:?}"));
    assert!(log.contains("\"result\":\"applied\""), "{log}");
}

#[test]
fn state_is_roots_alone() {
    let sandbox = Sandbox::new();
    let plan = plan(vec![create(&sandbox.path("x.conf"), "x\n")], vec![]);
    sandbox.run(&sandbox.script(&plan, &HostFacts::default(), VALID));
    let meta = fs::metadata(sandbox.state()).expect("state");
    assert_eq!(meta.mode() & 0o777, 0o700);
}

#[test]
fn a_step_that_hangs_is_stopped_and_named() {
    let sandbox = Sandbox::new();
    let conf = sandbox.path("hang.conf");
    let plan = plan(vec![create(&conf, "x\n")], vec![nginx_reload()]);
    let stubs = "STEP_LIMIT=1\nvalidate_one() { run_step \"$STEP_LIMIT\" 'nginx -t' sleep 30; }";
    let started = Instant::now();
    let (outcome, _) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), stubs));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        outcome,
        Outcome::Invalid {
            failures: vec![StepOutput::new(
                "nginx",
                "nginx -t did not finish within 1s"
            )]
        }
    );
    assert!(!Path::new(&conf).exists(), "restored");
}

mod reloads;

mod starts;

mod locks;
