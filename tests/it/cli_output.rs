//! What a person sees: the real binary's exit code, stdout and stderr for
//! the mistakes people make in the first hour, as insta snapshots.

use std::fs;
use std::path::Path;

/// Runs reconciler in `dir` (or the crate's root) and renders its result,
/// with `dir` written as `$D`.
fn run(args: &[&str], dir: Option<&Path>) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = crate::common::reconciler()
        .current_dir(dir.unwrap_or(root))
        .args(args)
        .output()
        .expect("run reconciler");
    let mut text = format!(
        "exit: {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(dir) = dir {
        text = text.replace(&dir.display().to_string(), "$D");
    }
    text
}

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    dir
}

const CLUSTER: &str = "name: demo\nphp: [\"8.2\"]\nservers: [{ name: web-1, address: 192.0.2.1, web_server: true }]\n";

#[test]
fn every_unknown_key_of_a_file_at_once() {
    let dir = repo(&[
        ("clusters/demo.yaml", CLUSTER),
        (
            "apps/hello.yaml",
            "name: hello\ncluster: demo\nrepo: /srv/hello.git\nphp: \"8.2\"\ndomain: [hello.test]\n\
             share: [storage]\nservers: [{ name: web-1 }]\n",
        ),
    ]);
    insta::assert_snapshot!(run(&["validate", "-d", "."], Some(dir.path())));
}

#[test]
fn a_broken_cluster_file_does_not_cascade_into_its_apps() {
    let dir = repo(&[
        (
            "clusters/demo.yaml",
            "name: demo\nphp: [\"8.2\"\nservers: []\n",
        ),
        (
            "apps/hello.yaml",
            "name: hello\ncluster: demo\nrepo: /srv/hello.git\nphp: \"8.2\"\nservers: [{ name: web-1 }]\n",
        ),
    ]);
    insta::assert_snapshot!(run(&["validate", "-d", "."], Some(dir.path())));
}

#[test]
fn a_unix_cron_line_says_what_is_missing() {
    let dir = repo(&[(
        "clusters/demo.yaml",
        "name: demo\nphp: [\"8.2\"]\nreload_windows: [{ schedule: \"0 3 * * *\", duration: 1h }]\n\
         servers: [{ name: web-1, address: 192.0.2.1 }]\n",
    )]);
    insta::assert_snapshot!(run(&["validate", "-d", "."], Some(dir.path())));
}

#[test]
fn a_mistyped_server_or_app_is_a_usage_error_with_a_suggestion() {
    insta::assert_snapshot!(
        "server",
        run(&["plan", "-d", "examples/fleet", "--server", "web-2"], None)
    );
    insta::assert_snapshot!(
        "app",
        run(&["plan", "-d", "examples/fleet", "--app", "shpo"], None)
    );
}

#[test]
fn a_mistyped_ssh_key_or_known_hosts_file_is_named_before_dialling() {
    insta::assert_snapshot!(
        "ssh_key",
        run(
            &[
                "plan",
                "-d",
                "examples/fleet",
                "--ssh-key",
                "/nonexistent/id_ed25519"
            ],
            None
        )
    );
    insta::assert_snapshot!(
        "known_hosts",
        run(
            &[
                "plan",
                "-d",
                "examples/fleet",
                "--known-hosts",
                "/nonexistent/known_hosts"
            ],
            None
        )
    );
}

#[test]
fn apply_as_json_needs_yes() {
    insta::assert_snapshot!(run(
        &["apply", "-d", "examples/fleet", "--format", "json"],
        None
    ));
}

#[test]
fn logs_follow_the_color_choice() {
    let out = run(
        &["-v", "--color", "never", "validate", "-d", "examples/fleet"],
        None,
    );
    assert!(out.contains("loaded definitions"), "{out}");
    assert!(!out.contains('\x1b'), "{out:?}");
    let out = run(
        &[
            "-v",
            "--color",
            "always",
            "validate",
            "-d",
            "examples/fleet",
        ],
        None,
    );
    assert!(out.contains('\x1b'), "{out:?}");
}

#[test]
fn templates_are_written_for_overriding_and_overrides_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    insta::assert_snapshot!(
        "first",
        run(&["templates", "--out", "templates"], Some(dir.path()))
    );
    for (name, text) in reconciler::units::EMBEDDED {
        let written = fs::read_to_string(dir.path().join("templates").join(name)).expect("read");
        assert_eq!(written, *text, "{name}");
    }
    let reference =
        fs::read_to_string(dir.path().join("templates/VARIABLES.md")).expect("read reference");
    assert_eq!(reference, reconciler::units::kinds::reference());
    fs::write(dir.path().join("templates/cron.hbs"), "# mine\n").expect("edit");
    insta::assert_snapshot!(
        "again",
        run(&["templates", "--out", "templates"], Some(dir.path()))
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("templates/cron.hbs")).expect("read"),
        "# mine\n"
    );
}

#[test]
fn windows_are_listed_in_local_time_and_utc_across_a_clock_change() {
    // The night Amsterdam moves its clocks forward.
    insta::assert_snapshot!(run(
        &[
            "windows",
            "-d",
            "examples/fleet",
            "--count",
            "3",
            "--at",
            "2026-03-28T12:00:00Z"
        ],
        None
    ));
}
