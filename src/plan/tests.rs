use std::path::Path;

use super::*;
use crate::definitions::{AppName, Definitions, PhpVersion};
use crate::facts::{PathFacts, UserFacts};
use crate::units::{self, Templates};

fn fleet() -> Definitions {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    Definitions::load(&dir).expect("the fleet example is valid")
}

fn units_for(definitions: &Definitions, server: &str) -> HostUnits {
    let templates = Templates::embedded().expect("embedded templates parse");
    units::render(
        definitions,
        &definitions.clusters[0],
        &ServerName::new(server),
        &templates,
    )
    .expect("render")
}

fn bare() -> HostFacts {
    let text = include_str!("fixtures/bare-web-server.yaml");
    serde_yaml::from_str(text).expect("fixture parses")
}

/// The facts of a server on which `units` were applied.
fn converged(units: &HostUnits) -> HostFacts {
    let mut facts = bare();
    for user in &units.users {
        let id = 1000 + facts.users.len() as u32;
        facts.users.insert(
            user.name.to_string(),
            UserFacts {
                uid: id,
                gid: id,
                home: user.home.clone(),
            },
        );
        let members = facts.groups.entry(user.name.to_string()).or_default();
        if user.web {
            members.insert(WEB_USER.into());
        }
    }
    for dir in &units.directories {
        facts.paths.insert(
            dir.path.clone(),
            PathFacts {
                kind: PathKind::Directory,
                owner: dir.owner.clone(),
                group: dir.group.clone(),
                mode: dir.mode,
                size: 4096,
                target: None,
                sha256: None,
                content: None,
            },
        );
    }
    for file in &units.files {
        facts.paths.insert(
            file.path.clone(),
            PathFacts {
                kind: PathKind::File,
                owner: file.owner.clone(),
                group: file.group.clone(),
                mode: file.mode,
                size: file.content.len() as u64,
                target: None,
                sha256: Some(file.sha256()),
                content: Some(file.content.clone()),
            },
        );
        facts.manifest.push(file.path.clone());
    }
    facts
}

fn web1() -> ServerName {
    ServerName::new("web-1")
}

fn labels(plan: &HostPlan) -> Vec<(String, ReloadWhen, bool)> {
    plan.reloads
        .iter()
        .map(|r| (r.label.clone(), r.when, r.pending))
        .collect()
}

#[test]
fn a_bare_server_gets_everything_created() {
    let units = units_for(&fleet(), "web-1");
    let plan = plan_host(&web1(), &units, &bare(), &PlanOptions::default());
    assert_eq!(plan.error, None);
    // 3 users; 3 directories per app and 2 more for blog's scheduler logs;
    // 10 files.
    assert_eq!(plan.count(Action::Create), 3 + 11 + 10);
    assert_eq!(
        plan.count(Action::Update),
        3,
        "www-data joins three app groups"
    );
    assert_eq!(plan.count(Action::Remove), 0);
    assert_eq!(
        labels(&plan),
        [
            ("nginx".into(), ReloadWhen::Now, false),
            ("php8.2-fpm".into(), ReloadWhen::Window, false)
        ]
    );
    assert!(plan.has_changes());
    assert!(plan.manifest_stale);
}

#[test]
fn a_converged_server_has_no_changes() {
    let units = units_for(&fleet(), "web-1");
    let plan = plan_host(&web1(), &units, &converged(&units), &PlanOptions::default());
    assert_eq!(plan.changes, []);
    assert_eq!(plan.reloads, []);
    assert!(!plan.has_changes());
    assert!(!plan.manifest_stale);
}

#[test]
fn a_reload_waiting_for_its_window_is_not_a_change() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.pending_reloads.push("php8.2-fpm".into());
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Window, true)]
    );
    assert!(!plan.has_changes());

    let now = PlanOptions {
        reload_now: true,
        ..PlanOptions::default()
    };
    let plan = plan_host(&web1(), &units, &facts, &now);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Now, true)]
    );
    assert!(plan.has_changes());
}

#[test]
fn a_new_pool_size_changes_only_that_pool() {
    let mut defs = fleet();
    let before = units_for(&defs, "web-1");
    let facts = converged(&before);
    let shop = defs
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.servers[0].web.as_mut().expect("web role").max_workers = 20;
    let plan = plan_host(
        &web1(),
        &units_for(&defs, "web-1"),
        &facts,
        &PlanOptions::default(),
    );
    let [
        Change::UpdateFile {
            path,
            diff: Some(diff),
            adopt: false,
            ..
        },
    ] = &plan.changes[..]
    else {
        panic!("{:#?}", plan.changes);
    };
    assert_eq!(path, "/etc/php/8.2/fpm/pool.d/shop.conf");
    insta::assert_snapshot!(diff);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Window, false)]
    );
}

#[test]
fn a_manual_edit_is_drift_to_correct() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    let vhost = facts
        .paths
        .get_mut("/etc/nginx/sites-enabled/blog.conf")
        .expect("vhost");
    vhost.content = Some("# edited by hand\n".into());
    vhost.sha256 = Some("0".repeat(64));
    vhost.mode = 0o600;
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    let [
        Change::UpdateFile {
            from,
            to,
            diff: Some(diff),
            ..
        },
    ] = &plan.changes[..]
    else {
        panic!("{:#?}", plan.changes);
    };
    assert_eq!((from.mode, to.mode), (0o600, 0o644));
    assert!(diff.contains("-# edited by hand\n"), "{diff}");
    assert_eq!(labels(&plan), [("nginx".into(), ReloadWhen::Now, false)]);
}

