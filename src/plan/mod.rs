//! What must change on each server: the difference between the units a
//! server should have and the facts it has.
//!
//! `plan_host` is a pure function: units, facts and options in, a sorted,
//! deterministic `HostPlan` out. It never sees a transport, a clock, git or
//! the filesystem. Rendering (text with diffs, JSON) lives in `render`.

mod diff;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::ServerName;
use crate::facts::{HostFacts, PathKind};
pub use crate::units::Scope;
use crate::units::{HostUnits, ManagedFile, Service, WEB_USER};

/// The version of the JSON plan format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// How a plan treats reloads.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    pub scope: Scope,
    /// Reload php-fpm at once instead of waiting for a reload window.
    pub reload_now: bool,
}

/// The whole plan, in server order.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Plan {
    /// The version of this format.
    pub format_version: u32,
    pub hosts: Vec<HostPlan>,
}

impl Plan {
    pub fn new(hosts: Vec<HostPlan>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            hosts,
        }
    }

    pub fn has_changes(&self) -> bool {
        self.hosts.iter().any(HostPlan::has_changes)
    }

    pub fn has_errors(&self) -> bool {
        self.hosts.iter().any(|h| h.error.is_some())
    }
}

/// What changes on one server.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HostPlan {
    pub server: ServerName,
    /// Why this host could not be planned (unreachable, missing software);
    /// such a host has no changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HostError>,
    pub changes: Vec<Change>,
    pub reloads: Vec<Reload>,
    /// The files reconciler will manage on this host after applying, in the
    /// plan's scope and out of it.
    #[serde(skip)]
    pub manifest: Vec<String>,
    /// Whether the host's manifest differs from `manifest`.
    #[serde(skip)]
    pub manifest_stale: bool,
}

/// A host that could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HostError {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl HostPlan {
    pub fn failed(server: ServerName, message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            server,
            error: Some(HostError {
                message: message.into(),
                hint,
            }),
            changes: Vec::new(),
            reloads: Vec::new(),
            manifest: Vec::new(),
            manifest_stale: false,
        }
    }

    /// Whether applying would change anything now. A reload that waits for
    /// its window is not a change.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty() || self.reloads.iter().any(|r| r.when == ReloadWhen::Now)
    }

    /// Whether apply has anything to do on this host: changes, or only a
    /// manifest to bring up to date.
    pub fn needs_apply(&self) -> bool {
        self.error.is_none() && (self.has_changes() || self.manifest_stale)
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action() == action).count()
    }
}

/// Whether a change creates, updates or removes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Remove,
}

/// Owner, group and mode of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Ownership {
    pub owner: String,
    pub group: String,
    /// Permission bits in octal, such as "0644".
    #[serde(serialize_with = "octal")]
    #[schemars(with = "String")]
    pub mode: u32,
}

impl Ownership {
    pub fn new(owner: &str, group: &str, mode: u32) -> Self {
        Self {
            owner: owner.to_owned(),
            group: group.to_owned(),
            mode,
        }
    }
}

/// `` `/etc/cron.d/x` should be a file but is a directory ``
fn wrong_kind(path: &str, wanted: PathKind, found: PathKind) -> String {
    format!("`{path}` should be a {wanted} but is a {found}")
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// One change to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Create an app's system user with its group and home.
    CreateUser { user: String, home: String },
    /// Add nginx's user to an app's group so it can read the app's public files.
    JoinGroup { user: String, group: String },
    /// Create a directory.
    CreateDirectory { path: String, to: Ownership },
    /// Fix a directory's owner, group or mode.
    UpdateDirectory {
        path: String,
        from: Ownership,
        to: Ownership,
    },
    /// Write a file that does not exist.
    CreateFile {
        path: String,
        to: Ownership,
        /// Unified diff from nothing.
        diff: String,
        #[serde(skip)]
        content: String,
    },
    /// Rewrite a file whose content, owner, group or mode differs.
    UpdateFile {
        path: String,
        from: Ownership,
        to: Ownership,
        /// Unified diff of the content; absent when only ownership differs.
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        /// Whether reconciler did not write this file before and takes it over.
        adopt: bool,
        #[serde(skip)]
        content: String,
    },
    /// Remove a file reconciler wrote whose unit left the definitions.
    RemoveFile { path: String, diff: String },
}

