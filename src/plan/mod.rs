//! What must change on each server: the difference between the units a
//! server should have and the facts it has.
//!
//! `plan_host` is a pure function: units, facts and options (the clock
//! among them) in, a sorted, deterministic `HostPlan` out. It never sees a
//! transport, git or the filesystem. What one change is lives in `change`,
//! when services reload in `reload`, rendering (text with diffs, JSON) in
//! `render`.

mod change;
mod current;
mod diff;
pub mod opcache;
mod reload;
pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::{OpcacheHygiene, PhpVersion, ServerName};
use crate::facts::{HostFacts, Journal, PathKind};
use crate::layout::{ConfigFile, WEB_USER};
use crate::units::{HostUnits, ManagedFile};

pub use crate::units::Scope;
pub use change::{Action, Change, Ownership};
pub use reload::{NextWindow, Reload, ReloadPolicy, ReloadWhen, Service};

use reload::Cause;

/// The version of the JSON plan format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// What a plan is made for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    pub scope: Scope,
    /// When reloads happen (`--now`, the cluster's windows at `now`).
    pub reloads: ReloadPolicy,
    /// The cluster's OPcache hygiene, when it has one.
    pub hygiene: Option<OpcacheHygiene>,
    /// The time the plan is made at.
    pub now: DateTime<Utc>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            scope: Scope::default(),
            reloads: ReloadPolicy::default(),
            hygiene: None,
            now: DateTime::UNIX_EPOCH,
        }
    }
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
    /// An apply that was killed before it finished: this apply validates
    /// the files it left, or puts back what stood before.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<InterruptedApply>")]
    pub interrupted: Option<Journal>,
    /// Who holds the host lock right now (an apply is running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    /// Things worth knowing that change nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Things an operator should look at, that apply does not change: an
    /// app's `current` that names anything but one of its releases.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The OPcache of each running php-fpm, by PHP version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub opcache: BTreeMap<PhpVersion, opcache::OpcacheReport>,
    /// The files reconciler will manage on this host after applying, in the
    /// plan's scope and out of it.
    #[serde(skip)]
    pub manifest: Vec<String>,
    /// Whether the host's manifest differs from `manifest`.
    #[serde(skip)]
    pub manifest_stale: bool,
}

/// The JSON shape of an interrupted apply.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct InterruptedApply {
    /// When it started (RFC 3339, the server's clock).
    started: String,
    /// Who ran it.
    holder: String,
    /// The config files it staged and never validated.
    staged: Vec<String>,
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
            interrupted: None,
            locked_by: None,
            notes: Vec::new(),
            warnings: Vec::new(),
            opcache: BTreeMap::new(),
            manifest: Vec::new(),
            manifest_stale: false,
        }
    }

    /// Whether applying would change anything now. A reload that waits for
    /// its window is not a change; files an interrupted apply left
    /// unvalidated are.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
            || self.interrupted.is_some()
            || self.reloads.iter().any(|r| r.when == ReloadWhen::Now)
    }

    /// Whether apply has anything to do on this host: changes, a manifest
    /// to bring up to date, or another apply running now (its files may
    /// have been half-written when they were read: apply waits for it and
    /// then finds this plan stale, rather than call the host unchanged).
    pub fn needs_apply(&self) -> bool {
        self.error.is_none()
            && (self.has_changes() || self.manifest_stale || self.locked_by.is_some())
    }

    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action() == action).count()
    }

    /// This plan under `--drift warn`: drift is reported, not corrected.
    /// Its changes (and the manifest and interrupted apply that come with
    /// them) are left out, with the reloads only they needed; the reloads
    /// that were due anyway (a window, OPcache hygiene, a pending one)
    /// stay. Returns the plan to apply and how many changes were left.
    pub fn only_reloads(mut self) -> (HostPlan, usize) {
        let drift = self.changes.len();
        if drift > 0 {
            self.changes.clear();
            self.manifest_stale = false;
            self.interrupted = None;
            self.reloads.retain(|r| !r.for_changes_only);
        }
        (self, drift)
    }
}

/// `` `/etc/cron.d/x` should be a file but is a directory ``
fn wrong_kind(path: &str, wanted: PathKind, found: PathKind) -> String {
    format!("`{path}` should be a {wanted} but is a {found}")
}

/// Groups whose members may become root.
const ADMIN_GROUPS: &[&str] = &["sudo", "admin", "wheel", "root"];