#[test]
fn ownership_drift_alone_needs_no_reload() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts
        .paths
        .get_mut("/etc/nginx/sites-enabled/blog.conf")
        .expect("vhost")
        .owner = "www-data".into();
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    assert!(
        matches!(&plan.changes[..], [Change::UpdateFile { diff: None, .. }]),
        "{:#?}",
        plan.changes
    );
    assert_eq!(plan.reloads, []);
}

#[test]
fn an_app_that_left_the_definitions_is_pruned() {
    let mut defs = fleet();
    let facts = converged(&units_for(&defs, "web-1"));
    defs.apps.retain(|a| a.name.as_str() != "blog");
    let plan = plan_host(
        &web1(),
        &units_for(&defs, "web-1"),
        &facts,
        &PlanOptions::default(),
    );
    let removed: Vec<&str> = plan
        .changes
        .iter()
        .map(|c| match c {
            Change::RemoveFile { path, .. } => path.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        removed,
        [
            "/etc/cron.d/blog",
            "/etc/nginx/sites-enabled/blog.conf",
            "/etc/php/8.2/fpm/pool.d/blog.conf"
        ]
    );
    assert!(!plan.manifest.iter().any(|p| p.contains("blog")));
    assert_eq!(
        labels(&plan),
        [
            ("nginx".into(), ReloadWhen::Now, false),
            ("php8.2-fpm".into(), ReloadWhen::Window, false)
        ]
    );
}

#[test]
fn files_reconciler_did_not_write_are_never_pruned() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    let mut stranger = facts.paths["/etc/nginx/sites-enabled/blog.conf"].clone();
    stranger.content = Some("server {}\n".into());
    facts
        .paths
        .insert("/etc/nginx/sites-enabled/legacy.conf".into(), stranger);
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    assert_eq!(plan.changes, []);
}

#[test]
fn an_app_filter_plans_and_prunes_only_that_app() {
    let mut defs = fleet();
    let facts = converged(&units_for(&defs, "web-1"));
    defs.apps.retain(|a| a.name.as_str() != "blog");
    for app in &mut defs.apps {
        app.servers[0].web.as_mut().expect("web").max_workers += 1;
    }
    let scope = Scope {
        apps: Some([AppName::new("blog")].into()),
    };
    let options = PlanOptions {
        scope,
        ..PlanOptions::default()
    };
    let units = units::filter(&units_for(&defs, "web-1"), &options.scope);
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(plan.count(Action::Remove), 3);
    assert_eq!(
        plan.changes.len(),
        3,
        "shop and billing pools are out of scope: {:#?}",
        plan.changes
    );
    assert!(plan.manifest.iter().any(|p| p.contains("shop")));
}

#[test]
fn missing_software_fails_the_host_with_a_hint() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = bare();
    facts.tools.remove("nginx");
    facts.php.clear();
    facts.php.insert(PhpVersion::new("8.2"), Default::default());
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    let error = plan.error.expect("an error");
    assert_eq!(error.message, "missing software: php8.2-fpm nginx");
    assert_eq!(
        error.hint.as_deref(),
        Some("install it first, such as `apt-get install php8.2-fpm nginx`")
    );
    assert!(plan.changes.is_empty());
}

#[test]
fn a_directory_where_a_file_belongs_fails_the_host() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.paths.get_mut("/etc/cron.d/blog").expect("cron").kind = PathKind::Directory;
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    assert_eq!(
        plan.error.map(|e| e.message).as_deref(),
        Some("`/etc/cron.d/blog` should be a file but is a directory")
    );
}

fn text(plan: &Plan) -> String {
    let mut out = Vec::new();
    render::text(plan, &mut out).expect("render");
    let text = String::from_utf8(out).expect("utf-8");
    anstream::adapter::strip_str(&text).to_string()
}

/// The plan a reviewer sees after raising one pool's size and dropping an
/// app, with a php-fpm reload left pending by an earlier apply.
fn mixed_plan() -> Plan {
    let mut defs = fleet();
    let web = units_for(&defs, "web-1");
    let jobs = units_for(&defs, "jobs-1");
    let mut web_facts = converged(&web);
    web_facts.pending_reloads.push("php8.2-fpm".into());
    let jobs_facts = converged(&jobs);
    defs.apps.retain(|a| a.name.as_str() != "billing");
    let shop = defs
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.servers[0].web.as_mut().expect("web").max_workers = 20;
    let options = PlanOptions::default();
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
            "`web-2`: connection refused",
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

#[test]
fn an_existing_user_that_is_not_the_apps_fails_the_host() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = bare();
    facts.users.insert(
        "blog".into(),
        UserFacts {
            uid: 120,
            gid: 120,
            home: "/var/lib/blog".into(),
        },
    );
    let plan = plan_host(&web1(), &units, &facts, &PlanOptions::default());
    assert_eq!(
        plan.error.map(|e| e.message).as_deref(),
        Some("user `blog` exists with home `/var/lib/blog`, so it is not this app's user")
    );
}

#[test]
fn json_output_follows_the_published_schema() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../schemas/plan.schema.json")).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let mut plan: serde_json::Value =
        serde_json::from_str(&render::json(&mixed_plan())).expect("plan JSON");
    let errors: Vec<String> = validator
        .iter_errors(&plan)
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors, Vec::<String>::new());

    // The schema does constrain: a reload time it does not know is refused.
    plan["hosts"][0]["reloads"][0]["when"] = "later".into();
    assert!(!validator.is_valid(&plan));
}
