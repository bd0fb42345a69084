//! Services that must run: a stopped service or worker process is drift.

use std::collections::BTreeMap;

use super::*;
use crate::facts::{ProgramState, ServiceState};

fn jobs1() -> ServerName {
    ServerName::new("jobs-1")
}

/// `facts` with every service of the fleet image running but those in
/// `stopped`.
fn with_services(mut facts: HostFacts, stopped: &[&str]) -> HostFacts {
    for service in ["nginx", "php8.2-fpm", "supervisor", "cron"] {
        let state = if stopped.contains(&service) {
            ServiceState::Stopped
        } else {
            ServiceState::Running
        };
        facts.services.insert(service.into(), state);
    }
    facts
}

/// `facts` with a live release of every app.
fn live(mut facts: HostFacts) -> HostFacts {
    for app in ["shop", "billing", "blog"] {
        facts.releases.entry(AppName::new(app)).or_default().current =
            Some(format!("releases/{}", "a".repeat(40)));
    }
    facts
}

fn programs(list: &[(&str, ProgramState)]) -> Option<BTreeMap<String, ProgramState>> {
    Some(
        list.iter()
            .map(|(name, state)| ((*name).to_owned(), *state))
            .collect(),
    )
}

fn starts(plan: &HostPlan) -> Vec<String> {
    plan.changes
        .iter()
        .filter_map(|c| match c {
            Change::StartService { service } => Some(service.clone()),
            Change::StartProgram { program, state } => {
                Some(format!("program {program} {}", state.word()))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn php_fpm_stopped_by_hand_is_a_change_that_starts_it() {
    let units = units_for(&fleet(), "web-1");
    let facts = with_services(converged(&units), &["php8.2-fpm"]);
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(starts(&plan), ["php8.2-fpm"]);
    assert_eq!(plan.changes.len(), 1);
    assert!(plan.has_changes() && plan.needs_apply());
    assert_eq!(plan.count(Action::Start), 1);
    assert_eq!(plan.reloads, [], "a start is not a reload");
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("> start php8.2-fpm (it is stopped)"),
        "{text}"
    );
    assert!(
        text.contains("web-1: 0 to create, 0 to update, 0 to remove, 1 to start"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 1 host to change, 0 unchanged"),
        "{text}"
    );
}

#[test]
fn a_server_with_everything_running_is_unchanged() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = with_services(converged(&units), &[]);
    facts.programs = programs(&[
        ("shop-default:shop-default_00", ProgramState::Running),
        ("shop-reports:shop-reports_00", ProgramState::Starting),
    ]);
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(plan.changes, []);
    assert!(!plan.has_changes());
}

#[test]
fn only_the_services_the_units_need_are_started() {
    // jobs-1 runs workers and schedulers: supervisor and cron, no site.
    let units = units_for(&fleet(), "jobs-1");
    let facts = with_services(converged(&units), &["nginx", "php8.2-fpm", "cron"]);
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(starts(&plan), ["cron"]);

    // web-1 serves sites and runs blog's scheduler: everything but
    // supervisor.
    let units = units_for(&fleet(), "web-1");
    let facts = with_services(
        converged(&units),
        &["nginx", "php8.2-fpm", "supervisor", "cron"],
    );
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(starts(&plan), ["nginx", "php8.2-fpm", "cron"]);
}

#[test]
fn a_service_the_facts_do_not_know_is_left_alone() {
    // Facts without service states (not asked) are not "stopped".
    let units = units_for(&fleet(), "web-1");
    let plan = plan_host(&web1(), &units, &converged(&units), &options());
    assert_eq!(plan.changes, []);
}

#[test]
fn every_worker_process_that_does_not_run_is_started() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = live(with_services(converged(&units), &[]));
    facts.programs = programs(&[
        ("shop-default:shop-default_00", ProgramState::Running),
        ("shop-default:shop-default_01", ProgramState::Fatal),
        ("shop-default:shop-default_02", ProgramState::Backoff),
        ("shop-default:shop-default_03", ProgramState::Stopped),
        ("shop-default:shop-default_04", ProgramState::Starting),
        ("shop-reports:shop-reports_00", ProgramState::Exited),
        (
            "billing-invoices:billing-invoices_00",
            ProgramState::Stopping,
        ),
        // Not a program of an app's on this server: not reconciler's.
        ("mailer:mailer_00", ProgramState::Fatal),
        ("shopping:shopping-x_00", ProgramState::Fatal),
        ("shop-defaults:shop-defaults_00", ProgramState::Fatal),
    ]);
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(
        starts(&plan),
        [
            "program billing-invoices:billing-invoices_00 STOPPING",
            "program shop-default:shop-default_01 FATAL",
            "program shop-default:shop-default_02 BACKOFF",
            "program shop-default:shop-default_03 STOPPED",
            "program shop-reports:shop-reports_00 EXITED",
        ]
    );
    assert!(plan.has_changes());
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("> start program shop-default:shop-default_01 (it is FATAL)"),
        "{text}"
    );

    // `--app shop` starts only shop's.
    let mut scoped = options();
    scoped.scope = Scope {
        apps: Some([AppName::new("shop")].into()),
    };
    let plan = plan_host(&jobs1(), &units, &facts, &scoped);
    assert_eq!(starts(&plan).len(), 4);
    assert!(starts(&plan).iter().all(|s| s.contains(" shop-")));
}

#[test]
fn the_workers_of_an_app_without_a_live_release_wait_for_it() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = with_services(converged(&units), &[]);
    facts
        .releases
        .entry(AppName::new("billing"))
        .or_default()
        .current = Some(format!("releases/{}", "a".repeat(40)));
    facts.programs = programs(&[
        ("shop-default:shop-default_00", ProgramState::Fatal),
        ("billing-invoices:billing-invoices_00", ProgramState::Fatal),
    ]);
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(
        starts(&plan),
        ["program billing-invoices:billing-invoices_00 FATAL"]
    );
    assert!(
        plan.notes
            .iter()
            .any(|n| n.contains("app `shop` has no live release yet")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn a_group_whose_programs_change_is_left_to_its_update() {
    let mut defs = fleet();
    let before = units_for(&defs, "jobs-1");
    let mut facts = live(with_services(converged(&before), &[]));
    facts.programs = programs(&[
        ("shop-default:shop-default_00", ProgramState::Fatal),
        ("billing-invoices:billing-invoices_00", ProgramState::Fatal),
    ]);
    let shop = defs
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.servers[1].workers[0].processes = 2;
    let plan = plan_host(&jobs1(), &units_for(&defs, "jobs-1"), &facts, &options());
    assert_eq!(
        starts(&plan),
        ["program billing-invoices:billing-invoices_00 FATAL"],
        "shop's update restarts its group from the new file"
    );
    assert_eq!(plan.reloads[0].label, "supervisor:shop");
    // Its update may touch each of shop's programs and a group of old named
    // after the app; apply updates those supervisord finds changed.
    assert_eq!(
        plan.reloads[0].groups,
        ["shop", "shop-default", "shop-reports"]
    );
}

#[test]
fn a_stopped_supervisord_is_started_and_its_processes_with_it() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = with_services(converged(&units), &["supervisor"]);
    facts.programs = None;
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(starts(&plan), ["supervisor"]);
}

#[test]
fn drift_warn_reports_stopped_services_and_starts_nothing() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = live(with_services(converged(&units), &["cron"]));
    facts.programs = programs(&[("shop-default:shop-default_00", ProgramState::Fatal)]);
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    let (warned, drift) = plan.only_reloads();
    assert_eq!(drift, 2);
    assert!(warned.changes.is_empty() && !warned.needs_apply());
}

#[test]
fn unread_process_names_are_counted_in_a_note() {
    let units = units_for(&fleet(), "jobs-1");
    let mut facts = with_services(converged(&units), &[]);
    facts.programs = programs(&[]);
    facts.programs_unread = 2;
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    assert_eq!(plan.changes, []);
    assert!(
        plan.notes
            .iter()
            .any(|n| n.starts_with("2 lines of `supervisorctl status`")),
        "{:?}",
        plan.notes
    );
}

/// Long-running PHP (the workers) reads the CLI php.ini when it starts: a
/// change to it restarts the workers of every app on the server with a
/// live release, and the plan says so; nothing else does.
#[test]
fn a_changed_cli_php_ini_restarts_the_workers_that_run() {
    let mut defs = fleet();
    let before = units_for(&defs, "jobs-1");
    let mut facts = with_services(converged(&before), &[]);
    facts
        .releases
        .entry(AppName::new("shop"))
        .or_default()
        .current = Some(format!("releases/{}", "a".repeat(40)));
    defs.clusters[0].php_ini.insert(
        "max_input_vars".into(),
        crate::definitions::values::IniValue::Integer(2000),
    );
    let units = units_for(&defs, "jobs-1");
    let plan = plan_host(&jobs1(), &units, &facts, &options());
    let restarts: Vec<(&str, &[String])> = plan
        .reloads
        .iter()
        .filter(|r| matches!(r.service, Service::Workers { .. }))
        .map(|r| (r.label.as_str(), r.groups.as_slice()))
        .collect();
    // billing has no live release: its workers do not run.
    assert_eq!(
        restarts,
        [(
            "workers:shop",
            &["shop-default".to_owned(), "shop-reports".to_owned()][..]
        )]
    );
    let text = text(&Plan::new(vec![plan.clone()]));
    assert!(
        text.contains(
            "* restart workers shop-default:*, shop-reports:* now (the CLI php.ini changed: \
             running workers keep what they read at start)"
        ),
        "{text}"
    );
    // `--drift warn` leaves the restart with the change it comes from.
    let (warned, _) = plan.only_reloads();
    assert!(warned.reloads.is_empty(), "{:?}", warned.reloads);

    // The same files with no php.ini change: no restart.
    let plan = plan_host(&jobs1(), &before, &facts, &options());
    assert!(plan.reloads.is_empty(), "{:?}", plan.reloads);

    // Unless an apply that staged the php.ini was killed (perhaps before
    // its restart): the next one restarts them.
    facts.journal = Some(crate::facts::Journal {
        staged: vec!["/etc/php/8.2/cli/conf.d/99-reconciler.ini".into()],
        ..Default::default()
    });
    let plan = plan_host(&jobs1(), &before, &facts, &options());
    assert!(
        plan.reloads.iter().any(|r| r.label == "workers:shop"),
        "{:?}",
        plan.reloads
    );
}
