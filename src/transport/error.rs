//! How reaching a server fails: `TransportError`, what every path that
//! reaches servers reports of it (`Cause`), and the remedy a person can
//! apply.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::Output;

/// How connecting to or talking with a server failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Nothing listens on the server's SSH port.
    #[error("connection to `{dialed}` refused")]
    Refused {
        /// The address dialled (`user@host:port`, as ssh was given it).
        dialed: String,
    },
    /// The server did not answer within the connect timeout.
    #[error("no answer from `{dialed}` in time")]
    Timeout {
        /// The address dialled.
        dialed: String,
    },
    /// The server's host key is not the one known_hosts has for it, or
    /// known_hosts has none.
    #[error("{}", if *.changed {
        format!("host key of `{dialed}` has CHANGED: someone may be intercepting the connection, or the server was reinstalled")
    } else {
        format!("host key of `{dialed}` is not known, and host keys are checked strictly")
    })]
    HostKey {
        /// The address dialled.
        dialed: String,
        /// Whether known_hosts has another key for this server (rather than none).
        changed: bool,
    },
    /// The server refused the login (no key it accepts, or too many tried).
    #[error("`{dialed}` refused the login")]
    Auth {
        /// The address dialled.
        dialed: String,
    },
    /// A file the connection needs is missing; found before dialling.
    #[error("cannot read the {what} `{}`", .path.display())]
    MissingFile {
        /// What the file is (`SSH key`, `known_hosts file`).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The script ran longer than its limit; it may go on on the server.
    #[error("the script did not finish within {}", crate::humantime(*.after))]
    ScriptTimeout {
        /// The limit it ran into.
        after: Duration,
        /// What it printed before the limit.
        partial: Output,
    },
    /// Any other failure of the connection, of ssh or of a script's
    /// framing; the message says which.
    #[error("{message}")]
    Other {
        /// What went wrong, one line.
        message: String,
    },
}

/// A failure to reach a server or to talk with it, as every path that
/// reaches servers reports it (plan, apply and the daemon through
/// `converge`; release, rollback, the deploy webhook and `env push`
/// through `app::AppError`; `releases`, `env pull`, `env diff`, `logs`
/// and `provision` per server): the error's own words, which name the
/// cause (a changed host key, a refused login, a refused or unanswered
/// connection) rather than "cannot reach", and the remedy a person can
/// apply, when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// What happened, on one line: ``host key of `root@203.0.113.10:22`
    /// has CHANGED: …``.
    pub message: String,
    /// What to do about it, as the CLI prints it under an error.
    pub hint: Option<&'static str>,
}

/// One line: the message, then `; hint: ` and the hint when there is one,
/// for the places that have room for one line only (a server's line in a
/// listing, a status, a log).
impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl TransportError {
    /// This failure as every path reports it (see `Cause`).
    pub fn cause(&self) -> Cause {
        Cause {
            message: crate::error_chain(self),
            hint: self.remedy(),
        }
    }

    /// What a person can do about this failure, if anything.
    fn remedy(&self) -> Option<&'static str> {
        match self {
            TransportError::HostKey { changed: false, .. } => Some(
                "add the server's key to known_hosts (or pass --known-hosts FILE); \
                 --accept-new-host-keys trusts keys of servers never seen before",
            ),
            TransportError::HostKey { changed: true, .. } => Some(
                "verify the new key with the server's operator; only then replace its line in \
                 known_hosts (`ssh-keygen -R HOST`)",
            ),
            TransportError::Auth { .. } => {
                Some("check the SSH user and key (ssh-agent, ~/.ssh/config or --ssh-key FILE)")
            }
            TransportError::MissingFile { .. } => Some("check the path given on the command line"),
            TransportError::Refused { .. } | TransportError::Timeout { .. } => {
                Some("check that the server is up and its SSH port is reachable")
            }
            TransportError::ScriptTimeout { .. } | TransportError::Other { .. } => None,
        }
    }

    /// Whether trying again later may succeed (the server was unreachable),
    /// as opposed to a setup problem that only a person can fix.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TransportError::Refused { .. }
                | TransportError::Timeout { .. }
                | TransportError::ScriptTimeout { .. }
                | TransportError::Other { .. }
        )
    }

    pub(crate) fn other(message: impl Into<String>) -> Self {
        TransportError::Other {
            message: message.into(),
        }
    }
}

impl crate::Hint for TransportError {
    fn hint(&self) -> Option<&str> {
        self.remedy()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hint as _;
    use crate::definitions::ServerName;

    #[test]
    fn a_cause_is_the_errors_words_and_its_remedy_on_one_line() {
        let changed = TransportError::HostKey {
            dialed: "root@203.0.113.10:22".into(),
            changed: true,
        };
        let cause = changed.cause();
        assert_eq!(cause.message, changed.to_string());
        assert_eq!(cause.hint, changed.hint());
        assert!(cause.hint.is_some());
        let line = cause.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(line.starts_with("host key of `root@203.0.113.10:22` has CHANGED"));
        assert!(line.ends_with("; hint: verify the new key with the server's operator; only then replace its line in known_hosts (`ssh-keygen -R HOST`)"));

        let other = TransportError::other("the connection was lost");
        assert_eq!(other.cause().to_string(), "the connection was lost");
    }

    #[test]
    fn a_server_that_cannot_be_reached_is_named_with_the_cause_alone() {
        let error = crate::app::AppError::Unreachable {
            server: ServerName::new("web-2"),
            error: TransportError::Auth {
                dialed: "deploy@203.0.113.11:22".into(),
            },
        };
        assert_eq!(
            crate::error_chain(&error),
            "web-2: `deploy@203.0.113.11:22` refused the login"
        );
        assert_eq!(
            error.hint(),
            Some("check the SSH user and key (ssh-agent, ~/.ssh/config or --ssh-key FILE)")
        );
    }
}
