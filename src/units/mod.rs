//! What each server should have: users, directories and files with their
//! exact content, rendered from the definitions.
//!
//! `render` is pure: definitions and templates in, `HostUnits` out. It does
//! not know what a server has now (that is `facts`) nor what to change
//! (that is `plan`). Paths and ownership live here, content in the templates.

mod templates;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::definitions::{
    App, AppName, AppServer, Cluster, Definitions, PhpVersion, ServerName, SessionHandler, Worker,
};
use crate::shell::quote;

pub use templates::{EMBEDDED, TemplateError, Templates};

/// Where reconciler keeps its own state on a server.
pub const STATE_DIR: &str = "/var/lib/reconciler";
/// The list of files reconciler manages on a server, one path a line.
pub const MANIFEST: &str = "/var/lib/reconciler/manifest";
/// Reloads waiting for a window, one service a line.
pub const PENDING_RELOADS: &str = "/var/lib/reconciler/pending-reloads";

/// The user nginx runs as on Debian; it joins each app's group to read the
/// app's public files, which nobody else can.
pub const WEB_USER: &str = "www-data";

/// A service that must validate and reload when its files change.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "service", rename_all = "kebab-case")]
pub enum Service {
    Nginx,
    PhpFpm {
        version: PhpVersion,
    },
    /// One supervisor group: reread, then `update <group>`.
    Supervisor {
        group: String,
    },
}

impl Service {
    /// The service a managed file belongs to, from its path alone, so that
    /// a file recorded in the manifest can be pruned with the right reload
    /// even after its unit left the definitions.
    pub fn for_path(path: &str) -> Option<Service> {
        if path.starts_with("/etc/nginx/") {
            return Some(Service::Nginx);
        }
        if let Some(rest) = path.strip_prefix("/etc/php/") {
            let (version, rest) = rest.split_once('/')?;
            return rest.starts_with("fpm/").then(|| Service::PhpFpm {
                version: PhpVersion::new(version),
            });
        }
        if let Some(file) = path.strip_prefix("/etc/supervisor/conf.d/") {
            return Some(Service::Supervisor {
                group: file.trim_end_matches(".conf").to_owned(),
            });
        }
        None
    }

    /// The service a label names; the inverse of `label`.
    pub fn from_label(label: &str) -> Option<Service> {
        if label == "nginx" {
            return Some(Service::Nginx);
        }
        if let Some(group) = label.strip_prefix("supervisor:") {
            return Some(Service::Supervisor {
                group: group.to_owned(),
            });
        }
        let version = label.strip_prefix("php")?.strip_suffix("-fpm")?;
        Some(Service::PhpFpm {
            version: PhpVersion::new(version),
        })
    }

    /// The name operators know it by: `nginx`, `php8.2-fpm`, `supervisor:shop`.
    pub fn label(&self) -> String {
        match self {
            Service::Nginx => "nginx".into(),
            Service::PhpFpm { version } => format!("php{version}-fpm"),
            Service::Supervisor { group } => format!("supervisor:{group}"),
        }
    }

    /// php-fpm reloads stall requests and flush OPcache: they wait for a
    /// reload window. The others are cheap and happen at once.
    pub fn is_expensive(&self) -> bool {
        matches!(self, Service::PhpFpm { .. })
    }
}

/// A file reconciler writes, with its exact content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedFile {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    pub content: String,
}

impl ManagedFile {
    /// The hex sha256 of the content, as `sha256sum` prints it.
    pub fn sha256(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(Sha256::digest(self.content.as_bytes()))
    }

    fn root(path: String, content: String) -> Self {
        Self {
            path,
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            content,
        }
    }
}

/// An app's system user: its own group, its home, no login shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUser {
    pub name: AppName,
    pub home: String,
    /// Whether nginx's user joins this app's group (web roles only).
    pub web: bool,
}

/// A directory with its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

/// Everything one server should have, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostUnits {
    pub users: Vec<AppUser>,
    pub directories: Vec<Directory>,
    pub files: Vec<ManagedFile>,
    /// PHP versions this host needs installed, to check against its facts.
    pub php_versions: BTreeSet<PhpVersion>,
    /// Whether this host needs nginx, supervisor and cron.
    pub needs: Needs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    pub nginx: bool,
    pub php_fpm: bool,
    pub supervisor: bool,
    pub cron: bool,
}

/// Which units a plan covers: everything, or some apps' units only.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// When set, only these apps' units are planned (and pruned); the
    /// cluster-wide files (php.ini, FPM global) are left out.
    pub apps: Option<BTreeSet<AppName>>,
}

impl Scope {
    /// Whether the file at `path` falls within this scope.
    pub fn covers(&self, path: &str) -> bool {
        match &self.apps {
            None => true,
            Some(apps) => app_of_path(path).is_some_and(|app| apps.contains(&app)),
        }
    }

