//! Reload windows: when php-fpm may be reloaded, as a pure function of the
//! cluster's windows and a clock value passed in (never read here).
//!
//! A window opens at each time its cron schedule names, in its timezone,
//! and stays open for its duration of elapsed time. Several windows (and
//! overlapping openings of one) are a union. Schedules are evaluated on the
//! local wall clock and each opening is then placed in time:
//!
//! - a local time the clock skips (02:30 on a spring-forward night) opens
//!   as late as the skip: 03:30 after a one-hour jump;
//! - a local time the clock passes twice (01:30 on a fall-back night) opens
//!   once, the first time;
//! - a window that spans a change lasts its duration of real time.
//!
//! This is the "compatible" rule of RFC 9557 / Temporal, the one people
//! expect from a nightly job: it happens once every night.

use std::time::Duration;

use chrono::{DateTime, Duration as Span, LocalResult, NaiveDateTime, Offset as _, TimeZone, Utc};
use chrono_tz::Tz;

use crate::definitions::ReloadWindow;

/// One window, parsed.
#[derive(Debug, Clone)]
pub struct Window {
    /// When the window opens, a cron schedule in `timezone`'s local time.
    pub schedule: cron::Schedule,
    /// How long it stays open once opened.
    pub duration: Duration,
    /// The timezone `schedule` is read in.
    pub timezone: Tz,
}

impl Window {
    /// The window a valid definition describes; `None` for one that did
    /// not validate (validation refuses those).
    pub fn from_definition(window: &ReloadWindow) -> Option<Self> {
        Some(Self {
            schedule: window.schedule.get()?.0.clone(),
            duration: window.duration.get()?.0,
            timezone: window.timezone.get()?.0,
        })
    }

    fn span(&self) -> Span {
        Span::from_std(self.duration).unwrap_or(Span::MAX)
    }

    /// The instant a local wall-clock time happens, by the compatible rule.
    fn place(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.timezone.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
            LocalResult::None => {
                // In a gap: with the offset in force before it, which
                // lands as far past the gap's start as the time was.
                let before = local.checked_sub_signed(Span::hours(6))?;
                let offset = self
                    .timezone
                    .offset_from_local_datetime(&before)
                    .earliest()?;
                Some(Utc.from_utc_datetime(&(local - offset.fix())))
            }
        }
    }

    fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        at.with_timezone(&self.timezone).naive_local()
    }

    /// Openings (start instants) from about `from` on, in order; the local
    /// clock is searched from a few hours earlier so that no opening that
    /// DST moved is missed.
    fn openings_from(&self, from: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let start = self.local(from) - Span::hours(3);
        self.schedule
            .after(&Utc.from_utc_datetime(&start))
            .filter_map(move |naive| self.place(naive.naive_utc()))
            .skip_while(move |at| *at < from)
    }

    /// The latest opening at or before `at` whose window still covers
    /// `at`, as (start, end).
    fn covering(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        let span = self.span();
        let search_from = at.checked_sub_signed(span)?;
        self.openings_from(search_from)
            .take_while(|start| *start <= at)
            .map(|start| {
                (
                    start,
                    start
                        .checked_add_signed(span)
                        .unwrap_or(DateTime::<Utc>::MAX_UTC),
                )
            })
            .filter(|(_, end)| *end > at)
            .last()
    }
}

/// Whether php-fpm may be reloaded now, and if not, when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// The cluster defines no reload windows.
    NoWindows,
    /// A window is open until `until` (as far as the search reaches).
    Open {
        /// When the open window closes.
        until: DateTime<Utc>,
    },
    /// Closed; the next window opens at `next`, or never.
    Closed {
        /// When the next window opens; `None` when none opens within the
        /// search's reach.
        next: Option<DateTime<Utc>>,
    },
}

impl WindowState {
    /// Whether a window is open now.
    pub fn is_open(&self) -> bool {
        matches!(self, WindowState::Open { .. })
    }
}

/// A cluster's reload windows.
#[derive(Debug, Clone, Default)]
pub struct Windows {
    /// The cluster's valid windows, in the definitions' order.
    pub windows: Vec<Window>,
}

impl Windows {
    /// The windows of a cluster file's `reload_windows`, those that did not
    /// validate left out.
    pub fn from_definitions(windows: &[ReloadWindow]) -> Self {
        Self {
            windows: windows.iter().filter_map(Window::from_definition).collect(),
        }
    }

    /// Whether the cluster defines no (valid) window.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }

    /// Open now (and until when), or when the next one opens.
    pub fn state(&self, now: DateTime<Utc>) -> WindowState {
        if self.windows.is_empty() {
            return WindowState::NoWindows;
        }
        match self.open_until(now) {
            Some(until) => WindowState::Open { until },
            None => WindowState::Closed {
                next: self.next_opening(now),
            },
        }
    }

    /// When the union of windows that covers `at` ends.
    fn open_until(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut until = self
            .windows
            .iter()
            .filter_map(|w| w.covering(at))
            .map(|(_, end)| end)
            .max()?;
        // Openings before `until` extend it; bounded, for windows that
        // follow each other without a gap forever.
        for _ in 0..64 {
            let extended = self
                .windows
                .iter()
                .filter_map(|w| w.covering(until).map(|(_, end)| end))
                .max()
                .filter(|end| *end > until);
            match extended {
                Some(end) => until = end,
                None => break,
            }
        }
        Some(until)
    }

    /// The first opening after `now`, or `None` when the schedules never
    /// fire again (the cron crate's calendar ends in 2100).
    pub fn next_opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.windows
            .iter()
            .filter_map(|w| w.openings_from(now).find(|at| *at > now))
            .min()
    }

    /// The next `count` windows from `now` on (a window open now first), as
    /// (start, end) of each union, for `reconciler windows`.
    pub fn upcoming(
        &self,
        now: DateTime<Utc>,
        count: usize,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut out = Vec::new();
        let mut cursor = now;
        if let Some(until) = self.open_until(now) {
            let start = self
                .windows
                .iter()
                .filter_map(|w| w.covering(now).map(|(start, _)| start))
                .min()
                .unwrap_or(now);
            out.push((start, until));
            cursor = until;
        }
        while out.len() < count {
            let Some(start) = self.next_opening(cursor) else {
                break;
            };
            let until = self.open_until(start).unwrap_or(start);
            out.push((start, until));
            cursor = until.max(start + Span::seconds(1));
        }
        out
    }
}

#[cfg(test)]
mod tests;
