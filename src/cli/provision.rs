//! `reconciler provision`.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Mutex;

use crate::provision::{self, Provisioned};

use super::target::SshArgs;
use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    definitions: DefinitionsDir,
    /// Only this server; repeat for more.
    #[arg(long = "server", value_name = "NAME")]
    servers: Vec<String>,
    /// Say what is missing without installing anything.
    #[arg(long)]
    dry_run: bool,
    /// How many servers to work on at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let loaded = super::validate::load(&args.definitions)?;
    for name in &args.servers {
        if !loaded
            .desired
            .hosts
            .iter()
            .any(|h| h.server.name.as_str() == name)
        {
            return Err(Failure::usage(
                format!("no server `{name}` in the definitions"),
                None,
            ));
        }
    }
    let servers: Vec<_> = loaded
        .desired
        .hosts
        .iter()
        .filter(|h| {
            args.servers.is_empty() || args.servers.iter().any(|n| n == h.server.name.as_str())
        })
        .map(|h| {
            (
                h.server.clone(),
                h.units.packages.iter().cloned().collect::<Vec<_>>(),
            )
        })
        .collect();
    let connector = super::release::connector(&args.ssh)?;
    let out = Mutex::new(std::io::stdout());
    let dry_run = args.dry_run;
    super::run_until_signal(async {
        let each = |server: &crate::definitions::ServerName,
                    result: &Result<Provisioned, String>| {
            let mut out = out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let _ = match result {
                Ok(Provisioned::Converged) => writeln!(out, "{server}: every package is installed"),
                Ok(Provisioned::WouldInstall(missing)) => {
                    writeln!(out, "{server}: would install {}", missing.join(" "))
                }
                Ok(Provisioned::Installed(installed)) => {
                    writeln!(out, "{server}: installed {}", installed.join(" "))
                }
                Err(e) => writeln!(out, "{server}: FAILED: {}", crate::text::visible(e)),
            };
        };
        let results = provision::provision(
            servers,
            &connector,
            dry_run,
            usize::from(args.parallel),
            &each,
        )
        .await;
        let failed = results.iter().filter(|(_, r)| r.is_err()).count();
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    })
}
