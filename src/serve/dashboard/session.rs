//! Who is signed in to the dashboard's private pages (an app's logs, its
//! actions): the deploy tokens file's tokens (`super::super::tokens`), an
//! app's for that app, one whose owner is `*` for every app (the admin
//! token).
//!
//! A token never travels in a URL: a browser posts it once to `/login`
//! and gets a session cookie (random, `HttpOnly; SameSite=Strict`, eight
//! hours), a script sends `Authorization: Bearer`. Sessions are kept in
//! memory only by the SHA-256 of their cookie, so the daemon's memory
//! holds no usable cookie either; they end with the daemon. Failed tokens
//! count against their address like the webhook's (`guard`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};

use crate::serve::tokens::{Tokens, Unauthenticated};
use crate::serve::{AuthGuard, tokens};

/// The session cookie's name.
pub const COOKIE: &str = "reconciler_session";
/// How long a session lasts after its login.
pub const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
/// The most sessions kept at once: past it, the oldest go first.
pub const MAX_SESSIONS: usize = 1000;
/// The owner of a token for every app.
pub const ADMIN: &str = "*";

/// Signed-in sessions by the SHA-256 of their cookie: owner and end.
#[derive(Debug, Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl Sessions {
    /// A new session for `owner`: the cookie's value (64 hex digits).
    ///
    /// # Errors
    /// When the system's random generator fails.
    pub fn open(&self, owner: &str, now: Instant) -> Result<String, crate::secret::SecretError> {
        let cookie = crate::secret::token(32)?;
        let mut sessions = self.lock();
        sessions.retain(|_, (_, end)| *end > now);
        while sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, (_, end))| *end)
                .map(|(k, _)| *k);
            match oldest {
                Some(key) => sessions.remove(&key),
                None => break,
            };
        }
        sessions.insert(hash(&cookie), (owner.to_owned(), now + SESSION_LIFE));
        Ok(cookie)
    }

    /// The owner of the session whose cookie is `cookie`, while it lasts.
    pub fn owner(&self, cookie: &str, now: Instant) -> Option<String> {
        let sessions = self.lock();
        let (owner, end) = sessions.get(&hash(cookie))?;
        (*end > now).then(|| owner.clone())
    }

    /// Ends the session whose cookie is `cookie`, if any.
    pub fn close(&self, cookie: &str) {
        self.lock().remove(&hash(cookie));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        self.by_hash
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// The session cookie's value in `headers`, if any.
pub fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that keeps `value` for a session (empty and
/// expired: forgets it).
pub fn set_cookie(value: &str) -> String {
    let age = if value.is_empty() {
        0
    } else {
        SESSION_LIFE.as_secs()
    };
    format!("{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict")
}

/// Who `headers` sign in as: an `Authorization: Bearer` token's owner, or
/// the session cookie's; `Unknown` when neither (a wrong bearer token is
/// held against `peer`, as the webhook's are).
pub fn signed_in(
    sessions: &Sessions,
    guard: &AuthGuard,
    tokens: &Tokens,
    peer: IpAddr,
    route: &'static str,
    headers: &HeaderMap,
) -> Result<String, Unauthenticated> {
    if headers.contains_key(header::AUTHORIZATION) {
        return tokens::authenticate(guard, tokens, peer, route, headers);
    }
    cookie(headers)
        .and_then(|c| sessions.owner(c, Instant::now()))
        .ok_or(Unauthenticated::Unknown)
}

/// Whether `owner` may see and act on `app`.
pub fn may(owner: &str, app: &str) -> bool {
    owner == ADMIN || owner == app
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends_and_only_its_hash_is_kept() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let cookie = sessions.open("shop", now).expect("random");
        assert_eq!(cookie.len(), 64);
        assert_eq!(sessions.owner(&cookie, now).as_deref(), Some("shop"));
        assert_eq!(sessions.owner(&cookie[1..], now), None);
        assert_eq!(sessions.owner(&cookie, now + SESSION_LIFE), None);
        assert!(!format!("{sessions:?}").contains(&cookie[..16]));
        sessions.close(&cookie);
        assert_eq!(sessions.owner(&cookie, now), None);
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_http_only_and_strict() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=b; reconciler_session=abc123; c=d"
                .parse()
                .expect("header"),
        );
        assert_eq!(cookie(&headers), Some("abc123"));
        let set = set_cookie("abc123");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict"),
            "{set}"
        );
    }

    #[test]
    fn an_app_token_is_for_its_app_and_the_admin_token_for_all() {
        assert!(may("shop", "shop"));
        assert!(!may("shop", "blog"));
        assert!(may(ADMIN, "blog"));
    }
}
