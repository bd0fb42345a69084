//! `reconciler env pull|push|diff`: an app's `shared/.env` on its servers.
//! Values go nowhere but `pull`'s stdout: never to logs or errors.

use super::output::{note, say};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::{Origin, Trigger};
use crate::definitions::ServerName;
use crate::env::{self, file as envfile};

use super::release::{Lines, connector, target};
use super::target::SshArgs;
use super::{DefinitionsDir, Failure};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: EnvCommand,
}

#[derive(Debug, clap::Subcommand)]
enum EnvCommand {
    /// Print the app's shared/.env (from its first server, or --server).
    Pull {
        app: String,
        #[arg(long, value_name = "NAME")]
        server: Option<String>,
        #[command(flatten)]
        definitions: DefinitionsDir,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Write FILE to the app's shared/.env on every server (the app's,
    /// 0600, atomically), then run its env_commands where a release is live,
    /// restart its workers and reload its web servers' php-fpm (graceful:
    /// it empties OPcache, which otherwise keeps serving a config compiled
    /// from the old values).
    Push {
        app: String,
        file: PathBuf,
        /// Restart and reload nothing: the old values stay live in the
        /// workers and in OPcache until they restart.
        #[arg(long)]
        no_restart: bool,
        #[command(flatten)]
        definitions: DefinitionsDir,
        #[command(flatten)]
        ssh: SshArgs,
    },
    /// Show which keys FILE adds (+), changes (~) or removes (-) on each
    /// server; never a value. Exits 2 when some server differs.
    Diff {
        app: String,
        file: PathBuf,
        #[command(flatten)]
        definitions: DefinitionsDir,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

/// What a server did so that the new values are read, for a person.
fn reread_text(reread: &env::Reread, no_restart: bool) -> String {
    if reread.no_release {
        return "no release is live: nothing runs with the old values".into();
    }
    if no_restart {
        return "nothing restarted (--no-restart): the workers and OPcache keep the old \
                values until they restart"
            .into();
    }
    let mut done = Vec::new();
    if !reread.workers.is_empty() {
        done.push(format!("restarted workers {}", reread.workers.join(", ")));
    }
    if let Some(fpm) = &reread.fpm {
        done.push(format!("reloaded {fpm} (its OPcache emptied)"));
    }
    if done.is_empty() {
        return "no workers and no site here: nothing to restart".into();
    }
    done.join("; ")
}

fn read(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    let content = std::fs::read(file)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display()), None))?;
    if content.len() > 1024 * 1024 {
        return Err(Failure::usage(
            format!("{} is over 1 MiB: not an environment file", file.display()),
            None,
        ));
    }
    Ok(content)
}

pub fn run(args: Args) -> Result<ExitCode, Failure> {
    match args.command {
        EnvCommand::Pull {
            app,
            server,
            definitions,
            ssh,
        } => {
            let target = target(&definitions, &app)?;
            let connector = connector(&ssh)?;
            let server = server.map(ServerName::new);
            super::run_until_signal(async {
                match env::pull(&target, server.as_ref(), &connector).await {
                    Ok((_, content)) => {
                        std::io::stdout().write_all(&content)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        note!("error: {}", crate::text::visible(&e));
                        Ok(ExitCode::FAILURE)
                    }
                }
            })
        }
        EnvCommand::Push {
            app,
            file,
            no_restart,
            definitions,
            ssh,
        } => {
            let content = read(&file)?;
            let target = target(&definitions, &app)?;
            let connector = connector(&ssh)?;
            let origin = Origin {
                who: crate::converge::holder(),
                trigger: Trigger::Env,
            };
            let lines = Lines::new();
            super::run_until_signal(async {
                match env::push(&target, &content, !no_restart, &origin, &connector, &lines).await {
                    Ok(servers_done) => {
                        let keys = envfile::parse(&String::from_utf8_lossy(&content)).len();
                        let servers: Vec<String> = target
                            .servers
                            .iter()
                            .map(|(s, _)| s.name.to_string())
                            .collect();
                        say!("{app}: .env with {keys} keys is on {}", servers.join(", "))?;
                        for (server, reread) in &servers_done {
                            say!("{server}: {}", reread_text(reread, no_restart))?;
                        }
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        super::output::report(&e, None);
                        Ok(ExitCode::FAILURE)
                    }
                }
            })
        }
        EnvCommand::Diff {
            app,
            file,
            definitions,
            ssh,
        } => {
            let content = String::from_utf8_lossy(&read(&file)?).into_owned();
            let target = target(&definitions, &app)?;
            let connector = connector(&ssh)?;
            super::run_until_signal(async {
                let mut code = ExitCode::SUCCESS;
                let mut out = std::io::stdout().lock();
                for (server, _) in &target.servers {
                    match env::pull(&target, Some(&server.name), &connector).await {
                        Ok((_, now)) => {
                            let changes = envfile::diff(&String::from_utf8_lossy(&now), &content);
                            if changes.is_empty() {
                                writeln!(out, "{}: no key changes", server.name)?;
                                continue;
                            }
                            code = ExitCode::from(2);
                            writeln!(out, "{}:", server.name)?;
                            for (change, key) in changes {
                                writeln!(out, "  {} {key}", change.sign())?;
                            }
                        }
                        Err(e) => {
                            note!("{}", crate::text::visible(&e));
                            code = ExitCode::FAILURE;
                        }
                    }
                }
                Ok(code)
            })
        }
    }
}
