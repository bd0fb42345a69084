//! The release plan: what a release, a rollback and pruning do on each
//! server, decided from what the servers reported and nothing else. Pure:
//! the shell only carries out the lists it is given.

use std::collections::{BTreeMap, BTreeSet};

use super::{LogEntry, ServerReleases, Sha};
use crate::definitions::ServerName;

/// What a release of `sha` does on each server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleasePlan {
    /// The commit every server switches to.
    pub sha: Sha,
    /// Servers where it must be prepared (uploaded, linked, built).
    pub prepare: Vec<ServerName>,
    /// Servers where it is complete already: nothing is uploaded there.
    pub reuse: Vec<ServerName>,
    /// What each server goes back to if the release fails after the
    /// switch: its live release, or none (`current` is removed).
    pub back: BTreeMap<ServerName, Option<Sha>>,
}

/// The plan of releasing `sha` to servers that have `states`.
pub fn plan(sha: &Sha, states: &[(ServerName, &ServerReleases)]) -> ReleasePlan {
    let mut plan = ReleasePlan {
        sha: sha.clone(),
        prepare: Vec::new(),
        reuse: Vec::new(),
        back: BTreeMap::new(),
    };
    for (server, state) in states {
        if state.complete.contains(sha) {
            plan.reuse.push(server.clone());
        } else {
            plan.prepare.push(server.clone());
        }
        plan.back.insert(server.clone(), state.live.clone());
    }
    plan
}

/// The releases a server keeps once `live` is live and `log` ends with
/// this release's own line: `live`, then the newest releases that went
/// live (or were live before one that did) and are complete there, up to
/// `keep` in all, and always the previous good release (the one a
/// rollback goes to) whatever `keep` says. Failed releases do not count.
/// Every other release directory is pruned.
pub fn keep(
    state: &ServerReleases,
    live: Option<&Sha>,
    log: &[LogEntry],
    keep: u32,
) -> BTreeSet<Sha> {
    let mut kept: BTreeSet<Sha> = live.cloned().into_iter().collect();
    // Newest first: each release that went live, then what was live
    // before it (live once too, even where no line says so: a release
    // made before the log, or an adopted one).
    let mut good: Vec<&Sha> = Vec::new();
    for entry in log.iter().rev().filter(|e| e.result.went_live()) {
        for sha in std::iter::once(&entry.sha).chain(&entry.previous) {
            if !good.contains(&sha) {
                good.push(sha);
            }
        }
    }
    for sha in &good {
        if kept.len() >= keep.max(1) as usize {
            break;
        }
        if state.complete.contains(*sha) {
            kept.insert((*sha).clone());
        }
    }
    if let Some(previous) = good.iter().find(|sha| Some(**sha) != live) {
        kept.insert((*previous).clone());
    }
    kept
}

/// The release to roll back to: `to` (a commit id or its start) when it
/// is complete on every server, or the previous good release of the first
/// server.
pub fn rollback_target(
    states: &[(ServerName, &ServerReleases)],
    to: Option<&str>,
) -> Result<Sha, String> {
    let Some(prefix) = to else {
        return states
            .first()
            .and_then(|(_, s)| s.previous_good().cloned())
            .ok_or_else(|| "no earlier release that went live is still on the servers".to_owned());
    };
    let candidates: BTreeSet<&Sha> = states
        .iter()
        .flat_map(|(_, s)| s.complete.iter())
        .filter(|sha| sha.as_str().starts_with(prefix))
        .collect();
    let mut found = candidates.into_iter();
    match (found.next(), found.next()) {
        (Some(sha), None) => match states.iter().find(|(_, s)| !s.complete.contains(sha)) {
            Some((server, _)) => Err(format!("{} is not complete on {server}", sha.short())),
            None => Ok(sha.clone()),
        },
        (Some(_), Some(_)) => Err(format!("`{prefix}` names more than one release")),
        (None, _) => Err(format!("no release `{prefix}` on the servers")),
    }
}

#[cfg(test)]
mod tests;
