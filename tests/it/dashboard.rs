//! The daemon's dashboard (`/`) in a real browser: headless Chromium loads
//! it from a loopback port, runs its script under the page's
//! Content-Security-Policy, and the test reads the DOM it ends with.
//! The board is filled as the daemon fills it (status updates, release
//! log lines an app check read), so the journal behind the definitions'
//! commits, the events and the trends follows it the same way.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use reconciler::board::{AppStatus, Board, CommitRecord, HostStatus, PendingReload, Rejected};
use reconciler::release::{LogEntry, LogResult, Sha};

const IN_FORCE: &str = "0c0ffee0c0ffee0c0ffee0c0ffee0c0ffee0c0ff";
const REJECTED: &str = "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d";
const GOOD_RELEASE: &str = "4ba7c0ffee124ba7c0ffee124ba7c0ffee124ba7";
const BAD_RELEASE: &str = "badbadbadbadbadbadbadbadbadbadbadbadbad0";

fn opcache(used: u64, wasted: u64, free: u64) -> BTreeMap<String, serde_json::Value> {
    BTreeMap::from([(
        "8.2".into(),
        serde_json::json!({"memory_used": used << 20, "memory_wasted": wasted << 20, "memory_free": free << 20}),
    )])
}

fn log_line(sha: &str, minutes_ago: i64, result: LogResult, who: &str) -> LogEntry {
    let time = chrono::Utc::now() - chrono::Duration::minutes(minutes_ago);
    LogEntry {
        sha: Sha::parse(sha).expect("sha"),
        time: time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        trigger: "webhook".into(),
        result,
        duration_ms: 12_345,
        who: who.into(),
        previous: None,
        reason: None,
        warmed: None,
    }
}

/// A board with two servers (one failing, with a hostile message), an
/// app whose servers run different releases with a release history (one
/// rolled back by its guard), a commit in force and a rejected one.
fn board() -> Arc<Board> {
    let board = Arc::new(Board::new("/srv/defs.git", "main", None));
    let now = chrono::Utc::now();
    let earlier = now - chrono::Duration::hours(1);
    board.update(earlier, |status| {
        status.head = Some(IN_FORCE.into());
        status.last_good = Some(CommitRecord {
            commit: IN_FORCE.into(),
            at: earlier,
        });
        // An earlier OPcache read of web-1: the trend's first point.
        status.hosts.insert(
            "web-1".into(),
            HostStatus {
                cluster: "production".into(),
                known_at: Some(earlier),
                opcache: opcache(32, 0, 96),
                ..HostStatus::default()
            },
        );
    });
    board.update(now, |status| {
        status.head = Some(REJECTED.into());
        status.last_rejected = Some(Rejected {
            commit: REJECTED.into(),
            at: now,
            errors: vec!["apps/shop.yaml:5:7: unknown field `phpp`".into()],
        });
        status.hosts.insert(
            "web-1".into(),
            HostStatus {
                cluster: "production".into(),
                last_result: Some("applied".into()),
                last_message: Some("3 changes".into()),
                last_at: Some(now),
                last_applied_commit: Some(IN_FORCE.into()),
                known_at: Some(now),
                pending_reloads: vec![PendingReload {
                    label: "php8.2-fpm".into(),
                    next_window: Some(now + chrono::Duration::hours(2)),
                }],
                opcache: opcache(96, 8, 24),
                ..HostStatus::default()
            },
        );
        status.hosts.insert(
            "web-2".into(),
            HostStatus {
                cluster: "production".into(),
                last_result: Some("failed".into()),
                last_message: Some("<img src=x onerror=\"document.title='owned'\">".into()),
                last_at: Some(now - chrono::Duration::minutes(5)),
                failures: 3,
                ..HostStatus::default()
            },
        );
        status.apps.insert(
            "shop".into(),
            AppStatus {
                intended: Some("4ba7c0ffee12".into()),
                live: BTreeMap::from([
                    ("web-1".into(), Some("4ba7c0ffee12".into())),
                    ("web-2".into(), Some("0ld0ld0ld0l".into())),
                    ("web-3".into(), Some("4ba7c0ffee12".into())),
                ]),
                state: "diverged".into(),
                message: "web-2 runs 0ld0ld0ld0l".into(),
                ..AppStatus::default()
            },
        );
    });
    // What the app check read of shop's release logs: a release that
    // went live, then one its guard rolled back (the reason quoting what
    // the app printed), and a failed one by a hostile client name.
    let mut rolled_back = log_line(BAD_RELEASE, 10, LogResult::RolledBack, "reconciler watch");
    rolled_back.trigger = "definitions".into();
    rolled_back.reason = Some("5xx 14.2% over 180 requests: <b>Fatal</b>".into());
    board.release_logs(
        "shop",
        "web-1",
        &[
            log_line(GOOD_RELEASE, 30, LogResult::Live, "alice@laptop (pid 7)"),
            rolled_back,
        ],
        now,
    );
    board.release_logs(
        "shop",
        "web-2",
        &[log_line(
            BAD_RELEASE,
            20,
            LogResult::Failed,
            "<script>document.title='owned'</script>",
        )],
        now,
    );
    // Three traffic reads of shop on web-1: the last with 5xx.
    let read = |first, requests, errors| reconciler::traffic::Read {
        figures: vec![reconciler::traffic::AppFigures {
            server: reconciler::definitions::ServerName::new("web-1"),
            app: reconciler::definitions::AppName::new("shop"),
            figures: reconciler::traffic::Figures {
                requests,
                errors,
                client_errors: 0,
                buckets: [requests, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                time_ms: requests * 3,
            },
            first,
        }],
        failed: Vec::new(),
    };
    for (first, requests, errors) in [
        (true, 0, 0),
        (false, 120, 0),
        (false, 150, 0),
        (false, 90, 27),
    ] {
        board.traffic(&read(first, requests, errors), 15.0, now);
    }
    board
}

/// Headless Chromium on `path` from `addr`, running the page's script
/// for 12 s of virtual time, then doing what `output` says (`--dump-dom`,
/// `--screenshot=FILE`).
fn chromium(addr: std::net::SocketAddr, path: &str, output: &[&str]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile");
    // Everything but loopback goes to a closed loopback port: the browser
    // reaches nothing else.
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=12000",
        ])
        .args(output)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("chromium (Debian's package `chromium`; tests/run installs it)")
}

