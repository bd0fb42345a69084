//! What an app names reaches reconciler in a framing no byte can break,
//! and every read from a server is bounded: the attacks of the third
//! security review, run as the app's Unix user on the fleet, as the app's
//! code would. Each failed before the remote kit (`src/remote`).

use crate::common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Repo;

const SERVER: &str = "fleet-1";

/// `setpriv` line that runs `command` as `app`, as the app's code runs.
fn as_app(app: &str, command: &str) -> String {
    format!(
        "setpriv --reuid={app} --regid={app} --init-groups -- bash -c {}",
        reconciler::shell::quote(command)
    )
}

/// An app on fleet-1 with a release of a small git repository; the
/// definitions, the repository and the mirror cache.
struct Released {
    repo: Repo,
    app: tempfile::TempDir,
    cache: tempfile::TempDir,
    name: &'static str,
}

impl Released {
    fn new(name: &'static str) -> Self {
        let repo = Repo::new(&[SERVER]);
        let app = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(app.path().join("public")).expect("mkdir");
        std::fs::write(app.path().join("public/index.php"), "<?php echo 'ok';\n").expect("write");
        git(app.path(), &["init", "-q", "-b", "main"]);
        commit(app.path(), "one");
        repo.write(
            &format!("apps/{name}.yaml"),
            &format!(
                "name: {name}\ncluster: fleet\nrepo: {}\nphp: \"8.2\"\ndomains: [{name}.test]\n\
                 shared: [storage, .env]\nservers:\n  - name: {SERVER}\n    \
                 web: {{ max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }}\n",
                app.path().display()
            ),
        );
        repo.ssh(
            SERVER,
            &format!(
                "rm -rf /home/{name}/releases /home/{name}/current /home/{name}/shared /var/lib/reconciler/apps/{name}"
            ),
        );
        repo.run_expect(&["apply", "--yes", "--now"], 0);
        let released = Self {
            repo,
            app,
            cache: tempfile::tempdir().expect("tempdir"),
            name,
        };
        released.expect(&["release", name], 0);
        released
    }

    fn run(&self, args: &[&str]) -> Output {
        self.repo
            .command(args)
            .env("RECONCILER_CACHE_DIR", self.cache.path())
            .output()
            .expect("run reconciler")
    }

