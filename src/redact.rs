//! Credentials never printed: a URL's user and password hidden wherever a
//! repository URL reaches output (status, logs, errors).

use std::borrow::Cow;

/// `url` with its user information (`user:password@`) replaced by `***@`;
/// a path or an ssh address without a password is returned as it is.
pub fn url(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://***@{}", &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_and_password_never_show() {
        assert_eq!(
            super::url("https://ci:s3cr3t@git.example.com/org/defs.git"),
            "https://***@git.example.com/org/defs.git"
        );
        assert_eq!(
            super::url("https://git.example.com/a@b.git"),
            "https://git.example.com/a@b.git"
        );
        assert_eq!(
            super::url("git@example.com:org/shop.git"),
            "git@example.com:org/shop.git"
        );
        assert_eq!(super::url("/srv/git/defs"), "/srv/git/defs");
    }
}
