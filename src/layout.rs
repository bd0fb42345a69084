//! Every path reconciler reads or writes on a server, in both directions.
//!
//! Units ask this module where an app's pool or vhost goes; the plan asks it
//! which config file a path is (to prune it with the right reload, or to
//! refuse a manifest entry reconciler could never have written); the remote
//! scripts get the same paths as variables in their header (`shell_vars`),
//! so no path is spelled twice. Nothing here touches a server or reads the
//! definitions: it maps names to paths and back.

use std::fmt;

use crate::definitions::{AppName, PhpVersion, names};

/// Where reconciler keeps its own state on a server: root's only (0700).
pub const STATE_DIR: &str = "/var/lib/reconciler";
/// The config files reconciler wrote, one path a line; only these are pruned.
pub const MANIFEST: &str = "/var/lib/reconciler/manifest";
/// Reloads recorded for a reload window, one service label a line.
pub const PENDING_RELOADS: &str = "/var/lib/reconciler/pending-reloads";
/// Present while an apply runs: its backups and the paths it staged, so
/// that an apply killed half-way is finished by the next one.
pub const JOURNAL: &str = "/var/lib/reconciler/journal";
/// Backups of the files an apply replaces, one directory per apply.
pub const BACKUPS: &str = "/var/lib/reconciler/backup";
/// The host lock (`flock`) every apply holds, and who holds it.
pub const LOCK: &str = "/var/lib/reconciler/lock";
/// Who holds `LOCK` (`user@machine (pid N)`), written by the holder.
pub const LOCK_HOLDER: &str = "/var/lib/reconciler/lock.holder";
/// A counter every apply raises once it holds the lock: a plan made before
/// another apply ran is stale even where its own files did not change.
pub const GENERATION: &str = "/var/lib/reconciler/generation";
/// Scripts and reports of the apply running detached from its SSH session.
pub const RUN_DIR: &str = "/var/lib/reconciler/run";
/// What every apply did, as JSON lines.
pub const APPLY_LOG: &str = "/var/lib/reconciler/apply.log";
/// The app users reconciler created, one name a line.
pub const USERS: &str = "/var/lib/reconciler/users";

/// Where app homes live; `/home` itself is root's.
pub const HOME_ROOT: &str = "/home";
/// Per-app directories for the logs that root daemons (supervisord, nginx,
/// the php-fpm master) open: root-owned, readable by the app's group, so an
/// app can never plant a symlink where root opens a file.
pub const LOG_ROOT: &str = "/var/log/reconciler";

/// The user nginx runs as on Debian; it joins each web app's group to read
/// the app's public files, which nobody else can.
pub const WEB_USER: &str = "www-data";

/// Which PHP SAPI a php.ini override is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sapi {
    /// The command line (`php`), for workers, the scheduler and releases.
    Cli,
    /// php-fpm, for web requests.
    Fpm,
}

impl Sapi {
    fn dir(self) -> &'static str {
        match self {
            Sapi::Cli => "cli",
            Sapi::Fpm => "fpm",
        }
    }
}

/// A config file reconciler writes, by what it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigFile {
    /// `/etc/php/<v>/<sapi>/conf.d/99-reconciler.ini`
    PhpIni {
        /// The PHP version (`8.2`).
        version: PhpVersion,
        /// Which SAPI's `conf.d`.
        sapi: Sapi,
    },
    /// `/etc/php/<v>/fpm/pool.d/_reconciler-global.conf` (`_` cannot start
    /// an app name, so it never collides with a pool)
    FpmGlobal {
        /// The PHP version (`8.2`).
        version: PhpVersion,
    },
    /// `/etc/php/<v>/fpm/pool.d/<app>.conf`
    FpmPool {
        /// The PHP version (`8.2`).
        version: PhpVersion,
        /// The app.
        app: AppName,
    },
    /// `/etc/nginx/sites-enabled/<app>.conf`
    Vhost {
        /// The app.
        app: AppName,
    },
    /// `/etc/supervisor/conf.d/<app>.conf`
    Supervisor {
        /// The app.
        app: AppName,
    },
    /// `/etc/cron.d/<app>`
    Cron {
        /// The app.
        app: AppName,
    },
    /// `/etc/logrotate.d/reconciler-<app>`: the rotation of every log file
    /// reconciler has a daemon or cron write for an app (logrotate reads
    /// it on each run, like cron.d). The prefix keeps it apart from the
    /// rules of Debian's packages (`nginx`, `php8.2-fpm`).
    Logrotate {
        /// The app.
        app: AppName,
    },
    /// `/usr/local/lib/reconciler/opcache-status.php`: what reconciler's
    /// status pool runs to report OPcache figures.
    OpcacheStatus,
    /// `/usr/local/lib/reconciler/opcache-warm.php`: what a release runs in
    /// the app's own pool to compile its files into OPcache before the
    /// switch.
    OpcacheWarm,
    /// `/usr/local/lib/reconciler/php/<v>/php`: runs `php<v>`, first in
    /// the PATH of an app's workers, scheduler and release commands, so
    /// that their `php` is the app's version whatever the server's default.
    PhpShim {
        /// The PHP version (`8.2`).
        version: PhpVersion,
    },
}

