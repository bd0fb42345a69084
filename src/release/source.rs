//! Where a release's files come from: the app's git mirror (`git::Mirror`),
//! and a commit's tree as a gzipped tar file in the cache, checked before
//! anything reaches a server: nothing left out silently (a submodule, git
//! LFS pointers in place of files), nothing larger than the app allows.
//! What the commit's `.gitattributes` mark `export-ignore` is left out, as
//! `git archive` leaves it out, and the checks look at what ships.
//! The archive is written to disk and streamed to the servers, never held
//! whole in memory; its sha256 is computed as it is written.
//!
//! gix blocks: call these from a blocking thread.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Sha;
use crate::definitions::App;
use crate::git::{EntryKindOf, GitError, Mirror, TreeEntry};

/// The sizes an app's release may have (`max_release_size`,
/// `max_file_size` in the app's definition), in bytes of the unpacked tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most all shipped files may add up to (`max_release_size`).
    pub total: u64,
    /// The most one shipped file may have (`max_file_size`).
    pub file: u64,
}

impl Limits {
    /// The limits `app` sets, or their defaults (512M and 64M); a limit
    /// that did not parse (only in definitions that failed validation)
    /// is no limit.
    pub fn of(app: &App) -> Self {
        Self {
            total: app.max_release_size.get().map_or(u64::MAX, |s| s.0),
            file: app.max_file_size.get().map_or(u64::MAX, |s| s.0),
        }
    }
}

/// Why a release's files cannot be had, or must not be shipped.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The mirror could not be cloned, fetched or read, or has no such
    /// revision.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The blocking thread doing the git work panicked or was cancelled;
    /// the text is the join error's.
    #[error("the git work stopped: {0}")]
    Interrupted(String),
    /// The archive file could not be created or written in the cache.
    #[error("cannot write the archive in `{}`", .path.display())]
    Io {
        /// The directory the archive was written in (the mirror's
        /// parent: the cache).
        path: PathBuf,
        /// Why creating or writing it failed.
        #[source]
        source: std::io::Error,
    },
    /// The commit holds git submodules, whose files an archive leaves
    /// out. Checked first.
    #[error(
        "{sha} holds {} ({}): a release would leave {} out",
        crate::definitions::plural(.paths.len(), "git submodule"),
        .paths.join(", "),
        if .paths.len() == 1 { "its files" } else { "their files" }
    )]
    Submodules {
        /// The commit, its 12-character short form.
        sha: String,
        /// Every submodule that ships, by path in the repository.
        paths: Vec<String>,
    },
    /// The commit holds git LFS pointer files in place of the files
    /// themselves; reconciler fetches no LFS objects.
    #[error(
        "{sha} holds {} where files should be ({})",
        crate::definitions::plural(.paths.len(), "git LFS pointer"),
        .paths.join(", ")
    )]
    LfsPointers {
        /// The commit, its 12-character short form.
        sha: String,
        /// Every pointer file that ships, by path in the repository.
        paths: Vec<String>,
    },
    /// The files that ship add up to more than `max_release_size`
    /// (checked after `FileTooLarge`).
    #[error(
        "{sha} is {} unpacked, more than the app's max_release_size of {}; its largest files: {}",
        human(*.size), human(*.limit), .largest.iter().map(|(p, s)| format!("{p} ({})", human(*s))).collect::<Vec<_>>().join(", ")
    )]
    TooLarge {
        /// The commit, its 12-character short form.
        sha: String,
        /// Bytes of every file that ships, unpacked.
        size: u64,
        /// The app's `max_release_size`, in bytes.
        limit: u64,
        /// The five largest files (fewer if the tree has fewer), largest
        /// first, with their bytes: what to look at first.
        largest: Vec<(String, u64)>,
    },
    /// Files that ship are larger than `max_file_size`.
    #[error(
        "{sha} holds files larger than the app's max_file_size of {}: {}",
        human(*.limit), .files.iter().map(|(p, s)| format!("{p} ({})", human(*s))).collect::<Vec<_>>().join(", ")
    )]
    FileTooLarge {
        /// The commit, its 12-character short form.
        sha: String,
        /// The app's `max_file_size`, in bytes.
        limit: u64,
        /// The five largest of those files at most, largest first, with
        /// their bytes.
        files: Vec<(String, u64)>,
    },
}

/// `bytes` for people: `5.0 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A commit's tree as a gzipped tar file, ready to stream to servers.
#[derive(Debug)]
pub struct Archive {
    /// The commit archived.
    pub sha: Sha,
    /// The file (`.archive-*.tar.gz` in the cache), removed when the
    /// archive is dropped.
    pub path: tempfile::TempPath,
    /// The file's size in bytes, compressed.
    pub size: u64,
    /// The file's sha256, 64 lowercase hex characters, computed as it was
    /// written.
    pub sha256: String,
    /// Entries of the tree that ship: files and links (`export-ignore`d
    /// ones not counted).
    pub files: usize,
    /// Bytes of those entries unpacked (a link counts its target's
    /// length): what `max_release_size` limits.
    pub unpacked: u64,
    /// Files of the commit an `export-ignore` attribute leaves out.
    pub export_ignored: usize,
}

/// Where the mirror of `app`'s repository is in `cache`: named by the app
/// and its URL, so that an app whose `repo:` changes gets a new mirror.
pub fn mirror_path(cache: &Path, app: &App) -> PathBuf {
    let url = crate::units::sha256(app.repo.as_bytes());
    cache.join(format!("{}-{}.git", app.name, &url[..12]))
}

