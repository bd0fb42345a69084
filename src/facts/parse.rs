//! Reads the records of gather.sh (see `remote::protocol`) into
//! `HostFacts`.
//!
//! Unknown record kinds are skipped so that a newer script can add facts
//! an older parser ignores; a known record with the wrong fields is an
//! error, never a guess.

use std::collections::{BTreeMap, BTreeSet};

use crate::definitions::{AppName, PhpVersion};
use crate::layout::{AppPaths, HOME_ROOT};
use crate::remote::{ProtocolError, Record, protocol};

use super::{
    HostFacts, Init, Journal, Opcache, PathFacts, PathKind, PhpInstall, ProgramState, ServiceState,
    UserFacts, is_program_name,
};

/// The version of the facts stream this parser reads (`@facts`).
const VERSION: &str = "2";

/// Why the output of the fact-gathering script is not facts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// The first record is not `@facts` with this parser's version: another
    /// script, or gather.sh from another build.
    #[error("the output does not start with facts of version {VERSION}")]
    NotFacts,
    /// The stream ends before the `@end` record, or inside a record: the
    /// script was cut off.
    #[error("the output stops before its end record")]
    Truncated,
    /// A record of a known kind with the wrong number of fields or a field
    /// that does not parse (a number, a mode).
    #[error("record {index}: malformed `{kind}` record")]
    Malformed {
        /// The record's position in the stream, counting from 0 (the
        /// `@facts` record).
        index: usize,
        /// The record's kind, such as `path` or `user`.
        kind: String,
    },
    /// The bytes are not records of the report protocol at all.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

pub fn parse(bytes: &[u8]) -> Result<HostFacts, ParseError> {
    let records = protocol::parse(bytes).map_err(|e| match e {
        ProtocolError::Truncated => ParseError::Truncated,
        other => ParseError::Protocol(other),
    })?;
    let mut records = records.iter().enumerate();
    match records.next() {
        Some((_, r)) if r.kind == "facts" && r.text(0) == VERSION => {}
        _ => return Err(ParseError::NotFacts),
    }
    let mut facts = HostFacts::default();
    let mut user_names: BTreeMap<u32, String> = BTreeMap::new();
    let mut group_names: BTreeMap<u32, String> = BTreeMap::new();
    for (index, record) in records {
        let malformed = || ParseError::Malformed {
            index,
            kind: record.kind.clone(),
        };
        let fields = |n: usize| {
            if record.fields.len() == n {
                Ok(())
            } else {
                Err(malformed())
            }
        };
        let number = |i: usize| record.text(i).parse::<u64>().map_err(|_| malformed());
        match record.kind.as_str() {
            "end" => return Ok(facts),
            "os" => facts.os = record.text(0).into_owned(),
            "init" => {
                facts.init = match record.text(0).as_ref() {
                    "systemd" => Init::Systemd,
                    _ => Init::Service,
                }
            }
            "uid" => facts.uid = u32::try_from(number(0)?).map_err(|_| malformed())?,
            "php" => {
                fields(3)?;
                let binary = |i: usize| Some(record.text(i).into_owned()).filter(|b| !b.is_empty());
                facts.php.insert(
                    PhpVersion::new(record.text(0).into_owned()),
                    PhpInstall {
                        fpm: binary(1),
                        cli: binary(2),
                    },
                );
            }
            "packages" => {
                facts
                    .packages
                    .extend(record.text(0).split_whitespace().map(str::to_owned));
            }
            "tool" => {
                fields(2)?;
                if !record.fields[1].is_empty() {
                    facts
                        .tools
                        .insert(record.text(0).into_owned(), record.text(1).into_owned());
                }
            }
            "user" => {
                fields(5)?;
                let name = record.text(0).into_owned();
                let user = UserFacts {
                    uid: u32::try_from(number(1)?).map_err(|_| malformed())?,
                    gid: u32::try_from(number(2)?).map_err(|_| malformed())?,
                    home: record.text(3).into_owned(),
                    shell: record.text(4).into_owned(),
                };
                user_names.entry(user.uid).or_insert_with(|| name.clone());
                facts.users.insert(name, user);
            }
            "group" => {
                fields(3)?;
                let name = record.text(0).into_owned();
                let gid = u32::try_from(number(1)?).map_err(|_| malformed())?;
                let members: BTreeSet<String> = record
                    .text(2)
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
                    .collect();
                group_names.insert(gid, name.clone());
                facts.groups.insert(name, members);
            }
            "manifest" => facts.manifest = record.texts_from(0),
            "manifest-sha256" => facts.manifest_sha256 = Some(record.text(0).into_owned()),
            "manifest-ignored" => {
                facts.manifest_ignored = usize::try_from(number(0)?).map_err(|_| malformed())?;
            }
            "sudoer" => {
                facts.sudoers.insert(record.text(0).into_owned());
            }
            "created-user" => {
                facts.created_users.insert(record.text(0).into_owned());
            }
            "journal-started" => journal(&mut facts).started = record.text(0).into_owned(),
            "journal-holder" => journal(&mut facts).holder = record.text(0).into_owned(),
            "journal-staged" => journal(&mut facts).staged.push(record.text(0).into_owned()),
            "journal-backup" => {
                journal(&mut facts);
            }
            "lock" => facts.lock_holder = Some(record.text(0).into_owned()),
            "generation" => facts.generation = number(0)?,
            "pending" => facts.pending_reloads = record.texts_from(0),
            "release" => {
                fields(2)?;
                if let Some(app) = app_of_releases(&record.text(0)) {
                    let name = record.text(1);
                    if is_commit(&name) {
                        facts
                            .releases
                            .entry(app)
                            .or_default()
                            .releases
                            .push(name.into_owned());
                    }
                }
            }
            "opcache" => {
                fields(2)?;
                let status: serde_json::Value =
                    serde_json::from_str(&record.text(1)).map_err(|_| malformed())?;
                facts.opcache.insert(
                    PhpVersion::new(record.text(0).into_owned()),
                    Opcache::from_status(&status),
                );
            }
            "service" => {
                fields(2)?;
                let state = match record.text(1).as_ref() {
                    "running" => ServiceState::Running,
                    "stopped" => ServiceState::Stopped,
                    _ => return Err(malformed()),
                };
                facts.services.insert(record.text(0).into_owned(), state);
            }
            "programs" => {
                facts.programs.get_or_insert_with(BTreeMap::new);
            }
            "program" => {
                fields(2)?;
                let name = record.text(0);
                let state = ProgramState::from_word(&record.text(1));
                match (facts.programs.as_mut(), state) {
                    (Some(programs), Some(state)) if is_program_name(&name) => {
                        programs.insert(name.into_owned(), state);
                    }
                    _ => facts.programs_unread += 1,
                }
            }
            "path" => {
                fields(8)?;
                path(&mut facts, record, &user_names, &group_names).ok_or_else(malformed)?;
            }
            "sha256" => {
                fields(2)?;
                if let Some(p) = facts.paths.get_mut(record.text(1).as_ref()) {
                    p.sha256 = Some(record.text(0).into_owned());
                }
            }
            "content" => {
                fields(2)?;
                let content = record.base64(1).ok_or_else(malformed)?;
                if let Some(p) = facts.paths.get_mut(record.text(0).as_ref()) {
                    p.content = Some(String::from_utf8_lossy(&content).into_owned());
                }
            }
            _ => {}
        }
    }
    for app in facts.releases.values_mut() {
        app.releases.sort();
    }
    Err(ParseError::Truncated)
}

