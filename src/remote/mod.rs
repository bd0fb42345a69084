//! The one kit for scripts reconciler runs on servers.
//!
//! Every remote script (gathering facts, applying, releasing, provisioning)
//! is built the same way (`Script`): a preamble, the values it works on as
//! single-quoted header variables (the layout's paths first), the shared
//! shell library (`lib.sh`), its body (a static, commented shell file of
//! functions, such as `facts/gather.sh`), and one call. Rust decides and
//! quotes; the shell executes.
//!
//! Every script answers in one protocol (`protocol`): records that no byte
//! of an app-made name can break, written only by the library's `record`
//! on the script's stdout, while everything else the script and its
//! commands print goes to stderr. One parser reads them all.
//!
//! Nothing here knows what a script does: that belongs to its module.
//! What is shared is how a failed script is explained: `system_cause`
//! finds the server's own reason (a full disk) in what it printed, so that
//! every path that reports the failure names it.

pub mod protocol;
mod script;

pub use protocol::{ProtocolError, Record};
pub use script::{PREAMBLE, Script};

/// The shell library every script gets: `record`, `report`, `run_step`,
/// `as_app`, `replace_file`, the lock record, `http_status` and `fastcgi`.
pub const LIB: &str = include_str!("lib.sh");

/// Records whose kind is `kind`.
pub fn of_kind<'a>(records: &'a [Record], kind: &'a str) -> impl Iterator<Item = &'a Record> {
    records.iter().filter(move |r| r.kind == kind)
}

/// The first record of `kind`.
pub fn first<'a>(records: &'a [Record], kind: &str) -> Option<&'a Record> {
    records.iter().find(|r| r.kind == kind)
}

/// Errors of the server's operating system that explain a failed script
/// by themselves: the server, not the change, is what needs attention.
/// The words are strerror's, as commands print them.
const SYSTEM_CAUSES: &[&str] = &[
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Input/output error",
    "Cannot allocate memory",
    "Too many open files",
];

/// The first of the server's own errors (see `SYSTEM_CAUSES`: a full
/// disk, a read-only file system, ...) in `output`, what a failed script
/// and its commands printed, in strerror's words; `None` when it names
/// none of them. A path that turns a failed script into one line adds it
/// to that line (`with_system_cause`), so the cause is not left behind in
/// output only some reports show.
pub fn system_cause(output: &str) -> Option<&'static str> {
    SYSTEM_CAUSES
        .iter()
        .filter_map(|cause| output.find(cause).map(|at| (at, *cause)))
        .min()
        .map(|(_, cause)| cause)
}

/// `message`, followed by `: ` and the server's own error found in
/// `output` (`system_cause`) when the message does not name it already.
pub fn with_system_cause(message: String, output: &str) -> String {
    match system_cause(output) {
        Some(cause) if !message.contains(cause) => format!("{message}: {cause}"),
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_system_error_in_the_output_is_the_cause() {
        let output = "cat: write error: No space left on device\n\
                      mv: cannot move: Read-only file system\n";
        assert_eq!(system_cause(output), Some("No space left on device"));
        assert_eq!(system_cause("nginx: [emerg] unknown directive"), None);
        assert_eq!(
            with_system_cause("the apply script stopped without a report".into(), output),
            "the apply script stopped without a report: No space left on device"
        );
        assert_eq!(
            with_system_cause("cannot write x: No space left on device".into(), output),
            "cannot write x: No space left on device",
            "named once"
        );
    }
}
