//! logrotate: the rotation of the log files reconciler has nginx, php-fpm,
//! PHP and cron write for an app (supervisor rotates the workers' own
//! logs).

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::{App, AppServer};
use crate::layout::{self, AppPaths};

/// Rotated files kept of each log: one a day, two weeks.
const KEEP: u32 = 14;
/// A log larger than this (MB) is rotated at logrotate's next run, before
/// its day is over: sooner only where logrotate runs more often than daily
/// (Debian runs it once a day).
const MAX_SIZE: u32 = 100;

/// What `logrotate.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Logrotate {
    /// The app's name.
    pub app: String,
    /// The app's user: logrotate acts as it (`su`) in the app's own
    /// directory, so that root never follows a link the app made there.
    pub user: String,
    /// The app's log directory (root's): nginx's error and access logs and
    /// php-fpm's slow log, which root's daemons open.
    pub logs: String,
    /// The app's own logs directory (`shared/storage/logs`): PHP's errors
    /// and the scheduler's output, written as the app.
    pub app_logs: String,
    /// Whether this server serves the app: nginx's error and access logs,
    /// php-fpm's slow log and PHP's errors.
    pub web: bool,
    /// Whether this server runs the app's scheduler: its log.
    pub scheduler: bool,
    /// The pid file of the php-fpm master of the app's PHP version, which
    /// reopens its logs on USR1.
    pub fpm_pid: String,
    /// Rotated files kept of each log (one a day).
    pub keep: u32,
    /// Size in MB above which a log is rotated before its day is over, by a
    /// logrotate that runs more often than daily.
    pub max_size: u32,
}

impl Context for Logrotate {
    const TEMPLATE: &'static str = "logrotate.hbs";
    const FILE: &'static str = "`/etc/logrotate.d/reconciler-<app>`: the rotation of an \
         app's nginx error and access logs, php-fpm slow log, PHP error log and scheduler \
         log, on the servers that write them.";
}

impl Logrotate {
    /// The rotation of the logs `app`'s `role` writes on one server;
    /// `None` when it writes none that supervisor does not rotate itself
    /// (a server of workers only).
    pub fn new(app: &App, role: &AppServer) -> Option<Self> {
        let web = role.web.is_some();
        if !web && !role.scheduler {
            return None;
        }
        let paths = AppPaths::new(&app.name);
        Some(Self {
            app: app.name.to_string(),
            user: app.name.to_string(),
            logs: paths.logs,
            app_logs: format!("{}/storage/logs", paths.shared),
            web,
            scheduler: role.scheduler,
            fpm_pid: layout::fpm_pid(&app.php),
            keep: KEEP,
            max_size: MAX_SIZE,
        })
    }
}
