//! The binary on the shipped examples and schemas.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn reconciler(args: &[&str]) -> Output {
    crate::common::reconciler()
        .args(args)
        .output()
        .expect("run reconciler")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_fleet_example_validates() {
    let out = reconciler(&["validate", "-d", "examples/fleet"]);
    assert_eq!(
        text(&out.stdout),
        "ok: 1 cluster, 3 apps\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn the_quickstart_example_validates() {
    let out = reconciler(&["validate", "-d", "examples/quickstart"]);
    assert_eq!(
        text(&out.stdout),
        "ok: 1 cluster, 1 app\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn every_example_file_names_its_schema() {
    for example in ["examples/fleet", "examples/quickstart"] {
        for (kind, schema) in [("clusters", "cluster"), ("apps", "app")] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(example)
                .join(kind);
            for entry in fs::read_dir(&dir).expect("example dir") {
                let path = entry.expect("entry").path();
                let first = fs::read_to_string(&path).expect("read example");
                let expected = format!(
                    "# yaml-language-server: $schema=../../../schemas/{schema}.schema.json"
                );
                assert_eq!(
                    first.lines().next(),
                    Some(expected.as_str()),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn committed_schemas_are_what_the_schema_command_writes() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = reconciler(&[
        "schema",
        "--out",
        out_dir.path().to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut written: Vec<_> = fs::read_dir(out_dir.path())
        .expect("schema dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    written.sort();
    assert!(!written.is_empty());
    for name in written {
        let fresh = fs::read_to_string(out_dir.path().join(&name)).expect("fresh schema");
        let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(&name);
        let committed = fs::read_to_string(&committed).unwrap_or_default();
        assert!(
            fresh == committed,
            "schemas/{} is stale: run `cargo run -- schema`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn a_directory_without_definitions_is_an_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = reconciler(&["validate", "-d", empty.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr).replace(empty.path().to_str().expect("utf-8"), "$D");
    assert_eq!(
        stderr,
        "error: no definitions in `$D`: it has neither clusters/ nor apps/\n"
    );
}

#[test]
fn a_missing_directory_names_the_cause() {
    let out = reconciler(&["validate", "-d", "does/not/exist"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: cannot read definitions in `does/not/exist`\n  caused by: No such file or directory (os error 2)\n"
    );
}

/// A definitions directory made by the test, for inputs git cannot hold
/// well (links, huge files).
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(dir.path().join("clusters")).expect("mkdir");
    fs::write(
        dir.path().join("clusters/c.yaml"),
        "name: c\nphp: [\"8.2\"]\nservers: [{ name: s, address: local, web_server: true }]\n",
    )
    .expect("write");
    dir
}

fn validate_in(dir: &Path) -> (Option<i32>, String) {
    let out = reconciler(&["validate", "-d", dir.to_str().expect("utf-8")]);
    let stderr = text(&out.stderr).replace(dir.to_str().expect("utf-8"), "$D");
    (out.status.code(), stderr)
}

#[test]
fn what_cannot_be_read_is_reported_not_skipped() {
    // A skipped app looks removed, and its files would be pruned.
    let dir = scratch();
    let apps = dir.path().join("apps");
    fs::create_dir_all(apps.join("shop.yaml")).expect("a directory named like an app");
    std::os::unix::fs::symlink(dir.path().join("nowhere.yaml"), apps.join("blog.yaml"))
        .expect("dangling link");
    let (code, stderr) = validate_in(dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "\
$D/apps/blog.yaml:1:1: cannot read: it is a symbolic link to nothing
$D/apps/shop.yaml:1:1: this is a directory, not a definitions file
error: 2 problems in the definitions
"
    );
}

#[test]
fn a_template_linked_out_of_the_repository_is_refused() {
    // templates/cron.hbs -> /proc/self/environ once put the operator's
    // environment into a world-readable cron file.
    let dir = scratch();
    let outside = tempfile::tempdir().expect("tempdir");
    fs::write(outside.path().join("environ"), "SECRET=1").expect("write");
    fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
    std::os::unix::fs::symlink(
        outside.path().join("environ"),
        dir.path().join("templates/cron.hbs"),
    )
    .expect("link");
    let (code, stderr) = validate_in(dir.path());
    assert_eq!(code, Some(1));
    let target = fs::canonicalize(outside.path().join("environ")).expect("canonical");
    assert_eq!(
        stderr,
        format!(
            "$D/templates/cron.hbs:1:1: refusing a link out of the definitions directory (to `{}`)\n\
             error: 1 problem in the definitions\n",
            target.display()
        )
    );
}

#[test]
fn a_huge_file_is_refused_before_it_is_read() {
    let dir = scratch();
    let file = fs::File::create(dir.path().join("clusters/huge.yaml")).expect("create");
    file.set_len(50 * 1024 * 1024).expect("sparse 50 MB");
    let (code, stderr) = validate_in(dir.path());
    assert_eq!(code, Some(1));
    assert_eq!(
        stderr,
        "\
$D/clusters/huge.yaml:1:1: the file is 52428800 bytes; definitions files are at most 1048576 bytes
error: 1 problem in the definitions
"
    );
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let dir = scratch();
    let path = dir.path().join("clusters/c.yaml");
    let mut text = vec![0xef, 0xbb, 0xbf];
    text.extend(fs::read(&path).expect("read"));
    fs::write(&path, text).expect("write");
    let out = reconciler(&["validate", "-d", dir.path().to_str().expect("utf-8")]);
    assert_eq!(text_of(&out), "ok: 1 cluster, 0 apps\n");
}

fn text_of(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn an_out_of_range_timeout_is_a_usage_error() {
    // It once overflowed a Duration and panicked (exit 101).
    let out = reconciler(&[
        "plan",
        "-d",
        "examples/fleet",
        "--connect-timeout",
        "18446744073709551615",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("18446744073709551615 is not in 1..=600"),
        "{}",
        text(&out.stderr)
    );
}

/// A definitions directory with app `big` released from the git
/// repository `app` (made here) to a server on loopback whose port is
/// closed: a release refused before any upload never dials it. `args`
/// follow `release big` (a revision).
pub(crate) fn release_of(
    app: &Path,
    extra: &str,
    cache: &Path,
    args: &[&str],
) -> (tempfile::TempDir, Output) {
    let defs = release_defs(app, extra);
    let out = crate::common::reconciler()
        .args(["release", "big"])
        .args(args)
        .arg("-d")
        .arg(defs.path())
        .env("RECONCILER_CACHE_DIR", cache)
        .output()
        .expect("run reconciler");
    (defs, out)
}

/// Definitions of one app `big` from the repository `app` (with `extra`
/// lines) on a server at a closed port.
fn release_defs(app: &Path, extra: &str) -> tempfile::TempDir {
    let defs = tempfile::tempdir().expect("tempdir");
    fs::create_dir_all(defs.path().join("clusters")).expect("mkdir");
    fs::create_dir_all(defs.path().join("apps")).expect("mkdir");
    fs::write(
        defs.path().join("clusters/c.yaml"),
        "name: c\nphp: [\"8.2\"]\nservers: [{ name: s, address: 127.0.0.1, port: 9 }]\n",
    )
    .expect("cluster");
    fs::write(
        defs.path().join("apps/big.yaml"),
        format!(
            "name: big\ncluster: c\nrepo: {}\nphp: \"8.2\"\n{extra}servers: [{{ name: s }}]\n",
            app.display()
        ),
    )
    .expect("app");
    defs
}

pub(crate) fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "protocol.file.allow=always",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
}

#[test]
fn a_release_over_the_apps_size_limits_is_refused_before_any_upload_naming_its_files() {
    let app = tempfile::tempdir().expect("tempdir");
    git(app.path(), &["init", "-q", "-b", "main"]);
    fs::write(app.path().join("index.php"), "<?php echo 1;\n").expect("write");
    // A tiny repository holding a huge, very compressible file.
    let huge = fs::File::create(app.path().join("dump.sql")).expect("create");
    huge.set_len(65 * 1024 * 1024).expect("sparse");
    git(app.path(), &["add", "-A"]);
    git(app.path(), &["commit", "-q", "-m", "one"]);

    let cache = tempfile::tempdir().expect("tempdir");
    let (_defs, out) = release_of(app.path(), "", cache.path(), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            "holds files larger than the app's max_file_size of 64.0 MiB: dump.sql (65.0 MiB)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("raise max_release_size or max_file_size"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("127.0.0.1"),
        "no server was dialled: {stderr}"
    );

    let (_defs, out) = release_of(
        app.path(),
        "max_file_size: 100M\nmax_release_size: 10M\n",
        cache.path(),
        &[],
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is 65.0 MiB unpacked, more than the app's max_release_size of 10.0 MiB; its largest files: dump.sql (65.0 MiB), index.php (14 bytes)"),
        "{stderr}"
    );
}

/// The peak resident memory of this test's children (and theirs) that
/// have ended, in KiB.
fn children_peak_rss_kib() -> i64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage")
        .max_rss()
}

#[test]
fn a_one_gib_file_is_refused_by_the_size_limit_without_a_gib_of_memory() {
    let app = tempfile::tempdir().expect("tempdir");
    git(app.path(), &["init", "-q", "-b", "main"]);
    fs::write(app.path().join("index.php"), "<?php echo 1;\n").expect("write");
    // 1 GiB of zeros: a few MiB packed. git streams it in (big file).
    let huge = fs::File::create(app.path().join("dump.sql")).expect("create");
    huge.set_len(1024 * 1024 * 1024).expect("sparse");
    git(app.path(), &["-c", "core.bigFileThreshold=1m", "add", "-A"]);
    git(app.path(), &["commit", "-q", "-m", "one"]);
    let before = children_peak_rss_kib();

    let cache = tempfile::tempdir().expect("tempdir");
    let defs = release_defs(app.path(), "");
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(120);
    let mut child = crate::common::reconciler()
        .args(["release", "big", "-d"])
        .arg(defs.path())
        .env("RECONCILER_CACHE_DIR", cache.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run reconciler");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut text).expect("read");
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            child.kill().expect("kill");
            child.wait().expect("wait");
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let peak = children_peak_rss_kib();
    let stderr = reader.join().expect("reader");
    assert!(
        peak < 200 * 1024,
        "the release peaked at {} MiB of memory (git before it: {} MiB), after {elapsed:?}",
        peak / 1024,
        before / 1024
    );
    let status = status.unwrap_or_else(|| panic!("still running after {limit:?}: {stderr}"));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "holds files larger than the app's max_file_size of 64.0 MiB: dump.sql (1.0 GiB)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_release_that_would_leave_code_out_is_refused_naming_what() {
    // A submodule: its files are not in the app's repository.
    let lib = tempfile::tempdir().expect("tempdir");
    git(lib.path(), &["init", "-q", "-b", "main"]);
    fs::write(lib.path().join("Lib.php"), "<?php\n").expect("write");
    git(lib.path(), &["add", "-A"]);
    git(lib.path(), &["commit", "-q", "-m", "lib"]);
    let app = tempfile::tempdir().expect("tempdir");
    git(app.path(), &["init", "-q", "-b", "main"]);
    fs::write(
        app.path().join("index.php"),
        "<?php require 'lib/Lib.php';\n",
    )
    .expect("write");
    git(
        app.path(),
        &[
            "submodule",
            "add",
            "-q",
            &lib.path().display().to_string(),
            "lib",
        ],
    );
    git(app.path(), &["commit", "-q", "-m", "with a submodule"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let (_defs, out) = release_of(app.path(), "", cache.path(), &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("holds 1 git submodule (lib): a release would leave its files out"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: reconciler ships what the app's repository holds"),
        "{stderr}"
    );

    // LFS pointers in place of files.
    let app = tempfile::tempdir().expect("tempdir");
    git(app.path(), &["init", "-q", "-b", "main"]);
    fs::create_dir_all(app.path().join("public")).expect("mkdir");
    fs::write(
        app.path().join("public/hero.jpg"),
        "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
    )
    .expect("write");
    git(app.path(), &["add", "-A"]);
    git(app.path(), &["commit", "-q", "-m", "lfs"]);
    let (_defs, out) = release_of(app.path(), "", cache.path(), &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("holds 1 git LFS pointer where files should be (public/hero.jpg)"),
        "{stderr}"
    );
}

#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let state = tempfile::tempdir().expect("tempdir");
    fs::write(
        state.path().join("status.json"),
        r#"{"repo":"r","branch":"main","hosts":{}}"#,
    )
    .expect("status");
    let out_dir = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().display().to_string();
    let templates = out_dir.path().join("t").display().to_string();
    let tokens = out_dir.path().join("tokens").display().to_string();
    for args in [
        vec!["validate", "-d", "examples/fleet"],
        vec!["windows", "-d", "examples/fleet", "--count", "50"],
        vec!["status", "--state-dir", &state_dir],
        vec!["templates", "--out", &templates],
        vec!["deploy-token", "shop", "--deploy-tokens", &tokens],
    ] {
        // `| head -0`: the reader is gone before anything is written.
        let mut child = crate::common::reconciler()
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            !text(&out.stderr).contains("panicked"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