const INI_NAME: &str = "99-reconciler.ini";
/// Root's directory for what reconciler itself needs on a server.
pub const LIB_DIR: &str = "/usr/local/lib/reconciler";
const OPCACHE_STATUS: &str = "/usr/local/lib/reconciler/opcache-status.php";
const OPCACHE_WARM: &str = "/usr/local/lib/reconciler/opcache-warm.php";
/// Where the `php` of each PHP version is (`ConfigFile::PhpShim`).
pub const PHP_SHIMS: &str = "/usr/local/lib/reconciler/php";
/// The PATH of what runs for an app, after its PHP version's directory.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const FPM_GLOBAL_NAME: &str = "_reconciler-global.conf";
/// logrotate's directory of rules (`ConfigFile::Logrotate`).
const LOGROTATE_DIR: &str = "/etc/logrotate.d";

impl ConfigFile {
    /// The file's absolute path.
    pub fn path(&self) -> String {
        match self {
            ConfigFile::PhpIni { version, sapi } => {
                format!("/etc/php/{version}/{}/conf.d/{INI_NAME}", sapi.dir())
            }
            ConfigFile::FpmGlobal { version } => {
                format!("/etc/php/{version}/fpm/pool.d/{FPM_GLOBAL_NAME}")
            }
            ConfigFile::FpmPool { version, app } => {
                format!("/etc/php/{version}/fpm/pool.d/{app}.conf")
            }
            ConfigFile::Vhost { app } => format!("/etc/nginx/sites-enabled/{app}.conf"),
            ConfigFile::Supervisor { app } => format!("/etc/supervisor/conf.d/{app}.conf"),
            ConfigFile::Cron { app } => format!("/etc/cron.d/{app}"),
            ConfigFile::Logrotate { app } => format!("{LOGROTATE_DIR}/reconciler-{app}"),
            ConfigFile::OpcacheStatus => OPCACHE_STATUS.into(),
            ConfigFile::OpcacheWarm => OPCACHE_WARM.into(),
            ConfigFile::PhpShim { version } => format!("{}/php", php_dir(version)),
        }
    }

