//! `reconciler status`.

use super::output::say;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::board::Status;

use super::Failure;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a person: the commits, then a few lines per server.
    Text,
    /// The status document (schemas/status.schema.json), as the daemon
    /// serves it.
    Json,
}

#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("from").args(["state_dir", "url"]))]
pub struct Args {
    /// Read the status a daemon keeps in its state directory (the
    /// default, in /var/lib/reconciler-watch).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Ask a daemon serving on this address, such as http://127.0.0.1:8700.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// How to print it.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Prints the status; exits 1 when it shows any problem (`problems`), or
/// when it is stale: its daemon is not running (read from a state
/// directory on this machine) or it was not updated for three fetch
/// intervals and a minute.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let (text, alive) = match (&args.state_dir, &args.url) {
        (_, Some(url)) => (fetch(url)?, None),
        (dir, None) => {
            let dir = dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/reconciler-watch"));
            let path = dir.join("status.json");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cannot read `{}`: is a daemon using that state directory?",
                    path.display()
                )
            })?;
            (text, Some(()))
        }
    };
    let status: Status =
        serde_json::from_str(&text).context("the status is not a status document")?;
    // A daemon before security round 3 kept credentials in it.
    let mut status = status.redacted();
    // The daemon's process, when the document came from this machine.
    let alive = alive.and(status.daemon.as_ref()).map(|d| {
        std::path::Path::new("/proc")
            .join(d.pid.to_string())
            .exists()
    });
    if let Some(why) = status.staleness(chrono::Utc::now(), alive) {
        status.problems.insert(
            0,
            crate::board::Problem {
                kind: "stale".into(),
                subject: String::new(),
                message: format!("this status may be out of date: {why}"),
            },
        );
    }
    match args.format {
        Format::Json => say!("{}", serde_json::to_string_pretty(&status)?)?,
        Format::Text => {
            super::output::out(format_args!("{}", crate::text::visible(&render(&status))))?;
        }
    }
    Ok(if !status.problems.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// GET URL/v1/status over plain HTTP (a daemon listens on loopback).
fn fetch(url: &str) -> anyhow::Result<String> {
    let shown = crate::redact::url(url);
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("`{shown}` is not an http:// URL");
    };
    let host = rest.trim_end_matches('/');
    let mut stream =
        TcpStream::connect(host).with_context(|| format!("cannot connect to `{shown}`"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET /v1/status HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        bail!(
            "`{shown}` answered {}",
            head.lines().next().unwrap_or_default()
        );
    }
    Ok(body.to_owned())
}

fn render(status: &Status) -> String {
    let short = |c: &str| c.chars().take(12).collect::<String>();
    let at = |t: &chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%d %H:%M:%S UTC").to_string();
    let mut out = format!("definitions: {} ({})\n", status.repo, status.branch);
    if let Some(head) = &status.head {
        out.push_str(&format!("head:        {}\n", short(head)));
    }
    match &status.last_good {
        Some(good) => out.push_str(&format!(
            "in force:    {} since {}\n",
            short(&good.commit),
            at(&good.at)
        )),
        None => out.push_str("in force:    nothing yet\n"),
    }
    if let Some(updated) = &status.updated {
        out.push_str(&format!("updated:     {}\n", at(updated)));
    }
    if status.problems.is_empty() {
        out.push_str("problems:    none: every server is as the commit in force says\n");
    } else {
        out.push_str(&format!("problems:    {}\n", status.problems.len()));
        for problem in &status.problems {
            let subject = if problem.subject.is_empty() {
                String::new()
            } else {
                format!(" {}", problem.subject)
            };
            out.push_str(&format!(
                "  {}{subject}: {}\n",
                problem.kind, problem.message
            ));
        }
    }
    if let Some(rejected) = &status.last_rejected {
        out.push_str(&format!(
            "rejected:    {} at {}; nothing of it was applied:\n",
            short(&rejected.commit),
            at(&rejected.at)
        ));
        for error in &rejected.errors {
            for line in error.lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
    }
    if !status.apps.is_empty() {
        out.push_str("apps:\n");
    }
    for (app, entry) in &status.apps {
        let intended = entry.intended.as_deref().unwrap_or("nothing known");
        out.push_str(&format!(
            "  {app}: {} (should run {intended})\n",
            entry.state
        ));
        if !entry.message.is_empty() {
            out.push_str(&format!("    {}\n", entry.message));
        }
        for (server, live) in &entry.live {
            let live = live.as_deref().map_or("no release".to_owned(), short);
            out.push_str(&format!("    {server}: {live}\n"));
        }
        if entry.failures > 0 {
            let retry = entry.retry_at.as_ref().map(at).unwrap_or_default();
            out.push_str(&format!(
                "    {} failures in a row; next try {retry}\n",
                entry.failures
            ));
        }
    }
    if !status.elastic.is_empty() {
        out.push_str("elastic members:\n");
        for member in status.elastic.values() {
            out.push_str(&format!(
                "  {} ({}) {}:{}: {} since {}\n",
                member.name,
                member.cluster,
                member.address,
                member.port,
                member.state.as_str(),
                at(&member.since)
            ));
            if let Some(cause) = &member.cause {
                out.push_str(&format!("    {}\n", crate::text::visible(cause)));
            }
        }
    }
    out.push_str("hosts:\n");
    for (server, host) in &status.hosts {
        let mut line = format!("  {server} ({})", host.cluster);
        if status.elastic.contains_key(server) {
            line = format!("  {server} ({}, elastic)", host.cluster);
        }
        if let Some(result) = &host.last_result {
            line.push_str(&format!(": {result}"));
        }
        if let Some(when) = &host.last_at {
            line.push_str(&format!(" at {}", at(when)));
        }
        if let Some(commit) = &host.last_applied_commit {
            line.push_str(&format!(", commit {}", short(commit)));
        }
        out.push_str(&line);
        out.push('\n');
        if let Some(message) = &host.last_message {
            out.push_str(&format!("    {message}\n"));
        }
        if host.failures > 0 {
            let retry = host.retry_at.as_ref().map(at).unwrap_or_default();
            out.push_str(&format!(
                "    {} failures in a row; next try {retry}\n",
                host.failures
            ));
        }
        if let Some(holder) = &host.lock_holder {
            out.push_str(&format!("    host lock held by {holder}\n"));
        }
        if host.failures > 0
            && let Some(known) = &host.known_at
        {
            out.push_str(&format!("    last known state as of {}:\n", at(known)));
        }
        for reload in &host.pending_reloads {
            match &reload.next_window {
                Some(next) => out.push_str(&format!(
                    "    {} waits for the window at {}\n",
                    reload.label,
                    at(next)
                )),
                None => out.push_str(&format!("    {} waits for apply --now\n", reload.label)),
            }
        }
    }
    out
}
