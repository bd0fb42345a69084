//! The real Laravel app (`tests/fixtures/laravel`, Laravel 8 from Debian's
//! packages) released to the fleet as an operator runs it: two web
//! servers, a jobs server with a queue worker and the scheduler, shared
//! `storage` and `.env`, the framework's caches built in each release.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::host;
use common::laravel::{APP, JOBS, Laravel, Trace, WEB};

/// `find` listing of a tree as `git checkout` and a release must agree on:
/// kind, mode and path, link target, and each file's sha256; what the
/// release steps add (the shared links, the framework's caches) left out.
const LISTING: &str = r"find . -mindepth 1 \( -path ./.git -o -path ./storage -o -path ./.env \
  -o -path './bootstrap/cache/*.php' \) -prune -o -printf '%y %m %p -> %l\n' | LC_ALL=C sort
find . \( -path ./.git -o -path ./storage -o -path './bootstrap/cache/*.php' \) -prune \
  -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum";

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_laravel_app_serves_its_live_release_and_runs_its_jobs_and_schedule_there() {
    let laravel = Laravel::new("");
    let sha = laravel.head();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let out = laravel.expect(&["release", APP], 0);
    assert!(
        out.contains(&format!("is live on {}, {}, {JOBS}", WEB[0], WEB[1])),
        "{out}"
    );

    // The page: a Blade view, with the name from .env through the config cache.
    for server in WEB {
        let (status, body) = laravel.get(server, "/");
        assert_eq!(status, 200, "{server}: {body}");
        assert!(body.contains("<h1>Fixture Shop</h1>"), "{body}");
        assert!(
            body.contains(&format!(r#"<span id="release">{sha}</span>"#)),
            "{body}"
        );
        assert!(
            body.contains(&format!(r#"<span id="host">{server}</span>"#)),
            "{body}"
        );
    }

    // The release is the commit, file by file: modes, links, contents, and
    // every file dated by the commit.
    let checkout = tempfile::tempdir().expect("tempdir");
    let cloned = std::process::Command::new("git")
        .args(["clone", "-q"])
        .arg(laravel.app_dir())
        .arg(checkout.path().join("c"))
        .status()
        .expect("git clone");
    assert!(cloned.success());
    let local = std::process::Command::new("bash")
        .args(["-c", LISTING])
        .current_dir(checkout.path().join("c"))
        .output()
        .expect("listing");
    let local = String::from_utf8_lossy(&local.stdout).into_owned();
    let time = std::process::Command::new("git")
        .args(["show", "-s", "--format=%ct", &sha])
        .current_dir(laravel.app_dir())
        .output()
        .expect("git show");
    let time = String::from_utf8_lossy(&time.stdout).trim().to_owned();
    for server in [WEB[0], WEB[1], JOBS] {
        let release = format!("/home/{APP}/releases/{sha}");
        let remote = laravel
            .repo
            .ssh(server, &format!("cd {release}\n{LISTING}"));
        assert!(local.lines().count() > 3000, "{}", local.lines().count());
        assert_eq!(
            remote, local,
            "{server}: the release differs from a checkout"
        );
        let check = laravel.repo.ssh(
            server,
            &format!(
                "cd {release}\nreadlink storage .env\n\
                 find . \\( -path ./storage -o -path ./.env -o -path './bootstrap/cache/*.php' \\) -prune \
                 -o \\( -type f -o -type l \\) -printf '%Ts\\n' | sort -u\n\
                 find -L storage/framework -name '.gitignore' | sort"
            ),
        );
        assert_eq!(
            check,
            format!(
                "/home/{APP}/shared/storage\n/home/{APP}/shared/.env\n{time}\n\
                 storage/framework/cache/.gitignore\nstorage/framework/sessions/.gitignore\n\
                 storage/framework/views/.gitignore\n"
            ),
            "{server}"
        );
    }

    // `queue:restart`, the jobs server's deploy command, ran in this release:
    // Laravel's file cache holds its signal, dated after the release began
    // (`<expiry>i:<time>;` at data/<2>/<2>/<sha1 of the key>).
    let signal = laravel.repo.ssh(
        JOBS,
        &format!(
            "h=$(printf %s illuminate:queue:restart | sha1sum | cut -d' ' -f1)\n\
             cat /home/{APP}/shared/storage/framework/cache/data/${{h:0:2}}/${{h:2:2}}/$h"
        ),
    );
    let signalled: u64 = signal
        .strip_prefix("9999999999i:")
        .and_then(|rest| rest.strip_suffix(';'))
        .and_then(|time| time.parse().ok())
        .unwrap_or_else(|| panic!("no queue:restart signal in the cache: {signal:?}"));
    assert!(
        signalled >= started,
        "queue:restart signalled at {signalled}, before the release began at {started}"
    );

    // A job queued on a web server runs on the jobs server, in the live release.
    let id = format!("job-{}", std::process::id());
    assert_eq!(laravel.get(WEB[0], &format!("/dispatch/{id}")).0, 200);
    let ran = laravel.wait_for(WEB[1], &format!("/job/{id}"), Duration::from_secs(30));
    assert_eq!(
        (ran.host.as_str(), ran.release.as_str()),
        (JOBS, sha.as_str())
    );

    // After a few requests, the release's scripts are in each php-fpm's
    // OPcache, counted by the OPcache facts.
    for server in WEB {
        for _ in 0..5 {
            assert_eq!(laravel.get(server, "/").0, 200);
        }
    }
    let plan = laravel.repo.plan_json();
    for server in WEB {
        let cached = &host(&plan, server)["opcache"]["8.2"]["release_scripts"]
            [format!("/home/{APP}/releases/{sha}")];
        let cached = cached.as_u64().unwrap_or(0);
        assert!(
            cached >= 200,
            "{server}: {cached} scripts of the release cached"
        );
    }

    // The scheduler ticks (cron, every minute) in the live release.
    let tick = laravel.wait_for(WEB[0], "/tick", Duration::from_secs(80));
    assert_eq!(
        (tick.host.as_str(), tick.release.as_str()),
        (JOBS, sha.as_str())
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_laravel_release_under_load_fails_no_request_and_moves_its_workers() {
    let laravel = Arc::new(Laravel::new(""));
    let v1 = laravel.head();
    laravel.expect(&["release", APP], 0);
    let v2 = laravel.commit("v2", &[]);

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (laravel, stop, seen) =
                (Arc::clone(&laravel), Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, body) = laravel.get(WEB[i % 2], "/here");
                    seen.lock().unwrap().push((started, status, body));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let out = laravel.expect(&["release", APP], 0);
    let released = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }

    let seen = seen.lock().unwrap();
    let traces: Vec<(Instant, Result<Trace, String>)> = seen
        .iter()
        .map(|(at, status, body)| {
            let trace = match status {
                200 => serde_json::from_str::<Trace>(body).map_err(|e| format!("{e}: {body}")),
                _ => Err(format!("{status}: {body}")),
            };
            (*at, trace)
        })
        .collect();
    let failed: Vec<&String> = traces
        .iter()
        .filter_map(|(_, t)| t.as_ref().err())
        .collect();
    // A response whose release and config cache come from different commits.
    let mixed = traces
        .iter()
        .filter_map(|(_, t)| t.as_ref().ok())
        .filter(|t| !matches!((t.release.as_str(), t.version.as_str()), (r, "v1") if r == v1))
        .filter(|t| !matches!((t.release.as_str(), t.version.as_str()), (r, "v2") if r == v2))
        .count();
    let stale = traces
        .iter()
        .filter(|(at, _)| *at > released + Duration::from_millis(100))
        .filter(|(_, t)| t.as_ref().is_ok_and(|t| t.release != v2))
        .count();
    eprintln!(
        "load during a Laravel release: {} requests, {} failed, {mixed} mixed, {stale} stale",
        traces.len(),
        failed.len()
    );
    assert!(
        traces.len() > 50,
        "the load ran: {} requests\n{out}",
        traces.len()
    );
    assert_eq!(failed, Vec::<&String>::new());
    assert_eq!((mixed, stale), (0, 0));
    assert!(
        traces
            .iter()
            .any(|(_, t)| t.as_ref().is_ok_and(|t| t.release == v1)),
        "some requests ran before the switch"
    );

    // The workers run the new release: a job queued now runs in it.
    for server in WEB {
        assert_eq!(laravel.live(server), v2);
    }
    let id = format!("after-{}", std::process::id());
    assert_eq!(laravel.get(WEB[1], &format!("/dispatch/{id}")).0, 200);
    let ran = laravel.wait_for(WEB[0], &format!("/job/{id}"), Duration::from_secs(30));
    assert_eq!(
        (ran.host.as_str(), ran.release.as_str()),
        (JOBS, v2.as_str())
    );
}
