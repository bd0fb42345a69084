//! Carries out a host's plan: stage every change with a backup, validate
//! the services it touches, then reload them, or restore the backups and
//! reload nothing, so a server keeps serving exactly what it served.
//!
//! The whole sequence runs as one script on the server (see `script`);
//! this module builds it, runs it through a `Transport` and reads its
//! report. It decides nothing the plan did not decide.

mod report;
mod script;

use crate::facts::HostFacts;
use crate::plan::HostPlan;
use crate::transport::{Transport, TransportError};

pub use report::{HostReport, Outcome, ParseError};
pub use script::build as script;

/// The report for a host that could not be planned.
pub fn apply_host_failed(plan: &HostPlan) -> HostReport {
    let message = match &plan.error {
        Some(error) => error.message.clone(),
        None => "not reachable".to_owned(),
    };
    HostReport::new(
        plan.server.clone(),
        Outcome::Failed {
            message,
            output: String::new(),
        },
    )
}

/// Applies `plan` on the host behind `transport`.
pub async fn apply_host(
    transport: &dyn Transport,
    plan: &HostPlan,
    facts: &HostFacts,
) -> HostReport {
    let server = plan.server.clone();
    if plan.error.is_some() {
        return apply_host_failed(plan);
    }
    if !plan.needs_apply() {
        return HostReport::new(server, Outcome::Unchanged);
    }
    let outcome = match transport.run(&script::build(plan, facts)).await {
        Ok(output) if output.success() => report::read(&output.stdout, plan),
        Ok(output) => Outcome::Failed {
            message: format!("the apply script failed (exit {:?})", output.status),
            output: output.stderr_text(),
        },
        Err(error) => transport_failure(error),
    };
    HostReport::new(server, outcome)
}

fn transport_failure(error: TransportError) -> Outcome {
    Outcome::Failed {
        message: error.to_string(),
        output: String::new(),
    }
}
