//! `reconciler watch`.

use crate::Hint as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::Notify;

use crate::definitions::values::{HumanDuration, Syntax as _};
use crate::serve::{self, AppState, AuthGuard};
use crate::transport::CachedConnector;
use crate::watch::{Backoff, Board, Drift, GitSource, Status, Watch, WatchOptions};

use super::Failure;
use super::target::SshArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriftArg {
    /// Apply what a drift check finds.
    Correct,
    /// Only report it (log, status, metrics).
    Warn,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The definitions repository: a path, or an ssh or https URL.
    #[arg(long, value_name = "URL_OR_PATH")]
    repo: String,
    /// The branch to follow.
    #[arg(long, default_value = "main")]
    branch: String,
    /// How often to fetch the branch, such as 30s or 5m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration)]
    interval: Duration,
    /// How often to check every server against the commit in force.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration)]
    drift_interval: Duration,
    /// What to do with changes a drift check finds.
    #[arg(long, value_enum, default_value_t = DriftArg::Correct)]
    drift: DriftArg,
    /// Where the daemon keeps its clone of the definitions and its status.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/reconciler-watch")]
    state_dir: PathBuf,
    /// Serve status, metrics and the git hook on this address, such as
    /// 127.0.0.1:8700.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// A file with the shared secret of the git hook (POST /v1/hooks/git);
    /// without it the hook is off.
    #[arg(long, value_name = "FILE")]
    hook_secret_file: Option<PathBuf>,
    /// The deploy tokens file (`<app> <sha256 hex>` lines, see
    /// `deploy-token`): with --listen, POST /v1/deploy releases apps.
    #[arg(long, value_name = "FILE", env = "RECONCILER_DEPLOY_TOKENS")]
    deploy_tokens: Option<PathBuf>,
    /// How many servers to work on at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

fn duration(text: &str) -> Result<Duration, String> {
    match HumanDuration::parse(text) {
        Ok(d) if d.0 >= Duration::from_secs(1) => Ok(d.0),
        Ok(_) => Err("at least 1s".into()),
        Err(e) => Err(format!("{e}; such as 30s, 5m or 1h")),
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    // SSH connections and the listener share this limit.
    let limits = serve::Limits::for_open_files(serve::raise_open_files());
    let mut connect = args.ssh.options();
    connect
        .check()
        .map_err(|e| Failure::usage(crate::error_chain(&e), e.hint()))?;
    connect.keep_warm = true;
    let tokens = match &args.deploy_tokens {
        Some(path) => Some(super::serve::tokens(path)?),
        None => None,
    };
    let hook_secret = match &args.hook_secret_file {
        Some(path) => {
            let secret = std::fs::read(path)
                .with_context(|| format!("cannot read the hook secret `{}`", path.display()))?;
            let secret = String::from_utf8_lossy(&secret).trim().as_bytes().to_vec();
            if secret.len() < 16 {
                return Err(Failure::usage(
                    format!(
                        "the hook secret in `{}` is shorter than 16 bytes",
                        path.display()
                    ),
                    Some("generate one with `openssl rand -hex 32`"),
                ));
            }
            Some(Arc::new(secret))
        }
        None => None,
    };
    create_private_dir(&args.state_dir)?;
    let status_path = args.state_dir.join("status.json");
    let resume = std::fs::read(&status_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Status>(&bytes).ok())
        .filter(|s| s.repo == crate::redact::url(&args.repo) && s.branch == args.branch)
        .and_then(|s| s.last_good.map(|g| g.commit));
    let board = Arc::new(Board::new(&args.repo, &args.branch, Some(status_path)));
    let connector: Arc<CachedConnector> = Arc::new(CachedConnector::new(connect));
    let guard = Arc::new(AuthGuard::new(board.auth_failures()));
    let deployer = tokens.map(|tokens| {
        Arc::new(serve::deploy::Deployer::new(
            tokens,
            Arc::clone(&board.definitions),
            Arc::clone(&connector) as Arc<dyn crate::transport::Connector>,
            args.state_dir.join("apps"),
            Arc::clone(&guard),
        ))
    });
    let fetch_now = Arc::new(Notify::new());
    let watch = Watch {
        source: Box::new(GitSource::new(
            &args.repo,
            &args.branch,
            args.state_dir.join("definitions.git"),
        )),
        connector: Arc::clone(&connector) as Arc<dyn crate::transport::Connector>,
        options: WatchOptions {
            interval: args.interval,
            drift_interval: args.drift_interval,
            drift: match args.drift {
                DriftArg::Correct => Drift::Correct,
                DriftArg::Warn => Drift::Warn,
            },
            parallel: usize::from(args.parallel),
            holder: format!("watch {}", crate::converge::holder()),
            backoff: Backoff::default(),
            resume,
            apps_cache: Some(args.state_dir.join("apps")),
        },
        board: Arc::clone(&board),
        clock: Arc::new(chrono::Utc::now),
        fetch_now: Arc::clone(&fetch_now),
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let server = match args.listen {
            Some(addr) => {
                let listener = serve::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr}"))?;
                tracing::info!(
                    %addr,
                    max_connections = limits.max_connections,
                    "serving status, metrics and the git hook"
                );
                let mut router = serve::router(AppState {
                    board,
                    fetch_now,
                    hook_secret,
                    guard,
                });
                if let Some(deployer) = deployer {
                    router = router.merge(serve::deploy_router(deployer));
                }
                Some(tokio::spawn(serve::serve(
                    listener,
                    router,
                    limits,
                    until_stopped(stopped.clone()),
                )))
            }
            None => None,
        };
        let signals = async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping: no new work; what is in flight finishes");
            let _ = stop.send(true);
            Ok::<(), std::io::Error>(())
        };
        let signals = tokio::spawn(signals);
        let repo = crate::redact::url(&args.repo);
        tracing::info!(%repo, branch = %args.branch, "watching");
        watch.run(until_stopped(stopped)).await;
        signals.abort();
        if let Some(server) = server {
            let _ = server.await;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn create_private_dir(dir: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state directory `{}`", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make `{}` private", dir.display()))?;
    Ok(())
}
