//! The daemon, `reconciler watch`: the loop that keeps every server in
//! step with a branch of the definitions repository (`watch`), and its
//! listener (`serve`: status, metrics, the git hook, the deploy webhook),
//! wired together over the status board (`board`) they share and one set
//! of background jobs. Neither of the two imports the other; this module
//! imports both, and the CLI only turns its arguments into a `Config`.
//!
//! SIGTERM or SIGINT stops it: no new work starts, the listener stops
//! accepting, and the hosts and background jobs in flight finish.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::board::{Board, Status};
use crate::serve::{self, AppState, AuthGuard};
use crate::transport::{CachedConnector, ConnectOptions, Connector};
use crate::watch::{Backoff, Drift, GitSource, Watch, WatchOptions};

/// What the daemon runs with, from the command line.
#[derive(Debug)]
pub struct Config {
    /// The definitions repository: a path, an ssh or https URL (which may
    /// carry credentials; the status shows it redacted).
    pub repo: String,
    /// The branch of `repo` it follows.
    pub branch: String,
    /// How often the branch is fetched; the status is written at least
    /// this often.
    pub interval: Duration,
    /// How often each server is checked against the commit in force.
    pub drift_interval: Duration,
    /// How often to read the web servers' access logs for the request
    /// metrics; `None`: never.
    pub traffic_interval: Option<Duration>,
    /// What a drift check does with the changes it finds: correct them,
    /// or only report them.
    pub drift: Drift,
    /// Its clone of the definitions, its status, the app mirrors and the
    /// deploy webhook's records (`deploys/`); made private (0700).
    pub state_dir: PathBuf,
    /// Where the listener answers, if anywhere.
    pub listen: Option<SocketAddr>,
    /// The git hook's shared secret; without it the hook is off.
    pub hook_secret: Option<Vec<u8>>,
    /// The deploy webhook's tokens; without them it is off.
    pub deploy_tokens: Option<serve::Tokens>,
    /// The notify targets' URLs; without them nothing is notified.
    pub notify_urls: Option<crate::notify::Urls>,
    /// Servers worked on at once.
    pub parallel: usize,
    /// How SSH connections are made (keys, known hosts, timeouts); the
    /// daemon keeps them warm whatever this says.
    pub connect: ConnectOptions,
    /// How long a ready elastic member may stay unreachable before it is
    /// marked `lost`.
    pub elastic_grace: Duration,
}

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The state directory could not be made, or made private (0700).
    #[error("cannot create the state directory `{}`", .path.display())]
    StateDir {
        /// The state directory (`Config::state_dir`).
        path: PathBuf,
        /// Why `create_dir_all` or `chmod` failed.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the state directory's lock (`watch.lock`).
    #[error("another `reconciler watch` uses the state directory `{}`", .path.display())]
    Busy {
        /// The state directory (`Config::state_dir`).
        path: PathBuf,
    },
    /// The state directory's lock file could not be opened or locked.
    #[error("cannot lock the state directory `{}`", .path.display())]
    Lock {
        /// The lock file, `<state dir>/watch.lock`.
        path: PathBuf,
        /// Why opening or `flock` failed.
        #[source]
        source: std::io::Error,
    },
    /// The listener could not bind its address.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address it was given (`Config::listen`).
        addr: SocketAddr,
        /// Why binding failed (in use, not permitted).
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime could not be built.
    #[error("cannot start the runtime")]
    Runtime(#[source] std::io::Error),
    /// The elastic members' store (`<state dir>/elastic`) could not be
    /// opened or read.
    #[error("cannot open the elastic members")]
    Members(#[source] crate::elastic::StoreError),
}

/// Runs the daemon until SIGTERM or SIGINT, then until the work in flight
/// is done. Blocks.
pub fn run(mut config: Config) -> Result<(), DaemonError> {
    // SSH connections and the listener share this limit.
    let limits = serve::Limits::for_open_files(serve::raise_open_files());
    config.connect.keep_warm = true;
    create_private_dir(&config.state_dir)?;
    // Held until the daemon returns: its state directory is its alone.
    let _owner = own_state_dir(&config.state_dir)?;
    let status_path = config.state_dir.join("status.json");
    let resume = std::fs::read(&status_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Status>(&bytes).ok())
        .filter(|s| s.repo == crate::redact::url(&config.repo) && s.branch == config.branch)
        .and_then(|s| s.last_good.map(|g| g.commit));
    let board = Arc::new(Board::new(&config.repo, &config.branch, Some(status_path)));
    board.update(chrono::Utc::now(), |s| {
        s.daemon = Some(crate::board::DaemonInfo {
            pid: std::process::id(),
            interval_seconds: config.interval.as_secs(),
            drift_interval_seconds: config.drift_interval.as_secs(),
        });
    });
    let connector: Arc<dyn Connector> = Arc::new(CachedConnector::new(config.connect.clone()));
    let guard = Arc::new(AuthGuard::new(board.auth_failures()));
    let tasks = TaskTracker::new();
    // Cancelled by SIGTERM or SIGINT: releases that have not switched
    // stop; those that have finish (or go back).
    let stop = crate::release::Stop::new();
    let notifier = config
        .notify_urls
        .take()
        .map(|urls| crate::notify::Notifier::new(urls, board.notify_failures(), tasks.clone()));
    let deployer = config.deploy_tokens.take().map(|tokens| {
        Arc::new(
            serve::deploy::Deployer::new(
                tokens,
                Arc::clone(&board.definitions),
                Arc::clone(&connector),
                config.state_dir.join("apps"),
                Arc::clone(&guard),
                tasks.clone(),
            )
            .stopped_by(stop.clone())
            .notifying(notifier.clone())
            .recorded_in(config.state_dir.join("deploys")),
        )
    });
    let members = Arc::new(
        crate::elastic::Members::open(&config.state_dir.join("elastic"))
            .map_err(DaemonError::Members)?,
    );
    {
        let board = Arc::clone(&board);
        members.observe(Box::new(move |all| board.members(all)));
    }
    // Membership changes and the loop's takes share the definitions in
    // force through the members, under one lock.
    members.publish_to(Arc::clone(&board.definitions));
    let holder = format!("watch {}", crate::converge::holder());
    let joins = Arc::new(serve::elastic::Elastic {
        joiner: Arc::new(crate::elastic::join::Joiner {
            members: Arc::clone(&members),
            definitions: Arc::clone(&board.definitions),
            connector: Arc::clone(&connector),
            cache: config.state_dir.join("apps"),
            holder: holder.clone(),
            stop: stop.clone(),
            tasks: tasks.clone(),
        }),
        tokens: config.state_dir.join(JOIN_TOKENS),
        guard: Arc::clone(&guard),
    });
    let sweep_connector = Arc::clone(&connector);
    let fetch_now = Arc::new(Notify::new());
    let watch = Watch {
        source: Box::new(GitSource::new(
            &config.repo,
            &config.branch,
            config.state_dir.join("definitions.git"),
        )),
        connector,
        options: WatchOptions {
            interval: config.interval,
            drift_interval: config.drift_interval,
            traffic_interval: config.traffic_interval,
            drift: config.drift,
            parallel: config.parallel,
            holder,
            backoff: Backoff::default(),
            resume,
            apps_cache: Some(config.state_dir.join("apps")),
            members: Some(Arc::clone(&members)),
        },
        board: Arc::clone(&board),
        clock: Arc::new(chrono::Utc::now),
        fetch_now: Arc::clone(&fetch_now),
        stop: stop.clone(),
        notifier,
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let board_for_sweep = Arc::clone(&board);
    runtime.block_on(async move {
        let stop_releases = stop;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let server = match config.listen {
            Some(addr) => {
                let listener = serve::bind(addr)
                    .await
                    .map_err(|source| DaemonError::Listen { addr, source })?;
                tracing::info!(
                    %addr,
                    max_connections = limits.max_connections,
                    "serving status, metrics and the git hook"
                );
                let mut router = serve::router(AppState {
                    board: Arc::clone(&board),
                    fetch_now,
                    hook_secret: config.hook_secret.map(Arc::new),
                    guard,
                });
                if let Some(deployer) = deployer {
                    // The deploy tokens sign in to the dashboard's logs
                    // and actions too.
                    router = router.merge(serve::dashboard::console::router(Arc::new(
                        serve::dashboard::console::Console {
                            deployer: Arc::clone(&deployer),
                            board: Arc::clone(&board),
                            sessions: serve::dashboard::session::Sessions::default(),
                        },
                    )));
                    router = router.merge(serve::deploy_router(deployer));
                }
                router = router.merge(serve::elastic::router(joins));
                Some(tokio::spawn(serve::serve(
                    listener,
                    router,
                    limits,
                    until_stopped(stopped.clone()),
                )))
            }
            None => None,
        };
        let release_stop = stop_releases.clone();
        let signals = tokio::spawn(async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("stopping: no new work; what is in flight finishes");
            release_stop.cancel();
            let _ = stop.send(true);
            Ok::<(), std::io::Error>(())
        });
        let sweeper = tokio::spawn(crate::elastic::sweep_lost(
            members,
            board_for_sweep,
            sweep_connector,
            config.elastic_grace,
        ));
        let repo = crate::redact::url(&config.repo);
        tracing::info!(%repo, branch = %config.branch, "watching");
        watch.run(until_stopped(stopped)).await;
        signals.abort();
        sweeper.abort();
        if let Some(server) = server {
            let _ = server.await;
        }
        tasks.close();
        if !tasks.is_empty() {
            tracing::info!(
                jobs = tasks.len(),
                "stopping: waiting for the background jobs"
            );
        }
        tasks.wait().await;
        Ok(())
    })
}

/// Takes `dir/watch.lock` (an advisory lock the kernel drops when the
/// process ends, however it ends), so that no two daemons share a state
/// directory, then removes the lock files a killed daemon left in its git
/// mirrors (`git::clear_stale_locks`): nothing else uses them.
fn own_state_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, DaemonError> {
    use nix::fcntl::{Flock, FlockArg};
    let path = dir.join("watch.lock");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| DaemonError::Lock {
            path: path.clone(),
            source,
        })?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => locked,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            return Err(DaemonError::Busy {
                path: dir.to_owned(),
            });
        }
        Err((_, errno)) => {
            return Err(DaemonError::Lock {
                path,
                source: errno.into(),
            });
        }
    };
    let apps = std::fs::read_dir(dir.join("apps"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path());
    for mirror in std::iter::once(dir.join("definitions.git")).chain(apps) {
        for removed in crate::git::clear_stale_locks(&mirror) {
            tracing::warn!(file = %removed.display(), "removed a lock file a stopped daemon left");
        }
    }
    Ok(file)
}

/// The join tokens file in the state directory (`reconciler join-token`):
/// `<cluster> <sha256 hex of the token>` lines.
pub const JOIN_TOKENS: &str = "join-tokens";

fn create_private_dir(dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt as _;
    let failed = |source| DaemonError::StateDir {
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(failed)
}
