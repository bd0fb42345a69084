//! The edge where definitions meet servers: connect to each selected
//! server, render its units, gather its facts, plan, and apply.
//!
//! Hosts are independent: each is surveyed and applied in parallel (up to
//! `parallel` at once), and one failing host never stops the others. The
//! transports opened for the survey are kept for apply, so a plan and its
//! apply share one SSH master connection per host.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::stream;
use tracing::Instrument as _;

use crate::apply::{self, HostReport};
use crate::definitions::{AppName, Definitions, Server, ServerName};
use crate::facts::{self, HostFacts};
use crate::plan::{self, HostPlan, Plan, PlanOptions, Scope};
use crate::transport::{self, ConnectOptions, Transport};
use crate::units::{self, HostUnits, TemplateError, Templates};

/// Which servers and apps to work on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub servers: Vec<ServerName>,
    pub apps: Vec<AppName>,
}

/// A selection that names something the definitions do not have.
#[derive(Debug, thiserror::Error)]
pub enum SelectionError {
    #[error("no server `{0}` in the definitions")]
    UnknownServer(ServerName),
    #[error("no app `{0}` in the definitions")]
    UnknownApp(AppName),
    #[error("the selection matches no server")]
    Empty,
    #[error(transparent)]
    Template(#[from] TemplateError),
}

/// One server: what it should have, and what it has (or why that is unknown).
pub struct Host {
    pub server: Server,
    pub units: HostUnits,
    pub facts: Result<HostFacts, HostPlan>,
    transport: Option<Box<dyn Transport>>,
}

/// What a survey of the selected servers found.
pub struct Survey {
    pub hosts: Vec<Host>,
    pub scope: Scope,
    pub elapsed: Duration,
}

/// The servers `selection` names, each with its units; validated before any
/// server is contacted.
pub fn select(
    definitions: &Definitions,
    templates: &Templates,
    selection: &Selection,
) -> Result<(Vec<(Server, HostUnits)>, Scope), SelectionError> {
    for name in &selection.servers {
        if !definitions.servers().any(|(_, s)| &s.name == name) {
            return Err(SelectionError::UnknownServer(name.clone()));
        }
    }
    for name in &selection.apps {
        if definitions.app(name).is_none() {
            return Err(SelectionError::UnknownApp(name.clone()));
        }
    }
    let scope = Scope {
        apps: (!selection.apps.is_empty())
            .then(|| selection.apps.iter().cloned().collect::<BTreeSet<_>>()),
    };
    let mut hosts = Vec::new();
    for (cluster, server) in definitions.servers() {
        if !selection.servers.is_empty() && !selection.servers.contains(&server.name) {
            continue;
        }
        if let Some(apps) = &scope.apps {
            let runs_one = definitions.apps.iter().any(|app| {
                apps.contains(&app.name)
                    && app.cluster == cluster.name
                    && app.servers.iter().any(|r| r.name == server.name)
            });
            if !runs_one {
                continue;
            }
        }
        let all = units::render(definitions, cluster, &server.name, templates)?;
        hosts.push((server.clone(), units::filter(&all, &scope)));
    }
    if hosts.is_empty() {
        return Err(SelectionError::Empty);
    }
    Ok((hosts, scope))
}

/// Connects to every host and gathers its facts, `parallel` hosts at once,
/// calling `progress(done, total)` as each host is surveyed.
pub async fn survey(
    hosts: Vec<(Server, HostUnits)>,
    scope: Scope,
    options: &ConnectOptions,
    parallel: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Survey {
    let started = Instant::now();
    let total = hosts.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let done = &done;
    let mut surveyed: Vec<(usize, Host)> = stream::iter(hosts.into_iter().enumerate())
        .map(|(i, (server, units))| {
            let span = tracing::debug_span!("survey", server = %server.name);
            async move {
                let host = survey_host(server, units, options).await;
                progress(
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
                    total,
                );
                (i, host)
            }
            .instrument(span)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    surveyed.sort_by_key(|(i, _)| *i);
    Survey {
        hosts: surveyed.into_iter().map(|(_, host)| host).collect(),
        scope,
        elapsed: started.elapsed(),
    }
}

async fn survey_host(server: Server, units: HostUnits, options: &ConnectOptions) -> Host {
    let transport = match transport::connect(&server, options).await {
        Ok(transport) => transport,
        Err(error) => {
            let hint = error.hint().map(str::to_owned);
            let failed = HostPlan::failed(server.name.clone(), error.to_string(), hint);
            return Host {
                server,
                units,
                facts: Err(failed),
                transport: None,
            };
        }
    };
    let facts = facts::gather(transport.as_ref(), &units)
        .await
        .map_err(|error| HostPlan::failed(server.name.clone(), crate::error_chain(&error), None));
    Host {
        server,
        units,
        facts,
        transport: Some(transport),
    }
}

/// Plans every surveyed host.
pub fn plan(survey: &Survey, reload_now: bool) -> Plan {
    let options = PlanOptions {
        scope: survey.scope.clone(),
        reload_now,
    };
    let hosts = survey
        .hosts
        .iter()
        .map(|host| match &host.facts {
            Ok(facts) => plan::plan_host(&host.server.name, &host.units, facts, &options),
            Err(failed) => failed.clone(),
        })
        .collect();
    Plan::new(hosts)
}

/// Applies `plan` to the surveyed hosts, `parallel` at once, calling
/// `progress` as each host finishes; reports come back in server order.
pub async fn apply(
    survey: &Survey,
    plan: &Plan,
    parallel: usize,
    progress: &(dyn Fn(&HostReport) + Sync),
) -> Vec<HostReport> {
    let work = survey.hosts.iter().zip(&plan.hosts).enumerate();
    let mut reports: Vec<(usize, HostReport)> = stream::iter(work)
        .map(|(i, (host, host_plan))| async move {
            let report = match (&host.transport, &host.facts) {
                (Some(transport), Ok(facts)) => {
                    apply::apply_host(transport.as_ref(), host_plan, facts).await
                }
                _ => apply::apply_host_failed(host_plan),
            };
            progress(&report);
            (i, report)
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    reports.sort_by_key(|(i, _)| *i);
    reports.into_iter().map(|(_, r)| r).collect()
}
