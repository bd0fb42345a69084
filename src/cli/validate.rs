//! `reconciler validate`.

use super::output::{note, say};
use std::process::ExitCode;

use crate::converge::{self, Loaded};
use crate::definitions::{DefinitionFiles, LoadError, plural};

use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    definitions: DefinitionsDir,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let loaded = load(&args.definitions)?;
    let mut summary = format!(
        "ok: {}, {}",
        plural(loaded.definitions.clusters.len(), "cluster"),
        plural(loaded.definitions.apps.len(), "app"),
    );
    if !loaded.definitions.templates.is_empty() {
        let overrides = plural(loaded.definitions.templates.len(), "template override");
        summary.push_str(&format!(", {overrides}"));
    }
    say!("{summary}")?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the definitions and renders every server's units; prints every
/// problem when they are invalid, so that each command reports them the
/// same way.
pub(super) fn load(dir: &DefinitionsDir) -> Result<Loaded, Failure> {
    let started = std::time::Instant::now();
    let loaded = DefinitionFiles::read_dir(&dir.dir).and_then(|files| converge::load(&files));
    if let Ok(loaded) = &loaded {
        tracing::info!(
            dir = %dir.dir.display(),
            clusters = loaded.definitions.clusters.len(),
            apps = loaded.definitions.apps.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded definitions"
        );
    }
    match loaded {
        Ok(loaded) => Ok(loaded),
        Err(LoadError::Invalid(problems)) => {
            for problem in &problems {
                note!("{problem}");
            }
            note!("error: {}", LoadError::Invalid(problems));
            Err(Failure::Reported(ExitCode::FAILURE))
        }
        Err(other) => Err(other.into()),
    }
}
