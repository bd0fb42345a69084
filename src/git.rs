//! The edge to git: a bare mirror of a remote repository, cloned once and
//! fetched incrementally (the git CLI, `cli`), and what a commit holds
//! (gix, `tree`).
//!
//! The watch daemon reads the definitions from the tree of a commit with
//! `definition_files`, by the same rules as a directory: only
//! `clusters/*.yaml`, `apps/*.yaml` and `templates/*.hbs`, and an entry that
//! should be read but cannot be (a link, a directory named `shop.yaml`, a
//! file over the size limit) is a problem, never skipped. Links in a tree
//! are never followed: they could point anywhere on this machine.
//!
//! gix blocks: call these from a blocking thread.
//!
//! A URL may carry credentials (`https://user:password@host/...`): errors
//! name it redacted, and gix's own errors are kept scrubbed of it
//! (`crate::redact`), so no `GitError` can show them.

use std::path::{Path, PathBuf};

/// A commit id, as 40 hex characters.
pub type CommitId = String;

/// Why a git operation failed. URLs in it are redacted and its causes
/// scrubbed of their credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The first fetch into a new mirror failed (the remote unreachable,
    /// refusing us, not a repository), or its directory could not be
    /// made.
    #[error("cannot clone `{url}`")]
    Clone {
        /// The remote, with any password replaced (`crate::redact::url`).
        url: String,
        /// git's complaint, scrubbed of the URL's credentials.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `git fetch` into the existing mirror failed.
    #[error("cannot fetch from `{url}`")]
    Fetch {
        /// The remote, with any password replaced (`crate::redact::url`).
        url: String,
        /// git's complaint, scrubbed of the URL's credentials.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The mirror's directory has a `HEAD` (or was just cloned) but gix
    /// cannot open it as a repository.
    #[error("cannot open the mirror in `{}`", .path.display())]
    Open {
        /// The mirror's directory on this machine.
        path: PathBuf,
        /// gix's error, scrubbed of the URL's credentials.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `rev` names no commit the remote has: empty, unknown, or a commit
    /// only this mirror still holds (no branch or tag of the remote
    /// reaches it any more).
    #[error("{}", revision::unknown_revision(.rev, .url, *.unreachable))]
    UnknownRevision {
        /// The revision as the user gave it (`--rev`, a pin).
        rev: String,
        /// The remote, with any password replaced (`crate::redact::url`).
        url: String,
        /// The commit exists here but no branch or tag reaches it.
        unreachable: bool,
        /// What the remote has: some of its branches and tags.
        known: String,
    },
    /// An object the mirror should hold cannot be read: a commit, its
    /// tree, a blob in it, or the ref naming it.
    #[error("cannot read commit {commit}")]
    Read {
        /// The commit id (40 hex characters), or the ref
        /// (`refs/remotes/origin/<branch>`) being resolved.
        commit: String,
        /// gix's error, scrubbed of the URL's credentials.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `e` and its causes as a source of `GitError`, without the credentials
/// of `url`.
fn boxed(
    url: &str,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(crate::redact::ScrubbedError::new(&e, url))
}

/// A bare mirror of a remote repository in a local directory.
pub struct Mirror {
    url: String,
    path: PathBuf,
    repo: gix::Repository,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &crate::redact::url(&self.url))
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Opens the mirror at `path`, cloning `url` there first when it is
    /// not one yet. `url` is a path or an ssh or https URL.
    pub fn open_or_clone(url: &str, path: &Path) -> Result<Self, GitError> {
        if path.join("HEAD").exists() {
            cli::forget_origin(path).map_err(|e| GitError::Open {
                path: path.to_owned(),
                source: Box::new(crate::redact::ScrubbedError::new(&*e, url)),
            })?;
            let repo = gix::open(path).map_err(|e| GitError::Open {
                path: path.to_owned(),
                source: boxed(url, e),
            })?;
            return Ok(Self {
                url: url.to_owned(),
                path: path.to_owned(),
                repo,
            });
        }
        let clone_error = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Clone {
            url: crate::redact::url(url),
            source: e,
        };
        cli::clone_bare(url, path, cli::FETCH_TIMEOUT)
            .map_err(|e| clone_error(Box::new(crate::redact::ScrubbedError::new(&*e, url))))?;
        let repo = gix::open(path).map_err(|e| GitError::Open {
            path: path.to_owned(),
            source: boxed(url, e),
        })?;
        Ok(Self {
            url: url.to_owned(),
            path: path.to_owned(),
            repo,
        })
    }

    /// The URL or path the mirror was made from, with its credentials:
    /// show `crate::redact::url` of it, never it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches what is new on the remote, and makes the mirror follow it
    /// exactly: a tag moved there (`git tag -f`) moves here, and a branch
    /// or tag deleted there is deleted here, so that no release or commit
    /// is ever taken from a ref the remote no longer has.
    pub fn fetch(&mut self) -> Result<(), GitError> {
        let url = self.url.as_str();
        cli::fetch(url, &self.path, cli::FETCH_TIMEOUT).map_err(|e| GitError::Fetch {
            url: crate::redact::url(url),
            source: Box::new(crate::redact::ScrubbedError::new(&*e, url)),
        })?;
        // Refs written by the fetch are read from disk from here on.
        self.repo = gix::open(&self.path).map_err(|e| GitError::Open {
            path: self.path.clone(),
            source: boxed(url, e),
        })?;
        Ok(())
    }

    /// The commit at the head of `branch` on the remote, as last fetched;
    /// `None` when the remote has no such branch (deleted or renamed):
    /// the clone's own heads are never taken for it.
    ///
    /// # Errors
    /// The ref cannot be read or does not name a commit.
    pub fn branch_head(&self, branch: &str) -> Result<Option<CommitId>, GitError> {
        let name = format!("refs/remotes/origin/{branch}");
        let Ok(Some(reference)) = self.repo.try_find_reference(name.as_str()) else {
            return Ok(None);
        };
        let mut reference = reference;
        let id = reference.peel_to_id().map_err(|e| GitError::Read {
            commit: name.clone(),
            source: boxed(&self.url, e),
        })?;
        let read = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Read {
            commit: name.clone(),
            source: e,
        };
        let object = id.object().map_err(|e| read(boxed(&self.url, e)))?;
        let commit = object
            .peel_to_commit()
            .map_err(|e| read(boxed(&self.url, e)))?;
        Ok(Some(commit.id.to_string()))
    }

    /// The commit `commit` (40 hex characters).
    fn commit(&self, commit: &str) -> Result<gix::Commit<'_>, GitError> {
        let id = gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| GitError::Read {
            commit: commit.to_owned(),
            source: boxed(&self.url, e),
        })?;
        self.repo.find_commit(id).map_err(|e| GitError::Read {
            commit: commit.to_owned(),
            source: boxed(&self.url, e),
        })
    }

    /// The tree of `commit` (40 hex characters).
    fn tree_of(&self, commit: &str) -> Result<gix::Tree<'_>, GitError> {
        self.commit(commit)?.tree().map_err(|e| GitError::Read {
            commit: commit.to_owned(),
            source: boxed(&self.url, e),
        })
    }
}

mod cli;
mod locks;
mod revision;
mod tree;

pub use locks::clear_stale_locks;
pub use tree::{EntryKindOf, TreeEntry};

#[cfg(test)]
mod tests;
