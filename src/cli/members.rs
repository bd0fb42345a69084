//! `reconciler servers`, `join` and `leave`: the daemon's elastic member
//! routes (`/v1/clusters/<cluster>/servers`) from a terminal. They print
//! the daemon's JSON answer on stdout, and exit 1 with its error when it
//! refuses.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use super::Failure;
use super::output::say;

/// Which daemon, and the cluster's join token.
#[derive(Debug, clap::Args)]
pub struct Daemon {
    /// The daemon's listener (`watch --listen`).
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8700",
        env = "RECONCILER_URL"
    )]
    url: String,
    /// The cluster's join token (`join-token`); best given in the
    /// environment, where `ps` does not show it.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "RECONCILER_JOIN_TOKEN",
        hide_env_values = true
    )]
    token: String,
}

#[derive(Debug, clap::Args)]
pub struct ServersArgs {
    /// The cluster whose elastic members to list.
    cluster: String,
    #[command(flatten)]
    daemon: Daemon,
}

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The cluster to join.
    cluster: String,
    /// The new member's name (unique across all clusters).
    name: String,
    /// Its host name or IP address.
    #[arg(long)]
    address: String,
    /// Its SSH port (default: the cluster template's).
    #[arg(long)]
    port: Option<u16>,
    /// Its SSH host public key file, such as a copy of its
    /// `/etc/ssh/ssh_host_ed25519_key.pub`. Only a cluster whose `elastic`
    /// sets `accept_new_host_keys` takes a join without it.
    #[arg(long, value_name = "FILE")]
    host_key_file: Option<PathBuf>,
    #[command(flatten)]
    daemon: Daemon,
}

#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    /// The member's cluster.
    cluster: String,
    /// The member (a second `leave` removes the record of one that left).
    name: String,
    #[command(flatten)]
    daemon: Daemon,
}

pub fn run_servers(args: ServersArgs) -> Result<ExitCode, Failure> {
    let path = format!("/v1/clusters/{}/servers", segment(&args.cluster)?);
    call(&args.daemon, "GET", &path, "")
}

pub fn run_join(args: JoinArgs) -> Result<ExitCode, Failure> {
    let key = match &args.host_key_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?,
        ),
        None => None,
    };
    let body = serde_json::json!({
        "name": args.name,
        "address": args.address,
        "port": args.port,
        "host_key": key.as_deref().map(str::trim),
    });
    let path = format!("/v1/clusters/{}/servers", segment(&args.cluster)?);
    call(&args.daemon, "POST", &path, &body.to_string())
}

pub fn run_leave(args: LeaveArgs) -> Result<ExitCode, Failure> {
    let path = format!(
        "/v1/clusters/{}/servers/{}",
        segment(&args.cluster)?,
        segment(&args.name)?
    );
    call(&args.daemon, "DELETE", &path, "")
}

/// A name as one path segment: names are `[a-z0-9-]`, so anything else
/// is refused rather than escaped.
fn segment(name: &str) -> Result<&str, Failure> {
    if crate::definitions::names::is_valid(name) {
        Ok(name)
    } else {
        Err(Failure::usage(
            format!("`{}` is not a name", name.escape_debug()),
            None,
        ))
    }
}

/// Sends one request over plain HTTP (the daemon listens on loopback) and
/// prints the answer's body.
fn call(daemon: &Daemon, method: &str, path: &str, body: &str) -> Result<ExitCode, Failure> {
    let shown = crate::redact::url(&daemon.url);
    let Some(host) = daemon
        .url
        .strip_prefix("http://")
        .map(|h| h.trim_end_matches('/'))
    else {
        return Err(Failure::usage(
            format!("`{shown}` is not an http:// URL"),
            None,
        ));
    };
    let token = daemon.token.trim();
    if token.contains(['\r', '\n']) {
        return Err(Failure::usage("the token is not one line", None));
    }
    let mut stream =
        TcpStream::connect(host).with_context(|| format!("cannot connect to `{shown}`"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let Some((head, body)) = response.split_once("\r\n\r\n") else {
        return Err(anyhow::anyhow!("`{shown}` did not answer HTTP").into());
    };
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status.starts_with('2') {
        say!("{body}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let error = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned());
    Err(anyhow::anyhow!(
        "the daemon answered {status}: {}",
        crate::text::visible(&error)
    )
    .into())
}
