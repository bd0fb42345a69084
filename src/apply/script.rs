//! The apply script for one host: the remote kit's header and library,
//! `prelude.sh`, `steps.sh` and `worker.sh` (the logic), then the host's
//! plan as data lines, each a call of a `plan_*` function that only records
//! its arguments, then `apply_main`.
//!
//! Every value is quoted with `shell::quote`; file content travels base64
//! encoded in a quoted word; every string of the apply log is serialized
//! here by serde. Nothing here decides anything the plan did not.

use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;

use serde::{Deserialize, Serialize};

use crate::facts::{HostFacts, Init};
use crate::plan::{Action, Change, HostPlan, ReloadWhen, Service};
use crate::remote::Script;
use crate::shell::quote;

/// The apply's logic: three shell files, cut along their sections
/// (data and helpers, steps on services, the worker and its foreground),
/// run as one script.
const PRELUDE: &str = concat!(
    include_str!("prelude.sh"),
    "\n",
    include_str!("steps.sh"),
    "\n",
    include_str!("worker.sh"),
);

/// Seconds a validation, a user change or a directory change may take.
pub const STEP_LIMIT: u64 = 60;

/// Who applies and how long to wait for the host lock.
#[derive(Debug, Clone)]
pub struct ScriptOptions {
    /// `user@machine (pid N)`, for the lock and the apply log.
    pub holder: String,
    /// The definitions commit, when known, for the apply log.
    pub revision: Option<String>,
    /// How long to wait for another apply's host lock before reporting
    /// the host locked; whole seconds count, zero: do not wait.
    pub lock_wait: Duration,
    /// Seconds a php-fpm reload may take.
    pub fpm_reload_limit: u64,
    /// Seconds `supervisorctl update` may take: its programs' stop waits.
    pub supervisor_limit: u64,
    /// What must answer over HTTP after php-fpm reloads.
    pub web_checks: Vec<crate::units::WebCheck>,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        Self {
            holder: "reconciler".into(),
            revision: None,
            lock_wait: Duration::ZERO,
            fpm_reload_limit: STEP_LIMIT,
            supervisor_limit: STEP_LIMIT,
            web_checks: Vec::new(),
        }
    }
}

/// One line of a server's apply log (`/var/lib/reconciler/apply.log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyLogEntry {
    /// When the apply's worker started and finished, by the server's clock
    /// (RFC 3339, UTC).
    pub started: String,
    /// When it finished, in the same form.
    pub time: String,
    /// `applied`, `invalid` (a validator refused; everything was put back)
    /// or `failed`.
    pub result: String,
    /// Who applied what (flattened: its fields are this line's).
    #[serde(flatten)]
    pub planned: Planned,
    /// Reloads done, by label (`php8.2-fpm`).
    pub reloaded: Vec<String>,
    /// Reloads left for a window (or `--now`), by label.
    pub deferred: Vec<String>,
    /// Services and worker processes started (`php8.2-fpm`, `program
    /// shop-default:shop-default_00`).
    #[serde(default)]
    pub started_services: Vec<String>,
    /// Those of them that did not run after their start, named the same
    /// way.
    #[serde(default)]
    pub not_started: Vec<String>,
}

/// What the apply log says that is known before the apply runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Planned {
    /// Who applied: `user@machine (pid N)`.
    pub holder: String,
    /// The definitions commit, when known.
    pub revision: Option<String>,
    /// Files written, by absolute path.
    pub files: Vec<String>,
    /// Files removed, by absolute path.
    pub removed: Vec<String>,
}

/// The members of a JSON object, without its braces.
fn members(value: &impl Serialize) -> String {
    let object = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
    object
        .strip_prefix('{')
        .and_then(|f| f.strip_suffix('}'))
        .unwrap_or_default()
        .to_owned()
}