fn journal(facts: &mut HostFacts) -> &mut Journal {
    facts.journal.get_or_insert_with(Journal::default)
}

/// Whether `name` is a commit id as release directories are named.
fn is_commit(name: &str) -> bool {
    name.len() == 40 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The app of `/home/<app>/releases`.
fn app_of_releases(dir: &str) -> Option<AppName> {
    let app = dir
        .strip_prefix(HOME_ROOT)?
        .strip_prefix('/')?
        .strip_suffix("/releases")?;
    crate::definitions::names::is_valid(app).then(|| AppName::new(app))
}

/// A `path` record: kind, owner and group ids, mode, size, path, link
/// target, time.
fn path(
    facts: &mut HostFacts,
    record: &Record,
    user_names: &BTreeMap<u32, String>,
    group_names: &BTreeMap<u32, String>,
) -> Option<()> {
    let text = |i: usize| record.text(i).into_owned();
    // Names come from the user and group records; the number itself when
    // it has none.
    let named = |id: String, names: &BTreeMap<u32, String>| {
        id.parse::<u32>()
            .ok()
            .and_then(|n| names.get(&n).cloned())
            .unwrap_or(id)
    };
    let kind = match record.text(0).as_ref() {
        "f" => PathKind::File,
        "d" => PathKind::Directory,
        "l" => PathKind::Symlink,
        _ => PathKind::Other,
    };
    let path = text(5);
    let target = text(6);
    let facts_of_path = PathFacts {
        kind,
        owner: named(text(1), user_names),
        group: named(text(2), group_names),
        mode: u32::from_str_radix(&record.text(3), 8).ok()?,
        size: record.text(4).parse().ok()?,
        target: (kind == PathKind::Symlink).then(|| target.clone()),
        sha256: None,
        content: None,
        // `%T@` has a fraction: seconds are enough.
        mtime: record
            .text(7)
            .split('.')
            .next()
            .and_then(|s| s.parse().ok()),
    };
    if kind == PathKind::Symlink
        && let Some(app) = AppPaths::app_of_current(&path)
    {
        facts.releases.entry(app).or_default().current = Some(target);
    }
    facts.paths.insert(path, facts_of_path);
    Some(())
}

#[cfg(test)]
mod tests;
