//! Rules that serde cannot check: name syntax, cross-references between
//! files, and consistency within a file. Every rule reports at the position
//! of the value that breaks it, and every problem is reported, not just the
//! first.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::diagnostic::closest;
use super::model::{App, AppServer, Cluster, ReloadWindow, SessionHandler, WebPool};
use super::names::{self, NAME_PATTERN};
use super::values::{IniValue, Parsed, Syntax};
use super::{Diagnostic, Document};

const NAME_HINT: &str = "names become Unix users, file names and supervisor groups: \
                         use lowercase letters, digits and `-`, starting with a letter";

pub(super) fn check(clusters: &[Document<Cluster>], apps: &[Document<App>]) -> Vec<Diagnostic> {
    let mut report = Report::default();
    let mut cluster_names = FirstSeen::default();
    let mut server_names = FirstSeen::default();
    for doc in clusters {
        let mut at = report.at(doc);
        check_cluster(&mut at, &doc.value);
        at.unique(
            &mut cluster_names,
            "name",
            doc.value.name.as_str(),
            "cluster",
        );
        for (i, server) in doc.value.servers.iter().enumerate() {
            let path = format!("servers[{i}].name");
            at.unique(&mut server_names, &path, server.name.as_str(), "server");
        }
    }

    let by_name: HashMap<&str, &Document<Cluster>> = clusters
        .iter()
        .map(|d| (d.value.name.as_str(), d))
        .rev() // the first definition wins, as the duplicate error says
        .collect();
    let mut app_names = FirstSeen::default();
    let mut domains = FirstSeen::default();
    for doc in apps {
        let mut at = report.at(doc);
        let app = &doc.value;
        check_app(&mut at, app);
        at.unique(&mut app_names, "name", app.name.as_str(), "app");
        for (i, domain) in app.domains.iter().enumerate() {
            let path = format!("domains[{i}]");
            at.unique(&mut domains, &path, &domain.to_ascii_lowercase(), "domain");
        }
        match by_name.get(app.cluster.as_str()) {
            Some(cluster) => check_app_in_cluster(&mut at, app, cluster),
            None => {
                let known: Vec<&str> = by_name.keys().copied().collect();
                let hint = match closest(app.cluster.as_str(), known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("defined clusters: {}", list(known)),
                };
                at.error(
                    "cluster",
                    format!("cluster `{}` is not defined", app.cluster),
                )
                .hint = Some(hint);
            }
        }
    }
    report.problems
}

fn check_cluster(at: &mut At, cluster: &Cluster) {
    at.name("name", cluster.name.as_str());
    if cluster.php.is_empty() {
        at.error("php", "a cluster needs at least one PHP version");
    }
    for (i, version) in cluster.php.iter().enumerate() {
        if !version.is_valid() {
            at.error(
                &format!("php[{i}]"),
                format!("`{version}` is not a PHP version"),
            )
            .hint = Some("write major.minor, quoted, such as \"8.2\"".into());
        }
    }
    for (field, value) in [
        ("duration", cluster.request.duration),
        ("payload", cluster.request.payload),
        ("memory", cluster.request.memory),
    ] {
        if value == 0 {
            at.error(
                &format!("request.{field}"),
                format!("`{field}` must be at least 1"),
            );
        }
    }
    for (key, value) in &cluster.php_ini {
        let path = format!("php_ini.{key}");
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._".contains(c))
        {
            at.error_at_key(&path, format!("`{key}` is not a php.ini directive name"));
        }
        if let IniValue::String(text) = value {
            at.ini_text(&path, text);
        }
    }
    check_sessions(at, cluster);
    for (i, window) in cluster.reload_windows.iter().enumerate() {
        check_window(at, &format!("reload_windows[{i}]"), window);
    }
    if cluster.servers.is_empty() {
        at.error("servers", "a cluster needs at least one server");
    }
    for (i, server) in cluster.servers.iter().enumerate() {
        at.name(&format!("servers[{i}].name"), server.name.as_str());
        if !is_address(&server.address) {
            at.error(
                &format!("servers[{i}].address"),
                format!(
                    "`{}` is not a host name, an IP address or `local`",
                    server.address
                ),
            );
        }
        if !is_unix_user(&server.user) {
            at.error(
                &format!("servers[{i}].user"),
                format!("`{}` is not a Unix user name", server.user),
            );
        }
        if server.port == 0 {
            at.error(
                &format!("servers[{i}].port"),
                "port 0 cannot be connected to",
            );
        }
    }
}

fn check_sessions(at: &mut At, cluster: &Cluster) {
    let sessions = &cluster.sessions;
    match (&sessions.handler, &sessions.save_path) {
        (SessionHandler::Redis | SessionHandler::Memcached, None) => {
            at.error_at_key(
                "sessions.handler",
                "a shared session store needs a `save_path`",
            )
            .hint = Some(match sessions.handler {
                SessionHandler::Redis => "such as save_path: \"tcp://10.0.0.5:6379\"".into(),
                _ => "such as save_path: \"10.0.0.5:11211\"".into(),
            });
        }
        (_, Some(path)) => at.ini_text("sessions.save_path", path),
        _ => {}
    }
}

