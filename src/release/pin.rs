//! Pinned revisions: an app's `revision:` released wherever another
//! release is live, the step every driver (`apply`, `watch`) shares.

use super::{
    Archive, Limits, ReleaseError, Released, SourceError, list, mirror_path, release, source,
};
use crate::app::{AppTarget, Origin, Progress};
use crate::transport::Connector;

/// Resolves `rev` in the app's mirror in `cache` and archives it,
/// checked against the app's limits. Blocks on git: call from a blocking
/// thread.
pub fn fetch_and_archive(
    target: &AppTarget,
    cache: &std::path::Path,
    rev: &str,
) -> Result<Archive, SourceError> {
    let mirror = mirror_path(cache, &target.app);
    let sha = source::resolve(&target.app.repo, &mirror, rev)?;
    source::archive(&target.app.repo, &mirror, &sha, Limits::of(&target.app))
}

/// Releases the app's pinned `revision:` unless every server runs it
/// already; `Ok(None)` when nothing was to do.
pub async fn ensure_revision(
    target: &AppTarget,
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Option<Released>, ReleaseError> {
    let Some(revision) = target.app.revision.clone() else {
        return Ok(None);
    };
    let mirror = mirror_path(cache, &target.app);
    let url = target.app.repo.clone();
    let sha = {
        let (url, mirror) = (url.clone(), mirror.clone());
        blocking(move || source::resolve(&url, &mirror, &revision)).await?
    };
    let live_everywhere = list(target, connector)
        .await
        .iter()
        .all(|(_, state)| state.as_ref().is_ok_and(|s| s.live.as_ref() == Some(&sha)));
    if live_everywhere {
        return Ok(None);
    }
    // Archived only when some server needs it.
    let limits = Limits::of(&target.app);
    let archive = blocking(move || source::archive(&url, &mirror, &sha, limits)).await?;
    Ok(Some(
        release(target, &archive, origin, connector, progress).await?,
    ))
}

/// What releasing one app's pinned `revision:` did.
#[derive(Debug)]
pub struct Pinned {
    pub app: String,
    pub revision: String,
    /// `None`: it was live on every server already.
    pub result: Result<Option<Released>, ReleaseError>,
}

/// The pinned-release step of every driver (`apply`, `watch`): releases
/// the pinned `revision:` of every app of `definitions` (or of `only`,
/// when it names some) wherever another release is live, one app after
/// another.
pub async fn release_pins(
    definitions: &crate::definitions::Definitions,
    only: &[String],
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Vec<Pinned> {
    let mut done = Vec::new();
    for target in AppTarget::pinned(definitions, only) {
        let result = ensure_revision(&target, cache, origin, connector, progress).await;
        done.push(Pinned {
            app: target.app.name.to_string(),
            revision: target.app.revision.clone().unwrap_or_default(),
            result,
        });
    }
    done
}

/// Runs git work (which blocks) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(SourceError::Interrupted(e.to_string())))
}
