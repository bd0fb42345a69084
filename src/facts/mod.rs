//! What a server has now: `HostFacts`, plain serde data.
//!
//! Planning reads facts and never talks to a server; tests load facts from
//! YAML fixtures. How facts are gathered (one read-only script per host,
//! one round trip) is `gather`, kept apart so that `plan` does not depend
//! on anything that touches a transport.

mod gather;
mod parse;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::definitions::{AppName, PhpVersion};
use crate::layout::AppPaths;

pub use gather::{GatherError, fastcgi_client, gather, script};
pub use parse::ParseError;

/// The init system, which decides how services are reloaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Init {
    /// systemd runs as PID 1: services are driven by `systemctl`.
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
    /// The numeric user id, from /etc/passwd.
    pub uid: u32,
    /// The numeric id of its primary group.
    pub gid: u32,
    /// Its home directory, as /etc/passwd says.
    pub home: String,
    /// The login shell; system users have `/usr/sbin/nologin`.
    #[serde(default = "UserFacts::no_login")]
    pub shell: String,
}

impl UserFacts {
    fn no_login() -> String {
        "/usr/sbin/nologin".into()
    }

    /// Whether the user can log in with a shell.
    pub fn can_log_in(&self) -> bool {
        !matches!(
            self.shell.as_str(),
            "/usr/sbin/nologin" | "/sbin/nologin" | "/bin/false" | "/usr/bin/false" | ""
        )
    }
}

/// An apply that started and did not finish (the process was killed): the
/// files it staged were never validated, and their backups are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Journal {
    /// When it started, as the server's clock said (RFC 3339).
    pub started: String,
    /// Who ran it: `user@machine (pid N)`.
    pub holder: String,
    /// The config files it staged.
    #[serde(default)]
    pub staged: Vec<String>,
}

/// What kind of thing stands at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed: its own owner and mode).
    Symlink,
    /// Anything else: a socket, a FIFO, a device.
    Other,
}

/// A path that exists on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathFacts {
    /// What stands there.
    pub kind: PathKind,
    /// Its owner's user name (the uid's number when no user has it).
    pub owner: String,
    /// Its group's name (the gid's number when no group has it).
    pub group: String,
    /// Permission bits, such as 0o644.
    pub mode: u32,
    /// Its size in bytes.
    pub size: u64,
    /// Where a symlink points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The hex sha256 of a regular file's content, as `sha256sum` prints
    /// it; `None` for anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The text of a regular file up to 1 MiB whose content differs from
    /// what the units want (or that is not wanted at all), for diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// When it last changed (seconds since the epoch): for a `current`
    /// link, when a release went live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime: Option<i64>,
}

/// The OPcache of one php-fpm master, as `opcache_get_status(false)`
/// reports it (memory in bytes, times in seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Opcache {
    /// Whether OPcache is on in this php-fpm (`opcache_enabled`); when off,
    /// the other figures are 0.
    pub enabled: bool,
    /// Bytes of shared memory holding cached scripts (`used_memory`).
    pub memory_used: u64,
    /// Bytes of shared memory still free (`free_memory`).
    pub memory_free: u64,
    /// Bytes held by scripts that changed or were invalidated and wait for
    /// a restart of the cache (`wasted_memory`).
    pub memory_wasted: u64,
    /// Scripts in the cache (`num_cached_scripts`).
    pub cached_scripts: u64,
    /// Keys in the cache's hash table, scripts and their aliases
    /// (`num_cached_keys`).
    pub cached_keys: u64,
    /// The hash table's size (`max_cached_keys`, from
    /// `opcache.max_accelerated_files`).
    pub max_cached_keys: u64,
    /// Lookups served from the cache since it started (`hits`).
    pub hits: u64,
    /// Lookups that had to compile the script (`misses`).
    pub misses: u64,
    /// Times the cache restarted because its memory was full
    /// (`oom_restarts`).
    pub oom_restarts: u64,
    /// Times the cache restarted because its hash table was full
    /// (`hash_restarts`).
    pub hash_restarts: u64,
    /// When the cache started (the master's start or last reload), in
    /// seconds since the epoch; 0 when OPcache did not say.
    pub start_time: i64,
    /// Scripts cached per release directory (`/home/<app>/releases/<sha>`),
    /// counted by reconciler's status script: what each release costs the
    /// cache, and whether a release's code is cached at all.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub release_scripts: BTreeMap<String, u64>,
}

