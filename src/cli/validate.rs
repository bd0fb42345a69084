//! `reconciler validate`.

use super::output::{note, say};
use std::process::ExitCode;

use crate::converge::{self, Loaded};
use crate::definitions::{DefinitionFiles, Definitions, LoadError, NotifyNames, plural};

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
    let members = match &dir.elastic_members {
        Some(state) => Some(members(state)?),
        None => None,
    };
    let loaded = DefinitionFiles::read_dir(&dir.dir).and_then(|files| match &members {
        None => converge::load_checking(&files, notify),
        Some(members) => {
            // The targets are checked on the definitions as written.
            if notify.is_some() {
                Definitions::parse_checking(&files, notify)?;
            }
            crate::elastic::load(&files, Some(members)).map(|(loaded, _)| loaded)
        }
    });
    if let (Ok(loaded), None) = (&loaded, &members) {
        for cluster in loaded
            .definitions
            .clusters
            .iter()
            .filter(|c| c.elastic.is_some())
        {
            note!(
                "note: cluster `{}` takes elastic members, and they are left out; \
                 pass --elastic-members STATE_DIR (the daemon's --state-dir) to cover them",
                cluster.name
            );
        }
    }
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

/// The elastic members a daemon keeps in its state directory `state`
/// (read only: nothing is made there).
fn members(state: &std::path::Path) -> Result<crate::elastic::Members, Failure> {
    let dir = state.join("elastic");
    if !dir.join("members.json").is_file() {
        return Err(Failure::usage(
            format!(
                "`{}` holds no elastic members (no `elastic/members.json`)",
                state.display()
            ),
            Some("pass the watch daemon's --state-dir, readable by this user"),
        ));
    }
    Ok(crate::elastic::Members::open(&dir)?)
}