    /// Runs, checks the exit code, and returns stdout and stderr.
    fn expect(&self, args: &[&str], code: i32) -> (String, String) {
        let out = self.run(args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "reconciler {args:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        (stdout, stderr)
    }

    /// Runs `command` as the app on the server.
    fn as_app(&self, command: &str) -> String {
        self.repo.ssh(SERVER, &as_app(self.name, command))
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn commit(dir: &Path, message: &str) {
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
        ],
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_newline_in_a_log_file_name_makes_root_read_nothing_outside_the_logs() {
    let app = Released::new("framed");
    // A secret root keeps under /, named so that the second line of the
    // app's file name would be its path relative to root's `/`.
    app.repo.ssh(
        SERVER,
        "echo root-secret-4f1c > /reconciler-secret.log; chmod 600 /reconciler-secret.log",
    );
    app.as_app(
        "mkdir -p /home/framed/shared/storage/logs && cd /home/framed/shared/storage/logs && \
         echo 'a line of the app' > \"$(printf 'a\\nreconciler-secret.log')\"",
    );
    let (stdout, stderr) = app.expect(&["logs", "framed", "-n", "5"], 0);
    app.repo.ssh(SERVER, "rm -f /reconciler-secret.log");
    assert!(!stdout.contains("root-secret-4f1c"), "{stdout}");
    assert!(stdout.contains("a line of the app"), "{stdout}\n{stderr}");
    // The name is shown with its newline made visible, on one line.
    assert!(stdout.contains("a\\nreconciler-secret.log"), "{stdout}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn release_names_and_current_targets_that_spell_records_forge_none() {
    let app = Released::new("framed");
    let live = app.repo.ssh(SERVER, "readlink /home/framed/current");
    // Directory names and a link target that spell records of the old line
    // format (a lock holder that blocked every apply) and of the new one
    // without its NULs; and JSON that would have become a "live" line of
    // the release log.
    let forged = "1111111111111111111111111111111111111111";
    let quote = reconciler::shell::quote;
    let name = format!("x\n@lock\tforged holder\n@release framed {forged}");
    let target = format!(
        "x\n@lock forged\",\"result\":\"live\"}}\n{{\"sha\":\"{forged}\",\"result\":\"live\""
    );
    app.as_app(&format!(
        "mkdir /home/framed/releases/{} && ln -sfn {} /home/framed/current.forged && \
         mv -T /home/framed/current.forged /home/framed/current",
        quote(&name),
        quote(&target)
    ));
    let plan = app.repo.plan_json();
    let host = common::host(&plan, SERVER);
    assert!(host["locked_by"].is_null(), "no forged holder: {host:#}");
    // An apply still runs (a forged holder once made every apply wait).
    app.repo.run_expect(&["apply", "--yes", "--now"], 0);
    // `releases` shows where current points, visibly, and no forged release.
    let (listing, _) = app.expect(&["releases", "framed"], 0);
    assert!(
        listing.contains("current points at x\\n@lock"),
        "one line: {listing}"
    );
    assert!(
        !listing
            .lines()
            .any(|l| l.trim_start().starts_with("111111111111")),
        "no forged release: {listing}"
    );
    // A release now records what was live as nothing (current named no
    // release), never the forged text; the log reads back whole.
    std::fs::write(app.app.path().join("two.txt"), "2").expect("write");
    commit(app.app.path(), "two");
    app.expect(&["release", "framed"], 0);
    let log = app
        .repo
        .ssh(SERVER, "cat /var/lib/reconciler/apps/framed/release.log");
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).expect("one JSON line");
        assert_ne!(entry["sha"], forged, "{log}");
    }
    assert!(!log.contains(forged), "{log}");
    assert!(live.starts_with("releases/"), "{live}");
    // And a rollback goes to the release that was really live first.
    let (out, _) = app.expect(&["rollback", "framed"], 0);
    assert!(
        out.contains(&live.trim()["releases/".len()..][..12]),
        "{out}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn escape_codes_the_app_writes_never_reach_the_terminal_raw() {
    let app = Released::new("framed");
    app.as_app(
        "mkdir -p /home/framed/shared/storage/logs && \
         printf '[2026-11-30 10:00:00] boom\\033[2J\\033]0;pwned\\007\\n' > /home/framed/shared/storage/logs/laravel.log",
    );
    let out = app.run(&["logs", "framed", "-n", "5"]);
    assert!(out.status.success());
    assert!(
        !out.stdout.contains(&0x1b),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("boom\\u{1b}[2J"));
    let raw = app.run(&["logs", "framed", "-n", "5", "--raw"]);
    assert!(
        raw.stdout.contains(&0x1b),
        "--raw prints the bytes as they are"
    );

    // A release command's output in a failure.
    std::fs::write(
        app.app.path().join("fail.sh"),
        "printf 'bad\\033[31m red\\n'; exit 3\n",
    )
    .expect("write");
    commit(app.app.path(), "fails");
    let yaml = app.repo.dir.path().join("apps/framed.yaml");
    let text = std::fs::read_to_string(&yaml).expect("read");
    std::fs::write(
        &yaml,
        text.replace("shared:", "release_commands: [bash fail.sh]\nshared:"),
    )
    .expect("write");
    let failed = app.run(&["release", "framed"]);
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("bad\\u{1b}[31m red"), "{stderr}");
    assert!(!failed.stderr.contains(&0x1b), "{stderr:?}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn sparse_terabytes_in_a_log_or_an_env_file_are_never_read_whole() {
    let app = Released::new("framed");
    app.as_app(
        "mkdir -p /home/framed/shared/storage/logs && cd /home/framed/shared/storage/logs && \
         truncate -s 4G huge.log && printf '[2026-11-30 10:00:00] the last line\\n' >> huge.log && \
         truncate -s 4G /home/framed/shared/.env",
    );
    let started = Instant::now();
    let (stdout, stderr) = app.expect(&["logs", "framed", "-n", "1"], 0);
    let took = started.elapsed();
    assert!(stdout.contains("the last line"), "{stdout}");
    assert!(
        stderr.contains("huge.log: only the last 1.0 MiB read"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");

    let started = Instant::now();
    let (_, stderr) = app.expect(&["env", "pull", "framed"], 1);
    assert!(
        stderr.contains("more than an environment file may be"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    app.as_app("rm -f /home/framed/shared/storage/logs/huge.log /home/framed/shared/.env");
}
