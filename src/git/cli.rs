//! Cloning and fetching a mirror with the git CLI.
//!
//! gix inflates every object of a received pack whole while it indexes the
//! pack: a tiny repository holding a 1 GiB file of zeros took a GiB of
//! memory (and minutes) before any size limit could refuse it. git's
//! `index-pack` streams a blob over `core.bigFileThreshold` through a
//! fixed buffer instead, so the transfer runs here and everything else
//! (refs, trees, archives) stays on gix.
//!
//! The URL never reaches an argument list (which any local user can read
//! in `/proc`): git gets it through `GIT_CONFIG_*` variables as the URL of
//! a remote that exists only for the command, and the user and password
//! of an https URL are taken out of it and handed to git by a credential
//! helper that reads them from the environment of the git process.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The remote name the fetch command defines through its environment; a
/// mirror's own `origin` (made by an older clone) is never read.
const REMOTE: &str = "reconciler-source";

/// What the mirror keeps: the remote's branches as remote-tracking
/// branches and its tags as they are, both pruned (`--prune`) so that a
/// moved tag moves and a deleted branch or tag goes.
const REFSPECS: [&str; 2] = [
    "+refs/heads/*:refs/remotes/origin/*",
    "+refs/tags/*:refs/tags/*",
];

/// Bytes of git's error output kept for an error message.
const STDERR_LIMIT: usize = 8 * 1024;

/// How long one clone or fetch may take in all before it is stopped (its
/// whole process group killed) and fails: a remote that stops answering
/// must not hold the daemon's loop, or a release, for ever.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// An http(s) transfer slower than `STALL_BYTES` bytes a second for this
/// long fails (git's `http.lowSpeedLimit` and `http.lowSpeedTime`), well
/// before `FETCH_TIMEOUT`.
const STALL_SECONDS: &str = "60";
const STALL_BYTES: &str = "1000";

/// Blobs over this many bytes are streamed by `index-pack`, not inflated
/// whole in memory (`core.bigFileThreshold`).
const BIG_FILE_THRESHOLD: &str = "1m";

/// Makes a bare mirror of `url` at `path` (which must not exist): `git
/// init` and a first fetch in a new directory beside it, renamed to `path`
/// once complete, so that a failed clone leaves nothing that looks like a
/// mirror. The clone fails after `timeout` (see `FETCH_TIMEOUT`).
pub(super) fn clone_bare(url: &str, path: &Path, timeout: Duration) -> Result<(), BoxError> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let staging = tempfile::Builder::new()
        .prefix(".clone-")
        .tempdir_in(parent)?;
    let mut init = Command::new("git");
    init.args(["init", "--bare", "--quiet"]).arg(staging.path());
    run(init, timeout)?;
    fetch(url, staging.path(), timeout)?;
    std::fs::rename(staging.path(), path)?;
    Ok(())
}

