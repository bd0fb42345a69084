//! What each server should have: users, directories and files with their
//! exact content, rendered from the definitions.
//!
//! `render` is pure: definitions and templates in, `HostUnits` out. It does
//! not know what a server has now (that is `facts`) nor what to change
//! (that is `plan`). Paths come from `layout`, content from the templates,
//! and every free-text value passes through `escape` for its file's syntax.

pub mod escape;
mod templates;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::definitions::{
    App, AppName, AppServer, Cluster, ClusterName, Definitions, Diagnostic, PhpVersion, Server,
    ServerName, SessionHandler, Worker,
};
use crate::layout::{self, AppPaths, ConfigFile, Sapi};

pub use templates::{EMBEDDED, MAX_INCLUDE_DEPTH, TemplateError, Templates};

/// The script reconciler's status pool runs (not a template: nothing in it
/// depends on the definitions).
const OPCACHE_STATUS_SCRIPT: &str = include_str!("opcache-status.php");

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
        sha256(self.content.as_bytes())
    }

    fn root(file: ConfigFile, content: String) -> Self {
        Self {
            path: file.path(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o644,
            content,
        }
    }
}

/// The hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

/// An app's system user: its own group, its home, no login shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppUser {
    pub name: AppName,
    pub home: String,
    /// Whether nginx's user joins this app's group (web roles only).
    pub web: bool,
    /// Whether an existing user of that name may be taken over.
    #[serde(default)]
    pub adopt: bool,
}

/// A directory with its owner and mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
    /// The app whose home holds this directory: the app can replace any
    /// part of such a path, so apply creates and changes it as the app's
    /// user, never as root. `None` for directories in root's places.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inside_home_of: Option<AppName>,
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
    /// What must answer over HTTP on this host after php-fpm reloads: each
    /// web app's first domain and health check path.
    #[serde(default)]
    pub web_checks: Vec<WebCheck>,
    /// The Debian packages this host needs (`reconciler provision`).
    #[serde(default)]
    pub packages: BTreeSet<String>,
}

/// A request to this host's own nginx that must not fail (5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebCheck {
    pub app: AppName,
    pub domain: String,
    pub path: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    pub nginx: bool,
    pub php_fpm: bool,
    pub supervisor: bool,
    pub cron: bool,
}

/// Which units a plan covers: everything, or some apps' units only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
            Some(apps) => ConfigFile::parse(path)
                .and_then(|file| file.app().cloned())
                .is_some_and(|app| apps.contains(&app)),
        }
    }

    pub fn covers_app(&self, app: &AppName) -> bool {
        self.apps.as_ref().is_none_or(|apps| apps.contains(app))
    }
}

