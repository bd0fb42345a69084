//! The dashboard's actions on an app, behind the same login as its logs
//! (`console`): a rollback to a release its history lists as live, run
//! in the background by `release::rollback` as `reconciler rollback` runs
//! it, the servers' release logs recording who asked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Form, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::console::{Console, allowed, app_href, target};
use super::session::ADMIN;
use crate::app::{Origin, Trigger};
use crate::board::Board;

/// A release the app may roll back to: one that went live.
#[derive(Debug, Serialize)]
pub(super) struct ReleaseChoice {
    sha: String,
    short: String,
    time: String,
    servers: Vec<String>,
}

/// The releases the board's history shows went live (newest first, each
/// once), with the servers it went live on.
pub(super) fn choices(board: &Board, app: &str) -> Vec<ReleaseChoice> {
    let history = board
        .journal(crate::board::Journal::releases)
        .remove(app)
        .unwrap_or_default();
    let mut choices: Vec<ReleaseChoice> = Vec::new();
    for record in history
        .into_iter()
        .filter(|r| matches!(r.result, "live" | "rollback"))
    {
        match choices.iter_mut().find(|c| c.sha == record.sha) {
            Some(choice) if choice.servers.contains(&record.server) => {}
            Some(choice) => choice.servers.push(record.server),
            None => choices.push(ReleaseChoice {
                short: record.sha.chars().take(12).collect(),
                sha: record.sha,
                time: record.time,
                servers: vec![record.server],
            }),
        }
    }
    choices
}

#[derive(Deserialize)]
pub(super) struct RollbackForm {
    to: String,
}

pub(super) async fn rollback(
    State(console): State<Arc<Console>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(app): Path<String>,
    headers: HeaderMap,
    Form(form): Form<RollbackForm>,
) -> Response {
    let owner = match allowed(&console, peer, "/apps/rollback", &headers, &app) {
        Ok(owner) => owner,
        Err(refused) => return *refused,
    };
    let target = match target(&console, &app) {
        Ok(target) => target,
        Err(missing) => return *missing,
    };
    if !choices(&console.board, &app)
        .iter()
        .any(|c| c.sha == form.to)
    {
        return crate::serve::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a release this app's history lists as live",
        );
    }
    let Some(mark) = console.deployer.releasing(&app) else {
        return crate::serve::error(
            StatusCode::CONFLICT,
            &format!("{app} is being released; try again when it is done"),
        );
    };
    let who = format!(
        "dashboard: {} token from {}",
        if owner == ADMIN { "admin" } else { &owner },
        peer.ip()
    );
    tracing::info!(%app, to = %form.to, %who, "rollback asked from the dashboard");
    let deployer = Arc::clone(&console.deployer);
    let to = form.to.clone();
    console.deployer.tasks.spawn(async move {
        let _mark = mark;
        let origin = Origin {
            who,
            trigger: Trigger::Rollback,
        };
        let result = crate::release::rollback(
            &target,
            Some(&to),
            &origin,
            deployer.connector.as_ref(),
            &(),
        )
        .await;
        match result {
            Ok(_) => tracing::info!(app = %target.app.name, %to, "dashboard rollback is live"),
            Err(e) => {
                let error = crate::text::visible(&crate::redact::scrub(
                    &crate::error_chain(&e),
                    &target.app.repo,
                ))
                .into_owned();
                tracing::warn!(app = %target.app.name, %to, %error, "dashboard rollback failed");
            }
        }
    });
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!(
                "{}?rolling_back={}",
                app_href(&app, "logs"),
                &form.to[..12.min(form.to.len())]
            ),
        )],
    )
        .into_response()
}
