//! Elastic members: servers an autoscaler adds to a cluster at run time,
//! through the daemon's listener, rather than by a commit (autoscalers
//! cannot commit).
//!
//! A cluster that declares `elastic:` takes joins up to its `max_servers`.
//! Each member is a record here (`Members`), persisted in the daemon's
//! state directory (`elastic/members.json`) so that a restart keeps it,
//! with the host key its join carried in a known_hosts file of its own
//! (`elastic/known_hosts/<name>`): the transport checks that key strictly
//! from the first connection, and never learns another.
//!
//! Members are added to the definitions of the commit in force (`extend`)
//! as servers of their cluster, with the template's user and roles, so
//! that everything the daemon does for static servers (applies, releases,
//! status, metrics) covers them. The loop takes only `ready` members; a
//! joining one is worked on by its join (`join`) alone, on that server
//! only, and a leaving, failed or lost one by nothing.
//!
//! Nothing here trusts the join request: its name, address and port are
//! checked as a cluster file's would be, and its host key must be one
//! line of an algorithm name and base64.

pub mod join;
mod lost;

pub use lost::sweep_lost;
#[cfg(test)]
use lost::{Unreachable, lost};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::definitions::{
    AppServer, ClusterName, Definitions, LoadError, MemberKnownHosts, ServerName, WebPool, names,
};

pub use crate::board::{Member, MemberState};

/// A join as `POST /v1/clusters/<cluster>/servers` takes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The member's server name, unique in the definitions; refused unless
    /// it matches `^[a-z][a-z0-9-]{0,31}$`.
    pub name: String,
    /// A host name or an IP address to reach it by SSH (never `local`);
    /// also the host its key is recorded under.
    pub address: String,
    /// SSH port; the template's when absent.
    #[serde(default)]
    pub port: Option<u16>,
    /// The server's SSH host public key, `<algorithm> <base64> [comment]`
    /// (the comment is dropped), as in its `/etc/ssh/ssh_host_*_key.pub`.
    /// Only a cluster that accepts new host keys takes a join without it.
    #[serde(default)]
    pub host_key: Option<String>,
}

/// Why a join or a leave is refused; each maps to one HTTP status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no such cluster, or it takes no joins.
    #[error("{0}")]
    NotFound(String),
    /// 409: at `max_servers`, or the name is taken.
    #[error("{0}")]
    Conflict(String),
    /// 400: a bad name, address, port or host key.
    #[error("{0}")]
    Invalid(String),
    /// 503: nothing is in force yet, or the state cannot be written.
    #[error("{0}")]
    Unavailable(String),
}

/// The host key algorithms a join may carry.
const KEY_ALGORITHMS: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
];

/// `<algorithm> <base64>` of a host public key line, or why not.
pub fn host_key(line: &str) -> Result<String, String> {
    let mut words = line.split_ascii_whitespace();
    let (Some(algorithm), Some(key)) = (words.next(), words.next()) else {
        return Err("the host key must be `<algorithm> <base64>`".into());
    };
    if !KEY_ALGORITHMS.contains(&algorithm) {
        return Err(format!(
            "`{}` is not a host key algorithm reconciler takes ({})",
            algorithm.escape_debug(),
            KEY_ALGORITHMS.join(", ")
        ));
    }
    let base64 = key.len() <= 4096
        && key.len() >= 16
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !base64 || line.contains(['\n', '\r']) {
        return Err("the host key is not base64 on one line".into());
    }
    Ok(format!("{algorithm} {key}"))
}

/// The SHA256 fingerprint of a host key `<algorithm> <base64>`, as
/// `ssh-keygen -l` shows it (`SHA256:` and unpadded base64), or `None`
/// when the key is not base64.
pub fn fingerprint(key: &str) -> Option<String> {
    use base64::Engine as _;
    use sha2::Digest as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key.split_ascii_whitespace().nth(1)?)
        .ok()?;
    let digest = sha2::Sha256::digest(&blob);
    Some(format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    ))
}

