//! An app's environment file, `/home/<app>/shared/.env`, on every server
//! (`reconciler env pull`, `push` and `diff`). Values are only ever shown
//! by `pull`, on its stdout: never in progress, errors or logs.

pub mod file;

use std::time::Duration;

use futures::future::join_all;

use crate::app::{
    AppError, AppTarget, COMMAND_LIMIT, Lockless, Origin, Progress, Session, Step, StepFailure,
    connect_all, lockless, unlock_all,
};
use crate::definitions::ServerName;
use crate::layout::AppPaths;
use crate::transport::{Connector, Input};

const ENV_SH: &str = include_str!("env.sh");

/// The largest environment file `pull` reads and `push` writes, in bytes.
pub const ENV_LIMIT: usize = 1024 * 1024;

/// The app's `shared/.env` on `server` (default: its first server).
pub async fn pull(
    target: &AppTarget,
    server: Option<&ServerName>,
    connector: &dyn Connector,
) -> Result<(ServerName, Vec<u8>), String> {
    let (server, role) = target
        .servers
        .iter()
        .find(|(s, _)| server.is_none_or(|name| &s.name == name))
        .ok_or_else(|| format!("{} does not run on that server", target.app.name))?;
    let work = Lockless {
        body: ENV_SH,
        vars: &[("ENV_LIMIT", ENV_LIMIT.to_string())],
        call: &["env_pull"],
        limit: Duration::from_secs(60),
    };
    let records = lockless(target, (server, role), &work, connector)
        .await
        .map_err(|e| format!("{}: {e}", server.name))?;
    // Decoded here: the content need not be text.
    crate::remote::first(&records, "env")
        .and_then(|r| r.base64(0))
        .map(|content| (server.name.clone(), content))
        .ok_or_else(|| format!("{}: the answer holds no file", server.name))
}

/// What made the new `.env` read again on one server (`push`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reread {
    /// The worker programs restarted (`shop-default`), as the app's
    /// program file names them.
    pub workers: Vec<String>,
    /// The php-fpm reloaded (`php8.2-fpm`) on a web server: its OPcache
    /// emptied.
    pub fpm: Option<String>,
    /// No release is live there: nothing runs the app, nothing restarted.
    pub no_release: bool,
}

/// Writes `content` to the app's `shared/.env` on every server, under the
/// app lock, then runs its `env_commands` where a release is live; then,
/// when `restart`, restarts the app's workers there and reloads the php-fpm
/// of its web servers (gracefully), so that nothing keeps the old values.
/// Returns what each server did of that.
pub async fn push(
    target: &AppTarget,
    content: &[u8],
    restart: bool,
    origin: &Origin,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<Vec<(ServerName, Reread)>, AppError> {
    if content.len() > ENV_LIMIT {
        return Err(AppError::Failed(StepFailure {
            server: ServerName::new("-"),
            step: Step::Env,
            output: format!(
                "the file is {} bytes, more than an environment file may be ({ENV_LIMIT})",
                content.len()
            ),
        }));
    }
    let session = Session::new(&target.app, ENV_SH, origin, progress)?;
    let hosts = connect_all(target, connector).await?;
    let locked = session.lock_all(hosts).await?;
    let size = content.len().to_string();
    let sum = crate::units::sha256(content);
    let app = &target.app;
    let results = join_all(locked.iter().map(|l| {
        let (size, sum, session) = (&size, &sum, &session);
        async move {
            let fail = |step| {
                let server = l.host.server.name.clone();
                move |output| StepFailure {
                    server,
                    step,
                    output,
                }
            };
            let found = session
                .step(
                    &l.host,
                    Step::Env,
                    &["env_push", size, sum],
                    Input::Bytes(content),
                    Duration::from_secs(90),
                )
                .await
                .map_err(fail(Step::Env))?;
            let live = crate::remote::first(&found, "skipped").is_none();
            if live && !app.env_commands.is_empty() {
                let limit = COMMAND_LIMIT.to_string();
                let current = AppPaths::new(&app.name).current;
                let mut call = vec![
                    "app_commands",
                    "env_commands",
                    limit.as_str(),
                    current.as_str(),
                ];
                call.extend(app.env_commands.iter().map(String::as_str));
                let total =
                    Duration::from_secs((COMMAND_LIMIT + 10) * app.env_commands.len() as u64);
                session
                    .step(&l.host, Step::EnvCommands, &call, Input::None, total)
                    .await
                    .map_err(fail(Step::EnvCommands))?;
            }
            let mut reread = Reread {
                no_release: !live,
                ..Reread::default()
            };
            if live && restart {
                let fpm = if l.host.role.web.is_some() {
                    format!("php{}-fpm", app.php)
                } else {
                    String::new()
                };
                let limit = Duration::from_secs(crate::app::worker_limit(&l.host.role) + 90);
                let records = session
                    .step(
                        &l.host,
                        Step::EnvRestart,
                        &["env_restart", &fpm],
                        Input::None,
                        limit,
                    )
                    .await
                    .map_err(fail(Step::EnvRestart))?;
                if let Some(r) = crate::remote::first(&records, "restarted") {
                    reread.workers = r.text(1).split_whitespace().map(str::to_owned).collect();
                }
                reread.fpm =
                    crate::remote::first(&records, "reloaded").map(|r| r.text(1).into_owned());
            }
            Ok::<(ServerName, Reread), StepFailure>((l.host.server.name.clone(), reread))
        }
    }))
    .await;
    unlock_all(locked).await;
    let mut done = Vec::new();
    for result in results {
        done.push(result.map_err(AppError::Failed)?);
    }
    Ok(done)
}