/// The part of `units` within `scope`.
pub fn filter(units: &HostUnits, scope: &Scope) -> HostUnits {
    if scope.apps.is_none() {
        return units.clone();
    }
    let of_app = |path: &str| {
        units.users.iter().any(|u| {
            let paths = AppPaths::new(&u.name);
            scope.covers_app(&u.name)
                && [&paths.home, &paths.logs]
                    .iter()
                    .any(|dir| path == dir.as_str() || path.starts_with(&format!("{dir}/")))
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
            .filter(|d| of_app(&d.path))
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
        packages: units.packages.clone(),
        web_checks: units
            .web_checks
            .iter()
            .filter(|c| scope.covers_app(&c.app))
            .cloned()
            .collect(),
    }
}

/// What one server of the definitions should have.
#[derive(Debug, Clone)]
pub struct HostDesired {
    pub server: Server,
    pub cluster: ClusterName,
    pub units: HostUnits,
}

/// What every server of the definitions should have: the definitions
/// rendered once, so that a template that fails for some app is found
/// before any server is contacted.
#[derive(Debug, Clone)]
pub struct Desired {
    pub hosts: Vec<HostDesired>,
}

impl Desired {
    /// Renders every server's units; every template that fails, as a
    /// diagnostic at the template's file and line.
    pub fn render(definitions: &Definitions) -> Result<Self, Vec<Diagnostic>> {
        let templates = Templates::new(&definitions.templates)?;
        let mut hosts = Vec::new();
        let mut problems = Vec::new();
        for (cluster, server) in definitions.servers() {
            match render(definitions, cluster, &server.name, &templates) {
                Ok(units) => hosts.push(HostDesired {
                    server: server.clone(),
                    cluster: cluster.name.clone(),
                    units,
                }),
                Err((error, context)) => {
                    // One diagnostic per place in a template: the first
                    // app it fails for says enough.
                    let context = format!("{context} on server `{}`", server.name);
                    let diagnostic = templates.diagnostic(&error, &context);
                    let seen = problems.iter().any(|p: &Diagnostic| {
                        p.file == diagnostic.file && p.position == diagnostic.position
                    });
                    if !seen {
                        problems.push(diagnostic);
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(Self { hosts })
        } else {
            Err(problems)
        }
    }

    pub fn host(&self, server: &ServerName) -> Option<&HostDesired> {
        self.hosts.iter().find(|h| &h.server.name == server)
    }
}

/// A render error and what was being rendered (`for app `shop``).
type RenderFailure = (TemplateError, String);

/// Renders what `server` of `cluster` should have.
pub fn render(
    definitions: &Definitions,
    cluster: &Cluster,
    server: &ServerName,
    templates: &Templates,
) -> Result<HostUnits, RenderFailure> {
    let mut units = HostUnits::default();
    let is_web = cluster
        .servers
        .iter()
        .any(|s| &s.name == server && s.web_server);
    units.php_versions = cluster.php.iter().cloned().collect();
    let for_cluster = |e| (e, format!("for cluster `{}`", cluster.name));

    for version in &cluster.php {
        let ini = |fpm: bool| php_ini(cluster, templates, fpm).map_err(for_cluster);
        let file = |sapi| ConfigFile::PhpIni {
            version: version.clone(),
            sapi,
        };
        units
            .files
            .push(ManagedFile::root(file(Sapi::Cli), ini(false)?));
        if is_web {
            units
                .files
                .push(ManagedFile::root(file(Sapi::Fpm), ini(true)?));
            units.files.push(ManagedFile::root(
                ConfigFile::FpmGlobal {
                    version: version.clone(),
                },
                templates
                    .render(
                        "fpm-global.conf.hbs",
                        &json!({
                            "cluster": cluster.name, "duration": cluster.request.duration,
                            "status_socket": layout::fpm_status_socket(version),
                            "status_script": ConfigFile::OpcacheStatus.path(),
                        }),
                    )
                    .map_err(for_cluster)?,
            ));
            units.needs.php_fpm = true;
            units.needs.nginx = true;
        }
    }
    // reconciler's own directory, and the `php` of each version: what
    // runs for an app finds its own PHP version first in its PATH.
    let root_dir = |path: String| Directory {
        path,
        owner: "root".into(),
        group: "root".into(),
        mode: 0o755,
        inside_home_of: None,
    };
    units.directories.push(root_dir(layout::LIB_DIR.into()));
    units.directories.push(root_dir(layout::PHP_SHIMS.into()));
    for version in &cluster.php {
        units.directories.push(root_dir(layout::php_dir(version)));
        units.files.push(ManagedFile {
            mode: 0o755,
            ..ManagedFile::root(
                ConfigFile::PhpShim {
                    version: version.clone(),
                },
                format!(
                    "#!/bin/sh\n# Managed by reconciler: PHP {version} for apps that run `php`.\nexec /usr/bin/php{version} \"$@\"\n"
                ),
            )
        });
    }
    if is_web {
        units.files.push(ManagedFile::root(
            ConfigFile::OpcacheStatus,
            OPCACHE_STATUS_SCRIPT.into(),
        ));
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
    if !apps.is_empty() {
        units.directories.push(Directory {
            path: layout::LOG_ROOT.into(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
            inside_home_of: None,
        });
    }
    for (app, role) in &apps {
        render_app(&mut units, cluster, app, role, templates)
            .map_err(|e| (e, format!("for app `{}`", app.name)))?;
    }
    let composer = apps.iter().any(|(app, _)| app.composer.is_some());
    units.packages = packages(cluster, &units.needs, composer);
    Ok(units)
}

/// The Debian packages a server with `needs` in `cluster` must have: each
/// PHP version's CLI (and FPM on web servers) with the cluster's extensions
/// and what its session store needs, nginx, supervisor, cron and composer
/// where they are used, and the cluster's own `packages`.
fn packages(cluster: &Cluster, needs: &Needs, composer: bool) -> BTreeSet<String> {
    let mut packages: BTreeSet<String> = cluster.packages.iter().cloned().collect();
    let session_extension = match cluster.sessions.handler {
        SessionHandler::Files => None,
        SessionHandler::Redis => Some("redis"),
        SessionHandler::Memcached => Some("memcached"),
    };
    for v in &cluster.php {
        packages.insert(format!("php{v}-cli"));
        if needs.php_fpm {
            packages.insert(format!("php{v}-fpm"));
        }
        for ext in cluster
            .extensions
            .iter()
            .map(String::as_str)
            .chain(session_extension)
        {
            packages.insert(format!("php{v}-{ext}"));
        }
    }
    for (needed, package) in [
        (needs.nginx, "nginx"),
        (needs.supervisor, "supervisor"),
        (needs.cron, "cron"),
        (composer, "composer"),
    ] {
        if needed {
            packages.insert(package.to_owned());
        }
    }
    packages
}

fn render_app(
    units: &mut HostUnits,
    cluster: &Cluster,
    app: &App,
    role: &AppServer,
    templates: &Templates,
) -> Result<(), TemplateError> {
    let name = &app.name;
    let paths = AppPaths::new(name);
    let owned = |path: String, mode: u32, inside: bool| Directory {
        path,
        owner: name.to_string(),
        group: name.to_string(),
        mode,
        inside_home_of: inside.then(|| name.clone()),
    };
    units.users.push(AppUser {
        name: name.clone(),
        home: paths.home.clone(),
        web: role.web.is_some(),
        adopt: app.adopt_user,
    });
    units
        .directories
        .push(owned(paths.home.clone(), 0o750, false));
    units
        .directories
        .push(owned(paths.releases.clone(), 0o755, true));
    units
        .directories
        .push(owned(paths.shared.clone(), 0o755, true));
    if role.scheduler || role.web.is_some() {
        // Laravel's own logs, PHP's errors and the scheduler's (cron runs
        // it as the app).
        units
            .directories
            .push(owned(format!("{}/storage", paths.shared), 0o755, true));
        units
            .directories
            .push(owned(format!("{}/storage/logs", paths.shared), 0o755, true));
    }
    // Logs that root daemons open: root's directory, the app's group reads.
    units.directories.push(Directory {
        path: paths.logs.clone(),
        owner: "root".into(),
        group: name.to_string(),
        mode: 0o750,
        inside_home_of: None,
    });

    let duration = cluster.request.duration;
    if let Some(pool) = &role.web {
        let socket = layout::fpm_socket(name, &app.php);
        units.files.push(ManagedFile::root(
            ConfigFile::FpmPool {
                version: app.php.clone(),
                app: name.clone(),
            },
            templates.render(
                "fpm-pool.conf.hbs",
                &json!({
                    "app": name, "user": name, "socket": socket, "duration": duration,
                    "logs": paths.logs, "shared": paths.shared,
                    "max_workers": pool.max_workers,
                    "initial_workers": pool.initial_workers,
                    "min_spare_workers": pool.min_spare_workers,
                    "max_spare_workers": pool.max_spare_workers,
                }),
            )?,
        ));
        units.files.push(ManagedFile::root(
            ConfigFile::Vhost { app: name.clone() },
            templates.render(
                "nginx-vhost.conf.hbs",
                &json!({
                    "app": name, "home": paths.home, "current": paths.current,
                    "socket": socket, "domains": app.domains, "logs": paths.logs,
                    "payload": cluster.request.payload, "duration": duration,
                }),
            )?,
        ));
        units.needs.nginx = true;
        units.needs.php_fpm = true;
        if let Some(domain) = app.domains.first() {
            units.web_checks.push(WebCheck {
                app: name.clone(),
                domain: domain.clone(),
                path: app
                    .health_check
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |h| h.path.clone()),
            });
        }
    }
    if !role.workers.is_empty() {
        let workers: Vec<_> = role.workers.iter().map(|w| worker(name, w)).collect();
        let programs: Vec<String> = role.workers.iter().map(|w| program_name(name, w)).collect();
        units.files.push(ManagedFile::root(
            ConfigFile::Supervisor { app: name.clone() },
            templates.render(
                "supervisor.conf.hbs",
                &json!({
                    "app": name, "user": name, "home": paths.home, "current": paths.current,
                    "logs": paths.logs, "workers": workers, "programs": programs.join(","),
                    "path": layout::app_path(&app.php),
                }),
            )?,
        ));
        units.needs.supervisor = true;
    }
    if role.scheduler {
        units.files.push(ManagedFile::root(
            ConfigFile::Cron { app: name.clone() },
            templates.render(
                "cron.hbs",
                &json!({
                    "app": name, "user": name, "home": paths.home, "current": paths.current,
                    "shared": paths.shared, "php": app.php,
                    "path": layout::app_path(&app.php),
                }),
            )?,
        ));
        units.needs.cron = true;
    }
    Ok(())
}

/// The supervisor program of a worker: `<app>-<worker>`.
pub fn program_name(app: &AppName, worker: &Worker) -> String {
    format!("{app}-{}", worker.name)
}

fn worker(app: &AppName, worker: &Worker) -> serde_json::Value {
    json!({
        "program": program_name(app, worker),
        "name": worker.name,
        "command": escape::supervisor_command(&worker.command),
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
            // Consistent hashing: a lost node moves only its own keys; with
            // replicas, another node has a copy of each of them.
            session_settings.push(("memcached.sess_consistent_hash", "1".into()));
            let replicas = sessions.replicas.unwrap_or(0);
            if replicas > 0 {
                session_settings.push(("memcached.sess_binary_protocol", "1".into()));
                session_settings.push(("memcached.sess_number_of_replicas", replicas.to_string()));
                session_settings.push(("memcached.sess_randomize_replica_read", "0".into()));
                session_settings.push(("memcached.sess_remove_failed_servers", "1".into()));
                session_settings.push(("memcached.sess_server_failure_limit", "1".into()));
                // A node that is gone is given up on within a second.
                session_settings.push(("memcached.sess_connect_timeout", "1000".into()));
            }
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
            // restrict_api allows the requests whose script (SCRIPT_FILENAME)
            // starts with this: reconciler's directory, and nothing beside it.
            "opcache_api": escape::php_ini_string(&format!("{}/", layout::LIB_DIR)),
            "session_handler": handler,
            "session_save_path": sessions.save_path.as_deref().map(escape::php_ini_string),
            "session_settings": ini_pairs(session_settings),
            "php_ini": ini_pairs(php_ini),
        }),
    )
}

/// A php.ini value: strings raw-quoted, the rest as PHP reads them.
fn ini_value(value: &crate::definitions::values::IniValue) -> String {
    use crate::definitions::values::IniValue;
    match value {
        IniValue::String(s) => escape::php_ini_string(s),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod parse_back;
#[cfg(test)]
mod tests;
