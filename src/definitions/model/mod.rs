//! The definitions as serde reads them: `clusters/*.yaml` and `apps/*.yaml`.
//!
//! Doc comments here are the field descriptions of the generated JSON Schema
//! and of the README's reference, so they are written for operators. Unknown
//! keys are refused everywhere. Nothing here checks cross-references; see
//! `validate`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::{ClusterName, ServerName};
use super::values::{CronSchedule, HumanDuration, IniValue, Parsed, PhpVersion, Timezone};

mod app;

pub use app::*;

/// A cluster: the servers an app can run on and the PHP runtime they share.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The cluster's name; apps refer to it with `cluster:`.
    pub name: ClusterName,
    /// PHP versions installed on every server of the cluster, such as ["8.2"].
    pub php: Vec<PhpVersion>,
    /// What one HTTP request may take: the limits for php.ini, PHP-FPM and nginx.
    #[serde(default)]
    pub request: RequestLimits,
    /// Extra php.ini settings for every PHP version, FPM and CLI, such as
    /// `opcache.memory_consumption: 256`.
    #[serde(default)]
    pub php_ini: BTreeMap<String, IniValue>,
    /// Where PHP keeps sessions; shared stores let any server answer any user.
    #[serde(default)]
    pub sessions: Sessions,
    /// Low-traffic windows in which php-fpm may be reloaded (a reload stalls
    /// requests and flushes OPcache). Without windows, reloads wait for `--now`.
    #[serde(default)]
    pub reload_windows: Vec<ReloadWindow>,
    /// When php-fpm reloads after a change: `window` (the default) waits for
    /// a reload window; `immediate` reloads at once. A pool for an app that
    /// had none always starts at once: the app cannot serve without it.
    #[serde(default)]
    pub fpm_reload: FpmReload,
    /// How many servers of the cluster reload php-fpm at once in a window;
    /// each must answer over HTTP before the next one reloads.
    #[serde(default = "Cluster::default_reload_parallel")]
    pub reload_parallel: u32,
    /// Reload php-fpm in a window when its OPcache needs it: when it is
    /// fuller than `max_fill` percent, or (`after_release`) when an app's
    /// live release changed since the cache started and old scripts fill it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opcache_hygiene: Option<OpcacheHygiene>,
    /// PHP extensions installed for every PHP version, as Debian names
    /// them without the version (`intl` is php8.2-intl), by `provision`.
    #[serde(default)]
    pub extensions: Vec<String>,
    /// More Debian packages `provision` installs on every server.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Where the daemon sends word of what happens on the cluster and its
    /// apps (an app's own `notify:` replaces it for the app's releases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyTarget>,
    /// The cluster's servers.
    pub servers: Vec<Server>,
    /// Servers that join and leave at run time (an autoscaler's), through
    /// the daemon's `POST /v1/clusters/<cluster>/servers` with a join
    /// token; without it the cluster takes no joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic: Option<Elastic>,
}

/// A cluster's elastic members: how many may join and what each is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Elastic {
    /// The most members joined at once (1 to 256); a join past it is refused.
    pub max_servers: u32,
    /// What every member is; its name, address and port come with its join.
    #[serde(default)]
    pub template: ElasticTemplate,
    /// Whether a join may come without the server's SSH host key, the key
    /// then being trusted on the first connection to it and recorded (a
    /// warning with its fingerprint is logged), and checked strictly from
    /// then on. Without it, a join must carry the key. Only for networks
    /// where nothing can come between the daemon and a new server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub accept_new_host_keys: bool,
}

/// What an elastic member is, apart from its name, address and port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ElasticTemplate {
    /// SSH user; it needs root rights (root, or sudo without a password).
    #[serde(default = "Server::default_user")]
    pub user: String,
    /// The SSH port a join uses when it names none.
    #[serde(default = "Server::default_port")]
    pub port: u16,
    /// Whether members run nginx and PHP-FPM and take web roles.
    #[serde(default = "ElasticTemplate::default_web_server")]
    pub web_server: bool,
    /// A static server of the cluster whose roles every member copies: for
    /// each app, its web pool and its workers (never the scheduler, which
    /// runs on one server, nor its `deploy_commands`). Without it, members
    /// of a web cluster take a web role with the default pool sizes in
    /// every app of the cluster that has domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub like: Option<ServerName>,
}

impl ElasticTemplate {
    fn default_web_server() -> bool {
        true
    }
}

impl Default for ElasticTemplate {
    fn default() -> Self {
        Self {
            user: Server::default_user(),
            port: Server::default_port(),
            web_server: Self::default_web_server(),
            like: None,
        }
    }
}

