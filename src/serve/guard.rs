//! The limit on failed authentication: a client address whose deploy
//! tokens or hook signatures failed `MAX_FAILURES` times in the last
//! `WINDOW` gets 429, with `Retry-After`, on every authenticated route
//! until the oldest of those failures is a `WINDOW` old. Its requests are
//! then refused before any check, so a right guess among them would not
//! even be looked at: guessing costs a minute per ten tries.
//!
//! Each failure is logged (`warn`, with the route and the address, never
//! what was presented) and counted in `reconciler_auth_failures_total`.
//! Behind a proxy every client has the proxy's address and shares one
//! limit.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use tokio::time::Instant;

use crate::board::AuthFailureCounter;

/// Failed checks an address may make in `WINDOW`.
pub const MAX_FAILURES: usize = 10;
/// The sliding window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Past this many addresses, those with no failure left in the window are
/// forgotten.
const TIDY_AFTER: usize = 1024;

/// Failed checks by client address, shared by every route that checks a
/// token or a signature.
#[derive(Debug, Default)]
pub struct AuthGuard {
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    counter: AuthFailureCounter,
}

impl AuthGuard {
    /// A guard counting failures in `counter` (registered in the daemon's
    /// metrics, or a counter of its own for `reconciler serve`).
    pub fn new(counter: AuthFailureCounter) -> Self {
        Self {
            failures: Mutex::default(),
            counter,
        }
    }

    /// `Ok` when `peer` may be checked now; else how long it is held back.
    pub fn admit(&self, peer: IpAddr) -> Result<(), HeldBack> {
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(times) = failures.get_mut(&peer) else {
            return Ok(());
        };
        forget_old(times, now);
        if times.len() < MAX_FAILURES {
            return Ok(());
        }
        let oldest = times.front().copied().unwrap_or(now);
        let wait = (oldest + WINDOW).saturating_duration_since(now);
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        Err(HeldBack {
            retry_after_s: seconds.clamp(1, WINDOW.as_secs()),
        })
    }

    /// Records a failed check by `peer` on `route` (such as
    /// `/v1/deploy`): logged, counted, and held against the address.
    pub fn failed(&self, peer: IpAddr, route: &'static str, why: &'static str) {
        tracing::warn!(%peer, route, why, "authentication failed");
        self.counter.inc(route);
        let now = Instant::now();
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() > TIDY_AFTER {
            failures.retain(|_, times| {
                forget_old(times, now);
                !times.is_empty()
            });
        }
        let times = failures.entry(peer).or_default();
        forget_old(times, now);
        times.push_back(now);
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }
}

/// An address with too many recent failures: answered 429 with
/// `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    /// Whole seconds until its oldest failure leaves the window, 1 to 60.
    pub retry_after_s: u64,
}

impl IntoResponse for HeldBack {
    fn into_response(self) -> Response {
        let seconds = self.retry_after_s;
        (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, seconds.to_string())],
            Json(serde_json::json!({
                "error": format!(
                    "too many failed authentications from this address; try again in {seconds} s"
                )
            })),
        )
            .into_response()
    }
}

/// Drops the failures older than `WINDOW`.
fn forget_old(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry_after(held: HeldBack) -> u64 {
        let response = held.into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("Retry-After")
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_held_back_for_a_minute_after_ten_failures() {
        let guard = AuthGuard::default();
        let (attacker, other): (IpAddr, IpAddr) = (
            "192.0.2.1".parse().expect("ip"),
            "192.0.2.2".parse().expect("ip"),
        );
        for _ in 0..MAX_FAILURES {
            assert!(guard.admit(attacker).is_ok());
            guard.failed(attacker, "/v1/deploy", "unknown token");
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        let refused = guard.admit(attacker).expect_err("held back");
        // The first failure was 10 s ago: 50 s to go.
        assert_eq!(retry_after(refused), 50);
        assert!(guard.admit(other).is_ok());

        tokio::time::advance(Duration::from_secs(49)).await;
        assert_eq!(retry_after(guard.admit(attacker).expect_err("held")), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(guard.admit(attacker).is_ok(), "one failure left the window");
        guard.failed(attacker, "/v1/deploy", "unknown token");
        assert!(guard.admit(attacker).is_err(), "ten in the window again");
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_without_recent_failures_are_forgotten() {
        let guard = AuthGuard::default();
        for i in 0..=TIDY_AFTER as u32 {
            guard.failed(
                IpAddr::from(i.to_be_bytes()),
                "/v1/hooks/git",
                "bad signature",
            );
        }
        tokio::time::advance(WINDOW).await;
        guard.failed(
            "192.0.2.1".parse().expect("ip"),
            "/v1/hooks/git",
            "bad signature",
        );
        let kept = guard.failures.lock().expect("lock").len();
        assert_eq!(kept, 1);
    }
}
