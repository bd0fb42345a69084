//! `reconciler release`, `rollback` and `releases`.

use super::output::{note, say};
use crate::Hint as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use crate::app::{AppTarget, Event, Origin, Progress, Step, Trigger};
use crate::definitions::ServerName;
use crate::release;
use crate::transport::RealConnector;

use super::target::SshArgs;
use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The app to release.
    app: String,
    /// What to release: a commit id, tag or branch (default: the app's branch).
    rev: Option<String>,
    #[command(flatten)]
    definitions: DefinitionsDir,
    /// Where the app repositories are mirrored (one bare mirror per app).
    #[arg(long, value_name = "DIR", env = "RECONCILER_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The app to roll back.
    app: String,
    /// The release to go back to (a commit id or its start); default: the
    /// newest other release that was live and is still on every server.
    #[arg(long, value_name = "SHA")]
    to: Option<String>,
    #[command(flatten)]
    definitions: DefinitionsDir,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReleasesArgs {
    /// The app whose releases to list.
    app: String,
    #[command(flatten)]
    definitions: DefinitionsDir,
    #[command(flatten)]
    ssh: SshArgs,
}

#[derive(Debug, clap::Args)]
struct CommonArgs {
    /// First end whatever holds the app's release lock on its servers (a
    /// release whose client hangs). The lock of a release whose client
    /// died is free already.
    #[arg(long)]
    force_unlock: bool,
    #[command(flatten)]
    ssh: SshArgs,
}

