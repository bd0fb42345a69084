use std::path::Path;

use super::*;
use crate::definitions::{AppName, Definitions, PhpVersion};
use crate::facts::{PathFacts, PathKind, UserFacts};
use crate::layout::WEB_USER;
use crate::units::{self, Templates};
use rendering::{mixed_plan, text};

fn fleet() -> Definitions {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    Definitions::load(&dir).expect("the fleet example is valid")
}

fn units_for(definitions: &Definitions, server: &str) -> HostUnits {
    let templates = Templates::embedded();
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
        facts.created_users.insert(user.name.to_string());
        let id = 900 + facts.users.len() as u32;
        facts.users.insert(
            user.name.to_string(),
            UserFacts {
                uid: id,
                gid: id,
                home: user.home.clone(),
                shell: "/usr/sbin/nologin".into(),
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
                mtime: None,
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
                mtime: None,
            },
        );
        facts.manifest.push(file.path.clone());
    }
    facts
}

/// 23:48 in Amsterdam; the cluster's window opens at 03:00 there.
fn options() -> PlanOptions {
    let now = "2026-11-22T22:48:00Z".parse().expect("time");
    PlanOptions {
        reloads: ReloadPolicy {
            windows: crate::windows::WindowState::Closed {
                next: Some("2026-11-23T02:00:00Z".parse().expect("time")),
            },
            timezone: chrono_tz::Europe::Amsterdam,
            ..ReloadPolicy::default()
        },
        now,
        ..PlanOptions::default()
    }
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
    let plan = plan_host(&web1(), &units, &bare(), &options());
    assert_eq!(plan.error, None);
    // 3 users; per app its home, releases/, shared/ and its log directory
    // (under /var/log/reconciler, made too), 2 more per app for its
    // storage/logs (web and scheduler roles), reconciler's own lib
    // directory with the `php` of PHP 8.2 (2 directories and the file); 10
    // files, 3 logrotate rules and the OPcache status and warm scripts.
    assert_eq!(
        plan.count(Action::Create),
        3 + (4 * 3 + 1 + 2 * 3 + 1 + 2) + 16
    );
    assert_eq!(
        plan.count(Action::Update),
        3,
        "www-data joins three app groups"
    );
    assert_eq!(plan.count(Action::Remove), 0);
    // New pools start at once: their apps cannot serve without them.
    assert_eq!(
        labels(&plan),
        [
            ("nginx".into(), ReloadWhen::Now, false),
            ("php8.2-fpm".into(), ReloadWhen::Now, false)
        ]
    );
    assert!(plan.has_changes());
    assert!(plan.manifest_stale);
}

#[test]
fn a_converged_server_has_no_changes() {
    let units = units_for(&fleet(), "web-1");
    let plan = plan_host(&web1(), &units, &converged(&units), &options());
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
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Window, true)]
    );
    assert!(!plan.has_changes());

    let mut now = options();
    now.reloads.reload_now = true;
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
    let plan = plan_host(&web1(), &units_for(&defs, "web-1"), &facts, &options());
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
    let plan = plan_host(&web1(), &units, &facts, &options());
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
    let plan = plan_host(&web1(), &units, &facts, &options());
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
    let plan = plan_host(&web1(), &units_for(&defs, "web-1"), &facts, &options());
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
            "/etc/logrotate.d/reconciler-blog",
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
    let plan = plan_host(&web1(), &units, &facts, &options());
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
    let options = PlanOptions { scope, ..options() };
    let units = units::filter(&units_for(&defs, "web-1"), &options.scope);
    let plan = plan_host(&web1(), &units, &facts, &options);
    // blog's pool, vhost, cron entry and logrotate rules.
    assert_eq!(plan.count(Action::Remove), 4);
    assert_eq!(
        plan.changes.len(),
        4,
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
    let plan = plan_host(&web1(), &units, &facts, &options());
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
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(
        plan.error.map(|e| e.message).as_deref(),
        Some("`/etc/cron.d/blog` should be a file but is a directory")
    );
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
            shell: "/usr/sbin/nologin".into(),
        },
    );
    let plan = plan_host(&web1(), &units, &facts, &options());
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

mod current_links;

mod guessed_shared;

#[test]
fn drift_warn_leaves_changes_and_their_reloads_and_keeps_the_due_ones() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    // Drift (a hand edit of a vhost, which needs an nginx reload), and a
    // php-fpm reload pending for the window that is open now.
    let vhost = facts
        .paths
        .get_mut("/etc/nginx/sites-enabled/blog.conf")
        .expect("vhost");
    vhost.content = Some("# edited by hand\n".into());
    vhost.sha256 = Some("0".repeat(64));
    facts.pending_reloads.push("php8.2-fpm".into());
    let mut options = options();
    let until = "2026-11-23T03:00:00Z".parse().expect("time");
    options.reloads.windows = crate::windows::WindowState::Open { until };
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(plan.changes.len(), 1);
    let (warned, drift) = plan.only_reloads();
    assert_eq!(drift, 1);
    assert!(warned.changes.is_empty() && !warned.manifest_stale);
    assert_eq!(
        labels(&warned),
        [("php8.2-fpm".into(), ReloadWhen::Now, true)],
        "the nginx reload only the drift needed is gone; the due one stays"
    );
    let (same, none) = warned.clone().only_reloads();
    assert_eq!((same.reloads.len(), none), (1, 0));
}

mod opcache;

mod reloads;

mod rendering;

mod services;