impl Opcache {
    /// Reads `opcache_get_status(false)` as JSON.
    pub fn from_status(json: &serde_json::Value) -> Self {
        let number = |group: &str, key: &str| json[group][key].as_u64().unwrap_or(0);
        Self {
            enabled: json["opcache_enabled"].as_bool().unwrap_or(false),
            memory_used: number("memory_usage", "used_memory"),
            memory_free: number("memory_usage", "free_memory"),
            memory_wasted: number("memory_usage", "wasted_memory"),
            cached_scripts: number("opcache_statistics", "num_cached_scripts"),
            cached_keys: number("opcache_statistics", "num_cached_keys"),
            max_cached_keys: number("opcache_statistics", "max_cached_keys"),
            hits: number("opcache_statistics", "hits"),
            misses: number("opcache_statistics", "misses"),
            oom_restarts: number("opcache_statistics", "oom_restarts"),
            hash_restarts: number("opcache_statistics", "hash_restarts"),
            start_time: json["opcache_statistics"]["start_time"]
                .as_i64()
                .unwrap_or(0),
            release_scripts: json["reconciler_release_scripts"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(dir, _)| AppPaths::release_of(dir).is_some())
                .filter_map(|(dir, count)| Some((dir.clone(), count.as_u64()?)))
                .collect(),
        }
    }

    /// Memory used and wasted, in percent of the cache's size.
    pub fn fill_percent(&self) -> u64 {
        let total = self.memory_used + self.memory_free + self.memory_wasted;
        if total == 0 {
            return 0;
        }
        (self.memory_used + self.memory_wasted) * 100 / total
    }

    /// Hits in percent of lookups, in tenths.
    pub fn hit_rate_permille(&self) -> u64 {
        let lookups = self.hits + self.misses;
        if lookups == 0 {
            return 0;
        }
        self.hits * 1000 / lookups
    }
}

/// Whether a system service runs, as its init system says
/// (`systemctl is-active`, or the `service` script's `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// The init system says it runs.
    Running,
    /// It does not run (stopped, failed, or never started).
    Stopped,
}

/// A supervisor process's state, as `supervisorctl status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ProgramState {
    /// Stopped by an operator, or never started (`autostart=false`).
    Stopped,
    /// Started, and not yet up for its `startsecs`.
    Starting,
    /// Up for at least its `startsecs`.
    Running,
    /// Exited too soon after starting; supervisord retries it.
    Backoff,
    /// Being stopped.
    Stopping,
    /// Exited on its own from `RUNNING` (expected or not).
    Exited,
    /// Could not be started: it failed `startretries` times.
    Fatal,
    /// supervisord does not know what state it is in.
    Unknown,
}

impl ProgramState {
    /// The state a `supervisorctl status` line names; `None` for any other
    /// word.
    pub fn from_word(word: &str) -> Option<Self> {
        Some(match word {
            "STOPPED" => Self::Stopped,
            "STARTING" => Self::Starting,
            "RUNNING" => Self::Running,
            "BACKOFF" => Self::Backoff,
            "STOPPING" => Self::Stopping,
            "EXITED" => Self::Exited,
            "FATAL" => Self::Fatal,
            "UNKNOWN" => Self::Unknown,
            _ => return None,
        })
    }