impl Change {
    pub fn action(&self) -> Action {
        match self {
            Change::CreateUser { .. }
            | Change::CreateDirectory { .. }
            | Change::CreateFile { .. } => Action::Create,
            Change::JoinGroup { .. }
            | Change::UpdateDirectory { .. }
            | Change::UpdateFile { .. } => Action::Update,
            Change::RemoveFile { .. } => Action::Remove,
        }
    }

    /// The service that must validate and reload because of this change.
    pub fn service(&self) -> Option<Service> {
        match self {
            Change::CreateFile { path, .. } | Change::RemoveFile { path, .. } => {
                Service::for_path(path)
            }
            Change::UpdateFile { path, diff, .. } => diff.as_ref().and(Service::for_path(path)),
            // nginx's workers take up new group memberships when they restart.
            Change::JoinGroup { .. } => Some(Service::Nginx),
            _ => None,
        }
    }
}

/// When a reload happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadWhen {
    /// During this apply.
    Now,
    /// In the next reload window (or with `--now`).
    Window,
}

/// A service reload the plan needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Reload {
    #[serde(flatten)]
    pub service: Service,
    /// `nginx`, `php8.2-fpm`, `supervisor:shop`.
    pub label: String,
    pub when: ReloadWhen,
    /// Whether an earlier apply left it pending (rather than this plan's changes).
    pub pending: bool,
}

/// Plans one server.
pub fn plan_host(
    server: &ServerName,
    units: &HostUnits,
    facts: &HostFacts,
    options: &PlanOptions,
) -> HostPlan {
    if let Some(error) = missing_software(units, facts) {
        return HostPlan::failed(server.clone(), error.0, Some(error.1));
    }
    let scope = &options.scope;
    let mut changes = Vec::new();

    for user in &units.users {
        if let Some(found) = facts.users.get(user.name.as_str())
            && found.home != user.home
        {
            return HostPlan::failed(
                server.clone(),
                format!(
                    "user `{}` exists with home `{}`, so it is not this app's user",
                    user.name, found.home
                ),
                Some("rename the app, or the user on the server".into()),
            );
        }
        if !facts.users.contains_key(user.name.as_str()) {
            changes.push(Change::CreateUser {
                user: user.name.to_string(),
                home: user.home.clone(),
            });
        }
        let joined = facts
            .groups
            .get(user.name.as_str())
            .is_some_and(|members| members.contains(WEB_USER));
        if user.web && !joined {
            changes.push(Change::JoinGroup {
                user: WEB_USER.into(),
                group: user.name.to_string(),
            });
        }
    }

    for dir in &units.directories {
        let to = Ownership::new(&dir.owner, &dir.group, dir.mode);
        match facts.paths.get(&dir.path) {
            None => changes.push(Change::CreateDirectory {
                path: dir.path.clone(),
                to,
            }),
            Some(found) if found.kind != PathKind::Directory => {
                return HostPlan::failed(
                    server.clone(),
                    wrong_kind(&dir.path, PathKind::Directory, found.kind),
                    Some("move it away; reconciler never deletes what it did not create".into()),
                );
            }
            Some(found) => {
                let from = Ownership::new(&found.owner, &found.group, found.mode);
                if from != to {
                    changes.push(Change::UpdateDirectory {
                        path: dir.path.clone(),
                        from,
                        to,
                    });
                }
            }
        }
    }

    let managed: BTreeSet<&str> = facts.manifest.iter().map(String::as_str).collect();
    let mut file_changes = Vec::new();
    for file in &units.files {
        match file_change(file, facts, managed.contains(file.path.as_str())) {
            Ok(Some(change)) => file_changes.push(change),
            Ok(None) => {}
            Err(message) => return HostPlan::failed(server.clone(), message, None),
        }
    }
    let desired: BTreeSet<&str> = units.files.iter().map(|f| f.path.as_str()).collect();
    for path in &facts.manifest {
        if desired.contains(path.as_str()) || !scope.covers(path) {
            continue;
        }
        if let Some(found) = facts.paths.get(path)
            && found.kind == PathKind::File
        {
            let old = found.content.as_deref().unwrap_or("");
            file_changes.push(Change::RemoveFile {
                path: path.clone(),
                diff: diff::unified(path, old, ""),
            });
        }
    }
    file_changes.sort_by(|a, b| file_path(a).cmp(file_path(b)));
    changes.extend(file_changes);

    // The manifest after applying: what this plan manages, plus what
    // earlier applies manage outside its scope.
    let manifest: Vec<String> = facts
        .manifest
        .iter()
        .filter(|p| !scope.covers(p))
        .map(String::as_str)
        .chain(desired.iter().copied())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let manifest_stale = {
        let mut current: Vec<&String> = facts.manifest.iter().collect();
        current.sort();
        current.dedup();
        current.into_iter().ne(manifest.iter())
    };

    let reloads = reloads(&changes, facts, options);
    HostPlan {
        server: server.clone(),
        error: None,
        changes,
        reloads,
        manifest,
        manifest_stale,
    }
}

