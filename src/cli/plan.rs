//! `reconciler plan`.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use crate::converge;
use crate::plan::render;

use super::Failure;
use super::target::TargetArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Changes with colored unified diffs, then a summary per host.
    Text,
    /// The plan as JSON (schemas/plan.schema.json), for CI and bots.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// How to print the plan.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Exit 0 when nothing would change, 2 when something would, 1 on errors.
    /// A php-fpm reload waiting for its window is not a change.
    #[arg(long)]
    detailed_exitcode: bool,
}

pub fn run(args: Args, color: anstream::ColorChoice) -> Result<ExitCode, Failure> {
    let loaded = super::validate::load(&args.target.definitions)?;
    let options = args.target.reconcile_options(&loaded, Duration::ZERO);
    super::run_until_signal(async {
        let surveyed = args.target.survey(&options, &loaded).await?;
        let plan = converge::plan_of(&surveyed);
        let mut out = anstream::AutoStream::new(std::io::stdout().lock(), color);
        match args.format {
            Format::Text => render::text(&plan, &mut out)?,
            Format::Json => out.write_all(render::json(&plan).as_bytes())?,
        }
        out.flush()?;
        Ok(if plan.has_errors() {
            ExitCode::FAILURE
        } else if args.detailed_exitcode && plan.has_changes() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    })
}
