//! `reconciler logs`: an app's logs from every server, merged by time.

use super::output::note;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use chrono::NaiveDateTime;

use crate::definitions::ServerName;
use crate::logs::{self, Cursor};

use super::release::{connector, target};
use super::target::SshArgs;
use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The app whose logs to show.
    app: String,
    /// Only this server; repeat for more.
    #[arg(long = "server", value_name = "NAME")]
    servers: Vec<String>,
    /// Lines to show from the end of each log first.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    lines: u32,
    /// Only lines from this time on: an age such as 10m or 2h, or a time
    /// such as 2026-11-22T14:00:00 (the servers' clocks, taken as UTC).
    #[arg(long, value_name = "T", value_parser = since)]
    since: Option<NaiveDateTime>,
    /// Keep showing new lines, from every server, until interrupted.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print the lines as the servers hold them. Without it, control
    /// characters (terminal escape codes an app may write) are shown as
    /// `\u{1b}` and the like, never sent to the terminal.
    #[arg(long)]
    raw: bool,
    #[command(flatten)]
    definitions: DefinitionsDir,
    #[command(flatten)]
    ssh: SshArgs,
}

fn since(text: &str) -> Result<NaiveDateTime, String> {
    if let Ok(time) = NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), "%Y-%m-%dT%H:%M:%S")
    {
        return Ok(time);
    }
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected 10m, 2h, 1d or 2026-11-22T14:00:00"))?;
    let age = match unit {
        "s" => chrono::Duration::seconds(number),
        "m" => chrono::Duration::minutes(number),
        "h" => chrono::Duration::hours(number),
        "d" => chrono::Duration::days(number),
        _ => return Err(format!("`{text}`: the unit is s, m, h or d")),
    };
    Ok(chrono::Utc::now().naive_utc() - age)
}

/// How lines are printed.
struct Printing {
    since: Option<NaiveDateTime>,
    width: usize,
    raw: bool,
}

impl Printing {
    fn lines(&self, read: &logs::Read) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        for line in &read.lines {
            if self
                .since
                .is_some_and(|since| line.time.is_none_or(|t| t < since))
            {
                continue;
            }
            let source = format!("{} {}", line.server, crate::text::one_line(&line.source));
            let width = self.width;
            if self.raw {
                writeln!(out, "{source:<width$} | {}", line.text)?;
            } else {
                writeln!(
                    out,
                    "{source:<width$} | {}",
                    crate::text::visible(&line.text)
                )?;
            }
        }
        out.flush()?;
        for (server, source) in &read.cut {
            note!(
                "{server} {}: only the last {} read (a read takes at most that much of a log)",
                crate::text::one_line(source),
                crate::release::source::human(logs::LOG_LIMIT)
            );
        }
        Ok(())
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let mut target = target(&args.definitions, &args.app)?;
    if !args.servers.is_empty() {
        let unknown: Vec<&String> = args
            .servers
            .iter()
            .filter(|name| {
                !target
                    .servers
                    .iter()
                    .any(|(s, _)| s.name.as_str() == name.as_str())
            })
            .collect();
        if let Some(name) = unknown.first() {
            return Err(Failure::usage(
                format!("{} does not run on `{name}`", args.app),
                None,
            ));
        }
        target
            .servers
            .retain(|(s, _)| args.servers.iter().any(|n| n == s.name.as_str()));
    }
    let connector = connector(&args.ssh)?;
    let width = target
        .servers
        .iter()
        .map(|(s, _)| s.name.as_str().len())
        .max()
        .unwrap_or(0)
        + 18;
    let printing = Printing {
        since: args.since,
        width,
        raw: args.raw,
    };
    super::run_until_signal(async move {
        let mut cursor = Cursor::default();
        let read = logs::read(&target, &connector, &mut cursor, args.lines as usize).await;
        printing.lines(&read)?;
        let failed = read.failed;
        for (server, error) in &failed {
            note!(
                "{server}: cannot read the logs: {}",
                crate::text::visible(error)
            );
        }
        if !args.follow {
            return Ok(if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        let mut down: Vec<ServerName> = failed.into_iter().map(|(s, _)| s).collect();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let read = logs::read(&target, &connector, &mut cursor, args.lines as usize).await;
            printing.lines(&read)?;
            let failed = read.failed;
            for (server, error) in &failed {
                if !down.contains(server) {
                    note!(
                        "{server}: lost ({}); retrying every second",
                        crate::text::visible(error)
                    );
                }
            }
            for server in &down {
                if !failed.iter().any(|(s, _)| s == server) {
                    note!("{server}: back");
                }
            }
            down = failed.into_iter().map(|(s, _)| s).collect();
        }
    })
}
