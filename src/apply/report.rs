//! What happened on a host during apply, read from the apply script's
//! `@kind<TAB>name<TAB>base64(output)` lines.

use base64::Engine as _;

use crate::definitions::ServerName;
use crate::plan::HostPlan;

/// The result of applying one host's plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub server: ServerName,
    pub outcome: Outcome,
}

impl HostReport {
    pub fn new(server: ServerName, outcome: Outcome) -> Self {
        Self { server, outcome }
    }

    pub fn succeeded(&self) -> bool {
        match &self.outcome {
            Outcome::Unchanged => true,
            Outcome::Applied {
                reload_failures, ..
            } => reload_failures.is_empty(),
            Outcome::Invalid { .. } | Outcome::Failed { .. } => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do.
    Unchanged,
    /// Every change landed and every service validated.
    Applied {
        changes: usize,
        /// Services reloaded now, by label.
        reloaded: Vec<String>,
        /// Reloads left for the next window, by label.
        deferred: Vec<String>,
        /// Reloads that failed after validation passed: (label, output).
        reload_failures: Vec<(String, String)>,
    },
    /// A validator refused the new files; the previous files are back and
    /// nothing was reloaded.
    Invalid {
        /// (check, its output) for each failed check.
        failures: Vec<(String, String)>,
    },
    /// Something else went wrong; staged files were restored.
    Failed { message: String, output: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the apply script stopped without a report")]
    NoReport,
}

pub(super) fn read(stdout: &[u8], plan: &HostPlan) -> Outcome {
    let text = String::from_utf8_lossy(stdout);
    let mut reloaded = Vec::new();
    let mut deferred = Vec::new();
    let mut reload_failures = Vec::new();
    let mut invalid = Vec::new();
    for line in text.lines() {
        let mut fields = line.splitn(3, '\t');
        let (Some(kind), Some(name), output) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let output = decode(output.unwrap_or(""));
        match kind {
            "@failed" => {
                return Outcome::Failed {
                    message: format!("cannot {name}"),
                    output,
                };
            }
            "@invalid" => invalid.push((name.to_owned(), output)),
            "@restored" => return Outcome::Invalid { failures: invalid },
            "@reloaded" => reloaded.push(name.to_owned()),
            "@deferred" => deferred.push(name.to_owned()),
            "@reload-failed" => reload_failures.push((name.to_owned(), output)),
            "@done" => {
                return Outcome::Applied {
                    changes: plan.changes.len(),
                    reloaded,
                    deferred,
                    reload_failures,
                };
            }
            _ => {}
        }
    }
    Outcome::Failed {
        message: ParseError::NoReport.to_string(),
        output: text.into_owned(),
    }
}

fn decode(field: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(field.trim())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
