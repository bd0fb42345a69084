//! `reconciler windows`.

use super::output::say;
use std::process::ExitCode;

use chrono::{DateTime, Utc};

use crate::windows::{WindowState, Windows};

use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    definitions: DefinitionsDir,
    /// How many windows to list per cluster.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=100))]
    count: u16,
    /// List them as of this time instead of now (RFC 3339, such as
    /// 2026-11-22T23:00:00Z).
    #[arg(long, value_name = "TIME")]
    at: Option<DateTime<Utc>>,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let loaded = super::validate::load(&args.definitions)?;
    let now = args.at.unwrap_or_else(Utc::now);
    for cluster in &loaded.definitions.clusters {
        let windows = Windows::from_definitions(&cluster.reload_windows);
        let Some(tz) = windows.windows.first().map(|w| w.timezone) else {
            say!(
                "{}: no reload windows: php-fpm reloads wait for `apply --now`",
                cluster.name
            )?;
            continue;
        };
        let local = |at: DateTime<Utc>| at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z");
        let state = match windows.state(now) {
            WindowState::Open { until } => format!("open until {}", local(until)),
            WindowState::Closed { next: Some(_) } => "closed".into(),
            WindowState::Closed { next: None } => "closed, and no window ever opens".into(),
            WindowState::NoWindows => "no windows".into(),
        };
        say!("{} ({}): {state}", cluster.name, tz.name())?;
        for (start, end) in windows.upcoming(now, usize::from(args.count)) {
            let wait = if start > now {
                format!(
                    "in {}",
                    crate::humantime((start - now).to_std().unwrap_or_default())
                )
            } else {
                "open now".into()
            };
            say!(
                "  {} to {}  ({} to {} UTC)  {wait}",
                local(start),
                local(end),
                start.format("%Y-%m-%d %H:%M"),
                end.format("%H:%M"),
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