/// Plans one server.
pub fn plan_host(
    server: &ServerName,
    units: &HostUnits,
    facts: &HostFacts,
    options: &PlanOptions,
) -> HostPlan {
    let failed =
        |message: String, hint: Option<String>| HostPlan::failed(server.clone(), message, hint);
    if let Some(error) = missing_software(units, facts) {
        return failed(error.0, Some(error.1));
    }
    let scope = &options.scope;
    let mut changes = Vec::new();
    let mut notes = Vec::new();

    for user in &units.users {
        if let Some(found) = facts.users.get(user.name.as_str()) {
            if found.home != user.home {
                return failed(
                    format!(
                        "user `{}` exists with home `{}`, so it is not this app's user",
                        user.name, found.home
                    ),
                    Some("rename the app, or the user on the server".into()),
                );
            }
            if let Some(why) = foreign_user(user.name.as_str(), facts)
                && !user.adopt
            {
                return failed(
                    format!(
                        "user `{}` exists and reconciler did not create it: {why}",
                        user.name
                    ),
                    Some(
                        "rename the app; or, if that user is meant to run it, set \
                         `adopt_user: true` in the app's definition"
                            .into(),
                    ),
                );
            }
        } else {
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
        let inside_home_of = dir.inside_home_of.as_ref().map(ToString::to_string);
        match facts.paths.get(&dir.path) {
            None => changes.push(Change::CreateDirectory {
                path: dir.path.clone(),
                to,
                inside_home_of,
            }),
            Some(found) if found.kind != PathKind::Directory => {
                return failed(
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
                        inside_home_of,
                    });
                }
            }
        }
    }

    // Only paths reconciler could have written count: the manifest lives
    // on the server, and a path planted in it must never be removed.
    let mut manifest_in: Vec<&str> = Vec::new();
    for path in &facts.manifest {
        if ConfigFile::parse(path).is_some() {
            manifest_in.push(path);
        } else {
            notes.push(format!(
                "ignoring `{path}` in the manifest: reconciler never writes there"
            ));
        }
    }
    let managed: BTreeSet<&str> = manifest_in.iter().copied().collect();
    let mut file_changes = Vec::new();
    for file in &units.files {
        match file_change(file, facts, managed.contains(file.path.as_str())) {
            Ok(Some(change)) => file_changes.push(change),
            Ok(None) => {}
            Err(message) => return failed(message, None),
        }
    }
    let desired: BTreeSet<&str> = units.files.iter().map(|f| f.path.as_str()).collect();
    for path in &managed {
        if desired.contains(path) || !scope.covers(path) {
            continue;
        }
        if let Some(found) = facts.paths.get(*path)
            && found.kind == PathKind::File
        {
            let old = found.content.as_deref().unwrap_or("");
            file_changes.push(Change::RemoveFile {
                path: path.to_string(),
                diff: diff::unified(path, old, ""),
                expected: found.sha256.clone().unwrap_or_default(),
            });
        }
    }
    file_changes.sort_by(|a, b| a.file_path().cmp(&b.file_path()));
    changes.extend(file_changes);

    // The manifest after applying: what this plan manages, plus what
    // earlier applies manage outside its scope.
    let manifest: Vec<String> = managed
        .iter()
        .copied()
        .filter(|p| !scope.covers(p))
        .chain(desired.iter().copied())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let missing: Vec<&str> = units
        .packages
        .iter()
        .filter(|p| !facts.packages.is_empty() && !facts.packages.contains(*p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "{} not installed: {} (`reconciler provision` installs them)",
            crate::definitions::plural(missing.len(), "package"),
            missing.join(", ")
        ));
    }
    if facts.manifest_ignored > 0 {
        notes.push(format!(
            "{} in the manifest name no file reconciler writes; apply drops them",
            crate::definitions::plural(facts.manifest_ignored, "line")
        ));
    }
    let manifest_stale = facts.manifest_ignored > 0 || {
        let mut current: Vec<&str> = facts.manifest.iter().map(String::as_str).collect();
        current.sort();
        current.dedup();
        current.into_iter().ne(manifest.iter().map(String::as_str))
    };

    notes.extend(release_notes(units, facts));
    let kept: BTreeSet<&str> = units.users.iter().map(|u| u.name.as_str()).collect();
    let mut gone: Vec<String> = changes
        .iter()
        .filter(|c| c.action() == Action::Remove)
        .filter_map(|c| {
            ConfigFile::parse(c.file_path()?)?
                .app()
                .map(ToString::to_string)
        })
        .filter(|app| !kept.contains(app.as_str()))
        .collect();
    gone.dedup();
    for app in gone {
        notes.push(format!(
            "app `{app}` left the definitions: its config files here are removed, but its user \
             and /home/{app} stay (reconciler never deletes an app's data; remove them by hand \
             once you are sure)"
        ));
    }

    // A journal while the lock is held is the running apply's; only a
    // journal nobody holds the lock for was left by a killed one.
    let interrupted = facts
        .journal
        .clone()
        .filter(|_| facts.lock_holder.is_none());
    let causes = changes
        .iter()
        .filter_map(|change| {
            let cause = match change {
                Change::CreateFile { path, .. }
                    if matches!(ConfigFile::parse(path), Some(ConfigFile::FpmPool { .. })) =>
                {
                    Cause::NewPool
                }
                _ => Cause::Changes,
            };
            change.service().map(|s| (s, cause))
        })
        .chain(
            facts
                .pending_reloads
                .iter()
                .filter_map(|label| Service::from_label(label))
                .map(|s| (s, Cause::Pending)),
        )
        .chain(
            interrupted
                .iter()
                .flat_map(|j| &j.staged)
                .filter_map(|path| ConfigFile::parse(path))
                .filter_map(|file| Service::of(&file))
                .map(|s| (s, Cause::Interrupted)),
        );
    let opcache = opcache::reports(units, facts, options.hygiene.as_ref());
    let hygiene = opcache.iter().flat_map(|(version, report)| {
        report.due.iter().map(move |why| {
            let service = Service::PhpFpm {
                version: version.clone(),
            };
            (service, Cause::Hygiene(why.clone()))
        })
    });
    let causes: Vec<(Service, Cause)> = causes.chain(hygiene).collect();
    let reloads = reload::reloads(causes, &options.reloads, options.now);
    HostPlan {
        server: server.clone(),
        error: None,
        changes,
        reloads,
        interrupted,
        locked_by: facts.lock_holder.clone(),
        notes,
        warnings: current::warnings(units, facts),
        opcache,
        manifest,
        manifest_stale,
    }
}

