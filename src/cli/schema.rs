//! `reconciler schema`.

use super::output::say;
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::schemas;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write the schema files into.
    #[arg(long, value_name = "DIR", default_value = "schemas")]
    out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode, super::Failure> {
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    for (file, text) in schemas::all() {
        let path = args.out.join(file);
        crate::fsutil::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        say!("wrote {}", path.display())?;
    }
    Ok(ExitCode::SUCCESS)
}
