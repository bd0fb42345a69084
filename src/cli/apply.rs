//! `reconciler apply`.

use super::output::note;
use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Duration;

use anstyle::{AnsiColor, Style};

use crate::apply::{ApplyResult, HostReport, Outcome};
use crate::converge;
use crate::plan::{HostPlan, ReloadWhen, render};

use super::Failure;
use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Apply without asking for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Seconds to wait for another apply (or the watch daemon) to finish on
    /// a host before giving up on it, naming who holds the host.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=3600))]
    lock_wait: u64,
    /// How to print: text (the plan, then a line per host), or one JSON
    /// document with the plan and each host's result at the end
    /// (schemas/apply.schema.json; needs --yes).
    #[arg(long, value_enum, default_value_t = super::plan::Format::Text)]
    format: super::plan::Format,
}

pub fn run(args: Args, color: anstream::ColorChoice) -> Result<ExitCode, Failure> {
    let json = args.format == super::plan::Format::Json;
    if json && !args.yes {
        return Err(Failure::usage(
            "`--format json` applies without showing the plan first",
            Some("pass --yes as well (or run `plan --format json` first to review it)"),
        ));
    }
    let loaded = super::validate::load(&args.target.definitions)?;
    let options = args
        .target
        .reconcile_options(&loaded, Duration::from_secs(args.lock_wait));
    let code = super::run_until_signal(async {
        let surveyed = args.target.survey(&options, &loaded).await?;
        let plan = converge::plan_of(&surveyed);
        let out = Mutex::new(anstream::AutoStream::new(io::stdout(), color));
        if json {
            let results = converge::apply_all(
                &surveyed,
                &options,
                usize::from(args.target.parallel),
                &|_| {},
            )
            .await;
            let failed = results.iter().any(|r| !r.succeeded());
            let result = ApplyResult {
                format_version: crate::plan::FORMAT_VERSION,
                plan,
                results,
            };
            let mut text = serde_json::to_string_pretty(&result)?;
            text.push('\n');
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            out.write_all(text.as_bytes())?;
            out.flush()?;
            return Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
        {
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            render::text(&plan, &mut *out)?;
            out.flush()?;
        }
        let to_apply = plan.hosts.iter().filter(|h| h.needs_apply()).count();
        if to_apply == 0 {
            if !plan.has_errors() {
                return Ok(ExitCode::SUCCESS);
            }
            let failed: Vec<&str> = plan
                .hosts
                .iter()
                .filter(|h| h.error.is_some())
                .map(|h| h.server.as_str())
                .collect();
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            writeln!(
                out,
                "Apply: 0 applied, {} unchanged, {} failed ({})",
                plan.hosts.len() - failed.len(),
                failed.len(),
                failed.join(", ")
            )?;
            return Ok(ExitCode::FAILURE);
        }
        if !args.yes {
            let confirmed = tokio::task::spawn_blocking(move || confirm(to_apply)).await??;
            if !confirmed {
                note!("error: not applied");
                return Ok(ExitCode::FAILURE);
            }
        }
        let progress = |report: &HostReport| {
            let host = plan.hosts.iter().find(|h| h.server == report.server);
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = write_report(report, host, &mut *out);
            let _ = out.flush();
        };
        let reports = converge::apply_all(
            &surveyed,
            &options,
            usize::from(args.target.parallel),
            &progress,
        )
        .await;
        let failed: Vec<&str> = reports
            .iter()
            .filter(|r| !r.succeeded())
            .map(|r| r.server.as_str())
            .collect();
        let mut out = out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = |f: fn(&Outcome) -> bool| reports.iter().filter(|r| f(&r.outcome)).count();
        let applied = count(|o| matches!(o, Outcome::Applied { .. }));
        let unchanged = count(|o| matches!(o, Outcome::Unchanged));
        write!(
            out,
            "Apply: {applied} applied, {unchanged} unchanged, {} failed",
            failed.len()
        )?;
        if !failed.is_empty() {
            write!(out, " ({})", failed.join(", "))?;
        }
        writeln!(out)?;
        Ok(if failed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })?;
    // Pinned revisions go live once the configuration is in place, when
    // the apply covered whole apps.
    if code == ExitCode::SUCCESS && !json && args.target.servers.is_empty() {
        return super::release::release_pins(
            &loaded.definitions,
            &args.target.apps,
            &args.target.ssh,
        );
    }
    Ok(code)
}

fn confirm(hosts: usize) -> io::Result<bool> {
    if !io::stdin().is_terminal() {
        note!("error: apply asks for confirmation, and stdin is not a terminal");
        note!("  hint: pass --yes to apply without asking");
        return Ok(false);
    }
    eprint!("Apply these changes to {hosts} server(s)? [y/N] ");
    io::stderr().flush()?;
    let mut answer = String::new();
    io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

const RED: Style = AnsiColor::Red.on_default();
const GREEN: Style = AnsiColor::Green.on_default();

fn write_report(
    report: &HostReport,
    plan: Option<&HostPlan>,
    out: &mut dyn io::Write,
) -> io::Result<()> {
    let server = &report.server;
    match &report.outcome {
        Outcome::Unchanged => writeln!(out, "{server}: unchanged"),
        Outcome::Applied {
            changes,
            reloaded,
            deferred,
            reload_failures,
            unanswered,
            programs,
        } => {
            let mut line = format!(
                "{GREEN}{server}{GREEN:#}: applied {}",
                crate::definitions::plural(*changes, "change")
            );
            if !reloaded.is_empty() {
                // A supervisor reload says which programs it updated: the
                // app's others kept running.
                let reloaded: Vec<String> = reloaded
                    .iter()
                    .map(|label| match programs.get(label) {
                        Some(names) if label.starts_with("workers:") => {
                            format!("{label} (restarted {})", names.join(", "))
                        }
                        Some(names) if names.is_empty() => {
                            format!("{label} (no program changed)")
                        }
                        Some(names) => format!("{label} (updated {})", names.join(", ")),
                        None => label.clone(),
                    })
                    .collect();
                line.push_str(&format!("; reloaded {}", reloaded.join(", ")));
            }
            for label in deferred {
                let reload = plan.and_then(|p| p.reloads.iter().find(|r| &r.label == label));
                let until = match reload.map(|r| r.when) {
                    Some(ReloadWhen::Manual) => "`apply --now` (the cluster has no reload windows)",
                    _ => "the next reload window",
                };
                line.push_str(&format!("; {label} is pending until {until}"));
            }
            writeln!(out, "{line}")?;
            for failure in reload_failures {
                writeln!(
                    out,
                    "{RED}{server}{RED:#}: reloading {} failed:",
                    failure.step
                )?;
                indented(&failure.output, out)?;
            }
            for failure in unanswered {
                writeln!(
                    out,
                    "{RED}{server}{RED:#}: {} did not answer after php-fpm reloaded: {}",
                    failure.step,
                    crate::text::one_line(&failure.output)
                )?;
            }
            Ok(())
        }
        Outcome::Invalid { failures } => {
            for failure in failures {
                writeln!(
                    out,
                    "{RED}{server}{RED:#}: {} refused the new configuration; \
                     the previous files are back and nothing was reloaded:",
                    failure.step
                )?;
                indented(&failure.output, out)?;
            }
            Ok(())
        }
        Outcome::Failed { message, output } => {
            writeln!(
                out,
                "{RED}{server}{RED:#}: error: {}",
                crate::text::one_line(message)
            )?;
            indented(output, out)
        }
        Outcome::Locked { holder } => {
            writeln!(
                out,
                "{RED}{server}{RED:#}: error: another apply holds this host: {}; nothing was changed",
                crate::text::one_line(holder)
            )?;
            writeln!(out, "  hint: wait for it, or pass --lock-wait SECONDS")
        }
        Outcome::Stale { paths } => {
            writeln!(
                out,
                "{RED}{server}{RED:#}: error: the server changed since the plan; nothing was changed:"
            )?;
            indented(&paths.join("\n"), out)?;
            writeln!(out, "  hint: run the plan again")
        }
    }
}

/// A server's output, indented, with control characters made visible.
fn indented(text: &str, out: &mut dyn io::Write) -> io::Result<()> {
    for line in text.lines() {
        writeln!(out, "    {}", crate::text::visible(line))?;
    }
    Ok(())
}
