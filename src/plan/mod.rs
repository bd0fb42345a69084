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
mod files;
mod notes;
pub mod opcache;
mod reload;
pub mod render;
pub mod services;
mod users;
mod workers;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::{OpcacheHygiene, PhpVersion, ServerName};
use crate::facts::{HostFacts, Journal};
use crate::units::HostUnits;

pub use crate::units::Scope;
pub use change::{Action, Change, Ownership};
pub use reload::{NextWindow, Reload, ReloadPolicy, ReloadWhen, Service};

/// The version of the JSON plan format; bumped on incompatible changes.
pub const FORMAT_VERSION: u32 = 1;

/// What a plan is made for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Which units are planned: all, or only some apps' (`--app`).
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
    /// One plan per selected server.
    pub hosts: Vec<HostPlan>,
}

impl Plan {
    /// The plan of `hosts`, stamped with this build's [`FORMAT_VERSION`].
    pub fn new(hosts: Vec<HostPlan>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            hosts,
        }
    }

    /// Whether applying would change anything now on any host (see
    /// [`HostPlan::has_changes`]).
    pub fn has_changes(&self) -> bool {
        self.hosts.iter().any(HostPlan::has_changes)
    }

    /// Whether any host could not be planned.
    pub fn has_errors(&self) -> bool {
        self.hosts.iter().any(|h| h.error.is_some())
    }
}

/// What changes on one server.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct HostPlan {
    /// The server this plan is for, by its name in the cluster's
    /// definitions.
    pub server: ServerName,
    /// Why this host could not be planned (unreachable, missing software);
    /// such a host has no changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HostError>,
    /// What apply changes, in the order it makes them: users and groups,
    /// directories, files by path, then services and programs to start.
    pub changes: Vec<Change>,
    /// The services that validate and reload, now or later, one entry per
    /// service.
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
    /// What is wrong, one line, values in backticks.
    pub message: String,
    /// What the operator can do about it, when there is something to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl HostError {
    /// A refusal with what to do about it, when there is something to do.
    pub fn new(message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            message: message.into(),
            hint,
        }
    }
}

impl HostPlan {
    /// The plan of a host that could not be planned: `message`, and no
    /// changes.
    pub fn failed(server: ServerName, message: impl Into<String>, hint: Option<String>) -> Self {
        Self {
            server,
            error: Some(HostError::new(message, hint)),
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

    /// How many of this host's changes are of `action`.
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

/// Plans one server: a refusal (missing software, a user or path that is
/// not what it should be) as the plan's `error`, and no changes then.
pub fn plan_host(
    server: &ServerName,
    units: &HostUnits,
    facts: &HostFacts,
    options: &PlanOptions,
) -> HostPlan {
    plan(server, units, facts, options).unwrap_or_else(|HostError { message, hint }| {
        HostPlan::failed(server.clone(), message, hint)
    })
}

fn plan(
    server: &ServerName,
    units: &HostUnits,
    facts: &HostFacts,
    options: &PlanOptions,
) -> Result<HostPlan, HostError> {
    notes::software(units, facts)?;
    let mut changes = users::changes(units, facts)?;
    changes.extend(files::directories(units, facts)?);
    let files = files::files(units, facts, &options.scope)?;
    changes.extend(files.changes);
    let mut notes = files.notes;
    notes.extend(notes::notes(units, facts, &changes));
    let starts = services::changes(units, facts, &options.scope, &changes);
    changes.extend(starts);
    notes.extend(services::notes(facts));
    // A journal while the lock is held is the running apply's; only a
    // journal nobody holds the lock for was left by a killed one.
    let interrupted = facts
        .journal
        .clone()
        .filter(|_| facts.lock_holder.is_none());
    let opcache = opcache::reports(units, facts, options.hygiene.as_ref());
    let mut causes = reload::causes(&changes, facts, interrupted.as_ref(), &opcache);
    causes.extend(workers::worker_restarts(
        &changes,
        interrupted.as_ref(),
        units,
        facts,
        &options.scope,
    ));
    let mut reloads = reload::reloads(causes, &options.reloads, options.now);
    for reload in &mut reloads {
        match &reload.service {
            Service::Supervisor { group: app } => {
                reload.groups = workers::supervisor_groups(app, units, facts);
            }
            Service::Workers { app } => reload.groups = workers::worker_groups(app, units),
            _ => {}
        }
    }
    // A restart of workers the units no longer have restarts nothing.
    reloads.retain(|r| !matches!(r.service, Service::Workers { .. }) || !r.groups.is_empty());
    Ok(HostPlan {
        server: server.clone(),
        error: None,
        changes,
        reloads,
        interrupted,
        locked_by: facts.lock_holder.clone(),
        notes,
        warnings: current::warnings(units, facts),
        opcache,
        manifest: files.manifest,
        manifest_stale: files.manifest_stale,
    })
}

#[cfg(test)]
mod tests;
