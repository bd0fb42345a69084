//! Rules for cluster files.

use super::{At, REQUEST_LIMITS};
use crate::definitions::model::{Cluster, Elastic, ReloadWindow, RequestLimits, SessionHandler};
use crate::definitions::values::IniValue;

/// php.ini directives reconciler sets itself for php-fpm, which a cluster
/// may not undo: every app's pool shares one OPcache, and these keep one
/// app's code from reading another's cached scripts.
const RESERVED_INI: &[&str] = &["opcache.validate_permission", "opcache.restrict_api"];

pub(super) fn check_cluster(at: &mut At, cluster: &Cluster) {
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
    for ((field, max), value) in REQUEST_LIMITS.into_iter().zip([
        cluster.request.duration,
        cluster.request.payload,
        cluster.request.memory,
    ]) {
        if field == "duration" && value < RequestLimits::MIN_DURATION {
            at.error(
                "request.duration",
                format!(
                    "`duration` is {value}; at least {min}: php-fpm refuses a pool whose \
                     `request_terminate_timeout` is below its slow log's threshold \
                     (`request_slowlog_timeout`, {min} s)",
                    min = RequestLimits::MIN_DURATION
                ),
            )
            .hint = Some(format!(
                "a request may run {} seconds or more",
                RequestLimits::MIN_DURATION
            ));
            continue;
        }
        at.range(&format!("request.{field}"), field, value, 1, max);
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
        if RESERVED_INI.contains(&key.as_str()) {
            at.error_at_key(
                &path,
                format!(
                    "`{key}` is set by reconciler: it keeps each app's code from reading other \
                     apps' scripts in the OPcache they share"
                ),
            )
            .hint = Some("remove it from `php_ini`".into());
        }
        if let IniValue::String(text) = value {
            at.ini_text(&path, text);
        }
    }
    check_sessions(at, cluster);
    for (i, ext) in cluster.extensions.iter().enumerate() {
        if !is_package_name(ext) {
            at.error(
                &format!("extensions[{i}]"),
                format!(
                    "`{}` is not a PHP extension's package name",
                    ext.escape_debug()
                ),
            )
            .hint = Some("as Debian names it without php<v>-, such as intl or mbstring".into());
        }
    }
    for (i, package) in cluster.packages.iter().enumerate() {
        if !is_package_name(package) {
            at.error(
                &format!("packages[{i}]"),
                format!("`{}` is not a Debian package name", package.escape_debug()),
            );
        }
    }
    at.range(
        "reload_parallel",
        "reload_parallel",
        cluster.reload_parallel,
        1,
        64,
    );
    if let Some(hygiene) = &cluster.opcache_hygiene {
        at.range(
            "opcache_hygiene.max_fill",
            "max_fill",
            u32::from(hygiene.max_fill),
            1,
            100,
        );
    }
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
    if let Some(elastic) = &cluster.elastic {
        check_elastic(at, cluster, elastic);
    }
}

/// The most elastic members one cluster may declare.
pub const MAX_ELASTIC_SERVERS: u32 = 256;

fn check_elastic(at: &mut At, cluster: &Cluster, elastic: &Elastic) {
    at.range(
        "elastic.max_servers",
        "max_servers",
        elastic.max_servers,
        1,
        MAX_ELASTIC_SERVERS,
    );
    let template = &elastic.template;
    if !is_unix_user(&template.user) {
        at.error(
            "elastic.template.user",
            format!("`{}` is not a Unix user name", template.user),
        );
    }
    if template.port == 0 {
        at.error("elastic.template.port", "port 0 cannot be connected to");
    }
    if let Some(like) = &template.like {
        match cluster.servers.iter().find(|s| &s.name == like) {
            None => {
                let names: Vec<&str> = cluster.servers.iter().map(|s| s.name.as_str()).collect();
                at.error(
                    "elastic.template.like",
                    format!("`{like}` is not a server of cluster `{}`", cluster.name),
                )
                .hint = crate::definitions::closest(like.as_str(), names)
                    .map(|c| format!("did you mean `{c}`?"));
            }
            Some(server) if server.web_server && !template.web_server => {
                at.error(
                    "elastic.template.like",
                    format!(
                        "`{like}` is a web server and members are not (`web_server: false`): \
                         they cannot copy its web roles"
                    ),
                )
                .hint =
                    Some("set `web_server: true` in the template, or name another server".into());
            }
            Some(_) => {}
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
    if let Some(replicas) = sessions.replicas {
        let nodes = sessions
            .save_path
            .as_deref()
            .map_or(0, |p| p.split(',').filter(|n| !n.trim().is_empty()).count());
        if sessions.handler != SessionHandler::Memcached {
            at.error_at_key(
                "sessions.replicas",
                "replicas are for the memcached handler",
            )
            .hint = Some("redis keeps one copy; replicate redis itself".into());
        } else if usize::from(replicas) >= nodes.max(1) {
            at.error(
                "sessions.replicas",
                format!(
                    "`replicas: {replicas}` needs at least {} memcached nodes in save_path; it lists {nodes}",
                    u16::from(replicas) + 1
                ),
            )
            .hint = Some("list the nodes: save_path: \"10.0.0.5:11211,10.0.0.6:11211\"".into());
        }
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

/// Whether `address` is a host name, an IP address or `local` (and never
/// something ssh would take for an option).
pub(crate) fn is_address(address: &str) -> bool {
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

/// A Debian package name: lower-case letters, digits, `+`, `-` and `.`,
/// starting with a letter or digit (so never an option to apt-get).
fn is_package_name(name: &str) -> bool {
    name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

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
