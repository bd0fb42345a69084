//! `reconciler top`: every app's requests on every web server, live.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::output::note;
use super::release::connector;
use super::target::SshArgs;
use super::{DefinitionsDir, Failure};
use crate::traffic::{self, AppFigures, Cursor};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these apps (all apps with a web role by default).
    #[arg(value_name = "APP")]
    apps: Vec<String>,
    /// How often to read the servers' access logs and redraw.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = super::watch::duration)]
    interval: Duration,
    /// The first view covers this much of the past (each later one the
    /// time since the view before).
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = super::watch::duration)]
    window: Duration,
    /// Print the first view and exit: 1 when a server could not be read.
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    definitions: DefinitionsDir,
    #[command(flatten)]
    ssh: SshArgs,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let loaded = super::validate::load(&args.definitions)?;
    let definitions = &loaded.definitions;
    if let Some(unknown) = args.apps.iter().find(|a| {
        !definitions
            .apps
            .iter()
            .any(|d| d.name.as_str() == a.as_str())
    }) {
        let known: Vec<String> = definitions
            .apps
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        return Err(Failure::usage(
            format!("no app `{unknown}` in the definitions"),
            Some(&format!("apps: {}", known.join(", "))),
        ));
    }
    let servers = traffic::web_servers(definitions, &args.apps);
    if servers.is_empty() {
        return Err(Failure::usage("no app with a web role to show", None));
    }
    let connector = connector(&args.ssh)?;
    let terminal = std::io::stdout().is_terminal();
    super::run_until_signal(async move {
        let mut cursor = Cursor::default();
        let mut span = args.window;
        loop {
            let started = Instant::now();
            let read = traffic::read(&servers, &connector, &mut cursor, args.window).await;
            let mut out = std::io::stdout().lock();
            if terminal {
                // Clear the screen and go home: one view at a time.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            writeln!(
                out,
                "{}",
                view(&read.figures, span, chrono::Utc::now().format("%H:%M:%S"))
            )?;
            out.flush()?;
            drop(out);
            for (server, why) in &read.failed {
                note!(
                    "{server}: cannot read the access logs: {}",
                    crate::text::visible(why)
                );
            }
            if args.once {
                return Ok(if read.failed.is_empty() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            tokio::time::sleep(args.interval.saturating_sub(started.elapsed())).await;
            span = started.elapsed();
        }
    })
}

/// One view: a line per app and server with its rate, error shares and
/// latency over `span`.
fn view(figures: &[AppFigures], span: Duration, now: impl std::fmt::Display) -> String {
    let seconds = span.as_secs_f64().max(0.001);
    let mut text = format!(
        "reconciler top: {now}, the last {:.0} s\n{:<20} {:<16} {:>9} {:>8} {:>7} {:>7} {:>8} {:>8}\n",
        seconds, "APP", "SERVER", "REQUESTS", "REQ/S", "5XX", "4XX", "P50", "P99"
    );
    for AppFigures {
        server,
        app,
        figures: f,
        ..
    } in figures
    {
        let latency = |q| match f.percentile(q) {
            None => "-".to_owned(),
            Some(s) if s.is_infinite() => ">10 s".to_owned(),
            Some(s) if s < 1.0 => format!("≤{:.0} ms", s * 1000.0),
            Some(s) => format!("≤{s} s"),
        };
        text.push_str(&format!(
            "{:<20} {:<16} {:>9} {:>8.1} {:>6.1}% {:>6.1}% {:>8} {:>8}\n",
            app.as_str(),
            server.as_str(),
            f.requests,
            f.requests as f64 / seconds,
            f.error_ratio() * 100.0,
            f.client_error_ratio() * 100.0,
            latency(0.5),
            latency(0.99)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::{AppName, ServerName};
    use crate::traffic::Figures;

    #[test]
    fn a_view_shows_rates_shares_and_bucket_bounds() {
        let figures = Figures {
            requests: 40,
            errors: 10,
            client_errors: 2,
            buckets: [30, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 2],
            time_ms: 25_000,
        };
        let text = view(
            &[AppFigures {
                server: ServerName::new("web-1"),
                app: AppName::new("shop"),
                figures,
                first: true,
            }],
            Duration::from_secs(10),
            "12:00:00",
        );
        assert_eq!(
            text.lines().nth(2),
            Some(
                "shop                 web-1                   40      4.0   25.0%    5.0%    ≤5 ms    >10 s"
            )
        );
    }
}
