//! Plans for people (text with colored unified diffs) and for programs
//! (versioned JSON, schema in schemas/plan.schema.json).
//!
//! The text renderer always writes ANSI styles; the caller decides whether
//! they reach the terminal (anstream strips them for pipes and NO_COLOR).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::{Action, Change, HostPlan, NextWindow, Ownership, Plan, Reload, ReloadWhen};

const BOLD: Style = Style::new().bold();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default();
const CYAN: Style = AnsiColor::Cyan.on_default();
const DIM: Style = Style::new().dimmed();

/// Writes the plan as text: each host's changes with diffs, then a summary
/// line per host.
pub fn text(plan: &Plan, out: &mut dyn Write) -> io::Result<()> {
    for host in &plan.hosts {
        host_text(host, out)?;
    }
    let failed = plan.hosts.iter().filter(|h| h.error.is_some()).count();
    let changing = plan.hosts.iter().filter(|h| h.has_changes()).count();
    let unchanged = plan.hosts.len() - failed - changing;
    writeln!(
        out,
        "{BOLD}Plan:{BOLD:#} {} to change, {unchanged} unchanged, {failed} failed",
        crate::definitions::plural(changing, "host")
    )
}

fn host_text(host: &HostPlan, out: &mut dyn Write) -> io::Result<()> {
    let server = &host.server;
    if let Some(error) = &host.error {
        writeln!(
            out,
            "{BOLD}{server}{BOLD:#}: {RED}error:{RED:#} {}",
            error.message
        )?;
        if let Some(hint) = &error.hint {
            writeln!(out, "  hint: {hint}")?;
        }
        return writeln!(out);
    }
    let quiet = host.interrupted.is_none()
        && host.locked_by.is_none()
        && host.notes.is_empty()
        && host.warnings.is_empty();
    if host.changes.is_empty() && host.reloads.is_empty() && quiet {
        writeln!(out, "{}", summary(host))?;
        return opcache_text(host, out);
    }
    writeln!(out, "{BOLD}{server}{BOLD:#}")?;
    if let Some(journal) = &host.interrupted {
        writeln!(
            out,
            "  {RED}!{RED:#} an interrupted apply (started {} by {}) left files that were never \
             validated; this apply validates them and reloads, or puts back what stood before:",
            journal.started, journal.holder
        )?;
        for path in &journal.staged {
            writeln!(out, "      {path}")?;
        }
    }
    if let Some(holder) = &host.locked_by {
        writeln!(
            out,
            "  {YELLOW}!{YELLOW:#} an apply is running on this host now: {holder}"
        )?;
    }
    for warning in &host.warnings {
        writeln!(out, "  {YELLOW}! warning:{YELLOW:#} {warning}")?;
    }
    for note in &host.notes {
        writeln!(out, "  {DIM}note: {note}{DIM:#}")?;
    }
    for change in &host.changes {
        change_text(change, out)?;
    }
    for reload in &host.reloads {
        let when = when_text(reload);
        let pending = if reload.pending {
            " (pending from an earlier apply)"
        } else {
            ""
        };
        // The diff above already says the configuration changed.
        let why: Vec<&str> = reload
            .reasons
            .iter()
            .map(String::as_str)
            .filter(|r| !["its configuration changed", "pending from an earlier apply"].contains(r))
            .collect();
        let why = if why.is_empty() {
            String::new()
        } else {
            format!(" ({})", why.join("; "))
        };
        let what = match reload.service {
            // `restart workers shop-default:*, shop-reports:*`
            super::Service::Workers { .. } => format!(
                "restart workers {}",
                reload
                    .groups
                    .iter()
                    .map(|g| format!("{g}:*"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!("reload {}", reload.label),
        };
        writeln!(out, "  {CYAN}*{CYAN:#} {what} {when}{pending}{why}")?;
    }
    writeln!(out, "{}", summary(host))?;
    opcache_text(host, out)?;
    writeln!(out)
}

/// One line per php-fpm: its OPcache figures.
fn opcache_text(host: &HostPlan, out: &mut dyn Write) -> io::Result<()> {
    for (version, report) in &host.opcache {
        writeln!(
            out,
            "  {DIM}opcache{DIM:#} {}",
            super::opcache::summary(version, report)
        )?;
    }
    Ok(())
}

/// `web-1: 2 to create, 1 to update, 0 to remove; reload nginx now, php8.2-fpm in window`
pub fn summary(host: &HostPlan) -> String {
    let mut line = format!(
        "{}: {} to create, {} to update, {} to remove",
        host.server,
        host.count(Action::Create),
        host.count(Action::Update),
        host.count(Action::Remove)
    );
    let starts = host.count(Action::Start);
    if starts > 0 {
        line.push_str(&format!(", {starts} to start"));
    }
    if !host.reloads.is_empty() {
        let reloads: Vec<String> = host
            .reloads
            .iter()
            .map(|r| match (r.when, &r.next_window) {
                (ReloadWhen::Now, _) => format!("{} now", r.label),
                (
                    ReloadWhen::Window,
                    Some(NextWindow {
                        in_seconds: Some(s),
                        ..
                    }),
                ) => format!(
                    "{} in window (in {})",
                    r.label,
                    crate::humantime(std::time::Duration::from_secs(
                        u64::try_from(*s).unwrap_or(0)
                    ))
                ),
                (ReloadWhen::Window, _) => format!("{} in window (never opens)", r.label),
                (ReloadWhen::Manual, _) => format!("{} on --now", r.label),
            })
            .collect();
        line.push_str("; reload ");
        line.push_str(&reloads.join(", "));
    }
    line
}

/// When a reload happens, for a person: `now`, `in the next reload window,
/// 2026-11-23 03:00 CET (02:00 UTC), in 3h12m`, ...
fn when_text(reload: &Reload) -> String {
    match (reload.when, &reload.next_window) {
        (ReloadWhen::Now, _) => match reload.window_open_until {
            Some(until) => format!(
                "now: a reload window is open until {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
            None => "now".into(),
        },
        (
            ReloadWhen::Window,
            Some(NextWindow {
                start: Some(start),
                timezone,
                in_seconds,
                ..
            }),
        ) => {
            let local = timezone
                .parse::<chrono_tz::Tz>()
                .map(|tz| {
                    start
                        .with_timezone(&tz)
                        .format("%Y-%m-%d %H:%M %Z")
                        .to_string()
                })
                .unwrap_or_default();
            let wait = crate::humantime(std::time::Duration::from_secs(
                in_seconds.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            ));
            format!(
                "in the next reload window, {local} ({} UTC), in {wait}",
                start.format("%H:%M")
            )
        }
        (ReloadWhen::Window, _) => {
            "when a reload window opens, but none ever will (its schedule never fires): \
             apply with --now"
                .into()
        }
        (ReloadWhen::Manual, _) => "on `apply --now`: the cluster has no reload windows".into(),
    }
}

fn ownership(o: &Ownership) -> String {
    format!("{}:{} {:04o}", o.owner, o.group, o.mode)
}

fn change_text(change: &Change, out: &mut dyn Write) -> io::Result<()> {
    let (style, sign) = match change.action() {
        Action::Create => (GREEN, '+'),
        Action::Update => (YELLOW, '~'),
        Action::Remove => (RED, '-'),
        Action::Start => (GREEN, '>'),
    };
    let head = |out: &mut dyn Write, what: String| writeln!(out, "  {style}{sign}{style:#} {what}");
    match change {
        Change::CreateUser { user, home } => head(out, format!("user {user} (home {home})")),
        Change::JoinGroup { user, group } => head(out, format!("{user} joins group {group}")),
        Change::CreateDirectory { path, to, .. } => {
            head(out, format!("directory {path} {}", ownership(to)))
        }
        Change::UpdateDirectory { path, from, to, .. } => head(
            out,
            format!("directory {path} {} -> {}", ownership(from), ownership(to)),
        ),
        Change::CreateFile { path, to, diff, .. } => {
            head(out, format!("file {path} {}", ownership(to)))?;
            diff_text(diff, out)
        }
        Change::UpdateFile {
            path,
            from,
            to,
            diff,
            adopt,
            ..
        } => {
            let mut what = format!("file {path}");
            if from != to {
                what.push_str(&format!(" {} -> {}", ownership(from), ownership(to)));
            }
            if *adopt {
                what.push_str(&format!(" {DIM}(not written by reconciler before){DIM:#}"));
            }
            head(out, what)?;
            match diff {
                Some(diff) => diff_text(diff, out),
                None => Ok(()),
            }
        }
        Change::RemoveFile { path, diff, .. } => {
            head(out, format!("file {path}"))?;
            diff_text(diff, out)
        }
        Change::StartService { service } => head(out, format!("start {service} (it is stopped)")),
        // A name the facts accepted (`facts::is_program_name`): plain.
        Change::StartProgram { program, state } => head(
            out,
            format!("start program {program} (it is {})", state.word()),
        ),
    }
}

fn diff_text(diff: &str, out: &mut dyn Write) -> io::Result<()> {
    for line in diff.lines() {
        let style = if line.starts_with("+++") || line.starts_with("---") {
            BOLD
        } else if line.starts_with('+') {
            GREEN
        } else if line.starts_with('-') {
            RED
        } else if line.starts_with("@@") {
            CYAN
        } else {
            Style::new()
        };
        writeln!(out, "      {style}{line}{style:#}")?;
    }
    Ok(())
}

/// The plan as pretty JSON, ending in a newline.
pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan).unwrap_or_default();
    text.push('\n');
    text
}
