//! The definitions repository: clusters, apps and template overrides,
//! loaded and validated.
//!
//! This is the only module that reads YAML. Reading the files (`files`: a
//! directory, or a git commit's tree) is separate from `parse`, which is
//! pure: it returns a `Definitions` only when every file parses and every
//! cross-reference holds, and otherwise every problem it found, each with
//! its file, line and column. The rest of the program may assume the rules
//! checked here (valid names, existing clusters and servers, parseable
//! schedules, values safe for the config files they reach).

mod diagnostic;
pub mod files;
pub mod model;
pub mod names;
mod parse;
mod positions;
mod validate;
pub mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

pub use diagnostic::{Diagnostic, closest};
pub use files::DefinitionFiles;
pub use model::*;
pub use names::{AppName, ClusterName, ServerName, WorkerName};
pub use positions::Position;
pub(crate) use validate::is_address;
pub use values::PhpVersion;

use positions::SourceMap;

/// Valid definitions, in file-name order.
#[derive(Debug, Clone)]
pub struct Definitions {
    /// Where they were read from, for messages.
    pub origin: PathBuf,
    /// The commit they come from, when read from git.
    pub revision: Option<String>,
    /// The clusters, one per file under `clusters/`, in file-name order.
    pub clusters: Vec<Cluster>,
    /// The apps, one per file under `apps/`, in file-name order.
    pub apps: Vec<App>,
    /// Template overrides from `templates/`, by template name.
    pub templates: BTreeMap<String, TemplateOverride>,
    /// The file that defines each app, relative to the repository's root
    /// (`apps/shop.yaml`), for messages that send a person to it.
    pub app_files: BTreeMap<AppName, PathBuf>,
}

/// The target names a notify URLs file gives (`watch --notify-urls`), and
/// the file, for messages: when the definitions are checked against them
/// (`validate --notify-urls`), every `notify:` target's `to:` must be one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotifyNames {
    /// The file, as the messages show it.
    pub file: PathBuf,
    /// The names it gives a URL.
    pub names: BTreeSet<String>,
}

/// A file under `templates/` that replaces an embedded template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateOverride {
    /// Where it is, for messages.
    pub file: PathBuf,
    /// Its whole text (a Handlebars template).
    pub text: String,
}

/// Why definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The definitions root does not exist or cannot be resolved, or one
    /// of its `clusters/`, `apps/` or `templates/` directories could not be
    /// listed (a file that cannot be read is a problem in `Invalid`
    /// instead).
    #[error("cannot read definitions in `{}`", .path.display())]
    Read {
        /// The definitions root as given.
        path: PathBuf,
        /// The failed canonicalize or directory listing.
        #[source]
        source: io::Error,
    },
    /// Neither `clusters/` nor `apps/` exists under the root, or the files
    /// offered hold no definition (nor a refused one); the path is the
    /// root, or the origin of the files parsed.
    #[error("no definitions in `{}`: it has neither clusters/ nor apps/", .0.display())]
    Empty(PathBuf),
    /// Files that could not be read or parsed and values that failed
    /// validation, every one found, sorted by file and position; never
    /// empty.
    #[error("{} in the definitions", plural(.0.len(), "problem"))]
    Invalid(Vec<Diagnostic>),
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// One parsed file with the positions of its values.
struct Document<T> {
    file: PathBuf,
    map: SourceMap,
    value: T,
}

impl Definitions {
    /// Reads and validates the definitions under `root`.
    pub fn load(root: &Path) -> Result<Self, LoadError> {
        Self::parse(&DefinitionFiles::read_dir(root)?)
    }

    /// Parses and validates definitions files; touches nothing else.
    pub fn parse(files: &DefinitionFiles) -> Result<Self, LoadError> {
        Self::parse_checking(files, None)
    }

    /// Parses and validates definitions files, and, with `notify`, that
    /// every `notify:` target is named there; touches nothing else.
    ///
    /// # Errors
    /// `LoadError::Empty` without clusters and apps; `LoadError::Invalid`
    /// with every problem found, at its file, line and column.
    pub fn parse_checking(
        files: &DefinitionFiles,
        notify: Option<&NotifyNames>,
    ) -> Result<Self, LoadError> {
        if files.is_empty() {
            return Err(LoadError::Empty(files.origin.clone()));
        }
        let mut problems: Vec<Diagnostic> = files.problems().to_vec();
        let (clusters, clusters_failed) = documents::<Cluster>(files, "clusters", &mut problems);
        let (apps, _) = documents::<App>(files, "apps", &mut problems);
        let unreadable_cluster = clusters_failed
            || files
                .problems()
                .iter()
                .any(|p| p.file.starts_with(files.display_path("clusters")));
        problems.extend(validate::check(
            &clusters,
            &apps,
            unreadable_cluster,
            notify,
        ));

        let mut templates = BTreeMap::new();
        for (path, bytes) in files.in_dir("templates") {
            let file = files.display_path(path);
            let name = path.trim_start_matches("templates/").to_owned();
            match String::from_utf8(bytes.to_vec()) {
                Ok(text) => {
                    templates.insert(name, TemplateOverride { file, text });
                }
                Err(_) => problems.push(Diagnostic::new(file, Position::START, "not UTF-8 text")),
            }
        }

        let app_files = apps
            .iter()
            .map(|d| {
                let relative = d.file.strip_prefix(&files.origin).unwrap_or(&d.file);
                (d.value.name.clone(), relative.to_owned())
            })
            .collect();
        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
            return Err(LoadError::Invalid(problems));
        }
        Ok(Definitions {
            origin: files.origin.clone(),
            revision: files.revision.clone(),
            clusters: clusters.into_iter().map(|d| d.value).collect(),
            apps: apps.into_iter().map(|d| d.value).collect(),
            templates,
            app_files,
        })
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &ClusterName) -> Option<&Cluster> {
        self.clusters.iter().find(|c| &c.name == name)
    }

    /// The app named `name`.
    pub fn app(&self, name: &AppName) -> Option<&App> {
        self.apps.iter().find(|a| &a.name == name)
    }

    /// The file that defines the app `name`, relative to the repository's
    /// root (`apps/shop.yaml`).
    pub fn app_file(&self, name: &AppName) -> Option<&Path> {
        self.app_files.get(name).map(PathBuf::as_path)
    }

    /// Every server of every cluster, with its cluster.
    pub fn servers(&self) -> impl Iterator<Item = (&Cluster, &Server)> {
        self.clusters
            .iter()
            .flat_map(|c| c.servers.iter().map(move |s| (c, s)))
    }
}

/// Every file in `dir` parsed as a `T`, and whether any failed to parse.
fn documents<T: serde::de::DeserializeOwned + schemars::JsonSchema>(
    files: &DefinitionFiles,
    dir: &str,
    problems: &mut Vec<Diagnostic>,
) -> (Vec<Document<T>>, bool) {
    let mut failed = false;
    let parsed = files
        .in_dir(dir)
        .filter_map(|(path, bytes)| {
            let document = parse::document(&files.display_path(path), bytes, problems);
            failed |= document.is_none();
            document
        })
        .collect();
    (parsed, failed)
}
