//! An app as serde reads it from `apps/*.yaml`: its source, its build, and
//! its role on each server.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::definitions::names::{AppName, ClusterName, ServerName, WorkerName};
use crate::definitions::values::{ByteSize, HumanDuration, Parsed, PhpVersion};

/// An app: where its code comes from, how it is built, and what runs where.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app's name; also its Unix user and home (`/home/<name>`).
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
    /// Paths kept across releases under `/home/<app>/shared` and linked into
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
    /// Compile the release's PHP files into each web server's OPcache
    /// before the switch, through the app's own php-fpm pool, so that the
    /// first requests after it find them compiled: `true` (every `*.php`
    /// of the release), `false`, or globs relative to the release root
    /// that narrow it (`app/**`, `vendor/laravel/**`; `*` is one name,
    /// `**` any depth). Links (shared paths) are never followed.
    #[serde(default, skip_serializing_if = "Prewarm::is_default")]
    pub opcache_prewarm: Prewarm,
    /// Where releases are written: `releases` (the default: each release
    /// its own `/home/<app>/releases/<sha>`), or `ab` (two directories,
    /// `/home/<app>/a` and `b`: a release is written into the one not
    /// live, only its changed files rewritten, so that OPcache keeps one
    /// copy of each script instead of one per release). `ab` needs
    /// `opcache.validate_timestamps` on and `opcache.revalidate_freq` at
    /// most 60 s; a rollback goes to the other directory's release only.
    #[serde(default, skip_serializing_if = "ReleaseLayout::is_default")]
    pub release_layout: ReleaseLayout,
    /// Watch real traffic after the switch and roll back on a rise in
    /// 5xx: each web server's access log is read every 5 s for `window`.
    /// Without it a release is judged by its health check alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
    /// Where the daemon sends word of the app's releases, instead of its
    /// cluster's `notify:` (`[]`: nowhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Vec<super::NotifyTarget>>,
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
    /// A directory: written `path/` or `kind: dir`.
    Dir,
    /// A single file, such as `.env`: written `kind: file`.
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

/// `opcache_prewarm`: whether, and which of, a release's PHP files are
/// compiled into OPcache before its switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Prewarm {
    /// `true`: every `*.php` file of the release; `false`: none.
    All(bool),
    /// Only the files whose path (relative to the release root) matches
    /// one of these globs.
    Only(Vec<String>),
}

impl Default for Prewarm {
    fn default() -> Self {
        Prewarm::All(true)
    }
}

impl Prewarm {
    fn is_default(&self) -> bool {
        *self == Prewarm::default()
    }

    /// The globs to warm, `[]` for every file; `None` when off.
    pub fn globs(&self) -> Option<&[String]> {
        match self {
            Prewarm::All(true) => Some(&[]),
            Prewarm::All(false) => None,
            Prewarm::Only(globs) if globs.is_empty() => None,
            Prewarm::Only(globs) => Some(globs),
        }
    }
}

/// `release_layout`: how an app's releases lie on its servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseLayout {
    /// One directory per release, `/home/<app>/releases/<sha>`.
    #[default]
    Releases,
    /// Two directories, `/home/<app>/a` and `b`, written in turn.
    Ab,
}

impl ReleaseLayout {
    // serde's `skip_serializing_if` passes a reference.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    fn is_default(&self) -> bool {
        *self == ReleaseLayout::default()
    }
}

/// `guard`: how a release is judged by its traffic after the switch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Guard {
    /// How long after the switch the release is watched, such as 5m.
    #[serde(default = "Guard::default_window")]
    pub window: Parsed<HumanDuration>,
    /// The share of 5xx answers (0 to 1, of every web server's requests
    /// since the switch) above which the release is rolled back.
    #[serde(default = "Guard::default_max_5xx_ratio")]
    pub max_5xx_ratio: f64,
    /// Requests since the switch before the ratio counts: fewer say
    /// nothing either way.
    #[serde(default = "Guard::default_min_requests")]
    pub min_requests: u32,
    /// Roll back only when the ratio also clearly exceeds the app's own
    /// in the window before the switch (twice it, and by `max_5xx_ratio`
    /// more): an app that failed as often before is not judged by it.
    #[serde(default = "Guard::default_compare")]
    pub compare: bool,
}

impl Guard {
    fn default_window() -> Parsed<HumanDuration> {
        Parsed::new("5m")
    }
    fn default_max_5xx_ratio() -> f64 {
        0.02
    }
    fn default_min_requests() -> u32 {
        100
    }
    fn default_compare() -> bool {
        true
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
