//! Problems found in definitions, each pinned to a file, line and column.

use std::fmt;
use std::path::PathBuf;

use super::positions::Position;

/// One problem in a definitions file, printed as `file:line:col: message`
/// with an optional `hint:` line below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The definitions file, relative to the repository's root.
    pub file: PathBuf,
    /// Where in it the offending value starts.
    pub position: Position,
    /// What is wrong, lowercase, values in backticks.
    pub message: String,
    /// What the user can do about it, when there is a remedy.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A problem at `position` of `file`, without a hint.
    pub fn new(file: impl Into<PathBuf>, position: Position, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            position,
            message: message.into(),
            hint: None,
        }
    }

    /// This diagnostic with `hint` as its `hint:` line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Builds a diagnostic from a serde_yaml error: its position, its message
    /// without the position repeated in words, and a hint for a misspelled key.
    pub fn from_yaml(file: impl Into<PathBuf>, error: &serde_yaml::Error) -> Self {
        let position = error.location().map_or(Position::START, |l| Position {
            line: l.line(),
            column: l.column(),
        });
        let message = strip_locations(&error.to_string());
        let hint = misspelling_hint(&message);
        Self {
            file: file.into(),
            position,
            message,
            hint,
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.position.line,
            self.position.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Removes serde_yaml's ` at line N column M` phrases: the position is
/// already at the front of the diagnostic.
fn strip_locations(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at line ".len()..];
        let skip_number = |s: &str| {
            s.trim_start_matches(|c: char| c.is_ascii_digit())
                .to_owned()
        };
        let after_line = skip_number(tail);
        if let Some(col) = after_line.strip_prefix(" column ") {
            let after = skip_number(col);
            rest = &rest[rest.len() - after.len()..];
        } else {
            out.push_str(" at line ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// `did you mean ...?` for serde's "unknown field `x`, expected ..." and
/// "unknown variant `x`, expected ..." messages.
pub(super) fn misspelling_hint(message: &str) -> Option<String> {
    let (_, after) = message
        .split_once("unknown field `")
        .or_else(|| message.split_once("unknown variant `"))?;
    let (given, expected) = after.split_once('`')?;
    let candidates = expected.split('`').skip(1).step_by(2);
    closest(given, candidates).map(|best| format!("did you mean `{best}`?"))
}

/// The candidate closest to `given`, if it is close enough to be a typo.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_every_location_phrase() {
        assert_eq!(
            strip_locations(
                "did not find expected key at line 3 column 5, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping"
        );
        assert_eq!(strip_locations("at line breaks"), "at line breaks");
    }

    #[test]
    fn suggests_the_closest_expected_key() {
        assert_eq!(
            misspelling_hint(
                "servers[0]: unknown field `adress`, expected one of `name`, `address`, `port`"
            ),
            Some("did you mean `address`?".into())
        );
        assert_eq!(
            misspelling_hint("unknown field `zzz`, expected `name` or `web`"),
            None
        );
    }
}