/// Fetches `url` into the bare mirror at `mirror`: the branches into
/// `refs/remotes/origin/*`, the tags into `refs/tags/*`, each pruned of
/// what the remote no longer has. A transfer that stalls (see
/// `STALL_SECONDS`) or takes over `timeout` fails, its git processes
/// killed.
pub(super) fn fetch(url: &str, mirror: &Path, timeout: Duration) -> Result<(), BoxError> {
    let source = Source::of(url)?;
    let mut config: Vec<(String, String)> = vec![
        (format!("remote.{REMOTE}.url"), source.url.clone()),
        // A pack of any size is kept and indexed (`index-pack` streams big
        // blobs), never unpacked into loose objects.
        ("fetch.unpackLimit".into(), "1".into()),
        ("core.bigFileThreshold".into(), BIG_FILE_THRESHOLD.into()),
        // No repack in the background: gix fetched without one too.
        ("gc.auto".into(), "0".into()),
        ("maintenance.auto".into(), "false".into()),
        // The transports gix spoke, and no other (`ext::` runs commands).
        ("protocol.allow".into(), "never".into()),
        // Only the helper below answers for credentials.
        ("credential.helper".into(), String::new()),
        ("http.lowSpeedLimit".into(), STALL_BYTES.into()),
        ("http.lowSpeedTime".into(), STALL_SECONDS.into()),
    ];
    for protocol in ["file", "git", "ssh", "http", "https"] {
        config.push((format!("protocol.{protocol}.allow"), "always".into()));
    }
    let mut command = Command::new("git");
    if let Some((origin, user, password)) = &source.credentials {
        config.push((
            format!("credential.{origin}.helper"),
            "!f() { test \"$1\" = get || exit 0; \
             printf 'username=%s\\npassword=%s\\n' \
             \"$RECONCILER_GIT_USERNAME\" \"$RECONCILER_GIT_PASSWORD\"; }; f"
                .into(),
        ));
        command
            .env("RECONCILER_GIT_USERNAME", user)
            .env("RECONCILER_GIT_PASSWORD", password);
    }
    command.env("GIT_CONFIG_COUNT", config.len().to_string());
    for (i, (key, value)) in config.iter().enumerate() {
        command
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .arg("--git-dir")
        .arg(mirror)
        .args([
            "fetch",
            "--quiet",
            "--prune",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            REMOTE,
        ])
        .args(REFSPECS);
    run(command, timeout)
}

/// Removes the `origin` remote an older clone (gix, before the git CLI
/// took over transfers) wrote into the mirror's config at `mirror`, with
/// the URL it was cloned from, credentials and all; nothing reads it, and
/// a URL's password must live nowhere but in the definitions. A mirror
/// without it is left untouched (no git process).
pub(super) fn forget_origin(mirror: &Path) -> Result<(), BoxError> {
    let config = std::fs::read(mirror.join("config"))?;
    if !config
        .windows(ORIGIN_SECTION.len())
        .any(|w| w == ORIGIN_SECTION)
    {
        return Ok(());
    }
    let mut command = Command::new("git");
    command
        .arg("--git-dir")
        .arg(mirror)
        .args(["config", "--remove-section", "remote.origin"]);
    run(command, Duration::from_secs(30))
}

/// How git writes the section `forget_origin` removes.
const ORIGIN_SECTION: &[u8] = b"[remote \"origin\"]";

/// A repository URL split for git: the URL without credentials, and for an
/// http(s) URL with a user (and password), the `scheme://host[:port]` they
/// are for, the user and the password, percent-decoded.
struct Source {
    url: String,
    credentials: Option<(String, String, String)>,
}

impl Source {
    fn of(url: &str) -> Result<Self, BoxError> {
        let plain = || Source {
            url: url.to_owned(),
            credentials: None,
        };
        let Some((scheme, after)) = url.split_once("://") else {
            return Ok(plain());
        };
        if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
            return Ok(plain());
        }
        let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(authority_end);
        let Some((userinfo, host)) = authority.rsplit_once('@') else {
            return Ok(plain());
        };
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        let (user, password) = (
            crate::redact::percent_decode(user),
            crate::redact::percent_decode(password),
        );
        // The credential helper's answer is one line per value.
        if user.contains(['\n', '\0']) || password.contains(['\n', '\0']) {
            return Err("the URL's user or password holds a line break".into());
        }
        let origin = format!("{scheme}://{host}");
        Ok(Source {
            url: format!("{origin}{rest}"),
            credentials: Some((origin, user, password)),
        })
    }
}

/// Runs `command` (git) without a terminal, in a process group of its
/// own; its error output, when it fails, is the error (its first
/// `STDERR_LIMIT` bytes; the caller scrubs it). Past `timeout` the whole
/// group (git and the transport helpers it started) is killed and the run
/// fails saying so.
fn run(mut command: Command, timeout: Duration) -> Result<(), BoxError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        // Where the repository is comes from the arguments only.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_NAMESPACE");
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run git: {e}"))?;
    // Read on a thread of its own: a hung git keeps the pipe open.
    let reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let room = STDERR_LIMIT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
            kept
        })
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            // Not reaped yet, so the group's id is still this child's.
            if let Some(group) = i32::try_from(child.id())
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            child.wait()?;
            return Err(format!(
                "git did not finish in {} s and was stopped",
                timeout.as_secs()
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader
        .map(|r| r.join().unwrap_or_default())
        .unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&stderr);
    let text = text.trim();
    Err(if text.is_empty() {
        format!("git {status}").into()
    } else {
        format!("git {status}: {text}").into()
    })
}
