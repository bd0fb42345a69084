//! Deploy tokens: a file outside the definitions repository, one line
//! per token, `<app> <sha256 hex of the token>` (`reconciler deploy-token`
//! makes one). Only hashes are stored, and a presented token is compared
//! with every one in constant time.

use std::path::{Path, PathBuf};

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::guard::{AuthGuard, HeldBack};

/// Deploy tokens by app, as hashes.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    hashes: Vec<(String, [u8; 32])>,
}

/// Why a tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: {message}", .path.display())]
pub struct TokensError {
    path: PathBuf,
    line: usize,
    message: String,
}

impl Tokens {
    /// Reads a tokens file: `<app> <sha256 hex>` lines, `#` comments.
    pub fn read(path: &Path) -> Result<Self, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokensError {
            path: path.to_owned(),
            line: 0,
            message: format!("cannot read it: {e}"),
        })?;
        Self::parse(&text).map_err(|(line, message)| TokensError {
            path: path.to_owned(),
            line,
            message,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut hashes = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |m: &str| (i + 1, m.to_owned());
            let mut words = line.split_whitespace();
            let (Some(app), Some(hash), None) = (words.next(), words.next(), words.next()) else {
                return Err(bad("expected `<app> <sha256 hex of the token>`"));
            };
            let hash: [u8; 32] = hex::decode(hash)
                .ok()
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| bad("the hash is not 64 hex digits (a sha256)"))?;
            hashes.push((app.to_owned(), hash));
        }
        Ok(Self { hashes })
    }

    /// The line that stores `token` for `app`.
    pub fn line(app: &str, token: &str) -> String {
        format!("{app} {}", hex::encode(Sha256::digest(token.as_bytes())))
    }

    /// The app whose token `token` is. Every stored hash is compared, in
    /// constant time, whatever matches.
    pub fn app_of(&self, token: &str) -> Option<&str> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (app, hash) in &self.hashes {
            if crate::secret::equal(hash, &presented) {
                found = Some(app.as_str());
            }
        }
        found
    }
}

/// Why a request's bearer token was not accepted.
#[derive(Debug)]
pub enum Unauthenticated {
    /// Too many failures from its address: 429.
    HeldBack(HeldBack),
    /// A missing or unknown token: 401.
    Unknown,
}

impl IntoResponse for Unauthenticated {
    fn into_response(self) -> Response {
        match self {
            Self::HeldBack(held) => held.into_response(),
            Self::Unknown => {
                super::error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token")
            }
        }
    }
}

/// The owner (app or cluster) of the `Authorization: Bearer` token in
/// `headers`, unless `peer` is held back by `guard` or the token is
/// missing or unknown (a failure held against `peer`, counted for `route`).
pub fn authenticate(
    guard: &AuthGuard,
    tokens: &Tokens,
    peer: IpAddr,
    route: &'static str,
    headers: &HeaderMap,
) -> Result<String, Unauthenticated> {
    guard.admit(peer).map_err(Unauthenticated::HeldBack)?;
    let owner = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| tokens.app_of(token.trim()));
    if let Some(owner) = owner {
        Ok(owner.to_owned())
    } else {
        guard.failed(peer, route, "missing or unknown token");
        Err(Unauthenticated::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_hash() {
        let text = format!(
            "# deploy tokens\n{}\n\n{}\n",
            Tokens::line("shop", "s3cret-shop-token"),
            Tokens::line("blog", "s3cret-blog-token")
        );
        let tokens = Tokens::parse(&text).expect("parses");
        assert_eq!(tokens.app_of("s3cret-shop-token"), Some("shop"));
        assert_eq!(tokens.app_of("s3cret-blog-token"), Some("blog"));
        assert_eq!(tokens.app_of("s3cret-shop-toke"), None);
        assert_eq!(tokens.app_of(""), None);
        assert!(!text.contains("s3cret"), "only hashes are stored");
    }

    #[test]
    fn a_bad_tokens_line_is_named() {
        assert_eq!(Tokens::parse("shop\n").unwrap_err().0, 1);
        assert_eq!(Tokens::parse("# c\nshop abc\n").unwrap_err().0, 2);
    }
}
