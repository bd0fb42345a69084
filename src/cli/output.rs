//! How commands print: data to stdout, diagnostics to stderr, and errors
//! with their hint rendered in one place.
//!
//! `println!` panics when stdout is a closed pipe (`reconciler validate |
//! head -0`); `say!` returns the error instead, and `main` ends a command
//! whose stdout was closed quietly, with exit 0, as `head` means it.
//! `note!` writes to stderr and never fails a command.

use std::io::{self, Write as _};

/// Writes a line of a command's data to stdout; `Err` when stdout is
/// closed. Use as `say!("...", args)?`.
macro_rules! say {
    () => {
        $crate::cli::output::out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes a line for a person to stderr; a closed stderr is ignored.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::cli::output::err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {note, say};

/// Writes `args` to stdout.
pub fn out(args: std::fmt::Arguments<'_>) -> io::Result<()> {
    let mut stdout = io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()
}

/// Writes `args` to stderr, ignoring errors.
pub fn err(args: std::fmt::Arguments<'_>) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Reports `error` on stderr: `error: <it and its causes, on one line>`,
/// with the credentials of `url` (when given) scrubbed and control
/// characters made visible, then its hint (`crate::Hint`) on a line of
/// its own. Every error the CLI shows of the library goes through here.
pub fn report<E: std::error::Error + crate::Hint + 'static>(error: &E, url: Option<&str>) {
    let mut text = crate::error_chain(error);
    if let Some(url) = url {
        text = crate::redact::scrub(&text, url);
    }
    note!("error: {}", crate::text::visible(&text));
    if let Some(hint) = error.hint() {
        note!("  hint: {hint}");
    }
}

/// Whether `error` comes from writing to a closed stdout.
pub fn is_closed_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
