//! The seam between definitions and servers: reconcile one host.
//!
//! kube-rs style: `reconcile_host` takes one host's desired state, reaches
//! the host, observes it (facts, one round trip), plans (pure) and acts
//! (apply, one round trip), and returns an `Outcome`: what was done, what
//! waits, and when to look again. The CLI and the `watch` daemon both call
//! it; the CLI's `plan` and `apply` use its two halves, `observe` and
//! `act`, so that a person can read the plan before it is applied.
//!
//! Hosts are independent: `survey` and `apply_all` work on many at once,
//! and one failing host never stops the others. Results are matched to
//! hosts by server name, never by position.

mod many;
mod roll;
mod select;

use crate::Hint as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use crate::apply::{self, HostReport, Outcome as ApplyOutcome, ScriptOptions};
use crate::definitions::{DefinitionFiles, Definitions, LoadError, ServerName};
use crate::definitions::{FpmReload, OpcacheHygiene};
use crate::facts::{self, GatherError, HostFacts};
use crate::plan::{self, HostPlan, PlanOptions, Reload, ReloadPolicy, ReloadWhen, Scope};
use crate::transport::{Connector, Transport, TransportError};
use crate::units::{Desired, HostDesired};
use crate::windows::Windows;

pub use many::{Surveyed, apply_all, plan_of, survey};
pub use roll::Roll;
pub use select::{Selection, SelectionError, select};

/// Definitions together with what every server should have.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed and validated definitions repository.
    pub definitions: Definitions,
    /// Every server's rendered units (config files, users, services), from
    /// `definitions`.
    pub desired: Desired,
}

/// Parses and validates definitions files and renders every server's
/// units: a template that fails for any app is an error here, before any
/// server is contacted.
pub fn load(files: &DefinitionFiles) -> Result<Loaded, LoadError> {
    load_checking(files, None)
}

/// `load`, and, with `notify`, every `notify:` target must be one of its
/// names (`validate --notify-urls`).
pub fn load_checking(
    files: &DefinitionFiles,
    notify: Option<&crate::definitions::NotifyNames>,
) -> Result<Loaded, LoadError> {
    let definitions = Definitions::parse_checking(files, notify)?;
    let desired = Desired::render(&definitions).map_err(LoadError::Invalid)?;
    Ok(Loaded {
        definitions,
        desired,
    })
}

/// One host to reconcile: what it should have, within which scope, and the
/// time limits its reloads need.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server, its cluster and the units rendered for it.
    pub desired: HostDesired,
    /// Which apps (or the whole host) this reconcile may touch.
    pub scope: Scope,
    /// Seconds a php-fpm reload may take: the cluster's longest request.
    pub fpm_reload_limit: u64,
    /// Seconds `supervisorctl update` may take: its workers' stop waits.
    pub supervisor_limit: u64,
    /// The cluster's reload windows and their timezone.
    pub windows: Windows,
    /// The timezone the cluster's reload windows are written in.
    pub timezone: chrono_tz::Tz,
    /// When the cluster reloads php-fpm: at once, or in a reload window.
    pub fpm_reload: FpmReload,
    /// The cluster's OPcache hygiene.
    pub hygiene: Option<OpcacheHygiene>,
    /// How many hosts of the cluster reload php-fpm at once.
    pub reload_parallel: u32,
}

impl Target {
    /// The name of the server this target reaches.
    pub fn server(&self) -> &ServerName {
        &self.desired.server.name
    }
}

/// How to reconcile.
#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    /// The time reconciling happens at (reload windows are judged by it).
    pub now: DateTime<Utc>,
    /// Reload php-fpm now instead of in a reload window.
    pub reload_now: bool,
    /// Who reconciles (`user@machine (pid N)`), for the host lock and log.
    pub holder: String,
    /// The definitions commit, when known.
    pub revision: Option<String>,
    /// How long to wait for another apply's host lock.
    pub lock_wait: Duration,
}

impl ReconcileOptions {
    fn plan_options(&self, target: &Target) -> PlanOptions {
        PlanOptions {
            scope: target.scope.clone(),
            reloads: ReloadPolicy {
                reload_now: self.reload_now,
                fpm_reload: target.fpm_reload,
                windows: target.windows.state(self.now),
                timezone: target.timezone,
            },
            hygiene: target.hygiene,
            now: self.now,
        }
    }

    fn script_options(&self, target: &Target) -> ScriptOptions {
        ScriptOptions {
            holder: self.holder.clone(),
            revision: self.revision.clone(),
            lock_wait: self.lock_wait,
            fpm_reload_limit: target.fpm_reload_limit,
            supervisor_limit: target.supervisor_limit,
            web_checks: target.desired.units.web_checks.clone(),
        }
    }
}

