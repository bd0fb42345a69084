//! reconciler's integration tests, in one binary: the CLI on the shipped
//! examples and on hostile inputs, the daemon's HTTP side, and everything
//! that crosses SSH against the test fleet (real servers in Docker,
//! `tests/fleet/fleet up 4`; `tests/run` starts it). Fleet tests are
//! `#[ignore = "needs the test fleet: ..."]`; the modules named `fleet_*`
//! (and `demo`) share a fleet's servers: no two run on one fleet at once
//! (`tests/run` starts two fleets, one per slot of `.config/nextest.toml`). `common` is the one harness: running the
//! binary, the fleet, fixture repositories.

mod common;

mod alerts;
mod auth;
mod cli;
mod cli_output;
mod cli_release;
mod console;
mod credentials;
mod dashboard;
mod definitions;
mod demo;
mod fleet_converge;
mod fleet_cross_app;
mod fleet_framing;
mod fleet_laravel;
mod fleet_logs;
mod fleet_package;
mod fleet_provision;
mod fleet_release;
mod fleet_restarts;
mod fleet_security;
mod fleet_sessions;
mod fleet_smoke;
mod fleet_watch;
mod fleet_windows;
mod install;
mod listener;
mod serve;
mod transport;
mod validate_errors;
