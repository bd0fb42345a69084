//! The listener's own accept loop, so that clients cannot take the
//! daemon's file descriptors: the reconcile loop's SSH connections, its
//! git fetches and the status page share one limit of open files with it.
//!
//! `axum::serve` waits for ever on a client that sends half a request, or
//! nothing, and accepts as many as come. Here:
//!
//! - a request's head must arrive within `header_timeout` of the moment
//!   the connection waits for one (its start, or the end of the previous
//!   answer on a kept-alive connection: so that is also how long a
//!   connection may idle);
//! - a request's whole body must arrive within `body_timeout` (408);
//! - at most `max_connections` are served at once; past that the listener
//!   accepts nothing, and new connections wait in the kernel's queue (no
//!   descriptor of ours) until one closes, which an idle one does within
//!   `header_timeout`;
//! - on shutdown it stops accepting, closes idle connections, and gives
//!   the requests in flight `drain` to finish.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

use super::MAX_BODY;

/// How the listener bounds what clients may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A request's head must arrive within this, from when the connection
    /// starts waiting for one; also the longest a connection may idle.
    pub header_timeout: Duration,
    /// A request's whole body must arrive within this.
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the kernel's queue.
    pub max_connections: usize,
    /// How long a shutdown waits for the requests in flight.
    pub drain: Duration,
}

impl Default for Limits {
    /// 5 s for a head (and idling), 10 s for a body, 256 connections,
    /// 10 s to drain.
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(5),
            body_timeout: Duration::from_secs(10),
            max_connections: 256,
            drain: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// The defaults, with at most a quarter of `open_files` (the process's
    /// limit of open files, `None` for none) as connections, and at least
    /// one: the rest is the reconcile loop's.
    pub fn for_open_files(open_files: Option<u64>) -> Self {
        let mut limits = Self::default();
        if let Some(open) = open_files {
            let quarter = usize::try_from(open / 4).unwrap_or(usize::MAX);
            limits.max_connections = limits.max_connections.min(quarter).max(1);
        }
        limits
    }
}

/// Raises the process's soft limit of open files (`RLIMIT_NOFILE`) to its
/// hard limit, and returns the soft limit now in force (`None`:
/// unlimited). A refusal is logged, and the limit stays as it was.
pub fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let Some(hard) = limit.maximum else {
        return limit.current;
    };
    if limit.current == Some(hard) {
        return Some(hard);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                from = limit.current,
                to = hard,
                "raised the limit of open files"
            );
            Some(hard)
        }
        Err(error) => {
            tracing::warn!(%error, limit = limit.current, "cannot raise the limit of open files");
            limit.current
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`
/// completes, then drains (see the module). Every request carries its
/// client's address as `ConnectInfo<SocketAddr>`.
///
/// # Errors
///
/// None at present: accept errors are logged and retried.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(middleware::from_fn_with_state(
        limits.body_timeout,
        read_body_in_time,
    ));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: until there is one, nothing is accepted.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
        };
        let service = TowerToHyperService::new(router.clone().map_request(
            move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            },
        ));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            drain_s = limits.drain.as_secs(),
            "stopped serving with requests unfinished"
        );
    }
    Ok(())
}

/// A failed accept: a connection that went away before it was accepted is
/// nothing; anything else (out of descriptors) is logged and waited out.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(%error, "cannot accept a connection; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Reads the whole body (at most `MAX_BODY`) within `timeout` before the
/// route sees the request: 408 when it does not come in time, 413 past
/// the limit.
async fn read_body_in_time(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await;
    match read {
        Ok(Ok(collected)) => {
            next.run(Request::from_parts(parts, Body::from(collected.to_bytes())))
                .await
        }
        Ok(Err(error)) if error.is::<LengthLimitError>() => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over {} KiB", MAX_BODY / 1024),
        ),
        Ok(Err(error)) => refuse(
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {error}"),
        ),
        Err(_) => refuse(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", timeout.as_secs_f64()),
        ),
    }
}

/// An error answer after which the connection is closed (the rest of the
/// body is never read).
fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONNECTION, "close")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_take_at_most_a_quarter_of_the_open_files() {
        assert_eq!(Limits::for_open_files(None).max_connections, 256);
        assert_eq!(Limits::for_open_files(Some(1_048_576)).max_connections, 256);
        assert_eq!(Limits::for_open_files(Some(1024)).max_connections, 256);
        assert_eq!(Limits::for_open_files(Some(400)).max_connections, 100);
        assert_eq!(Limits::for_open_files(Some(2)).max_connections, 1);
    }
}