fn file_path(change: &Change) -> &str {
    match change {
        Change::CreateFile { path, .. }
        | Change::UpdateFile { path, .. }
        | Change::RemoveFile { path, .. } => path,
        _ => "",
    }
}

fn file_change(
    file: &ManagedFile,
    facts: &HostFacts,
    managed: bool,
) -> Result<Option<Change>, String> {
    let to = Ownership::new(&file.owner, &file.group, file.mode);
    let Some(found) = facts.paths.get(&file.path) else {
        return Ok(Some(Change::CreateFile {
            path: file.path.clone(),
            to,
            diff: diff::unified(&file.path, "", &file.content),
            content: file.content.clone(),
        }));
    };
    if found.kind != PathKind::File {
        return Err(wrong_kind(&file.path, PathKind::File, found.kind));
    }
    let from = Ownership::new(&found.owner, &found.group, found.mode);
    let wanted_sum = file.sha256();
    let same_content = found.sha256.as_deref() == Some(wanted_sum.as_str());
    if same_content && from == to {
        return Ok(None);
    }
    let diff = (!same_content).then(|| match &found.content {
        Some(old) => diff::unified(&file.path, old, &file.content),
        None => format!(
            "(the file on the server is over 1 MiB: {} bytes)\n",
            found.size
        ),
    });
    Ok(Some(Change::UpdateFile {
        path: file.path.clone(),
        from,
        to,
        diff,
        adopt: !managed,
        content: file.content.clone(),
    }))
}

fn reloads(changes: &[Change], facts: &HostFacts, options: &PlanOptions) -> Vec<Reload> {
    let mut services: BTreeMap<Service, bool> = BTreeMap::new();
    for service in changes.iter().filter_map(Change::service) {
        services.insert(service, false);
    }
    for label in &facts.pending_reloads {
        if let Some(service) = Service::from_label(label) {
            services.entry(service).or_insert(true);
        }
    }
    services
        .into_iter()
        .map(|(service, pending)| {
            let when = if service.is_expensive() && !options.reload_now {
                ReloadWhen::Window
            } else {
                ReloadWhen::Now
            };
            Reload {
                label: service.label(),
                service,
                when,
                pending,
            }
        })
        .collect()
}

/// Software the units need that the host lacks: (message, hint).
fn missing_software(units: &HostUnits, facts: &HostFacts) -> Option<(String, String)> {
    let mut missing = Vec::new();
    for version in &units.php_versions {
        match facts.php.get(version) {
            None => missing.push(format!("php{version}")),
            Some(install) if units.needs.php_fpm && install.fpm.is_none() => {
                missing.push(format!("php{version}-fpm"))
            }
            Some(_) => {}
        }
    }
    for (needed, tool, package) in [
        (units.needs.nginx, "nginx", "nginx"),
        (units.needs.supervisor, "supervisorctl", "supervisor"),
        (units.needs.cron, "cron", "cron"),
    ] {
        if needed && !facts.has_tool(tool) {
            missing.push(package.to_owned());
        }
    }
    if missing.is_empty() {
        return None;
    }
    let list = missing.join(" ");
    Some((
        format!("missing software: {list}"),
        format!("install it first, such as `apt-get install {list}`"),
    ))
}

#[cfg(test)]
mod tests;
