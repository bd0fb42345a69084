//! The command line: clap definitions and the glue from arguments to the
//! library. Data goes to stdout, diagnostics to stderr. Exit codes: 0 done,
//! 1 failed (invalid definitions, unreachable hosts), 2 usage errors (clap)
//! or, with `plan --detailed-exitcode`, changes pending.

mod schema;
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
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the definitions and report every problem with its file, line and column.
    Validate(validate::Args),
    /// Write the JSON Schemas of cluster and app files, for editors and CI.
    Schema(schema::Args),
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
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            report(&error);
            ExitCode::FAILURE
        }
    }
}

/// Prints an error with its chain of causes, uv-style.
fn report(error: &anyhow::Error) {
    eprintln!("error: {error}");
    for cause in error.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
