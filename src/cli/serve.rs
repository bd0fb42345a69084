//! `reconciler serve` (the deploy webhook alone) and `reconciler
//! deploy-token`.

use super::output::{note, say};
use crate::Hint as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use anyhow::Context as _;

use crate::serve::{self, deploy};
use crate::transport::CachedConnector;

use super::target::SshArgs;
use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen, such as 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The deploy tokens file: `<app> <sha256 hex>` lines (see `deploy-token`).
    #[arg(long, value_name = "FILE", env = "RECONCILER_DEPLOY_TOKENS")]
    deploy_tokens: PathBuf,
    #[command(flatten)]
    definitions: DefinitionsDir,
    /// Where the app repositories are mirrored.
    #[arg(long, value_name = "DIR", env = "RECONCILER_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    #[command(flatten)]
    ssh: SshArgs,
}

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The app the token may deploy.
    app: String,
    /// The tokens file to add its hash to (made, private, if missing).
    #[arg(long, value_name = "FILE", env = "RECONCILER_DEPLOY_TOKENS")]
    deploy_tokens: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct JoinTokenArgs {
    /// The cluster the token may add elastic members to.
    cluster: String,
    /// The daemon's state directory (its join tokens are in `join-tokens`
    /// there, read on each request: no restart needed).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/reconciler-watch")]
    state_dir: PathBuf,
}

/// Reads the tokens file for `serve` or `watch`.
pub(super) fn tokens(path: &std::path::Path) -> Result<deploy::Tokens, Failure> {
    deploy::Tokens::read(path).map_err(|e| Failure::usage(e.to_string(), None))
}

pub fn run(args: ServeArgs) -> Result<ExitCode, Failure> {
    let limits = serve::Limits::for_open_files(serve::raise_open_files());
    let tokens = tokens(&args.deploy_tokens)?;
    let loaded = super::validate::load(&args.definitions)?;
    let options = args.ssh.options();
    options
        .check()
        .map_err(|e| Failure::usage(crate::error_chain(&e), e.hint()))?;
    let deployer = Arc::new(deploy::Deployer::new(
        tokens,
        Arc::new(RwLock::new(Some(Arc::new(loaded.definitions)))),
        Arc::new(CachedConnector::new(options)),
        args.cache_dir
            .clone()
            .unwrap_or_else(super::release::default_cache),
        Arc::new(serve::AuthGuard::default()),
        tokio_util::task::TaskTracker::new(),
    ));
    super::run_until_signal(async move {
        let listener = serve::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        note!("serving the deploy webhook on http://{}", args.listen);
        serve::serve(
            listener,
            serve::deploy_router(deployer),
            limits,
            std::future::pending(),
        )
        .await
        .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Random bytes in a deploy token (64 hex digits).
const TOKEN_BYTES: usize = 32;

pub fn run_token(args: TokenArgs) -> Result<ExitCode, Failure> {
    add_token("deploy", "an app", &args.app, &args.deploy_tokens)
}

pub fn run_join_token(args: JoinTokenArgs) -> Result<ExitCode, Failure> {
    let file = args.state_dir.join(crate::daemon::JOIN_TOKENS);
    add_token("join", "a cluster", &args.cluster, &file)
}

/// Makes a `kind` token (deploy, join) for `owner` (an app, a cluster),
/// appends its hash to `file` (made 0600 if missing) and prints it once.
fn add_token(
    kind: &str,
    owns: &str,
    owner: &str,
    file: &std::path::Path,
) -> Result<ExitCode, Failure> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // `*`: the dashboard's admin token, for every app's logs and actions.
    let admin = kind == "deploy" && owner == crate::serve::dashboard::session::ADMIN;
    if !admin && !crate::definitions::names::is_valid(owner) {
        return Err(Failure::usage(
            format!("`{owner}` is not {owns} name"),
            None,
        ));
    }
    let token =
        crate::secret::token(TOKEN_BYTES).with_context(|| format!("cannot make a {kind} token"))?;
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .with_context(|| format!("cannot open {}", file.display()))?;
    writeln!(out, "{}", deploy::Tokens::line(owner, &token))?;
    note!(
        "added a {kind} token for {owner} to {}; it is shown once, here:",
        file.display()
    );
    say!("{token}")?;
    Ok(ExitCode::SUCCESS)
}
