//! Releases: one commit of an app on every server it runs on, switched live
//! on all of them together, or nowhere.
//!
//! The steps, each a round trip per server (so that progress shows), all
//! under the app lock that `release_lock` holds on every server:
//!
//! 1. lock: take the app lock and learn what the server has (the live
//!    release, the complete ones, the release log);
//! 2. prepare, in parallel, where the release is not complete yet: upload
//!    the archive and unpack it, link the shared paths, build (composer and
//!    `release_commands`), run the server's `deploy_commands`, and record
//!    the release complete;
//! 3. only when every server is ready: switch `current` everywhere at once
//!    and restart the workers; then the health check through each web
//!    server's own nginx. A failure switches every server back;
//! 4. finish: a line in each server's release log, and pruning.
//!
//! A failure before the switch leaves `current` untouched and removes the
//! release where it was being prepared. The shell side is `release.sh`.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use crate::definitions::{App, AppServer, Definitions, Server, ServerName};
use crate::layout::{self, AppPaths};
use crate::shell::quote;
use crate::transport::{Connector, Held, Holding, Transport, TransportError};

pub mod envfile;
pub mod logs;

const RELEASE_SH: &str = include_str!("release.sh");

/// Seconds each build or deploy command may take.
pub const COMMAND_LIMIT: u64 = 600;
/// Seconds an upload may take to unpack.
const UPLOAD_LIMIT: u64 = 600;
/// Seconds a switch, with the workers' restart, may take.
const SWITCH_LIMIT: u64 = 120;
/// Tenths of a second the health check is retried: 10 s.
const HEALTH_TRIES: u32 = 100;

/// What started a release, for the release log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// `reconciler release`.
    Cli,
    /// The deploy webhook.
    Webhook,
    /// An app's `revision:` in the definitions.
    Definitions,
    /// `reconciler rollback`.
    Rollback,
    /// `reconciler env push` (it takes the app lock too).
    Env,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Cli => "cli",
            Trigger::Webhook => "webhook",
            Trigger::Definitions => "definitions",
            Trigger::Rollback => "rollback",
            Trigger::Env => "env push",
        })
    }
}

/// One line of a server's release log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    pub sha: String,
    pub time: String,
    pub trigger: String,
    /// `live`, `failed`, `rolled-back` (went live, failed its health check)
    /// or `rollback` (made live again by `reconciler rollback`).
    pub result: String,
    pub duration_ms: u64,
    pub who: String,
    #[serde(default)]
    pub previous: String,
}

impl LogEntry {
    fn went_live(&self) -> bool {
        self.result == "live" || self.result == "rollback"
    }
}

/// A step's progress on one server.
#[derive(Debug, Clone)]
pub enum Event {
    Started,
    Done(Duration),
    Skipped(&'static str),
    Failed(String),
}

/// Where progress goes: a line per step and server, or a terminal display.
pub trait Progress: Send + Sync {
    fn step(&self, server: &ServerName, step: &str, event: &Event);
}

/// No progress.
impl Progress for () {
    fn step(&self, _: &ServerName, _: &str, _: &Event) {}
}

/// Why a release (or rollback) did not go live.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("app `{0}` is not in the definitions")]
    UnknownApp(String),
    #[error("cannot reach {server}")]
    Unreachable {
        server: ServerName,
        #[source]
        source: TransportError,
    },
    #[error("{app} is being released on {server} by {holder}")]
    Busy {
        app: String,
        server: ServerName,
        holder: String,
    },
    #[error("{step} failed on {server}; nothing was switched\n{output}")]
    Step {
        server: ServerName,
        step: String,
        output: String,
    },
    #[error(
        "the release went live but failed on {server} ({step}), so every server went back to {previous}\n{output}"
    )]
    RolledBack {
        server: ServerName,
        step: String,
        output: String,
        previous: String,
    },
    #[error("{step} failed on {server}\n{output}")]
    Failed {
        server: ServerName,
        step: String,
        output: String,
    },
    #[error("nothing to roll back to: {0}")]
    NothingToRollBackTo(String),
}

/// Where an app runs: each server with its roles.
#[derive(Debug, Clone)]
pub struct AppTarget {
    pub app: App,
    pub servers: Vec<(Server, AppServer)>,
}

