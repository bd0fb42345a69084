//! The apply script for one host, built from its plan.
//!
//! One script does everything on the server, so a dropped connection can
//! not leave a host between "files written" and "validated or restored".
//! Every value is quoted with `shell::quote`; file content travels base64
//! encoded in quoted here-documents.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::facts::{HostFacts, Init};
use crate::plan::{Change, HostPlan, ReloadWhen};
use crate::shell::{quote, quote_all};
use crate::units::Service;

const PRELUDE: &str = include_str!("prelude.sh");

/// The script that applies `plan` on a host with `facts`.
pub fn build(plan: &HostPlan, facts: &HostFacts) -> String {
    let mut s = String::from(PRELUDE);

    s.push_str("\n# Users, groups and directories: created, never removed.\n");
    for change in &plan.changes {
        stage(change, &mut s);
    }

    s.push_str("\n# Validate every service whose files changed.\ninvalid=0\n");
    let mut checks: Vec<(String, String)> = Vec::new();
    for reload in &plan.reloads {
        let (name, check) = validation(&reload.service, facts);
        if !checks.iter().any(|(n, _)| *n == name) {
            checks.push((name, check));
        }
    }
    for (name, check) in &checks {
        let name = quote(name);
        let _ = writeln!(
            s,
            "if out=$({check} 2>&1); then report valid {name} \"$out\"; \
             else invalid=1; report invalid {name} \"$out\"; fi"
        );
    }
    s.push_str("if [ $invalid = 1 ]; then\n  restore\n");
    if checks.iter().any(|(name, _)| name == "supervisor") {
        // Forget the configuration reread just parsed.
        s.push_str("  supervisorctl reread >/dev/null 2>&1\n");
    }
    s.push_str("  rm -rf \"$backup\"\n  report restored - ''\n  exit 0\nfi\n");

    s.push_str("\n# Valid: the new files stay.\n");
    let manifest = if plan.manifest.is_empty() {
        "''".to_owned()
    } else {
        quote_all(plan.manifest.iter().map(String::as_str))
    };
    let _ = writeln!(
        s,
        "printf '%s\\n' {manifest} > \"$state/manifest.new\" \\\n  \
         && mv -f \"$state/manifest.new\" \"$state/manifest\" || fail 'write the manifest' ''"
    );
    s.push_str("rm -rf \"$backup\"\n");

    s.push_str("\n# Reloads: at most one per service.\n");
    let mut groups = Vec::new();
    for reload in &plan.reloads {
        let label = quote(&reload.label);
        match (&reload.service, reload.when) {
            (Service::Supervisor { group }, _) => groups.push((group.as_str(), label)),
            (_, ReloadWhen::Window) => {
                let _ = writeln!(s, "pend {label}; report deferred {label} ''");
            }
            (service, ReloadWhen::Now) => {
                let command = reload_command(service, facts.init);
                let _ = writeln!(
                    s,
                    "if out=$({command} 2>&1); then unpend {label}; report reloaded {label} \"$out\"; \
                     else report reload-failed {label} \"$out\"; fi"
                );
            }
        }
    }
    if !groups.is_empty() {
        let names = quote_all(groups.iter().map(|(g, _)| *g));
        let labels: Vec<&str> = groups.iter().map(|(_, l)| l.as_str()).collect();
        let labels = labels.join(" ");
        let _ = writeln!(
            s,
            "if out=$(supervisorctl update {names} 2>&1); \
             then for l in {labels}; do report reloaded \"$l\" \"$out\"; done; \
             else for l in {labels}; do report reload-failed \"$l\" \"$out\"; done; fi"
        );
    }
    s.push_str("report done - ''\n");
    s
}

fn stage(change: &Change, s: &mut String) {
    match change {
        Change::CreateUser { user, home } => {
            let (u, h) = (quote(user), quote(home));
            let _ = writeln!(
                s,
                "id -u {u} >/dev/null 2>&1 || out=$(useradd --system --user-group --create-home \
                 --home-dir {h} --shell /usr/sbin/nologin {u} 2>&1) || fail {} \"$out\"",
                quote(&format!("create user {user}"))
            );
        }
        Change::JoinGroup { user, group } => {
            let _ = writeln!(
                s,
                "out=$(usermod -a -G {} {} 2>&1) || fail {} \"$out\"",
                quote(group),
                quote(user),
                quote(&format!("add {user} to group {group}"))
            );
        }
        Change::CreateDirectory { path, to } | Change::UpdateDirectory { path, to, .. } => {
            let p = quote(path);
            let _ = writeln!(
                s,
                "out=$(mkdir -p {p} && chown {}:{} {p} && chmod {:o} {p} 2>&1) || fail {} \"$out\"",
                quote(&to.owner),
                quote(&to.group),
                to.mode,
                quote(&format!("create directory {path}"))
            );
        }
        Change::CreateFile {
            path, to, content, ..
        }
        | Change::UpdateFile {
            path, to, content, ..
        } => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(content);
            let _ = writeln!(
                s,
                "write_file {} {} {} {:o} <<'RECONCILER_EOF' || fail {} ''",
                quote(path),
                quote(&to.owner),
                quote(&to.group),
                to.mode,
                quote(&format!("write {path}"))
            );
            // base64 lines of 76 characters never equal the delimiter.
            for chunk in encoded.as_bytes().chunks(76) {
                s.push_str(std::str::from_utf8(chunk).unwrap_or_default());
                s.push('\n');
            }
            s.push_str("RECONCILER_EOF\n");
        }
        Change::RemoveFile { path, .. } => {
            let _ = writeln!(
                s,
                "remove_file {} || fail {} ''",
                quote(path),
                quote(&format!("remove {path}"))
            );
        }
    }
}

/// The check of a service's configuration that applies nothing: a name
/// (one check per name, however many groups changed) and its command.
fn validation(service: &Service, facts: &HostFacts) -> (String, String) {
    match service {
        Service::Nginx => ("nginx".into(), "nginx -t".into()),
        Service::PhpFpm { version } => {
            let binary = facts
                .php
                .get(version)
                .and_then(|p| p.fpm.clone())
                .unwrap_or_else(|| format!("php-fpm{version}"));
            (service.label(), format!("{} -t", quote(&binary)))
        }
        // reread parses every program file and reports errors; it starts
        // and stops nothing.
        Service::Supervisor { .. } => (
            "supervisor".into(),
            "o=$(supervisorctl reread 2>&1); s=$?; printf '%s' \"$o\"; \
             [ $s = 0 ] && ! printf '%s' \"$o\" | grep -q ERROR"
                .into(),
        ),
    }
}

fn reload_command(service: &Service, init: Init) -> String {
    let unit = match service {
        Service::Nginx => "nginx".to_owned(),
        Service::PhpFpm { version } => format!("php{version}-fpm"),
        Service::Supervisor { group } => return format!("supervisorctl update {}", quote(group)),
    };
    match init {
        Init::Systemd => format!("systemctl reload {}", quote(&unit)),
        Init::Service => format!("service {} reload", quote(&unit)),
    }
}
