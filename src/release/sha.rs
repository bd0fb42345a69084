//! A commit id as releases are named: 40 lowercase hex characters.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A commit id, and the name of its release directory
/// (`/home/<app>/releases/<sha>`). Anything else a server reports (a
/// directory the app made, a `current` link pointing elsewhere) is not a
/// `Sha`, so it never becomes a release reconciler acts on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha(String);

impl Sha {
    /// `text` when it is 40 lowercase hex characters.
    pub fn parse(text: &str) -> Option<Self> {
        let valid =
            text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        valid.then(|| Self(text.to_owned()))
    }

    /// The release a `current` link names, when it is `releases/<sha>`.
    pub fn of_current(target: &str) -> Option<Self> {
        Self::parse(target.strip_prefix("releases/")?)
    }

    /// All 40 characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 characters, as people read commit ids.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Sha {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Sha {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Sha::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a commit id")))
    }
}

#[cfg(test)]
mod tests {
    use super::Sha;

    #[test]
    fn only_commit_ids_are_releases() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            Sha::parse(sha).map(|s| s.short().to_owned()).as_deref(),
            Some("0123456789ab")
        );
        for not in [
            "",
            "0123",
            &sha.to_uppercase(),
            &format!("{sha}\n"),
            &format!("../{sha}"),
        ] {
            assert_eq!(Sha::parse(not), None, "{not:?}");
        }
        assert!(Sha::of_current(&format!("releases/{sha}")).is_some());
        for target in [
            sha.to_owned(),
            format!("/home/other/releases/{sha}"),
            format!("releases/{sha}/"),
        ] {
            assert_eq!(Sha::of_current(&target), None, "{target}");
        }
    }
}
