//! Gathering facts: one read-only bash script per host, one round trip.
//!
//! `gather` sends gather.sh with the layout's paths and the paths, users
//! and apps of this host's desired units in its header, and parses its
//! records (`parse`) into `HostFacts`.

use std::time::Duration;

use super::{HostFacts, parse, parse::ParseError};
use crate::remote::Script;
use crate::transport::{Transport, TransportError};
use crate::units::HostUnits;

const GATHER_SCRIPT: &str = include_str!("gather.sh");

/// reconciler's FastCGI client (its own file, so that it can be linted and
/// read); the script runs it with `php -r`, which takes no `<?php` line.
const FASTCGI_CLIENT: &str = include_str!("fastcgi-client.php");

/// How long gathering may take on one host.
pub const GATHER_LIMIT: Duration = Duration::from_secs(60);

/// Why facts could not be gathered from a host.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    /// The script could not be run or its output not read: no connection,
    /// authentication refused, the time limit (`GATHER_LIMIT`) passed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The script ran and exited non-zero.
    #[error("the fact-gathering script failed (exit {status:?}): {stderr}")]
    Script {
        /// Its exit status; `None` when a signal killed it.
        status: Option<i32>,
        /// What it wrote to stderr, trimmed.
        stderr: String,
    },
    /// The script succeeded but its stdout is not a facts stream this
    /// build reads.
    #[error("cannot read the facts the server sent")]
    Parse(#[from] ParseError),
}

/// The script that gathers facts for `units`: the layout's paths and the
/// arrays it reads in its header (and whether to list supervisor's
/// processes), then gather.sh. Every value is quoted
/// (paths and names are validated too; quoting makes that not matter).
pub fn script(units: &HostUnits) -> String {
    let sums: Vec<String> = units
        .files
        .iter()
        .map(super::super::units::ManagedFile::sha256)
        .collect();
    let client = fastcgi_client();
    Script::new()
        .array("FILES", units.files.iter().map(|f| f.path.as_str()))
        .array("SUMS", sums.iter().map(String::as_str))
        .array("DIRS", units.directories.iter().map(|d| d.path.as_str()))
        .array("APPS", units.users.iter().map(|u| u.name.as_str()))
        // supervisorctl is a Python program (a second or so on a busy
        // server): asked only where apps run workers.
        .var(
            "LIST_PROGRAMS",
            if units.needs.supervisor { "1" } else { "" },
        )
        .var("FASTCGI_CLIENT", client)
        .build(GATHER_SCRIPT, &["gather_main"])
}

/// reconciler's FastCGI client (`fastcgi-client.php`) as `php -n -r`
/// takes it: without its `<?php` line. Arguments: `SOCKET SCRIPT
/// [SECONDS [NAME=VALUE...]]`.
pub fn fastcgi_client() -> &'static str {
    FASTCGI_CLIENT
        .strip_prefix("<?php\n")
        .unwrap_or(FASTCGI_CLIENT)
}

/// Gathers the facts `units` needs from one host, in one round trip.
pub async fn gather(
    transport: &dyn Transport,
    units: &HostUnits,
) -> Result<HostFacts, GatherError> {
    let output = transport.run(&script(units), GATHER_LIMIT).await?;
    if !output.success() {
        return Err(GatherError::Script {
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(parse::parse(&output.stdout)?)
}
