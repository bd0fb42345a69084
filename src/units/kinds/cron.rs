//! cron: the Laravel scheduler of an app, on the servers that run it.

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::App;
use crate::layout::{self, AppPaths};

/// What `cron.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Cron {
    /// The app's name.
    pub app: String,
    /// The user the scheduler runs as: the app's own.
    pub user: String,
    /// The app's home.
    pub home: String,
    /// The link to the live release, where `artisan` is.
    pub current: String,
    /// The app's shared directory, which holds the scheduler's log.
    pub shared: String,
    /// The app's PHP version (`8.2`).
    pub php: String,
    /// The scheduler's PATH: the app's PHP version first.
    pub path: String,
}

impl Context for Cron {
    const TEMPLATE: &'static str = "cron.hbs";
    const FILE: &'static str = "`/etc/cron.d/<app>`: an app's scheduler \
         (`php artisan schedule:run` every minute), on its scheduler server.";
}

impl Cron {
    /// The scheduler entry of `app`.
    pub fn new(app: &App) -> Self {
        let paths = AppPaths::new(&app.name);
        Self {
            app: app.name.to_string(),
            user: app.name.to_string(),
            home: paths.home,
            current: paths.current,
            shared: paths.shared,
            php: app.php.to_string(),
            path: layout::app_path(&app.php),
        }
    }
}
