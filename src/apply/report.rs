//! What happened on a host during apply, read from the apply script's
//! records (`remote::protocol`): `report KIND NAME OUTPUT`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::ServerName;
use crate::plan::{HostPlan, Plan};

/// The result of applying one host's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct HostReport {
    /// The server, by its name in the definitions.
    pub server: ServerName,
    /// What applying did there (flattened: its `result` tag and fields are
    /// this object's).
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// What a step printed: a check that refused, a reload that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct StepOutput {
    /// `nginx`, `php8.2-fpm`, `supervisor`, `supervisor:shop`; for a web
    /// app that did not answer, its domain.
    pub step: String,
    /// What the validator or reload printed, as the server sent it; for a
    /// web app that did not answer, what it answered and for how long.
    pub output: String,
}

impl StepOutput {
    /// The output `output` of step `step`.
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
    /// The plan that was applied, as `plan --format json` shows it.
    pub plan: Plan,
    /// One result per host that was planned, in the plan's order.
    pub results: Vec<HostReport>,
}

impl HostReport {
    /// The report that applying on `server` came to `outcome`.
    pub fn new(server: ServerName, outcome: Outcome) -> Self {
        Self { server, outcome }
    }

    /// Whether the host ended as its plan says: nothing to do, or every
    /// change applied, every reload done and every web app answering.
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
        /// How many of the plan's changes landed: all of them.
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
        /// Per supervisor reload (`supervisor:shop`), the app's programs
        /// supervisord updated: restarted (changed), started (new) or
        /// stopped (gone); its other programs kept their processes, and an
        /// empty list means none changed. Per restart of workers
        /// (`workers:shop`), the programs restarted.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        programs: BTreeMap<String, Vec<String>>,
    },
    /// A validator refused the new files; the previous files are back and
    /// nothing was reloaded.
    Invalid {
        /// Each check that refused, with its output.
        failures: Vec<StepOutput>,
    },
    /// Something else went wrong: staged files were restored; or every
    /// change landed but a service or worker process the plan started does
    /// not run (the message names them, the output says why).
    Failed {
        /// What failed, one line: `cannot <step>`, or which services and
        /// processes do not run.
        message: String,
        /// What the failing step printed, as the server sent it.
        output: String,
    },
    /// Another apply holds the host lock; nothing was done.
    Locked {
        /// Who holds it, as its lock record says: `user@machine (pid N)`.
        holder: String,
    },
    /// The server changed since the plan; nothing was done.
    Stale {
        /// The paths whose content, owner, group or mode is no longer what
        /// the plan saw.
        paths: Vec<String>,
    },
}

pub(super) fn read(stdout: &[u8], plan: &HostPlan) -> Outcome {
    let records = match crate::remote::protocol::parse(stdout) {
        Ok(records) => records,
        Err(e) => {
            return Outcome::Failed {
                message: format!("the apply script's report is garbled: {e}"),
                output: String::from_utf8_lossy(stdout).into_owned(),
            };
        }
    };
    let mut reloaded = Vec::new();
    let mut deferred = Vec::new();
    let mut reload_failures = Vec::new();
    let mut unanswered = Vec::new();
    let mut programs = BTreeMap::new();
    let mut invalid = Vec::new();
    let mut start_failures: Vec<StepOutput> = Vec::new();
    for record in &records {
        let (name, output) = (record.text(0).into_owned(), record.text(1).into_owned());
        match record.kind.as_str() {
            "failed" => {
                return Outcome::Failed {
                    message: format!("cannot {name}"),
                    output,
                };
            }
            "locked" => {
                return Outcome::Locked {
                    holder: output.trim().to_owned(),
                };
            }
            "stale" => {
                return Outcome::Stale {
                    paths: output.lines().map(str::to_owned).collect(),
                };
            }
            "invalid" => invalid.push(StepOutput::new(name, output)),
            "restored" => return Outcome::Invalid { failures: invalid },
            "reloaded" => reloaded.push(name),
            "programs" => {
                programs.insert(name, output.lines().map(str::to_owned).collect());
            }
            "deferred" => deferred.push(name),
            "reload-failed" => reload_failures.push(StepOutput::new(name, output)),
            "unanswered" => unanswered.push(StepOutput::new(name, output)),
            "start-failed" => start_failures.push(StepOutput::new(name, output)),
            "done" if !start_failures.is_empty() => {
                return not_started(plan, &start_failures, &reload_failures, &unanswered);
            }
            "done" => {
                return Outcome::Applied {
                    changes: plan.changes.len(),
                    reloaded,
                    deferred,
                    reload_failures,
                    unanswered,
                    programs,
                };
            }
            _ => {}
        }
    }
    Outcome::Failed {
        message: "the apply script stopped without a report".into(),
        output: String::new(),
    }
}

/// An apply whose changes landed but whose starts did not all take: a
/// failure that names what does not run, with every failed step's output.
fn not_started(
    plan: &HostPlan,
    start_failures: &[StepOutput],
    reload_failures: &[StepOutput],
    unanswered: &[StepOutput],
) -> Outcome {
    let names: Vec<&str> = start_failures.iter().map(|f| f.step.as_str()).collect();
    let others = plan.changes.len().saturating_sub(start_failures.len());
    let mut message = format!("cannot start {}", names.join(", "));
    if others > 0 {
        message.push_str(&format!(
            " (the other {} applied)",
            crate::definitions::plural(others, "change")
        ));
    }
    let mut output = String::new();
    for (what, failure) in start_failures
        .iter()
        .map(|f| ("start", f))
        .chain(reload_failures.iter().map(|f| ("reload", f)))
        .chain(unanswered.iter().map(|f| ("answer", f)))
    {
        output.push_str(&format!(
            "{what} {}: {}\n",
            failure.step,
            failure.output.trim()
        ));
    }
    Outcome::Failed { message, output }
}
