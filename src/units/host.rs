//! What one server should have: its cluster's PHP, reconciler's own files,
//! and each app's user, directories and units, each unit kind rendered by
//! its renderer in `kinds`.

use std::collections::BTreeSet;

use super::kinds::{
    Context, cron::Cron, fpm::FpmGlobal, fpm::FpmPool, logrotate::Logrotate, nginx::Vhost,
    php_ini::PhpIni, supervisor::Supervisor,
};
use super::{
    AppUser, Directory, GuessedShared, HostUnits, ManagedFile, Needs, OPCACHE_STATUS_SCRIPT,
    OPCACHE_WARM_SCRIPT, TemplateError, Templates, WebCheck,
};
use crate::definitions::{
    App, AppServer, Cluster, Definitions, PhpVersion, ServerName, SessionHandler,
};
use crate::layout::{self, AppPaths, ConfigFile, Sapi};

/// A render error and what was being rendered (`for app `shop``).
pub type RenderFailure = (TemplateError, String);

/// Renders what `server` of `cluster` should have.
///
/// # Errors
/// The first template that does not render, with what it was rendering
/// (`for cluster `prod``, `for app `shop``).
pub fn render(
    definitions: &Definitions,
    cluster: &Cluster,
    server: &ServerName,
    templates: &Templates,
) -> Result<HostUnits, RenderFailure> {
    let mut units = HostUnits::default();
    let is_web = cluster
        .servers
        .iter()
        .any(|s| &s.name == server && s.web_server);
    units.php_versions = cluster.php.iter().cloned().collect();
    for version in &cluster.php {
        php(&mut units, cluster, version, is_web, templates)
            .map_err(|e| (e, format!("for cluster `{}`", cluster.name)))?;
    }
    own_files(&mut units, cluster, is_web);

    let mut apps: Vec<(&App, &AppServer)> = definitions
        .apps
        .iter()
        .filter(|app| app.cluster == cluster.name)
        .filter_map(|app| {
            app.servers
                .iter()
                .find(|r| &r.name == server)
                .map(|r| (app, r))
        })
        .collect();
    apps.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    if !apps.is_empty() {
        units.directories.push(root_dir(layout::LOG_ROOT.into()));
    }
    for (app, role) in &apps {
        home(&mut units, app, role);
        app_units(&mut units, cluster, app, role, templates)
            .map_err(|e| (e, format!("for app `{}`", app.name)))?;
    }
    let composer = apps.iter().any(|(app, _)| app.composer.is_some());
    let logrotate = units.files.iter().any(|f| {
        matches!(
            ConfigFile::parse(&f.path),
            Some(ConfigFile::Logrotate { .. })
        )
    });
    units.packages = packages(cluster, units.needs, composer, logrotate);
    Ok(units)
}

/// A directory of root's, `0755`.
fn root_dir(path: String) -> Directory {
    Directory {
        path,
        owner: "root".into(),
        group: "root".into(),
        mode: 0o755,
        inside_home_of: None,
    }
}

/// One PHP version: php.ini for the CLI, and on web servers php-fpm's
/// php.ini and global settings.
fn php(
    units: &mut HostUnits,
    cluster: &Cluster,
    version: &PhpVersion,
    is_web: bool,
    templates: &Templates,
) -> Result<(), TemplateError> {
    let ini = |sapi| ConfigFile::PhpIni {
        version: version.clone(),
        sapi,
    };
    let cli = PhpIni::new(cluster, false).render(templates)?;
    units.files.push(ManagedFile::root(ini(Sapi::Cli), cli));
    if is_web {
        let fpm = PhpIni::new(cluster, true).render(templates)?;
        units.files.push(ManagedFile::root(ini(Sapi::Fpm), fpm));
        let global = FpmGlobal::new(cluster, version).render(templates)?;
        let file = ConfigFile::FpmGlobal {
            version: version.clone(),
        };
        units.files.push(ManagedFile::root(file, global));
        units.needs.php_fpm = true;
        units.needs.nginx = true;
    }
    Ok(())
}

/// reconciler's own directory, the `php` of each version (what runs for an
/// app finds its own PHP version first in its PATH), and on web servers
/// the OPcache status script.
fn own_files(units: &mut HostUnits, cluster: &Cluster, is_web: bool) {
    units.directories.push(root_dir(layout::LIB_DIR.into()));
    units.directories.push(root_dir(layout::PHP_SHIMS.into()));
    for version in &cluster.php {
        units.directories.push(root_dir(layout::php_dir(version)));
        let shim = format!(
            "#!/bin/sh\n# Managed by reconciler: PHP {version} for apps that run `php`.\nexec /usr/bin/php{version} \"$@\"\n"
        );
        let file = ConfigFile::PhpShim {
            version: version.clone(),
        };
        units.files.push(ManagedFile {
            mode: 0o755,
            ..ManagedFile::root(file, shim)
        });
    }
    if is_web {
        units.files.push(ManagedFile::root(
            ConfigFile::OpcacheStatus,
            OPCACHE_STATUS_SCRIPT.into(),
        ));
        units.files.push(ManagedFile::root(
            ConfigFile::OpcacheWarm,
            OPCACHE_WARM_SCRIPT.into(),
        ));
    }
}

