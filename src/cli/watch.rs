//! `reconciler watch`.

use crate::Hint as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::daemon;
use crate::definitions::values::{HumanDuration, Syntax as _};
use crate::watch::Drift;

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
    #[arg(long, value_name = "URL_OR_PATH", env = "RECONCILER_REPO")]
    repo: String,
    /// The branch to follow.
    #[arg(long, default_value = "main", env = "RECONCILER_BRANCH")]
    branch: String,
    /// How often to fetch the branch, such as 30s or 5m.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = duration, env = "RECONCILER_INTERVAL")]
    interval: Duration,
    /// How often to check every server against the commit in force.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration, env = "RECONCILER_DRIFT_INTERVAL")]
    drift_interval: Duration,
    /// How often to read every web server's access logs for the
    /// `reconciler_http_requests_total` metric (one round trip per web
    /// server, reading what is new); `0s` turns it off.
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = traffic_interval, env = "RECONCILER_TRAFFIC_INTERVAL")]
    traffic_interval: Duration,
    /// What to do with changes a drift check finds.
    #[arg(long, value_enum, default_value_t = DriftArg::Correct, env = "RECONCILER_DRIFT")]
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
    #[arg(long, value_name = "FILE", env = "RECONCILER_HOOK_SECRET_FILE")]
    hook_secret_file: Option<PathBuf>,
    /// The deploy tokens file (`<app> <sha256 hex>` lines, see
    /// `deploy-token`): with --listen, POST /v1/deploy releases apps.
    #[arg(long, value_name = "FILE", env = "RECONCILER_DEPLOY_TOKENS")]
    deploy_tokens: Option<PathBuf>,
    /// The notify URLs file: one `NAME URL` a line, the webhook each
    /// `notify:` target named NAME posts to (kept out of the definitions:
    /// URLs are secrets); without it nothing is notified.
    #[arg(long, value_name = "FILE", env = "RECONCILER_NOTIFY_URLS")]
    notify_urls: Option<PathBuf>,
    /// How long a ready elastic member may fail before it is marked `lost`
    /// (and no longer worked on).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = duration, env = "RECONCILER_ELASTIC_GRACE")]
    elastic_grace: Duration,
    /// How many servers to work on at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=256))]
    parallel: u16,
    #[command(flatten)]
    ssh: SshArgs,
}

fn traffic_interval(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" || text.trim() == "0s" {
        return Ok(Duration::ZERO);
    }
    duration(text)
}

pub(super) fn duration(text: &str) -> Result<Duration, String> {
    match HumanDuration::parse(text) {
        Ok(d) if d.0 >= Duration::from_secs(1) => Ok(d.0),
        Ok(_) => Err("at least 1s".into()),
        Err(e) => Err(format!("{e}; such as 30s, 5m or 1h")),
    }
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    let connect = args.ssh.options();
    connect
        .check()
        .map_err(|e| Failure::usage(crate::error_chain(&e), e.hint()))?;
    let deploy_tokens = match &args.deploy_tokens {
        Some(path) => Some(super::serve::tokens(path)?),
        None => None,
    };
    let notify_urls = match &args.notify_urls {
        Some(path) => Some(crate::notify::Urls::read(path)?),
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
            Some(secret)
        }
        None => None,
    };
    daemon::run(daemon::Config {
        repo: args.repo,
        branch: args.branch,
        interval: args.interval,
        drift_interval: args.drift_interval,
        traffic_interval: (!args.traffic_interval.is_zero()).then_some(args.traffic_interval),
        drift: match args.drift {
            DriftArg::Correct => Drift::Correct,
            DriftArg::Warn => Drift::Warn,
        },
        state_dir: args.state_dir,
        listen: args.listen,
        hook_secret,
        deploy_tokens,
        notify_urls,
        parallel: usize::from(args.parallel),
        connect,
        elastic_grace: args.elastic_grace,
    })?;
    Ok(ExitCode::SUCCESS)
}
