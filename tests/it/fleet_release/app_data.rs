//! An app's env and logs: never shown but to pull, never read through links.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn env_push_pull_and_diff_never_show_a_value_but_to_pull() {
    let app = AppRepo::new();
    app.commit("e1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);

    let secret = "s3cr3t-Value-9f2c";
    let file = repo.dir.path().join("../rel.env");
    let text = format!("APP_NAME=rel\nDB_PASSWORD={secret}\n# a comment\nexport MAIL_HOST=mail\n");
    std::fs::write(&file, &text).expect("write");
    let file_arg = file.to_string_lossy().into_owned();
    let push = expect(&run(&repo, &app, &["env", "push", "rel", &file_arg]), 0);
    assert!(
        push.contains(".env with 3 keys is on fleet-1, fleet-2"),
        "{push}"
    );
    for server in SERVERS {
        let got = repo.ssh(
            server,
            "stat -c '%U %a' /home/rel/shared/.env; cat /home/rel/shared/.env; test -s /home/rel/current/env-ran.txt && echo ran",
        );
        assert_eq!(got, format!("rel 600\n{text}ran\n"), "{server}");
    }

    let pulled = run(&repo, &app, &["env", "pull", "rel", "--server", "fleet-2"]);
    expect(&pulled, 0);
    assert_eq!(String::from_utf8_lossy(&pulled.stdout), text);

    let changed = format!("DB_PASSWORD={secret}-new\nMAIL_HOST=mail\nQUEUE=redis\n");
    std::fs::write(&file, &changed).expect("write");
    let diff = expect(&run(&repo, &app, &["env", "diff", "rel", &file_arg]), 2);
    for line in [
        "fleet-1:",
        "fleet-2:",
        "  - APP_NAME",
        "  ~ DB_PASSWORD",
        "  + QUEUE",
    ] {
        assert!(diff.lines().any(|l| l == line), "{line:?} in {diff}");
    }
    assert!(
        !diff.contains("MAIL_HOST"),
        "unchanged keys are not listed: {diff}"
    );
    for output in [
        &push,
        &diff,
        &String::from_utf8_lossy(&pulled.stderr).into_owned(),
    ] {
        assert!(!output.contains(secret), "a value leaked: {output}");
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn logs_from_two_servers_come_back_merged_and_follow_shows_new_lines() {
    let app = AppRepo::new();
    app.commit("l1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    // shared/ outlives a test: start from an empty log.
    for server in SERVERS {
        repo.ssh(server, "rm -f /home/rel/shared/storage/logs/laravel.log");
    }
    let write = |server: &str, lines: &str| {
        repo.ssh(
            server,
            &format!(
                "setpriv --reuid=rel --regid=rel --init-groups sh -c \
                 'printf \"%s\" \"$1\" >> /home/rel/shared/storage/logs/laravel.log' _ '{lines}'"
            ),
        );
    };
    write(
        "fleet-1",
        "[2030-01-02 10:00:01] local.INFO: one\n[2030-01-02 10:00:03] local.INFO: three\n#0 trace of three\n",
    );
    write(
        "fleet-2",
        "[2030-01-02 10:00:02] local.INFO: two\n[2030-01-02 10:00:04] local.INFO: four\n",
    );
    let out = expect(&run(&repo, &app, &["logs", "rel", "-n", "10"]), 0);
    let ours: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("laravel.log") && l.contains("2030-01-02") || l.contains("#0 trace"))
        .collect();
    assert_eq!(ours.len(), 5, "{out}");
    for (line, (server, text)) in ours.iter().zip([
        ("fleet-1", "one"),
        ("fleet-2", "two"),
        ("fleet-1", "three"),
        ("fleet-1", "#0 trace of three"),
        ("fleet-2", "four"),
    ]) {
        assert!(line.starts_with(&format!("{server} laravel.log")), "{line}");
        assert!(line.ends_with(text), "{line}");
    }

    // --follow shows a line written after it started.
    let mut follow = Killed(
        reconciler(&repo, &app, &["logs", "rel", "--follow", "-n", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("logs --follow"),
    );
    let stdout = follow.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    write(
        "fleet-2",
        "[2030-01-02 10:00:05] local.INFO: five, followed\n",
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.ends_with("five, followed") => {
                assert!(line.starts_with("fleet-2 laravel.log"), "{line}");
                break;
            }
            Ok(_) => {}
            Err(_) => panic!("--follow did not show the new line"),
        }
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn links_the_app_plants_give_it_nothing_through_env_or_logs() {
    let app = AppRepo::new();
    app.commit("a1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    let shadow = |server: &str| repo.ssh(server, "sha256sum /etc/shadow");
    let before = shadow("fleet-1");

    // As the app: its .env and a log become links to root's secrets.
    repo.ssh(
        "fleet-1",
        "setpriv --reuid=rel --regid=rel --init-groups sh -c \
         'rm -f /home/rel/shared/.env && ln -s /etc/shadow /home/rel/shared/.env && \
          ln -sf /etc/shadow /home/rel/shared/storage/logs/evil.log'",
    );
    let pulled = run(&repo, &app, &["env", "pull", "rel", "--server", "fleet-1"]);
    let text = expect(&pulled, 1);
    assert!(
        text.contains("rel cannot read /home/rel/shared/.env"),
        "{text}"
    );
    assert!(!text.contains("root:"), "{text}");
    let logs = expect(
        &run(&repo, &app, &["logs", "rel", "--server", "fleet-1"]),
        0,
    );
    assert!(
        !logs.contains("evil.log") && !logs.contains("root:"),
        "{logs}"
    );

    // A push replaces the link; what it pointed at is untouched.
    let file = repo.dir.path().join("../links.env");
    std::fs::write(&file, "APP_NAME=rel\n").expect("write");
    expect(
        &run(
            &repo,
            &app,
            &["env", "push", "rel", &file.to_string_lossy()],
        ),
        0,
    );
    assert_eq!(shadow("fleet-1"), before);
    assert_eq!(
        repo.ssh("fleet-1", "stat -c '%F %U %a' /home/rel/shared/.env"),
        "regular file rel 600\n"
    );
}
