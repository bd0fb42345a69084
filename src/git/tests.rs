//! The mirror against repositories made by the git CLI in a temporary
//! directory: no network.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use super::*;

/// A source repository with `files` committed on `main`.
struct Source {
    dir: tempfile::TempDir,
}

impl Source {
    fn new() -> Self {
        let source = Self {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        source.git(&["init", "-q", "-b", "main"]);
        source
    }

    fn git(&self, args: &[&str]) -> String {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn commit(&self, files: &[(&str, &str)]) -> String {
        for (path, text) in files {
            let path = self.dir.path().join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", "change"]);
        self.git(&["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        self.dir.path().display().to_string()
    }
}

const CLUSTER: &str = "name: c\nphp: [\"8.2\"]\nservers: [{ name: s, address: local }]\n";

#[test]
fn a_mirror_follows_its_branch_and_reads_definitions_from_a_commit() {
    let source = Source::new();
    let first = source.commit(&[
        ("clusters/c.yaml", CLUSTER),
        ("README.md", "not a definition"),
    ]);
    let cache = tempfile::tempdir().expect("tempdir");
    let mut mirror =
        Mirror::open_or_clone(&source.url(), &cache.path().join("defs.git")).expect("clone");
    assert_eq!(mirror.resolve("main").expect("main"), first);

    let files = mirror.definition_files(&first).expect("files");
    assert_eq!(files.revision.as_deref(), Some(first.as_str()));
    let clusters: Vec<&str> = files.in_dir("clusters").map(|(p, _)| p).collect();
    assert_eq!(clusters, ["clusters/c.yaml"]);
    crate::definitions::Definitions::parse(&files).expect("valid");

    let second = source.commit(&[("apps/x.yaml", "name: x\n")]);
    assert_eq!(
        mirror.resolve("main").expect("main"),
        first,
        "not fetched yet"
    );
    mirror.fetch().expect("fetch");
    assert_eq!(mirror.resolve("main").expect("main"), second);
    assert_eq!(mirror.resolve(&first).expect("by id"), first);

    // Opened again from disk, it is the same mirror.
    let again = Mirror::open_or_clone(&source.url(), &cache.path().join("defs.git")).expect("open");
    assert_eq!(again.resolve("main").expect("main"), second);
    assert!(matches!(
        again.resolve("nope"),
        Err(GitError::UnknownRevision { .. })
    ));
}

#[test]
fn links_and_directories_in_a_commit_are_problems_not_skipped() {
    let source = Source::new();
    source.commit(&[("clusters/c.yaml", CLUSTER), ("apps/shop.yaml/inner", "x")]);
    std::os::unix::fs::symlink("/etc/passwd", source.dir.path().join("apps/blog.yaml"))
        .expect("link");
    let commit = source.commit(&[]);
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_clone(&source.url(), &cache.path().join("m.git")).expect("clone");
    let files = mirror.definition_files(&commit).expect("files");
    let problems = match crate::definitions::Definitions::parse(&files) {
        Err(crate::definitions::LoadError::Invalid(problems)) => problems,
        other => panic!("{other:?}"),
    };
    let messages: Vec<String> = problems.iter().map(|p| p.message.clone()).collect();
    assert_eq!(
        messages,
        [
            "refusing a symbolic link in the repository",
            "this is a directory, not a definitions file"
        ]
    );
}

#[test]
fn a_commit_archives_as_tar_gz() {
    let source = Source::new();
    let commit = source.commit(&[
        ("public/index.php", "<?php echo 1;"),
        ("composer.json", "{}"),
    ]);
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_clone(&source.url(), &cache.path().join("m.git")).expect("clone");
    let mut tar = std::io::Cursor::new(Vec::new());
    mirror.archive(&commit, &mut tar).expect("archive");
    let tar = tar.into_inner();
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("tar")
        .args(["-xz", "-C"])
        .arg(out.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar)
        .expect("write");
    assert!(child.wait().expect("tar").success());
    let index = std::fs::read_to_string(out.path().join("public/index.php")).expect("extracted");
    assert_eq!(index, "<?php echo 1;");
}

/// What a directory holds, as `git checkout` and a release must agree on:
/// per path, its kind, whether it is executable, and its content or link
/// target; with the modification time of every file and link.
fn listing(root: &std::path::Path) -> (BTreeMap<String, String>, BTreeSet<i64>) {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let mut entries = BTreeMap::new();
    let mut mtimes = BTreeSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("inside")
                .display()
                .to_string();
            if relative == ".git" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("metadata");
            let what = if meta.file_type().is_symlink() {
                mtimes.insert(meta.mtime());
                format!(
                    "link -> {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else if meta.is_dir() {
                pending.push(path.clone());
                "dir".to_owned()
            } else {
                mtimes.insert(meta.mtime());
                let executable = meta.permissions().mode() & 0o111 != 0;
                let content = std::fs::read(&path).expect("read");
                format!(
                    "file{} {}",
                    if executable { " executable" } else { "" },
                    crate::units::sha256(&content)
                )
            };
            entries.insert(relative, what);
        }
    }
    (entries, mtimes)
}

#[test]
fn an_archive_unpacks_to_what_git_checkout_gives_dated_by_the_commit() {
    use std::os::unix::fs::PermissionsExt as _;
    let source = Source::new();
    source.commit(&[
        ("artisan", "#!/usr/bin/env php\n<?php echo 1;\n"),
        ("public/index.php", "<?php echo 1;"),
        ("storage/framework/views/.gitignore", "*\n!.gitignore\n"),
        ("storage/logs/.gitignore", "*\n!.gitignore\n"),
        ("dir with space/naïve ü.php", "<?php\n"),
        ("nested/deep/er/file.txt", "x"),
        // Checkout converts line endings by attribute; a release must too.
        (".gitattributes", "*.bat eol=crlf\n"),
        ("run.bat", "echo one\necho two\n"),
    ]);
    let artisan = source.dir.path().join("artisan");
    std::fs::set_permissions(&artisan, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink("../nested/deep", source.dir.path().join("public/deep"))
        .expect("link");
    std::os::unix::fs::symlink("nowhere", source.dir.path().join("dangling")).expect("link");
    let commit = source.commit(&[]);
    let time: i64 = source
        .git(&["show", "-s", "--format=%ct", &commit])
        .parse()
        .expect("commit time");

    let checkout = tempfile::tempdir().expect("tempdir");
    let cloned = Command::new("git")
        .args(["clone", "-q", &source.url()])
        .arg(checkout.path().join("c"))
        .status()
        .expect("git clone");
    assert!(cloned.success());

    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_clone(&source.url(), &cache.path().join("m.git")).expect("clone");
    let mut tar = std::io::Cursor::new(Vec::new());
    mirror.archive(&commit, &mut tar).expect("archive");
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("tar")
        .args(["-xz", "--no-same-owner", "-C"])
        .arg(out.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(&tar.into_inner())
        .expect("write");
    assert!(child.wait().expect("tar").success());

    let (released, mtimes) = listing(out.path());
    let (checked_out, _) = listing(&checkout.path().join("c"));
    assert_eq!(released, checked_out);
    assert_eq!(released["artisan"].split(' ').nth(1), Some("executable"));
    assert_eq!(released["public/deep"], "link -> ../nested/deep");
    assert_eq!(
        mtimes,
        BTreeSet::from([time]),
        "every file dated by the commit"
    );
}

#[test]
fn a_moved_tag_moves_in_the_mirror_and_a_deleted_branch_is_gone() {
    let source = Source::new();
    let first = source.commit(&[("index.php", "<?php echo 1;")]);
    source.git(&["tag", "v1.0"]);
    source.git(&["branch", "feature"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let path = cache.path().join("m.git");
    let mut mirror = Mirror::open_or_clone(&source.url(), &path).expect("clone");
    mirror.fetch().expect("fetch");
    assert_eq!(mirror.resolve("v1.0").expect("tag"), first);
    assert_eq!(mirror.resolve("feature").expect("branch"), first);

    // The fix: a new commit, and the tag moved to it (`git tag -f`).
    let fix = source.commit(&[("index.php", "<?php echo 2;")]);
    source.git(&["tag", "-f", "v1.0"]);
    source.git(&["branch", "-D", "feature"]);
    mirror.fetch().expect("fetch");
    assert_eq!(mirror.resolve("v1.0").expect("tag"), fix, "the moved tag");
    assert!(
        matches!(
            mirror.resolve("feature"),
            Err(GitError::UnknownRevision { .. })
        ),
        "no ghost of a deleted branch"
    );
    // Reopened, the same.
    let mirror = Mirror::open_or_clone(&source.url(), &path).expect("open");
    assert_eq!(mirror.resolve("v1.0").expect("tag"), fix);
    assert!(mirror.resolve("feature").is_err());
    assert_eq!(mirror.resolve("main").expect("main"), fix);
}

/// The files (not directories) of a tar stream, as `tar -t` lists them.
fn tar_files(tar: &[u8], gzip: bool) -> BTreeSet<String> {
    use std::io::Write as _;
    let mut child = Command::new("tar")
        .arg(if gzip { "-tz" } else { "-t" })
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("tar");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(tar)
        .expect("write");
    let out = child.wait_with_output().expect("tar");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.ends_with('/') && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn export_ignore_leaves_out_what_git_archive_leaves_out_and_the_checks_see_the_same() {
    let source = Source::new();
    let commit = source.commit(&[
        (
            ".gitattributes",
            "/tests export-ignore\nREADME.md export-ignore\n*.secret export-ignore\n\
             docs/ export-ignore\n/.github export-ignore\n",
        ),
        ("index.php", "<?php\n"),
        ("README.md", "read me"),
        ("tests/a.php", "<?php\n"),
        ("tests/sub/b.php", "<?php\n"),
        ("docs/guide.md", "guide"),
        ("keys/x.secret", "secret"),
        ("src/tests/keep.php", "<?php // kept: /tests is anchored\n"),
        (".github/workflows/ci.yml", "on: push\n"),
    ]);
    let out = Command::new("git")
        .args(["archive", "--format=tar", &commit])
        .current_dir(source.dir.path())
        .output()
        .expect("git archive");
    assert!(out.status.success());
    let by_git = tar_files(&out.stdout, false);

    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = Mirror::open_or_clone(&source.url(), &cache.path().join("m.git")).expect("clone");
    let mut tar = std::io::Cursor::new(Vec::new());
    mirror.archive(&commit, &mut tar).expect("archive");
    let ours = tar_files(&tar.into_inner(), true);
    assert_eq!(ours, by_git, "as `git archive`");
    assert_eq!(
        ours,
        BTreeSet::from([
            ".gitattributes".to_owned(),
            "index.php".to_owned(),
            "src/tests/keep.php".to_owned()
        ])
    );
    let entries = mirror.entries(&commit).expect("entries");
    let checked: BTreeSet<String> = entries
        .iter()
        .filter(|e| !e.export_ignored)
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(checked, ours, "the checks see what ships");
    assert_eq!(entries.len(), 9, "and know what is left out");
}

#[test]
fn a_commit_no_branch_reaches_is_refused_by_name_but_still_there_for_what_is_live() {
    let source = Source::new();
    let kept = source.commit(&[("index.php", "<?php echo 1;")]);
    let gone = source.commit(&[("index.php", "<?php echo 2;")]);
    let cache = tempfile::tempdir().expect("tempdir");
    let mut mirror =
        Mirror::open_or_clone(&source.url(), &cache.path().join("m.git")).expect("clone");
    assert_eq!(mirror.resolve(&gone).expect("on main"), gone);
    // Force-pushed away: the mirror still holds it, no branch reaches it.
    source.git(&["reset", "-q", "--hard", &kept]);
    mirror.fetch().expect("fetch");
    assert!(matches!(
        mirror.resolve(&gone),
        Err(GitError::UnknownRevision {
            unreachable: true,
            ..
        })
    ));
    // A release log's commit, live somewhere, is still there to copy.
    assert!(mirror.has_commit(&gone));
    assert_eq!(mirror.resolve(&kept[..8]).expect("short id"), kept);
    assert_eq!(mirror.resolve("main~0").expect("suffix"), kept);
    let err = mirror.resolve("").expect_err("empty");
    assert_eq!(
        err.hint(),
        Some("name a branch, a tag or a commit on one; the repository has branches: main")
    );
}

/// Issue 20: a daemon SIGKILLed during a fetch leaves lock files in its
/// mirror (gix's `packed-refs.lock`; git's `<ref>.lock` of a ref it was
/// updating), and every later fetch failed until a person removed them. The daemon clears them at start (holding its state
/// directory's lock), and the fetch works again.
#[test]
fn lock_files_a_killed_fetch_left_are_cleared_and_the_mirror_fetches_again() {
    let source = Source::new();
    source.commit(&[("a.txt", "1")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mirror.git");
    drop(Mirror::open_or_clone(&source.url(), &path).expect("clone"));
    source.git(&["tag", "v1"]);
    let second = source.commit(&[("a.txt", "2")]);
    let left = [
        path.join("packed-refs.lock"),
        path.join("refs/remotes/origin/main.lock"),
    ];
    for lock in &left {
        std::fs::create_dir_all(lock.parent().expect("parent")).expect("mkdir");
        std::fs::write(lock, "").expect("a lock file");
    }
    let outside = dir.path().join("not-the-mirror.lock");
    std::fs::write(&outside, "").expect("write");
    std::os::unix::fs::symlink(&outside, path.join("refs/tags/linked.lock")).expect("link");
    let mut mirror = Mirror::open_or_clone(&source.url(), &path).expect("open");
    assert!(
        mirror.fetch().is_err(),
        "a fetch fails while the locks stand"
    );

    let removed = clear_stale_locks(&path);
    assert_eq!(removed, left.to_vec());
    assert!(outside.exists(), "a link is not followed");
    assert!(
        path.join("refs/tags/linked.lock").is_symlink(),
        "nor removed"
    );
    std::fs::remove_file(path.join("refs/tags/linked.lock")).expect("rm");
    let mut mirror = Mirror::open_or_clone(&source.url(), &path).expect("open");
    mirror.fetch().expect("a fetch after the locks went");
    assert_eq!(mirror.branch_head("main").expect("head"), Some(second));
}

/// A remote that takes the connection and never answers: the clone fails
/// at its timeout, saying so, with git's processes stopped (the remote
/// sees its connection closed) and no mirror or staging directory left.
#[test]
fn a_remote_that_never_answers_fails_the_clone_at_its_timeout() {
    use std::io::Read;
    use std::time::{Duration, Instant};

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/app.git", listener.local_addr().expect("addr"));
    let remote = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("read timeout");
        // The request is read and never answered; the read ends (0) once
        // no process holds git's end of the connection.
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mirror");
    let started = Instant::now();
    let error = cli::clone_bare(&url, &path, Duration::from_secs(2)).expect_err("a silent remote");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert!(
        error.to_string().contains("did not finish in 2 s"),
        "{error}"
    );
    assert!(
        remote.join().expect("remote"),
        "git's connection stayed open: its processes were not stopped"
    );
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

/// A mirror an older clone made keeps the URL it was cloned from, a
/// password with it, as its `origin`: opened, the section is gone, the
/// rest of the config and the mirror work on.
#[test]
fn an_older_mirrors_credentialed_origin_is_forgotten_on_open() {
    let source = Source::new();
    let first = source.commit(&[("clusters/c.yaml", CLUSTER)]);
    let cache = tempfile::tempdir().expect("tempdir");
    let path = cache.path().join("defs.git");
    drop(Mirror::open_or_clone(&source.url(), &path).expect("clone"));
    let config = path.join("config");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(
        "[remote \"origin\"]\n\turl = https://deploy:hunter22@git.example.com/defs.git\n\
         \tfetch = +refs/heads/*:refs/remotes/origin/*\n",
    );
    std::fs::write(&config, text).expect("write");

    let mut mirror = Mirror::open_or_clone(&source.url(), &path).expect("open");
    let text = std::fs::read_to_string(&config).expect("config");
    assert!(!text.contains("hunter22"), "{text}");
    assert!(!text.contains("[remote \"origin\"]"), "{text}");
    assert!(text.contains("bare = true"), "{text}");
    mirror.fetch().expect("fetch");
    assert_eq!(mirror.resolve("main").expect("main"), first);
}