/// A webhook the daemon notifies (`notify:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyTarget {
    /// The target's name in the daemon's notify URLs file
    /// (`watch --notify-urls FILE`, one `NAME URL` a line): a webhook's
    /// URL is a secret, kept out of the definitions.
    pub to: String,
    /// `json` (the event as a JSON object) or `slack` (a Slack-compatible
    /// `{"text": ...}` message).
    #[serde(default)]
    pub format: NotifyFormat,
    /// The events it wants; every event when empty.
    #[serde(default)]
    pub events: Vec<NotifyEvent>,
}

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NotifyFormat {
    /// The event itself as a JSON object (the default).
    #[default]
    Json,
    /// A Slack incoming-webhook message: `{"text": ...}` holding
    /// `reconciler: ` and the event's message, then a bullet line for each
    /// detail, with Slack's control characters escaped.
    Slack,
}

/// What a notification tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    /// A release went live on every server of its app.
    ReleaseLive,
    /// A release failed before or at its switch.
    ReleaseFailed,
    /// A release went live and was rolled back (its health check or its
    /// guard failed it), with the reason.
    RolledBack,
    /// Applying the definitions to a server failed.
    ApplyFailed,
    /// A commit of the definitions did not validate, with its errors.
    CommitRejected,
    /// A drift check found a server changed by hand.
    DriftFound,
}

impl NotifyEvent {
    /// Its name in the definitions and in notifications.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::ReleaseLive => "release-live",
            NotifyEvent::ReleaseFailed => "release-failed",
            NotifyEvent::RolledBack => "rolled-back",
            NotifyEvent::ApplyFailed => "apply-failed",
            NotifyEvent::CommitRejected => "commit-rejected",
            NotifyEvent::DriftFound => "drift-found",
        }
    }
}

impl NotifyTarget {
    /// Whether it wants `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.events.is_empty() || self.events.contains(&event)
    }
}

impl Cluster {
    fn default_reload_parallel() -> u32 {
        1
    }

    /// The longest `opcache.revalidate_freq` an `ab` app's cluster may
    /// set, in seconds: a release waits this long, and more, before it
    /// rewrites the directory that was live (see `ab_wait`).
    pub const MAX_AB_REVALIDATE_FREQ: u64 = 60;

    /// How long after `current` leaves one of an `ab` app's directories a
    /// release may rewrite it, in seconds: twice `request.duration` (nginx
    /// picks the directory when a request arrives; the request may wait
    /// that long for a php-fpm worker, as nginx waits for an answer, and
    /// then run that long, as php-fpm ends it), then
    /// `opcache.revalidate_freq` (OPcache trusts a script it checked for
    /// that long without looking at its file again; once it has passed,
    /// the next use of each script compares its modification time), and
    /// 1 s for the second the times are counted in. `Err` with why an
    /// `ab` layout is unsafe on this cluster: OPcache never looks at a
    /// file again (`opcache.validate_timestamps` off), or would trust it
    /// for too long (`opcache.revalidate_freq` not a count of seconds, or
    /// above `MAX_AB_REVALIDATE_FREQ`).
    pub fn ab_wait(&self) -> Result<u64, String> {
        let setting = |name: &str| self.php_ini.get(name).map(ToString::to_string);
        if let Some(value) = setting("opcache.validate_timestamps") {
            let value = value.trim().to_ascii_lowercase();
            if ["0", "off", "false", "no", "none", ""].contains(&value.as_str()) {
                return Err(format!(
                    "`opcache.validate_timestamps` is `{value}`: OPcache would never see a \
                     changed file, and would serve the old release's scripts"
                ));
            }
        }
        let freq = match setting("opcache.revalidate_freq") {
            None => 2,
            Some(value) => match value.trim().parse::<u64>() {
                Ok(freq) if freq <= Self::MAX_AB_REVALIDATE_FREQ => freq,
                _ => {
                    return Err(format!(
                        "`opcache.revalidate_freq` is `{value}`; at most {} (seconds) for `ab`",
                        Self::MAX_AB_REVALIDATE_FREQ
                    ));
                }
            },
        };
        Ok(2 * u64::from(self.request.duration) + freq + 1)
    }
}

/// When php-fpm reloads after a configuration change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FpmReload {
    /// In the next reload window (or with `--now`).
    #[default]
    Window,
    /// At once.
    Immediate,
}

/// When a php-fpm's OPcache is due for a reload in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpcacheHygiene {
    /// Used plus wasted memory above this percent of the cache's size.
    #[serde(default = "OpcacheHygiene::default_max_fill")]
    pub max_fill: u8,
    /// An app's `current` release changed since the cache started.
    #[serde(default = "OpcacheHygiene::default_after_release")]
    pub after_release: bool,
}

