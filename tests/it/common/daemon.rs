//! The real binary as a daemon on a loopback port, without servers:
//! `reconciler watch` or `reconciler serve` started by a test, its stderr
//! kept in a file, killed when dropped.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free port on loopback.
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// A running `reconciler` listening on `addr`, killed when dropped.
pub struct Daemon {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// Its stderr.
    pub log: PathBuf,
}

impl Daemon {
    /// Runs `reconciler <args> --listen ADDR`, with the soft limit of open
    /// files set to `nofile` when given, and waits until `ready` (a GET
    /// path) answers.
    pub fn start(args: &[&str], nofile: Option<u64>, ready: &str, log: &Path) -> Daemon {
        let addr = free_port();
        let binary = super::BIN;
        let mut command = match nofile {
            // The shell lowers the limit, then becomes reconciler (same pid).
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -Sn {n} && exec \"$0\" \"$@\""))
                    .arg(binary);
                c
            }
            None => Command::new(binary),
        };
        let child = command
            .args(args)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "reconciler=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("log"))
            .spawn()
            .expect("start reconciler");
        let daemon = Daemon {
            child: Some(child),
            addr,
            log: log.to_owned(),
        };
        let started = Instant::now();
        while !daemon.get(ready).is_ok_and(|r| r.status < 500) {
            if started.elapsed() > Duration::from_secs(20) {
                panic!("{ready} did not answer:\n{}", daemon.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        daemon
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn get(&self, path: &str) -> Result<super::HttpResponse, String> {
        super::http(self.addr, "GET", path, &[], b"")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many file descriptors the daemon has open.
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .count()
    }

    /// The soft and hard limits of open files, from `/proc/PID/limits`.
    pub fn nofile_limits(&self) -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid()))
            .expect("/proc/PID/limits");
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("Max open files");
        let words: Vec<&str> = line.split_whitespace().collect();
        (words[3].to_owned(), words[4].to_owned())
    }

    /// SIGTERM, then waits for the exit (SIGKILL after `limit`).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return status;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("did not stop within {limit:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A connection that sends `first` (maybe nothing, maybe half a request)
/// and then nothing more.
pub fn stall(addr: SocketAddr, first: &[u8]) -> TcpStream {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect to the daemon");
    stream.write_all(first).expect("write");
    stream
}

/// Waits until the server closes `stream` (a read gives end of file or a
/// reset) and returns when, or `None` if it is still open at `deadline`.
/// Whatever the server answers before closing is read and dropped.
pub fn closed_by_server(stream: &mut TcpStream, deadline: Instant) -> Option<Instant> {
    let mut buffer = [0u8; 4096];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("timeout");
        match stream.read(&mut buffer) {
            Ok(0) => return Some(Instant::now()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(Instant::now()), // reset: closed too
        }
    }
}
