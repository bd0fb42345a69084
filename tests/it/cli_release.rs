//! What a release ships and which commit it is, decided before any server
//! is dialled: `export-ignore`, and revisions that name no commit of the
//! remote (empty, unknown, reachable only from the local mirror).

use std::fs;
use std::process::Command;

use crate::cli::{git, release_of, text};

/// A repository with `files` committed on `main` and tagged `v1`.
fn repository(files: &[(&str, &str)]) -> tempfile::TempDir {
    let app = tempfile::tempdir().expect("tempdir");
    git(app.path(), &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let path = app.path().join(path);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(path, text).expect("write");
    }
    git(app.path(), &["add", "-A"]);
    git(app.path(), &["commit", "-q", "-m", "one"]);
    git(app.path(), &["tag", "v1"]);
    app
}

fn head(dir: &std::path::Path) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(dir)
        .output()
        .expect("git");
    text(&out.stdout).trim().to_owned()
}

#[test]
fn export_ignored_files_are_left_out_as_git_archive_does_and_said_so() {
    // What export-ignore leaves out is neither shipped nor checked: a
    // large dump and an LFS pointer under tests/ refuse nothing.
    let app = repository(&[
        (
            ".gitattributes",
            "/tests export-ignore\nREADME.md export-ignore\n",
        ),
        ("index.php", "<?php echo 1;\n"),
        ("README.md", "read me\n"),
        (
            "tests/fixtures/hero.jpg",
            "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
        ),
    ]);
    let dump = fs::File::create(app.path().join("tests/dump.sql")).expect("create");
    dump.set_len(2 * 1024 * 1024).expect("sparse");
    git(app.path(), &["add", "-A"]);
    git(app.path(), &["commit", "-q", "-m", "tests"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let (_defs, out) = release_of(app.path(), "max_file_size: 1M\n", cache.path(), &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(
            ": 2 files, 59 bytes unpacked (export-ignore in .gitattributes leaves 3 files out)"
        ),
        "{stderr}"
    );
    assert!(
        !stderr.contains("LFS") && !stderr.contains("max_file_size"),
        "{stderr}"
    );
    // It went on to the (closed) server.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

#[test]
fn a_revision_that_names_no_commit_of_the_remote_is_refused_naming_what_it_has() {
    let app = repository(&[("index.php", "<?php echo 1;\n")]);
    git(app.path(), &["branch", "develop"]);
    let cache = tempfile::tempdir().expect("tempdir");
    for (rev, error) in [
        ("", "error: an empty revision names no commit of `"),
        ("  ", "error: an empty revision names no commit of `"),
        (
            "deadbeef",
            "error: no commit, tag or branch `deadbeef` in `",
        ),
        ("v2", "error: no commit, tag or branch `v2` in `"),
    ] {
        let (_defs, out) = release_of(app.path(), "", cache.path(), &[rev]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{rev:?}: {stderr}");
        assert!(stderr.contains(error), "{rev:?}: {stderr}");
        assert!(
            stderr.contains(
                "hint: name a branch, a tag or a commit on one; the repository has branches: \
                 develop, main; tags: v1"
            ),
            "{rev:?}: {stderr}"
        );
        assert!(!stderr.contains("127.0.0.1"), "no server dialled: {stderr}");
    }

    // A commit the mirror fetched, then gone from every branch and tag
    // (force-pushed away): only this cache still has it, and it is
    // refused; one still on a branch is not.
    let kept = head(app.path());
    git(app.path(), &["commit", "-q", "--allow-empty", "-m", "two"]);
    let gone = head(app.path());
    let (_defs, out) = release_of(app.path(), "", cache.path(), &[]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("main is {}", &gone[..12])),
        "{stderr}"
    );
    git(app.path(), &["reset", "-q", "--hard", &kept]);
    for rev in [gone.as_str(), &gone[..10]] {
        let (_defs, out) = release_of(app.path(), "", cache.path(), &[rev]);
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "error: `{rev}` is a commit that no branch or tag of `"
            )),
            "{rev}: {stderr}"
        );
        assert!(
            stderr.contains("only this mirror still holds it"),
            "{stderr}"
        );
        assert!(!stderr.contains("127.0.0.1"), "no server dialled: {stderr}");
    }
    let (_defs, out) = release_of(app.path(), "", cache.path(), &[&kept[..10]]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{} is {}", &kept[..10], &kept[..12])),
        "{stderr}"
    );
}