    /// What `path` is, if it is exactly a path reconciler writes; `None`
    /// for anything else, so that a manifest entry such as
    /// `/root/secret.txt` or `/etc/nginx/../shadow` is never acted on.
    pub fn parse(path: &str) -> Option<ConfigFile> {
        let app = |stem: &str| names::is_valid(stem).then(|| AppName::new(stem));
        if let Some(rest) = path.strip_prefix("/etc/php/") {
            let (version, rest) = rest.split_once('/')?;
            let version = PhpVersion::new(version);
            if !version.is_valid() {
                return None;
            }
            return match rest.split('/').collect::<Vec<_>>()[..] {
                ["cli", "conf.d", INI_NAME] => Some(ConfigFile::PhpIni {
                    version,
                    sapi: Sapi::Cli,
                }),
                ["fpm", "conf.d", INI_NAME] => Some(ConfigFile::PhpIni {
                    version,
                    sapi: Sapi::Fpm,
                }),
                ["fpm", "pool.d", FPM_GLOBAL_NAME] => Some(ConfigFile::FpmGlobal { version }),
                ["fpm", "pool.d", file] => Some(ConfigFile::FpmPool {
                    version,
                    app: app(file.strip_suffix(".conf")?)?,
                }),
                _ => None,
            };
        }
        if let Some(file) = path.strip_prefix("/etc/nginx/sites-enabled/") {
            return Some(ConfigFile::Vhost {
                app: app(file.strip_suffix(".conf")?)?,
            });
        }
        if let Some(file) = path.strip_prefix("/etc/supervisor/conf.d/") {
            return Some(ConfigFile::Supervisor {
                app: app(file.strip_suffix(".conf")?)?,
            });
        }
        if let Some(file) = path.strip_prefix("/etc/cron.d/") {
            return Some(ConfigFile::Cron { app: app(file)? });
        }
        if let Some(file) = path.strip_prefix(LOGROTATE_DIR) {
            return Some(ConfigFile::Logrotate {
                app: app(file.strip_prefix("/reconciler-")?)?,
            });
        }
        if let Some(rest) = path.strip_prefix(PHP_SHIMS) {
            let version = PhpVersion::new(rest.strip_prefix('/')?.strip_suffix("/php")?);
            return version
                .is_valid()
                .then_some(ConfigFile::PhpShim { version });
        }
        match path {
            OPCACHE_STATUS => Some(ConfigFile::OpcacheStatus),
            OPCACHE_WARM => Some(ConfigFile::OpcacheWarm),
            _ => None,
        }
    }

    /// The app a per-app file belongs to; `None` for cluster-wide files.
    pub fn app(&self) -> Option<&AppName> {
        match self {
            ConfigFile::PhpIni { .. }
            | ConfigFile::FpmGlobal { .. }
            | ConfigFile::OpcacheStatus
            | ConfigFile::OpcacheWarm
            | ConfigFile::PhpShim { .. } => None,
            ConfigFile::FpmPool { app, .. }
            | ConfigFile::Vhost { app }
            | ConfigFile::Supervisor { app }
            | ConfigFile::Cron { app }
            | ConfigFile::Logrotate { app } => Some(app),
        }
    }
}

impl fmt::Display for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// The paths of one app on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPaths {
    /// `/home/<app>`: the app user's home, owned by the app.
    pub home: String,
    /// `/home/<app>/releases`: one directory per release.
    pub releases: String,
    /// `/home/<app>/current`: the link to the live release.
    pub current: String,
    /// `/home/<app>/shared`: what every release shares.
    pub shared: String,
    /// `/var/log/reconciler/<app>`: root's, for logs root daemons open.
    pub logs: String,
}

impl AppPaths {
    /// The paths of `app`, under `HOME_ROOT` and `LOG_ROOT`.
    pub fn new(app: &AppName) -> Self {
        let home = format!("{HOME_ROOT}/{app}");
        Self {
            releases: format!("{home}/releases"),
            current: format!("{home}/current"),
            shared: format!("{home}/shared"),
            logs: format!("{LOG_ROOT}/{app}"),
            home,
        }
    }

    /// The commands, run as the app, that hand a `current` directory (an
    /// adopted app's code) to releases and keep it served: it moves aside
    /// to `current.adopted` and `current` links to it, which a release
    /// then replaces.
    pub fn adopt_current(&self) -> String {
        format!(
            "cd {} && mv current current.adopted && ln -s current.adopted current",
            self.home
        )
    }

    /// The app whose `current` link `path` is.
    pub fn app_of_current(path: &str) -> Option<AppName> {
        let app = path.strip_prefix(HOME_ROOT)?.strip_prefix('/')?;
        let app = app.strip_suffix("/current")?;
        names::is_valid(app).then(|| AppName::new(app))
    }

    /// The app and release (a 40-hex commit id) of the release directory
    /// `path`, `/home/<app>/releases/<sha>`.
    pub fn release_of(path: &str) -> Option<(AppName, &str)> {
        let rest = path.strip_prefix(HOME_ROOT)?.strip_prefix('/')?;
        let (app, sha) = rest.split_once("/releases/")?;
        let is_sha = sha.len() == 40
            && sha
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        (names::is_valid(app) && is_sha).then(|| (AppName::new(app), sha))
    }
}

/// Root's records of an app's releases on a server: its lock, which
/// releases are complete, the release log.
pub fn app_state_dir(app: &AppName) -> String {
    format!("{STATE_DIR}/apps/{app}")
}

