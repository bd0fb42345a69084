//! php-fpm: the global settings of each version's master, and one pool per
//! web app.

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::{App, Cluster, PhpVersion, WebPool};
use crate::layout::{self, AppPaths, ConfigFile};

/// What `fpm-global.conf.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FpmGlobal {
    /// The cluster's name.
    pub cluster: String,
    /// `request.duration`, in seconds: how long a reload waits for the
    /// requests in flight (process_control_timeout).
    pub duration: u32,
    /// The socket of reconciler's own status pool, which reads OPcache.
    pub status_socket: String,
    /// The script that pool runs (root's, outside every app's home).
    pub status_script: String,
}

impl Context for FpmGlobal {
    const TEMPLATE: &'static str = "fpm-global.conf.hbs";
    const FILE: &'static str = "`/etc/php/<version>/fpm/pool.d/_reconciler-global.conf`: \
         php-fpm's global settings and reconciler's status pool, on web servers.";
}

impl FpmGlobal {
    /// The global php-fpm settings of `version` in `cluster`.
    pub fn new(cluster: &Cluster, version: &PhpVersion) -> Self {
        Self {
            cluster: cluster.name.to_string(),
            duration: cluster.request.duration,
            status_socket: layout::fpm_status_socket(version),
            status_script: ConfigFile::OpcacheStatus.path(),
        }
    }
}

/// What `fpm-pool.conf.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FpmPool {
    /// The app's name, which is also the pool's.
    pub app: String,
    /// The user the pool's workers run as: the app's own.
    pub user: String,
    /// The pool's socket, which nginx passes requests to.
    pub socket: String,
    /// `request.duration`, in seconds: request_terminate_timeout.
    pub duration: u32,
    /// The app's log directory (root's; the app's group reads it).
    pub logs: String,
    /// The app's shared directory (`/home/<app>/shared`).
    pub shared: String,
    /// `web.max_workers`: pm.max_children.
    pub max_workers: u32,
    /// `web.initial_workers`: pm.start_servers.
    pub initial_workers: u32,
    /// `web.min_spare_workers`: pm.min_spare_servers.
    pub min_spare_workers: u32,
    /// `web.max_spare_workers`: pm.max_spare_servers.
    pub max_spare_workers: u32,
}

impl Context for FpmPool {
    const TEMPLATE: &'static str = "fpm-pool.conf.hbs";
    const FILE: &'static str = "`/etc/php/<version>/fpm/pool.d/<app>.conf`: \
         the php-fpm pool of an app, on its web servers.";
}

impl FpmPool {
    /// The pool of `app` in `cluster`, sized by `pool`.
    pub fn new(cluster: &Cluster, app: &App, pool: &WebPool) -> Self {
        let paths = AppPaths::new(&app.name);
        Self {
            app: app.name.to_string(),
            user: app.name.to_string(),
            socket: layout::fpm_socket(&app.name, &app.php),
            duration: cluster.request.duration,
            logs: paths.logs,
            shared: paths.shared,
            max_workers: pool.max_workers,
            initial_workers: pool.initial_workers,
            min_spare_workers: pool.min_spare_workers,
            max_spare_workers: pool.max_spare_workers,
        }
    }
}
