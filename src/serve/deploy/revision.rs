//! What the webhook makes of the revision a deploy asks for: the
//! commit's archive, or a refusal (409) when the app pins another commit,
//! which the commit in force would release again.

use std::path::Path;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};

use crate::app::AppTarget;
use crate::release;

/// What the webhook makes of a revision: its archive, or a refusal
/// because the app pins another commit.
pub(super) enum Prepared {
    Archive(release::Archive),
    Pinned,
}

/// Fetches `target`'s mirror in `cache` and resolves `rev`; when the app
/// pins `pin` (a revision other than `rev`) that names another commit, or
/// none, it is `Pinned`; otherwise the commit's archive. Blocks (gix).
pub(super) fn prepare(
    target: &AppTarget,
    cache: &Path,
    rev: &str,
    pin: Option<&str>,
) -> Result<Prepared, release::SourceError> {
    let mirror = release::mirror_path(cache, &target.app);
    let sha = release::source::resolve(&target.app.repo, &mirror, rev)?;
    if let Some(pin) = pin {
        // The mirror was just fetched: the pin resolves without a fetch.
        let pinned = crate::git::Mirror::open_or_clone(&target.app.repo, &mirror)?
            .resolve(pin)
            .ok()
            .and_then(|commit| release::Sha::parse(&commit));
        if pinned.as_ref() != Some(&sha) {
            return Ok(Prepared::Pinned);
        }
    }
    release::source::archive(
        &target.app.repo,
        &mirror,
        &sha,
        release::Limits::of(&target.app),
    )
    .map(Prepared::Archive)
}

/// 409 for a deploy of `app` that its pin `pin` (set in `file`) would
/// undo: `{"error", "pinned", "file"}`.
pub(super) fn pinned(app: &str, pin: &str, file: Option<&Path>) -> Response {
    let file = file.map_or_else(|| "its definition".to_owned(), |f| f.display().to_string());
    let message = format!(
        "app {app} pins revision {pin} in {file}; change the pin to deploy another revision"
    );
    tracing::info!(%app, %pin, %file, "deploy refused: the app is pinned");
    (
        StatusCode::CONFLICT,
        Json(serde_json::json!({ "error": message, "pinned": pin, "file": file })),
    )
        .into_response()
}
