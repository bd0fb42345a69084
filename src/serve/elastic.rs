//! Joins and leaves of elastic members (`crate::elastic`):
//!
//! - `POST /v1/clusters/<cluster>/servers` `{"name", "address", "port",
//!   "host_key"}`: 202 and the member, `joining`; its join runs in the
//!   background;
//! - `GET /v1/clusters/<cluster>/servers[/<name>]`: the members, or one
//!   with its state (a load balancer hook polls it for `ready`);
//! - `DELETE /v1/clusters/<cluster>/servers/<name>`: 202, `leaving`; a
//!   second `DELETE` of a member that left, failed or was lost removes its
//!   record.
//!
//! Every route needs `Authorization: Bearer <join token of the cluster>`
//! (`reconciler join-token`; hashes in `<state-dir>/join-tokens`, read on
//! each request so that a new token works at once), checked as the deploy
//! tokens are (`tokens`): 401, and 429 after 10 failures a minute. A
//! refused join reaches no server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use chrono::Utc;

use super::tokens::{Tokens, Unauthenticated, authenticate};
use super::{AuthGuard, MAX_BODY, error};
use crate::elastic::join::Joiner;
use crate::elastic::{JoinRequest, Member, Refusal};

/// What the join routes share.
pub struct Elastic {
    pub joiner: Arc<Joiner>,
    /// The join tokens file (`<cluster> <sha256 hex>` lines).
    pub tokens: PathBuf,
    pub guard: Arc<AuthGuard>,
}

const ROUTE: &str = "/v1/clusters/servers";

impl Elastic {
    /// Checks the bearer token against `cluster`'s join tokens.
    fn authenticate(
        &self,
        peer: SocketAddr,
        headers: &HeaderMap,
        cluster: &str,
    ) -> Result<(), Unauthenticated> {
        // A missing file holds no tokens: every request is refused.
        let tokens = Tokens::read(&self.tokens).unwrap_or_default();
        let owner = authenticate(&self.guard, &tokens, peer.ip(), ROUTE, headers)?;
        if owner == cluster {
            Ok(())
        } else {
            self.guard
                .failed(peer.ip(), ROUTE, "a join token of another cluster");
            Err(Unauthenticated::Unknown)
        }
    }
}

/// The join routes.
pub fn router(elastic: Arc<Elastic>) -> Router {
    Router::new()
        .route("/v1/clusters/{cluster}/servers", post(join).get(list))
        .route(
            "/v1/clusters/{cluster}/servers/{name}",
            get(show).delete(leave),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(elastic)
}

fn refused(refusal: &Refusal) -> Response {
    let status = match refusal {
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &refusal.to_string())
}

fn member(status: StatusCode, member: &Member) -> Response {
    (status, Json(member)).into_response()
}

async fn join(
    State(elastic): State<Arc<Elastic>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(cluster): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = elastic.authenticate(peer, &headers, &cluster) {
        return refusal.into_response();
    }
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!(
                    "expected JSON {{\"name\": ..., \"address\": ..., \"port\": ..., \"host_key\": ...}}: {e}"
                ),
            );
        }
    };
    let definitions = elastic
        .joiner
        .definitions
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let Some(definitions) = definitions else {
        return refused(&Refusal::Unavailable("no commit is in force yet".into()));
    };
    match elastic
        .joiner
        .members
        .admit(&definitions, &cluster, &request, Utc::now())
    {
        Ok(admitted) => {
            tracing::info!(server = %admitted.name, %cluster, address = %admitted.address, port = admitted.port, "an elastic member joins");
            elastic.joiner.start(admitted.clone());
            member(StatusCode::ACCEPTED, &admitted)
        }
        Err(refusal) => {
            tracing::info!(%cluster, reason = %refusal, "a join was refused");
            refused(&refusal)
        }
    }
}

async fn list(
    State(elastic): State<Arc<Elastic>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath(cluster): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = elastic.authenticate(peer, &headers, &cluster) {
        return refusal.into_response();
    }
    let members: Vec<Member> = elastic
        .joiner
        .members
        .all()
        .into_iter()
        .filter(|m| m.cluster == cluster)
        .collect();
    Json(members).into_response()
}

async fn show(
    State(elastic): State<Arc<Elastic>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((cluster, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = elastic.authenticate(peer, &headers, &cluster) {
        return refusal.into_response();
    }
    match elastic.joiner.members.get(&cluster, &name) {
        Some(found) => member(StatusCode::OK, &found),
        None => refused(&Refusal::NotFound(format!(
            "cluster `{cluster}` has no member `{}`",
            name.escape_debug()
        ))),
    }
}

async fn leave(
    State(elastic): State<Arc<Elastic>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    UrlPath((cluster, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = elastic.authenticate(peer, &headers, &cluster) {
        return refusal.into_response();
    }
    let members = &elastic.joiner.members;
    if let Some(found) = members.get(&cluster, &name)
        && !found.state.counts()
    {
        members.forget(&name);
        tracing::info!(server = %name, %cluster, "an elastic member's record is removed");
        return (StatusCode::OK, Json(serde_json::json!({ "removed": name }))).into_response();
    }
    match members.leave(&cluster, &name, Utc::now()) {
        Ok(left) => {
            tracing::info!(server = %name, %cluster, "an elastic member leaves");
            member(StatusCode::ACCEPTED, &left)
        }
        Err(refusal) => refused(&refusal),
    }
}