/// The script that applies `plan` on a host with `facts`, and the longest
/// it may take.
pub fn build(plan: &HostPlan, facts: &HostFacts, options: &ScriptOptions) -> (String, Duration) {
    let mut s = String::from("\n# ---- This host's plan\n");
    let mut files = Vec::new();
    let mut removed = Vec::new();
    for change in &plan.changes {
        match change {
            Change::CreateFile { path, .. } | Change::UpdateFile { path, .. } => {
                files.push(path.clone());
            }
            Change::RemoveFile { path, .. } => removed.push(path.clone()),
            _ => {}
        }
    }
    let log_fields = members(&Planned {
        holder: options.holder.clone(),
        revision: options.revision.clone(),
        files,
        removed,
    });
    line(&mut s, "plan_holder", &[&options.holder, &log_fields]);
    line(
        &mut s,
        "plan_lock_wait",
        &[&options.lock_wait.as_secs().to_string()],
    );
    let init = match facts.init {
        Init::Systemd => "systemd",
        Init::Service => "service",
    };
    line(&mut s, "plan_init", &[init]);
    if plan.interrupted.is_some() {
        line(&mut s, "plan_repair", &[]);
    }
    line(
        &mut s,
        "plan_manifest_expect",
        &[facts.manifest_sha256.as_deref().unwrap_or("-")],
    );
    line(
        &mut s,
        "plan_generation_expect",
        &[&facts.generation.to_string()],
    );
    if let Some(holder) = &plan.locked_by {
        line(&mut s, "plan_busy", &[holder]);
    }

    let mut limit = options.lock_wait + Duration::from_secs(STEP_LIMIT);
    for change in &plan.changes {
        limit += Duration::from_secs(match change.action() {
            // A start waits for the service, then up to 10 s for it to run.
            Action::Start => STEP_LIMIT + 30,
            _ => STEP_LIMIT / 4,
        });
        stage(change, &mut s);
    }

    let mut validations: Vec<(String, String)> = Vec::new();
    for reload in &plan.reloads {
        let Some(validation) = validation(&reload.service, facts) else {
            continue;
        };
        if !validations.contains(&validation) {
            validations.push(validation);
        }
    }
    for (name, arg) in &validations {
        limit += Duration::from_secs(STEP_LIMIT);
        line(&mut s, "plan_validate", &[name, arg]);
    }
    for reload in &plan.reloads {
        let when = match reload.when {
            ReloadWhen::Now => "now",
            ReloadWhen::Window | ReloadWhen::Manual => "window",
        };
        let seconds = match reload.service {
            Service::PhpFpm { .. } => options.fpm_reload_limit,
            Service::Supervisor { .. } | Service::Workers { .. } => options.supervisor_limit,
            Service::Nginx => STEP_LIMIT,
        };
        limit += Duration::from_secs(seconds);
        let label_json = serde_json::Value::from(reload.label.as_str()).to_string();
        line(
            &mut s,
            "plan_reload",
            &[&reload.label, when, &seconds.to_string(), &label_json],
        );
        match &reload.service {
            Service::Supervisor { group: app } => {
                let mut args = vec![app.as_str()];
                args.extend(reload.groups.iter().map(String::as_str));
                line(&mut s, "plan_supervisor_groups", &args);
            }
            Service::Workers { .. } => {
                let mut args = vec![reload.label.as_str()];
                args.extend(reload.groups.iter().map(String::as_str));
                line(&mut s, "plan_restart_groups", &args);
            }
            _ => {}
        }
    }
    // The sites must answer after php-fpm reloads, and after nginx or
    // php-fpm starts.
    let reloads_fpm = plan
        .reloads
        .iter()
        .any(|r| matches!(r.service, Service::PhpFpm { .. }) && r.when == ReloadWhen::Now);
    let starts_web = plan.changes.iter().any(|c| {
        matches!(c, Change::StartService { service }
            if service == "nginx" || (service.starts_with("php") && service.ends_with("-fpm")))
    });
    if reloads_fpm || starts_web {
        for check in &options.web_checks {
            limit += Duration::from_secs(20);
            line(&mut s, "plan_web_check", &[&check.domain, &check.path]);
        }
    }
    for chunk in plan.manifest.chunks(64) {
        let paths: Vec<&str> = chunk.iter().map(String::as_str).collect();
        line(&mut s, "plan_manifest", &paths);
    }
    let body = format!("{PRELUDE}{s}");
    (
        Script::new().build(&body, &["apply_main"]),
        limit + Duration::from_secs(30),
    )
}

/// `function 'arg' 'arg'` on a line of its own.
fn line(s: &mut String, function: &str, args: &[&str]) {
    s.push_str(function);
    for arg in args {
        s.push(' ');
        s.push_str(&quote(arg));
    }
    s.push('\n');
}

