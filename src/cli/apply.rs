//! `reconciler apply`.

use std::io::{self, BufRead as _, IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::sync::Mutex;

use anstyle::{AnsiColor, Style};

use crate::apply::{HostReport, Outcome};
use crate::converge;
use crate::plan::render;

use super::target::TargetArgs;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Apply without asking for confirmation (needed when stdin is not a terminal).
    #[arg(long, short = 'y')]
    yes: bool,
}

pub fn run(args: Args, color: anstream::ColorChoice) -> anyhow::Result<ExitCode> {
    let runtime = super::runtime()?;
    let Some((_, survey)) = runtime.block_on(args.target.survey())? else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = converge::plan(&survey, args.target.now);
    let out = Mutex::new(anstream::AutoStream::new(io::stdout(), color));
    {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        render::text(&plan, &mut *out)?;
        out.flush()?;
    }
    let to_apply = plan.hosts.iter().filter(|h| h.needs_apply()).count();
    if to_apply == 0 {
        return Ok(if plan.has_errors() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    }
    if !args.yes && !confirm(to_apply)? {
        eprintln!("error: not applied");
        return Ok(ExitCode::FAILURE);
    }
    let progress = |report: &HostReport| {
        let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
        let _ = write_report(report, &mut *out);
        let _ = out.flush();
    };
    let reports = runtime.block_on(converge::apply(
        &survey,
        &plan,
        args.target.parallel,
        &progress,
    ));
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.succeeded())
        .map(|r| r.server.as_str())
        .collect();
    let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
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
}

fn confirm(hosts: usize) -> io::Result<bool> {
    if !io::stdin().is_terminal() {
        eprintln!("error: apply asks for confirmation, and stdin is not a terminal");
        eprintln!("  hint: pass --yes to apply without asking");
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

fn write_report(report: &HostReport, out: &mut dyn io::Write) -> io::Result<()> {
    let server = &report.server;
    match &report.outcome {
        Outcome::Unchanged => writeln!(out, "{server}: unchanged"),
        Outcome::Applied {
            changes,
            reloaded,
            deferred,
            reload_failures,
        } => {
            let mut line = format!("{GREEN}{server}{GREEN:#}: applied {changes} changes");
            if !reloaded.is_empty() {
                line.push_str(&format!("; reloaded {}", reloaded.join(", ")));
            }
            if !deferred.is_empty() {
                line.push_str(&format!(
                    "; {} waits for a reload window",
                    deferred.join(", ")
                ));
            }
            writeln!(out, "{line}")?;
            for (label, output) in reload_failures {
                writeln!(out, "{RED}{server}{RED:#}: reloading {label} failed:")?;
                indented(output, out)?;
            }
            Ok(())
        }
        Outcome::Invalid { failures } => {
            for (check, output) in failures {
                writeln!(
                    out,
                    "{RED}{server}{RED:#}: {check} refused the new configuration; \
                     the previous files are back and nothing was reloaded:"
                )?;
                indented(output, out)?;
            }
            Ok(())
        }
        Outcome::Failed { message, output } => {
            writeln!(out, "{RED}{server}{RED:#}: error: {message}")?;
            indented(output, out)
        }
    }
}

fn indented(text: &str, out: &mut dyn io::Write) -> io::Result<()> {
    for line in text.lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}
