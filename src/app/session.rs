//! Running an app's scripts on its servers, with or without the app lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::{AppError, AppTarget, Event, Origin, Progress, Step, StepFailure};
use crate::definitions::{App, AppServer, Server, ServerName};
use crate::layout::{self, AppPaths};
use crate::remote::{Record, Script, protocol};
use crate::transport::{Connector, Held, Holding, Input, Transport};

/// The app lock and what the server has of the app (`app.sh`): every app
/// script starts with it.
pub const APP_SH: &str = include_str!("app.sh");

/// Seconds to wait for a server to take the app lock.
const LOCK_LIMIT: Duration = Duration::from_secs(30);

/// A server of the app, connected.
pub struct Host {
    /// The server, as the cluster's definitions describe it.
    pub server: Server,
    /// The app's roles on it (web, workers, cron), as the app's
    /// definitions give them.
    pub role: AppServer,
    /// The open connection to it.
    pub transport: Arc<dyn Transport>,
}

/// A server whose app lock a session holds, with the records of what it
/// had when the lock was taken (`app_state` in app.sh).
pub struct Locked {
    /// The server, connected.
    pub host: Host,
    guard: Box<dyn Held>,
    /// The records `app_state` (app.sh) sent when the lock was taken: the
    /// live release, the complete ones, the release log's last lines.
    pub state: Vec<Record>,
}

/// Work on one app's servers under one lock token: the scripts of `body`
/// (the caller's shell functions) with the app's header.
pub struct Session<'a> {
    /// The app whose servers and lock these are.
    pub app: &'a App,
    body: &'a str,
    token: String,
    origin: &'a Origin,
    progress: &'a dyn Progress,
    vars: Vec<(&'static str, String)>,
}

impl<'a> Session<'a> {
    /// A session of `body`'s functions for `app`, under a new lock token
    /// of 128 bits from the OS's cryptographic generator (which, failing,
    /// fails the session: no lock is ever taken with a guessable token).
    pub fn new(
        app: &'a App,
        body: &'a str,
        origin: &'a Origin,
        progress: &'a dyn Progress,
    ) -> Result<Self, crate::secret::SecretError> {
        Ok(Self {
            app,
            body,
            token: crate::secret::token(16)?,
            origin,
            progress,
            vars: Vec::new(),
        })
    }

