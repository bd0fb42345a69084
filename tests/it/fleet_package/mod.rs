//! The Debian package on a fresh server: `packaging/deb/build` makes the
//! .deb of the binary under test, a new container of the fleet's image (a
//! deploy host, on the fleet's network) installs it with `apt-get install
//! ./reconciler_….deb`, and the test checks what an operator sees: the
//! version, `man reconciler-plan`, Tab completing a command and an option,
//! the system user and its 0700 state directory, the reconciler-watch
//! service converging fleet-1 from a bare definitions repository on the
//! deploy host, then `apt-get purge` leaving nothing but the state
//! directory (and the user owning it) that README.Debian documents.
//!
//! The fleet's image is minimal in two ways a deploy host is not: dpkg
//! drops /usr/share/man and /usr/share/doc there (so the container gets
//! that rule removed first), and it has no systemd, so `start-unit` (next
//! to this file) runs the installed unit's ExecStart with its User=,
//! Group=, UMask=, Environment= and EnvironmentFile= the way systemd
//! would, without its sandbox. man-db and bash-completion come from the
//! Debian mirror the image was built from when the container reaches it;
//! when it does not, the page is rendered with this machine's `man -l` and
//! the completion script is sourced directly, and the test says so.
//!
//! About a minute: the .deb (the debug binary, fast compression) ~15 s,
//! apt ~25 s, the rest a few seconds each.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Fleet;
use serde_json::Value;

/// Runs the [Service] of a unit file as systemd would (see the module doc).
const START_UNIT: &str = include_str!("start-unit");

/// The state directory the package creates and documents as kept on purge.
const STATE_DIR: &str = "/var/lib/reconciler-watch";

/// A fresh container of the fleet's image on the fleet's network, removed
/// (with everything in it) when dropped.
struct DeployHost {
    container: String,
}

impl DeployHost {
    /// Starts `<prefix>-package` from the image of `fleet`, labelled like
    /// the fleet so that `tests/fleet/fleet down` removes it too, and
    /// waits until its services are up.
    fn start(fleet: &Fleet) -> DeployHost {
        let fleet_1 = &fleet.server("fleet-1").container;
        let inspect = |format: &str| {
            let out = docker(&["inspect", "-f", format, fleet_1]);
            assert!(out.status.success(), "docker inspect {fleet_1}: {out:?}");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let prefix = inspect("{{index .Config.Labels \"reconciler-fleet.prefix\"}}");
        let network = inspect("{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}{{end}}");
        let container = format!("{prefix}-package");
        let _ = docker(&["rm", "-f", &container]);
        let started = docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--hostname",
            "deploy",
            "--network",
            &network,
            "--label",
            &format!("reconciler-fleet.prefix={prefix}"),
            "--tmpfs",
            "/run:rw,nosuid,nodev,mode=755",
            &fleet.image,
        ]);
        assert!(started.status.success(), "docker run: {started:?}");
        let host = DeployHost { container };
        host.sh_ok(
            "for i in $(seq 150); do [ -e /run/fleet-ready ] && exit 0; sleep 0.2; done\n\
             echo 'not ready after 30 s' >&2; exit 1",
        );
        host
    }

    /// `bash -c script` as root on the host.
    fn sh(&self, script: &str) -> Output {
        docker(&["exec", &self.container, "bash", "-c", script])
    }

    /// Like [`sh`](Self::sh), panicking with its output unless it succeeds;
    /// returns stdout.
    fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "{}: script failed ({}):\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}",
            self.container,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copies `from` (a file or a directory) on this machine to `to` on the host.
    fn copy_in(&self, from: &Path, to: &str) {
        let out = docker(&[
            "cp",
            &from.display().to_string(),
            &format!("{}:{to}", self.container),
        ]);
        assert!(
            out.status.success(),
            "docker cp {}: {out:?}",
            from.display()
        );
    }

    /// Every path on the host's root filesystem but the virtual and
    /// temporary ones, sorted.
    fn paths(&self) -> Vec<String> {
        self.sh_ok(
            "find / -xdev \\( -path /proc -o -path /sys -o -path /dev -o -path /run \
             -o -path /tmp \\) -prune -o -print | LC_ALL=C sort",
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }
}

impl Drop for DeployHost {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.container]);
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("run docker")
}

