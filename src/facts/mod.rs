//! What a server has now, gathered in one SSH round trip per host.
//!
//! `gather` sends one read-only bash script (gather.sh, with the paths,
//! users and apps of this host's desired units prepended) and parses its
//! line-framed output into `HostFacts`. `HostFacts` is plain serde data:
//! planning never talks to a server, and tests load facts from fixtures.

mod parse;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::definitions::{AppName, PhpVersion};
use crate::shell::quote_all;
use crate::transport::{Transport, TransportError};
use crate::units::HostUnits;

pub use parse::ParseError;

const GATHER_SCRIPT: &str = include_str!("gather.sh");

/// The init system, which decides how services are reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    Systemd,
    /// SysV-style `service` scripts, as in containers without systemd.
    #[default]
    Service,
}

/// An installed PHP version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PhpInstall {
    /// The php-fpm binary, such as /usr/sbin/php-fpm8.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fpm: Option<String>,
    /// The CLI binary, such as /usr/bin/php8.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
}

/// A system user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFacts {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

/// What kind of thing stands at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// A path that exists on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFacts {
    pub kind: PathKind,
    pub owner: String,
    pub group: String,
    /// Permission bits, such as 0o644.
    pub mode: u32,
    pub size: u64,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The text of a regular file up to 1 MiB whose content differs from
    /// what the units want (or that is not wanted at all), for diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// An app's releases on a server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AppReleases {
    /// What `current` points at, as written in the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Release directories under releases/, sorted by name.
    #[serde(default)]
    pub releases: Vec<String>,
}

/// Everything a plan needs to know about one server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HostFacts {
    /// Distribution and version, such as `debian 12`.
    pub os: String,
    pub init: Init,
    /// The user id scripts run as: 0, root (directly or through sudo).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub php: BTreeMap<PhpVersion, PhpInstall>,
    /// nginx, supervisorctl and cron, when installed, by name.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// Every user in /etc/passwd.
    #[serde(default)]
    pub users: BTreeMap<String, UserFacts>,
    /// Every group in /etc/group, with its listed members.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Every managed or wanted path that exists; absent paths are missing.
    #[serde(default)]
    pub paths: BTreeMap<String, PathFacts>,
    /// The files reconciler wrote in earlier applies.
    #[serde(default)]
    pub manifest: Vec<String>,
    /// Reloads recorded by an earlier apply, waiting for a window.
    #[serde(default)]
    pub pending_reloads: Vec<String>,
    #[serde(default)]
    pub releases: BTreeMap<AppName, AppReleases>,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathKind::File => "file",
            PathKind::Directory => "directory",
            PathKind::Symlink => "symlink",
            PathKind::Other => "special file",
        })
    }
}

impl HostFacts {
    pub fn has_tool(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }
}

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

/// The script that gathers facts for `units`: the arrays it reads, then
/// gather.sh. Every value is quoted (paths and names are validated too;
/// quoting makes that not matter).
pub fn script(units: &HostUnits) -> String {
    let array = |name: &str, values: Vec<&str>| format!("{name}=({})\n", quote_all(values));
    let sums: Vec<String> = units.files.iter().map(|f| f.sha256()).collect();
    let mut script = String::new();
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
    script.push_str(GATHER_SCRIPT);
    script
}

/// Gathers the facts `units` needs from one host, in one round trip.
pub async fn gather(
    transport: &dyn Transport,
    units: &HostUnits,
) -> Result<HostFacts, GatherError> {
    let output = transport.run(&script(units)).await?;
    if !output.success() {
        return Err(GatherError::Script {
            status: output.status,
            stderr: output.stderr_text().trim().to_owned(),
        });
    }
    Ok(parse::parse(&output.stdout)?)
}

#[cfg(test)]
mod tests;