fn check_window(at: &mut At, path: &str, window: &ReloadWindow) {
    at.parsed(
        &format!("{path}.schedule"),
        &window.schedule,
        "cron schedule",
    );

    at.parsed(&format!("{path}.duration"), &window.duration, "duration");
    at.parsed(&format!("{path}.timezone"), &window.timezone, "timezone");
    if window.duration.get().is_some_and(|d| d.0.is_zero()) {
        at.error(
            &format!("{path}.duration"),
            "a reload window must last longer than 0s",
        );
    }
}

/// Names an app cannot take: Debian's system users and groups (the app
/// would share them), and `www`, Debian's own php-fpm pool file.
const RESERVED_APP_NAMES: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "sshd",
    "messagebus",
    "redis",
    "nginx",
    "memcache",
    "mysql",
    "postgres",
    "postfix",
    "www",
    "staff",
    "users",
    "adm",
    "sudo",
];

fn check_app(at: &mut At, app: &App) {
    at.name("name", app.name.as_str());
    if RESERVED_APP_NAMES.contains(&app.name.as_str()) {
        at.error("name", format!("app name `{}` is reserved", app.name))
            .hint = Some(
            "it names a system user, group or file of the server's own; choose another name".into(),
        );
    }
    if app.repo.trim().is_empty() {
        at.error("repo", "`repo` is empty");
    }
    if app.branch.is_empty()
        || app.branch.starts_with('-')
        || app.branch.contains("..")
        || app
            .branch
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        at.error("branch", format!("`{}` is not a branch name", app.branch));
    }
    if !app.php.is_valid() {
        at.error("php", format!("`{}` is not a PHP version", app.php))
            .hint = Some("write major.minor, quoted, such as \"8.2\"".into());
    }
    for (i, domain) in app.domains.iter().enumerate() {
        if !is_domain(domain) {
            at.error(
                &format!("domains[{i}]"),
                format!("`{domain}` is not a domain name"),
            );
        }
    }
    check_shared(at, &app.shared);
    if let Some(composer) = &app.composer {
        at.command("composer", composer);
    }
    for (field, commands) in [
        ("release_commands", &app.release_commands),
        ("env_commands", &app.env_commands),
    ] {
        for (i, command) in commands.iter().enumerate() {
            at.command(&format!("{field}[{i}]"), command);
        }
    }
    if app.keep_releases == 0 {
        at.error(
            "keep_releases",
            "`keep_releases` must be at least 1: the live release is kept",
        );
    }
    if let Some(check) = &app.health_check {
        if !check.path.starts_with('/') || check.path.chars().any(|c| c.is_whitespace()) {
            at.error(
                "health_check.path",
                format!("`{}` is not a URL path", check.path),
            )
            .hint = Some("start it with `/`, such as /up".into());
        }
        if !(100..=599).contains(&check.status) {
            at.error(
                "health_check.status",
                format!("{} is not an HTTP status", check.status),
            );
        }
    }
    let mut seen = FirstSeen::default();
    for (i, role) in app.servers.iter().enumerate() {
        let path = format!("servers[{i}]");
        at.name(&format!("{path}.name"), role.name.as_str());
        at.unique(
            &mut seen,
            &format!("{path}.name"),
            role.name.as_str(),
            "server role",
        );
        check_role(at, app, &path, role);
    }
}

fn check_role(at: &mut At, app: &App, path: &str, role: &AppServer) {
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
        if worker.processes == 0 {
            at.error(
                &format!("{worker_path}.processes"),
                "`processes` must be at least 1",
            );
        }
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

fn check_shared(at: &mut At, shared: &[String]) {
    let mut seen = FirstSeen::default();
    for (i, entry) in shared.iter().enumerate() {
        let path = format!("shared[{i}]");
        let trimmed = entry.trim_end_matches('/');
        if entry.starts_with('/') {
            at.error(&path, format!("shared path `{entry}` is absolute"))
                .hint =
                Some("shared paths are relative to the release root, such as storage/app".into());
        } else if trimmed.split('/').any(|part| part == "..") {
            at.error(
                &path,
                format!("shared path `{entry}` leaves the release with `..`"),
            );
        } else if trimmed.is_empty()
            || trimmed
                .split('/')
                .any(|part| part.is_empty() || part == ".")
            || entry.chars().any(|c| c.is_control())
        {
            at.error(&path, format!("`{entry}` is not a plain relative path"));
        } else {
            at.unique(&mut seen, &path, trimmed, "shared path");
        }
    }
}

fn check_app_in_cluster(at: &mut At, app: &App, cluster: &Document<Cluster>) {
    let cluster_file = cluster.file.display();
    let cluster = &cluster.value;
    if app.php.is_valid() && !cluster.php.contains(&app.php) {
        let installed: Vec<&str> = cluster.php.iter().map(|v| v.as_str()).collect();
        at.error(
            "php",
            format!(
                "cluster `{}` does not install PHP {}",
                cluster.name, app.php
            ),
        )
        .hint = Some(format!("it installs {}", list(installed)));
    }
    for (i, role) in app.servers.iter().enumerate() {
        let Some(server) = cluster.servers.iter().find(|s| s.name == role.name) else {
            let names: Vec<&str> = cluster.servers.iter().map(|s| s.name.as_str()).collect();
            at.error(
                &format!("servers[{i}].name"),
                format!(
                    "server `{}` is not in cluster `{}`",
                    role.name, cluster.name
                ),
            )
            .hint = Some(match closest(role.name.as_str(), names.iter().copied()) {
                Some(best) => format!("did you mean `{best}`?"),
                None => format!("servers of `{}`: {}", cluster.name, list(names)),
            });
            continue;
        };
        if role.web.is_some() && !server.web_server {
            at.error_at_key(
                &format!("servers[{i}].web"),
                format!("server `{}` is not a web server", server.name),
            )
            .hint = Some(format!(
                "set `web_server: true` on it in {cluster_file}, or give the web role to a web server"
            ));
        }
    }
}

/// Collects diagnostics for all files.
#[derive(Default)]
struct Report {
    problems: Vec<Diagnostic>,
}

impl Report {
    fn at<'a, T>(&'a mut self, doc: &'a Document<T>) -> At<'a> {
        At {
            problems: &mut self.problems,
            file: &doc.file,
            map: &doc.map,
        }
    }
}

/// Reports problems in one file.
struct At<'a> {
    problems: &'a mut Vec<Diagnostic>,
    file: &'a Path,
    map: &'a super::SourceMap,
}

