//! Users: each app's own, created if missing, refused if the name belongs
//! to someone else; nginx's user joins each web app's group.

use super::{Change, HostError};
use crate::facts::HostFacts;
use crate::layout::WEB_USER;
use crate::units::HostUnits;

/// Groups whose members may become root.
const ADMIN_GROUPS: &[&str] = &["sudo", "admin", "wheel", "root"];

/// The user and group changes `units` need on a host with `facts`.
///
/// # Errors
/// A user of an app's name that is not that app's: another home, or, unless
/// the app adopts it, an account that looks like a person's or an admin's.
pub(super) fn changes(units: &HostUnits, facts: &HostFacts) -> Result<Vec<Change>, HostError> {
    let mut changes = Vec::new();
    for user in &units.users {
        if let Some(found) = facts.users.get(user.name.as_str()) {
            if found.home != user.home {
                return Err(HostError::new(
                    format!(
                        "user `{}` exists with home `{}`, so it is not this app's user",
                        user.name, found.home
                    ),
                    Some("rename the app, or the user on the server".into()),
                ));
            }
            if let Some(why) = foreign_user(user.name.as_str(), facts)
                && !user.adopt
            {
                return Err(HostError::new(
                    format!(
                        "user `{}` exists and reconciler did not create it: {why}",
                        user.name
                    ),
                    Some(
                        "rename the app; or, if that user is meant to run it, set \
                         `adopt_user: true` in the app's definition"
                            .into(),
                    ),
                ));
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
    Ok(changes)
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
