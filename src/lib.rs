//! reconciler keeps fleets of PHP servers in the state a definitions
//! repository describes: it gathers facts over SSH, plans the difference, and
//! applies only what differs.

pub mod app;
pub mod apply;
pub mod board;
pub mod cli;
pub mod converge;
pub(crate) mod daemon;
pub mod definitions;
pub mod elastic;
pub(crate) mod env;
pub mod facts;
pub(crate) mod fsutil;
pub mod git;
pub mod layout;
pub(crate) mod logs;
pub mod notify;
pub mod plan;
pub(crate) mod provision;
pub(crate) mod redact;
pub mod release;
pub mod remote;
pub(crate) mod schemas;
pub(crate) mod secret;
pub mod serve;
pub mod shell;
pub(crate) mod text;
pub mod traffic;
pub mod transport;
pub mod units;
pub(crate) mod watch;
pub mod windows;

/// What the user can do about an error: the `hint:` line the CLI prints
/// under it. Every error type with a remedy implements it; the CLI renders
/// errors and hints in one place (`cli::output::report`).
pub trait Hint {
    /// The remedy, when there is one the user can apply.
    fn hint(&self) -> Option<&str>;
}

/// An error and its causes on one line, `outer: cause: root cause`, for
/// reports that show one line per host.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(cause.to_string().trim());
        source = cause.source();
    }
    text
}

/// A duration as people write it: `45s`, `3m20s`, `3h12m`, `2d4h`.
pub fn humantime(duration: std::time::Duration) -> String {
    let total = duration.as_secs() + u64::from(duration.subsec_nanos() >= 500_000_000);
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) if seconds > 0 => format!("{minutes}m{seconds}s"),
        (0, 0, _) => format!("{minutes}m"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h{minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_read_like_people_write_them() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (200, "3m20s"),
            (180, "3m"),
            (3600, "1h"),
            (11_520, "3h12m"),
            (86_400, "1d"),
            (187_200, "2d4h"),
        ];
        for (seconds, text) in cases {
            assert_eq!(super::humantime(Duration::from_secs(seconds)), text);
        }
    }
}
