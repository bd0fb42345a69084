//! Credentials in repository URLs never reach an output.
//!
//! `--repo` and an app's `repo:` may be https URLs with a user and a
//! password (or a token as the user) in them. Whatever shows a URL (the
//! status document, `reconciler status`, logs, error messages) shows
//! `url(...)`: the scheme, host and path, with `***` for the credentials.
//! Errors that come from elsewhere (gix, the HTTP client) may quote the
//! URL, or only its password, in any form: they pass through `scrub`
//! (or `ScrubbedError`) with the URL they were about before they are
//! shown or kept.

use std::borrow::Cow;

/// What credentials are replaced with.
pub const MASK: &str = "***";

/// A user name without a password shorter than this is taken for a login
/// name (`git`, `deploy`), not a token, and is not scrubbed from texts.
const MIN_TOKEN_USER: usize = 8;

/// `url` as it may be shown: the userinfo of `scheme://user:password@host/path`
/// replaced by `***` (`https://***@host/path`); a path, an scp-like
/// `git@host:path` or a URL without userinfo as it is.
pub fn url(url: &str) -> String {
    scrub_urls(url).into_owned()
}

/// `text` with the userinfo of every `scheme://...@` URL in it replaced by
/// `***`.
pub fn scrub_urls(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | '`' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(user_end) if has_scheme(before) => {
                out.push_str(MASK);
                rest = &after[user_end..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether `before` (text up to and with `://`) ends in a URL scheme: a
/// letter, then letters, digits, `+`, `-` or `.` (so `-https://` has one).
fn has_scheme(before: &str) -> bool {
    let name = &before[..before.len() - 3];
    name.chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .any(|c| c.is_ascii_alphabetic())
}

/// `text` with every occurrence of `secret` replaced by `***`; an empty
/// `secret` changes nothing.
pub fn scrub_secret<'a>(text: &'a str, secret: &str) -> Cow<'a, str> {
    if secret.is_empty() || !text.contains(secret) {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(text.replace(secret, MASK))
    }
}

/// `text` (an error, a log line) without the credentials of `url`: URLs
/// with userinfo, and the userinfo, password and token of `url` as
/// written and percent-decoded, wherever they appear.
pub fn scrub(text: &str, url: &str) -> String {
    let mut text = scrub_urls(text).into_owned();
    for secret in secrets_of(url) {
        text = scrub_secret(&text, &secret).into_owned();
    }
    text
}

/// The credentials in `url`, longest first: its userinfo, its password,
/// or its user when that is a token; each as written and decoded.
fn secrets_of(url: &str) -> Vec<String> {
    let Some((_, after)) = url.split_once("://") else {
        return Vec::new();
    };
    let authority = after.split(['/', '?', '#']).next().unwrap_or_default();
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return Vec::new();
    };
    let mut secrets = vec![userinfo.to_owned()];
    match userinfo.split_once(':') {
        Some((_, password)) => secrets.push(password.to_owned()),
        None if userinfo.len() >= MIN_TOKEN_USER => {}
        None => return Vec::new(),
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

/// `%XX` escapes decoded (bytes that are not UTF-8 replaced).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An error and its causes with the credentials of a URL scrubbed from
/// each message: what is kept of an error that may quote the URL (gix's,
/// the HTTP client's). Shows like the original, cause by cause.
#[derive(Debug)]
pub struct ScrubbedError {
    message: String,
    source: Option<Box<ScrubbedError>>,
}

impl ScrubbedError {
    /// `error` and its causes, without the credentials of `url`.
    pub fn new(error: &(dyn std::error::Error + 'static), url: &str) -> Self {
        Self {
            message: scrub(&error.to_string(), url),
            source: error.source().map(|cause| Box::new(Self::new(cause, url))),
        }
    }
}

impl std::fmt::Display for ScrubbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScrubbedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_is_masked_and_the_rest_kept() {
        let cases = [
            (
                "https://user:s3cret@git.example.com/defs.git",
                "https://***@git.example.com/defs.git",
            ),
            (
                "https://ghp_token0123456789@github.com:443/o/r.git?x=1",
                "https://***@github.com:443/o/r.git?x=1",
            ),
            ("https://us:p@ss@host/r.git", "https://***@host/r.git"),
            ("ssh://git@host:22/r.git", "ssh://***@host:22/r.git"),
            (
                "https://git.example.com/defs.git",
                "https://git.example.com/defs.git",
            ),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("/srv/git/a@b/defs.git", "/srv/git/a@b/defs.git"),
            ("https://host/path/with@sign", "https://host/path/with@sign"),
        ];
        for (given, shown) in cases {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn urls_inside_a_text_are_masked() {
        let text = "cannot clone `https://u:pw@127.0.0.1:9/d.git`: see (https://u:pw@x/y) and http://plain/";
        assert_eq!(
            scrub_urls(text),
            "cannot clone `https://***@127.0.0.1:9/d.git`: see (https://***@x/y) and http://plain/"
        );
        assert_eq!(scrub_urls("://@ and a://"), "://@ and a://");
        assert_eq!(scrub_urls("`-https://u:p@h/r`"), "`-https://***@h/r`");
        assert_eq!(scrub_urls("1://u:p@h"), "1://u:p@h");
    }

    #[test]
    fn a_password_is_scrubbed_as_written_and_decoded() {
        let repo = "https://deploy:p%40ss-w0rd@127.0.0.1:9/shop.git";
        let text = "auth failed for deploy:p@ss-w0rd; tried p%40ss-w0rd and p@ss-w0rd";
        let scrubbed = scrub(text, repo);
        assert!(!scrubbed.contains("ss-w0rd"), "{scrubbed}");
        assert!(scrubbed.contains("auth failed for ***"), "{scrubbed}");
    }

    #[test]
    fn a_token_as_user_is_scrubbed_and_a_login_name_is_not() {
        let token = "https://ghp_abcdef0123456789@github.com/o/r.git";
        assert_eq!(
            scrub("bad token ghp_abcdef0123456789", token),
            "bad token ***"
        );
        let login = "ssh://git@github.com/o/r.git";
        assert_eq!(scrub("git said no", login), "git said no");
        assert_eq!(scrub_secret("no secret", ""), "no secret");
    }

    #[test]
    fn a_scrubbed_error_keeps_its_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("cannot reach https://u:hunter22@h/r.git")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("password hunter22 refused")]
        struct Inner;
        let scrubbed = ScrubbedError::new(&Outer(Inner), "https://u:hunter22@h/r.git");
        assert_eq!(
            crate::error_chain(&scrubbed),
            "cannot reach https://***@h/r.git: password *** refused"
        );
    }
}
