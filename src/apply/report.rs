//! What happened on a host during apply, read from the apply script's
//! `@kind<TAB>name<TAB>base64(output)` lines.

use base64::Engine as _;
use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::ServerName;
use crate::plan::{HostPlan, Plan};

/// The result of applying one host's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HostReport {
    pub server: ServerName,
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a step printed: a check that refused, a reload that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StepOutput {
    /// `nginx`, `php8.2-fpm`, `supervisor`, `supervisor:shop`.
    pub step: String,
    pub output: String,
}

impl StepOutput {
    pub fn new(step: impl Into<String>, output: impl Into<String>) -> Self {
        Self {
            step: step.into(),
            output: output.into(),
        }
    }
}

/// `apply --format json`: the plan and what applying it did, per host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ApplyResult {
    /// The version of this format.
    pub format_version: u32,
    pub plan: Plan,
    /// One result per host that was planned, in the plan's order.
    pub results: Vec<HostReport>,
}

impl HostReport {
    pub fn new(server: ServerName, outcome: Outcome) -> Self {
        Self { server, outcome }
    }

    pub fn succeeded(&self) -> bool {
        match &self.outcome {
            Outcome::Unchanged => true,
            Outcome::Applied {
                reload_failures,
                unanswered,
                ..
            } => reload_failures.is_empty() && unanswered.is_empty(),
            Outcome::Invalid { .. }
            | Outcome::Failed { .. }
            | Outcome::Locked { .. }
            | Outcome::Stale { .. } => false,
        }
    }
}

/// What applying did on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
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
        /// Reloads that failed after validation passed.
        reload_failures: Vec<StepOutput>,
        /// Web apps that did not answer after php-fpm reloaded.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unanswered: Vec<StepOutput>,
    },
    /// A validator refused the new files; the previous files are back and
    /// nothing was reloaded.
    Invalid {
        /// Each check that refused, with its output.
        failures: Vec<StepOutput>,
    },
    /// Something else went wrong; staged files were restored.
    Failed { message: String, output: String },
    /// Another apply holds the host lock; nothing was done.
    Locked { holder: String },
    /// The server changed since the plan (these paths); nothing was done.
    Stale { paths: Vec<String> },
}

pub(super) fn read(stdout: &[u8], plan: &HostPlan) -> Outcome {
    let text = String::from_utf8_lossy(stdout);
    let mut reloaded = Vec::new();
    let mut deferred = Vec::new();
    let mut reload_failures = Vec::new();
    let mut unanswered = Vec::new();
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
            "@locked" => {
                return Outcome::Locked {
                    holder: output.trim().to_owned(),
                };
            }
            "@stale" => {
                return Outcome::Stale {
                    paths: output.lines().map(str::to_owned).collect(),
                };
            }
            "@invalid" => invalid.push(StepOutput::new(name, output)),
            "@restored" => return Outcome::Invalid { failures: invalid },
            "@reloaded" => reloaded.push(name.to_owned()),
            "@deferred" => deferred.push(name.to_owned()),
            "@reload-failed" => reload_failures.push(StepOutput::new(name, output)),
            "@unanswered" => unanswered.push(StepOutput::new(name, output)),
            "@done" => {
                return Outcome::Applied {
                    changes: plan.changes.len(),
                    reloaded,
                    deferred,
                    reload_failures,
                    unanswered,
                };
            }
            _ => {}
        }
    }
    Outcome::Failed {
        message: "the apply script stopped without a report".into(),
        output: text.into_owned(),
    }
}

fn decode(field: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .decode(field.trim())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}
