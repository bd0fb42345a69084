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
    use std::os::unix::fs::OpenOptionsExt as _;
    if !crate::definitions::names::is_valid(&args.app) {
        return Err(Failure::usage(
            format!("`{}` is not an app name", args.app),
            None,
        ));
    }
    let token = crate::secret::token(TOKEN_BYTES).context("cannot make a deploy token")?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&args.deploy_tokens)
        .with_context(|| format!("cannot open {}", args.deploy_tokens.display()))?;
    writeln!(file, "{}", deploy::Tokens::line(&args.app, &token))?;
    note!(
        "added a deploy token for {} to {}; it is shown once, here:",
        args.app,
        args.deploy_tokens.display()
    );
    say!("{token}")?;
    Ok(ExitCode::SUCCESS)
}
