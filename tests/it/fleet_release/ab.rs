//! `release_layout: ab`: releases written in turn into /home/<app>/a and
//! b, only their changed files rewritten; a rollback goes to the other side.

use super::*;

/// `request.duration` for these tests: a release waits twice that, and
/// OPcache's 2 s `revalidate_freq`, and 1 s, after `current` left a side
/// before it rewrites it. (Below 5 s php-fpm refuses the pool: its slow log
/// threshold is 5 s.)
const DURATION: u32 = 5;

/// The cluster's `request.duration` at `DURATION` and the app `ab`,
/// applied; dropping it puts the cluster back as every test expects.
struct AbLayout<'a>(&'a Repo);

impl<'a> AbLayout<'a> {
    fn set(repo: &'a Repo) -> Self {
        edit(repo, "clusters/fleet.yaml", |yaml| {
            yaml.replacen("duration: 30,", &format!("duration: {DURATION},"), 1)
        });
        edit(repo, "apps/rel.yaml", |yaml| {
            yaml.replacen("servers:\n", "release_layout: ab\nservers:\n", 1)
        });
        repo.run_expect(&["apply", "--yes", "--now"], 0);
        AbLayout(repo)
    }
}

impl Drop for AbLayout<'_> {
    fn drop(&mut self) {
        edit(self.0, "clusters/fleet.yaml", |yaml| {
            yaml.replacen(&format!("duration: {DURATION},"), "duration: 30,", 1)
        });
        let _ = self.0.run(&["apply", "--yes", "--now"]);
    }
}

fn edit(repo: &Repo, path: &str, change: impl Fn(&str) -> String) {
    let path = repo.dir.path().join(path);
    let yaml = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, change(&yaml)).expect("write");
}

/// The inode of each of `paths` (under /home/rel) on `server`.
fn inodes(repo: &Repo, server: &str, paths: &[&str]) -> Vec<String> {
    let list = paths.join(" ");
    repo.ssh(server, &format!("cd /home/rel && stat -c %i {list}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn ab_ten_releases_under_load_rewrite_only_changed_files_and_roll_back_to_the_other_side() {
    let app = AppRepo::new();
    let first = app.commit("r0", &[]);
    let repo = definitions(&app, 3);
    let _ab = AbLayout::set(&repo);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert!(text.contains("is live on fleet-1, fleet-2"), "{text}");
    assert_serves(&repo, "r0");
    // An earlier test may have left a side live: r0 went into the other.
    let first_side = live(&repo, "fleet-1");
    assert!(["a", "b"].contains(&first_side.as_str()), "{first_side}");
    let other_side = if first_side == "a" { "b" } else { "a" };
    let kept: Vec<String> = ["public/index.php", "composer.json", "src/a.php"]
        .iter()
        .map(|path| format!("{first_side}/{path}"))
        .collect();
    let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
    let mut before = Vec::new();
    for server in SERVERS {
        assert_eq!(live(&repo, server), first_side, "{server}");
        // Built in the side (composer, the release commands), shared paths
        // linked, root's record names the release, nothing of it left in
        // releases/.
        let check = repo.ssh(
            server,
            &format!(
                "cd /home/rel/{first_side} && readlink .env storage && \
                 test -f vendor/autoload.php && echo composer-ran\n\
                 cat /var/lib/reconciler/apps/rel/side-{first_side}\n\
                 test -e /home/rel/releases/{first} || echo no-staging"
            ),
        );
        assert_eq!(
            check.lines().collect::<Vec<_>>(),
            [
                "/home/rel/shared/.env",
                "/home/rel/shared/storage",
                "composer-ran",
                first.as_str(),
                "no-staging"
            ],
            "{server}: {check}"
        );
        before.push(inodes(&repo, server, &kept));
    }

    // Load on both servers while ten releases, each changing src/a.php and
    // src/b.php, go live one after another.
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<(Instant, u16, String)>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let server = repo.server(SERVERS[i % 2]).clone();
            let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(400);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let started = Instant::now();
                    let (status, body) = server.http_get("/", "rel.test");
                    seen.lock().unwrap().push((started, status, body));
                }
            })
        })
        .collect();
    let mut switched = Vec::new();
    let mut shas = vec![first];
    for i in 1..=10 {
        let id = format!("r{i}");
        shas.push(app.commit(&id, &[]));
        let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
        switched.push((Instant::now(), id));
        // Warmed in the side before the switch: its changed scripts' old
        // OPcache entries discarded while no request could use them.
        assert!(
            text.contains("OPcache warmed before the switch") && !text.contains("was not warmed"),
            "r{i}: {text}"
        );
        let side = if i % 2 == 1 { other_side } else { &first_side };
        for server in SERVERS {
            assert_eq!(live(&repo, server), side, "{server} after r{i}\n{text}");
        }
        if i == 2 {
            // r0's side again: what did not change is the same file (OPcache
            // keeps its compiled script), what changed is a new one.
            for (server, before) in SERVERS.iter().zip(&before) {
                let after = inodes(&repo, server, &kept);
                assert_eq!(after[..2], before[..2], "{server}: unchanged files kept");
                assert_ne!(after[2], before[2], "{server}: a changed file rewritten");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client");
    }
    let seen = seen.lock().unwrap();
    // Stale: OPcache gave no old script for a rewritten file.
    let (failed, mixed, stale) = super::tally(&seen, &switched);
    eprintln!(
        "load during 10 ab releases: {} requests, {failed} failed, {mixed} mixed, {stale} stale",
        seen.len()
    );
    let odd: Vec<String> = seen
        .iter()
        .filter(|(_, status, body)| {
            let mut ids = body.split(' ');
            *status != 200 || ids.next() != ids.next()
        })
        .map(|(t, status, body)| {
            let offsets: Vec<String> = switched
                .iter()
                .map(|(at, id)| format!("{id}:{:+.3}s", signed_secs(*t, *at)))
                .collect();
            format!("{status} {body:?} started at {}", offsets.join(" "))
        })
        .take(5)
        .collect();
    assert!(seen.len() > 100, "the load ran: {} requests", seen.len());
    assert_eq!((failed, mixed, stale), (0, 0, 0), "{odd:#?}");
    assert_serves(&repo, "r10");

    // Rollback: to the other side, which holds r9, as it was.
    let text = expect(&run(&repo, &app, &["rollback", "rel"]), 0);
    assert_serves(&repo, "r9");
    for server in SERVERS {
        assert_eq!(live(&repo, server), other_side, "{server}\n{text}");
    }
    // r8 was overwritten by r10: no side holds it.
    let text = expect(&run(&repo, &app, &["rollback", "rel", "--to", &shas[8]]), 1);
    assert!(text.contains("no release"), "{text}");
    // The next release goes into r10's side, the one not live.
    app.commit("r11", &[]);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert_serves(&repo, "r11");
    assert_eq!(live(&repo, "fleet-1"), first_side);
}

/// `t - at` in seconds, negative when `t` is earlier.
fn signed_secs(t: Instant, at: Instant) -> f64 {
    match t.checked_duration_since(at) {
        Some(d) => d.as_secs_f64(),
        None => -(at - t).as_secs_f64(),
    }
}
