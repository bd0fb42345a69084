//! Window math with fixed clocks.

use std::str::FromStr as _;

use chrono::{NaiveDate, TimeZone as _};

use super::*;

fn window(schedule: &str, minutes: u64, tz: &str) -> Window {
    Window {
        schedule: cron::Schedule::from_str(schedule).expect("schedule"),
        duration: Duration::from_secs(minutes * 60),
        timezone: Tz::from_str(tz).expect("timezone"),
    }
}

fn windows(list: Vec<Window>) -> Windows {
    Windows { windows: list }
}

/// An instant given as UTC wall time.
fn utc(y: i32, m: u32, d: u32, h: u32, min: u32, s: u32) -> DateTime<Utc> {
    Utc.from_utc_datetime(
        &NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, s))
            .expect("date"),
    )
}

#[test]
fn a_nightly_window_opens_closes_and_opens_again() {
    // 03:00 Amsterdam in November is 02:00 UTC.
    let w = windows(vec![window("0 0 3 * * *", 60, "Europe/Amsterdam")]);
    assert_eq!(
        w.state(utc(2026, 11, 22, 1, 59, 0)),
        WindowState::Closed {
            next: Some(utc(2026, 11, 22, 2, 0, 0))
        }
    );
    assert_eq!(
        w.state(utc(2026, 11, 22, 2, 30, 0)),
        WindowState::Open {
            until: utc(2026, 11, 22, 3, 0, 0)
        }
    );
    assert_eq!(
        w.state(utc(2026, 11, 22, 3, 0, 0)),
        WindowState::Closed {
            next: Some(utc(2026, 11, 23, 2, 0, 0))
        }
    );
}

#[test]
fn a_window_runs_across_midnight() {
    let w = windows(vec![window("0 30 23 * * *", 60, "UTC")]);
    assert_eq!(
        w.state(utc(2026, 11, 23, 0, 15, 0)),
        WindowState::Open {
            until: utc(2026, 11, 23, 0, 30, 0)
        }
    );
}

#[test]
fn a_time_the_clock_skips_opens_as_late_as_the_skip() {
    // Amsterdam, 2026-03-29: 02:00 CET becomes 03:00 CEST. 02:30 does not
    // happen; the window opens at 03:30 CEST (01:30 UTC), once.
    let w = windows(vec![window("0 30 2 * * *", 60, "Europe/Amsterdam")]);
    assert_eq!(
        w.state(utc(2026, 3, 29, 1, 0, 0)),
        WindowState::Closed {
            next: Some(utc(2026, 3, 29, 1, 30, 0))
        }
    );
    assert_eq!(
        w.state(utc(2026, 3, 29, 2, 0, 0)),
        WindowState::Open {
            until: utc(2026, 3, 29, 2, 30, 0)
        }
    );
    // The next night it is 02:30 CEST again: 00:30 UTC.
    assert_eq!(
        w.state(utc(2026, 3, 29, 3, 0, 0)),
        WindowState::Closed {
            next: Some(utc(2026, 3, 30, 0, 30, 0))
        }
    );
}

#[test]
fn a_time_the_clock_passes_twice_opens_once() {
    // New York, 2026-11-01: 02:00 EDT becomes 01:00 EST, so 01:30 happens
    // at 05:30 and at 06:30 UTC. The window opens at the first only.
    let w = windows(vec![window("0 30 1 * * *", 30, "America/New_York")]);
    assert_eq!(
        w.state(utc(2026, 11, 1, 5, 40, 0)),
        WindowState::Open {
            until: utc(2026, 11, 1, 6, 0, 0)
        }
    );
    assert_eq!(
        w.state(utc(2026, 11, 1, 6, 40, 0)),
        WindowState::Closed {
            next: Some(utc(2026, 11, 2, 6, 30, 0))
        }
    );
}

#[test]
fn a_window_across_a_change_lasts_its_real_duration() {
    // New York, 2026-03-08: 02:00 EST becomes 03:00 EDT. 01:00 EST for
    // three hours ends at 05:00 EDT, three real hours later.
    let w = windows(vec![window("0 0 1 * * *", 180, "America/New_York")]);
    assert_eq!(
        w.state(utc(2026, 3, 8, 6, 30, 0)),
        WindowState::Open {
            until: utc(2026, 3, 8, 9, 0, 0)
        }
    );
}

#[test]
fn overlapping_windows_are_one() {
    let w = windows(vec![
        window("0 0 3 * * *", 60, "UTC"),
        window("0 30 3 * * *", 60, "UTC"),
    ]);
    assert_eq!(
        w.state(utc(2026, 11, 22, 3, 10, 0)),
        WindowState::Open {
            until: utc(2026, 11, 22, 4, 30, 0)
        }
    );
    assert_eq!(
        w.upcoming(utc(2026, 11, 22, 5, 0, 0), 2),
        [
            (utc(2026, 11, 23, 3, 0, 0), utc(2026, 11, 23, 4, 30, 0)),
            (utc(2026, 11, 24, 3, 0, 0), utc(2026, 11, 24, 4, 30, 0)),
        ]
    );
}

#[test]
fn a_schedule_that_never_fires_never_opens() {
    // February 30th.
    let w = windows(vec![window("0 0 3 30 2 *", 60, "UTC")]);
    assert_eq!(
        w.state(utc(2026, 11, 22, 0, 0, 0)),
        WindowState::Closed { next: None }
    );
    assert_eq!(w.upcoming(utc(2026, 11, 22, 0, 0, 0), 3), []);
}

#[test]
fn a_one_minute_window() {
    let w = windows(vec![window("0 0 3 * * *", 1, "UTC")]);
    assert!(w.state(utc(2026, 11, 22, 3, 0, 30)).is_open());
    assert!(!w.state(utc(2026, 11, 22, 3, 1, 0)).is_open());
    assert!(!w.state(utc(2026, 11, 22, 2, 59, 59)).is_open());
}

#[test]
fn windows_that_never_close_are_open_as_far_as_the_search_goes() {
    let w = windows(vec![window("0 * * * * *", 5, "UTC")]);
    let now = utc(2026, 11, 22, 3, 0, 30);
    match w.state(now) {
        WindowState::Open { until } => assert!(until > now + Span::hours(1)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_windows_is_its_own_state() {
    assert_eq!(
        Windows::default().state(utc(2026, 1, 1, 0, 0, 0)),
        WindowState::NoWindows
    );
}
