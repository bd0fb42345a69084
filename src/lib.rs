//! reconciler keeps fleets of PHP servers in the state a definitions
//! repository describes: it gathers facts over SSH, plans the difference, and
//! applies only what differs.

pub mod apply;
pub mod cli;
pub mod converge;
pub mod definitions;
pub mod facts;
pub mod fsutil;
pub mod plan;
pub mod schemas;
pub mod shell;
pub mod transport;
pub mod units;

/// An error and its causes on one line, `outer: cause: root cause`, for
/// reports that show one line per host.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(cause.to_string().trim());
        source = cause.source();
    }
    text
}
