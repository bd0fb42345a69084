//! The command both real transports start to run a script, and how the
//! script travels to it.
//!
//! The script is written to the stdin of `bash -c RUNNER` (through `sudo -n`
//! when the user is not root), after a line with its length. `RUNNER` reads
//! the whole script before running any of it, instead of `bash -s`, for
//! three reasons:
//!
//! - with `bash -s` every command of the script shares bash's stdin, so a
//!   command that reads stdin (`apt-get`, `read`, a PHP CLI prompt) silently
//!   eats the rest of the script; `RUNNER` gives the script `/dev/null`;
//! - bash reads a script from a pipe one byte per `read(2)`, which makes a
//!   megabyte-sized upload take seconds; `head -c` reads in large blocks
//!   (and never past the length);
//! - a script cut short (the connection dropped while it was sent) must not
//!   run at all: `send` appends an end marker and `RUNNER` refuses a script
//!   without it, exiting with `INCOMPLETE_STATUS`.
//!
//! What follows the script on stdin is the script's file descriptor 3: the
//! bytes of an upload (`Transport::run_with`), or nothing until the client
//! lets go of a script that holds something (`Transport::hold`).
//!
//! Nothing here may depend on which transport is used.

/// The last line `send` appends to every script; `RUNNER` checks for it.
const END_MARKER: &str = "#reconciler:end-of-script";

/// The exit status of `RUNNER` when the script did not arrive whole.
const INCOMPLETE_STATUS: i32 = 125;

/// The bash program that runs the script arriving on its stdin.
fn runner() -> String {
    format!(
        "IFS= read -r reconciler_length && [[ $reconciler_length =~ ^[0-9]{{1,12}}$ ]] \
         && reconciler_script=$(head -c \"$reconciler_length\") \
         && [[ $reconciler_script == *'{END_MARKER}' ]] \
         || {{ echo 'reconciler: the script did not arrive whole' >&2; exit {INCOMPLETE_STATUS}; }}; \
         exec 3<&0 </dev/null; eval \"$reconciler_script\""
    )
}

/// Program and arguments that run the script written to their stdin as root:
/// `bash` directly for root, through `sudo -n` (never prompting) otherwise.
pub(super) fn runner_command(as_root: bool) -> Vec<String> {
    let mut argv = Vec::with_capacity(5);
    if !as_root {
        argv.extend(["sudo".to_owned(), "-n".to_owned()]);
    }
    argv.extend(["bash".to_owned(), "-c".to_owned(), runner()]);
    argv
}

/// What the runner printed, and whether the script went in whole.
pub(super) struct Exchanged {
    /// The error writing the script, if the runner stopped reading early
    /// (it then ran nothing).
    pub written: std::io::Result<()>,
    /// The error reading its output, if any.
    pub read: std::io::Result<()>,
    /// What the script wrote to stdout.
    pub stdout: Vec<u8>,
    /// What it wrote to stderr.
    pub stderr: Vec<u8>,
}

/// Sends `script` to the runner's stdin, then `input` (the script's file
/// descriptor 3), and reads its stdout and stderr until both end, for at
/// most `limit`; on the limit, what arrived so far comes back in
/// `ScriptTimeout`. Closing stdin ends fd 3.
pub(super) async fn exchange(
    stdin: Option<impl tokio::io::AsyncWrite + Unpin>,
    mut stdout_pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    mut stderr_pipe: Option<impl tokio::io::AsyncRead + Unpin>,
    script: &str,
    input: super::Input<'_>,
    limit: std::time::Duration,
) -> Result<Exchanged, super::TransportError> {
    use tokio::io::AsyncWriteExt as _;
    let sent = send(script);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let both = async {
        let write = async move {
            match stdin {
                Some(mut stdin) => {
                    stdin.write_all(&sent).await?;
                    match input {
                        super::Input::None => {}
                        super::Input::Bytes(bytes) => stdin.write_all(bytes).await?,
                        super::Input::File(path) => {
                            let mut file = tokio::fs::File::open(path).await?;
                            tokio::io::copy(&mut file, &mut stdin).await?;
                        }
                    }
                    stdin.shutdown().await
                }
                None => Ok(()),
            }
        };
        let (written, out, err) = tokio::join!(
            write,
            read_all(stdout_pipe.as_mut(), &mut stdout, super::MAX_STDOUT),
            read_all(stderr_pipe.as_mut(), &mut stderr, super::MAX_STDERR)
        );
        (written, out.and(err))
    };
    match tokio::time::timeout(limit, both).await {
        Ok((written, read)) => Ok(Exchanged {
            written,
            read,
            stdout,
            stderr,
        }),
        Err(_) => Err(super::TransportError::ScriptTimeout {
            after: limit,
            partial: super::Output {
                status: None,
                stdout,
                stderr,
            },
        }),
    }
}

/// A script started by `hold`: it printed `HELD_MARKER`, or it ended.
pub(super) enum Started {
    /// What it printed before its `held` record; it now waits for fd 3 to
    /// end.
    Held(Vec<u8>),
    /// It ended without the marker: all it printed.
    Ended(Vec<u8>),
}