/// The default mirror cache: $RECONCILER_CACHE_DIR, else
/// $XDG_CACHE_HOME/reconciler/apps, or ~/.cache/reconciler/apps.
pub(super) fn default_cache() -> PathBuf {
    if let Some(dir) = std::env::var_os("RECONCILER_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("reconciler/apps")
}

/// Lines `web-1  upload  done in 0.41 s` on stderr as steps end; on a
/// terminal the steps that start show too.
pub(super) struct Lines {
    started: Instant,
    terminal: bool,
    out: Mutex<std::io::Stderr>,
}

impl Lines {
    pub(super) fn new() -> Self {
        Self {
            started: Instant::now(),
            terminal: std::io::stderr().is_terminal(),
            out: Mutex::new(std::io::stderr()),
        }
    }
}

impl Progress for Lines {
    fn step(&self, server: &ServerName, step: Step, event: &Event) {
        let what = match event {
            Event::Started if self.terminal => "…".to_owned(),
            Event::Started => return,
            Event::Done(took) => format!("done in {:.2} s", took.as_secs_f64()),
            Event::Skipped(why) => format!("skipped: {why}"),
            Event::Failed(output) => format!(
                "FAILED: {}",
                crate::text::visible(output.lines().next().unwrap_or(""))
            ),
        };
        let at = self.started.elapsed().as_secs_f64();
        let mut out = self
            .out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let step = step.to_string();
        let _ = writeln!(out, "[{at:6.2}s] {server:<12} {step:<9} {what}");
    }
}

/// Releases the pinned `revision:` of every app (or of `only`) that does
/// not run it everywhere yet (`release::release_pins`), and says what it
/// did.
pub(super) fn release_pins(
    definitions: &crate::definitions::Definitions,
    only: &[String],
    ssh: &SshArgs,
) -> Result<ExitCode, Failure> {
    if AppTarget::pinned(definitions, only).is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let connector = connector(ssh)?;
    let cache = default_cache();
    let lines = Lines::new();
    let origin = Origin {
        who: crate::converge::holder(),
        trigger: Trigger::Definitions,
    };
    super::run_until_signal(async {
        let mut failed = false;
        for pinned in
            release::release_pins(definitions, only, &cache, &origin, &connector, &lines).await
        {
            let (app, revision) = (&pinned.app, &pinned.revision);
            match pinned.result {
                Ok(None) => say!("{app}: revision {revision} is live on every server")?,
                Ok(Some(done)) => say!(
                    "{app}: released revision {revision} ({}) in {:.1} s",
                    done.sha.short(),
                    done.elapsed.as_secs_f64()
                )?,
                Err(e) => {
                    failed = true;
                    let repo = definitions
                        .apps
                        .iter()
                        .find(|a| a.name.as_str() == app)
                        .map(|a| a.repo.as_str());
                    note!("{app}: cannot release revision {revision}:");
                    super::output::report(&e, repo);
                }
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}

pub(super) fn target(dir: &DefinitionsDir, app: &str) -> Result<AppTarget, Failure> {
    let loaded = super::validate::load(dir)?;
    AppTarget::find(&loaded.definitions, app).map_err(|e| {
        let known: Vec<String> = loaded
            .definitions
            .apps
            .iter()
            .map(|a| a.name.to_string())
            .collect();
        Failure::usage(e.to_string(), Some(&format!("apps: {}", known.join(", "))))
    })
}

pub(super) fn connector(ssh: &SshArgs) -> Result<RealConnector, Failure> {
    let options = ssh.options();
    options
        .check()
        .map_err(|e| Failure::usage(crate::error_chain(&e), e.hint()))?;
    Ok(RealConnector { options })
}

async fn unlock_first(
    common: &CommonArgs,
    target: &AppTarget,
    connector: &RealConnector,
) -> Result<(), Failure> {
    if !common.force_unlock {
        return Ok(());
    }
    let mut failed = false;
    for (server, result) in release::force_unlock(target, connector).await {
        match result {
            Ok(Some(holder)) => note!(
                "{server}: broke the release lock of {}",
                crate::text::visible(&holder)
            ),
            Ok(None) => {}
            Err(e) => {
                note!(
                    "{server}: cannot break the release lock: {}",
                    crate::text::visible(&e)
                );
                failed = true;
            }
        }
    }
    if failed {
        return Err(Failure::Reported(ExitCode::FAILURE));
    }
    Ok(())
}

/// Prints what a release or rollback of `target` did.
fn report(
    result: Result<release::Released, release::ReleaseError>,
    target: &AppTarget,
    what: &str,
) -> Result<ExitCode, Failure> {
    let (app, repo) = (target.app.name.as_str(), target.app.repo.as_str());
    match result {
        Ok(done) => {
            let servers: Vec<String> = done.previous.iter().map(|(s, _)| s.to_string()).collect();
            say!(
                "{app} {} is live on {} ({what} in {:.1} s{})",
                done.sha.short(),
                servers.join(", "),
                done.elapsed.as_secs_f64(),
                match done.pruned {
                    0 => String::new(),
                    1 => "; 1 old release directory pruned".to_owned(),
                    n => format!("; {n} old release directories pruned"),
                }
            )?;
            for (server, warmed) in &done.warmed {
                match warmed {
                    Ok(warmed) => note!(
                        "{server}: OPcache warmed before the switch: {}",
                        warmed.summary()
                    ),
                    Err(why) => note!(
                        "warning: {server}: OPcache was not warmed before the switch: {}",
                        crate::text::visible(why.trim())
                    ),
                }
            }
            for (server, sha, why) in &done.prune_failed {
                note!(
                    "warning: {server}: release {} could not be pruned: {}",
                    sha.short(),
                    crate::text::visible(why.trim())
                );
            }
            for (server, why) in &done.workers_failed {
                note!(
                    "warning: {server}: the workers did not restart: {}",
                    why.trim()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            super::output::report(&e, Some(repo));
            Err(Failure::Reported(ExitCode::FAILURE))
        }
    }
}

pub fn run_release(args: ReleaseArgs) -> Result<ExitCode, Failure> {
    let target = target(&args.definitions, &args.app)?;
    let connector = connector(&args.common.ssh)?;
    let rev = args
        .rev
        .clone()
        .unwrap_or_else(|| target.app.branch.clone());
    let cache = args.cache_dir.clone().unwrap_or_else(default_cache);
    let mirror_path = release::mirror_path(&cache, &target.app);
    let lines = Lines::new();
    note!(
        "fetching {} into {}",
        crate::redact::url(&target.app.repo),
        mirror_path.display()
    );
    let started = Instant::now();
    let archive = match release::fetch_and_archive(&target, &cache, &rev) {
        Ok(archive) => archive,
        Err(e) => {
            super::output::report(&e, Some(&target.app.repo));
            return Err(Failure::Reported(ExitCode::FAILURE));
        }
    };
    note!(
        "{} is {}: {} files, {} unpacked{}; archived {} in {:.2} s",
        rev.escape_debug(),
        archive.sha.short(),
        archive.files,
        release::source::human(archive.unpacked),
        match archive.export_ignored {
            0 => String::new(),
            n => format!(
                " (export-ignore in .gitattributes leaves {} out)",
                crate::definitions::plural(n, "file")
            ),
        },
        release::source::human(archive.size),
        started.elapsed().as_secs_f64()
    );
    let origin = Origin {
        who: crate::converge::holder(),
        trigger: Trigger::Cli,
    };
    super::run_until_stopped(|stop| async move {
        unlock_first(&args.common, &target, &connector).await?;
        let result = release::release(&target, &archive, &origin, &connector, &lines, &stop).await;
        report(result, &target, "released")
    })
}

pub fn run_rollback(args: RollbackArgs) -> Result<ExitCode, Failure> {
    let target = target(&args.definitions, &args.app)?;
    let connector = connector(&args.common.ssh)?;
    let lines = Lines::new();
    let origin = Origin {
        who: crate::converge::holder(),
        trigger: Trigger::Rollback,
    };
    super::run_until_stopped(|_stop| async move {
        unlock_first(&args.common, &target, &connector).await?;
        let result =
            release::rollback(&target, args.to.as_deref(), &origin, &connector, &lines).await;
        report(result, &target, "rolled back")
    })
}

pub fn run_releases(args: ReleasesArgs) -> Result<ExitCode, Failure> {
    let target = target(&args.definitions, &args.app)?;
    let connector = connector(&args.ssh)?;
    super::run_until_signal(async {
        let mut failed = false;
        let mut out = std::io::stdout().lock();
        for (server, state) in release::list(&target, &connector).await {
            let state = match state {
                Ok(state) => state,
                Err(e) => {
                    note!("{server}: {}", crate::text::visible(&e));
                    failed = true;
                    continue;
                }
            };
            writeln!(out, "{server}")?;
            if state.present.is_empty() {
                writeln!(out, "  no releases")?;
            }
            let mut present = state.present.clone();
            present.sort_by_key(|(_, time)| std::cmp::Reverse(*time));
            if let Some(holder) = &state.locked_by {
                writeln!(out, "  busy: {}", crate::text::one_line(holder))?;
            }
            if let Some(stopped) = &state.in_flight {
                writeln!(
                    out,
                    "  a release of {} by {} ({}, started {}) stopped after switching here; \
                     the next release, rollback or the daemon's check puts it right",
                    stopped.sha.short(),
                    crate::text::one_line(&stopped.who),
                    crate::text::one_line(&stopped.trigger),
                    crate::text::one_line(&stopped.started),
                )?;
            }
            if let Some(stray) = &state.stray_current {
                writeln!(
                    out,
                    "  current points at {}, which is no release of the app",
                    crate::text::one_line(stray)
                )?;
            }
            if let Some(kind) = state.current_not_link {
                writeln!(
                    out,
                    "  current is a {kind}, no link to a release: it is served as it is, and \
                     a release refuses to replace it"
                )?;
            }
            for (sha, mtime) in present {
                let last = state.log.iter().rev().find(|e| e.sha == sha);
                let live = state.live.as_ref() == Some(&sha);
                let result = match last {
                    _ if !state.complete.contains(&sha) => "incomplete",
                    Some(entry) => entry.result.as_str(),
                    None => "complete",
                };
                let time = last.map_or_else(
                    || {
                        chrono::DateTime::from_timestamp(mtime, 0)
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                            .unwrap_or_default()
                    },
                    |e| e.time.clone(),
                );
                let side = state.sides.iter().find(|(_, s)| *s == sha);
                let mut result = match side {
                    Some((side, _)) => format!("{result} (in {side})"),
                    None => result.to_owned(),
                };
                if let Some(warmed) = last.and_then(|e| e.warmed.as_ref()) {
                    result.push_str(&format!("; OPcache warmed: {}", warmed.summary()));
                }
                writeln!(
                    out,
                    "  {} {:<24} {:<5} {}",
                    sha.short(),
                    crate::text::visible(&time),
                    if live { "live" } else { "" },
                    result
                )?;
            }
        }
        Ok(if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    })
}