/// Builds the .deb of the binary under test with the repository's script
/// and returns its path (in `out`).
fn build_deb(out: &Path) -> PathBuf {
    let bin = Path::new(common::BIN);
    // target/debug/reconciler -> `--profile dev`; target/<p>/reconciler -> p.
    let profile = match bin
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str())
    {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("no profile directory in {}", bin.display()),
    };
    let target = bin.parent().and_then(Path::parent).expect("target dir");
    let started = Instant::now();
    let built = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/deb/build"))
        .args(["--profile", profile, "--no-build", "--fast", "--out"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run packaging/deb/build");
    assert!(
        built.status.success(),
        "packaging/deb/build failed ({}):\n{}\n{}",
        built.status,
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let stdout = String::from_utf8_lossy(&built.stdout);
    let deb = PathBuf::from(stdout.lines().last().expect("the .deb's path").trim());
    assert!(
        deb.extension().is_some_and(|e| e == "deb") && deb.is_file(),
        "packaging/deb/build did not name a .deb: {stdout}"
    );
    eprintln!(
        "built {} in {:.1} s",
        deb.display(),
        started.elapsed().as_secs_f64()
    );
    deb
}

/// A bare git repository of definitions: a cluster with fleet-1 (as the
/// deploy host reaches it, `fleet-1:22`) and an app with a web role there.
fn definitions(dir: &Path) -> (PathBuf, String) {
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("clusters")).expect("mkdir");
    std::fs::create_dir_all(work.join("apps")).expect("mkdir");
    std::fs::write(
        work.join("clusters/fleet.yaml"),
        "name: fleet\nphp: [\"8.2\"]\nservers:\n  - { name: fleet-1, address: fleet-1, port: 22, web_server: true }\n",
    )
    .expect("cluster");
    std::fs::write(
        work.join("apps/packaged.yaml"),
        "name: packaged\ncluster: fleet\nrepo: https://git.example.com/packaged.git\nphp: \"8.2\"\n\
         domains: [packaged.test]\nservers:\n  - name: fleet-1\n    web: { max_workers: 2, \
         min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }\n",
    )
    .expect("app");
    let git = |args: &[&str], cwd: &Path| {
        let out = Command::new("git")
            .args(["-c", "user.name=test", "-c", "user.email=test@localhost"])
            .args(["-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(cwd)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    git(&["init", "-q", "-b", "main"], &work);
    git(&["add", "-A"], &work);
    git(&["commit", "-q", "-m", "fleet-1 runs packaged"], &work);
    let head = git(&["rev-parse", "HEAD"], &work);
    let bare = dir.join("definitions.git");
    git(
        &[
            "clone",
            "-q",
            "--bare",
            &work.display().to_string(),
            &bare.display().to_string(),
        ],
        dir,
    );
    (bare, head)
}

/// Whether the host reached the Debian mirror and installed man-db and
/// bash-completion from it.
fn install_man_and_completion(host: &DeployHost) -> bool {
    let out = host.sh(
        "timeout 90 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 180 \
         apt-get install -y -qq --no-install-recommends man-db bash-completion",
    );
    if out.status.success() {
        return true;
    }
    eprintln!(
        "note: the deploy host reaches no Debian mirror ({}), so man-db and bash-completion \
         are not installed there: the page is rendered with this machine's `man -l` and the \
         completion script is sourced directly\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up; Docker; cargo-deb (tests/run installs it)"]
fn the_package_installs_runs_the_service_and_purges_cleanly() {
    let started = Instant::now();
    let fleet = Fleet::load();
    let work = tempfile::tempdir().expect("tempdir");
    let deb = build_deb(&work.path().join("deb"));
    let (bare, head) = definitions(work.path());
    let control = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(&deb)
        .args(["Depends"])
        .output()
        .expect("dpkg-deb");
    let depends = String::from_utf8_lossy(&control.stdout);
    for needed in ["libc6 (>=", "openssh-client", "git", "adduser"] {
        assert!(
            depends.contains(needed),
            "Depends: {depends} lacks {needed}"
        );
    }

    let host = DeployHost::start(&fleet);
    // A deploy host keeps man pages and docs; the fleet's image drops them.
    host.sh_ok("rm -f /etc/dpkg/dpkg.cfg.d/fleet-excludes");
    let mirror = install_man_and_completion(&host);
    host.copy_in(&bare, "/srv/definitions.git");
    let start_unit = work.path().join("start-unit");
    std::fs::write(&start_unit, START_UNIT).expect("start-unit");
    host.copy_in(&start_unit, "/tmp/start-unit");
    let before = host.paths();

    // ---- apt-get install ./reconciler_….deb
    let file_name = deb.file_name().and_then(|n| n.to_str()).expect("name");
    host.copy_in(&deb, &format!("/tmp/{file_name}"));
    host.sh_ok(&format!(
        "cd /tmp && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./{file_name}"
    ));
    let version = host.sh_ok("reconciler --version");
    assert_eq!(
        version.trim(),
        format!("reconciler {}", env!("CARGO_PKG_VERSION"))
    );
    // The user, its state directory, and the unit, not enabled.
    let account = host.sh_ok(&format!(
        "getent passwd reconciler | cut -d: -f6,7; stat -c '%U:%G %a' {STATE_DIR}; \
         ls /etc/systemd/system/multi-user.target.wants/ 2>/dev/null | grep -c reconciler || true; \
         test -f /usr/lib/systemd/system/reconciler-watch.service && echo unit; \
         grep -l '^#compdef reconciler' /usr/share/zsh/vendor-completions/_reconciler; \
         grep -l '^complete -c reconciler' /usr/share/fish/vendor_completions.d/reconciler.fish"
    ));
    assert_eq!(
        account.lines().collect::<Vec<_>>(),
        [
            "/var/lib/reconciler-watch:/usr/sbin/nologin",
            "reconciler:reconciler 700",
            "0",
            "unit",
            "/usr/share/zsh/vendor-completions/_reconciler",
            "/usr/share/fish/vendor_completions.d/reconciler.fish"
        ],
        "user, state directory, enabled links, unit, zsh's and fish's completions"
    );

    // ---- man reconciler-plan
    let page = if mirror {
        host.sh_ok("MANWIDTH=80 man reconciler-plan | cat")
    } else {
        let page = work.path().join("reconciler-plan.1.gz");
        let out = docker(&[
            "cp",
            &format!(
                "{}:/usr/share/man/man1/reconciler-plan.1.gz",
                host.container
            ),
            &page.display().to_string(),
        ]);
        assert!(out.status.success(), "no reconciler-plan page: {out:?}");
        let man = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output()
            .expect("man -l on this machine");
        assert!(man.status.success(), "man -l: {man:?}");
        String::from_utf8_lossy(&man.stdout).into_owned()
    };
    assert!(
        page.contains("reconciler-plan - Show what would change on each server")
            || page.contains("reconciler-plan  -  Show"),
        "{page}"
    );
    assert!(page.contains("--detailed-exitcode"), "{page}");

    // ---- Tab: `reconciler pl<TAB>` and `reconciler plan --det<TAB>`
    let load = if mirror {
        // As in an interactive login shell: bash-completion (from
        // /etc/profile.d) loads the script on first use.
        "_completion_loader reconciler; complete -p reconciler >&2"
    } else {
        "source /usr/share/bash-completion/completions/reconciler"
    };
    let completed = host.sh_ok(&format!(
        "bash -l -i -c '{load}\n\
         COMP_WORDS=(reconciler pl); COMP_CWORD=1; _reconciler reconciler pl reconciler\n\
         echo \"command: ${{COMPREPLY[*]}}\"\n\
         COMP_WORDS=(reconciler plan --det); COMP_CWORD=2; _reconciler reconciler --det plan\n\
         echo \"option: ${{COMPREPLY[*]}}\"'"
    ));
    assert!(
        completed.contains("command: plan\n")
            && completed.contains("option: --detailed-exitcode\n"),
        "{completed}"
    );

    // ---- the service, against the bare repository on the deploy host
    let fleet_1 = fleet.server("fleet-1");
    // Something for it to do, even after an earlier run of this test.
    fleet_1.ssh_ok(&fleet, "rm -f /etc/php/8.2/fpm/pool.d/packaged.conf");
    host.copy_in(&fleet.key, "/etc/reconciler/id_ed25519");
    let host_key = docker(&[
        "exec",
        &fleet_1.container,
        "cut",
        "-d ",
        "-f1,2",
        "/etc/ssh/ssh_host_ed25519_key.pub",
    ]);
    assert!(host_key.status.success(), "{host_key:?}");
    host.sh_ok(&format!(
        "set -e\n\
         chown reconciler:reconciler /etc/reconciler/id_ed25519 && chmod 600 /etc/reconciler/id_ed25519\n\
         echo 'fleet-1 {}' > /etc/reconciler/known_hosts\n\
         chown -R reconciler:reconciler /srv/definitions.git\n\
         sed -i 's|^#RECONCILER_REPO=.*|RECONCILER_REPO=/srv/definitions.git|; \
                 s|^RECONCILER_INTERVAL=.*|RECONCILER_INTERVAL=2s|' /etc/reconciler/watch.env\n\
         grep -qx RECONCILER_REPO=/srv/definitions.git /etc/reconciler/watch.env\n\
         bash /tmp/start-unit /usr/lib/systemd/system/reconciler-watch.service /tmp/watch.log /tmp/watch.pid",
        String::from_utf8_lossy(&host_key.stdout).trim()
    ));
    let status = wait_converged(&host, &head);
    assert_eq!(
        status["hosts"]["fleet-1"]["last_result"], "applied",
        "{status:#}"
    );
    fleet_1.ssh_ok(&fleet, "test -f /etc/php/8.2/fpm/pool.d/packaged.conf");
    let runs_as = host.sh_ok("stat -c %U \"/proc/$(cat /tmp/watch.pid)\"");
    assert_eq!(runs_as.trim(), "reconciler", "the daemon's user");
    // systemctl stop: SIGTERM, then it exits by itself.
    host.sh_ok(
        "pid=$(cat /tmp/watch.pid); kill -TERM \"$pid\"\n\
         for i in $(seq 100); do kill -0 \"$pid\" 2>/dev/null || exit 0; sleep 0.2; done\n\
         echo 'still running 20 s after SIGTERM' >&2; exit 1",
    );

    // ---- apt-get purge: nothing left but the documented state directory
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get purge -y -q reconciler");
    let after = host.paths();
    let left: Vec<&String> = after
        .iter()
        .filter(|p| before.binary_search(p).is_err())
        .filter(|p| {
            // The documented state directory, and apt's and dpkg's own records.
            !(p.starts_with(STATE_DIR)
                || [
                    "/var/lib/dpkg/",
                    "/var/lib/apt/",
                    "/var/cache/",
                    "/var/log/",
                ]
                .iter()
                .any(|bookkeeping| p.starts_with(bookkeeping)))
        })
        .collect();
    assert_eq!(left, Vec::<&String>::new(), "left behind by apt-get purge");
    let gone: Vec<&String> = before
        .iter()
        .filter(|p| after.binary_search(p).is_err())
        .filter(|p| !p.starts_with("/var/cache/") && !p.starts_with("/var/log/"))
        .collect();
    assert_eq!(
        gone,
        Vec::<&String>::new(),
        "removed by install and purge but not theirs"
    );
    let kept = host.sh_ok(&format!(
        "stat -c '%U %a' {STATE_DIR}; test -f {STATE_DIR}/status.json && echo status.json; \
         dpkg-query -W -f '${{db:Status-Abbrev}}' reconciler 2>/dev/null || echo not-installed"
    ));
    assert_eq!(
        kept.lines().collect::<Vec<_>>(),
        ["reconciler 700", "status.json", "not-installed"],
        "kept on purge (README.Debian): the state directory and its owner"
    );
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

/// Waits (at most 60 s, and only while the service runs) until its status
/// says `head` is in force and applied on fleet-1, and `reconciler status`
/// exits 0; returns the status document.
fn wait_converged(host: &DeployHost, head: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = host.sh(
            "setpriv --reuid=reconciler --regid=reconciler --init-groups \
             reconciler status --url http://127.0.0.1:8700 --format json",
        );
        let status: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if let Some(status) = status {
            if out.status.success()
                && status["last_good"]["commit"] == head
                && status["hosts"]["fleet-1"]["last_applied_commit"] == head
            {
                return status;
            }
        }
        let exited = !host
            .sh("kill -0 \"$(cat /tmp/watch.pid)\"")
            .status
            .success();
        if exited || Instant::now() > deadline {
            let log = host.sh("cat /tmp/watch.log");
            let why = if exited {
                "the service exited"
            } else {
                "60 s passed"
            };
            panic!(
                "not converged on {head} ({why}); status ({}): {}\n--- daemon log\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&log.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
