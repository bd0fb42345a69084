//! Another apply: one that ran since the plan, one running now, one killed midway.

use super::*;

#[test]
fn a_plan_made_before_another_apply_ran_is_stale() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.state()).expect("state");
    // Another apply took the lock after this plan was made (every apply
    // raises the count): the plan's own file is untouched, yet it is
    // stale, since what it called unchanged may have changed since.
    fs::write(sandbox.state().join("generation"), "1\n").expect("generation");
    let file = sandbox.path("x.conf");
    let change = plan(vec![create(&file, "x\n")], vec![]);
    let (before, _) = sandbox.run(&sandbox.script(&change, &HostFacts::default(), VALID));
    assert_eq!(
        before,
        Outcome::Stale {
            paths: vec!["another apply ran since the plan was made".into()]
        }
    );
    assert!(!Path::new(&file).exists());

    let facts = HostFacts {
        generation: 1,
        ..HostFacts::default()
    };
    let (after, _) = sandbox.run(&sandbox.script(&change, &facts, VALID));
    assert!(matches!(after, Outcome::Applied { .. }), "{after:?}");
    let count = fs::read_to_string(sandbox.state().join("generation")).expect("generation");
    assert_eq!(count, "2\n");
}

#[test]
fn a_plan_made_while_an_apply_ran_waits_for_it_and_is_stale() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.state()).expect("state");
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(sandbox.state().join("lock"))
        .args(["sleep", "1"])
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(200));
    // Even with nothing to change, the plan may have read files the
    // running apply had half-written: it waits, then asks for a new plan.
    let mut busy = plan(vec![], vec![]);
    busy.locked_by = Some("watch ops@ci (pid 7) since then".into());
    let options = ScriptOptions {
        lock_wait: Duration::from_secs(5),
        ..ScriptOptions::default()
    };
    let (script, _) = super::script::build(&busy, &HostFacts::default(), &options);
    let script = sandbox.with_overrides(&script, VALID);
    let started = std::time::Instant::now();
    let (outcome, _) = sandbox.run(&script);
    let waited = started.elapsed();
    let _ = holder.wait();
    assert_eq!(
        outcome,
        Outcome::Stale {
            paths: vec![
                "an apply was running when the plan was made: watch ops@ci (pid 7) since then"
                    .into()
            ]
        }
    );
    assert!(waited >= Duration::from_millis(500), "{waited:?}");
}

#[test]
fn a_held_lock_names_its_holder_and_changes_nothing() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.state()).expect("state");
    let lock = sandbox.state().join("lock");
    // --no-fork: the sleep itself holds the lock, and dies with kill().
    let mut holder = Command::new("flock")
        .arg("--no-fork")
        .arg(&lock)
        .args(["sleep", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("flock");
    std::thread::sleep(Duration::from_millis(200));
    let record = sandbox.state().join("lock.holder");
    let file = sandbox.path("x.conf");
    let plan = plan(vec![create(&file, "x\n")], vec![]);
    let script = sandbox.script(&plan, &HostFacts::default(), VALID);

    // The record names a process that holds the lock: it is named.
    fs::write(
        &record,
        format!("-\tops@laptop (pid 1)\tapply\tthen\t{}\n", holder.id()),
    )
    .expect("holder");
    let (named, _) = sandbox.run(&script);
    // A stale record (its process is gone) is never presented as the holder.
    fs::write(&record, "-\tops@laptop (pid 1)\tapply\tthen\t999999\n").expect("holder");
    let (stale, _) = sandbox.run(&script);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        named,
        Outcome::Locked {
            holder: "ops@laptop (pid 1) (apply since then)".into()
        }
    );
    assert_eq!(
        stale,
        Outcome::Locked {
            holder: "a process that is not reconciler's".into()
        }
    );
    assert!(!Path::new(&file).exists());
}

#[test]
fn an_interrupted_apply_is_adopted_and_restored_when_its_files_are_invalid() {
    let sandbox = Sandbox::new();
    let conf = sandbox.path("vhost.conf");
    // What a worker killed after staging leaves behind: the new file in
    // place, the old one in its backup, both named by the journal.
    let backup = sandbox.state().join("backup/apply.killed");
    let backup_of = |path: &str| PathBuf::from(format!("{}{path}", backup.display()));
    fs::create_dir_all(backup_of(&conf).parent().expect("parent")).expect("mkdir");
    fs::write(backup_of(&conf), "served before\n").expect("backup");
    fs::write(&conf, "never validated\n").expect("staged");
    fs::write(
        sandbox.state().join("journal"),
        format!(
            "started 2026-11-22T03:00:00Z\nholder ops@laptop (pid 1)\nbackup {}\nstaged {conf}\n",
            backup.display()
        ),
    )
    .expect("journal");
    let mut plan = plan(vec![], vec![nginx_reload()]);
    plan.interrupted = Some(Journal {
        started: "2026-11-22T03:00:00Z".into(),
        holder: "ops@laptop (pid 1)".into(),
        staged: vec![conf.clone()],
    });
    let (outcome, _) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), INVALID));
    assert!(matches!(outcome, Outcome::Invalid { .. }), "{outcome:?}");
    assert_eq!(fs::read_to_string(&conf).expect("conf"), "served before\n");
    assert!(!sandbox.state().join("journal").exists());
    assert!(!backup.exists());
}
