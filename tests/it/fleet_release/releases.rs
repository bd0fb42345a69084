//! Releases: under load, failing, concurrent, hung.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn ten_releases_under_load_fail_no_request_and_mix_no_release() {
    let app = AppRepo::new();
    let first = app.commit("r0", &[]);
    let repo = definitions(&app, 3);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert!(text.contains("is live on fleet-1, fleet-2"), "{text}");
    assert_serves(&repo, "r0");
    for server in SERVERS {
        assert_eq!(live(&repo, server), format!("releases/{first}"));
        // Shared paths are links into shared/, the build ran with the app's
        // PHP, and everything in the release is the app's.
        let check = repo.ssh(
            server,
            "cd /home/rel/current && readlink .env storage && cat php-version.txt && echo\n\
             test -f vendor/autoload.php && echo composer-ran\n\
             find /home/rel/releases -not -user rel | wc -l\n\
             test -f /var/lib/reconciler/apps/rel/complete/$(basename $(readlink /home/rel/current)) && echo complete",
        );
        let lines: Vec<&str> = check.lines().collect();
        assert_eq!(
            lines[..2],
            ["/home/rel/shared/.env", "/home/rel/shared/storage"],
            "{check}"
        );
        assert!(
            lines[2].starts_with("8.2."),
            "the app's PHP built it: {check}"
        );
        assert_eq!(
            lines[3..],
            ["composer-ran", "0", "complete"],
            "{server}: {check}"
        );
    }

    // Load on both servers while ten releases go live one after another.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let server = repo.server(SERVERS[i % 2]).clone();
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(180);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, body) = server.http_get("/", "rel.test");
                    seen.lock().unwrap().push((started, status, body));
                }
            })
        })
        .collect();
    let mut switched = Vec::new();
    for i in 1..=10 {
        let id = format!("r{i}");
        app.commit(&id, &[]);
        expect(&run(&repo, &app, &["release", "rel"]), 0);
        switched.push((Instant::now(), id));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    let seen = seen.lock().unwrap();
    let (failed, mixed, stale) = super::tally(&seen, &switched);
    eprintln!(
        "load during 10 releases: {} requests, {failed} failed, {mixed} mixed, {stale} stale",
        seen.len()
    );
    let odd: Vec<_> = seen
        .iter()
        .filter(|(_, status, body)| *status != 200 || body.split(' ').count() != 2)
        .map(|(_, status, body)| format!("{status} {body}"))
        .take(5)
        .collect();
    assert!(seen.len() > 100, "the load ran: {} requests", seen.len());
    assert!(odd.is_empty(), "{odd:#?}");
    assert_eq!((failed, mixed, stale), (0, 0, 0));
    assert_serves(&repo, "r10");

    // keep_releases: 3, the live one included.
    for server in SERVERS {
        assert_eq!(releases(&repo, server).len(), 3, "{server}");
    }
    // The worker runs the live release.
    std::thread::sleep(Duration::from_secs(1));
    let worker = repo.ssh("fleet-1", "cat /home/rel/shared/storage/worker.txt");
    assert_eq!(worker, format!("/home/rel/{}", live(&repo, "fleet-1")));

    // Rollback: the previous release again, healthy.
    let text = expect(&run(&repo, &app, &["rollback", "rel"]), 0);
    assert!(text.contains("rolled back"), "{text}");
    assert_serves(&repo, "r9");
    let listing = expect(&run(&repo, &app, &["releases", "rel"]), 0);
    assert!(listing.contains("live  rollback"), "{listing}");
    std::thread::sleep(Duration::from_secs(1));
    let worker = repo.ssh("fleet-1", "cat /home/rel/shared/storage/worker.txt");
    assert_eq!(worker, format!("/home/rel/{}", live(&repo, "fleet-1")));
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_failing_build_or_health_check_leaves_the_old_release_serving() {
    let app = AppRepo::new();
    app.commit("good", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let before: Vec<Vec<String>> = SERVERS.iter().map(|s| releases(&repo, s)).collect();

    let broken = app.commit("broken", &[("fail.txt", "x")]);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(text.contains("build failed on"), "{text}");
    assert!(text.contains("boom: the build broke"), "{text}");
    assert_serves(&repo, "good");
    for (server, before) in SERVERS.iter().zip(&before) {
        assert_eq!(
            &releases(&repo, server),
            before,
            "no partial {broken} on {server}"
        );
    }

    // A release whose page fails goes live, fails its health check, and
    // every server goes back.
    app.commit(
        "unhealthy",
        &[
            ("fail.txt", ""),
            (
                "public/index.php",
                "<?php http_response_code(500); echo 'down';\n",
            ),
        ],
    );
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(text.contains("every server went back to"), "{text}");
    assert_serves(&repo, "good");
    let listing = expect(&run(&repo, &app, &["releases", "rel"]), 0);
    assert!(
        !listing.contains("rolled-back"),
        "the failed release was pruned: {listing}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn releases_of_one_app_never_interleave_and_a_killed_one_leaves_it_serving() {
    let app = AppRepo::new();
    app.commit("one", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    // A slow release holds the lock; a second one is refused with its holder.
    app.commit("slow", &[("slow.txt", "4")]);
    let slow = reconciler(&repo, &app, &["release", "rel"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(2500));
    let second = run(&repo, &app, &["release", "rel"]);
    let text = expect(&second, 1);
    assert!(text.contains("rel is being released on"), "{text}");
    assert!(text.contains("cli of"), "names the holder: {text}");
    let first = slow.wait_with_output().expect("slow release");
    expect(&first, 0);
    assert_serves(&repo, "slow");

    // SIGKILL in the middle of a build: `current` still serves, the lock
    // is free, and the next release succeeds.
    app.commit("killed", &[("slow.txt", "6")]);
    let mut killed = reconciler(&repo, &app, &["release", "rel"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(2500));
    killed.kill().expect("SIGKILL");
    killed.wait().expect("wait");
    assert_serves(&repo, "slow");
    app.commit("after", &[("slow.txt", "")]);
    let started = Instant::now();
    let out = run(&repo, &app, &["release", "rel"]);
    expect(&out, 0);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_serves(&repo, "after");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_hung_release_holds_the_lock_until_force_unlock_and_then_cannot_go_on() {
    let app = AppRepo::new();
    app.commit("base", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    // A client that hangs (stopped) in the middle of a slow build keeps
    // its session, so its lock holds.
    app.commit("hung", &[("slow.txt", "4")]);
    let hung = Killed(
        reconciler(&repo, &app, &["release", "rel"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    std::thread::sleep(Duration::from_millis(2500));
    let pid = hung.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(
        text.contains(&format!("(pid {pid})")),
        "names the holder: {text}"
    );
    assert!(text.contains("--force-unlock"), "{text}");

    app.commit("forced", &[("slow.txt", "")]);
    let text = expect(&run(&repo, &app, &["release", "rel", "--force-unlock"]), 0);
    assert!(text.contains("broke the release lock of"), "{text}");
    assert_serves(&repo, "forced");

    // The hung client, let go, finds its lock gone and changes nothing.
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let mut hung = hung;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = hung.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the hung release did not end");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status.code(), Some(1), "it lost its lock: it must fail");
    assert_serves(&repo, "forced");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_adopted_apps_current_directory_is_named_by_plan_and_refused_before_any_upload() {
    let app = AppRepo::new();
    let first = app.commit("taken", &[]);
    let repo = definitions(&app, 5);
    // Whatever happens, the next test finds no directory at `current`.
    struct Tidy<'a>(&'a Repo);
    impl Drop for Tidy<'_> {
        fn drop(&mut self) {
            for server in SERVERS {
                self.0.ssh(
                    server,
                    "[ -L /home/rel/current ] || rm -rf /home/rel/current; \
                     rm -rf /home/rel/current.adopted /home/rel/.current.new",
                );
            }
        }
    }
    let _tidy = Tidy(&repo);
    // An app adopted from another deploy: its code in a real `current`
    // directory, owned by the app and served by nginx.
    for server in SERVERS {
        repo.ssh(
            server,
            "rm -rf /home/rel/current /home/rel/current.adopted /home/rel/.current.new && \
             mkdir -p /home/rel/current/public && \
             echo '<?php echo \"adopted adopted\";' > /home/rel/current/public/index.php && \
             chown -R rel:rel /home/rel/current",
        );
    }
    assert_serves(&repo, "adopted");
    let before: Vec<Vec<String>> = SERVERS.iter().map(|s| releases(&repo, s)).collect();

    // The plan names the directory, says it is served, and never that the
    // site answers 404; and it points out the guessed kinds of `shared:`.
    let plan = expect(&run(&repo, &app, &["plan"]), 0);
    assert!(
        plan.contains(
            "`/home/rel/current` is a directory, not a link to one of rel's releases: it is \
             served as it is"
        ),
        "{plan}"
    );
    assert!(!plan.contains("no live release"), "{plan}");
    assert!(
        plan.contains(
            "note: shared path `storage` of app `rel` is guessed a directory (no dot in its last \
             name): write `storage/` to say so"
        ),
        "{plan}"
    );

    // The release is refused before any upload, with a hint, and leaves
    // nothing behind: the old directory is still served.
    let text = expect(&run(&repo, &app, &["release", "rel"]), 1);
    assert!(
        text.contains("`/home/rel/current` is a directory on fleet-1, fleet-2"),
        "{text}"
    );
    assert!(text.contains("nothing was uploaded or changed"), "{text}");
    assert!(text.contains("hint: "), "{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with('[') && !l.contains(" lock ")),
        "no step but the lock ran: {text}"
    );
    assert!(!text.contains("went back"), "{text}");
    for (server, before) in SERVERS.iter().zip(&before) {
        assert_eq!(&releases(&repo, server), before, "{server}");
        assert_eq!(
            repo.ssh(server, "ls -A /home/rel | grep current"),
            "current\n",
            "no .current.new on {server}"
        );
    }
    assert_serves(&repo, "adopted");
    let listing = expect(&run(&repo, &app, &["releases", "rel"]), 0);
    assert!(
        listing.contains("current is a directory, no link to a release: it is served as it is"),
        "{listing}"
    );

    // The hint's commands, as the app, hand it over while it is served;
    // then the release goes live.
    let hint = "cd /home/rel && mv current current.adopted && ln -s current.adopted current";
    assert!(text.contains(hint), "{text}");
    for server in SERVERS {
        repo.ssh(
            server,
            &format!(
                "setpriv --reuid=rel --regid=rel --init-groups -- sh -c {}",
                reconciler::shell::quote(hint)
            ),
        );
    }
    assert_serves(&repo, "adopted");
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert_serves(&repo, "taken");
    for server in SERVERS {
        assert_eq!(live(&repo, server), format!("releases/{first}"));
    }
}