    /// The word `supervisorctl status` prints for it.
    pub fn word(self) -> &'static str {
        match self {
            Self::Stopped => "STOPPED",
            Self::Starting => "STARTING",
            Self::Running => "RUNNING",
            Self::Backoff => "BACKOFF",
            Self::Stopping => "STOPPING",
            Self::Exited => "EXITED",
            Self::Fatal => "FATAL",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Whether the process runs, or is on its way to (`STARTING`: it has
    /// been spawned and has not yet run for `startsecs`). `BACKOFF` (it
    /// died while starting and waits to retry), `FATAL`, `EXITED`,
    /// `STOPPED`, `STOPPING` and `UNKNOWN` do not.
    pub fn is_running(self) -> bool {
        matches!(self, Self::Running | Self::Starting)
    }
}

/// Whether `name` is a supervisor process name reconciler reads
/// (`group:program_00`): ASCII letters, digits, `_`, `-`, `.` and `:`,
/// starting with a letter or digit, at most 200 bytes. Anything else
/// (control characters, spaces, shell or supervisor syntax such as `*`)
/// is never planned, printed or passed on.
pub fn is_program_name(name: &str) -> bool {
    name.len() <= 200
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
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
    /// How its services are started and reloaded.
    pub init: Init,
    /// The user id scripts run as: 0, root (directly or through sudo).
    #[serde(default)]
    pub uid: u32,
    /// The PHP versions installed, with their binaries.
    #[serde(default)]
    pub php: BTreeMap<PhpVersion, PhpInstall>,
    /// nginx, supervisorctl and cron, when installed, by name.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
    /// The installed Debian packages (none where there is no dpkg).
    #[serde(default)]
    pub packages: BTreeSet<String>,
    /// Every user in /etc/passwd.
    #[serde(default)]
    pub users: BTreeMap<String, UserFacts>,
    /// Which of the apps' users appear in sudoers files.
    #[serde(default)]
    pub sudoers: BTreeSet<String>,
    /// The users reconciler itself created.
    #[serde(default)]
    pub created_users: BTreeSet<String>,
    /// Every group in /etc/group, with its listed members.
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Every managed or wanted path that exists; absent paths are missing.
    #[serde(default)]
    pub paths: BTreeMap<String, PathFacts>,
    /// The files reconciler wrote in earlier applies (only paths reconciler
    /// could have written: anything else in the file is left out).
    #[serde(default)]
    pub manifest: Vec<String>,
    /// Lines of the manifest file that name no path reconciler writes
    /// (left out of `manifest`, and dropped by the next apply).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub manifest_ignored: usize,
    /// The sha256 of the manifest file, so apply can tell it changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// An apply that was killed before it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<Journal>,
    /// Who holds the host lock, when an apply runs right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_holder: Option<String>,
    /// How many applies took the host lock so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// Reloads recorded by an earlier apply, waiting for a window.
    #[serde(default)]
    pub pending_reloads: Vec<String>,
    /// Each app's releases and `current` link, by app.
    #[serde(default)]
    pub releases: BTreeMap<AppName, AppReleases>,
    /// The OPcache of each running php-fpm, by PHP version.
    #[serde(default)]
    pub opcache: BTreeMap<PhpVersion, Opcache>,
    /// Whether each installed service reconciler looks after runs, by the
    /// name its init system knows it by: `nginx`, `php8.2-fpm`,
    /// `supervisor`, `cron`. A service that is not here was not asked
    /// about (not installed).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceState>,
    /// Every supervisor process by its full name (`group:program_00`), as
    /// `supervisorctl status` lists them; `None` when supervisord could not
    /// be asked (it is not installed or not running). Only names
    /// `is_program_name` accepts are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub programs: Option<BTreeMap<String, ProgramState>>,
    /// Lines of `supervisorctl status` left out of `programs`: a name
    /// reconciler does not read, or a state it does not know.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub programs_unread: usize,
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

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

impl HostFacts {
    /// Whether `tool` (`nginx`, `supervisorctl`, `cron`) is installed.
    pub fn has_tool(&self, tool: &str) -> bool {
        self.tools.contains_key(tool)
    }
}

#[cfg(test)]
mod tests;

/// What gather.sh sends for a bare Debian server with the PHP stack, for
/// the tests of what stands on the facts.
#[cfg(test)]
pub(crate) fn bare_server() -> Vec<u8> {
    use crate::remote::protocol::encode_text;
    [
        encode_text("facts", &["2"]),
        encode_text("os", &["debian 12"]),
        encode_text("init", &["service"]),
        encode_text("uid", &["0"]),
        encode_text("php", &["8.2", "/usr/sbin/php-fpm8.2", "/usr/bin/php8.2"]),
        encode_text("tool", &["nginx", "/usr/sbin/nginx"]),
        encode_text("tool", &["supervisorctl", "/usr/bin/supervisorctl"]),
        encode_text("tool", &["cron", "/usr/sbin/cron"]),
        encode_text("user", &["root", "0", "0", "/root", "/bin/bash"]),
        encode_text(
            "user",
            &["www-data", "33", "33", "/var/www", "/usr/sbin/nologin"],
        ),
        encode_text("group", &["root", "0", ""]),
        encode_text("group", &["www-data", "33", ""]),
        encode_text("end", &[]),
    ]
    .concat()
}
