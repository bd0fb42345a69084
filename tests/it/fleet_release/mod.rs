//! Releases, rollbacks and their lock, against the test fleet: a fixture
//! app in a local git repository (no network) released to two web servers.
//! These tests change the shared servers, so nextest runs them one at a
//! time with the other fleet tests.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Repo;

const SERVERS: [&str; 2] = ["fleet-1", "fleet-2"];

/// The fixture app's git repository. Each commit's `public/index.php`
/// prints what two included files return; both carry the release id, so a
/// response that mixes two releases shows.
struct AppRepo {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl AppRepo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        Self {
            dir,
            cache: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn write(&self, path: &str, text: &str) {
        let path = self.dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    /// A commit whose page answers `id id`; `extra` files are added (or,
    /// with empty content, removed).
    fn commit(&self, id: &str, extra: &[(&str, &str)]) -> String {
        self.write(
            "public/index.php",
            "<?php\n$a = require __DIR__ . '/../src/a.php';\nusleep(5000);\n\
             $b = require __DIR__ . '/../src/b.php';\necho \"$a $b\";\n",
        );
        self.write("src/a.php", &format!("<?php return '{id}';\n"));
        self.write("src/b.php", &format!("<?php return '{id}';\n"));
        self.write(
            "composer.json",
            r#"{"name": "fixture/app", "require": {}, "repositories": [{"packagist.org": false}]}"#,
        );
        self.write(
            "worker.php",
            "<?php\nfile_put_contents(getenv('HOME') . '/shared/storage/worker.txt', realpath(__DIR__));\n\
             while (true) { sleep(60); }\n",
        );
        for (path, text) in extra {
            let full = self.dir.path().join(path);
            if text.is_empty() {
                let _ = std::fs::remove_file(full);
            } else {
                self.write(path, text);
            }
        }
        commit_all(self.dir.path(), id);
        git(self.dir.path(), &["rev-parse", "HEAD"])
            .trim()
            .to_owned()
    }
}

/// Commits everything in `dir` with `message`.
fn commit_all(dir: &Path, message: &str) {
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

/// Definitions with the app `rel` on both web servers, a worker on the
/// first, released from `app`.
///
/// Every test of this module releases an app named `rel` on the same
/// fleet, so what one test leaves on the servers must not reach the next:
/// its traffic (the access log, which a guard with `compare` reads as the
/// app's usual 5xx share before the switch) and a release it left in
/// flight (which a daemon would resume) are cleared first.
fn definitions(app: &AppRepo, keep: u32) -> Repo {
    let repo = Repo::new(&SERVERS);
    for server in SERVERS {
        repo.ssh(
            server,
            "if [ -e /var/log/reconciler/rel/access.log ]; then : > /var/log/reconciler/rel/access.log; fi; \
             rm -f /var/lib/reconciler/apps/rel/in-flight",
        );
    }
    repo.write(
        "apps/rel.yaml",
        &format!(
            "name: rel\ncluster: fleet\nrepo: {}\nphp: \"8.2\"\ndomains: [rel.test]\n\
             composer: install --no-interaction --no-progress\n\
             release_commands:\n  - \"test ! -f fail.txt || {{ echo boom: the build broke; exit 3; }}\"\n\
             \x20 - \"test ! -f slow.txt || sleep $(cat slow.txt)\"\n\
             \x20 - \"php -r 'echo PHP_VERSION;' > php-version.txt\"\n\
             shared: [.env, storage]\nkeep_releases: {keep}\n\
             env_commands: [\"date +%s%N > env-ran.txt\"]\n\
             health_check: {{ path: /, status: 200 }}\nservers:\n\
             \x20 - name: fleet-1\n    web: {{ max_workers: 8, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }}\n\
             \x20   workers: [{{ name: w, command: php worker.php, processes: 1, stop_wait: 2 }}]\n\
             \x20 - name: fleet-2\n    web: {{ max_workers: 8, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }}\n",
            app.dir.path().display()
        ),
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo
}

/// `reconciler ARGS` for the repo, with the app mirror cache of `app`.
fn reconciler(repo: &Repo, app: &AppRepo, args: &[&str]) -> Command {
    let mut cmd = repo.command(args);
    cmd.env("RECONCILER_CACHE_DIR", app.cache.path());
    cmd
}

fn run(repo: &Repo, app: &AppRepo, args: &[&str]) -> Output {
    reconciler(repo, app, args)
        .output()
        .expect("run reconciler")
}

fn expect(out: &Output, code: i32) -> String {
    let text = format!(
        "--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "{text}");
    text
}

fn page(repo: &Repo, server: &str) -> (u16, String) {
    repo.server(server).http_get("/", "rel.test")
}

fn assert_serves(repo: &Repo, id: &str) {
    for server in SERVERS {
        assert_eq!(page(repo, server), (200, format!("{id} {id}")), "{server}");
    }
}

/// The release directories on `server`.
fn releases(repo: &Repo, server: &str) -> Vec<String> {
    let mut names: Vec<String> = repo
        .ssh(server, "ls /home/rel/releases")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

fn live(repo: &Repo, server: &str) -> String {
    repo.ssh(server, "readlink /home/rel/current")
        .trim()
        .to_owned()
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Kills the child when dropped, so a failing test leaves no server.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sets the app's pinned `revision:` in the definitions.
fn pin(repo: &Repo, revision: &str) {
    let path = repo.dir.path().join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    let yaml: String = yaml
        .lines()
        .filter(|l| !l.starts_with("revision:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let yaml = yaml.replacen(
        "php: \"8.2\"\n",
        &format!("php: \"8.2\"\nrevision: {revision}\n"),
        1,
    );
    std::fs::write(path, yaml).expect("write");
}

fn wait_serving(repo: &Repo, id: &str, within: Duration) {
    wait_serving_or(repo, id, within, String::new);
}

/// Waits until both web servers serve `id`, or panics with what they
/// answer and `explain()` (a daemon's log, say).
fn wait_serving_or(repo: &Repo, id: &str, within: Duration, explain: impl Fn() -> String) {
    let deadline = Instant::now() + within;
    let want = (200, format!("{id} {id}"));
    while SERVERS.iter().any(|s| page(repo, s) != want) {
        assert!(
            Instant::now() < deadline,
            "{id} is not served after {within:?}: {:?}\n{}",
            SERVERS.map(|s| page(repo, s)),
            explain()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

mod ab;
mod app_data;
mod causes;
mod daemon;
mod elastic;
mod elastic_cli;
mod elastic_keyless;
mod elastic_lost;
mod guard;
mod notify;
mod releases;
mod warm;
mod webhook;

/// What a load saw during releases, as `(failed, mixed, stale)`: `seen`
/// holds each request's start, status and body (`"<id> <id>"`, one id from
/// each of two files), `switched` each release's return time and id.
/// Failed: not 200. Mixed: the two ids differ. Stale: a request that
/// started 100 ms after a release returned (and before the next one) is
/// served by an earlier release: it should be served by it or a later one.
pub(super) fn tally(
    seen: &[(Instant, u16, String)],
    switched: &[(Instant, String)],
) -> (usize, usize, usize) {
    let failed = seen.iter().filter(|(_, status, _)| *status != 200).count();
    let mixed = seen
        .iter()
        .filter(|(_, _, body)| {
            let mut ids = body.split(' ');
            ids.next() != ids.next()
        })
        .count();
    let mut stale = 0;
    for (k, (at, _)) in switched.iter().enumerate() {
        let later: Vec<&str> = switched[k..].iter().map(|(_, id)| id.as_str()).collect();
        let until = switched.get(k + 1).map(|(t, _)| *t);
        stale += seen
            .iter()
            .filter(|(t, _, _)| {
                *t > *at + Duration::from_millis(100) && until.is_none_or(|u| *t < u)
            })
            .filter(|(_, _, body)| !later.contains(&body.split(' ').next().unwrap_or("")))
            .count();
    }
    (failed, mixed, stale)
}