fn stage(change: &Change, s: &mut String) {
    match change {
        Change::CreateUser { user, home } => line(s, "plan_user", &[user, home]),
        Change::JoinGroup { user, group } => line(s, "plan_join", &[user, group]),
        Change::CreateDirectory {
            path,
            to,
            inside_home_of,
        }
        | Change::UpdateDirectory {
            path,
            to,
            inside_home_of,
            ..
        } => line(
            s,
            "plan_dir",
            &[
                path,
                &to.owner,
                &to.group,
                &format!("{:o}", to.mode),
                inside_home_of.as_deref().unwrap_or(""),
            ],
        ),
        Change::CreateFile {
            path, to, content, ..
        } => file(s, path, to, "-", content),
        Change::UpdateFile {
            path,
            to,
            content,
            expected,
            ..
        } => file(s, path, to, expected, content),
        Change::RemoveFile { path, expected, .. } => line(s, "plan_remove", &[path, expected]),
        Change::StartService { service } => {
            let json = serde_json::Value::from(service.as_str()).to_string();
            line(s, "plan_start", &[service, &json]);
        }
        Change::StartProgram { program, state } => {
            let json = serde_json::Value::from(format!("program {program}")).to_string();
            line(s, "plan_start_program", &[program, state.word(), &json]);
        }
    }
}

fn file(s: &mut String, path: &str, to: &crate::plan::Ownership, expected: &str, content: &str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    let _ = writeln!(
        s,
        "plan_file {} {} {} {:o} {} {}",
        quote(path),
        quote(&to.owner),
        quote(&to.group),
        to.mode,
        quote(expected),
        quote(&encoded)
    );
}

/// The check of a service's configuration that applies nothing: a name
/// (one check per name, however many supervisor groups changed) and its
/// argument; `None` for a restart of workers (no configuration of its own).
fn validation(service: &Service, facts: &HostFacts) -> Option<(String, String)> {
    Some(match service {
        Service::Nginx => ("nginx".into(), String::new()),
        Service::PhpFpm { version } => {
            let binary = facts
                .php
                .get(version)
                .and_then(|p| p.fpm.clone())
                .unwrap_or_else(|| format!("php-fpm{version}"));
            (service.label(), binary)
        }
        Service::Supervisor { .. } => ("supervisor".into(), String::new()),
        Service::Workers { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::PRELUDE;

    /// The names assigned at the start of a word in `text`, comments left out.
    fn assigned(text: &str) -> Vec<&str> {
        text.lines()
            .map(|line| line.split(" #").next().unwrap_or_default())
            .flat_map(str::split_whitespace)
            .filter_map(|word| word.split_once('=').map(|(name, _)| name))
            .filter(|name| {
                name.starts_with(|c: char| c.is_ascii_uppercase())
                    && name.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            })
            .collect()
    }

    /// The plan's variables are declared once, at the top of prelude.sh;
    /// the detached worker gets them by `PLAN_VARS`, a list beside them:
    /// a variable added to one and not the other would reach the worker
    /// unset (or not at all).
    #[test]
    fn the_detached_worker_gets_every_variable_of_the_plan() {
        // Read by the foreground before it detaches; filled in by the
        // worker itself.
        const FOREGROUND: &[&str] = &["LOCK_WAIT", "EXPECT_MANIFEST", "EXPECT_GENERATION", "BUSY"];
        const RUN_TIME: &[&str] = &["UPDATED", "UPDATED_APP"];
        let (_, block) = PRELUDE
            .split_once("# ---- The plan, as data")
            .expect("the plan's block");
        let (declarations, rest) = block.split_once("\nPLAN_VARS=(").expect("PLAN_VARS");
        let (list, _) = rest.split_once(')').expect("the end of PLAN_VARS");
        let mut declared: Vec<&str> = assigned(declarations)
            .into_iter()
            .filter(|name| !FOREGROUND.contains(name) && !RUN_TIME.contains(name))
            .collect();
        let mut handed: Vec<&str> = list.split_whitespace().collect();
        assert!(declared.len() > 30, "{declared:?}");
        declared.sort_unstable();
        handed.sort_unstable();
        assert_eq!(
            handed, declared,
            "PLAN_VARS against the declarations above it"
        );
    }
}