impl AppTarget {
    /// The app and its servers from the definitions.
    pub fn find(definitions: &Definitions, app: &str) -> Result<Self, ReleaseError> {
        let found = definitions
            .apps
            .iter()
            .find(|a| a.name.as_str() == app)
            .ok_or_else(|| ReleaseError::UnknownApp(app.to_owned()))?;
        let cluster = definitions
            .clusters
            .iter()
            .find(|c| c.name == found.cluster)
            .ok_or_else(|| ReleaseError::UnknownApp(app.to_owned()))?;
        let servers = found
            .servers
            .iter()
            .filter_map(|role| {
                cluster
                    .servers
                    .iter()
                    .find(|s| s.name == role.name)
                    .map(|s| (s.clone(), role.clone()))
            })
            .collect();
        Ok(Self {
            app: found.clone(),
            servers,
        })
    }
}

impl AppTarget {
    /// Every app of `definitions` that pins a `revision:`, or of `only`
    /// when it names some.
    pub fn pinned(definitions: &Definitions, only: &[String]) -> Vec<Self> {
        definitions
            .apps
            .iter()
            .filter(|a| a.revision.is_some())
            .filter(|a| only.is_empty() || only.iter().any(|o| o == a.name.as_str()))
            .filter_map(|a| Self::find(definitions, a.name.as_str()).ok())
            .collect()
    }
}

/// Who releases and why, for the lock and the log.
#[derive(Debug, Clone)]
pub struct Origin {
    pub who: String,
    pub trigger: Trigger,
}

/// A release that went live.
#[derive(Debug, Clone)]
pub struct Released {
    pub sha: String,
    /// What was live before, per server (`None`: nothing).
    pub previous: Vec<(ServerName, Option<String>)>,
    /// Servers where it was already complete: nothing was uploaded.
    pub reused: Vec<ServerName>,
    pub pruned: usize,
    pub elapsed: Duration,
}

/// A report line of a release script.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Report {
    kind: String,
    name: String,
    text: String,
}

fn reports(stdout: &[u8]) -> Vec<Report> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.strip_prefix('@')?.splitn(3, '\t');
            let kind = fields.next()?.to_owned();
            let name = fields.next()?.to_owned();
            let text = base64::engine::general_purpose::STANDARD
                .decode(fields.next().unwrap_or_default())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            Some(Report { kind, name, text })
        })
        .collect()
}

/// What a server has of an app, as `release_state` reports it.
#[derive(Debug, Clone, Default)]
pub struct ServerReleases {
    pub live: Option<String>,
    pub complete: BTreeSet<String>,
    /// Release directories with their modification time (Unix seconds).
    pub present: Vec<(String, i64)>,
    pub log: Vec<LogEntry>,
}

impl ServerReleases {
    fn from_reports(reports: &[Report]) -> Self {
        let mut state = Self::default();
        for r in reports {
            match r.kind.as_str() {
                "live" if !r.text.is_empty() => state.live = Some(r.text.clone()),
                "complete" => {
                    state.complete.insert(r.name.clone());
                }
                "present" => state
                    .present
                    .push((r.name.clone(), r.text.trim().parse().unwrap_or_default())),
                "log" => {
                    state.log = r
                        .text
                        .lines()
                        .filter_map(|l| serde_json::from_str(l).ok())
                        .collect()
                }
                _ => {}
            }
        }
        state
    }

    /// The release to roll back to: the newest one that went live, is not
    /// live now, and is complete here.
    pub fn previous_good(&self) -> Option<&str> {
        self.log
            .iter()
            .rev()
            .filter(|e| e.went_live())
            .map(|e| e.sha.as_str())
            .find(|sha| Some(*sha) != self.live.as_deref() && self.complete.contains(*sha))
    }
}

