//! The `reconciler` binary: all of it is the library's `cli::main` (the
//! command line is `cli::Cli`, which the integration tests parse too).

use std::process::ExitCode;

fn main() -> ExitCode {
    reconciler::cli::main()
}
