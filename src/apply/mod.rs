//! Carries out a host's plan: stage every change with a backup, validate
//! the services it touches, then reload them, or restore the backups and
//! reload nothing, so a server keeps serving exactly what it served.
//!
//! The logic is one shell script, kept in three files (`prelude.sh`,
//! `steps.sh`, `worker.sh`), run on the server in one round trip; `script`
//! appends the plan to it as data. This module runs it
//! through a `Transport` and reads its report. It decides nothing the plan
//! did not decide, and whatever fails, the report carries the command that
//! failed and its output.

mod report;
mod script;

use crate::facts::HostFacts;
use crate::plan::HostPlan;
use crate::transport::{Transport, TransportError};

pub use report::{ApplyResult, HostReport, Outcome, StepOutput};
pub use script::{ApplyLogEntry, Planned, STEP_LIMIT, ScriptOptions, build as script};

/// Applies `plan` on the host behind `transport`.
pub async fn apply_host(
    transport: &dyn Transport,
    plan: &HostPlan,
    facts: &HostFacts,
    options: &ScriptOptions,
) -> HostReport {
    let server = plan.server.clone();
    if let Some(error) = &plan.error {
        return HostReport::new(
            server,
            Outcome::Failed {
                message: error.message.clone(),
                output: String::new(),
            },
        );
    }
    if !plan.needs_apply() {
        return HostReport::new(server, Outcome::Unchanged);
    }
    let (script, limit) = script::build(plan, facts, options);
    let outcome = match transport.run(&script, limit).await {
        Ok(output) => {
            let outcome = report::read(&output.stdout, plan);
            with_stderr(outcome, &output.stderr_text(), output.status)
        }
        Err(TransportError::ScriptTimeout { after, partial }) => Outcome::Failed {
            message: format!(
                "the server did not answer within {}; the apply goes on there, holding the \
                 host lock, and the next plan shows how it ended",
                crate::humantime(after)
            ),
            output: partial.stderr_text(),
        },
        Err(error) => Outcome::Failed {
            message: error.cause().to_string(),
            output: String::new(),
        },
    };
    HostReport::new(server, outcome)
}

/// A failure keeps what the script wrote to stderr (bash's own errors
/// land there), with its exit status when it was not 0; its message names
/// the server's own error found there (a full disk), as every report of
/// it shows the message.
fn with_stderr(outcome: Outcome, stderr: &str, status: Option<i32>) -> Outcome {
    match outcome {
        Outcome::Failed { message, output } => {
            let mut output = output;
            if !stderr.trim().is_empty() {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(stderr);
            }
            let message = crate::remote::with_system_cause(message, &output);
            let message = match status {
                Some(0) => message,
                Some(code) => format!("{message} (exit status {code})"),
                None => format!("{message} (killed by a signal)"),
            };
            Outcome::Failed { message, output }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests;