/// The script that runs `call` (a function of release.sh and its
/// arguments) for `app` on a server with `role`.
fn script(
    app: &App,
    role: &AppServer,
    sha: &str,
    token: &str,
    origin: &Origin,
    call: &[&str],
) -> String {
    let paths = AppPaths::new(&app.name);
    // The JSON string of `who` without its quotes: release.sh puts it
    // between quotes in the log line.
    let who_json = serde_json::Value::from(origin.who.as_str()).to_string();
    let who_json = &who_json[1..who_json.len() - 1];
    let worker_limit = worker_limit(role);
    let vars: [(&str, String); 17] = [
        ("LOG_DIR", paths.logs.clone()),
        ("APP", app.name.to_string()),
        ("HOME_DIR", paths.home.clone()),
        ("RELEASES", paths.releases.clone()),
        ("SHARED", paths.shared.clone()),
        ("CURRENT", paths.current.clone()),
        ("APP_STATE", layout::app_state_dir(&app.name)),
        ("APP_PATH", layout::app_path(&app.php)),
        ("SHA", sha.to_owned()),
        ("TOKEN", token.to_owned()),
        ("WHO", origin.who.replace(['\t', '\n'], " ")),
        ("WHO_JSON", who_json.to_owned()),
        (
            "REASON",
            match sha {
                "" => origin.trigger.to_string(),
                sha => format!("{} of {}", origin.trigger, short(sha)),
            },
        ),
        ("TRIGGER", origin.trigger.to_string()),
        ("WORKERS", u8::from(!role.workers.is_empty()).to_string()),
        ("WORKER_LIMIT", worker_limit.to_string()),
        ("HEALTH_TRIES", HEALTH_TRIES.to_string()),
    ];
    let mut s = String::new();
    for (name, value) in vars {
        s.push_str(&format!("{name}={}\n", quote(&value)));
    }
    s.push_str("WEB_PORT=${RECONCILER_WEB_PORT:-80}\n");
    s.push_str(RELEASE_SH);
    s.push_str(crate::shell::STEPS);
    s.push_str(crate::shell::HTTP_STATUS);
    s.push('\n');
    s.push_str(&call.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
    s.push('\n');
    s
}

/// Seconds restarting `role`'s workers may take: their longest stop wait,
/// and time to start.
fn worker_limit(role: &AppServer) -> u64 {
    u64::from(role.workers.iter().map(|w| w.stop_wait).max().unwrap_or(0)) + 30
}

/// The first 12 characters of a commit id.
pub fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// A server of the release, connected.
struct Host {
    server: Server,
    role: AppServer,
    transport: Arc<dyn Transport>,
}

/// A server whose app lock this release holds.
struct Locked {
    host: Host,
    guard: Box<dyn Held>,
    state: ServerReleases,
}

/// One release or rollback in progress.
struct Run<'a> {
    app: &'a App,
    sha: String,
    token: String,
    origin: &'a Origin,
    progress: &'a dyn Progress,
}

impl<'a> Run<'a> {
    /// A run of `sha` (empty: not a release) under a new lock token.
    fn new(app: &'a App, sha: &str, origin: &'a Origin, progress: &'a dyn Progress) -> Self {
        Self {
            app,
            sha: sha.to_owned(),
            token: new_token(),
            origin,
            progress,
        }
    }

    fn script(&self, role: &AppServer, call: &[&str]) -> String {
        script(self.app, role, &self.sha, &self.token, self.origin, call)
    }

    /// Runs one step on `host`; a report `failed` or a missing `done`
    /// fails it with the output to show.
    async fn step(
        &self,
        host: &Host,
        step: &str,
        call: &[&str],
        input: &[u8],
        limit: Duration,
    ) -> Result<Vec<Report>, String> {
        let name = &host.server.name;
        self.progress.step(name, step, &Event::Started);
        let started = Instant::now();
        let result = host
            .transport
            .run_with(&self.script(&host.role, call), input, limit)
            .await;
        let outcome = match result {
            Err(e) => Err(crate::error_chain(&e)),
            Ok(output) => {
                let found = reports(&output.stdout);
                if let Some(failed) = found.iter().find(|r| r.kind == "failed") {
                    Err(failed.text.clone())
                } else if found.iter().any(|r| r.kind == "done") {
                    Ok(found)
                } else {
                    Err(format!(
                        "the step ended before it finished ({}){}",
                        match output.status {
                            Some(code) => format!("exit status {code}"),
                            None => "killed".into(),
                        },
                        match output.stderr_text().trim() {
                            "" => String::new(),
                            e => format!(": {e}"),
                        }
                    ))
                }
            }
        };
        match &outcome {
            Ok(_) => self
                .progress
                .step(name, step, &Event::Done(started.elapsed())),
            Err(e) => self.progress.step(name, step, &Event::Failed(e.clone())),
        }
        outcome
    }

