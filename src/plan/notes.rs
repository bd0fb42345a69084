//! What a plan says that changes nothing: software and packages a host
//! lacks, apps waiting for their first release, apps that left, shared
//! paths whose kind was guessed.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Change, HostError};
use crate::definitions::SharedKind;
use crate::definitions::plural;
use crate::facts::HostFacts;
use crate::layout::{AppPaths, ConfigFile};
use crate::units::{GuessedShared, HostUnits, ManagedFile};

/// Software the units need that the host lacks.
///
/// # Errors
/// The missing packages, with the `apt-get install` line that adds them.
pub(super) fn software(units: &HostUnits, facts: &HostFacts) -> Result<(), HostError> {
    let mut missing = Vec::new();
    for version in &units.php_versions {
        match facts.php.get(version) {
            None => missing.push(format!("php{version}")),
            Some(install) if units.needs.php_fpm && install.fpm.is_none() => {
                missing.push(format!("php{version}-fpm"));
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
        return Ok(());
    }
    let list = missing.join(" ");
    Err(HostError::new(
        format!("missing software: {list}"),
        Some(format!(
            "install it first, such as `apt-get install {list}`"
        )),
    ))
}

/// The notes of a plan with `changes`, after the ones planning files made.
pub(super) fn notes(units: &HostUnits, facts: &HostFacts, changes: &[Change]) -> Vec<String> {
    let mut notes = Vec::new();
    let missing: Vec<&str> = units
        .packages
        .iter()
        .filter(|p| !facts.packages.is_empty() && !facts.packages.contains(*p))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        notes.push(format!(
            "{} not installed: {} (`reconciler provision` installs them)",
            plural(missing.len(), "package"),
            missing.join(", ")
        ));
    }
    if facts.manifest_ignored > 0 {
        notes.push(format!(
            "{} in the manifest name no file reconciler writes; apply drops them",
            plural(facts.manifest_ignored, "line")
        ));
    }
    notes.extend(waiting_for_release(units, facts));
    notes.extend(gone_apps(units, changes));
    notes.extend(units.guessed_shared.iter().map(guessed_shared));
    notes
}

/// What the plan says of a shared path whose kind was guessed: the guess,
/// why, and how to state it either way (the guess may be wrong:
/// `public/.well-known` is a directory).
fn guessed_shared(guessed: &GuessedShared) -> String {
    let path = &guessed.path;
    let (guess, why, keep, other) = match guessed.kind {
        SharedKind::File => (
            "a file",
            "a dot in its last name",
            format!("{{ path: {}, kind: file }}", yaml(path)),
            format!("`{}` for a directory", yaml(&format!("{path}/"))),
        ),
        SharedKind::Dir => (
            "a directory",
            "no dot in its last name",
            yaml(&format!("{path}/")),
            format!("`{{ path: {}, kind: file }}` for a file", yaml(path)),
        ),
    };
    format!(
        "shared path `{}` of app `{}` is guessed {guess} ({why}): write `{keep}` to say so, or \
         {other}",
        path.escape_debug(),
        guessed.app
    )
}

/// `text` as YAML reads it back: plain when it is plainly a path, else
/// double-quoted.
fn yaml(text: &str) -> String {
    if text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        text.to_owned()
    } else {
        serde_json::to_string(text).unwrap_or_else(|_| text.to_owned())
    }
}

/// Apps whose workers or site wait for their first release.
fn waiting_for_release(units: &HostUnits, facts: &HostFacts) -> Vec<String> {
    let waiting = |file: &ManagedFile| match ConfigFile::parse(&file.path) {
        Some(ConfigFile::Vhost { app }) => Some((app, "site")),
        Some(ConfigFile::Supervisor { app }) => Some((app, "workers")),
        _ => None,
    };
    let mut roles: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (app, role) in units.files.iter().filter_map(waiting) {
        // Anything at `current` that names no release is a warning
        // (`current`): a directory there is served.
        let live = facts
            .releases
            .get(&app)
            .is_some_and(|r| r.current.is_some())
            || facts.paths.contains_key(&AppPaths::new(&app).current);
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

/// Apps whose config files go because they left the definitions: their
/// users and homes stay.
fn gone_apps(units: &HostUnits, changes: &[Change]) -> Vec<String> {
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
    gone.into_iter()
        .map(|app| {
            format!(
                "app `{app}` left the definitions: its config files here are removed, but its \
                 user and /home/{app} stay (reconciler never deletes an app's data; remove them \
                 by hand once you are sure)"
            )
        })
        .collect()
}
