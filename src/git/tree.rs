//! What a commit holds, read from the mirror with gix: the definitions
//! files in its tree, every entry with its size (for checks before a
//! release), and the tree as a tar.gz archive. Links in a tree are read as
//! entries, never followed.

use std::sync::atomic::AtomicBool;

use super::{GitError, Mirror, boxed};
use crate::definitions::DefinitionFiles;
use crate::definitions::files::KINDS;

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

impl Mirror {
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
