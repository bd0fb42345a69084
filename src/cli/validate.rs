//! `reconciler validate`.

use super::output::{note, say};
use std::process::ExitCode;

use crate::converge::{self, Loaded};
use crate::definitions::{DefinitionFiles, LoadError, NotifyNames, plural};

use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    definitions: DefinitionsDir,
    /// Also check that every `notify:` target is named in this notify URLs
    /// file (the daemon's `--notify-urls FILE`, one `NAME URL` a line).
    #[arg(long, value_name = "FILE")]
    notify_urls: Option<std::path::PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let notify = match &args.notify_urls {
        Some(path) => Some(NotifyNames {
            file: path.clone(),
            names: crate::notify::Urls::read(path)?
                .names()
                .map(str::to_owned)
                .collect(),
        }),
        None => None,
    };
    let loaded = load_checking(&args.definitions, notify.as_ref())?;
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
    load_checking(dir, None)
}

/// `load`, and, with `notify`, every `notify:` target must be one of its
/// names.
fn load_checking(dir: &DefinitionsDir, notify: Option<&NotifyNames>) -> Result<Loaded, Failure> {
    let started = std::time::Instant::now();
    let loaded = DefinitionFiles::read_dir(&dir.dir)
        .and_then(|files| converge::load_checking(&files, notify));
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
