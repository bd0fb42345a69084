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

pub mod protocol;
mod script;

pub use protocol::{ProtocolError, Record};
pub use script::{PREAMBLE, Script};

/// The shell library every script gets: `record`, `report`, `run_step`,
/// `as_app`, `replace_file`, the lock record and `http_status`.
pub const LIB: &str = include_str!("lib.sh");

/// Records whose kind is `kind`.
pub fn of_kind<'a>(records: &'a [Record], kind: &'a str) -> impl Iterator<Item = &'a Record> {
    records.iter().filter(move |r| r.kind == kind)
}

/// The first record of `kind`.
pub fn first<'a>(records: &'a [Record], kind: &str) -> Option<&'a Record> {
    records.iter().find(|r| r.kind == kind)
}
