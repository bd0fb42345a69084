//! nginx: one vhost per web app.

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::{App, Cluster};
use crate::layout::{self, AppPaths};

/// What `nginx-vhost.conf.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Vhost {
    /// The app's name.
    pub app: String,
    /// The app's home (`/home/<app>`), the limit of the links nginx
    /// follows (`disable_symlinks ... from=`).
    pub home: String,
    /// The link to the live release (`/home/<app>/current`); the document
    /// root is its `public/`, resolved per request (`$realpath_root`).
    pub current: String,
    /// The app's php-fpm socket.
    pub socket: String,
    /// `domains`: the server names, validated host names.
    pub domains: Vec<String>,
    /// The app's log directory, for access and error logs.
    pub logs: String,
    /// `request.payload`: client_max_body_size, in MB.
    pub payload: u32,
    /// `request.duration`: fastcgi_read_timeout, in seconds.
    pub duration: u32,
}

impl Context for Vhost {
    const TEMPLATE: &'static str = "nginx-vhost.conf.hbs";
    const FILE: &'static str = "`/etc/nginx/sites-enabled/<app>.conf`: \
         the nginx vhost of an app, on its web servers.";
}

impl Vhost {
    /// The vhost of `app` in `cluster`.
    pub fn new(cluster: &Cluster, app: &App) -> Self {
        let paths = AppPaths::new(&app.name);
        Self {
            app: app.name.to_string(),
            home: paths.home,
            current: paths.current,
            socket: layout::fpm_socket(&app.name, &app.php),
            domains: app.domains.clone(),
            logs: paths.logs,
            payload: cluster.request.payload,
            duration: cluster.request.duration,
        }
    }
}
