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