/// The directory whose `php` runs PHP `version`.
pub fn php_dir(version: &PhpVersion) -> String {
    format!("{PHP_SHIMS}/{version}")
}

/// The PATH of an app's workers, scheduler and release commands: `php` is
/// the app's PHP version.
pub fn app_path(version: &PhpVersion) -> String {
    format!("{}:{SYSTEM_PATH}", php_dir(version))
}

/// The socket of an app's PHP-FPM pool; `/run/php` is root's.
pub fn fpm_socket(app: &AppName, php: &PhpVersion) -> String {
    format!("/run/php/php{php}-fpm-{app}.sock")
}

/// The socket of reconciler's own php-fpm pool, which reports OPcache
/// figures: root's alone (0600).
pub fn fpm_status_socket(php: &PhpVersion) -> String {
    FPM_STATUS_SOCKET.replace("%s", php.as_str())
}

/// The pid file of php-fpm `php`'s master (Debian's `pid =`): logrotate
/// sends it USR1 to reopen the logs it writes.
pub fn fpm_pid(php: &PhpVersion) -> String {
    format!("/run/php/php{php}-fpm.pid")
}

/// `fpm_status_socket` for the scripts: `%s` is the PHP version.
const FPM_STATUS_SOCKET: &str = "/run/php/php%s-fpm-_reconciler-status.sock";

/// Patterns of every path `ConfigFile::parse` accepts (and more: Rust
/// checks each path again with `parse`), with `*` for one path segment of
/// letters, digits, `.`, `_` and `-`; the scripts get them as one extended
/// regular expression, `CONFIG_PATHS`, and also refuse `..`.
const CONFIG_GLOBS: &[&str] = &[
    "/etc/php/*/cli/conf.d/99-reconciler.ini",
    "/etc/php/*/fpm/conf.d/99-reconciler.ini",
    "/etc/php/*/fpm/pool.d/*.conf",
    "/etc/nginx/sites-enabled/*.conf",
    "/etc/supervisor/conf.d/*.conf",
    "/etc/cron.d/*",
    "/etc/logrotate.d/reconciler-*",
    OPCACHE_STATUS,
    OPCACHE_WARM,
    "/usr/local/lib/reconciler/php/*/php",
];

/// The layout's paths as the remote scripts get them, first in their
/// header (`remote::Script::new`): `STATE`, `MANIFEST`, ... and
/// `CONFIG_PATHS`, the extended regular expression of every config path
/// reconciler may write.
pub fn shell_vars() -> Vec<(&'static str, String)> {
    let mut vars: Vec<(&'static str, String)> = [
        ("STATE", STATE_DIR),
        ("MANIFEST", MANIFEST),
        ("PENDING", PENDING_RELOADS),
        ("JOURNAL", JOURNAL),
        ("BACKUPS", BACKUPS),
        ("LOCK", LOCK),
        ("LOCK_HOLDER", LOCK_HOLDER),
        ("GENERATION", GENERATION),
        ("RUN_DIR", RUN_DIR),
        ("APPLY_LOG", APPLY_LOG),
        ("USERS_FILE", USERS),
        ("HOME_ROOT", HOME_ROOT),
        ("LOG_ROOT", LOG_ROOT),
        ("WEB_USER", WEB_USER),
        ("OPCACHE_STATUS", OPCACHE_STATUS),
        ("OPCACHE_WARM", OPCACHE_WARM),
        ("FPM_STATUS_SOCKET", FPM_STATUS_SOCKET),
        ("SYSTEM_PATH", SYSTEM_PATH),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect();
    vars.push(("CONFIG_PATHS", config_paths()));
    vars
}

/// `CONFIG_GLOBS` as one POSIX extended regular expression, for `grep -xE`.
fn config_paths() -> String {
    let alternatives: Vec<String> = CONFIG_GLOBS
        .iter()
        .map(|glob| {
            glob.split('*')
                .map(|literal| literal.replace('.', "\\."))
                .collect::<Vec<_>>()
                .join("[A-Za-z0-9._-]+")
        })
        .collect();
    format!("({})", alternatives.join("|"))
}

#[cfg(test)]
mod tests;
