//! One change to a server, as data: what `plan` decides and `apply` sends.
//!
//! Every file change carries what the plan saw at its path (`expected`),
//! so that apply can refuse to act on a server that changed since: the
//! plan is a compare-and-swap, not a blind write.

use schemars::JsonSchema;
use serde::Serialize;

use super::reload::Service;
use crate::facts::ProgramState;
use crate::layout::ConfigFile;

/// Whether a change creates, updates or removes something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Bring into being what does not exist: a user, a directory, a file.
    Create,
    /// Fix what exists and differs: content, owner, group, mode, a group's
    /// members.
    Update,
    /// Delete a file reconciler wrote that no unit wants any more.
    Remove,
    /// Start a service or worker process that should run and does not.
    Start,
}

/// Owner, group and mode of a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Ownership {
    /// The owning user's name; on a found path, the uid itself when the
    /// server's passwd has no name for it.
    pub owner: String,
    /// The owning group's name; on a found path, the gid itself when the
    /// server's group file has no name for it.
    pub group: String,
    /// Permission bits in octal, such as "0644".
    #[serde(serialize_with = "octal")]
    #[schemars(with = "String")]
    pub mode: u32,
}

impl Ownership {
    /// `owner`, `group` and `mode`, the permission bits (`0o644`; only the
    /// low 12 bits are meaningful).
    pub fn new(owner: &str, group: &str, mode: u32) -> Self {
        Self {
            owner: owner.to_owned(),
            group: group.to_owned(),
            mode,
        }
    }
}

// serde's `serialize_with` passes a reference.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn octal<S: serde::Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// One change to a server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Create an app's system user with its group and home.
    CreateUser {
        /// The user's name, which is the app's name; its group has the
        /// same name.
        user: String,
        /// The absolute path of its home, `/home/<app>`.
        home: String,
    },
    /// Add nginx's user to an app's group so it can read the app's public files.
    JoinGroup {
        /// The user that joins: nginx's, `www-data`.
        user: String,
        /// The group it joins: the app's, named like the app.
        group: String,
    },
    /// Create a directory.
    CreateDirectory {
        /// The directory's absolute path on the server.
        path: String,
        /// The owner, group and mode it is created with.
        to: Ownership,
        /// The app whose home holds it; apply works on it as that app's user.
        #[serde(skip)]
        inside_home_of: Option<String>,
    },
    /// Fix a directory's owner, group or mode.
    UpdateDirectory {
        /// The directory's absolute path on the server.
        path: String,
        /// The owner, group and mode the plan found.
        from: Ownership,
        /// The owner, group and mode it should have.
        to: Ownership,
        /// The app whose home holds it; apply works on it as that app's user.
        #[serde(skip)]
        inside_home_of: Option<String>,
    },
    /// Write a file that does not exist.
    CreateFile {
        /// The file's absolute path on the server, one reconciler manages
        /// (`layout::ConfigFile`).
        path: String,
        /// The owner, group and mode it is written with.
        to: Ownership,
        /// Unified diff from nothing.
        diff: String,
        /// The whole text to write, as the unit rendered it.
        #[serde(skip)]
        content: String,
    },
    /// Rewrite a file whose content, owner, group or mode differs.
    UpdateFile {
        /// The file's absolute path on the server, one reconciler manages
        /// (`layout::ConfigFile`).
        path: String,
        /// The owner, group and mode the plan found.
        from: Ownership,
        /// The owner, group and mode it should have.
        to: Ownership,
        /// Unified diff of the content; absent when only ownership differs.
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
        /// Whether reconciler did not write this file before and takes it over.
        adopt: bool,
        /// The whole text to write, as the unit rendered it; written even
        /// when only ownership differs.
        #[serde(skip)]
        content: String,
        /// The sha256 of the file the plan saw, in lowercase hex; empty when
        /// the facts had none. Apply refuses to write when the file no
        /// longer has it.
        #[serde(skip)]
        expected: String,
    },
    /// Remove a file reconciler wrote whose unit left the definitions.
    RemoveFile {
        /// The file's absolute path on the server; always one listed in the
        /// server's manifest of files reconciler wrote.
        path: String,
        /// Unified diff to nothing.
        diff: String,
        /// The sha256 of the file the plan saw, in lowercase hex; empty when
        /// the facts had none. Apply refuses to remove it when the file no
        /// longer has it.
        #[serde(skip)]
        expected: String,
    },
    /// Start a system service the units need that is stopped.
    StartService {
        /// The name the init system knows it by: `nginx`, `php8.2-fpm`,
        /// `supervisor`, `cron`.
        service: String,
    },
    /// Start a process of an app's workers that does not run.
    StartProgram {
        /// supervisor's full name of the process: `<app>-<worker>:<app>-<worker>_00`.
        program: String,
        /// The state the plan saw it in.
        state: ProgramState,
    },
}

impl Change {
    /// Whether this change creates, updates, removes or starts something,
    /// the word the plan's summary counts it under.
    pub fn action(&self) -> Action {
        match self {
            Change::CreateUser { .. }
            | Change::CreateDirectory { .. }
            | Change::CreateFile { .. } => Action::Create,
            Change::JoinGroup { .. }
            | Change::UpdateDirectory { .. }
            | Change::UpdateFile { .. } => Action::Update,
            Change::RemoveFile { .. } => Action::Remove,
            Change::StartService { .. } | Change::StartProgram { .. } => Action::Start,
        }
    }

    /// The file this change writes or removes.
    pub fn file_path(&self) -> Option<&str> {
        match self {
            Change::CreateFile { path, .. }
            | Change::UpdateFile { path, .. }
            | Change::RemoveFile { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The service that must validate and reload because of this change.
    pub fn service(&self) -> Option<Service> {
        match self {
            Change::CreateFile { path, .. } | Change::RemoveFile { path, .. } => {
                ConfigFile::parse(path).and_then(|f| Service::of(&f))
            }
            Change::UpdateFile { path, diff, .. } => diff
                .as_ref()
                .and(ConfigFile::parse(path).and_then(|f| Service::of(&f))),
            // nginx's workers take up new group memberships when they restart.
            Change::JoinGroup { .. } => Some(Service::Nginx),
            _ => None,
        }
    }
}
