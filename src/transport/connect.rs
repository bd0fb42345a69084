//! The command both transports start to run a script, and how the script
//! travels to it.
//!
//! The script is written to the stdin of `bash -c RUNNER` (through `sudo -n`
//! when the user is not root). `RUNNER` reads the whole script before running
//! any of it, instead of `bash -s`, for three reasons:
//!
//! - with `bash -s` every command of the script shares bash's stdin, so a
//!   command that reads stdin (`apt-get`, `read`, a PHP CLI prompt) silently
//!   eats the rest of the script; `RUNNER` gives the script `/dev/null`;
//! - bash reads a script from a pipe one byte per `read(2)`, which makes a
//!   megabyte-sized upload take seconds; `$(cat)` reads in large blocks;
//! - a script cut short (the connection dropped while it was sent) must not
//!   run at all: `send` appends an end marker and `RUNNER` refuses a script
//!   without it, exiting with `INCOMPLETE_STATUS`.
//!
//! Nothing here may depend on which transport is used.

/// The last line `send` appends to every script; `RUNNER` checks for it.
const END_MARKER: &str = "#reconciler:end-of-script";

/// The exit status of `RUNNER` when the script did not arrive whole.
const INCOMPLETE_STATUS: i32 = 125;

/// The bash program that runs the script arriving on its stdin.
fn runner() -> String {
    format!(
        "reconciler_script=$(cat) && [[ $reconciler_script == *'{END_MARKER}' ]] \
         || {{ echo 'reconciler: the script did not arrive whole' >&2; exit {INCOMPLETE_STATUS}; }}; \
         exec </dev/null; eval \"$reconciler_script\""
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

/// What to write to the runner's stdin for `script`.
pub(super) fn send(script: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(script.len() + END_MARKER.len() + 2);
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
    fn the_sudo_runner_never_prompts() {
        assert_eq!(runner_command(false)[..3], ["sudo", "-n", "bash"]);
        assert_eq!(runner_command(true)[0], "bash");
    }
}
