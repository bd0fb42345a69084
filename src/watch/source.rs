//! Where the daemon's definitions come from: a branch of a git repository,
//! fetched on each poll. A trait, so the loop can be tested with a source
//! that hands out prepared commits.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::definitions::DefinitionFiles;
use crate::git::{CommitId, GitError, Mirror};

/// A new branch head and its definitions.
pub struct Head {
    /// The head's commit id, 40 hex characters.
    pub commit: CommitId,
    /// The definitions files in its tree, not yet loaded or validated.
    pub files: DefinitionFiles,
}

/// Why a poll found no head.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// The repository could not be fetched or read (credentials scrubbed).
    #[error("{0}")]
    Fetch(String),
    /// The fetch worked, and the remote has no such branch.
    #[error("the branch `{0}` is not on the remote (deleted or renamed?)")]
    NoBranch(String),
}

/// Where the loop gets the definitions from: polled for a new head, asked
/// for an earlier commit's files.
#[async_trait]
pub trait Source: Send {
    /// Fetches, and returns the branch head when it is not `known`.
    ///
    /// # Errors
    /// The fetch failed, or the remote has no such branch.
    async fn poll(&mut self, known: Option<&str>) -> Result<Option<Head>, PollError>;

    /// The definitions of an earlier commit (the last good one, after a
    /// restart).
    async fn files_of(&mut self, commit: &str) -> Result<DefinitionFiles, String>;
}

/// A branch of a git repository, mirrored in the state directory.
pub struct GitSource {
    url: String,
    branch: String,
    path: PathBuf,
    mirror: Arc<Mutex<Option<Mirror>>>,
}

impl GitSource {
    /// The branch `branch` of the repository at `url` (a path, an ssh or
    /// https URL), mirrored in `path`; nothing is fetched before the first
    /// poll.
    pub fn new(url: &str, branch: &str, path: PathBuf) -> Self {
        Self {
            url: url.to_owned(),
            branch: branch.to_owned(),
            path,
            mirror: Arc::new(Mutex::new(None)),
        }
    }

    /// Runs `work` on the mirror in a blocking thread (gix blocks), cloning
    /// it first when there is none yet.
    async fn with_mirror<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Mirror) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, String> {
        let (url, path, mirror) = (self.url.clone(), self.path.clone(), self.mirror.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let mut slot = mirror
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mirror = match &mut *slot {
                Some(mirror) => mirror,
                None => slot.insert(Mirror::open_or_clone(&url, &path)?),
            };
            work(mirror)
        })
        .await;
        match joined {
            // GitError is scrubbed already; a second look costs nothing.
            Ok(result) => {
                result.map_err(|e| crate::redact::scrub(&crate::error_chain(&e), &self.url))
            }
            Err(e) => Err(format!("the git task failed: {e}")),
        }
    }
}

#[async_trait]
impl Source for GitSource {
    async fn poll(&mut self, known: Option<&str>) -> Result<Option<Head>, PollError> {
        let branch = self.branch.clone();
        let known = known.map(str::to_owned);
        let polled = self
            .with_mirror(move |mirror| {
                mirror.fetch()?;
                let Some(commit) = mirror.branch_head(&branch)? else {
                    return Ok(Err(()));
                };
                if known.as_deref() == Some(commit.as_str()) {
                    return Ok(Ok(None));
                }
                let files = mirror.definition_files(&commit)?;
                Ok(Ok(Some(Head { commit, files })))
            })
            .await
            .map_err(PollError::Fetch)?;
        polled.map_err(|()| PollError::NoBranch(self.branch.clone()))
    }

    async fn files_of(&mut self, commit: &str) -> Result<DefinitionFiles, String> {
        let commit = commit.to_owned();
        self.with_mirror(move |mirror| mirror.definition_files(&commit))
            .await
    }
}
