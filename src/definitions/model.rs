//! The definitions as serde reads them: `clusters/*.yaml` and `apps/*.yaml`.
//!
//! Doc comments here are the field descriptions of the generated JSON Schema
//! and of the README's reference, so they are written for operators. Unknown
//! keys are refused everywhere. Nothing here checks cross-references; see
//! `validate`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::names::{AppName, ClusterName, ServerName, WorkerName};
use super::values::{
    ByteSize, CronSchedule, HumanDuration, IniValue, Parsed, PhpVersion, Timezone,
};

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
    /// The cluster's servers.
    pub servers: Vec<Server>,
}

impl Cluster {
    fn default_reload_parallel() -> u32 {
        1
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
    #[default]
    Files,
    Redis,
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

/// An app: where its code comes from, how it is built, and what runs where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's name; also its Unix user and home (/home/<name>).
    pub name: AppName,
    /// The cluster it runs on.
    pub cluster: ClusterName,
    /// Git URL of the app's code.
    pub repo: String,
    /// Branch deployed by default.
    #[serde(default = "App::default_branch")]
    pub branch: String,
    /// The revision (commit, tag or branch) that must be live: `apply` and
    /// `watch` release it when the servers run another. Without it, apps
    /// are released with `reconciler release` or the deploy webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The PHP version it runs on; one the cluster installs.
    pub php: PhpVersion,
    /// Domains nginx answers for this app.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Arguments to `composer` in each new release, such as
    /// `install --prefer-dist --no-dev --optimize-autoloader`; none skips composer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub composer: Option<String>,
    /// Commands run in each new release on every server before it goes live,
    /// such as `php artisan config:cache`.
    #[serde(default)]
    pub release_commands: Vec<String>,
    /// Paths kept across releases under /home/<app>/shared and linked into
    /// each release, relative to the release root: `storage/` (a trailing
    /// `/`: a directory), `{ path: .env, kind: file }`, or a bare name
    /// whose kind is guessed (a dot in its last name: a file).
    #[serde(default)]
    pub shared: Vec<SharedPath>,
    /// How many releases to keep on each server, the live one included.
    #[serde(default = "App::default_keep_releases")]
    pub keep_releases: u32,
    /// The request that must succeed on every web server after a release
    /// switch; when it fails the release is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// The largest a release may be, unpacked (the commit's tree): a larger
    /// one is refused before anything is uploaded, naming its largest files.
    #[serde(default = "App::default_max_release_size")]
    pub max_release_size: Parsed<ByteSize>,
    /// The largest one file of a release may be. Archiving holds one file
    /// in memory at a time, so this also bounds reconciler's memory.
    #[serde(default = "App::default_max_file_size")]
    pub max_file_size: Parsed<ByteSize>,
    /// Commands run in the live release after its environment file changes,
    /// such as `php artisan config:cache`.
    #[serde(default)]
    pub env_commands: Vec<String>,
    /// Take over an existing Unix user named like the app that reconciler
    /// did not create. Without it such a user is refused: it may be a
    /// person's login, with sudo rights, that the app's code would then own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_user: bool,
    /// What the app runs on each server of its cluster.
    pub servers: Vec<AppServer>,
}

impl App {
    fn default_branch() -> String {
        "main".into()
    }
    fn default_keep_releases() -> u32 {
        5
    }
    fn default_max_release_size() -> Parsed<ByteSize> {
        Parsed::new("512M")
    }
    fn default_max_file_size() -> Parsed<ByteSize> {
        Parsed::new("64M")
    }
}

/// A path kept across releases (`shared:`), with its kind: stated (a
/// trailing `/` for a directory, or `kind:`) or guessed from the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPath {
    /// Relative to the release root, without a trailing `/`.
    pub path: String,
    /// As written; `None` when the kind is guessed.
    pub stated: Option<SharedKind>,
}

/// What a shared path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SharedKind {
    Dir,
    File,
}

impl SharedPath {
    /// Its kind: as stated, else a file when its last name has a dot
    /// (`.env`, `config.php`), a directory otherwise.
    pub fn kind(&self) -> SharedKind {
        self.stated.unwrap_or_else(|| {
            match self
                .path
                .rsplit('/')
                .next()
                .is_some_and(|name| name.contains('.'))
            {
                true => SharedKind::File,
                false => SharedKind::Dir,
            }
        })
    }
}

