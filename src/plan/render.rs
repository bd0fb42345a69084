//! Plans for people (text with colored unified diffs) and for programs
//! (versioned JSON, schema in schemas/plan.schema.json).
//!
//! The text renderer always writes ANSI styles; the caller decides whether
//! they reach the terminal (anstream strips them for pipes and NO_COLOR).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};

use super::{Action, Change, HostPlan, Ownership, Plan, ReloadWhen};

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
        "{BOLD}Plan:{BOLD:#} {changing} to change, {unchanged} unchanged, {failed} failed"
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
    if host.changes.is_empty() && host.reloads.is_empty() {
        return writeln!(out, "{}", summary(host));
    }
    writeln!(out, "{BOLD}{server}{BOLD:#}")?;
    for change in &host.changes {
        change_text(change, out)?;
    }
    for reload in &host.reloads {
        let when = match reload.when {
            ReloadWhen::Now => "now",
            ReloadWhen::Window => "in the next reload window",
        };
        let pending = if reload.pending {
            " (pending from an earlier apply)"
        } else {
            ""
        };
        writeln!(
            out,
            "  {CYAN}*{CYAN:#} reload {} {when}{pending}",
            reload.label
        )?;
    }
    writeln!(out, "{}", summary(host))?;
    writeln!(out)
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
    if !host.reloads.is_empty() {
        let reloads: Vec<String> = host
            .reloads
            .iter()
            .map(|r| match r.when {
                ReloadWhen::Now => format!("{} now", r.label),
                ReloadWhen::Window => format!("{} in window", r.label),
            })
            .collect();
        line.push_str("; reload ");
        line.push_str(&reloads.join(", "));
    }
    line
}

fn ownership(o: &Ownership) -> String {
    format!("{}:{} {:04o}", o.owner, o.group, o.mode)
}

fn change_text(change: &Change, out: &mut dyn Write) -> io::Result<()> {
    let (style, sign) = match change.action() {
        Action::Create => (GREEN, '+'),
        Action::Update => (YELLOW, '~'),
        Action::Remove => (RED, '-'),
    };
    let head = |out: &mut dyn Write, what: String| writeln!(out, "  {style}{sign}{style:#} {what}");
    match change {
        Change::CreateUser { user, home } => head(out, format!("user {user} (home {home})")),
        Change::JoinGroup { user, group } => head(out, format!("{user} joins group {group}")),
        Change::CreateDirectory { path, to } => {
            head(out, format!("directory {path} {}", ownership(to)))
        }
        Change::UpdateDirectory { path, from, to } => head(
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
        Change::RemoveFile { path, diff } => {
            head(out, format!("file {path}"))?;
            diff_text(diff, out)
        }
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