/// Fetches the app's mirror at `mirror` (cloning `url` there first) and
/// resolves `rev` to its commit.
pub fn resolve(url: &str, mirror: &Path, rev: &str) -> Result<Sha, SourceError> {
    let fresh = !mirror.join("HEAD").exists();
    let mut repo = Mirror::open_or_clone(url, mirror)?;
    if !fresh {
        repo.fetch()?;
    }
    let commit = repo.resolve(rev)?;
    Sha::parse(&commit).ok_or_else(|| {
        GitError::Read {
            commit,
            source: "not a commit id of 40 hex digits".into(),
        }
        .into()
    })
}

/// Fetches the app's mirror at `mirror` (cloning `url` there first) and
/// checks that it holds `sha`: a commit already live on some server (from
/// a release log), which another server must get the same, whether or not
/// a branch still reaches it. A revision someone names goes through
/// `resolve` instead.
///
/// # Errors
/// The mirror cannot be fetched, or does not hold `sha`.
pub fn fetch_commit(url: &str, mirror: &Path, sha: &Sha) -> Result<(), SourceError> {
    let fresh = !mirror.join("HEAD").exists();
    let mut repo = Mirror::open_or_clone(url, mirror)?;
    if !fresh {
        repo.fetch()?;
    }
    if repo.has_commit(sha.as_str()) {
        return Ok(());
    }
    // Named as `resolve` names it, with what the remote has.
    repo.resolve(sha.as_str()).map(|_| ()).map_err(Into::into)
}

/// Checks the tree of `sha` against `limits` and what a release must hold,
/// then archives it into a new file beside the mirror (in the cache).
pub fn archive(
    url: &str,
    mirror: &Path,
    sha: &Sha,
    limits: Limits,
) -> Result<Archive, SourceError> {
    let repo = Mirror::open_or_clone(url, mirror)?;
    // What ships: `export-ignore` leaves the rest out, as `git archive`
    // does; only what ships is checked and counted.
    let (entries, left_out): (Vec<TreeEntry>, Vec<TreeEntry>) = repo
        .entries(sha.as_str())?
        .into_iter()
        .partition(|e| !e.export_ignored);
    let submodules: Vec<String> = entries
        .iter()
        .filter(|e| e.kind == EntryKindOf::Submodule)
        .map(|e| e.path.clone())
        .collect();
    if !submodules.is_empty() {
        return Err(SourceError::Submodules {
            sha: sha.short().to_owned(),
            paths: submodules,
        });
    }
    let pointers: Vec<String> = entries
        .iter()
        .filter(|e| e.lfs_pointer)
        .map(|e| e.path.clone())
        .collect();
    if !pointers.is_empty() {
        return Err(SourceError::LfsPointers {
            sha: sha.short().to_owned(),
            paths: pointers,
        });
    }
    let mut by_size: Vec<(String, u64)> =
        entries.iter().map(|e| (e.path.clone(), e.size)).collect();
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let too_large: Vec<(String, u64)> = by_size
        .iter()
        .filter(|(_, size)| *size > limits.file)
        .take(5)
        .cloned()
        .collect();
    if !too_large.is_empty() {
        return Err(SourceError::FileTooLarge {
            sha: sha.short().to_owned(),
            limit: limits.file,
            files: too_large,
        });
    }
    let unpacked: u64 = by_size.iter().map(|(_, s)| s).sum();
    if unpacked > limits.total {
        return Err(SourceError::TooLarge {
            sha: sha.short().to_owned(),
            size: unpacked,
            limit: limits.total,
            largest: by_size.into_iter().take(5).collect(),
        });
    }
    let dir = mirror.parent().unwrap_or(mirror);
    let io = |source| SourceError::Io {
        path: dir.to_owned(),
        source,
    };
    let file = tempfile::Builder::new()
        .prefix(".archive-")
        .suffix(".tar.gz")
        .tempfile_in(dir)
        .map_err(io)?;
    let (file, path) = file.into_parts();
    let mut out = Hashing {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        written: 0,
    };
    repo.archive(sha.as_str(), &mut out)?;
    out.inner.flush().map_err(io)?;
    Ok(Archive {
        sha: sha.clone(),
        path,
        size: out.written,
        sha256: hex::encode(out.hasher.finalize()),
        files: entries.len(),
        unpacked,
        export_ignored: left_out
            .iter()
            .filter(|e| e.kind != EntryKindOf::Submodule)
            .count(),
    })
}

/// A writer that hashes and counts what it writes. It only appends: the
/// tar.gz writer never seeks, and a seek anywhere but here is refused.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> Seek for Hashing<W> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        match to {
            SeekFrom::Current(0) => Ok(self.written),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the archive is written in one pass",
            )),
        }
    }
}

impl crate::Hint for SourceError {
    fn hint(&self) -> Option<&str> {
        match self {
            SourceError::Submodules { .. } => Some(
                "reconciler ships what the app's repository holds: vendor the submodule's files \
                 into it (`git rm` the submodule, then add its files), or install them in a \
                 release command",
            ),
            SourceError::LfsPointers { .. } => Some(
                "reconciler does not fetch git LFS objects: commit the files themselves \
                 (`git lfs migrate export`), or fetch them in a release command",
            ),
            SourceError::TooLarge { .. } | SourceError::FileTooLarge { .. } => Some(
                "if the app really is this large, raise max_release_size or max_file_size in \
                 its definition",
            ),
            SourceError::Git(e) => e.hint(),
            _ => None,
        }
    }
}