/// The DOM Chromium ends with on `path` (see [`chromium`]).
fn rendered(addr: std::net::SocketAddr, path: &str) -> String {
    let out = chromium(addr, path, &["--dump-dom"]);
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("<main"),
        "chromium: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom.into_owned()
}

#[test]
fn the_dashboard_shows_the_fleet_in_a_real_browser_and_its_script_refreshes_it() {
    let server = crate::serve::start_with(board());
    let dom = rendered(server.addr, "/");

    // The script ran under the page's policy and swapped in a fresh board.
    assert!(dom.contains(r#"data-live="1""#), "{dom}");
    assert!(dom.contains("data-refreshed="), "{dom}");
    // Every server and app, with what is wrong.
    for text in [
        r#"data-server="web-1""#,
        r#"data-server="web-2""#,
        r#"data-app="shop""#,
        "apps/shop.yaml:5:7: unknown field `phpp`",
        "0ld0ld0ld0l</code> (differs)",
        "8.2: 75% used, 6% wasted",
        r#"data-traffic="shop""#,
        "90 requests, 27 5xx",
        r#"class="spark""#,
        // The 5xx line ends at the right edge, at 27 of a 150 peak.
        "240.0,33.2",
    ] {
        assert!(dom.contains(text), "{text}:\n{dom}");
    }
    // The countdown to the window, written by the script.
    assert!(
        dom.contains(">in 1h 59m") || dom.contains(">in 2h 0m"),
        "{dom}"
    );
    // A hostile message is text, never markup.
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains("&lt;img src=x"), "{dom}");

    // Definitions: the recent commits with their outcome.
    let definitions = section(&dom, "definitions");
    for text in [
        r#"data-commit="0c0ffee0c0ff""#,
        "<b>in force</b>, applied on 1 of 2 servers",
        r#"data-commit="1a2b3c4d5e6f""#,
        "<b>rejected</b>",
    ] {
        assert!(definitions.contains(text), "{text}:\n{definitions}");
    }
    // Apps: the release history, with trigger, who, duration, result and
    // a rolled-back release's reason (escaped).
    let apps = section(&dom, "apps");
    for text in [
        r#"data-releases="shop""#,
        "alice@laptop (pid 7)",
        "webhook",
        "12.3 s",
        r#"data-result="rolled-back""#,
        "5xx 14.2% over 180 requests: &lt;b&gt;Fatal&lt;/b&gt;",
        r#"data-result="failed""#,
        "&lt;script&gt;document.title",
    ] {
        assert!(apps.contains(text), "{text}:\n{apps}");
    }
    assert!(!dom.contains("<b>Fatal"), "{dom}");
    assert!(!dom.contains("<script>document"), "{dom}");
    // Events: one feed, newest first.
    let events = section(&dom, "events");
    let at = |kind: &str| {
        events
            .find(&format!(r#"data-kind="{kind}""#))
            .unwrap_or_else(|| panic!("no {kind} event:\n{events}"))
    };
    assert!(at("rejected") < at("rolled-back"), "{events}");
    assert!(at("rolled-back") < at("release"), "{events}");
    assert!(at("apply") < at("commit"), "{events}");
    at("failed");
    // OPcache's trend on web-1: 25% used, then 75%, across the chart.
    assert!(
        dom.contains(r#"<polyline class="used" points="0.0,15.2 120.0,5.8">"#),
        "{dom}"
    );
    assert!(
        dom.contains(r#"class="trend""#)
            && dom.contains("PHP 8.2 OPcache used 25% to 75% over 2 reads"),
        "{dom}"
    );

    // The page as a person sees it, kept as a test artefact (the README's
    // picture is one).
    let png = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    let shot = format!("--screenshot={}", png.display());
    let out = chromium(server.addr, "/", &["--window-size=1280,2000", &shot]);
    let size = std::fs::metadata(&png).map_or(0, |m| m.len());
    assert!(
        out.status.success() && size > 10_000,
        "no screenshot ({size} bytes): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("screenshot: {}", png.display());
}

/// The HTML of `<section id="{id}">`.
fn section<'a>(dom: &'a str, id: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"<section id="{id}""#))
        .unwrap_or_else(|| panic!("no section {id}:\n{dom}"));
    let end = dom[start..]
        .find("</section>")
        .map_or(dom.len(), |e| start + e);
    &dom[start..end]
}

#[test]
fn the_events_feed_filters_by_app_and_server_and_its_refresh_keeps_the_filter() {
    let server = crate::serve::start_with(board());

    let dom = rendered(server.addr, "/?server=web-2");
    assert!(dom.contains("data-refreshed="), "not refreshed:\n{dom}");
    let events = section(&dom, "events");
    assert!(events.contains("server <b>web-2</b>"), "{events}");
    assert!(events.contains("&lt;script&gt;document.title"), "{events}");
    assert!(events.contains(r#"data-kind="failed""#), "{events}");
    assert!(
        !events.contains("alice@laptop"),
        "web-1's release:\n{events}"
    );
    assert!(!events.contains(r#"data-kind="rejected""#), "{events}");
    // Each event links to its app's and its server's feed.
    assert!(events.contains(r#"href="/?app=shop#events""#), "{events}");

    let dom = rendered(server.addr, "/?app=shop&server=web-1");
    let events = section(&dom, "events");
    assert!(events.contains("alice@laptop (pid 7)"), "{events}");
    assert!(!events.contains("document.title"), "web-2's:\n{events}");
    assert!(
        !events.contains(r#"data-kind="apply""#),
        "no app:\n{events}"
    );

    // A filter is text too.
    let dom = rendered(server.addr, "/?app=%3Cscript%3Ealert(1)%3C/script%3E");
    let events = section(&dom, "events");
    assert!(events.contains("&lt;script&gt;alert(1)"), "{events}");
    assert!(events.contains("No event"), "{events}");
}

/// The real daemon (no servers reached: its one server's port is closed)
/// puts a commit that validates, then one that does not, on the board the
/// dashboard shows: both listed with their outcome, both in the feed.
#[test]
fn a_real_daemons_dashboard_lists_a_commit_in_force_and_a_rejected_one() {
    use crate::cli::git;
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("clusters")).expect("mkdir");
    std::fs::create_dir_all(work.join("apps")).expect("mkdir");
    std::fs::write(
        work.join("clusters/fleet.yaml"),
        "name: fleet\nphp: [\"8.2\"]\nservers:\n  - { name: web-1, address: 127.0.0.1, port: 9, web_server: true }\n",
    )
    .expect("cluster");
    let app = "name: shop\ncluster: fleet\nrepo: https://git.example.com/shop.git\nphp: \"8.2\"\n\
               domains: [shop.test]\nservers:\n  - name: web-1\n    web: { max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }\n";
    std::fs::write(work.join("apps/shop.yaml"), app).expect("app");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "shop on web-1"]);
    let bare = dir.path().join("definitions.git");
    git(
        dir.path(),
        &["clone", "-q", "--bare", "work", "definitions.git"],
    );
    let state = dir.path().join("state");
    let daemon = crate::common::daemon::Daemon::start(
        &[
            "watch",
            "--repo",
            bare.to_str().expect("path"),
            "--state-dir",
            state.to_str().expect("path"),
            "--interval",
            "1s",
        ],
        None,
        "/v1/status",
        &dir.path().join("watch.log"),
    );
    let wait_for = |key: &str| {
        let started = std::time::Instant::now();
        loop {
            let status = daemon.get("/v1/status").map(|r| r.body).unwrap_or_default();
            if status.contains(key) {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no {key} after 30 s: {status}\n{}",
                daemon.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    };
    wait_for("\"last_good\"");
    // A commit that does not validate.
    std::fs::write(
        work.join("apps/shop.yaml"),
        app.replace("php: \"8.2\"", "phpp: \"8.2\""),
    )
    .expect("app");
    git(&work, &["commit", "-q", "-am", "a typo"]);
    git(&work, &["push", "-q", bare.to_str().expect("path"), "main"]);
    wait_for("\"last_rejected\"");

    let dom = rendered(daemon.addr, "/");
    let definitions = section(&dom, "definitions");
    assert!(
        definitions.contains("<b>in force</b>, applied on 0 of 1 servers")
            && definitions.contains("<b>rejected</b>")
            && definitions.contains("`phpp`"),
        "{definitions}"
    );
    let events = section(&dom, "events");
    assert!(
        events.contains(r#"data-kind="commit""#) && events.contains(r#"data-kind="rejected""#),
        "{events}"
    );
}