    /// Takes the app lock on every server, or on none.
    async fn lock_all(&self, hosts: Vec<Host>) -> Result<Vec<Locked>, ReleaseError> {
        let attempts = join_all(hosts.into_iter().map(|host| async move {
            self.progress
                .step(&host.server.name, "lock", &Event::Started);
            let started = Instant::now();
            let script = self.script(&host.role, &["release_lock"]);
            let held = host.transport.hold(&script, Duration::from_secs(30)).await;
            (host, held, started)
        }))
        .await;
        let mut locked = Vec::new();
        let mut error = None;
        for (host, held, started) in attempts {
            let name = host.server.name.clone();
            match held {
                Ok(Holding::Held { stdout, guard }) => {
                    self.progress
                        .step(&name, "lock", &Event::Done(started.elapsed()));
                    let state = ServerReleases::from_reports(&reports(&stdout));
                    locked.push(Locked { host, guard, state });
                }
                Ok(Holding::Ended(output)) => {
                    let found = reports(&output.stdout);
                    let e = match found.iter().find(|r| r.kind == "busy") {
                        Some(busy) => ReleaseError::Busy {
                            app: self.app.name.to_string(),
                            server: name.clone(),
                            holder: busy.text.replace('\t', ", "),
                        },
                        None => ReleaseError::Step {
                            server: name.clone(),
                            step: "lock".into(),
                            output: found
                                .iter()
                                .find(|r| r.kind == "failed")
                                .map(|r| r.text.clone())
                                .unwrap_or_else(|| output.stderr_text()),
                        },
                    };
                    self.progress
                        .step(&name, "lock", &Event::Failed(e.to_string()));
                    error.get_or_insert(e);
                }
                Err(source) => {
                    self.progress
                        .step(&name, "lock", &Event::Failed(crate::error_chain(&source)));
                    error.get_or_insert(ReleaseError::Unreachable {
                        server: name,
                        source,
                    });
                }
            }
        }
        match error {
            None => Ok(locked),
            Some(e) => {
                unlock_all(locked).await;
                Err(e)
            }
        }
    }

    /// Prepares the release on `l`'s server; `Ok(false)` when it was
    /// complete there already.
    async fn prepare(
        &self,
        l: &Locked,
        archive: &[u8],
        sum: &str,
    ) -> Result<bool, (String, String)> {
        let host = &l.host;
        let name = &host.server.name;
        if l.state.complete.contains(&self.sha) {
            self.progress
                .step(name, "upload", &Event::Skipped("already complete"));
            return Ok(false);
        }
        let fail = |step: &str| {
            let step = step.to_owned();
            move |output| (step, output)
        };
        let size = archive.len().to_string();
        self.step(
            host,
            "upload",
            &["release_upload", &size, sum],
            archive,
            Duration::from_secs(UPLOAD_LIMIT + 60),
        )
        .await
        .map_err(fail("upload"))?;
        if !self.app.shared.is_empty() {
            let mut call = vec!["release_shared"];
            call.extend(self.app.shared.iter().map(|p| p.trim_end_matches('/')));
            self.step(host, "shared", &call, &[], Duration::from_secs(150))
                .await
                .map_err(fail("shared"))?;
        }
        let composer = self.app.composer.as_ref().map(|c| format!("composer {c}"));
        let build: Vec<&str> = composer
            .iter()
            .chain(&self.app.release_commands)
            .map(String::as_str)
            .collect();
        for (step, commands) in [
            ("build", build),
            (
                "deploy",
                host.role
                    .deploy_commands
                    .iter()
                    .map(String::as_str)
                    .collect(),
            ),
        ] {
            if commands.is_empty() {
                continue;
            }
            let limit = COMMAND_LIMIT.to_string();
            let mut call = vec!["release_commands", step, limit.as_str()];
            call.extend(commands.iter().copied());
            let total = Duration::from_secs((COMMAND_LIMIT + 10) * commands.len() as u64);
            self.step(host, step, &call, &[], total)
                .await
                .map_err(fail(step))?;
        }
        self.step(
            host,
            "complete",
            &["release_complete"],
            &[],
            Duration::from_secs(30),
        )
        .await
        .map_err(fail("complete"))?;
        Ok(true)
    }

