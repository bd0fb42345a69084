//! The edge to git: a bare mirror of a remote repository, cloned once and
//! fetched incrementally (the git CLI, `cli`), and what a commit holds
//! (gix).
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
use std::sync::atomic::AtomicBool;

use crate::definitions::DefinitionFiles;
use crate::definitions::files::KINDS;

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

/// One entry of a commit's tree, for checks before a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    /// Its path in the repository, `/`-separated.
    pub path: String,
    /// A file, a link or a submodule; directories are not entries, their
    /// contents are.
    pub kind: EntryKindOf,
    /// Bytes, for a file or a link (its target's length).
    pub size: u64,
    /// A file that holds only a git LFS pointer, not the file itself.
    pub lfs_pointer: bool,
    /// Left out of the archive by an `export-ignore` attribute (the
    /// commit's `.gitattributes`), as `git archive` leaves it out.
    pub export_ignored: bool,
}

/// What a tree entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKindOf {
    /// A blob, executable or not.
    File,
    /// A symbolic link; its target is the blob's content.
    Link,
    /// A gitlink: a submodule's commit, whose files the tree does not hold.
    Submodule,
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
        cli::clone_bare(url, path)
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
        cli::fetch(url, &self.path).map_err(|e| GitError::Fetch {
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

    /// The definitions files in the tree of `commit`.
    pub fn definition_files(&self, commit: &str) -> Result<DefinitionFiles, GitError> {
        let read_error = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Read {
            commit: commit.to_owned(),
            source: e,
        };
        let tree = self.tree_of(commit)?;
        // Paths as in the repository: messages name the commit beside them.
        let mut files = DefinitionFiles::new(".");
        files.revision = Some(commit.to_owned());
        let mut any_dir = false;
        for (dir, _) in KINDS {
            let Some(entry) = tree
                .lookup_entry_by_path(dir)
                .map_err(|e| read_error(boxed(&self.url, e)))?
            else {
                continue;
            };
            if !entry.mode().is_tree() {
                files.refuse(dir, "this is not a directory");
                continue;
            }
            any_dir |= *dir != "templates";
            let subtree = entry
                .object()
                .map_err(|e| read_error(boxed(&self.url, e)))?
                .peel_to_tree()
                .map_err(|e| read_error(boxed(&self.url, e)))?;
            for child in subtree.iter() {
                let child = child.map_err(|e| read_error(boxed(&self.url, e)))?;
                let name = child.filename().to_string();
                let relative = format!("{dir}/{name}");
                let mode = child.mode();
                if mode.is_link() {
                    files.refuse(&relative, "refusing a symbolic link in the repository");
                    continue;
                }
                if mode.is_tree() {
                    files.refuse(&relative, "this is a directory, not a definitions file");
                    continue;
                }
                let blob = child
                    .object()
                    .map_err(|e| read_error(boxed(&self.url, e)))?;
                files.insert(&relative, blob.data.clone());
            }
        }
        if !any_dir {
            files.refuse("clusters", "the commit has neither clusters/ nor apps/");
        }
        Ok(files)
    }

    /// Every file, link and submodule in the tree of `commit`, with each
    /// blob's size read from its object header (no blob is read whole),
    /// and whether a small blob is a git LFS pointer.
    pub fn entries(&self, commit: &str) -> Result<Vec<TreeEntry>, GitError> {
        let read_error = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Read {
            commit: commit.to_owned(),
            source: e,
        };
        let tree = self.tree_of(commit)?;
        // The attributes the archive reads (`worktree_stream`): the
        // commit's own `.gitattributes` files.
        let index = self
            .repo
            .index_from_tree(&tree.id)
            .map_err(|e| read_error(boxed(&self.url, e)))?;
        let mut attributes = self
            .repo
            .attributes_only(
                &index,
                gix::worktree::stack::state::attributes::Source::IdMapping,
            )
            .map_err(|e| read_error(boxed(&self.url, e)))?;
        let mut outcome = gix::attrs::search::Outcome::default();
        outcome.initialize_with_selection(&Default::default(), Some("export-ignore"));
        let mut recorder = gix::traverse::tree::Recorder::default();
        tree.traverse()
            .breadthfirst(&mut recorder)
            .map_err(|e| read_error(boxed(&self.url, e)))?;
        let mut entries = Vec::with_capacity(recorder.records.len());
        // Breadth first: a directory comes before what it holds, and what
        // an ignored directory holds is left out with it.
        let mut ignored_dirs = std::collections::BTreeSet::new();
        for record in recorder.records {
            use gix::object::tree::EntryKind;
            let path = record.filepath.to_string();
            let export_ignored = path
                .rsplit_once('/')
                .is_some_and(|(dir, _)| ignored_dirs.contains(dir))
                || {
                    attributes
                        .at_entry(&record.filepath, Some(record.mode.into()))
                        .map_err(|e| read_error(boxed(&self.url, e)))?
                        .matching_attributes(&mut outcome);
                    outcome
                        .iter_selected()
                        .next()
                        .is_some_and(|m| m.assignment.state.is_set())
                };
            let kind = match record.mode.kind() {
                EntryKind::Tree => {
                    if export_ignored {
                        ignored_dirs.insert(path);
                    }
                    continue;
                }
                EntryKind::Blob => EntryKindOf::File,
                EntryKind::BlobExecutable => EntryKindOf::File,
                EntryKind::Link => EntryKindOf::Link,
                EntryKind::Commit => EntryKindOf::Submodule,
            };
            let (size, lfs_pointer) = if kind == EntryKindOf::Submodule {
                (0, false)
            } else {
                let size = self
                    .repo
                    .find_header(record.oid)
                    .map_err(|e| read_error(boxed(&self.url, e)))?
                    .size();
                // An LFS pointer is a small text file of a known first line.
                let lfs = kind == EntryKindOf::File
                    && size < 1024
                    && self
                        .repo
                        .find_object(record.oid)
                        .map_err(|e| read_error(boxed(&self.url, e)))?
                        .data
                        .starts_with(b"version https://git-lfs.github.com/spec/");
                (size, lfs)
            };
            entries.push(TreeEntry {
                path,
                kind,
                size,
                lfs_pointer,
                export_ignored,
            });
        }
        Ok(entries)
    }

    /// Writes the tree of `commit` as a gzipped tar archive to `out`: the
    /// fastest compression, which costs less than it saves on any link
    /// slower than loopback. Every entry carries the commit's time, as
    /// `git archive` gives it: PHP's OPcache never caches a file dated
    /// 1970-01-01, and a released app would run uncached.
    pub fn archive(
        &self,
        commit: &str,
        out: &mut (impl std::io::Write + std::io::Seek),
    ) -> Result<(), GitError> {
        let read_error = |e: Box<dyn std::error::Error + Send + Sync>| GitError::Read {
            commit: commit.to_owned(),
            source: e,
        };
        let found = self.commit(commit)?;
        let time = found
            .time()
            .map_err(|e| read_error(boxed(&self.url, e)))?
            .seconds;
        let tree = found
            .tree()
            .map_err(|e| read_error(boxed(&self.url, e)))?
            .id;
        let (stream, _index) = self
            .repo
            .worktree_stream(tree)
            .map_err(|e| read_error(boxed(&self.url, e)))?;
        let interrupt = AtomicBool::new(false);
        self.repo
            .worktree_archive(
                stream,
                out,
                gix::progress::Discard,
                &interrupt,
                gix::worktree::archive::Options {
                    format: gix::worktree::archive::Format::TarGz {
                        compression_level: Some(1),
                    },
                    tree_prefix: None,
                    modification_time: time,
                },
            )
            .map_err(|e| read_error(boxed(&self.url, e)))?;
        Ok(())
    }
}

mod cli;
mod locks;
mod revision;

pub use locks::clear_stale_locks;

#[cfg(test)]
mod tests;