    fn covers_app(&self, app: &AppName) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(app))
    }
}

/// The part of `units` within `scope`.
pub fn filter(units: &HostUnits, scope: &Scope) -> HostUnits {
    if scope.apps.is_none() {
        return units.clone();
    }
    let in_app_home = |path: &str| {
        units.users.iter().any(|u| {
            scope.covers_app(&u.name)
                && (path == u.home || path.starts_with(&format!("{}/", u.home)))
        })
    };
    HostUnits {
        users: units
            .users
            .iter()
            .filter(|u| scope.covers_app(&u.name))
            .cloned()
            .collect(),
        directories: units
            .directories
            .iter()
            .filter(|d| in_app_home(&d.path))
            .cloned()
            .collect(),
        files: units
            .files
            .iter()
            .filter(|f| scope.covers(&f.path))
            .cloned()
            .collect(),
        php_versions: units.php_versions.clone(),
        needs: units.needs,
    }
}

/// The app a per-app file belongs to, from its path alone (for pruning
/// within `--app` filters); `None` for cluster-wide files.
pub fn app_of_path(path: &str) -> Option<AppName> {
    let stem = if let Some(rest) = path.strip_prefix("/etc/php/") {
        rest.split_once("/fpm/pool.d/")?.1.strip_suffix(".conf")?
    } else if let Some(file) = path.strip_prefix("/etc/nginx/sites-enabled/") {
        file.strip_suffix(".conf")?
    } else if let Some(file) = path.strip_prefix("/etc/supervisor/conf.d/") {
        file.strip_suffix(".conf")?
    } else {
        path.strip_prefix("/etc/cron.d/")?
    };
    crate::definitions::names::is_valid(stem).then(|| AppName::new(stem))
}

/// The home of an app's user.
pub fn home(app: &AppName) -> String {
    format!("/home/{app}")
}

/// The PHP-FPM socket of an app's pool.
pub fn fpm_socket(app: &AppName, php: &PhpVersion) -> String {
    format!("/run/php/php{php}-fpm-{app}.sock")
}

/// Renders what `server` of `cluster` should have.
pub fn render(
    definitions: &Definitions,
    cluster: &Cluster,
    server: &ServerName,
    templates: &Templates,
) -> Result<HostUnits, TemplateError> {
    let mut units = HostUnits::default();
    let is_web = cluster
        .servers
        .iter()
        .any(|s| &s.name == server && s.web_server);
    units.php_versions = cluster.php.iter().cloned().collect();

    for version in &cluster.php {
        let ini = |fpm: bool| php_ini(cluster, templates, fpm);
        units.files.push(ManagedFile::root(
            format!("/etc/php/{version}/cli/conf.d/99-reconciler.ini"),
            ini(false)?,
        ));
        if is_web {
            units.files.push(ManagedFile::root(
                format!("/etc/php/{version}/fpm/conf.d/99-reconciler.ini"),
                ini(true)?,
            ));
            // `_` cannot start an app name, so this never collides with a pool.
            units.files.push(ManagedFile::root(
                format!("/etc/php/{version}/fpm/pool.d/_reconciler-global.conf"),
                templates.render(
                    "fpm-global.conf.hbs",
                    &json!({ "cluster": cluster.name, "duration": cluster.request.duration }),
                )?,
            ));
            units.needs.php_fpm = true;
            units.needs.nginx = true;
        }
    }

    let mut apps: Vec<(&App, &AppServer)> = definitions
        .apps
        .iter()
        .filter(|app| app.cluster == cluster.name)
        .filter_map(|app| {
            app.servers
                .iter()
                .find(|r| &r.name == server)
                .map(|r| (app, r))
        })
        .collect();
    apps.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    for (app, role) in apps {
        render_app(&mut units, cluster, app, role, templates)?;
    }
    Ok(units)
}

