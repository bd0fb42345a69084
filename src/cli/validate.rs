//! `reconciler validate`.

use std::process::ExitCode;

use crate::definitions::{Definitions, LoadError, plural};

use super::DefinitionsDir;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    definitions: DefinitionsDir,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let definitions = match load(&args.definitions)? {
        Some(definitions) => definitions,
        None => return Ok(ExitCode::FAILURE),
    };
    println!(
        "ok: {}, {}",
        plural(definitions.clusters.len(), "cluster"),
        plural(definitions.apps.len(), "app")
    );
    Ok(ExitCode::SUCCESS)
}

/// Loads the definitions; prints every problem and returns `None` when they
/// are invalid, so that each command reports them the same way.
pub(super) fn load(dir: &DefinitionsDir) -> anyhow::Result<Option<Definitions>> {
    match Definitions::load(&dir.dir) {
        Ok(definitions) => Ok(Some(definitions)),
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            eprintln!("error: {}", LoadError::Invalid(problems));
            Ok(None)
        }
        Err(other) => Err(other.into()),
    }
}
