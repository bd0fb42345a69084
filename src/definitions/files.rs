//! The files of a definitions repository, read but not parsed.
//!
//! Reading (a directory here, the tree of a git commit in `watch`) is kept
//! apart from parsing and validating, which are pure functions over these
//! bytes. Whatever the source, the same rules hold: only `clusters/*.yaml`,
//! `apps/*.yaml` and `templates/*.hbs` are definitions; a file that should be
//! read and cannot be (a dangling link, a directory named `shop.yaml`, a link
//! out of the repository, a file over `MAX_FILE_SIZE`) is a problem reported
//! with the others, never skipped, because a skipped app looks removed and
//! would be pruned.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{Diagnostic, LoadError, Position};

/// The largest definitions file: real ones are a few KB; this bounds the
/// memory and time a hostile or mistaken file can cost.
pub const MAX_FILE_SIZE: u64 = 1024 * 1024;

/// The directories that hold definitions, and the file names they hold.
pub const KINDS: &[(&str, &[&str])] = &[
    ("clusters", &["yaml", "yml"]),
    ("apps", &["yaml", "yml"]),
    ("templates", &["hbs"]),
];

/// A definitions repository's files, by path relative to its root.
#[derive(Debug, Clone, Default)]
pub struct DefinitionFiles {
    /// How messages name the repository: its directory, or the clone a
    /// commit was read from.
    pub origin: PathBuf,
    /// The commit the files come from, when they come from git.
    pub revision: Option<String>,
    files: BTreeMap<String, Vec<u8>>,
    /// Files that exist but could not be read.
    problems: Vec<Diagnostic>,
}

impl DefinitionFiles {
    /// An empty set, named `origin` in messages, with no revision; fill it
    /// with [`insert`](Self::insert).
    pub fn new(origin: impl Into<PathBuf>) -> Self {
        Self {
            origin: origin.into(),
            ..Self::default()
        }
    }

    /// Adds a file; `relative` is such as `apps/shop.yaml`. Files outside
    /// `KINDS` are ignored, so that a source may offer everything it has.
    pub fn insert(&mut self, relative: &str, bytes: Vec<u8>) {
        if !is_definition(relative) {
            return;
        }
        if bytes.len() as u64 > MAX_FILE_SIZE {
            self.refuse(
                relative,
                format!(
                    "the file is {} bytes; definitions files are at most {MAX_FILE_SIZE} bytes",
                    bytes.len()
                ),
            );
            return;
        }
        self.files.insert(relative.to_owned(), bytes);
    }

    /// Records a definitions file that exists but cannot be used.
    pub fn refuse(&mut self, relative: &str, message: impl Into<String>) {
        self.problems.push(Diagnostic::new(
            self.display_path(relative),
            Position::START,
            message,
        ));
    }

    /// The files in `dir` (such as `apps`), sorted by name.
    pub fn in_dir<'a>(&'a self, dir: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.files
            .iter()
            .filter(move |(path, _)| path.split_once('/').is_some_and(|(d, _)| d == dir))
            .map(|(path, bytes)| (path.as_str(), bytes.as_slice()))
    }

    /// Where a file is, for messages: `clusters/x.yaml` when the
    /// definitions are the current directory.
    pub fn display_path(&self, relative: &str) -> PathBuf {
        if self.origin == Path::new(".") {
            PathBuf::from(relative)
        } else {
            self.origin.join(relative)
        }
    }

    /// Whether the repository has any definitions at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.problems.is_empty()
    }

    pub(super) fn problems(&self) -> &[Diagnostic] {
        &self.problems
    }

    /// Reads the definitions under `root`.
    pub fn read_dir(root: &Path) -> Result<Self, LoadError> {
        let read_error = |source| LoadError::Read {
            path: root.to_owned(),
            source,
        };
        let canonical = fs::canonicalize(root).map_err(read_error)?;
        let mut files = Self::new(root);
        let mut any_dir = false;
        for (dir, _) in KINDS {
            let entries = match fs::read_dir(root.join(dir)) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(read_error(e)),
            };
            any_dir |= *dir != "templates";
            let mut names: Vec<String> = Vec::new();
            for entry in entries {
                let name = entry.map_err(read_error)?.file_name();
                match name.into_string() {
                    Ok(name) => names.push(name),
                    Err(name) => files.refuse(
                        &format!("{dir}/{}", name.to_string_lossy()),
                        "the file name is not UTF-8",
                    ),
                }
            }
            names.sort();
            for name in names {
                let relative = format!("{dir}/{name}");
                if is_definition(&relative) {
                    files.read_one(&canonical, root, &relative);
                }
            }
        }
        if !any_dir {
            return Err(LoadError::Empty(root.to_owned()));
        }
        Ok(files)
    }

    fn read_one(&mut self, canonical_root: &Path, root: &Path, relative: &str) {
        let path = root.join(relative);
        let target = match fs::canonicalize(&path) {
            Ok(target) => target,
            Err(e) => {
                let message = if fs::symlink_metadata(&path).is_ok_and(|m| m.is_symlink()) {
                    "cannot read: it is a symbolic link to nothing".to_owned()
                } else {
                    format!("cannot read: {e}")
                };
                return self.refuse(relative, message);
            }
        };
        if !target.starts_with(canonical_root) {
            return self.refuse(
                relative,
                format!(
                    "refusing a link out of the definitions directory (to `{}`)",
                    target.display()
                ),
            );
        }
        let metadata = match fs::metadata(&target) {
            Ok(metadata) => metadata,
            Err(e) => return self.refuse(relative, format!("cannot read: {e}")),
        };
        if metadata.is_dir() {
            return self.refuse(relative, "this is a directory, not a definitions file");
        }
        if !metadata.is_file() {
            return self.refuse(relative, "this is not a regular file");
        }
        if metadata.len() > MAX_FILE_SIZE {
            return self.refuse(
                relative,
                format!(
                    "the file is {} bytes; definitions files are at most {MAX_FILE_SIZE} bytes",
                    metadata.len()
                ),
            );
        }
        match fs::read(&target) {
            Ok(bytes) => self.insert(relative, bytes),
            Err(e) => self.refuse(relative, format!("cannot read: {e}")),
        }
    }
}