/// The host key a known_hosts file's first line holds, `<algorithm>
/// <base64>` (its host names, hashed or not, dropped), or `None` when it
/// holds none or the line is not a host key.
pub fn recorded_key(known_hosts: &str) -> Option<String> {
    let line = known_hosts
        .lines()
        .find(|l| !l.trim().is_empty() && !l.starts_with('#'))?;
    let mut words = line.split_ascii_whitespace().skip(1);
    let (algorithm, key) = (words.next()?, words.next()?);
    host_key(&format!("{algorithm} {key}")).ok()
}

/// The known_hosts line that pins `key` for `address:port`.
pub fn known_hosts_line(address: &str, port: u16, key: &str) -> String {
    if port == 22 {
        format!("{address} {key}\n")
    } else {
        format!("[{address}]:{port} {key}\n")
    }
}

/// Every member of every cluster, persisted in a state directory.
pub struct Members {
    dir: PathBuf,
    members: Mutex<BTreeMap<String, Member>>,
    /// Notified when the set of ready members changes (the loop takes the
    /// commit in force again with them).
    pub changed: Notify,
    /// Told every member after each change (the status board).
    observer: std::sync::OnceLock<Observer>,
    /// Where the definitions in force are shared (the board's, for the
    /// deploy webhook and joins), and the commit in force's own
    /// definitions (without members) they are made from: see
    /// [`Members::put_in_force`].
    published: std::sync::OnceLock<crate::board::DefinitionsInForce>,
    base: Mutex<Option<Definitions>>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("dir", &self.dir)
            .field("members", &self.lock().len())
            .finish_non_exhaustive()
    }
}

/// What is told every member after each change.
pub type Observer = Box<dyn Fn(&[Member]) + Send + Sync>;

