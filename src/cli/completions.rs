//! `reconciler completions SHELL`: the shell's completion script, generated
//! from the clap definitions (clap_complete), so Tab completes every
//! command and option of this very binary. The Debian package installs the
//! same scripts; this is for those who install with cargo.

use std::io::Write as _;
use std::process::ExitCode;

use clap::CommandFactory as _;
use clap_complete::Shell as Generator;

use super::{Cli, Failure};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Shell {
    /// Bash (with the bash-completion package).
    Bash,
    /// Zsh (a `_reconciler` function for `compinit`).
    Zsh,
    /// Fish.
    Fish,
}

/// Print the shell completion script of bash, zsh or fish.
///
/// The script completes this binary's own commands and options. The Debian package installs them already. After `cargo install`:
///
///   reconciler completions bash > ~/.local/share/bash-completion/completions/reconciler
///
///   reconciler completions zsh > ~/.zfunc/_reconciler   (with `fpath+=~/.zfunc` before `compinit` in ~/.zshrc)
///
///   reconciler completions fish > ~/.config/fish/completions/reconciler.fish
///
/// then open a new shell.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

/// Writes the completion script of `shell` to stdout.
pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let generator = match args.shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "reconciler", &mut script);
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&script)?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}
