//! The real Laravel app of the fleet tests (`tests/fixtures/laravel`):
//! Laravel 8 and its libraries from Debian's packages with our own small
//! app on top, released to the fleet the way operators run Laravel apps:
//! `shared: [storage, .env]`, the config, route and view caches as release
//! commands, `queue:restart` as a deploy command, a queue worker and the
//! scheduler on a jobs server, the PHP extensions installed by `reconciler
//! provision` from a local apt repository.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Repo;
use super::apt::LocalApt;

/// The web servers of the app.
pub const WEB: [&str; 2] = ["fleet-1", "fleet-2"];
/// The server that runs its queue worker and scheduler.
pub const JOBS: &str = "fleet-3";
/// The app's name, Unix user and first domain (`shop.test`).
pub const APP: &str = "shop";

/// Where and in which release a request, job or tick ran (`/here`,
/// `/job/<id>`, `/tick`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Trace {
    /// The release directory's name: the commit id.
    pub release: String,
    /// The `VERSION` file of that commit, as the config cache holds it.
    pub version: String,
    pub host: String,
    /// When it ran, in seconds since the epoch.
    pub at: f64,
}

/// The app on the fleet: its git repository, the definitions running it,
/// and the servers' apt sources set aside while it lives.
pub struct Laravel {
    pub repo: Repo,
    /// Holds `app/` (the app's git repository) and `apt/`.
    work: tempfile::TempDir,
    /// The app mirrors of `reconciler release`.
    pub cache: tempfile::TempDir,
    _apt: LocalApt,
}

impl Laravel {
    /// Builds the app (the .debs are cached across runs), installs its PHP
    /// extensions with `reconciler provision`, applies the definitions
    /// (`extra` is YAML added to the app) and pushes its `.env`. Nothing is
    /// released yet.
    pub fn new(extra: &str) -> Self {
        let repo = Repo::new(&[WEB[0], WEB[1], JOBS]);
        let work = tempfile::tempdir().expect("tempdir");
        let build = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/laravel/build");
        let built = Command::new(&build)
            .arg(work.path())
            .env("FLEET_IMAGE", &repo.fleet.image)
            .output()
            .expect("run tests/fixtures/laravel/build");
        assert!(
            built.status.success(),
            "the Laravel fixture did not build:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let apt = LocalApt::serve(
            &repo.fleet,
            &[WEB[0], WEB[1], JOBS],
            &work.path().join("apt"),
            &[],
        );
        let cluster = repo.dir.path().join("clusters/fleet.yaml");
        let yaml = std::fs::read_to_string(&cluster).expect("cluster");
        repo.write(
            "clusters/fleet.yaml",
            &yaml.replacen("servers:\n", "extensions: [xml, bcmath]\nservers:\n", 1),
        );
        let role = |name: &str| {
            format!(
                "  - name: {name}\n    web: {{ max_workers: 8, min_spare_workers: 2, initial_workers: 2, max_spare_workers: 4 }}\n"
            )
        };
        repo.write(
            &format!("apps/{APP}.yaml"),
            &format!(
                "name: {APP}\ncluster: fleet\nrepo: {}\nphp: \"8.2\"\ndomains: [{APP}.test]\n\
                 release_commands: [php artisan config:cache, php artisan route:cache, php artisan view:cache]\n\
                 shared: [storage, .env]\nhealth_check: {{ path: /up, status: 200 }}\n{extra}servers:\n{}{}\
                 \x20 - name: {JOBS}\n    deploy_commands: [php artisan queue:restart]\n\
                 \x20   workers: [{{ name: queue, command: php artisan queue:work --sleep=1 --tries=1, processes: 2, stop_wait: 10 }}]\n\
                 \x20   scheduler: true\n",
                work.path().join("app").display(),
                role(WEB[0]),
                role(WEB[1]),
            ),
        );
        // A fresh home: an earlier test's shared/ would hide what a first
        // release does to the `shared/storage` an apply makes.
        for server in [WEB[0], WEB[1], JOBS] {
            repo.ssh(
                server,
                &format!(
                    "rm -rf /home/{APP}/shared /home/{APP}/releases /home/{APP}/current \
                     /var/lib/reconciler/apps/{APP}"
                ),
            );
        }
        let laravel = Self {
            repo,
            work,
            cache: tempfile::tempdir().expect("tempdir"),
            _apt: apt,
        };
        laravel.expect(&["provision"], 0);
        laravel.expect(&["apply", "--yes", "--now"], 0);
        // Keys of this test only: the fleet's redis is shared.
        let env = laravel.work.path().join("shop.env");
        std::fs::write(
            &env,
            format!(
                "APP_NAME=\"Fixture Shop\"\nAPP_KEY=base64:{}\nREDIS_HOST=redis\nREDIS_PREFIX=t{}:\n",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                std::process::id()
            ),
        )
        .expect("write .env");
        laravel.expect(&["env", "push", APP, &env.display().to_string()], 0);
        laravel
    }

    /// The app's git repository.
    pub fn app_dir(&self) -> PathBuf {
        self.work.path().join("app")
    }

    /// Commits `VERSION` = `version` and `files` (empty content: removed);
    /// the new commit's id.
    pub fn commit(&self, version: &str, files: &[(&str, &str)]) -> String {
        let dir = self.app_dir();
        std::fs::write(dir.join("VERSION"), format!("{version}\n")).expect("VERSION");
        for (path, text) in files {
            let path = dir.join(path);
            if text.is_empty() {
                let _ = std::fs::remove_file(path);
            } else {
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, text).expect("write");
            }
        }
        git(&dir, &["add", "-A"]);
        git(
            &dir,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "commit",
                "-q",
                "-m",
                version,
            ],
        );
        self.head()
    }

    /// The commit `main` is at.
    pub fn head(&self) -> String {
        git(&self.app_dir(), &["rev-parse", "HEAD"])
            .trim()
            .to_owned()
    }

    /// `reconciler ARGS` on the definitions, with this app's mirrors.
    pub fn reconciler(&self, args: &[&str]) -> Command {
        let mut cmd = self.repo.command(args);
        cmd.env("RECONCILER_CACHE_DIR", self.cache.path());
        cmd
    }

    /// Runs `reconciler ARGS` and checks its exit code; stdout and stderr.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out: Output = self.reconciler(args).output().expect("run reconciler");
        let text = format!(
            "--- stdout\n{}\n--- stderr\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(code), "reconciler {args:?}\n{text}");
        text
    }

    /// `GET path` for the app on `server`'s nginx.
    pub fn get(&self, server: &str, path: &str) -> (u16, String) {
        self.repo
            .server(server)
            .http_get(path, &format!("{APP}.test"))
    }

    /// Where a request to `server` runs now.
    pub fn here(&self, server: &str) -> Trace {
        let (status, body) = self.get(server, "/here");
        assert_eq!(status, 200, "{server}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{server}: {e}: {body}"))
    }

    /// Polls `GET path` on `server` until it answers 200, for at most
    /// `limit`: what it recorded.
    pub fn wait_for(&self, server: &str, path: &str, limit: Duration) -> Trace {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.get(server, path);
            if status == 200 {
                return serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            }
            assert!(
                Instant::now() < deadline,
                "{server} {path}: still {status} after {limit:?}: {body}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The release `current` names on `server`.
    pub fn live(&self, server: &str) -> String {
        let link = self
            .repo
            .ssh(server, &format!("readlink /home/{APP}/current"));
        link.trim()
            .strip_prefix("releases/")
            .unwrap_or_else(|| panic!("{server}: current is {link}"))
            .to_owned()
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