    /// Switches every server to its target (`-`: no release); the first
    /// failure, if any.
    async fn switch_all(
        &self,
        locked: &[Locked],
        target: impl Fn(&Locked) -> String,
    ) -> Option<(ServerName, String, String)> {
        let results = join_all(locked.iter().map(|l| {
            let sha = target(l);
            async move {
                let r = self
                    .step(
                        &l.host,
                        "switch",
                        &["release_switch", &sha],
                        &[],
                        Duration::from_secs(SWITCH_LIMIT + worker_limit(&l.host.role)),
                    )
                    .await;
                (l.host.server.name.clone(), r)
            }
        }))
        .await;
        results.into_iter().find_map(|(server, r)| match r {
            Ok(found) => found
                .iter()
                .find(|r| r.kind == "failed")
                .map(|f| (server, "workers".to_owned(), f.text.clone())),
            Err(output) => Some((server, "switch".to_owned(), output)),
        })
    }

    /// The health check on every web server of the app.
    async fn health_all(&self, locked: &[Locked]) -> Option<(ServerName, String, String)> {
        let domain = self.app.domains.first()?;
        let (path, status) = match &self.app.health_check {
            Some(h) => (h.path.clone(), h.status.to_string()),
            None => ("/".to_owned(), "-".to_owned()),
        };
        let results = join_all(
            locked
                .iter()
                .filter(|l| l.host.role.web.is_some())
                .map(|l| {
                    let (path, status) = (&path, &status);
                    async move {
                        let r = self
                            .step(
                                &l.host,
                                "health",
                                &["release_health", domain, path, status],
                                &[],
                                Duration::from_secs(60),
                            )
                            .await;
                        (l.host.server.name.clone(), r)
                    }
                }),
        )
        .await;
        results.into_iter().find_map(|(server, r)| {
            r.err()
                .map(|output| (server, "health check".to_owned(), output))
        })
    }

    /// Switches to `self.sha` everywhere and checks health; on a failure
    /// switches every server back to what it had.
    async fn go_live(&self, locked: &[Locked]) -> Result<(), ReleaseError> {
        let failure = match self.switch_all(locked, |_| self.sha.clone()).await {
            Some(failure) => Some(failure),
            None => self.health_all(locked).await,
        };
        let Some((server, step, output)) = failure else {
            return Ok(());
        };
        let back = |l: &Locked| l.state.live.clone().unwrap_or_else(|| "-".into());
        let previous = locked.first().map(back).unwrap_or_default();
        if let Some((s, _, o)) = self.switch_all(locked, back).await {
            tracing::error!(server = %s, output = %o, "switching back failed");
        }
        Err(ReleaseError::RolledBack {
            server,
            step,
            output,
            previous: if previous == "-" {
                "no release".into()
            } else {
                short(&previous).to_owned()
            },
        })
    }

    /// The release log line and pruning on every server.
    async fn finish_all(&self, locked: &[Locked], result: &str, elapsed: Duration) -> usize {
        let keep = self.app.keep_releases.max(1).to_string();
        let ms = elapsed.as_millis().to_string();
        let results = join_all(locked.iter().map(|l| {
            let previous = l.state.live.clone().unwrap_or_default();
            let (keep, ms) = (&keep, &ms);
            async move {
                self.step(
                    &l.host,
                    "finish",
                    &["release_finish", result, &previous, ms, keep],
                    &[],
                    Duration::from_secs(300),
                )
                .await
            }
        }))
        .await;
        results
            .iter()
            .flatten()
            .flatten()
            .filter(|r| r.kind == "pruned")
            .count()
    }

    /// Removes the release where this run prepared it.
    async fn discard(&self, locked: &[Locked]) {
        join_all(
            locked
                .iter()
                .filter(|l| !l.state.complete.contains(&self.sha))
                .map(|l| {
                    self.step(
                        &l.host,
                        "discard",
                        &["release_discard"],
                        &[],
                        Duration::from_secs(300),
                    )
                }),
        )
        .await;
    }
}

async fn unlock_all(locked: Vec<Locked>) {
    join_all(
        locked
            .into_iter()
            .map(|l| l.guard.release(Duration::from_secs(10))),
    )
    .await;
}