impl<'de> Deserialize<'de> for SharedPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Stated(Stated),
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Stated {
            path: String,
            kind: SharedKind,
        }
        Ok(match Form::deserialize(deserializer)? {
            Form::Text(text) => match text.strip_suffix('/') {
                Some(dir) if !dir.is_empty() => SharedPath {
                    path: dir.to_owned(),
                    stated: Some(SharedKind::Dir),
                },
                _ => SharedPath {
                    path: text,
                    stated: None,
                },
            },
            Form::Stated(stated) => SharedPath {
                path: stated.path.trim_end_matches('/').to_owned(),
                stated: Some(stated.kind),
            },
        })
    }
}

impl Serialize for SharedPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.stated {
            None => serializer.serialize_str(&self.path),
            Some(SharedKind::Dir) => serializer.serialize_str(&format!("{}/", self.path)),
            Some(SharedKind::File) => {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("path", &self.path)?;
                map.serialize_entry("kind", &SharedKind::File)?;
                map.end()
            }
        }
    }
}

impl JsonSchema for SharedPath {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SharedPath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A path relative to the release root: `storage/` (a trailing slash: a directory), `{ path: .env, kind: file }`, or a bare name whose kind is guessed (a dot in its last name: a file; `plan` says so).",
            "oneOf": [
                { "type": "string" },
                {
                    "type": "object",
                    "properties": {
                        "path": { "type": "string" },
                        "kind": { "enum": ["dir", "file"] }
                    },
                    "required": ["path", "kind"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// A request that tells whether a release works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The path to request, such as /up.
    #[serde(default = "HealthCheck::default_path")]
    pub path: String,
    /// The status code a healthy release answers with.
    #[serde(default = "HealthCheck::default_status")]
    pub status: u16,
}

impl HealthCheck {
    fn default_path() -> String {
        "/".into()
    }
    fn default_status() -> u16 {
        200
    }
}

/// An app's roles on one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppServer {
    /// The server, by name; it must be in the app's cluster.
    pub name: ServerName,
    /// Serve HTTP here: a PHP-FPM pool and an nginx vhost. Only on `web_server` servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<WebPool>,
    /// Commands run on this server only, in each new release before it goes
    /// live, such as `php artisan migrate --force`.
    #[serde(default)]
    pub deploy_commands: Vec<String>,
    /// Queue workers kept running by supervisor.
    #[serde(default)]
    pub workers: Vec<Worker>,
    /// Run the scheduler (`php artisan schedule:run`) every minute from cron.
    #[serde(default)]
    pub scheduler: bool,
}

/// The app's PHP-FPM pool size on one server (pm = dynamic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebPool {
    /// Most requests served at once: pm.max_children.
    #[serde(default = "WebPool::default_max_workers")]
    pub max_workers: u32,
    /// Fewest idle workers kept: pm.min_spare_servers.
    #[serde(default = "WebPool::default_min_spare")]
    pub min_spare_workers: u32,
    /// Workers started with the pool: pm.start_servers.
    #[serde(default = "WebPool::default_initial")]
    pub initial_workers: u32,
    /// Most idle workers kept: pm.max_spare_servers.
    #[serde(default = "WebPool::default_max_spare")]
    pub max_spare_workers: u32,
}

impl WebPool {
    fn default_max_workers() -> u32 {
        5
    }
    fn default_min_spare() -> u32 {
        1
    }
    fn default_initial() -> u32 {
        2
    }
    fn default_max_spare() -> u32 {
        3
    }
}

impl Default for WebPool {
    fn default() -> Self {
        Self {
            max_workers: Self::default_max_workers(),
            min_spare_workers: Self::default_min_spare(),
            initial_workers: Self::default_initial(),
            max_spare_workers: Self::default_max_spare(),
        }
    }
}

/// A queue worker program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Worker {
    /// The worker's name, unique within the app on this server.
    pub name: WorkerName,
    /// The command, run in the live release as the app's user, such as
    /// `php artisan queue:work default --sleep=1 --timeout=20`.
    pub command: String,
    /// How many copies run.
    #[serde(default = "Worker::default_processes")]
    pub processes: u32,
    /// Seconds a worker may take to finish its job when stopped.
    #[serde(default = "Worker::default_stop_wait")]
    pub stop_wait: u32,
}

impl Worker {
    fn default_processes() -> u32 {
        1
    }
    fn default_stop_wait() -> u32 {
        10
    }
}