impl At<'_> {
    fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.problems.push(diagnostic);
        self.problems.last_mut().expect("just pushed")
    }

    /// A problem with the value at `path`.
    fn error(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let position = self.map.value(path);
        self.push(Diagnostic::new(self.file, position, message))
    }

    /// A problem with the key that holds `path`.
    fn error_at_key(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let position = self.map.key(path);
        self.push(Diagnostic::new(self.file, position, message))
    }

    fn name(&mut self, path: &str, name: &str) {
        if !names::is_valid(name) {
            self.error(
                path,
                format!("`{name}` is not a valid name: it must match {NAME_PATTERN}"),
            )
            .hint = Some(NAME_HINT.into());
        }
    }

    fn parsed<T: Syntax>(&mut self, path: &str, value: &Parsed<T>, what: &str) {
        if let Some(reason) = value.error() {
            self.error(
                path,
                format!("`{}` is not a {what}: {reason}", value.text()),
            )
            .hint = T::HINT.map(str::to_owned);
        }
    }

    /// A command line: it goes into one line of a config file.
    fn command(&mut self, path: &str, command: &str) {
        if command.chars().any(|c| c.is_control()) {
            self.error(
                path,
                "a command must be one line without control characters",
            )
            .hint = Some("chain steps with `&&` or list them as separate commands".into());
        }
    }

    /// Text that goes into php.ini between double quotes.
    fn ini_text(&mut self, path: &str, text: &str) {
        if text.chars().any(|c| c == '"' || c.is_control()) {
            self.error(
                path,
                "php.ini values cannot hold `\"` or control characters",
            );
        }
    }

    /// Reports `value` if an earlier one of the same kind was seen.
    fn unique(&mut self, seen: &mut FirstSeen, path: &str, value: &str, kind: &str) {
        let position = self.map.value(path);
        let here = format!(
            "{}:{}:{}",
            self.file.display(),
            position.line,
            position.column
        );
        if let Some(first) = seen.0.get(value) {
            let message = format!("{kind} `{value}` is defined twice; first at {first}");
            self.push(Diagnostic::new(self.file, position, message));
        } else {
            seen.0.insert(value.to_owned(), here);
        }
    }
}

/// Where each value of a kind was first seen, for duplicate errors.
#[derive(Default)]
struct FirstSeen(BTreeMap<String, String>);

fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut items: Vec<&str> = items.into_iter().collect();
    items.sort_unstable();
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_address(address: &str) -> bool {
    address == "local"
        || (!address.is_empty()
            && !address.starts_with('-')
            && address.len() <= 253
            && address
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)))
}

fn is_unix_user(user: &str) -> bool {
    let mut chars = user.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && user.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

fn is_domain(domain: &str) -> bool {
    let host = domain.strip_prefix("*.").unwrap_or(domain);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_allow_a_leading_wildcard_only() {
        assert!(is_domain("shop.example.com"));
        assert!(is_domain("*.example.com"));
        assert!(is_domain("localhost"));
        for bad in [
            "",
            "a..b",
            "-a.com",
            "a b.com",
            "a.*.com",
            "x;y",
            "shop.example.com/x",
        ] {
            assert!(!is_domain(bad), "{bad}");
        }
    }

    #[test]
    fn addresses_cannot_pass_for_ssh_options() {
        assert!(is_address("203.0.113.10"));
        assert!(is_address("web-1.example.com"));
        assert!(is_address("2001:db8::1"));
        assert!(is_address("local"));
        for bad in ["", "-oProxyCommand=x", "a b", "x;y", "user@host"] {
            assert!(!is_address(bad), "{bad}");
        }
    }
}
