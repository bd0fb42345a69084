//! `reconciler templates`.

use super::output::{note, say};
use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::units::{EMBEDDED, kinds};

use super::Failure;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The directory to write them into: a definitions repository's
    /// templates/, where a file replaces the embedded template of its name.
    #[arg(long, value_name = "DIR", default_value = "templates")]
    out: PathBuf,
    /// Replace files that differ from the embedded templates (your
    /// overrides); without it they are left alone and named.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create `{}`", args.out.display()))?;
    let mut kept = Vec::new();
    let reference = kinds::reference();
    let files = EMBEDDED
        .iter()
        .copied()
        .chain([(kinds::REFERENCE_FILE, reference.as_str())]);
    for (name, text) in files {
        let path = args.out.join(name);
        match fs::read_to_string(&path) {
            Ok(existing) if existing == text => {
                say!("unchanged {}", path.display())?;
                continue;
            }
            Ok(_) if !args.force => {
                kept.push(path);
                continue;
            }
            _ => {}
        }
        crate::fsutil::write_atomically(&path, text.as_bytes())
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        say!("wrote {}", path.display())?;
    }
    if kept.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for path in &kept {
        note!(
            "error: `{}` differs from the embedded template; left alone",
            path.display()
        );
    }
    note!("  hint: pass --force to replace them");
    Ok(ExitCode::FAILURE)
}