/// Connects to every server of `target`.
async fn connect_all(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Result<Vec<Host>, ReleaseError> {
    let connected = join_all(target.servers.iter().map(|(server, role)| async move {
        connector
            .connect(server)
            .await
            .map(|transport| Host {
                server: server.clone(),
                role: role.clone(),
                transport,
            })
            .map_err(|source| ReleaseError::Unreachable {
                server: server.name.clone(),
                source,
            })
    }))
    .await;
    connected.into_iter().collect()
}

fn new_token() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Releases `sha` of `target`: `archive` is the commit's tree as a gzipped
/// tar (made once, whatever the number of servers).
pub async fn release(
    target: &AppTarget,
    sha: &str,
    archive: &[u8],
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let run = Run::new(&target.app, sha, origin, progress);
    let hosts = connect_all(target, connector).await?;
    let locked = run.lock_all(hosts).await?;
    let sum = crate::units::sha256(archive);
    let prepared = join_all(locked.iter().map(|l| run.prepare(l, archive, &sum))).await;
    let mut failure = None;
    let mut reused = Vec::new();
    for (l, result) in locked.iter().zip(prepared) {
        match result {
            Ok(false) => reused.push(l.host.server.name.clone()),
            Ok(true) => {}
            Err((step, output)) => {
                failure.get_or_insert(ReleaseError::Step {
                    server: l.host.server.name.clone(),
                    step,
                    output,
                });
            }
        }
    }
    let outcome = match failure {
        Some(e) => {
            run.discard(&locked).await;
            run.finish_all(&locked, "failed", started.elapsed()).await;
            Err(e)
        }
        None => match run.go_live(&locked).await {
            Ok(()) => {
                let pruned = run.finish_all(&locked, "live", started.elapsed()).await;
                Ok(Released {
                    sha: sha.to_owned(),
                    previous: locked
                        .iter()
                        .map(|l| (l.host.server.name.clone(), l.state.live.clone()))
                        .collect(),
                    reused,
                    pruned,
                    elapsed: started.elapsed(),
                })
            }
            Err(e) => {
                run.finish_all(&locked, "rolled-back", started.elapsed())
                    .await;
                Err(e)
            }
        },
    };
    unlock_all(locked).await;
    outcome
}

/// Where the mirror of `app`'s repository is in `cache`: named by the app
/// and its URL, so that an app whose `repo:` changes gets a new mirror.
pub fn mirror_path(cache: &std::path::Path, app: &App) -> std::path::PathBuf {
    let url = crate::units::sha256(app.repo.as_bytes());
    cache.join(format!("{}-{}.git", app.name, &url[..12]))
}

/// Fetches the app's mirror at `mirror` (cloning `url` there first) and
/// archives `rev`: its commit id and the gzipped tar of its tree. Blocks.
pub fn mirrored_archive(
    url: &str,
    mirror: &std::path::Path,
    rev: &str,
) -> anyhow::Result<(String, Vec<u8>)> {
    let sha = mirrored_commit(url, mirror, rev)?;
    let archive = archive_of(url, mirror, &sha)?;
    Ok((sha, archive))
}

/// Fetches the app's mirror at `mirror` (cloning `url` there first) and
/// resolves `rev` to its commit id. Blocks.
fn mirrored_commit(url: &str, mirror: &std::path::Path, rev: &str) -> anyhow::Result<String> {
    use anyhow::Context as _;
    if let Some(parent) = mirror.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let fresh = !mirror.join("HEAD").exists();
    let mut mirror = crate::git::Mirror::open_or_clone(url, mirror)?;
    if !fresh {
        mirror.fetch()?;
    }
    Ok(mirror.resolve(rev)?)
}

/// The gzipped tar of `sha`'s tree, from the mirror at `mirror`. Blocks.
fn archive_of(url: &str, mirror: &std::path::Path, sha: &str) -> anyhow::Result<Vec<u8>> {
    let mirror = crate::git::Mirror::open_or_clone(url, mirror)?;
    let mut archive = std::io::Cursor::new(Vec::new());
    mirror.archive(sha, &mut archive)?;
    Ok(archive.into_inner())
}

/// Releases the app's pinned `revision:` unless every server runs it
/// already; `Ok(None)` when nothing was to do. Blocks on git in a
/// blocking thread.
pub async fn ensure_revision(
    target: &AppTarget,
    cache: &std::path::Path,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> anyhow::Result<Option<Released>> {
    let Some(revision) = target.app.revision.clone() else {
        return Ok(None);
    };
    let url = target.app.repo.clone();
    let mirror = mirror_path(cache, &target.app);
    let sha = {
        let (url, mirror) = (url.clone(), mirror.clone());
        tokio::task::spawn_blocking(move || mirrored_commit(&url, &mirror, &revision)).await??
    };
    let live_everywhere = list(target, connector).await.iter().all(|(_, state)| {
        state
            .as_ref()
            .is_ok_and(|s| s.live.as_deref() == Some(sha.as_str()))
    });
    if live_everywhere {
        return Ok(None);
    }
    // Archived only when some server needs it.
    let commit = sha.clone();
    let archive = tokio::task::spawn_blocking(move || archive_of(&url, &mirror, &commit)).await??;
    Ok(Some(
        release(target, &sha, &archive, origin, connector, progress).await?,
    ))
}

/// Makes `to` (or the previous good release) live again on every server.
pub async fn rollback(
    target: &AppTarget,
    to: Option<&str>,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Released, ReleaseError> {
    let started = Instant::now();
    let mut run = Run::new(&target.app, "", origin, progress);
    let hosts = connect_all(target, connector).await?;
    let locked = run.lock_all(hosts).await?;
    let chosen = match to {
        Some(to) => find_release(&locked, to),
        None => locked
            .first()
            .and_then(|l| l.state.previous_good().map(str::to_owned))
            .ok_or_else(|| "no earlier release that went live is still on the servers".to_owned()),
    };
    let outcome = match chosen {
        Err(why) => Err(ReleaseError::NothingToRollBackTo(why)),
        Ok(sha) => {
            run.sha = sha;
            match run.go_live(&locked).await {
                Ok(()) => {
                    run.finish_all(&locked, "rollback", started.elapsed()).await;
                    Ok(Released {
                        sha: run.sha.clone(),
                        previous: locked
                            .iter()
                            .map(|l| (l.host.server.name.clone(), l.state.live.clone()))
                            .collect(),
                        reused: Vec::new(),
                        pruned: 0,
                        elapsed: started.elapsed(),
                    })
                }
                Err(e) => Err(e),
            }
        }
    };
    unlock_all(locked).await;
    outcome
}

/// The complete release on every server whose id starts with `prefix`.
fn find_release(locked: &[Locked], prefix: &str) -> Result<String, String> {
    let mut candidates: BTreeSet<&String> = BTreeSet::new();
    for l in locked {
        candidates.extend(l.state.complete.iter().filter(|s| s.starts_with(prefix)));
    }
    let mut found = candidates.into_iter();
    match (found.next(), found.next()) {
        (Some(sha), None) => match locked.iter().find(|l| !l.state.complete.contains(sha)) {
            Some(l) => Err(format!(
                "{} is not complete on {}",
                short(sha),
                l.host.server.name
            )),
            None => Ok(sha.clone()),
        },
        (Some(_), Some(_)) => Err(format!("`{prefix}` names more than one release")),
        (None, _) => Err(format!("no release `{prefix}` on the servers")),
    }
}

/// Runs `call` on `server` without the app lock: what it printed, or why
/// it could not run.
async fn lockless(
    target: &AppTarget,
    (server, role): (&Server, &AppServer),
    call: &[&str],
    limit: Duration,
    connector: &dyn Connector,
) -> Result<crate::transport::Output, String> {
    let origin = Origin {
        who: String::new(),
        trigger: Trigger::Cli,
    };
    let script = script(&target.app, role, "", "", &origin, call);
    let transport = connector
        .connect(server)
        .await
        .map_err(|e| crate::error_chain(&e))?;
    transport
        .run(&script, limit)
        .await
        .map_err(|e| crate::error_chain(&e))
}

/// The app's `shared/.env` on `server` (default: its first server).
pub async fn env_pull(
    target: &AppTarget,
    server: Option<&ServerName>,
    connector: &dyn Connector,
) -> Result<(ServerName, Vec<u8>), String> {
    let (server, role) = target
        .servers
        .iter()
        .find(|(s, _)| server.is_none_or(|name| &s.name == name))
        .ok_or_else(|| format!("{} does not run on that server", target.app.name))?;
    let output = lockless(
        target,
        (server, role),
        &["env_pull"],
        Duration::from_secs(60),
        connector,
    )
    .await?;
    // Decoded here, not by `reports`: the content need not be text.
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        if let Some(encoded) = line.strip_prefix("@env\t-\t") {
            let content = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| format!("{}: a garbled answer: {e}", server.name))?;
            return Ok((server.name.clone(), content));
        }
    }
    let failed = reports(&output.stdout)
        .into_iter()
        .find(|r| r.kind == "failed")
        .map(|r| r.text)
        .unwrap_or_else(|| output.stderr_text());
    Err(format!("{}: {failed}", server.name))
}

/// Writes `content` to the app's `shared/.env` on every server, under the
/// app lock, then runs its `env_commands` where a release is live.
pub async fn env_push(
    target: &AppTarget,
    content: &[u8],
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<(), ReleaseError> {
    let run = Run::new(&target.app, "", origin, progress);
    let hosts = connect_all(target, connector).await?;
    let locked = run.lock_all(hosts).await?;
    let size = content.len().to_string();
    let sum = crate::units::sha256(content);
    let results = join_all(locked.iter().map(|l| {
        let (size, sum, run) = (&size, &sum, &run);
        async move {
            let found = run
                .step(
                    &l.host,
                    "env",
                    &["env_push", size, sum],
                    content,
                    Duration::from_secs(90),
                )
                .await
                .map_err(|e| ("env".to_owned(), e))?;
            let live = !found.iter().any(|r| r.kind == "skipped");
            if live && !run.app.env_commands.is_empty() {
                let limit = COMMAND_LIMIT.to_string();
                let current = AppPaths::new(&run.app.name).current;
                let mut call = vec![
                    "app_commands",
                    "env_commands",
                    limit.as_str(),
                    current.as_str(),
                ];
                call.extend(run.app.env_commands.iter().map(String::as_str));
                let total =
                    Duration::from_secs((COMMAND_LIMIT + 10) * run.app.env_commands.len() as u64);
                run.step(&l.host, "commands", &call, &[], total)
                    .await
                    .map_err(|e| ("env_commands".to_owned(), e))?;
            }
            Ok::<(), (String, String)>(())
        }
    }))
    .await;
    let failure = locked.iter().zip(results).find_map(|(l, r)| {
        r.err()
            .map(|(step, output)| (l.host.server.name.clone(), step, output))
    });
    unlock_all(locked).await;
    match failure {
        None => Ok(()),
        Some((server, step, output)) => Err(ReleaseError::Failed {
            server,
            step,
            output,
        }),
    }
}

/// Runs `call` (without the app lock) on every server of `target`: per
/// server, its reports or why it could not run.
async fn on_every_server(
    target: &AppTarget,
    connector: &dyn Connector,
    call: &str,
    limit: Duration,
) -> Vec<(ServerName, Result<Vec<Report>, String>)> {
    join_all(target.servers.iter().map(|(server, role)| async move {
        let result = lockless(target, (server, role), &[call], limit, connector)
            .await
            .and_then(|output| {
                let found = reports(&output.stdout);
                match found.iter().find(|r| r.kind == "failed") {
                    Some(failed) => Err(failed.text.clone()),
                    None => Ok(found),
                }
            });
        (server.name.clone(), result)
    }))
    .await
}

/// What every server of `target` has: per server, its releases or why it
/// could not say.
pub async fn list(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Vec<(ServerName, Result<ServerReleases, String>)> {
    on_every_server(target, connector, "release_list", Duration::from_secs(60))
        .await
        .into_iter()
        .map(|(server, r)| (server, r.map(|found| ServerReleases::from_reports(&found))))
        .collect()
}

/// Breaks the app lock on every server of `target`; per server, whose
/// lock was broken, if any.
pub async fn force_unlock(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Vec<(ServerName, Result<Option<String>, String>)> {
    on_every_server(target, connector, "force_unlock", Duration::from_secs(30))
        .await
        .into_iter()
        .map(|(server, r)| {
            let broken = r.map(|found| {
                found
                    .iter()
                    .find(|r| r.kind == "unlocked" && r.text != "not locked")
                    .map(|r| r.text.replace('\t', ", "))
            });
            (server, broken)
        })
        .collect()
}

#[cfg(test)]
mod tests;
