//! What each server should have: users, directories and files with their
//! exact content, rendered from the definitions.
//!
//! `render` is pure: definitions and templates in, `HostUnits` out. It does
//! not know what a server has now (that is `facts`) nor what to change
//! (that is `plan`). Paths come from `layout`, content from the templates,
//! and every free-text value passes through `escape` for its file's syntax.

/// Escaping of free-text values for each config file's syntax.
pub mod escape;
mod host;
/// One module per kind of unit (nginx, php-fpm, supervisor, cron, ...).
pub mod kinds;
mod templates;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::definitions::{
    AppName, ClusterName, Definitions, Diagnostic, PhpVersion, Server, ServerName, SharedKind,
};
use crate::layout::{AppPaths, ConfigFile};

pub use host::{RenderFailure, render};
pub use kinds::supervisor::program_name;
pub use templates::{EMBEDDED, MAX_INCLUDE_DEPTH, TemplateError, Templates};

/// The script reconciler's status pool runs (not a template: nothing in it
/// depends on the definitions).
const OPCACHE_STATUS_SCRIPT: &str = include_str!("opcache-status.php");
/// What a release runs in an app's pool to warm OPcache (`opcache_prewarm`).
const OPCACHE_WARM_SCRIPT: &str = include_str!("opcache-warm.php");

/// A file reconciler writes, with its exact content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManagedFile {
    /// Absolute path on the server, from `layout`.
    pub path: String,
    /// The user that owns the file (`root`, or an app's user).
    pub owner: String,
    /// The group that owns the file.
    pub group: String,
    /// Permission bits (`0o644`).
    pub mode: u32,
    /// The whole content, as rendered.
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
    /// The user's (and its group's) name: the app's name.
    pub name: AppName,
    /// Its home directory (`/home/<app>`), where its releases live.
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
    /// Absolute path on the server.
    pub path: String,
    /// The user that owns the directory.
    pub owner: String,
    /// The group that owns the directory.
    pub group: String,
    /// Permission bits (`0o750`).
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
    /// The system users of the apps this host runs, by name.
    pub users: Vec<AppUser>,
    /// Directories to create, parents before children.
    pub directories: Vec<Directory>,
    /// Config files to write, by path.
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
    /// The shared paths of this host's apps whose kind the definitions
    /// leave to the guess (a bare name): the plan points each one out.
    #[serde(default)]
    pub guessed_shared: Vec<GuessedShared>,
}

/// A shared path written as a bare name, and the kind guessed for it
/// (`SharedPath::kind`: a dot in its last name makes a file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuessedShared {
    /// The app whose `shared` list holds the path.
    pub app: AppName,
    /// Relative to the release root, as written.
    pub path: String,
    /// The kind guessed for it: a file or a directory.
    pub kind: SharedKind,
}

/// A request to this host's own nginx that must not fail (5xx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebCheck {
    /// The web app the request is for.
    pub app: AppName,
    /// Its first domain, sent as the `Host` header.
    pub domain: String,
    /// Its health check path (`/`, or the app's `health_check`).
    pub path: String,
}

/// Which system services a host needs, from its apps' roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// A web role runs here.
    pub nginx: bool,
    /// A web role runs here (its php-fpm pool serves nginx).
    pub php_fpm: bool,
    /// Some role here runs workers.
    pub supervisor: bool,
    /// Some role here runs scheduled commands.
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

    /// Whether `app`'s units fall within this scope.
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
        guessed_shared: units
            .guessed_shared
            .iter()
            .filter(|g| scope.covers_app(&g.app))
            .cloned()
            .collect(),
    }
}

/// What one server of the definitions should have.
#[derive(Debug, Clone)]
pub struct HostDesired {
    /// The server as its cluster file describes it.
    pub server: Server,
    /// The cluster it belongs to.
    pub cluster: ClusterName,
    /// Everything it should have.
    pub units: HostUnits,
}

/// What every server of the definitions should have: the definitions
/// rendered once, so that a template that fails for some app is found
/// before any server is contacted.
#[derive(Debug, Clone)]
pub struct Desired {
    /// One entry per server, in the definitions' order.
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

    /// What `server` should have; `None` when the definitions have no
    /// such server.
    pub fn host(&self, server: &ServerName) -> Option<&HostDesired> {
        self.hosts.iter().find(|h| &h.server.name == server)
    }
}

#[cfg(test)]
mod parse_back;
#[cfg(test)]
mod tests;
