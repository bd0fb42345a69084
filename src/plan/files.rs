//! Directories and files: created, updated (content, owner, mode) or
//! removed, and the manifest of the files reconciler manages.

use std::collections::BTreeSet;

use super::{Change, HostError, Ownership, Scope, diff};
use crate::facts::{HostFacts, PathKind};
use crate::layout::ConfigFile;
use crate::units::{HostUnits, ManagedFile};

/// The file changes of a host, with the manifest they leave.
pub(super) struct FilePlan {
    /// Creates, updates and removals, by path.
    pub changes: Vec<Change>,
    /// The files reconciler manages after applying: what this plan manages,
    /// plus what earlier applies manage outside its scope.
    pub manifest: Vec<String>,
    /// Whether the host's manifest differs from `manifest`.
    pub manifest_stale: bool,
    /// Manifest lines that were ignored, and why.
    pub notes: Vec<String>,
}

/// The directory changes `units` need.
///
/// # Errors
/// A path that should be a directory and is something else: reconciler
/// never deletes what it did not create.
pub(super) fn directories(units: &HostUnits, facts: &HostFacts) -> Result<Vec<Change>, HostError> {
    let mut changes = Vec::new();
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
                return Err(HostError::new(
                    wrong_kind(&dir.path, PathKind::Directory, found.kind),
                    Some("move it away; reconciler never deletes what it did not create".into()),
                ));
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
    Ok(changes)
}

/// The file changes `units` need within `scope`, and the manifest after.
///
/// # Errors
/// A path that should be a file and is something else.
pub(super) fn files(
    units: &HostUnits,
    facts: &HostFacts,
    scope: &Scope,
) -> Result<FilePlan, HostError> {
    // Only paths reconciler could have written count: the manifest lives
    // on the server, and a path planted in it must never be removed.
    let mut notes = Vec::new();
    let mut managed: BTreeSet<&str> = BTreeSet::new();
    for path in &facts.manifest {
        if ConfigFile::parse(path).is_some() {
            managed.insert(path);
        } else {
            notes.push(format!(
                "ignoring `{path}` in the manifest: reconciler never writes there"
            ));
        }
    }
    let mut changes = Vec::new();
    for file in &units.files {
        if let Some(change) = file_change(file, facts, managed.contains(file.path.as_str()))
            .map_err(|message| HostError::new(message, None))?
        {
            changes.push(change);
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
            changes.push(Change::RemoveFile {
                path: path.to_string(),
                diff: diff::unified(path, old, ""),
                expected: found.sha256.clone().unwrap_or_default(),
            });
        }
    }
    changes.sort_by(|a, b| a.file_path().cmp(&b.file_path()));

    let manifest: Vec<String> = managed
        .iter()
        .copied()
        .filter(|p| !scope.covers(p))
        .chain(desired.iter().copied())
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let manifest_stale = facts.manifest_ignored > 0 || {
        let mut current: Vec<&str> = facts.manifest.iter().map(String::as_str).collect();
        current.sort();
        current.dedup();
        current.into_iter().ne(manifest.iter().map(String::as_str))
    };
    Ok(FilePlan {
        changes,
        manifest,
        manifest_stale,
        notes,
    })
}

/// `` `/etc/cron.d/x` should be a file but is a directory ``
fn wrong_kind(path: &str, wanted: PathKind, found: PathKind) -> String {
    format!("`{path}` should be a {wanted} but is a {found}")
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
