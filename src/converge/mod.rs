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

mod roll;
mod select;

use crate::Hint as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use futures::stream;
use tracing::Instrument as _;

use crate::apply::{self, HostReport, Outcome as ApplyOutcome, ScriptOptions};
use crate::definitions::{DefinitionFiles, Definitions, LoadError, ServerName};
use crate::definitions::{FpmReload, OpcacheHygiene};
use crate::facts::{self, GatherError, HostFacts};
use crate::plan::{self, HostPlan, Plan, PlanOptions, Reload, ReloadPolicy, ReloadWhen, Scope};
use crate::transport::{Connector, Transport, TransportError};
use crate::units::{Desired, HostDesired};
use crate::windows::Windows;

pub use roll::Roll;
pub use select::{Selection, SelectionError, select};

/// Definitions together with what every server should have.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub definitions: Definitions,
    pub desired: Desired,
}

/// Parses and validates definitions files and renders every server's
/// units: a template that fails for any app is an error here, before any
/// server is contacted.
pub fn load(files: &DefinitionFiles) -> Result<Loaded, LoadError> {
    let definitions = Definitions::parse(files)?;
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
    pub desired: HostDesired,
    pub scope: Scope,
    /// Seconds a php-fpm reload may take: the cluster's longest request.
    pub fpm_reload_limit: u64,
    /// Seconds `supervisorctl update` may take: its workers' stop waits.
    pub supervisor_limit: u64,
    /// The cluster's reload windows and their timezone.
    pub windows: Windows,
    pub timezone: chrono_tz::Tz,
    pub fpm_reload: FpmReload,
    /// The cluster's OPcache hygiene.
    pub hygiene: Option<OpcacheHygiene>,
    /// How many hosts of the cluster reload php-fpm at once.
    pub reload_parallel: u32,
}

impl Target {
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
    #[error(transparent)]
    Connect(TransportError),
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
    pub facts: HostFacts,
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
    pub fn succeeded(&self) -> bool {
        self.plan.error.is_none() && self.report.as_ref().is_none_or(HostReport::succeeded)
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

/// One surveyed host: its target, its connection, and what was observed.
pub struct Surveyed {
    pub target: Target,
    pub transport: Option<Arc<dyn Transport>>,
    pub observed: Result<Observed, HostError>,
}

impl Surveyed {
    /// The host's plan, or its error as a plan.
    pub fn plan(&self) -> HostPlan {
        match &self.observed {
            Ok(observed) => observed.plan.clone(),
            Err(error) => error.as_plan(self.target.server()),
        }
    }
}

/// Connects to every target and observes it, `parallel` hosts at once,
/// calling `progress(done, total)` as each host is done; results in the
/// targets' order.
pub async fn survey(
    targets: Vec<Target>,
    connector: &dyn Connector,
    options: &ReconcileOptions,
    parallel: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Vec<Surveyed> {
    let total = targets.len();
    let done = AtomicUsize::new(0);
    let done = &done;
    let mut surveyed: Vec<(usize, Surveyed)> = stream::iter(targets.into_iter().enumerate())
        .map(|(i, target)| {
            let span = tracing::debug_span!("survey", server = %target.server());
            async move {
                let (transport, observed) = match connector.connect(&target.desired.server).await {
                    Ok(transport) => {
                        let observed = observe(&target, transport.as_ref(), options).await;
                        (Some(transport), observed)
                    }
                    Err(error) => (None, Err(HostError::Connect(error))),
                };
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
                (
                    i,
                    Surveyed {
                        target,
                        transport,
                        observed,
                    },
                )
            }
            .instrument(span)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    surveyed.sort_by_key(|(i, _)| *i);
    surveyed.into_iter().map(|(_, s)| s).collect()
}

/// The plan of every surveyed host.
pub fn plan_of(surveyed: &[Surveyed]) -> Plan {
    Plan::new(surveyed.iter().map(Surveyed::plan).collect())
}

/// Applies each surveyed host's own plan, `parallel` at once, calling
/// `progress` as each host finishes; reports in the hosts' order.
///
/// Hosts that reload php-fpm now roll through their cluster (`Roll`):
/// `reload_parallel` at a time in the definitions' order, each answering
/// over HTTP before the next takes its turn; the roll stops at the first
/// host that fails, and the hosts after it are not applied.
pub async fn apply_all(
    surveyed: &[Surveyed],
    options: &ReconcileOptions,
    parallel: usize,
    progress: &(dyn Fn(&HostReport) + Sync),
) -> Vec<HostReport> {
    let mut jobs: Vec<Vec<usize>> = Vec::new();
    let mut rolls: std::collections::BTreeMap<&crate::definitions::ClusterName, Vec<usize>> =
        Default::default();
    for (i, host) in surveyed.iter().enumerate() {
        if surveyed_reloads_fpm_now(host) {
            rolls
                .entry(&host.target.desired.cluster)
                .or_default()
                .push(i);
        } else {
            jobs.push(vec![i]);
        }
    }
    jobs.extend(rolls.into_values());
    let mut reports: Vec<(usize, HostReport)> = stream::iter(jobs)
        .map(|hosts| async move { roll(surveyed, &hosts, options, progress).await })
        .buffer_unordered(parallel.max(1))
        .flat_map(stream::iter)
        .collect()
        .await;
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}

fn surveyed_reloads_fpm_now(host: &Surveyed) -> bool {
    host.observed
        .as_ref()
        .is_ok_and(|o| reloads_fpm_now(&o.plan))
}

/// Applies `hosts` (one host, or one cluster's roll) in order, taking
/// turns in the cluster's `Roll`.
async fn roll(
    surveyed: &[Surveyed],
    hosts: &[usize],
    options: &ReconcileOptions,
    progress: &(dyn Fn(&HostReport) + Sync),
) -> Vec<(usize, HostReport)> {
    let Some(&first) = hosts.first() else {
        return Vec::new();
    };
    let target = &surveyed[first].target;
    let cluster_roll = Roll::new(target.desired.cluster.clone(), target.reload_parallel);
    let rolled = hosts.len() > 1;
    stream::iter(hosts.iter().copied())
        .map(|i| {
            let cluster_roll = &cluster_roll;
            async move {
                let host = &surveyed[i];
                let report = if rolled {
                    match cluster_roll.turn(host.target.server()).await {
                        Ok(_turn) => {
                            let report = apply_one(host, options).await;
                            cluster_roll.record_outcome(host.target.server(), &report);
                            report
                        }
                        Err(why) => HostReport::new(
                            host.target.server().clone(),
                            ApplyOutcome::Failed {
                                message: why,
                                output: String::new(),
                            },
                        ),
                    }
                } else {
                    apply_one(host, options).await
                };
                progress(&report);
                (i, report)
            }
        })
        .buffered(cluster_roll.parallel())
        .collect()
        .await
}

async fn apply_one(host: &Surveyed, options: &ReconcileOptions) -> HostReport {
    match (&host.transport, &host.observed) {
        (Some(transport), Ok(observed)) => {
            act(&host.target, transport.as_ref(), observed, options).await
        }
        (_, Err(error)) => HostReport::new(
            host.target.server().clone(),
            ApplyOutcome::Failed {
                message: crate::error_chain(error),
                output: String::new(),
            },
        ),
        (None, Ok(_)) => HostReport::new(
            host.target.server().clone(),
            ApplyOutcome::Failed {
                message: "not connected".into(),
                output: String::new(),
            },
        ),
    }
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