/// Whether `relative` names a definitions file: `clusters/x.yaml`,
/// `apps/x.yml`, `templates/x.hbs`, directly in its directory.
fn is_definition(relative: &str) -> bool {
    let Some((dir, name)) = relative.split_once('/') else {
        return false;
    };
    if name.contains('/') || name.starts_with('.') {
        return false;
    }
    let extension = Path::new(name).extension().and_then(|e| e.to_str());
    KINDS.iter().any(|(kind, extensions)| {
        *kind == dir && extension.is_some_and(|e| extensions.contains(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn messages(files: &DefinitionFiles) -> Vec<String> {
        files
            .problems()
            .iter()
            .map(|d| {
                let file = d.file.file_name().unwrap_or_default().to_string_lossy();
                format!("{file}: {}", d.message)
            })
            .collect()
    }

    #[test]
    fn what_cannot_be_read_is_a_problem_not_a_missing_app() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("apps/shop.yaml")).expect("mkdir");
        fs::create_dir_all(root.join("clusters")).expect("mkdir");
        fs::create_dir_all(root.join("templates")).expect("mkdir");
        symlink(root.join("nowhere"), root.join("apps/dangling.yaml")).expect("link");
        fs::write(outside.path().join("environ"), "SECRET=1").expect("write");
        symlink(
            outside.path().join("environ"),
            root.join("templates/cron.hbs"),
        )
        .expect("link");
        fs::write(root.join("clusters/c.yaml"), "name: c").expect("write");
        symlink(
            root.join("clusters/c.yaml"),
            root.join("clusters/same.yaml"),
        )
        .expect("link");
        fs::write(root.join("apps/README.md"), "not a definition").expect("write");

        let files = DefinitionFiles::read_dir(root).expect("reads");
        assert_eq!(
            messages(&files),
            [
                "dangling.yaml: cannot read: it is a symbolic link to nothing",
                "shop.yaml: this is a directory, not a definitions file",
                &format!(
                    "cron.hbs: refusing a link out of the definitions directory (to `{}`)",
                    fs::canonicalize(outside.path().join("environ"))
                        .expect("canonical")
                        .display()
                ),
            ]
        );
        let clusters: Vec<&str> = files.in_dir("clusters").map(|(p, _)| p).collect();
        assert_eq!(clusters, ["clusters/c.yaml", "clusters/same.yaml"]);
        assert_eq!(files.in_dir("apps").count(), 0);
    }

    #[test]
    fn oversized_files_are_refused_without_reading_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("apps")).expect("mkdir");
        let big = fs::File::create(dir.path().join("apps/big.yaml")).expect("create");
        big.set_len(50 * 1024 * 1024).expect("sparse file");
        let files = DefinitionFiles::read_dir(dir.path()).expect("reads");
        assert_eq!(
            messages(&files),
            [format!(
                "big.yaml: the file is 52428800 bytes; definitions files are at most {MAX_FILE_SIZE} bytes"
            )]
        );
    }

    #[test]
    fn only_definitions_are_kept() {
        let mut files = DefinitionFiles::new("repo");
        for path in [
            "apps/a.yaml",
            "apps/b.yml",
            "apps/sub/c.yaml",
            "apps/.hidden.yaml",
            "README.md",
            "templates/cron.hbs",
            "templates/notes.txt",
            "clusters/x.json",
        ] {
            files.insert(path, Vec::new());
        }
        let kept: Vec<&str> = ["apps", "templates", "clusters"]
            .iter()
            .flat_map(|d| files.in_dir(d).map(|(p, _)| p))
            .collect();
        assert_eq!(kept, ["apps/a.yaml", "apps/b.yml", "templates/cron.hbs"]);
    }
}
