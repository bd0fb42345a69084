use super::*;

fn every_kind() -> Vec<ConfigFile> {
    let v = PhpVersion::new("8.2");
    let app = AppName::new("shop");
    vec![
        ConfigFile::PhpIni {
            version: v.clone(),
            sapi: Sapi::Cli,
        },
        ConfigFile::PhpIni {
            version: v.clone(),
            sapi: Sapi::Fpm,
        },
        ConfigFile::FpmGlobal { version: v.clone() },
        ConfigFile::FpmPool {
            version: v.clone(),
            app: app.clone(),
        },
        ConfigFile::Vhost { app: app.clone() },
        ConfigFile::Supervisor { app: app.clone() },
        ConfigFile::Cron { app: app.clone() },
        ConfigFile::Logrotate { app },
        ConfigFile::OpcacheStatus,
        ConfigFile::OpcacheWarm,
        ConfigFile::PhpShim { version: v },
    ]
}

#[test]
fn every_config_file_round_trips_through_its_path() {
    for file in every_kind() {
        assert_eq!(
            ConfigFile::parse(&file.path()),
            Some(file.clone()),
            "{file}"
        );
    }
}

/// The lines of `paths` that `grep -xE CONFIG_PATHS` keeps.
fn kept_by_the_scripts(paths: &[String]) -> Vec<String> {
    let mut call = vec!["keep"];
    call.extend(paths.iter().map(String::as_str));
    let script = crate::remote::Script::new().build(
        "keep() { printf '%s\\n' \"$@\" | grep -xE -- \"$CONFIG_PATHS\" | grep -vF -- .. >&5; }",
        &call,
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .output()
        .expect("bash");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_config_path_is_kept_by_the_scripts() {
    let paths: Vec<String> = every_kind().iter().map(ConfigFile::path).collect();
    assert_eq!(kept_by_the_scripts(&paths), paths);
}

#[test]
fn the_scripts_drop_paths_outside_config_places() {
    let paths = [
        "/root/secret.txt",
        "/etc/nginx/nginx.conf",
        "/etc/nginx/sites-enabled/../../shadow.conf",
        "/etc/nginx/sites-enabled/a b.conf",
        "/etc/php/8.2/fpm/pool.d/sub/shop.conf",
        "/etc/php/8.2/fpm/pool.d/.conf",
        "/etc/cron.d/",
        "/etc/cron.d/x/y",
        "/etc/supervisor/conf.d/a.conf/x",
        "/etc/cron.dX/shop",
        "/etc/logrotate.d/nginx",
        "/etc/logrotate.d/reconciler-",
        "/etc/logrotate.d/reconciler-../../shadow",
        "",
    ]
    .map(str::to_owned);
    assert_eq!(kept_by_the_scripts(&paths), Vec::<String>::new());
}

#[test]
fn paths_reconciler_never_writes_are_not_config_files() {
    for path in [
        "/root/secret.txt",
        "/etc/nginx/nginx.conf",
        "/etc/nginx/sites-enabled/default",
        "/etc/nginx/sites-enabled/../../shadow.conf",
        "/etc/php/8.2/fpm/pool.d/www.conf.bak",
        "/etc/php/8.2/fpm/pool.d/Shop.conf",
        "/etc/php/../fpm/pool.d/shop.conf",
        "/etc/php/8.2/fpm/pool.d/sub/shop.conf",
        "/etc/php/8.2/cli/conf.d/10-opcache.ini",
        "/etc/cron.d/e2scrub_all",
        "/etc/logrotate.d/nginx",
        "/etc/logrotate.d/php8.2-fpm",
        "/etc/logrotate.d/reconciler-",
        "/etc/logrotate.d/reconciler-Shop",
        "/etc/logrotate.d/reconciler-shop/x",
        "/etc/cron.d/",
        "/etc/supervisor/conf.d/a.conf/x",
        "",
    ] {
        assert_eq!(ConfigFile::parse(path), None, "{path}");
    }
}

#[test]
fn app_paths_and_their_inverse() {
    let paths = AppPaths::new(&AppName::new("shop"));
    assert_eq!(paths.home, "/home/shop");
    assert_eq!(paths.current, "/home/shop/current");
    assert_eq!(paths.logs, "/var/log/reconciler/shop");
    assert_eq!(
        AppPaths::app_of_current(&paths.current),
        Some(AppName::new("shop"))
    );
    assert_eq!(AppPaths::app_of_current("/home/a/b/current"), None);
    assert_eq!(AppPaths::app_of_current("/home/current"), None);
}

#[test]
fn the_shell_header_is_valid_bash() {
    let script =
        crate::remote::Script::new().build("show() { record state \"$STATE\"; }", &["show"]);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash");
    let records = crate::remote::protocol::parse(&out.stdout).expect("records");
    assert_eq!(records[0].text(0), STATE_DIR);
}