/// `user@machine (pid N)`: who this process is, for locks and logs. The
/// user is the one `sudo` was run by, else the login's, else the owner of
/// this process by its uid.
pub fn holder() -> String {
    use nix::unistd::{Uid, User, gethostname};
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok().filter(|u| !u.is_empty()))
        .or_else(|| Some(User::from_uid(Uid::current()).ok()??.name))
        .unwrap_or_else(|| "unknown".into());
    let machine = gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{machine} (pid {})", std::process::id())
}

/// Why a host could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The host could not be reached (SSH, or the local runner).
    #[error(transparent)]
    Connect(TransportError),
    /// The host was reached, but its facts could not be gathered or read.
    #[error("cannot gather facts")]
    Gather(#[source] GatherError),
}

impl HostError {
    /// Whether trying again later may help.
    pub fn is_transient(&self) -> bool {
        match self {
            HostError::Connect(error) | HostError::Gather(GatherError::Transport(error)) => {
                error.is_transient()
            }
            HostError::Gather(_) => false,
        }
    }

    /// This error as a plan for its host.
    pub fn as_plan(&self, server: &ServerName) -> HostPlan {
        HostPlan::failed(
            server.clone(),
            crate::error_chain(self),
            self.hint().map(str::to_owned),
        )
    }
}

/// What a host has and what must change there.
#[derive(Debug, Clone)]
pub struct Observed {
    /// What the host has, gathered in one round trip.
    pub facts: HostFacts,
    /// What must change there, planned from `facts` (pure).
    pub plan: HostPlan,
}

/// Gathers a host's facts and plans it.
pub async fn observe(
    target: &Target,
    transport: &dyn Transport,
    options: &ReconcileOptions,
) -> Result<Observed, HostError> {
    let facts = facts::gather(transport, &target.desired.units)
        .await
        .map_err(HostError::Gather)?;
    let plan = plan::plan_host(
        target.server(),
        &target.desired.units,
        &facts,
        &options.plan_options(target),
    );
    Ok(Observed { facts, plan })
}

/// Applies an observed plan.
pub async fn act(
    target: &Target,
    transport: &dyn Transport,
    observed: &Observed,
    options: &ReconcileOptions,
) -> HostReport {
    apply::apply_host(
        transport,
        &observed.plan,
        &observed.facts,
        &options.script_options(target),
    )
    .await
}

/// When a reconcile applies what it observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Apply everything (a new commit, `--drift correct`).
    Always,
    /// Only reloads that are due and nothing else; changes are drift, left
    /// alone and reported (`--drift warn`).
    OnlyReloads,
}

/// The result of reconciling one host.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The host reconciled.
    pub server: ServerName,
    /// The plan that was acted on (with the host's error, when it failed).
    pub plan: HostPlan,
    /// What applying did; `None` when the host could not be observed or
    /// nothing was applied.
    pub report: Option<HostReport>,
    /// Changes found and left alone (`Act::OnlyReloads`).
    pub drift: usize,
    /// Reloads that wait for a reload window.
    pub pending: Vec<Reload>,
    /// When to look at this host again of its own accord; `None` leaves it
    /// to the caller's schedule (and its error policy, for a failed host).
    pub requeue_after: Option<Duration>,
}

impl Outcome {
    /// Whether the host was observed and whatever was applied succeeded
    /// (nothing applied counts as success).
    pub fn succeeded(&self) -> bool {
        self.plan.error.is_none() && self.report.as_ref().is_none_or(HostReport::succeeded)
    }

