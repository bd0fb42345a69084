//! The command line: clap definitions, printing, and nothing else; every
//! pipeline lives in the library. Data goes to stdout, diagnostics to
//! stderr. Exit codes: 0 done, 1 failed (invalid definitions, unreachable
//! hosts), 2 usage errors or, with `plan --detailed-exitcode`, changes
//! pending; 130 and 143 when interrupted by SIGINT or SIGTERM.

mod apply;
mod completions;
mod env;
mod logs;
mod man;
mod members;
pub mod output;
mod plan;
mod provision;
mod release;
mod schema;
mod serve;
mod status;
mod target;
mod templates;
mod top;
mod validate;
mod watch;
mod windows;

use crate::text;
use output::note;
use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps fleets of PHP servers in the state a definitions repository describes.
///
/// The definitions directory holds clusters/*.yaml (servers, PHP versions,
/// request limits, php.ini, sessions, reload windows), apps/*.yaml (repo,
/// build steps, shared paths, FPM pools, workers, scheduler) and optional
/// template overrides in templates/.
#[derive(Debug, Parser)]
#[command(name = "reconciler", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to color the output (and the logs).
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto)]
    color: Color,
    /// Log what happens on stderr (-v for info, -vv for debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// How to write logs: text for people, json for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the definitions and templates; report every problem with its file, line and column.
    Validate(validate::Args),
    /// Write the JSON Schemas of cluster and app files, and of the plan,
    /// apply and status JSON output, for editors and CI.
    Schema(schema::Args),
    /// Write the embedded unit templates, to start an override from the
    /// real file (put it in the definitions' templates/ and edit it).
    Templates(templates::Args),
    /// Show what would change on each server, with diffs, without changing anything.
    ///
    /// Gathers facts from every selected server in one SSH round trip per
    /// host, renders what each should have, and prints the difference.
    Plan(plan::Args),
    /// List each cluster's next reload windows, in its timezone and in UTC.
    Windows(windows::Args),
    /// Follow a branch of the definitions repository and keep every server
    /// in step with it: the long-running GitOps loop.
    ///
    /// Each new commit is validated, planned and applied; an invalid commit
    /// is rejected whole and the last good one stays in force. Every
    /// --drift-interval each server is checked against the commit in
    /// force; in each reload window due php-fpm reloads happen, one server
    /// of a cluster at a time. With --listen it serves GET /v1/status, GET
    /// /metrics and POST /v1/hooks/git. SIGTERM and SIGINT stop it after
    /// the work in flight.
    Watch(watch::Args),
    /// Show what a watch daemon knows: its problems, the commit in force,
    /// rejected commits, each app's releases against the one it should
    /// run, and each server's last result, pending reloads and retries.
    ///
    /// Exits 1 when anything is not as the commit in force says (fetching
    /// fails, the branch is missing, the head was rejected, a server fails
    /// or drifted, an app's release failed or diverged), or when the
    /// status is stale (its daemon is not running, or it was not updated
    /// for three fetch intervals and a minute), so that it can serve as a
    /// check.
    Status(status::Args),
    /// Change what differs on each server: write files, validate, reload.
    ///
    /// Shows the plan first and asks for confirmation. On each host every
    /// change is staged with a backup; `nginx -t`, `php-fpm -t` and
    /// `supervisorctl reread` must accept the new files, or the backups come
    /// back and nothing is reloaded. An apply that has started finishes on
    /// the server even if reconciler is interrupted. php-fpm reloads wait
    /// for a reload window unless --now.
    Apply(apply::Args),
    /// Install the Debian packages each server needs for its roles, where
    /// missing: nginx and php<v>-fpm on web servers, php<v>-cli with the
    /// cluster's extensions and session store everywhere, supervisor, cron
    /// and composer where used, and the cluster's packages. Never removes
    /// or upgrades a package.
    Provision(provision::Args),
    /// Release a commit of an app to every server it runs on, with no
    /// request lost or torn.
    ///
    /// The commit is archived once from a local mirror of the app's repo,
    /// uploaded to every server in parallel and unpacked into
    /// /home/<app>/releases/<sha> (a release already complete there is
    /// reused); shared paths are linked in, composer and the
    /// release_commands run as the app with its PHP version, then each
    /// server's deploy_commands. Only when every server is ready does
    /// `current` switch, on all of them at once; workers restart and the
    /// health check runs through each web server's nginx. A failure before
    /// the switch changes nothing live; a failed health check switches
    /// every server back.
    Release(release::ReleaseArgs),
    /// Make an earlier release live again on every server of an app.
    Rollback(release::RollbackArgs),
    /// List an app's releases on each server: commit, time, live, result.
    Releases(release::ReleasesArgs),
    /// Serve the deploy webhook alone: POST /v1/deploy {"app", "revision"}
    /// with a bearer token releases that revision; GET /v1/deploys/<id>
    /// follows it. `watch --listen --deploy-tokens` serves the same routes.
    Serve(serve::ServeArgs),
    /// An app's environment file (shared/.env) on its servers: pull,
    /// push, or diff its keys (never its values).
    Env(env::Args),
    /// An app's logs from every server at once, merged by time: Laravel's
    /// and PHP's (shared/storage/logs), nginx errors, the FPM slow log and
    /// the workers' logs. --follow keeps showing new lines.
    Logs(logs::Args),
    /// Every app's requests on every web server, live: requests per
    /// second, the shares of 5xx and 4xx, and latency percentiles, from
    /// the access log each vhost writes (one round trip per server per
    /// view, reading only what is new). --once prints one view.
    Top(top::Args),
    /// Make a deploy token for an app: its hash is added to the tokens
    /// file, and the token itself printed once.
    DeployToken(serve::TokenArgs),
    /// Make a join token for a cluster's elastic members: its hash is added
    /// to the daemon's `<state-dir>/join-tokens`, and the token itself
    /// printed once.
    JoinToken(serve::JoinTokenArgs),
    /// List a cluster's elastic members and their states, from the daemon.
    Servers(members::ServersArgs),
    /// Add an elastic member to a cluster through the daemon (as `POST
    /// /v1/clusters/<cluster>/servers`); `servers` follows its state.
    Join(members::JoinArgs),
    /// Make an elastic member leave: no release or reload goes to it any more.
    Leave(members::LeaveArgs),
    // Their help is their Args' doc comment.
    Completions(completions::Args),
    Man(man::Args),
}

