//! Which commit a revision names, as the remote has it: its branches (as
//! fetched) and tags, or a commit id one of them reaches; and what to say
//! when it names none.

use super::{CommitId, GitError, Mirror};

/// What `UnknownRevision` says.
pub(super) fn unknown_revision(rev: &str, url: &str, unreachable: bool) -> String {
    if rev.trim().is_empty() {
        format!("an empty revision names no commit of `{url}`")
    } else if unreachable {
        format!(
            "`{}` is a commit that no branch or tag of `{url}` reaches any more: only this \
             mirror still holds it",
            rev.escape_debug()
        )
    } else {
        format!(
            "no commit, tag or branch `{}` in `{url}`",
            rev.escape_debug()
        )
    }
}

impl GitError {
    /// What to do about it, when it is for the user to fix.
    pub fn hint(&self) -> Option<&str> {
        match self {
            GitError::UnknownRevision { known, .. } => Some(known),
            _ => None,
        }
    }
}

impl Mirror {
    /// The commit `rev` names: a branch, a tag or a commit id (or an
    /// expression on one, such as `main~1`), as the remote has it: a
    /// commit id no branch or tag of the remote reaches is refused, as a
    /// fresh mirror would not have it.
    ///
    /// # Errors
    /// `UnknownRevision` (empty, unknown, unreachable), naming some of the
    /// remote's branches and tags.
    pub fn resolve(&self, rev: &str) -> Result<CommitId, GitError> {
        let unknown = |unreachable| GitError::UnknownRevision {
            rev: rev.to_owned(),
            url: crate::redact::url(&self.url),
            unreachable,
            known: self.known_refs(),
        };
        if rev.trim().is_empty() {
            return Err(unknown(false));
        }
        let peel = |spec: &str| {
            let id = self.repo.rev_parse_single(spec).ok()?;
            let commit = id.object().ok()?.peel_to_commit().ok()?;
            Some(commit.id)
        };
        // Fetches update the remote-tracking refs and the tags; the
        // clone's own heads (and HEAD) stay where the clone left them, and
        // are never read.
        for prefix in ["refs/remotes/origin/", "refs/tags/"] {
            if let Some(id) = peel(&format!("{prefix}{rev}")) {
                return Ok(id.to_string());
            }
        }
        // A commit id (or its start), alone or with a suffix: only when a
        // branch or tag of the remote reaches it.
        let is_id = rev
            .split(['~', '^', '@', ':'])
            .next()
            .is_some_and(|id| id.len() >= 4 && id.bytes().all(|b| b.is_ascii_hexdigit()));
        if !is_id {
            return Err(unknown(false));
        }
        let Some(id) = peel(rev) else {
            return Err(unknown(false));
        };
        if self.reachable(id) {
            Ok(id.to_string())
        } else {
            Err(unknown(true))
        }
    }

    /// Whether the mirror holds the commit `commit` (40 hex characters),
    /// whether or not a branch or tag reaches it.
    pub fn has_commit(&self, commit: &str) -> bool {
        self.commit(commit).is_ok()
    }

    /// Whether a remote branch or a tag reaches `id`.
    fn reachable(&self, id: gix::ObjectId) -> bool {
        let tips: Vec<gix::ObjectId> = self
            .remote_refs()
            .into_iter()
            .filter_map(|name| {
                let found = self.repo.rev_parse_single(name.as_str()).ok()?;
                Some(found.object().ok()?.peel_to_commit().ok()?.id)
            })
            .collect();
        if tips.contains(&id) {
            return true;
        }
        let Ok(walk) = self.repo.rev_walk(tips).all() else {
            return false;
        };
        walk.filter_map(Result::ok).any(|info| info.id == id)
    }

    /// The full names of the remote's branches (as fetched) and tags.
    fn remote_refs(&self) -> Vec<String> {
        let Ok(platform) = self.repo.references() else {
            return Vec::new();
        };
        let mut names = Vec::new();
        for iter in [platform.remote_branches(), platform.tags()] {
            let Ok(iter) = iter else { continue };
            names.extend(
                iter.filter_map(Result::ok)
                    .map(|r| r.name().as_bstr().to_string())
                    .filter(|n| n != "refs/remotes/origin/HEAD"),
            );
        }
        names
    }

    /// Some of the remote's branches and tags, for a hint: `branches: main,
    /// develop; tags: v1.0, v1.1 (and 40 more)`.
    fn known_refs(&self) -> String {
        const SHOWN: usize = 8;
        let names = self.remote_refs();
        let list = |prefix: &str, what: &str| -> Option<String> {
            let mut found: Vec<&str> = names
                .iter()
                .filter_map(|n| n.strip_prefix(prefix))
                .collect();
            found.sort_unstable();
            // Tags: the newest names last in order; show those.
            if prefix == "refs/tags/" {
                found.reverse();
            }
            let more = found.len().saturating_sub(SHOWN);
            let shown: Vec<String> = found
                .iter()
                .take(SHOWN)
                .map(|n| n.escape_debug().to_string())
                .collect();
            (!shown.is_empty()).then(|| {
                let more = if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                };
                format!("{what}: {}{more}", shown.join(", "))
            })
        };
        let parts: Vec<String> = [
            list("refs/remotes/origin/", "branches"),
            list("refs/tags/", "tags"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "the repository has no branch or tag: push one first".to_owned()
        } else {
            format!(
                "name a branch, a tag or a commit on one; the repository has {}",
                parts.join("; ")
            )
        }
    }
}