impl OpcacheHygiene {
    fn default_max_fill() -> u8 {
        80
    }
    fn default_after_release() -> bool {
        true
    }
}

/// Limits of a single HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestLimits {
    /// Longest request in seconds: max_execution_time, request_terminate_timeout,
    /// fastcgi_read_timeout, and how long a php-fpm reload waits for requests in flight.
    #[serde(default = "RequestLimits::default_duration")]
    pub duration: u32,
    /// Largest request body in MB: client_max_body_size, post_max_size, upload_max_filesize.
    #[serde(default = "RequestLimits::default_payload")]
    pub payload: u32,
    /// Memory a request may use in MB: memory_limit.
    #[serde(default = "RequestLimits::default_memory")]
    pub memory: u32,
}

impl RequestLimits {
    /// The shortest `duration`, in seconds: the pool's slow log threshold
    /// (`request_slowlog_timeout = 5s` in `fpm-pool.conf.hbs`). php-fpm
    /// refuses a pool whose `request_terminate_timeout` is below it
    /// (`php-fpm8.2 -t`: "'request_slowlog_timeout' (5) can't be greater
    /// than 'request_terminate_timeout' (4)"), so no app could serve.
    pub const MIN_DURATION: u32 = 5;

    fn default_duration() -> u32 {
        30
    }
    fn default_payload() -> u32 {
        10
    }
    fn default_memory() -> u32 {
        128
    }
}

impl Default for RequestLimits {
    fn default() -> Self {
        Self {
            duration: Self::default_duration(),
            payload: Self::default_payload(),
            memory: Self::default_memory(),
        }
    }
}

/// PHP's session store.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sessions {
    /// `files` (each server its own, the default), `redis` or `memcached`.
    #[serde(default)]
    pub handler: SessionHandler,
    /// The store's address, such as `tcp://10.0.0.5:6379` for redis or
    /// `10.0.0.5:11211` for memcached; required for both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save_path: Option<String>,
    /// Lock a session while a request uses it, so concurrent requests of one
    /// user don't overwrite each other's changes. On by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locking: Option<bool>,
    /// memcached only: how many other nodes of `save_path` keep a copy of
    /// each session, so that losing a node loses no session (fewer than
    /// the nodes listed). 0 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u8>,
}

/// A session save handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SessionHandler {
    /// PHP's `files` handler: each server keeps its own sessions (in
    /// `save_path` when given), so a session lives only on the server that
    /// started it (the default).
    #[default]
    Files,
    /// A redis server shared by the cluster (phpredis); `save_path` is
    /// required.
    Redis,
    /// memcached nodes shared by the cluster (php-memcached); `save_path`
    /// is required.
    Memcached,
}

/// A recurring low-traffic window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReloadWindow {
    /// When the window opens: cron with seconds, such as "0 0 3 * * *".
    pub schedule: Parsed<CronSchedule>,
    /// How long it stays open, such as 1h or 30m.
    pub duration: Parsed<HumanDuration>,
    /// The timezone of the schedule, such as Europe/Amsterdam.
    #[serde(default = "ReloadWindow::utc")]
    pub timezone: Parsed<Timezone>,
}

impl ReloadWindow {
    fn utc() -> Parsed<Timezone> {
        Parsed::new("UTC")
    }
}

/// A server of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The server's name, unique across all clusters.
    pub name: ServerName,
    /// Host name or IP address to reach it over SSH, or `local` for the
    /// machine reconciler runs on.
    pub address: String,
    /// SSH port.
    #[serde(default = "Server::default_port")]
    pub port: u16,
    /// SSH user; it needs root rights (root, or sudo without a password).
    #[serde(default = "Server::default_user")]
    pub user: String,
    /// Whether the server runs nginx and PHP-FPM and can take web roles.
    #[serde(default)]
    pub web_server: bool,
    /// For an elastic member only (never read from a file): its own
    /// known_hosts file, used instead of `--known-hosts`.
    #[serde(skip)]
    #[schemars(skip)]
    pub known_hosts: Option<MemberKnownHosts>,
}

/// An elastic member's own known_hosts file, and how it is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKnownHosts {
    /// The file: the host key its join carried, or the one its first
    /// connection recorded.
    pub file: std::path::PathBuf,
    /// Whether a connection may record a key the file does not hold yet
    /// (its join carried none, and its cluster's `elastic` accepts new host
    /// keys); a key that differs from one recorded is refused all the same.
    pub accept_new: bool,
}

impl Server {
    fn default_port() -> u16 {
        22
    }
    fn default_user() -> String {
        "root".into()
    }

    /// Whether this server is the machine reconciler runs on.
    pub fn is_local(&self) -> bool {
        self.address == "local"
    }
}