/// Where the definitions are: `-d DIR`, the current directory by default;
/// and the elastic members of a daemon, if they count.
#[derive(Debug, clap::Args)]
struct DefinitionsDir {
    /// The definitions directory (with clusters/ and apps/).
    #[arg(short = 'd', long = "dir", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// A watch daemon's state directory (its `--state-dir`): its ready
    /// elastic members count as servers of their clusters, reached with
    /// the host keys it keeps for them. Without it they are left out.
    #[arg(long, value_name = "STATE_DIR", env = "RECONCILER_ELASTIC_MEMBERS")]
    elastic_members: Option<PathBuf>,
}

/// Why a command did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// Already reported on stderr; exit with this code.
    Reported(ExitCode),
    /// The command line is wrong: exit 2.
    Usage {
        /// What is wrong with it, printed after `error: `.
        message: String,
        /// What to write instead, printed on a `hint:` line.
        hint: Option<String>,
    },
    /// Anything else: exit 1.
    Error(anyhow::Error),
}

impl Failure {
    fn usage(message: impl Into<String>, hint: Option<&str>) -> Self {
        Failure::Usage {
            message: message.into(),
            hint: hint.map(str::to_owned),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::Error(error.into())
    }
}

/// The binary's whole life: parses the command line, runs the command,
/// reports an error on stderr and returns the exit code (0, 1 on an error,
/// 2 on a wrong command line, or what the command chose).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.color {
        Color::Auto => anstream::ColorChoice::Auto,
        Color::Always => anstream::ColorChoice::Always,
        Color::Never => anstream::ColorChoice::Never,
    };
    let verbose = match &cli.command {
        // The daemon says what it does by default.
        Command::Watch(_) => cli.verbose.max(1),
        _ => cli.verbose,
    };
    init_logging(verbose, cli.color, cli.log_format);
    let result = match cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Templates(args) => templates::run(args),
        Command::Windows(args) => windows::run(args),
        Command::Watch(args) => watch::run(args),
        Command::Status(args) => status::run(args),
        Command::Plan(args) => plan::run(args, color),
        Command::Apply(args) => apply::run(args, color),
        Command::Provision(args) => provision::run(args),
        Command::Release(args) => release::run_release(args),
        Command::Rollback(args) => release::run_rollback(args),
        Command::Releases(args) => release::run_releases(args),
        Command::Serve(args) => serve::run(args),
        Command::DeployToken(args) => serve::run_token(args),
        Command::JoinToken(args) => serve::run_join_token(args),
        Command::Servers(args) => members::run_servers(args),
        Command::Join(args) => members::run_join(args),
        Command::Leave(args) => members::run_leave(args),
        Command::Env(args) => env::run(args),
        Command::Logs(args) => logs::run(args),
        Command::Top(args) => top::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Reported(code)) => code,
        Err(Failure::Usage { message, hint }) => {
            note!("error: {message}");
            if let Some(hint) = hint {
                note!("  hint: {hint}");
            }
            ExitCode::from(2)
        }
        // `| head`: the reader has what it wanted.
        Err(Failure::Error(error)) if output::is_closed_pipe(&error) => ExitCode::SUCCESS,
        Err(Failure::Error(error)) => {
            note!("error: {}", text::visible(&error.to_string()));
            for cause in error.chain().skip(1) {
                note!("  caused by: {}", text::visible(&cause.to_string()));
            }
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8, color: Color, format: LogFormat) {
    let default = match verbose {
        0 => "warn",
        1 => "reconciler=info",
        _ => "reconciler=debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

/// Runs a release or rollback (`work`, given the stop it heeds) on a
/// runtime. The first SIGINT or SIGTERM asks it to stop (`release::Stop`:
/// before its switch it stops and cleans up; after, it finishes its health
/// check and goes back if that fails); a second one leaves at once, and
/// the servers' in-flight records let the next release or the daemon put
/// them right.
fn run_until_stopped<F>(work: impl FnOnce(crate::release::Stop) -> F) -> Result<ExitCode, Failure>
where
    F: Future<Output = Result<ExitCode, Failure>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let stop = crate::release::Stop::new();
    let result = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let work = work(stop.clone());
        tokio::pin!(work);
        loop {
            let code: u8 = tokio::select! {
                result = &mut work => break result,
                _ = tokio::signal::ctrl_c() => 130,
                _ = terminate.recv() => 143,
            };
            if stop.is_cancelled() {
                note!(
                    "\nleft at once: a server may run a release that was not checked; \
                     `reconciler releases` shows it, and the next release, rollback or the \
                     daemon's check puts it right"
                );
                break Err(Failure::Reported(ExitCode::from(code)));
            }
            stop.cancel();
            note!(
                "\nstopping: a release that has not switched stops and removes what it \
                 prepared; one that has switched finishes its health check, and goes back \
                 if that fails (interrupt again to leave at once)"
            );
        }
    });
    runtime.shutdown_background();
    result
}

/// Runs `work` on a runtime until it ends or SIGINT/SIGTERM arrives. On a
/// signal the work is dropped, which closes every SSH master connection
/// (an apply already started finishes on its server by itself).
fn run_until_signal<F>(work: F) -> Result<ExitCode, Failure>
where
    F: Future<Output = Result<ExitCode, Failure>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => {
                note!("\ninterrupted: work already started on a server finishes there");
                Err(Failure::Reported(ExitCode::from(130)))
            }
            _ = terminate.recv() => {
                note!("terminated: work already started on a server finishes there");
                Err(Failure::Reported(ExitCode::from(143)))
            }
        }
    });
    // A confirmation prompt may still block a thread; do not wait for it.
    runtime.shutdown_background();
    result
}
