//! The command line: clap definitions and the glue from arguments to the
//! library. Data goes to stdout, diagnostics to stderr. Exit codes: 0 done,
//! 1 failed (invalid definitions, unreachable hosts), 2 usage errors (clap)
//! or, with `plan --detailed-exitcode`, changes pending.

mod apply;
mod plan;
mod schema;
mod target;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps fleets of PHP servers in the state a definitions repository describes.
///
/// The definitions directory holds clusters/*.yaml (servers, PHP versions,
/// request limits, php.ini, sessions, reload windows) and apps/*.yaml (repo,
/// build steps, shared paths, FPM pools, workers, scheduler).
#[derive(Debug, Parser)]
#[command(name = "reconciler", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to color the output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Log what happens on stderr (-v for info, -vv for debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the definitions and report every problem with its file, line and column.
    Validate(validate::Args),
    /// Write the JSON Schemas of cluster and app files, for editors and CI.
    Schema(schema::Args),
    /// Show what would change on each server, with diffs, without changing anything.
    ///
    /// Gathers facts from every selected server in one SSH round trip per
    /// host, renders what each should have, and prints the difference.
    Plan(plan::Args),
    /// Change what differs on each server: write files, validate, reload.
    ///
    /// Shows the plan first and asks for confirmation. On each host every
    /// change is staged with a backup; `nginx -t`, `php-fpm -t` and
    /// `supervisorctl reread` must accept the new files, or the backups come
    /// back and nothing is reloaded. php-fpm reloads wait for a reload
    /// window unless --now.
    Apply(apply::Args),
}

/// Where the definitions are: `-d DIR`, the current directory by default.
#[derive(Debug, clap::Args)]
struct DefinitionsDir {
    /// The definitions directory (with clusters/ and apps/).
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let color = match cli.color {
        Color::Auto => anstream::ColorChoice::Auto,
        Color::Always => anstream::ColorChoice::Always,
        Color::Never => anstream::ColorChoice::Never,
    };
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Plan(args) => plan::run(args, color),
        Command::Apply(args) => apply::run(args, color),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "reconciler=info",
        _ => "reconciler=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The async runtime for commands that reach servers.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Prints an error with its chain of causes, uv-style.
fn report(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