/// An app's user, its home and the directories in it, and its log
/// directory.
fn home(units: &mut HostUnits, app: &App, role: &AppServer) {
    let name = &app.name;
    let paths = AppPaths::new(name);
    let owned = |path: String, mode: u32, inside: bool| Directory {
        path,
        owner: name.to_string(),
        group: name.to_string(),
        mode,
        inside_home_of: inside.then(|| name.clone()),
    };
    units.users.push(AppUser {
        name: name.clone(),
        home: paths.home.clone(),
        web: role.web.is_some(),
        adopt: app.adopt_user,
    });
    units.guessed_shared.extend(
        app.shared
            .iter()
            .filter(|shared| shared.stated.is_none())
            .map(|shared| GuessedShared {
                app: name.clone(),
                path: shared.path.clone(),
                kind: shared.kind(),
            }),
    );
    units.directories.extend([
        owned(paths.home.clone(), 0o750, false),
        owned(paths.releases.clone(), 0o755, true),
        owned(paths.shared.clone(), 0o755, true),
    ]);
    if role.scheduler || role.web.is_some() {
        // Laravel's own logs, PHP's errors and the scheduler's (cron runs
        // it as the app).
        units.directories.extend([
            owned(format!("{}/storage", paths.shared), 0o755, true),
            owned(format!("{}/storage/logs", paths.shared), 0o755, true),
        ]);
    }
    // Logs that root daemons open: root's directory, the app's group reads.
    units.directories.push(Directory {
        path: paths.logs.clone(),
        owner: "root".into(),
        group: name.to_string(),
        mode: 0o750,
        inside_home_of: None,
    });
}

/// The units of an app's role on this server: php-fpm pool and vhost for
/// web, supervisor programs for workers, cron for the scheduler.
fn app_units(
    units: &mut HostUnits,
    cluster: &Cluster,
    app: &App,
    role: &AppServer,
    templates: &Templates,
) -> Result<(), TemplateError> {
    let name = &app.name;
    if let Some(pool) = &role.web {
        let file = ConfigFile::FpmPool {
            version: app.php.clone(),
            app: name.clone(),
        };
        let content = FpmPool::new(cluster, app, pool).render(templates)?;
        units.files.push(ManagedFile::root(file, content));
        let file = ConfigFile::Vhost { app: name.clone() };
        let content = Vhost::new(cluster, app).render(templates)?;
        units.files.push(ManagedFile::root(file, content));
        units.needs.nginx = true;
        units.needs.php_fpm = true;
        if let Some(domain) = app.domains.first() {
            units.web_checks.push(WebCheck {
                app: name.clone(),
                domain: domain.clone(),
                path: app
                    .health_check
                    .as_ref()
                    .map_or_else(|| "/".to_owned(), |h| h.path.clone()),
            });
        }
    }
    if !role.workers.is_empty() {
        let file = ConfigFile::Supervisor { app: name.clone() };
        let content = Supervisor::new(app, &role.workers).render(templates)?;
        units.files.push(ManagedFile::root(file, content));
        units.needs.supervisor = true;
    }
    if role.scheduler {
        let file = ConfigFile::Cron { app: name.clone() };
        units
            .files
            .push(ManagedFile::root(file, Cron::new(app).render(templates)?));
        units.needs.cron = true;
    }
    if let Some(rotation) = Logrotate::new(app, role) {
        let file = ConfigFile::Logrotate { app: name.clone() };
        units
            .files
            .push(ManagedFile::root(file, rotation.render(templates)?));
    }
    Ok(())
}

/// The Debian packages a server with `needs` in `cluster` must have: each
/// PHP version's CLI (and FPM on web servers) with the cluster's extensions
/// and what its session store needs, nginx, supervisor, cron and composer
/// where they are used, logrotate where reconciler has rules for it, and
/// the cluster's own `packages`.
fn packages(cluster: &Cluster, needs: Needs, composer: bool, logrotate: bool) -> BTreeSet<String> {
    let mut packages: BTreeSet<String> = cluster.packages.iter().cloned().collect();
    let session_extension = match cluster.sessions.handler {
        SessionHandler::Files => None,
        SessionHandler::Redis => Some("redis"),
        SessionHandler::Memcached => Some("memcached"),
    };
    for v in &cluster.php {
        packages.insert(format!("php{v}-cli"));
        if needs.php_fpm {
            packages.insert(format!("php{v}-fpm"));
        }
        for ext in cluster
            .extensions
            .iter()
            .map(String::as_str)
            .chain(session_extension)
        {
            packages.insert(format!("php{v}-{ext}"));
        }
    }
    for (needed, package) in [
        (needs.nginx, "nginx"),
        (needs.supervisor, "supervisor"),
        (needs.cron, "cron"),
        (composer, "composer"),
        (logrotate, "logrotate"),
    ] {
        if needed {
            packages.insert(package.to_owned());
        }
    }
    packages
}