fn render_app(
    units: &mut HostUnits,
    cluster: &Cluster,
    app: &App,
    role: &AppServer,
    templates: &Templates,
) -> Result<(), TemplateError> {
    let name = &app.name;
    let home = home(name);
    let dir = |path: String, mode: u32| Directory {
        path,
        owner: name.to_string(),
        group: name.to_string(),
        mode,
    };
    units.users.push(AppUser {
        name: name.clone(),
        home: home.clone(),
        web: role.web.is_some(),
    });
    units.directories.push(dir(home.clone(), 0o750));
    units
        .directories
        .push(dir(format!("{home}/releases"), 0o755));
    units.directories.push(dir(format!("{home}/shared"), 0o755));
    if !role.workers.is_empty() || role.scheduler {
        units
            .directories
            .push(dir(format!("{home}/shared/storage"), 0o755));
        units
            .directories
            .push(dir(format!("{home}/shared/storage/logs"), 0o755));
    }

    let duration = cluster.request.duration;
    if let Some(pool) = &role.web {
        let socket = fpm_socket(name, &app.php);
        units.files.push(ManagedFile::root(
            format!("/etc/php/{}/fpm/pool.d/{name}.conf", app.php),
            templates.render(
                "fpm-pool.conf.hbs",
                &json!({
                    "app": name, "user": name, "socket": socket, "duration": duration,
                    "max_workers": pool.max_workers,
                    "initial_workers": pool.initial_workers,
                    "min_spare_workers": pool.min_spare_workers,
                    "max_spare_workers": pool.max_spare_workers,
                }),
            )?,
        ));
        units.files.push(ManagedFile::root(
            format!("/etc/nginx/sites-enabled/{name}.conf"),
            templates.render(
                "nginx-vhost.conf.hbs",
                &json!({
                    "app": name, "home": home, "socket": socket, "domains": app.domains,
                    "payload": cluster.request.payload, "duration": duration,
                }),
            )?,
        ));
        units.needs.nginx = true;
        units.needs.php_fpm = true;
    }
    if !role.workers.is_empty() {
        let workers: Vec<_> = role.workers.iter().map(|w| worker(name, w)).collect();
        let programs: Vec<String> = role.workers.iter().map(|w| program_name(name, w)).collect();
        units.files.push(ManagedFile::root(
            format!("/etc/supervisor/conf.d/{name}.conf"),
            templates.render(
                "supervisor.conf.hbs",
                &json!({
                    "app": name, "user": name, "home": home, "workers": workers,
                    "programs": programs.join(","),
                }),
            )?,
        ));
        units.needs.supervisor = true;
    }
    if role.scheduler {
        units.files.push(ManagedFile::root(
            format!("/etc/cron.d/{name}"),
            templates.render(
                "cron.hbs",
                &json!({ "app": name, "user": name, "home": home, "php": app.php }),
            )?,
        ));
        units.needs.cron = true;
    }
    Ok(())
}

fn program_name(app: &AppName, worker: &Worker) -> String {
    format!("{app}-{}", worker.name)
}

fn worker(app: &AppName, worker: &Worker) -> serde_json::Value {
    // supervisor splits `command` like a shell would but runs no shell; sh
    // gives the command its shell syntax, `exec` keeps signals going to it.
    // `%` starts a supervisor expansion, so it is doubled.
    let command = format!("/bin/sh -c {}", quote(&format!("exec {}", worker.command)));
    json!({
        "program": program_name(app, worker),
        "name": worker.name,
        "command": command.replace('%', "%%"),
        "processes": worker.processes,
        "stop_wait": worker.stop_wait,
    })
}

fn php_ini(cluster: &Cluster, templates: &Templates, fpm: bool) -> Result<String, TemplateError> {
    let sessions = &cluster.sessions;
    let locking = sessions.locking.unwrap_or(true);
    let flag = |on: bool| if on { "1" } else { "0" };
    let mut session_settings: Vec<(&str, String)> = Vec::new();
    let handler = match sessions.handler {
        SessionHandler::Files => "files",
        SessionHandler::Redis => {
            session_settings.push(("redis.session.locking_enabled", flag(locking).into()));
            if locking {
                // Wait for a session's lock as long as a request may run:
                // 20 ms a try.
                session_settings.push((
                    "redis.session.lock_expire",
                    cluster.request.duration.to_string(),
                ));
                session_settings.push(("redis.session.lock_wait_time", "20000".into()));
                session_settings.push((
                    "redis.session.lock_retries",
                    (u64::from(cluster.request.duration) * 50).to_string(),
                ));
            }
            "redis"
        }
        SessionHandler::Memcached => {
            session_settings.push(("memcached.sess_locking", flag(locking).into()));
            "memcached"
        }
    };
    let ini_pairs = |pairs: Vec<(&str, String)>| {
        pairs
            .into_iter()
            .map(|(key, value)| json!({ "key": key, "value": value }))
            .collect::<Vec<_>>()
    };
    let php_ini: Vec<(&str, String)> = cluster
        .php_ini
        .iter()
        .map(|(k, v)| (k.as_str(), ini_value(v)))
        .collect();
    templates.render(
        "php.ini.hbs",
        &json!({
            "cluster": cluster.name,
            "fpm": fpm,
            "memory": cluster.request.memory,
            "duration": cluster.request.duration,
            "payload": cluster.request.payload,
            "session_handler": handler,
            "session_save_path": sessions.save_path.as_deref().map(|p| format!("\"{p}\"")),
            "session_settings": ini_pairs(session_settings),
            "php_ini": ini_pairs(php_ini),
        }),
    )
}

/// A php.ini value: strings in double quotes (validation refuses `"` and
/// control characters in them), the rest as PHP reads them.
fn ini_value(value: &crate::definitions::values::IniValue) -> String {
    use crate::definitions::values::IniValue;
    match value {
        IniValue::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