    /// A header variable of the caller's (`SHA`), set or replaced.
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        let value = value.into();
        match self.vars.iter_mut().find(|(n, _)| *n == name) {
            Some(var) => var.1 = value,
            None => self.vars.push((name, value)),
        }
    }

    /// Who acts, and why.
    pub fn origin(&self) -> &Origin {
        self.origin
    }

    /// Where this session's progress goes.
    pub fn progress(&self) -> &dyn Progress {
        self.progress
    }

    /// `step` without progress, for reads repeated often (a guard's):
    /// its records, or what to show.
    pub async fn ask(
        &self,
        host: &Host,
        call: &[&str],
        limit: Duration,
    ) -> Result<Vec<Record>, String> {
        match host
            .transport
            .run_with(&self.script(&host.role, call), Input::None, limit)
            .await
        {
            Err(e) => Err(e.cause().to_string()),
            Ok(output) => outcome(&output),
        }
    }

    /// The script that calls `call` on a server with `role`.
    pub fn script(&self, role: &AppServer, call: &[&str]) -> String {
        script(
            self.app,
            role,
            self.body,
            &self.token,
            self.origin,
            &self.vars,
            call,
        )
    }

    /// Runs one step on `host`: its records, or, when it reported
    /// `failed` or ended without `done`, what to show.
    pub async fn step(
        &self,
        host: &Host,
        step: Step,
        call: &[&str],
        input: Input<'_>,
        limit: Duration,
    ) -> Result<Vec<Record>, String> {
        let name = &host.server.name;
        self.progress.step(name, step, &Event::Started);
        let started = Instant::now();
        let result = host
            .transport
            .run_with(&self.script(&host.role, call), input, limit)
            .await;
        let outcome = match result {
            Err(e) => Err(e.cause().to_string()),
            Ok(output) => outcome(&output),
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
    pub async fn lock_all(&self, hosts: Vec<Host>) -> Result<Vec<Locked>, AppError> {
        let attempts = join_all(hosts.into_iter().map(|host| async move {
            self.progress
                .step(&host.server.name, Step::Lock, &Event::Started);
            let started = Instant::now();
            let script = self.script(&host.role, &["app_lock"]);
            let held = host.transport.hold(&script, LOCK_LIMIT).await;
            (host, held, started)
        }))
        .await;
        let mut locked = Vec::new();
        let mut error = None;
        for (host, held, started) in attempts {
            let name = host.server.name.clone();
            let failed = match held {
                Ok(Holding::Held { stdout, guard }) => match protocol::parse(&stdout) {
                    Ok(state) => {
                        self.progress
                            .step(&name, Step::Lock, &Event::Done(started.elapsed()));
                        locked.push(Locked { host, guard, state });
                        continue;
                    }
                    Err(e) => {
                        guard.release(Duration::from_secs(10)).await.ok();
                        AppError::Failed(StepFailure {
                            server: name.clone(),
                            step: Step::Lock,
                            output: format!("the server's answer is garbled: {e}"),
                        })
                    }
                },
                Ok(Holding::Ended(output)) => {
                    let records = protocol::parse(&output.stdout).unwrap_or_default();
                    match crate::remote::first(&records, "busy") {
                        Some(busy) => AppError::Busy {
                            app: self.app.name.to_string(),
                            server: name.clone(),
                            holder: busy.text(1).into_owned(),
                        },
                        None => AppError::Failed(StepFailure {
                            server: name.clone(),
                            step: Step::Lock,
                            output: outcome(&output).err().unwrap_or_default(),
                        }),
                    }
                }
                Err(error) => AppError::Unreachable {
                    server: name.clone(),
                    error,
                },
            };
            // The progress line names the server already.
            let shown = match &failed {
                AppError::Unreachable { error, .. } => error.cause().to_string(),
                other => crate::error_chain(other),
            };
            self.progress.step(&name, Step::Lock, &Event::Failed(shown));
            error.get_or_insert(failed);
        }
        match error {
            None => Ok(locked),
            Some(e) => {
                unlock_all(locked).await;
                Err(e)
            }
        }
    }
}

/// A step's records, or what to show when it reported `failed` or ended
/// without `done`: the script's report, else how it ended and its stderr.
fn outcome(output: &crate::transport::Output) -> Result<Vec<Record>, String> {
    let ended = || {
        format!(
            "the step ended before it finished ({}){}",
            match output.status {
                Some(code) => format!("exit status {code}"),
                None => "killed".into(),
            },
            match output.stderr_text().trim() {
                "" => String::new(),
                e => format!(": {e}"),
            }
        )
    };
    let records = match protocol::parse(&output.stdout) {
        Ok(records) => records,
        Err(e) => return Err(format!("{}; the server's answer is garbled: {e}", ended())),
    };
    if let Some(failed) = crate::remote::first(&records, "failed") {
        return Err(failed.text(1).into_owned());
    }
    if crate::remote::first(&records, "done").is_some() {
        Ok(records)
    } else {
        Err(ended())
    }
}

/// The script that calls `call` of `body` for `app` on a server with
/// `role`: the app's paths and this session's values in its header.
fn script(
    app: &App,
    role: &AppServer,
    body: &str,
    token: &str,
    origin: &Origin,
    vars: &[(&'static str, String)],
    call: &[&str],
) -> String {
    let paths = AppPaths::new(&app.name);
    let sha = vars
        .iter()
        .find(|(n, _)| *n == "SHA")
        .map_or("", |(_, v)| v.as_str());
    let reason = match sha {
        "" => origin.trigger.to_string(),
        sha => format!("{} of {}", origin.trigger, super::short(sha)),
    };
    let mut script = Script::new()
        .var("LOG_DIR", &paths.logs)
        .var("APP", app.name.as_str())
        .var("HOME_DIR", &paths.home)
        .var("RELEASES", &paths.releases)
        .var("SHARED", &paths.shared)
        .var("CURRENT", &paths.current)
        .var("APP_STATE", layout::app_state_dir(&app.name))
        .var("APP_PATH", layout::app_path(&app.php))
        .var("TOKEN", token)
        .var("WHO", origin.who.replace(['\t', '\n'], " "))
        .var("REASON", reason)
        .var("WORKERS", u8::from(!role.workers.is_empty()).to_string())
        .var(
            "SUPERVISOR_CONF",
            layout::ConfigFile::Supervisor {
                app: app.name.clone(),
            }
            .path(),
        )
        .var("WORKER_LIMIT", worker_limit(role).to_string())
        .var("WEB_PORT", "80");
    for (name, value) in vars {
        script = script.var(name, value);
    }
    script.build(&format!("{APP_SH}\n{body}"), call)
}

/// Seconds restarting `role`'s workers may take: their longest stop wait,
/// and time to start.
pub fn worker_limit(role: &AppServer) -> u64 {
    u64::from(role.workers.iter().map(|w| w.stop_wait).max().unwrap_or(0)) + 30
}

/// Lets go of every lock (each server's `app_lock` ends).
pub async fn unlock_all(locked: Vec<Locked>) {
    join_all(
        locked
            .into_iter()
            .map(|l| l.guard.release(Duration::from_secs(10))),
    )
    .await;
}

/// Connects to every server of `target`.
pub async fn connect_all(
    target: &AppTarget,
    connector: &dyn Connector,
) -> Result<Vec<Host>, AppError> {
    let connected = join_all(target.servers.iter().map(|(server, role)| async move {
        connector
            .connect(server)
            .await
            .map(|transport| Host {
                server: server.clone(),
                role: role.clone(),
                transport,
            })
            .map_err(|error| AppError::Unreachable {
                server: server.name.clone(),
                error,
            })
    }))
    .await;
    connected.into_iter().collect()
}

/// What a script run without the app lock gets: its body, header values
/// of its own, and the call.
pub struct Lockless<'a> {
    /// Shell functions to define after app.sh, one of which `call` runs.
    pub body: &'a str,
    /// Header variables besides the app's own (`APP`, `RELEASES`, ...):
    /// name and value, quoted when the script is built.
    pub vars: &'a [(&'static str, String)],
    /// The command that runs the work, as words: a function of `body` and
    /// its arguments, each quoted.
    pub call: &'a [&'a str],
    /// How long the script may run on each server before it is stopped.
    pub limit: Duration,
}

/// Runs `work` on `server` without the app lock: its records, or why it
/// could not run or failed.
pub async fn lockless(
    target: &AppTarget,
    (server, role): (&Server, &AppServer),
    work: &Lockless<'_>,
    connector: &dyn Connector,
) -> Result<Vec<Record>, String> {
    let origin = Origin {
        who: String::new(),
        trigger: super::Trigger::Cli,
    };
    let script = script(
        &target.app,
        role,
        work.body,
        "",
        &origin,
        work.vars,
        work.call,
    );
    let limit = work.limit;
    let transport = connector
        .connect(server)
        .await
        .map_err(|e| e.cause().to_string())?;
    let output = transport
        .run(&script, limit)
        .await
        .map_err(|e| e.cause().to_string())?;
    outcome(&output)
}

/// Runs `work` (without the app lock) on every server of `target`: per
/// server, its records or why it could not run.
pub async fn on_every_server(
    target: &AppTarget,
    connector: &dyn Connector,
    work: &Lockless<'_>,
) -> Vec<(ServerName, Result<Vec<Record>, String>)> {
    join_all(target.servers.iter().map(|(server, role)| async move {
        let result = lockless(target, (server, role), work, connector).await;
        (server.name.clone(), result)
    }))
    .await
}