/// Sends `script` (keeping stdin, the script's fd 3, open) and reads its
/// records up to its `held` record or its end, for at most `limit`. The
/// record is found by reading records, so that no field can pass for it.
pub(super) async fn start_holding(
    stdin: &mut (impl tokio::io::AsyncWrite + Unpin),
    stdout: &mut (impl tokio::io::AsyncBufRead + Unpin),
    script: &str,
    limit: std::time::Duration,
) -> Result<Started, super::TransportError> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut printed = Vec::new();
    let start = async {
        stdin.write_all(&send(script)).await?;
        stdin.flush().await?;
        let mut chunk = [0u8; 8192];
        loop {
            let n = stdout.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(Started::Ended(std::mem::take(&mut printed)));
            }
            printed.extend_from_slice(&chunk[..n]);
            if printed.len() > super::MAX_STDOUT {
                return Err(std::io::Error::other(
                    "the script printed too much before holding",
                ));
            }
            let held = crate::remote::protocol::find(&printed, "held")
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(record) = held {
                // What follows the record is read when the script ends.
                printed.truncate(record.start);
                return Ok(Started::Held(std::mem::take(&mut printed)));
            }
        }
    };
    match tokio::time::timeout(limit, start).await {
        Ok(Ok(started)) => Ok(started),
        Ok(Err(err)) => Err(super::TransportError::other(format!(
            "cannot start the script: {err}"
        ))),
        Err(_) => Err(super::TransportError::ScriptTimeout {
            after: limit,
            partial: super::Output {
                status: None,
                stdout: printed,
                stderr: Vec::new(),
            },
        }),
    }
}

/// Reads the rest of a script's stdout and stderr, for at most `limit`.
pub(super) async fn finish_reading(
    stdout: &mut (impl tokio::io::AsyncRead + Unpin),
    stderr: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: std::time::Duration,
) -> Result<(Vec<u8>, Vec<u8>), super::TransportError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let both = async {
        let (a, b) = tokio::join!(
            read_all(Some(stdout), &mut out, super::MAX_STDOUT),
            read_all(Some(stderr), &mut err, super::MAX_STDERR)
        );
        a.and(b)
    };
    match tokio::time::timeout(limit, both).await {
        Ok(Ok(())) => Ok((out, err)),
        Ok(Err(e)) => Err(super::TransportError::other(format!(
            "cannot read the script's output: {e}"
        ))),
        Err(_) => Err(super::TransportError::ScriptTimeout {
            after: limit,
            partial: super::Output {
                status: None,
                stdout: out,
                stderr: err,
            },
        }),
    }
}

/// Reads `stream` to its end into `into`, which keeps what arrived even
/// when the caller gives up half-way (a script that timed out); more than
/// `max` bytes is an error, and no more is read.
async fn read_all<R: tokio::io::AsyncRead + Unpin>(
    stream: Option<&mut R>,
    into: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<()> {
    use tokio::io::AsyncReadExt as _;
    if let Some(stream) = stream {
        let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
        stream.take(limit).read_to_end(into).await?;
        if into.len() > max {
            return Err(std::io::Error::other(format!(
                "the script printed more than {} MiB",
                max / (1024 * 1024)
            )));
        }
    }
    Ok(())
}

/// What to write to the runner's stdin for `script`: its length, then the
/// script and the end marker.
fn send(script: &str) -> Vec<u8> {
    let length = script.len() + END_MARKER.len() + 2;
    let mut bytes = format!("{length}\n").into_bytes();
    bytes.reserve(length);
    bytes.extend_from_slice(script.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(END_MARKER.as_bytes());
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// Runs the runner with the local bash, as the current user, on `stdin`.
    fn through_runner(stdin: &[u8]) -> std::process::Output {
        let argv = runner_command(true);
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bash");
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(stdin).expect("write the script");
        drop(pipe);
        child.wait_with_output().expect("wait for bash")
    }

    #[test]
    fn runs_the_script_and_keeps_its_exit_status() {
        let out = through_runner(&send("echo out; echo err >&2; exit 3"));
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
    }

    #[test]
    fn commands_reading_stdin_cannot_eat_the_rest_of_the_script() {
        let out = through_runner(&send("head -c 5 >/dev/null\necho still here"));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");
        assert!(out.status.success());
    }

    #[test]
    fn a_script_cut_short_does_not_run_at_all() {
        let whole = send("echo first\necho second");
        let out = through_runner(&whole[..whole.len() - 5]);
        assert_eq!(out.status.code(), Some(INCOMPLETE_STATUS));
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn what_follows_the_script_is_its_fd_3() {
        let stdin = [
            send("head -c 3 <&3; echo; cat; echo end").as_slice(),
            b"abcdef",
        ]
        .concat();
        let out = through_runner(&stdin);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "abc\nend\n");
        assert!(out.status.success());
    }

    #[test]
    fn a_bad_length_line_runs_nothing() {
        for stdin in [&b"12x\necho hi\n"[..], b"\n", b""] {
            let out = through_runner(stdin);
            assert_eq!(out.status.code(), Some(INCOMPLETE_STATUS), "{stdin:?}");
            assert!(out.stdout.is_empty());
        }
    }

    #[test]
    fn the_sudo_runner_never_prompts() {
        assert_eq!(runner_command(false)[..3], ["sudo", "-n", "bash"]);
        assert_eq!(runner_command(true)[0], "bash");
    }
}