    /// The reconcile's result word (`applied`, `unchanged`, `drift`,
    /// `failed`, `invalid`, `locked`, `stale`) and its message, as the
    /// daemon's status, its metrics and an elastic join's cause show them.
    pub fn describe(&self) -> (&'static str, String) {
        let outcome = self;
        if let Some(error) = &outcome.plan.error {
            // The same cause and remedy the commands print.
            let message = match &error.hint {
                Some(hint) => format!("{}; hint: {hint}", error.message),
                None => error.message.clone(),
            };
            return ("failed", message);
        }
        if outcome.drift > 0 {
            return (
                "drift",
                format!(
                    "{} changes found and left alone (--drift warn)",
                    outcome.drift
                ),
            );
        }
        match outcome.report.as_ref().map(|r| &r.outcome) {
            None | Some(ApplyOutcome::Unchanged) => ("unchanged", String::new()),
            Some(ApplyOutcome::Applied { changes, .. }) if outcome.succeeded() => {
                ("applied", crate::definitions::plural(*changes, "change"))
            }
            Some(ApplyOutcome::Applied {
                reload_failures,
                unanswered,
                ..
            }) => (
                "failed",
                reload_failures
                    .iter()
                    .chain(unanswered)
                    .map(|f| format!("{}: {}", f.step, f.output.trim()))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Some(ApplyOutcome::Invalid { failures }) => (
                "invalid",
                failures
                    .iter()
                    .map(|f| {
                        format!(
                            "{} refused the new configuration: {}",
                            f.step,
                            f.output.trim()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Some(ApplyOutcome::Failed { message, .. }) => ("failed", message.clone()),
            Some(ApplyOutcome::Locked { holder }) => {
                ("locked", format!("another apply holds the host: {holder}"))
            }
            Some(ApplyOutcome::Stale { .. }) => (
                "stale",
                "the server changed since the plan; planning again".into(),
            ),
        }
    }
}

/// How soon to retry a host whose lock another apply holds.
const LOCKED_RETRY: Duration = Duration::from_secs(10);

/// Whether applying `plan` reloads php-fpm now.
pub fn reloads_fpm_now(plan: &HostPlan) -> bool {
    plan.error.is_none()
        && plan
            .reloads
            .iter()
            .any(|r| matches!(r.service, plan::Service::PhpFpm { .. }) && r.when == ReloadWhen::Now)
}

/// Reconciles one host: connect, observe, plan, and apply as `act` says.
/// An apply that reloads php-fpm now takes its turn in `roll` (its
/// cluster's rolling reload), holds it until the host has answered over
/// HTTP, and is not made when the roll stopped.
pub async fn reconcile_host(
    target: &Target,
    connector: &dyn Connector,
    options: &ReconcileOptions,
    act_when: Act,
    roll: Option<&Roll>,
) -> Outcome {
    let span = tracing::info_span!("reconcile", server = %target.server());
    async {
        let failed = |error: HostError| Outcome {
            server: target.server().clone(),
            plan: error.as_plan(target.server()),
            report: None,
            drift: 0,
            pending: Vec::new(),
            requeue_after: None,
        };
        let transport = match connector.connect(&target.desired.server).await {
            Ok(transport) => transport,
            Err(error) => return failed(HostError::Connect(error)),
        };
        let mut observed = match observe(target, transport.as_ref(), options).await {
            Ok(observed) => observed,
            Err(error) => return failed(error),
        };
        let pending = observed
            .plan
            .reloads
            .iter()
            .filter(|r| r.when != ReloadWhen::Now)
            .cloned()
            .collect();
        let mut drift = 0;
        if act_when == Act::OnlyReloads {
            // Drift is reported, not corrected: apply only the reloads.
            (observed.plan, drift) = observed.plan.only_reloads();
        }
        let rolled =
            roll.filter(|_| reloads_fpm_now(&observed.plan) && observed.plan.needs_apply());
        let report = if let Some(roll) = rolled {
            match roll.turn(target.server()).await {
                Ok(_turn) => {
                    let report = act(target, transport.as_ref(), &observed, options).await;
                    roll.record_outcome(target.server(), &report);
                    report
                }
                Err(why) => HostReport::new(
                    target.server().clone(),
                    ApplyOutcome::Failed {
                        message: why,
                        output: String::new(),
                    },
                ),
            }
        } else {
            let report = act(target, transport.as_ref(), &observed, options).await;
            // The server that stopped the roll has no php-fpm reload left
            // to make (its change got in, by this apply or by another) and
            // is fine: the roll goes on.
            if let Some(roll) = roll.filter(|_| report.succeeded()) {
                roll.record(target.server(), true);
            }
            report
        };
        let requeue_after = match &report.outcome {
            ApplyOutcome::Locked { .. } => Some(LOCKED_RETRY),
            ApplyOutcome::Stale { .. } => Some(Duration::ZERO),
            _ => None,
        };
        tracing::debug!(outcome = ?report.outcome, drift, "reconciled");
        Outcome {
            server: target.server().clone(),
            plan: observed.plan,
            report: Some(report),
            drift,
            pending,
            requeue_after,
        }
    }
    .instrument(span)
    .await
}

impl crate::Hint for HostError {
    fn hint(&self) -> Option<&str> {
        match self {
            HostError::Connect(error) | HostError::Gather(GatherError::Transport(error)) => {
                error.hint()
            }
            HostError::Gather(_) => None,
        }
    }
}

#[cfg(test)]
mod tests;