/// Why the members cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} `{}`", .path.display())]
pub struct StoreError {
    what: &'static str,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl Members {
    /// The members kept under `dir` (made if missing): none at first.
    ///
    /// # Errors
    /// `dir` cannot be made, or `members.json` cannot be read or parsed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let failed = |what, path: &Path| {
            let path = path.to_owned();
            move |source| StoreError { what, path, source }
        };
        std::fs::create_dir_all(dir.join("known_hosts")).map_err(failed("make", dir))?;
        let path = dir.join("members.json");
        let members = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Vec<Member>>(&bytes)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
                .map_err(failed("parse", &path))?
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(failed("read", &path)(e)),
        };
        Ok(Self {
            dir: dir.to_owned(),
            members: Mutex::new(members),
            changed: Notify::new(),
            observer: std::sync::OnceLock::new(),
            published: std::sync::OnceLock::new(),
            base: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Member>> {
        self.members
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every member, by name.
    pub fn all(&self) -> Vec<Member> {
        self.lock().values().cloned().collect()
    }

    /// The member `name` of `cluster`.
    pub fn get(&self, cluster: &str, name: &str) -> Option<Member> {
        self.lock()
            .get(name)
            .filter(|m| m.cluster == cluster)
            .cloned()
    }

    /// The known_hosts file of member `name`.
    pub fn known_hosts(&self, name: &str) -> PathBuf {
        self.dir.join("known_hosts").join(name)
    }

    /// Checks a join of `request` to `cluster` against `definitions` (the
    /// commit in force) and the members, and records it `joining` with
    /// its host key. Nothing reaches a server here.
    ///
    /// # Errors
    /// A [`Refusal`] saying why; nothing is recorded then.
    pub fn admit(
        &self,
        definitions: &Definitions,
        cluster: &str,
        request: &JoinRequest,
        now: DateTime<Utc>,
    ) -> Result<Member, Refusal> {
        let Some(found) = definitions
            .clusters
            .iter()
            .find(|c| c.name.as_str() == cluster)
        else {
            return Err(Refusal::NotFound(format!("no cluster `{cluster}`")));
        };
        let Some(elastic) = &found.elastic else {
            return Err(Refusal::NotFound(format!(
                "cluster `{cluster}` takes no joins: it declares no `elastic`"
            )));
        };
        if !names::is_valid(&request.name) {
            return Err(Refusal::Invalid(format!(
                "`{}` is not a valid server name: it must match {}",
                request.name.escape_debug(),
                names::NAME_PATTERN
            )));
        }
        if !crate::definitions::is_address(&request.address) || request.address == "local" {
            return Err(Refusal::Invalid(format!(
                "`{}` is not a host name or an IP address",
                request.address.escape_debug()
            )));
        }
        let port = request.port.unwrap_or(elastic.template.port);
        if port == 0 {
            return Err(Refusal::Invalid("port 0 cannot be connected to".into()));
        }
        let key = match &request.host_key {
            Some(line) => Some(host_key(line).map_err(Refusal::Invalid)?),
            None if elastic.accept_new_host_keys => None,
            None => {
                return Err(Refusal::Invalid(format!(
                    "the join carries no `host_key`, and cluster `{cluster}` does not accept \
                     new host keys\nhint: send the server's host public key (its \
                     `/etc/ssh/ssh_host_ed25519_key.pub`), or set \
                     `elastic.accept_new_host_keys: true` in the cluster"
                )));
            }
        };
        if definitions
            .servers()
            .any(|(_, s)| s.name.as_str() == request.name && s.known_hosts.is_none())
        {
            return Err(Refusal::Conflict(format!(
                "`{}` is a static server of the definitions",
                request.name
            )));
        }
        let member = Member {
            name: request.name.clone(),
            cluster: cluster.to_owned(),
            address: request.address.clone(),
            port,
            host_key: key,
            state: MemberState::Joining,
            cause: None,
            joined_at: now,
            since: now,
        };
        let mut members = self.lock();
        if let Some(existing) = members.get(&request.name)
            && existing.state.counts()
        {
            return Err(Refusal::Conflict(format!(
                "`{}` is a member already ({})",
                request.name,
                existing.state.as_str()
            )));
        }
        let joined = members
            .values()
            .filter(|m| m.cluster == cluster && m.state.counts())
            .count();
        if joined >= elastic.max_servers as usize {
            return Err(Refusal::Conflict(format!(
                "cluster `{cluster}` has {joined} members: its `max_servers`"
            )));
        }
        // Without a key, an empty file: the first connection records one.
        let line = member.host_key.as_deref().map_or(String::new(), |key| {
            known_hosts_line(&member.address, member.port, key)
        });
        crate::fsutil::write_atomically(&self.known_hosts(&member.name), line.as_bytes())
            .map_err(|e| Refusal::Unavailable(format!("cannot keep the host key: {e}")))?;
        let before = members.insert(member.name.clone(), member.clone());
        if let Err(e) = self.save(&members) {
            match before {
                Some(before) => members.insert(before.name.clone(), before),
                None => members.remove(&member.name),
            };
            return Err(Refusal::Unavailable(e.to_string()));
        }
        Ok(member)
    }

    /// Moves member `name` to `state` (with `cause` for `failed` and
    /// `lost`), persisted; the loop is told when `ready` is entered or
    /// left. Returns the member as it is now.
    pub fn set(
        &self,
        name: &str,
        state: MemberState,
        cause: Option<String>,
        now: DateTime<Utc>,
    ) -> Option<Member> {
        self.set_if(name, |_| true, state, cause, now)
    }

    /// Moves the join of member `name` that started at `joined_at` on to
    /// `state`, unless the member left or joined again meanwhile (checked
    /// under the same lock). Whether it moved.
    pub fn advance(
        &self,
        name: &str,
        joined_at: DateTime<Utc>,
        state: MemberState,
        cause: Option<String>,
        now: DateTime<Utc>,
    ) -> bool {
        let ours = |m: &Member| m.joined_at == joined_at && m.state != MemberState::Leaving;
        self.set_if(name, ours, state, cause, now).is_some()
    }

    fn set_if(
        &self,
        name: &str,
        only: impl Fn(&Member) -> bool,
        state: MemberState,
        cause: Option<String>,
        now: DateTime<Utc>,
    ) -> Option<Member> {
        let mut members = self.lock();
        let member = members.get_mut(name).filter(|m| only(m))?;
        let was_ready = member.state == MemberState::Ready;
        if member.state != state {
            member.since = now;
        }
        member.state = state;
        member.cause = cause;
        let member = member.clone();
        if let Err(error) = self.save(&members) {
            tracing::error!(%error, server = name, "cannot keep the elastic members");
        }
        let changed = was_ready != (state == MemberState::Ready);
        if changed {
            // Under the members' lock, as `put_in_force`: whichever of
            // the two comes last publishes the members as they are.
            let base = self
                .base
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(base) = base.as_ref() {
                self.publish(base, &members);
            }
        }
        drop(members);
        if changed {
            self.changed.notify_one();
        }
        Some(member)
    }

    /// Records `key` as the host key of the join of member `name` that
    /// started at `joined_at` (the one its first connection recorded),
    /// unless the member left or joined again meanwhile. Whether it did.
    pub fn learn(&self, name: &str, joined_at: DateTime<Utc>, key: &str) -> bool {
        let mut members = self.lock();
        let Some(member) = members
            .get_mut(name)
            .filter(|m| m.joined_at == joined_at && m.state != MemberState::Leaving)
        else {
            return false;
        };
        member.host_key = Some(key.to_owned());
        if let Err(error) = self.save(&members) {
            tracing::error!(%error, server = name, "cannot keep the elastic members");
        }
        true
    }

    /// Marks member `name` of `cluster` `leaving`: no release or reload
    /// goes to it any more; its record stays.
    ///
    /// # Errors
    /// [`Refusal::NotFound`] when `cluster` has no such member.
    pub fn leave(&self, cluster: &str, name: &str, now: DateTime<Utc>) -> Result<Member, Refusal> {
        if self.get(cluster, name).is_none() {
            return Err(Refusal::NotFound(format!(
                "cluster `{cluster}` has no member `{}`",
                name.escape_debug()
            )));
        }
        self.set(name, MemberState::Leaving, None, now)
            .ok_or_else(|| Refusal::NotFound(format!("no member `{name}`")))
    }

    /// Tells `observer` every member now and after each change (once:
    /// a second observer is ignored).
    pub fn observe(&self, observer: Observer) {
        observer(&self.all());
        let _ = self.observer.set(observer);
    }

    /// Removes member `name`'s record and its host key (a member that
    /// left, failed or was lost).
    pub fn forget(&self, name: &str) {
        let mut members = self.lock();
        if members.remove(name).is_none() {
            return;
        }
        if let Err(error) = self.save(&members) {
            tracing::error!(%error, server = name, "cannot keep the elastic members");
        }
        let _ = std::fs::remove_file(self.known_hosts(name));
    }

    fn save(&self, members: &BTreeMap<String, Member>) -> Result<(), StoreError> {
        let path = self.dir.join("members.json");
        let list: Vec<Member> = members.values().cloned().collect();
        if let Some(observer) = self.observer.get() {
            observer(&list);
        }
        let bytes = serde_json::to_vec_pretty(&list)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
            .and_then(|bytes| crate::fsutil::write_atomically(&path, &bytes));
        bytes.map_err(|source| StoreError {
            what: "write",
            path,
            source,
        })
    }

    /// `definitions` with every `ready` member added (see [`extend`]).
    pub fn with_ready(&self, definitions: &Definitions) -> Definitions {
        self.ready_in(definitions, &self.lock())
    }

    fn ready_in(
        &self,
        definitions: &Definitions,
        members: &BTreeMap<String, Member>,
    ) -> Definitions {
        let ready: Vec<Member> = members
            .values()
            .filter(|m| m.state == MemberState::Ready)
            .cloned()
            .collect();
        extend(definitions, &ready, |name| self.known_hosts(name))
    }

    /// Shares the definitions in force in `to` from now on (the board's):
    /// [`Members::put_in_force`] and every change of the ready members
    /// write it.
    pub fn publish_to(&self, to: crate::board::DefinitionsInForce) {
        let _ = self.published.set(to);
    }

    /// Puts the commit whose own definitions are `base` in force: shares
    /// `base` with the members ready now (read under the same lock as
    /// their changes, so that a member that left while the commit was
    /// loaded is not put back), and keeps `base` for the changes to come.
    /// Returns the definitions shared.
    pub fn put_in_force(&self, base: Definitions) -> Definitions {
        let members = self.lock();
        let mut kept = self
            .base
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let shared = self.publish(&base, &members);
        *kept = Some(base);
        shared
    }

    /// Writes `base` with the ready ones of `members` where the
    /// definitions in force are shared; returns them.
    fn publish(&self, base: &Definitions, members: &BTreeMap<String, Member>) -> Definitions {
        let definitions = self.ready_in(base, members);
        if let Some(to) = self.published.get() {
            *to.write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some(std::sync::Arc::new(definitions.clone()));
        }
        definitions
    }
}

/// `definitions` with `members` added to their clusters as servers (the
/// template's user and web role, their own known_hosts file from
/// `known_hosts`) and to each app of the cluster with the template's roles.
/// A member whose cluster no longer takes joins, or whose name a static
/// server now has, is left out (and logged).
pub fn extend(
    definitions: &Definitions,
    members: &[Member],
    known_hosts: impl Fn(&str) -> PathBuf,
) -> Definitions {
    let mut out = definitions.clone();
    for member in members {
        let taken = out.servers().any(|(_, s)| s.name.as_str() == member.name);
        let Some(cluster) = out
            .clusters
            .iter_mut()
            .find(|c| c.name.as_str() == member.cluster)
        else {
            tracing::warn!(server = %member.name, cluster = %member.cluster, "an elastic member's cluster is gone: left out");
            continue;
        };
        let Some(elastic) = cluster.elastic.clone() else {
            tracing::warn!(server = %member.name, "an elastic member's cluster takes no joins any more: left out");
            continue;
        };
        if taken {
            tracing::warn!(server = %member.name, "an elastic member's name is a static server's now: left out");
            continue;
        }
        let name = ServerName::new(member.name.as_str());
        let template = &elastic.template;
        cluster.servers.push(crate::definitions::Server {
            name: name.clone(),
            address: member.address.clone(),
            port: member.port,
            user: template.user.clone(),
            web_server: template.web_server,
            known_hosts: Some(MemberKnownHosts {
                file: known_hosts(&member.name),
                accept_new: member.host_key.is_none() && elastic.accept_new_host_keys,
            }),
        });
        let cluster_name = ClusterName::new(member.cluster.as_str());
        for app in out.apps.iter_mut().filter(|a| a.cluster == cluster_name) {
            let role = match &template.like {
                Some(like) => app
                    .servers
                    .iter()
                    .find(|r| &r.name == like)
                    .map(|r| AppServer {
                        name: name.clone(),
                        web: r.web,
                        deploy_commands: Vec::new(),
                        workers: r.workers.clone(),
                        scheduler: false,
                    }),
                None if template.web_server && !app.domains.is_empty() => Some(AppServer {
                    name: name.clone(),
                    web: Some(WebPool::default()),
                    deploy_commands: Vec::new(),
                    workers: Vec::new(),
                    scheduler: false,
                }),
                None => None,
            };
            app.servers.extend(role);
        }
    }
    out
}

/// Definitions files loaded and rendered as [`crate::converge::load`]
/// does, with `members`' ready ones added before rendering; with the
/// files' own definitions (without members) when there are members, for
/// [`Members::put_in_force`].
///
/// # Errors
/// As `converge::load`.
pub fn load(
    files: &crate::definitions::DefinitionFiles,
    members: Option<&Members>,
) -> Result<(crate::converge::Loaded, Option<Definitions>), LoadError> {
    let Some(members) = members else {
        return crate::converge::load(files).map(|loaded| (loaded, None));
    };
    let base = Definitions::parse(files)?;
    let definitions = members.with_ready(&base);
    let desired = crate::units::Desired::render(&definitions).map_err(LoadError::Invalid)?;
    Ok((
        crate::converge::Loaded {
            definitions,
            desired,
        },
        Some(base),
    ))
}

#[cfg(test)]
mod tests;
