//! Rules for one server role of an app (`servers[i]` in an app file): its
//! web pool's sizes, deploy commands and workers.

use super::{
    At, FirstSeen, MAX_POOL_WORKERS, MAX_PROCESSES, MAX_STOP_WAIT, MAX_WORKERS_PER_SERVER,
};
use crate::definitions::model::{App, AppServer, WebPool};

pub(super) fn check_role(at: &mut At, app: &App, path: &str, role: &AppServer) {
    if let Some(pool) = &role.web {
        check_pool(at, &format!("{path}.web"), pool);
        if app.domains.is_empty() {
            at.error_at_key(
                &format!("{path}.web"),
                "a web role needs the app to have `domains`",
            );
        }
    }
    for (j, command) in role.deploy_commands.iter().enumerate() {
        at.command(&format!("{path}.deploy_commands[{j}]"), command);
    }
    if role.workers.len() > MAX_WORKERS_PER_SERVER {
        at.error_at_key(
            &format!("{path}.workers"),
            format!(
                "{} workers on one server; at most {MAX_WORKERS_PER_SERVER}",
                role.workers.len()
            ),
        );
    }
    let mut seen = FirstSeen::default();
    for (j, worker) in role.workers.iter().enumerate() {
        let worker_path = format!("{path}.workers[{j}]");
        at.name(&format!("{worker_path}.name"), worker.name.as_str());
        at.unique(
            &mut seen,
            &format!("{worker_path}.name"),
            worker.name.as_str(),
            "worker",
        );
        if worker.command.trim().is_empty() {
            at.error(
                &format!("{worker_path}.command"),
                "a worker needs a command",
            );
        }
        at.command(&format!("{worker_path}.command"), &worker.command);
        at.range(
            &format!("{worker_path}.processes"),
            "processes",
            worker.processes,
            1,
            MAX_PROCESSES,
        );
        at.range(
            &format!("{worker_path}.stop_wait"),
            "stop_wait",
            worker.stop_wait,
            0,
            MAX_STOP_WAIT,
        );
    }
}

fn check_pool(at: &mut At, path: &str, pool: &WebPool) {
    let sizes = [
        ("min_spare_workers", pool.min_spare_workers),
        ("initial_workers", pool.initial_workers),
        ("max_spare_workers", pool.max_spare_workers),
        ("max_workers", pool.max_workers),
    ];
    if pool.min_spare_workers == 0 {
        at.error(
            &format!("{path}.min_spare_workers"),
            "`min_spare_workers` must be at least 1",
        );
    }
    at.range(
        &format!("{path}.max_workers"),
        "max_workers",
        pool.max_workers,
        1,
        MAX_POOL_WORKERS,
    );
    if let Some(pair) = sizes.windows(2).find(|pair| pair[0].1 > pair[1].1) {
        let (low, high) = (pair[0], pair[1]);
        at.error(
            &format!("{path}.{}", high.0),
            format!("`{}` ({}) is less than `{}` ({})", high.0, high.1, low.0, low.1),
        )
        .hint = Some(
            "pool sizes must satisfy min_spare_workers ≤ initial_workers ≤ max_spare_workers ≤ max_workers"
                .into(),
        );
    }
}
