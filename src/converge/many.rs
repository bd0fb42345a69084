//! Many hosts at once: `survey` observes them, `apply_all` applies their
//! plans. One failing host never stops the others, and results are matched
//! to hosts by their index in the input, never by the order they finish in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt as _;
use futures::stream;
use tracing::Instrument as _;

use super::{HostError, Observed, ReconcileOptions, Roll, Target, act, observe, reloads_fpm_now};
use crate::apply::{HostReport, Outcome as ApplyOutcome};
use crate::plan::{HostPlan, Plan};
use crate::transport::{Connector, Transport};

/// One surveyed host: its target, its connection, and what was observed.
pub struct Surveyed {
    /// The host as the definitions describe it.
    pub target: Target,
    /// The open connection to it; `None` when connecting failed (the error
    /// is in `observed`).
    pub transport: Option<Arc<dyn Transport>>,
    /// Its facts and plan, or why they could not be had.
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
