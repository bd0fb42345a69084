//! Bringing an app to its intended release (`intent`): the step every
//! driver shares. `apply` runs it for the apps that pin a `revision:`;
//! the daemon runs it for every app, on each commit and drift check, so
//! that a pin, a server that was rebuilt or down during a release, or a
//! release whose client stopped after switching, ends on the intended
//! release everywhere.

use super::intent::{self, Intended, Verdict};
use super::{
    Archive, Limits, LogResult, ReleaseError, Released, ServerReleases, SourceError, Stop, list,
    mirror_path, source,
};
use crate::app::{AppTarget, Origin, Progress};
use crate::definitions::ServerName;
use crate::transport::Connector;

/// Resolves `rev` in the app's mirror in `cache` and archives it,
/// checked against the app's limits. Blocks on git: call from a blocking
/// thread.
///
/// # Errors
/// The repository cannot be fetched, has no `rev`, or the commit breaks
/// the app's limits (size, submodules, LFS pointers).
pub fn fetch_and_archive(
    target: &AppTarget,
    cache: &std::path::Path,
    rev: &str,
) -> Result<Archive, SourceError> {
    let mirror = mirror_path(cache, &target.app);
    let sha = source::resolve(&target.app.repo, &mirror, rev)?;
    source::archive(&target.app.repo, &mirror, &sha, Limits::of(&target.app))
}

/// What an app's servers have, against what should be live.
#[derive(Debug, Clone)]
pub struct Check {
    /// The release that should be live; `None` when nothing says.
    pub intended: Option<Intended>,
    /// Each server's releases, or why it could not say.
    pub servers: Vec<(ServerName, Result<ServerReleases, String>)>,
    /// How `servers` stand against `intended`: `Unreachable` first, then
    /// `Busy`, then `Unknown` when nothing is intended, else `Converged`
    /// or `Diverged`.
    pub verdict: Verdict,
}

/// Reads every server of `target` (without the app lock) and decides what
/// should be live: the pin, resolved in the app's mirror in `cache` (a
/// fetch), or the release logs.
///
/// # Errors
/// The pinned revision cannot be resolved (the repository cannot be
/// fetched, or has no such revision).
pub async fn check(
    target: &AppTarget,
    cache: &std::path::Path,
    connector: &dyn Connector,
) -> Result<Check, ReleaseError> {
    let pinned = match target.app.revision.clone() {
        Some(revision) => {
            let (url, mirror) = (target.app.repo.clone(), mirror_path(cache, &target.app));
            let rev = revision.clone();
            let sha = blocking(move || source::resolve(&url, &mirror, &rev)).await?;
            Some(Intended::Pinned { revision, sha })
        }
        None => None,
    };
    let servers = list(target, connector).await;
    let intended = pinned.or_else(|| {
        let states: Vec<&ServerReleases> = servers
            .iter()
            .filter_map(|(_, s)| s.as_ref().ok())
            .collect();
        intent::logged(&states).map(|sha| Intended::Logged { sha })
    });
    let verdict = intent::verdict(intended.as_ref().map(Intended::sha), &servers);
    Ok(Check {
        intended,
        servers,
        verdict,
    })
}

/// Makes `check.intended` live on every server of `target`: switched to
/// where it is complete everywhere, else released (archived from the
/// app's mirror in `cache`, prepared where it is missing). Logged as
/// `live`, with `origin`'s trigger. A release whose guard was cut short
/// (`guard_to_resume`) is judged on instead (`resume_guard`).
///
/// # Errors
/// Nothing is intended (`Unready`), or as `release`.
pub async fn repair(
    target: &AppTarget,
    check: &Check,
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
    stop: &Stop,
) -> Result<Released, ReleaseError> {
    if super::guard_to_resume(check).is_some() {
        return super::resume_guard(target, origin, connector, progress, stop).await;
    }
    let Some(intended) = &check.intended else {
        return Err(ReleaseError::Unready(check.verdict.describe(None)));
    };
    let sha = intended.sha().clone();
    // Decided without the lock: a release may have gone live since.
    let decided = check.intended.clone();
    let still = move |servers: &[(ServerName, &ServerReleases)]| {
        let Some(Intended::Logged { sha }) = &decided else {
            return Ok(());
        };
        let states: Vec<&ServerReleases> = servers.iter().map(|(_, s)| *s).collect();
        match intent::logged(&states) {
            Some(now) if &now != sha => Err(format!(
                "{} went live since the check; checking again",
                now.short()
            )),
            _ => Ok(()),
        }
    };
    let complete_everywhere = check
        .servers
        .iter()
        .all(|(_, s)| s.as_ref().is_ok_and(|s| s.complete.contains(&sha)));
    if complete_everywhere {
        return super::switch_to(
            target,
            Some(sha.as_str()),
            LogResult::Live,
            origin,
            connector,
            progress,
            &still,
        )
        .await;
    }
    let (url, mirror) = (target.app.repo.clone(), mirror_path(cache, &target.app));
    let limits = Limits::of(&target.app);
    let archive = blocking(move || {
        // A commit from the release log may be newer than the mirror; it
        // is live, so no branch need reach it any more.
        source::fetch_commit(&url, &mirror, &sha)?;
        source::archive(&url, &mirror, &sha, limits)
    })
    .await?;
    super::release_if(target, &archive, origin, connector, progress, stop, &still).await
}

/// What bringing one pinned app to its revision did.
#[derive(Debug)]
pub struct Pinned {
    /// The app's name.
    pub app: String,
    /// Its `revision:` as the definitions write it (a branch, tag or
    /// commit), not resolved.
    pub revision: String,
    /// `None`: it was live on every server already.
    pub result: Result<Option<Released>, ReleaseError>,
}

/// The pinned-release step of `apply`: brings every app of `definitions`
/// that pins a `revision:` (or those of `only`, when it names some) to it
/// wherever it is not live, one app after another.
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
        let result = ensure(&target, cache, origin, connector, progress).await;
        done.push(Pinned {
            app: target.app.name.to_string(),
            revision: target.app.revision.clone().unwrap_or_default(),
            result,
        });
    }
    done
}

/// Checks one app and repairs it when it diverged; `Ok(None)` when it was
/// converged.
async fn ensure(
    target: &AppTarget,
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Option<Released>, ReleaseError> {
    let check = check(target, cache, connector).await?;
    match &check.verdict {
        Verdict::Converged => Ok(None),
        Verdict::Diverged { .. } => {
            let stop = Stop::new();
            repair(target, &check, cache, origin, connector, progress, &stop)
                .await
                .map(Some)
        }
        other => Err(ReleaseError::Unready(
            other.describe(check.intended.as_ref()),
        )),
    }
}

/// Runs git work (which blocks) on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SourceError> + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(SourceError::Interrupted(e.to_string())))
}
