use std::path::Path;

use super::*;
use crate::definitions::Definitions;

fn fleet() -> Definitions {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    Definitions::load(&dir).expect("the fleet example is valid")
}

fn units(definitions: &Definitions, server: &str) -> HostUnits {
    let cluster = &definitions.clusters[0];
    let templates = Templates::embedded().expect("embedded templates parse");
    render(definitions, cluster, &ServerName::new(server), &templates).expect("render")
}

fn file<'a>(units: &'a HostUnits, path: &str) -> &'a ManagedFile {
    units
        .files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| {
            panic!(
                "no {path} in {:#?}",
                units.files.iter().map(|f| &f.path).collect::<Vec<_>>()
            )
        })
}

#[test]
fn a_web_server_gets_ini_global_pools_and_vhosts() {
    let units = units(&fleet(), "web-1");
    let paths: Vec<&str> = units.files.iter().map(|f| f.path.as_str()).collect();
    insta::assert_debug_snapshot!(paths);
    for f in &units.files {
        assert_eq!(
            (f.owner.as_str(), f.group.as_str(), f.mode),
            ("root", "root", 0o644)
        );
    }
}

#[test]
fn a_jobs_server_gets_cli_ini_supervisor_and_cron_only() {
    let units = units(&fleet(), "jobs-1");
    let paths: Vec<&str> = units.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/etc/php/8.2/cli/conf.d/99-reconciler.ini",
            "/etc/supervisor/conf.d/billing.conf",
            "/etc/cron.d/billing",
            "/etc/supervisor/conf.d/shop.conf",
            "/etc/cron.d/shop",
        ]
    );
    assert!(!units.needs.nginx && !units.needs.php_fpm);
    assert!(units.needs.supervisor && units.needs.cron);
    assert!(units.users.iter().all(|u| !u.web));
}

#[test]
fn fpm_pool() {
    let units = units(&fleet(), "web-1");
    insta::assert_snapshot!(file(&units, "/etc/php/8.2/fpm/pool.d/shop.conf").content);
}

#[test]
fn fpm_global_lets_reloads_wait_for_requests_in_flight() {
    let units = units(&fleet(), "web-1");
    let global = &file(&units, "/etc/php/8.2/fpm/pool.d/_reconciler-global.conf").content;
    assert!(global.contains("[global]\n"), "{global}");
    assert!(
        global.contains("\nprocess_control_timeout = 30s\n"),
        "{global}"
    );
}

#[test]
fn nginx_vhost() {
    let units = units(&fleet(), "web-1");
    insta::assert_snapshot!(file(&units, "/etc/nginx/sites-enabled/shop.conf").content);
}

#[test]
fn php_ini_for_fpm() {
    let units = units(&fleet(), "web-1");
    insta::assert_snapshot!(file(&units, "/etc/php/8.2/fpm/conf.d/99-reconciler.ini").content);
}

#[test]
fn php_ini_for_cli_leaves_request_limits_to_fpm() {
    let units = units(&fleet(), "web-1");
    let cli = &file(&units, "/etc/php/8.2/cli/conf.d/99-reconciler.ini").content;
    assert!(!cli.contains("max_execution_time"), "{cli}");
    assert!(!cli.contains("memory_limit"), "{cli}");
    assert!(cli.contains("session.save_handler = redis\n"), "{cli}");
    assert!(cli.contains("opcache.memory_consumption = 256\n"), "{cli}");
}

#[test]
fn supervisor_programs() {
    let units = units(&fleet(), "jobs-1");
    insta::assert_snapshot!(file(&units, "/etc/supervisor/conf.d/shop.conf").content);
}

#[test]
fn scheduler_cron_entry() {
    let units = units(&fleet(), "jobs-1");
    insta::assert_snapshot!(file(&units, "/etc/cron.d/shop").content);
}

#[test]
fn app_users_and_directories() {
    let units = units(&fleet(), "jobs-1");
    let users: Vec<String> = units
        .users
        .iter()
        .map(|u| format!("user {} home {} web {}", u.name, u.home, u.web))
        .collect();
    let dirs: Vec<String> = units
        .directories
        .iter()
        .map(|d| format!("dir {} {}:{} {:o}", d.path, d.owner, d.group, d.mode))
        .collect();
    insta::assert_snapshot!([users, dirs].concat().join("\n"));
}

#[test]
fn a_worker_command_stays_one_shell_word_for_supervisor() {
    let mut defs = fleet();
    let shop = defs
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.servers[1].workers[0].command = "php artisan it's 100% $(reboot)".into();
    let units = units(&defs, "jobs-1");
    let conf = &file(&units, "/etc/supervisor/conf.d/shop.conf").content;
    assert!(
        conf.contains("command=/bin/sh -c 'exec php artisan it'\\''s 100%% $(reboot)'\n"),
        "{conf}"
    );
}

#[test]
fn a_template_override_replaces_the_embedded_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/cron.hbs"), "# custom {{app}}\n").expect("write");
    let templates = Templates::load(dir.path()).expect("load");
    let defs = fleet();
    let units = render(
        &defs,
        &defs.clusters[0],
        &ServerName::new("jobs-1"),
        &templates,
    )
    .expect("render");
    assert_eq!(file(&units, "/etc/cron.d/shop").content, "# custom shop\n");
}

#[test]
fn a_broken_override_names_the_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
    std::fs::write(dir.path().join("templates/nginx-vhost.conf.hbs"), "{{#if}}").expect("write");
    let error = Templates::load(dir.path()).expect_err("must not parse");
    assert_eq!(
        error.to_string(),
        "template `nginx-vhost.conf.hbs` does not parse"
    );
}

#[test]
fn services_are_known_from_paths_alone() {
    assert_eq!(
        Service::for_path("/etc/nginx/sites-enabled/shop.conf"),
        Some(Service::Nginx)
    );
    assert_eq!(
        Service::for_path("/etc/php/8.2/fpm/pool.d/shop.conf"),
        Some(Service::PhpFpm {
            version: PhpVersion::new("8.2")
        })
    );
    assert_eq!(
        Service::for_path("/etc/php/8.2/cli/conf.d/99-reconciler.ini"),
        None
    );
    assert_eq!(
        Service::for_path("/etc/supervisor/conf.d/shop.conf"),
        Some(Service::Supervisor {
            group: "shop".into()
        })
    );
    assert_eq!(Service::for_path("/etc/cron.d/shop"), None);
}

#[test]
fn per_app_files_are_known_from_paths_alone() {
    let shop = Some(AppName::new("shop"));
    assert_eq!(app_of_path("/etc/php/8.2/fpm/pool.d/shop.conf"), shop);
    assert_eq!(app_of_path("/etc/nginx/sites-enabled/shop.conf"), shop);
    assert_eq!(app_of_path("/etc/supervisor/conf.d/shop.conf"), shop);
    assert_eq!(app_of_path("/etc/cron.d/shop"), shop);
    assert_eq!(
        app_of_path("/etc/php/8.2/fpm/pool.d/_reconciler-global.conf"),
        None
    );
    assert_eq!(
        app_of_path("/etc/php/8.2/fpm/conf.d/99-reconciler.ini"),
        None
    );
}

#[test]
fn service_labels_read_back() {
    for service in [
        Service::Nginx,
        Service::PhpFpm {
            version: PhpVersion::new("8.2"),
        },
        Service::Supervisor {
            group: "shop".into(),
        },
    ] {
        assert_eq!(Service::from_label(&service.label()), Some(service));
    }
    assert_eq!(Service::from_label("mysql"), None);
}
