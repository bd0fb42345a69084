//! The daemon's dashboard (`/`) in a real browser: headless Chromium loads
//! it from a loopback port, runs its script under the page's
//! Content-Security-Policy, and the test reads the DOM it ends with.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use reconciler::board::{AppStatus, Board, HostStatus, PendingReload, Rejected};

/// A board with two servers (one failing, with a hostile message), an
/// app whose servers run different releases, and a rejected commit.
fn board() -> Arc<Board> {
    let board = Arc::new(Board::new("/srv/defs.git", "main", None));
    let now = chrono::Utc::now();
    board.update(now, |status| {
        status.head = Some("1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d".into());
        status.last_rejected = Some(Rejected {
            commit: "1a2b3c4d5e6f7a8b9c0d1a2b3c4d5e6f7a8b9c0d".into(),
            at: now,
            errors: vec!["apps/shop.yaml:5:7: unknown field `phpp`".into()],
        });
        status.hosts.insert(
            "web-1".into(),
            HostStatus {
                cluster: "production".into(),
                last_result: Some("applied".into()),
                last_at: Some(now),
                pending_reloads: vec![PendingReload {
                    label: "php8.2-fpm".into(),
                    next_window: Some(now + chrono::Duration::hours(2)),
                }],
                opcache: BTreeMap::from([(
                    "8.2".into(),
                    serde_json::json!({"memory_used": 96 << 20, "memory_wasted": 8 << 20, "memory_free": 24 << 20}),
                )]),
                ..HostStatus::default()
            },
        );
        status.hosts.insert(
            "web-2".into(),
            HostStatus {
                cluster: "production".into(),
                last_result: Some("failed".into()),
                last_message: Some("<img src=x onerror=\"document.title='owned'\">".into()),
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

#[test]
fn the_dashboard_shows_the_fleet_in_a_real_browser_and_its_script_refreshes_it() {
    let server = crate::serve::start_with(board());
    let addr = server.addr;

    let profile = tempfile::tempdir().expect("profile");
    // Everything but loopback goes to a closed loopback port: the browser
    // reaches nothing else.
    let out = Command::new("chromium")
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
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}/"))
        .output()
        .expect("chromium (Debian's package `chromium`; tests/run installs it)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && dom.contains("<main"),
        "chromium: {}\n{dom}",
        String::from_utf8_lossy(&out.stderr)
    );

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
}
