//! Whether each app's `current` names one of its own releases.
//!
//! `current` is the one link in an app's home whose meaning reconciler
//! owns: a release points it at `releases/<sha>`, and nginx, the workers
//! and the scheduler run what it names. The app's user owns the link and
//! can point it anywhere; nginx refuses to serve through a link to another
//! owner's files, but the operator should hear of it. This only reads the
//! facts (the link as written); it changes nothing.

use crate::definitions::AppName;
use crate::facts::{HostFacts, PathFacts, PathKind};
use crate::layout::AppPaths;
use crate::units::HostUnits;

/// A warning for each app whose `current` is anything but the app's own
/// link to one of its releases present on the server (`releases/<40-hex
/// sha>`, or the same as an absolute path).
pub(super) fn warnings(units: &HostUnits, facts: &HostFacts) -> Vec<String> {
    units
        .users
        .iter()
        .filter_map(|user| {
            let current = AppPaths::new(&user.name).current;
            // Without `current` the app has no release yet: a note says so.
            let found = facts.paths.get(&current)?;
            let problem = problem(&user.name, found, facts)?;
            Some(format!("`{current}` {problem}"))
        })
        .collect()
}

/// What is wrong with `found`, app's `current`, if anything.
fn problem(app: &AppName, found: &PathFacts, facts: &HostFacts) -> Option<String> {
    let release = format!("`reconciler release {app}`");
    let Some(target) = found
        .target
        .as_deref()
        .filter(|_| found.kind == PathKind::Symlink)
    else {
        if found.kind == PathKind::Directory {
            return Some(format!(
                "is a directory, not a link to one of {app}'s releases: it is served as it is, \
                 and {release} refuses to replace it (as {app}, `{}` keeps it served and hands \
                 it to releases)",
                AppPaths::new(app).adopt_current()
            ));
        }
        return Some(format!(
            "is a {}, not a link to one of {app}'s releases: only a release should make it \
             (move it away, then {release})",
            found.kind
        ));
    };
    let absolute = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{}/{target}", AppPaths::new(app).home)
    };
    let target = target.escape_debug();
    let sha = match AppPaths::release_of(&absolute) {
        Some((owner, sha)) if &owner == app => sha,
        _ => {
            return Some(format!(
                "points at `{target}`, not at one of {app}'s releases: only a release should \
                 change it ({release} points it back)"
            ));
        }
    };
    let present = facts
        .releases
        .get(app)
        .is_some_and(|r| r.releases.iter().any(|r| r == sha));
    if !present {
        return Some(format!(
            "points at `{target}`, which is not on the server: {release} points it at a release"
        ));
    }
    (found.owner != app.as_str()).then(|| {
        format!(
            "belongs to `{}`, not to {app}: nginx serves nothing through a link to another \
             owner's files (the next release of {app} links it again as {app})",
            found.owner.escape_debug()
        )
    })
}
