use std::path::Path;

use super::*;
use crate::definitions::Definitions;

fn fleet() -> Definitions {
    static FLEET: std::sync::OnceLock<Definitions> = std::sync::OnceLock::new();
    FLEET
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
            Definitions::load(&dir).expect("the fleet example is valid")
        })
        .clone()
}

fn units(definitions: &Definitions, server: &str) -> HostUnits {
    static TEMPLATES: std::sync::OnceLock<Templates> = std::sync::OnceLock::new();
    let templates = TEMPLATES.get_or_init(Templates::embedded);
    let cluster = &definitions.clusters[0];
    render(definitions, cluster, &ServerName::new(server), templates).expect("render")
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
        let mode = if f.path.ends_with("/php") {
            0o755
        } else {
            0o644
        };
        assert_eq!(
            (f.owner.as_str(), f.group.as_str(), f.mode),
            ("root", "root", mode),
            "{}",
            f.path
        );
    }
}

#[test]
fn every_server_has_a_php_of_each_cluster_version_for_its_apps() {
    for server in ["web-1", "jobs-1"] {
        let units = units(&fleet(), server);
        let shim = units
            .files
            .iter()
            .find(|f| f.path == "/usr/local/lib/reconciler/php/8.2/php")
            .expect("the shim of PHP 8.2");
        assert_eq!(shim.mode, 0o755);
        assert!(shim.content.starts_with("#!/bin/sh\n"));
        assert!(shim.content.ends_with("exec /usr/bin/php8.2 \"$@\"\n"));
        let supervisor = units
            .files
            .iter()
            .find(|f| f.path.starts_with("/etc/supervisor/conf.d/"));
        if let Some(supervisor) = supervisor {
            assert!(
                supervisor
                    .content
                    .contains("PATH=\"/usr/local/lib/reconciler/php/8.2:/usr/local/sbin:")
            );
        }
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
            "/usr/local/lib/reconciler/php/8.2/php",
            "/etc/supervisor/conf.d/billing.conf",
            "/etc/cron.d/billing",
            "/etc/logrotate.d/reconciler-billing",
            "/etc/supervisor/conf.d/shop.conf",
            "/etc/cron.d/shop",
            "/etc/logrotate.d/reconciler-shop",
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
fn fpm_gives_each_pool_only_its_own_cached_scripts() {
    let units = units(&fleet(), "web-1");
    let fpm = &file(&units, "/etc/php/8.2/fpm/conf.d/99-reconciler.ini").content;
    let directives = parse_back::php_ini(fpm).expect("parses");
    assert_eq!(directives["opcache.validate_permission"], "1");
    assert_eq!(
        directives["opcache.restrict_api"],
        "/usr/local/lib/reconciler/"
    );
    // The CLI has a cache of its own in each process.
    let cli = &file(&units, "/etc/php/8.2/cli/conf.d/99-reconciler.ini").content;
    assert!(!cli.contains("opcache.restrict_api"), "{cli}");
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
    shop.servers[1].workers[0].command = "php artisan it's 100% $(reboot) ; echo #x".into();
    let units = units(&defs, "jobs-1");
    let conf = &file(&units, "/etc/supervisor/conf.d/shop.conf").content;
    assert!(
        conf.contains(
            "command=/bin/sh -c 'php artisan it'\"'\"'s 100%% $(reboot) '';'' echo ''#''x'\n"
        ),
        "{conf}"
    );
}

fn with_override(name: &str, text: &str) -> Definitions {
    let mut defs = fleet();
    defs.templates.insert(
        name.into(),
        crate::definitions::TemplateOverride {
            file: format!("templates/{name}").into(),
            text: text.into(),
        },
    );
    defs
}

#[test]
fn a_template_override_replaces_the_embedded_one() {
    let defs = with_override("cron.hbs", "# custom {{app}}\n");
    let desired = Desired::render(&defs).expect("renders");
    let jobs = desired.host(&ServerName::new("jobs-1")).expect("jobs-1");
    assert_eq!(
        file(&jobs.units, "/etc/cron.d/shop").content,
        "# custom shop\n"
    );
}

#[test]
fn an_override_that_fails_to_render_names_its_file_line_and_app() {
    let defs = with_override("cron.hbs", "# custom\n{{no_such_value}}\n");
    let problems = Desired::render(&defs).expect_err("must not render");
    let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        problems,
        [
            "templates/cron.hbs:2:1: the template does not render for app `blog` on server `web-1`: Failed to access variable in strict mode Some(\"no_such_value\")"
        ]
    );
}

#[test]
fn root_daemons_open_logs_only_in_roots_directories() {
    let units = units(&fleet(), "jobs-1");
    let conf = &file(&units, "/etc/supervisor/conf.d/shop.conf").content;
    for line in conf.lines().filter(|l| l.starts_with("stdout_logfile=")) {
        assert!(
            line.starts_with("stdout_logfile=/var/log/reconciler/shop/"),
            "{line}"
        );
    }
    let web = units_web();
    let vhost = &file(&web, "/etc/nginx/sites-enabled/shop.conf").content;
    assert!(
        vhost.contains("error_log /var/log/reconciler/shop/nginx-error.log;"),
        "{vhost}"
    );
    assert!(
        vhost.contains("disable_symlinks if_not_owner from=/home/shop;"),
        "{vhost}"
    );
    let logs = units
        .directories
        .iter()
        .find(|d| d.path == "/var/log/reconciler/shop")
        .expect("log directory");
    assert_eq!(
        (logs.owner.as_str(), logs.group.as_str(), logs.mode),
        ("root", "shop", 0o750)
    );
    assert_eq!(logs.inside_home_of, None);
}

fn units_web() -> HostUnits {
    units(&fleet(), "web-1")
}

#[test]
fn directories_in_an_app_home_are_the_apps_to_make() {
    let units = units(&fleet(), "jobs-1");
    for dir in &units.directories {
        let inside = dir.path.starts_with("/home/shop/") || dir.path.starts_with("/home/billing/");
        assert_eq!(dir.inside_home_of.is_some(), inside, "{}", dir.path);
    }
}

mod hostile;
mod logs;

#[test]
fn each_server_needs_the_packages_of_its_roles() {
    let web = units(&fleet(), "web-1").packages;
    let jobs = units(&fleet(), "jobs-1").packages;
    for package in ["nginx", "php8.2-fpm", "php8.2-cli", "composer"] {
        assert!(web.contains(package), "web-1 needs {package}: {web:?}");
    }
    for package in ["php8.2-cli", "supervisor", "cron"] {
        assert!(jobs.contains(package), "jobs-1 needs {package}: {jobs:?}");
    }
    assert!(
        !jobs.contains("nginx") && !jobs.contains("php8.2-fpm"),
        "{jobs:?}"
    );
    // The session store's extension goes everywhere PHP runs.
    let store = match fleet().clusters[0].sessions.handler {
        crate::definitions::SessionHandler::Redis => Some("php8.2-redis"),
        crate::definitions::SessionHandler::Memcached => Some("php8.2-memcached"),
        crate::definitions::SessionHandler::Files => None,
    };
    if let Some(store) = store {
        assert!(web.contains(store) && jobs.contains(store));
    }
}
