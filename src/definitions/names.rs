//! Names of clusters, servers, apps and workers.
//!
//! A name becomes a Unix user, a file name under /etc, a supervisor group and
//! part of shell commands, so the rule is strict: `^[a-z][a-z0-9-]{0,31}$`.
//! The newtypes deserialize any string so that one pass can report every bad
//! name in a file at once; `check` is where the rule lives, and
//! `Definitions::load` refuses anything that breaks it.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The pattern every name must match, for messages and the JSON Schema.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,31}$";

/// Whether `name` is acceptable as a Unix user, file name and group name.
pub fn is_valid(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// What this name names, for messages.
            pub const KIND: &'static str = $what;

            /// Wraps `name` as is; checking it (`names::is_valid`) is the
            /// definitions' and the facts' parsers' job.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": NAME_PATTERN,
                    "description": concat!(
                        "The ", $what, " name: lowercase letters, digits and `-`, starting with a ",
                        "letter, at most 32 characters (it becomes a Unix user, file names and ",
                        "supervisor groups)."
                    )
                })
            }
        }
    };
}

name_type!(
    /// The name of a cluster of servers.
    ClusterName,
    "cluster"
);
name_type!(
    /// The name of a server; unique across all clusters.
    ServerName,
    "server"
);
name_type!(
    /// The name of an app; also its Unix user and the stem of its files.
    AppName,
    "app"
);
name_type!(
    /// The name of a queue worker, unique within an app's server role.
    WorkerName,
    "worker"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_names_with_digits_and_dashes() {
        for name in ["a", "shop", "web-1", "a-b-c", &"x".repeat(32)] {
            assert!(is_valid(name), "{name}");
        }
    }

    #[test]
    fn rejects_what_could_escape_a_file_name_or_a_shell_word() {
        for name in [
            "",
            "Shop",
            "a b",
            "../x",
            "x;rm -rf /",
            "1web",
            "-x",
            "ä",
            "web_1",
            "a.b",
            &"x".repeat(33),
        ] {
            assert!(!is_valid(name), "{name}");
        }
    }
}
