//! Gathering facts: one read-only bash script per host, one round trip.
//!
//! `gather` sends gather.sh with the layout's paths and the paths, users
//! and apps of this host's desired units in its header, and parses its
//! line-framed output (`parse`) into `HostFacts`.

use std::time::Duration;

use super::{HostFacts, parse, parse::ParseError};
use crate::layout;
use crate::shell::quote_all;
use crate::transport::{Transport, TransportError};
use crate::units::HostUnits;

const GATHER_SCRIPT: &str = include_str!("gather.sh");

/// How long gathering may take on one host.
pub const GATHER_LIMIT: Duration = Duration::from_secs(60);

/// Why facts could not be gathered from a host.
#[derive(Debug, thiserror::Error)]
pub enum GatherError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the fact-gathering script failed (exit {status:?}): {stderr}")]
    Script { status: Option<i32>, stderr: String },
    #[error("cannot read the facts the server sent")]
    Parse(#[from] ParseError),
}

/// The script that gathers facts for `units`: the layout's paths and the
/// arrays it reads, then gather.sh. Every value is quoted (paths and names
/// are validated too; quoting makes that not matter).
pub fn script(units: &HostUnits) -> String {
    let array = |name: &str, values: Vec<&str>| format!("{name}=({})\n", quote_all(values));
    let sums: Vec<String> = units.files.iter().map(|f| f.sha256()).collect();
    let mut script = layout::shell_header();
    script.push_str(&array(
        "FILES",
        units.files.iter().map(|f| f.path.as_str()).collect(),
    ));
    script.push_str(&array("SUMS", sums.iter().map(String::as_str).collect()));
    script.push_str(&array(
        "DIRS",
        units.directories.iter().map(|d| d.path.as_str()).collect(),
    ));
    script.push_str(&array(
        "APPS",
        units.users.iter().map(|u| u.name.as_str()).collect(),
    ));
    script.push_str(crate::shell::LOCK_HOLDER);
    script.push_str(GATHER_SCRIPT);
    script
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