/// Apps whose workers or site wait for their first release.
fn release_notes(units: &HostUnits, facts: &HostFacts) -> Vec<String> {
    let waiting = |file: &ManagedFile| match ConfigFile::parse(&file.path) {
        Some(ConfigFile::Vhost { app }) => Some((app, "site")),
        Some(ConfigFile::Supervisor { app }) => Some((app, "workers")),
        _ => None,
    };
    let mut roles: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for (app, role) in units.files.iter().filter_map(waiting) {
        let live = facts
            .releases
            .get(&app)
            .is_some_and(|r| r.current.is_some());
        if !live {
            roles.entry(app.to_string()).or_default().push(role);
        }
    }
    roles
        .into_iter()
        .map(|(app, roles)| {
            format!(
                "app `{app}` has no live release yet (/home/{app}/current): its {} \
                 until one is deployed",
                match roles[..] {
                    ["site"] => "site answers 404",
                    ["workers"] => "workers cannot start",
                    _ => "site answers 404 and its workers cannot start",
                }
            )
        })
        .collect()
}

/// Why an existing user looks like it is not meant to run an app (a
/// person's login, an account with sudo rights), unless reconciler made it.
fn foreign_user(name: &str, facts: &HostFacts) -> Option<String> {
    if facts.created_users.contains(name) {
        return None;
    }
    let user = facts.users.get(name)?;
    let mut reasons = Vec::new();
    if user.can_log_in() {
        reasons.push(format!("it has the login shell `{}`", user.shell));
    }
    if user.uid >= 1000 {
        reasons.push(format!(
            "its uid {} is in the range of people's accounts",
            user.uid
        ));
    }
    let admin: Vec<&str> = ADMIN_GROUPS
        .iter()
        .copied()
        .filter(|g| facts.groups.get(*g).is_some_and(|m| m.contains(name)))
        .collect();
    if !admin.is_empty() {
        reasons.push(format!("it is in the group `{}`", admin.join("`, `")));
    }
    if facts.sudoers.contains(name) {
        reasons.push("it has sudo rights".into());
    }
    (!reasons.is_empty()).then(|| reasons.join(", "))
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
        expected: found.sha256.clone().unwrap_or_default(),
    }))
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
