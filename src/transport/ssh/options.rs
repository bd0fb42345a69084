//! How reconciler's `ssh` is set up: options of the master connection, and
//! where its control socket lives (and what killed runs left there).

use std::path::{Path, PathBuf};
use std::time::Duration;

use openssh::{ControlPersist, KnownHosts, SessionBuilder};

use super::{MASTER_IDLE, SERVER_ALIVE_INTERVAL};
use crate::definitions::Server;
use crate::transport::ConnectOptions;

pub(super) fn session_builder(server: &Server, options: &ConnectOptions) -> SessionBuilder {
    let mut builder = SessionBuilder::default();
    builder
        .user(server.user.clone())
        .port(server.port)
        // An elastic member's key is its own file's: checked strictly,
        // unless its cluster accepts a new key and it has none yet.
        .known_hosts_check(match &server.known_hosts {
            Some(member) if member.accept_new => KnownHosts::Add,
            Some(_) => KnownHosts::Strict,
            None if options.accept_new_host_keys => KnownHosts::Add,
            None => KnownHosts::Strict,
        })
        .connect_timeout(whole_seconds(options.connect_timeout))
        .server_alive_interval(SERVER_ALIVE_INTERVAL)
        .control_persist(match std::num::NonZeroUsize::new(MASTER_IDLE as usize) {
            Some(idle) => ControlPersist::IdleFor(idle),
            None => ControlPersist::ClosedAfterInitialConnection,
        })
        .control_directory(control_directory());
    let member = server.known_hosts.as_ref().map(|m| &m.file);
    if let Some(known_hosts) = member.or(options.known_hosts.as_ref()) {
        builder.user_known_hosts_file(known_hosts);
    }
    if let Some(identity) = &options.identity {
        builder.keyfile(identity);
    }
    builder
}

/// `ssh` takes whole seconds, and 0 would mean no timeout at all: round up.
fn whole_seconds(duration: Duration) -> Duration {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    Duration::from_secs(seconds.max(1))
}

/// The longest control directory path: a Unix socket path holds at most 104
/// bytes on macOS (108 on Linux), and ssh binds
/// `<dir>/.ssh-connectionXXXXXX/master.<16 random characters>`.
const MAX_CONTROL_DIRECTORY: usize = 103 - "/.ssh-connectionXXXXXX/master.XXXXXXXXXXXXXXXX".len();

/// Where `openssh` makes the fresh private (0700) directory holding the
/// master's control socket: the first of $XDG_RUNTIME_DIR and the temp dir
/// whose path is short enough, else /tmp.
pub(super) fn control_directory() -> PathBuf {
    let fits = |dir: &Path| {
        dir.is_absolute() && dir.as_os_str().len() <= MAX_CONTROL_DIRECTORY && dir.is_dir()
    };
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([std::env::temp_dir()])
        .find(|dir| fits(dir))
        .unwrap_or_else(|| PathBuf::from("/tmp"))
}

/// Removes the control directories that masters of killed reconcilers left
/// behind (a master that outlived its reconciler exits `MASTER_IDLE` later,
/// but its directory stays). Only directories of this user, at least a
/// minute old, whose master socket no longer answers: never a live one,
/// nor one a parallel connect is just setting up.
pub(super) fn sweep_stale_control_directories(dir: &Path) {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(60));
        let ours = Some(meta.uid()) == me && meta.is_dir();
        let named = entry
            .file_name()
            .to_string_lossy()
            .starts_with(".ssh-connection");
        if !(ours && named && old) {
            continue;
        }
        let live = std::fs::read_dir(&path)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("master"))
            .any(|e| std::os::unix::net::UnixStream::connect(e.path()).is_ok());
        if !live {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(
            whole_seconds(Duration::from_millis(1500)),
            Duration::from_secs(2)
        );
        assert_eq!(whole_seconds(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            whole_seconds(Duration::from_secs(10)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn control_socket_path_fits_in_sun_path() {
        assert!(control_directory().as_os_str().len() <= MAX_CONTROL_DIRECTORY);
    }
}
