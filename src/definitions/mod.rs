//! The definitions repository: clusters and apps, loaded and validated.
//!
//! This is the only module that reads YAML. `load` returns a `Definitions`
//! only when every file parses and every cross-reference holds; otherwise it
//! returns every problem it found, each with its file, line and column. The
//! rest of the program may assume the rules checked here (valid names,
//! existing clusters and servers, parseable schedules).

mod diagnostic;
pub mod model;
pub mod names;
mod source;
mod validate;
pub mod values;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

pub use diagnostic::Diagnostic;
pub use model::*;
pub use names::{AppName, ClusterName, ServerName, WorkerName};
pub use source::Position;
pub use values::PhpVersion;

use source::SourceMap;

/// Valid definitions, in file-name order.
#[derive(Debug, Clone)]
pub struct Definitions {
    /// The definitions directory, for templates and messages.
    pub root: PathBuf,
    pub clusters: Vec<Cluster>,
    pub apps: Vec<App>,
}

/// Why definitions could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read definitions in `{}`", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no definitions in `{}`: it has neither clusters/ nor apps/", .0.display())]
    Empty(PathBuf),
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
    /// Loads and validates `clusters/*.yaml` and `apps/*.yaml` under `root`.
    pub fn load(root: &Path) -> Result<Self, LoadError> {
        let read = |source| LoadError::Read {
            path: root.to_owned(),
            source,
        };
        fs::metadata(root).map_err(read)?;
        let cluster_files = yaml_files(&root.join("clusters")).map_err(read)?;
        let app_files = yaml_files(&root.join("apps")).map_err(read)?;
        if cluster_files.is_none() && app_files.is_none() {
            return Err(LoadError::Empty(root.to_owned()));
        }

        let mut problems = Vec::new();
        let clusters: Vec<Document<Cluster>> =
            parse_all(cluster_files.unwrap_or_default(), &mut problems)?;
        let apps: Vec<Document<App>> = parse_all(app_files.unwrap_or_default(), &mut problems)?;
        problems.extend(validate::check(&clusters, &apps));

        if !problems.is_empty() {
            problems.sort_by(|a, b| (&a.file, a.position).cmp(&(&b.file, b.position)));
            return Err(LoadError::Invalid(problems));
        }
        Ok(Definitions {
            root: root.to_owned(),
            clusters: clusters.into_iter().map(|d| d.value).collect(),
            apps: apps.into_iter().map(|d| d.value).collect(),
        })
    }

    pub fn cluster(&self, name: &ClusterName) -> Option<&Cluster> {
        self.clusters.iter().find(|c| &c.name == name)
    }

    pub fn app(&self, name: &AppName) -> Option<&App> {
        self.apps.iter().find(|a| &a.name == name)
    }

    /// Every server of every cluster, with its cluster.
    pub fn servers(&self) -> impl Iterator<Item = (&Cluster, &Server)> {
        self.clusters
            .iter()
            .flat_map(|c| c.servers.iter().map(move |s| (c, s)))
    }
}

/// The `.yaml` and `.yml` files directly in `dir`, sorted; `None` when the
/// directory does not exist.
fn yaml_files(dir: &Path) -> io::Result<Option<Vec<PathBuf>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(Some(files))
}

fn parse_all<T: DeserializeOwned>(
    files: Vec<PathBuf>,
    problems: &mut Vec<Diagnostic>,
) -> Result<Vec<Document<T>>, LoadError> {
    let mut documents = Vec::new();
    for file in files {
        let bytes = fs::read(&file).map_err(|source| LoadError::Read {
            path: file.clone(),
            source,
        })?;
        let Ok(text) = String::from_utf8(bytes) else {
            problems.push(Diagnostic::new(file, Position::START, "not UTF-8 text"));
            continue;
        };
        match serde_yaml::from_str::<T>(&text) {
            Ok(value) => documents.push(Document {
                map: SourceMap::index(&text),
                file,
                value,
            }),
            Err(error) => problems.push(Diagnostic::from_yaml(file, &error)),
        }
    }
    Ok(documents)
}
