//! php.ini: one for the CLI and one for php-fpm, per PHP version of a
//! cluster.

use schemars::JsonSchema;
use serde::Serialize;

use super::Context;
use crate::definitions::values::IniValue;
use crate::definitions::{Cluster, SessionHandler};
use crate::layout;
use crate::units::escape;

/// What `php.ini.hbs` receives.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PhpIni {
    /// The cluster's name.
    pub cluster: String,
    /// Whether this is php-fpm's php.ini (yes) or the CLI's (no).
    pub fpm: bool,
    /// `request.memory`: memory_limit, in MB.
    pub memory: u32,
    /// `request.duration`: max_execution_time, in seconds.
    pub duration: u32,
    /// `request.payload`: post_max_size and upload_max_filesize, in MB.
    pub payload: u32,
    /// opcache.restrict_api, quoted for php.ini: reconciler's own directory,
    /// so that only its status script may call the OPcache API.
    pub opcache_api: String,
    /// session.save_handler: `files`, `redis` or `memcached`.
    pub session_handler: String,
    /// `sessions.save_path`, quoted for php.ini; nothing for the
    /// handler's default.
    pub session_save_path: Option<String>,
    /// The session handler's own settings (locking, replicas, timeouts),
    /// derived from `sessions` and `request.duration`.
    pub session_settings: Vec<Setting>,
    /// The cluster's `php_ini` settings, strings quoted for php.ini.
    pub php_ini: Vec<Setting>,
}

/// One `key = value` line of php.ini.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Setting {
    /// The directive (validated: letters, digits, `.` and `_`).
    pub key: String,
    /// The value, as php.ini reads it (strings already quoted).
    pub value: String,
}

impl Context for PhpIni {
    const TEMPLATE: &'static str = "php.ini.hbs";
    const FILE: &'static str = "`/etc/php/<version>/{cli,fpm}/conf.d/99-reconciler.ini`: \
         PHP's settings for a cluster, for the CLI and for php-fpm.";
}

impl PhpIni {
    /// The php.ini settings of `cluster`, for php-fpm when `fpm`.
    pub fn new(cluster: &Cluster, fpm: bool) -> Self {
        let sessions = &cluster.sessions;
        Self {
            cluster: cluster.name.to_string(),
            fpm,
            memory: cluster.request.memory,
            duration: cluster.request.duration,
            payload: cluster.request.payload,
            // restrict_api allows the requests whose script (SCRIPT_FILENAME)
            // starts with this: reconciler's directory, and nothing beside it.
            opcache_api: escape::php_ini_string(&format!("{}/", layout::LIB_DIR)),
            session_handler: match sessions.handler {
                SessionHandler::Files => "files",
                SessionHandler::Redis => "redis",
                SessionHandler::Memcached => "memcached",
            }
            .to_owned(),
            session_save_path: sessions.save_path.as_deref().map(escape::php_ini_string),
            session_settings: session_settings(cluster),
            php_ini: cluster
                .php_ini
                .iter()
                .map(|(key, value)| Setting::new(key, ini_value(value)))
                .collect(),
        }
    }
}

impl Setting {
    fn new(key: &str, value: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            value: value.into(),
        }
    }
}

/// The session handler's settings: locks that wait as long as a request
/// may run, and for memcached, consistent hashing and replicas.
fn session_settings(cluster: &Cluster) -> Vec<Setting> {
    let sessions = &cluster.sessions;
    let locking = sessions.locking.unwrap_or(true);
    let flag = |on: bool| if on { "1" } else { "0" };
    let duration = cluster.request.duration;
    let mut settings = Vec::new();
    match sessions.handler {
        SessionHandler::Files => {}
        SessionHandler::Redis => {
            settings.push(Setting::new("redis.session.locking_enabled", flag(locking)));
            if locking {
                // Wait for a session's lock as long as a request may run:
                // 20 ms a try (lock_wait_time is in microseconds).
                settings.push(Setting::new(
                    "redis.session.lock_expire",
                    duration.to_string(),
                ));
                settings.push(Setting::new("redis.session.lock_wait_time", "20000"));
                settings.push(Setting::new(
                    "redis.session.lock_retries",
                    lock_retries(duration),
                ));
            }
        }
        SessionHandler::Memcached => {
            settings.push(Setting::new("memcached.sess_locking", flag(locking)));
            if locking {
                // The same wait as redis's: php-memcached's own (5 tries
                // 150 ms apart) gives up after 0.75 s, and a request that
                // gives up reads no session and loses what it writes.
                // wait_min and wait_max are in milliseconds, equal so that
                // the wait does not double; the lock expires when the
                // request that holds it must have ended.
                settings.push(Setting::new("memcached.sess_lock_wait_min", "20"));
                settings.push(Setting::new("memcached.sess_lock_wait_max", "20"));
                settings.push(Setting::new(
                    "memcached.sess_lock_retries",
                    lock_retries(duration),
                ));
                settings.push(Setting::new(
                    "memcached.sess_lock_expire",
                    duration.to_string(),
                ));
            }
            // Consistent hashing: a lost node moves only its own keys; with
            // replicas, another node has a copy of each of them.
            settings.push(Setting::new("memcached.sess_consistent_hash", "1"));
            let replicas = sessions.replicas.unwrap_or(0);
            if replicas > 0 {
                settings.push(Setting::new("memcached.sess_binary_protocol", "1"));
                settings.push(Setting::new(
                    "memcached.sess_number_of_replicas",
                    replicas.to_string(),
                ));
                settings.push(Setting::new("memcached.sess_randomize_replica_read", "0"));
                settings.push(Setting::new("memcached.sess_remove_failed_servers", "1"));
                settings.push(Setting::new("memcached.sess_server_failure_limit", "1"));
                // A node that is gone is given up on within a second.
                settings.push(Setting::new("memcached.sess_connect_timeout", "1000"));
            }
        }
    }
    settings
}

/// How many times a request tries a session's lock, 20 ms apart, to wait
/// `duration` seconds (`request.duration`, the longest a request that holds
/// it may run).
fn lock_retries(duration: u32) -> String {
    (u64::from(duration) * 50).to_string()
}

/// A php.ini value: strings raw-quoted, the rest as PHP reads them.
fn ini_value(value: &IniValue) -> String {
    match value {
        IniValue::String(s) => escape::php_ini_string(s),
        other => other.to_string(),
    }
}
