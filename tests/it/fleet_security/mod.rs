//! The attacks of the security review, run against the test fleet. Each
//! was reproduced on the fleet before the fix; the app-user attacks run as
//! the app's Unix user on the server (`setpriv`), as the app's own code
//! would. These tests change the shared servers fleet-1..3, so nextest
//! runs no other fleet test on their fleet beside them.

use crate::common;

use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::apps::{as_app, web_app};
use common::{Repo, install_release};
use reconciler::converge::{self, ReconcileOptions, Selection};
use reconciler::definitions::{DefinitionFiles, ServerName};
use reconciler::transport::{self, ConnectOptions};

mod applies;
mod files;
