//! Plans rendered as text and JSON.

use super::*;

pub(super) fn text(plan: &Plan) -> String {
    let mut out = Vec::new();
    render::text(plan, &mut out).expect("render");
    let text = String::from_utf8(out).expect("utf-8");
    anstream::adapter::strip_str(&text).to_string()
}

/// The plan a reviewer sees after raising one pool's size and dropping an
/// app, with a php-fpm reload left pending by an earlier apply.
pub(super) fn mixed_plan() -> Plan {
    let mut defs = fleet();
    let web = units_for(&defs, "web-1");
    let jobs = units_for(&defs, "jobs-1");
    let mut web_facts = converged(&web);
    web_facts.pending_reloads.push("php8.2-fpm".into());
    let mut jobs_facts = converged(&jobs);
    jobs_facts
        .services
        .insert("cron".into(), crate::facts::ServiceState::Stopped);
    jobs_facts
        .releases
        .entry(AppName::new("shop"))
        .or_default()
        .current = Some(format!("releases/{}", "a".repeat(40)));
    jobs_facts.programs = Some(
        [(
            "shop-default:shop-default_00".to_owned(),
            crate::facts::ProgramState::Fatal,
        )]
        .into(),
    );
    defs.apps.retain(|a| a.name.as_str() != "billing");
    let shop = defs
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.servers[0].web.as_mut().expect("web").max_workers = 20;
    let options = options();
    Plan::new(vec![
        plan_host(&web1(), &units_for(&defs, "web-1"), &web_facts, &options),
        plan_host(
            &ServerName::new("jobs-1"),
            &units_for(&defs, "jobs-1"),
            &jobs_facts,
            &options,
        ),
        HostPlan::failed(
            ServerName::new("web-2"),
            "connection to `root@203.0.113.12:22` refused",
            None,
        ),
    ])
}

#[test]
fn text_rendering() {
    insta::assert_snapshot!(text(&mixed_plan()));
}

#[test]
fn json_rendering() {
    insta::assert_snapshot!(render::json(&mixed_plan()));
}

#[test]
fn the_same_inputs_render_byte_identical_plans() {
    assert_eq!(text(&mixed_plan()), text(&mixed_plan()));
    assert_eq!(render::json(&mixed_plan()), render::json(&mixed_plan()));
}
