//! `reconciler man --out DIR`: a manual page per command (section 1),
//! generated from the clap definitions (clap_mangen), so the pages say
//! exactly what `--help` says. The Debian package installs the same pages;
//! this is for those who install with cargo.

use super::output::say;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::CommandFactory as _;

use super::{Cli, Failure};

/// Write a manual page per command into a directory.
///
/// One page per command and subcommand (`reconciler.1`,
/// `reconciler-plan.1`, `reconciler-env-pull.1`, ...), made from the same
/// text as --help. The Debian package installs them already. After `cargo install`:
///
///   reconciler man --out ~/.local/share/man/man1
///
/// then `man reconciler-plan` (man looks in ~/.local/share/man when
/// ~/.local/bin is in PATH; otherwise `export MANPATH=~/.local/share/man:`),
/// or read one page with `man -l DIR/reconciler-plan.1`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the pages into (made if missing): one
    /// `reconciler.1` and one `reconciler-<command>.1` per command, such as
    /// `reconciler-plan.1` and `reconciler-env-pull.1`.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Writes every page into `args.out`, replacing pages of the same name,
/// and prints each path written.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    // Gives every subcommand its display name (`reconciler-plan`): the
    // page's title and file name.
    command.build();
    let mut pages = Vec::new();
    collect(&command, &mut pages);
    for page in pages {
        let path = write_page(page, &args.out)?;
        say!("wrote {}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `command` and every visible subcommand below it, parents first.
fn collect(command: &clap::Command, pages: &mut Vec<clap::Command>) {
    pages.push(command.clone());
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        collect(sub, pages);
    }
}

/// Renders the page of `command` into `dir`, atomically; returns its path.
fn write_page(command: clap::Command, dir: &Path) -> Result<PathBuf, Failure> {
    let page = clap_mangen::Man::new(command);
    let path = dir.join(page.get_filename());
    let mut roff = Vec::new();
    page.render(&mut roff)?;
    crate::fsutil::write_atomically(&path, &roff)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path)
}
