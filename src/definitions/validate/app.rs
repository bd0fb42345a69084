//! Rules for app files, and for an app against its cluster.

use super::role::check_role;
use super::{At, FirstSeen, MAX_KEEP_RELEASES, list};
use crate::definitions::Document;
use crate::definitions::diagnostic::closest;
use crate::definitions::model::{App, Cluster, Prewarm, ReleaseLayout, SharedPath};

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

pub(super) fn check_app(at: &mut At, app: &App) {
    at.name("name", app.name.as_str());
    if RESERVED_APP_NAMES.contains(&app.name.as_str()) {
        at.error("name", format!("app name `{}` is reserved", app.name))
            .hint = Some(
            "it names a system user, group or file of the server's own; choose another name".into(),
        );
    }
    if app.repo.trim().is_empty() {
        at.error("repo", "`repo` is empty");
    } else if app.repo.starts_with('-')
        || app
            .repo
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        at.error(
            "repo",
            format!(
                "`{}` is not a git URL or path",
                crate::redact::url(&app.repo).escape_debug()
            ),
        );
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
    if let Some(revision) = &app.revision
        && (revision.is_empty()
            || revision.starts_with('-')
            || revision.len() > 255
            || revision
                .chars()
                .any(|c| c.is_whitespace() || c.is_control()))
    {
        at.error(
            "revision",
            format!(
                "`{}` is not a commit, tag or branch",
                revision.escape_debug()
            ),
        );
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
    if let Some(guard) = &app.guard {
        at.parsed("guard.window", &guard.window, "duration");
        if guard
            .window
            .get()
            .is_some_and(|w| w.0.is_zero() || w.0.as_secs() > 24 * 3600)
        {
            at.error(
                "guard.window",
                "`guard.window` must be more than 0 and at most 24h",
            );
        }
        if !(guard.max_5xx_ratio > 0.0 && guard.max_5xx_ratio < 1.0) {
            at.error(
                "guard.max_5xx_ratio",
                format!(
                    "`max_5xx_ratio` is {}; a share between 0 and 1, such as 0.02 (2%)",
                    guard.max_5xx_ratio
                ),
            );
        }
        at.range(
            "guard.min_requests",
            "min_requests",
            guard.min_requests,
            1,
            1_000_000,
        );
    }
    if let Prewarm::Only(globs) = &app.opcache_prewarm {
        for (i, glob) in globs.iter().enumerate() {
            check_glob(at, &format!("opcache_prewarm[{i}]"), glob);
        }
    }
    // With `ab` the warm request is what discards a side's changed scripts
    // from OPcache before the switch (see opcache-warm.php): without it the
    // first requests discard them under load, and one may run the old one.
    if app.release_layout == ReleaseLayout::Ab && app.opcache_prewarm.globs().is_none() {
        at.error(
            "opcache_prewarm",
            "`release_layout: ab` needs `opcache_prewarm` on: warming discards the side's \
             changed scripts from OPcache before the switch, while no request can run them",
        )
        .hint = Some("leave `opcache_prewarm` out (on), or list globs to warm".to_owned());
    }
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
    for (field, size) in [
        ("max_release_size", &app.max_release_size),
        ("max_file_size", &app.max_file_size),
    ] {
        at.parsed(field, size, "size");
        if size.get().is_some_and(|s| s.0 == 0) {
            at.error(field, format!("`{field}` must be more than 0"));
        }
    }
    if app.keep_releases == 0 {
        at.error(
            "keep_releases",
            "`keep_releases` must be at least 1: the live release is kept",
        );
    } else {
        at.range(
            "keep_releases",
            "keep_releases",
            app.keep_releases,
            1,
            MAX_KEEP_RELEASES,
        );
    }
    if let Some(check) = &app.health_check {
        if !check.path.starts_with('/')
            || check
                .path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
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

fn check_shared(at: &mut At, shared: &[SharedPath]) {
    let mut seen = FirstSeen::default();
    for (i, entry) in shared.iter().enumerate() {
        let path = format!("shared[{i}]");
        let entry = &entry.path;
        if entry.starts_with('/') {
            at.error(&path, format!("shared path `{entry}` is absolute"))
                .hint =
                Some("shared paths are relative to the release root, such as storage/app".into());
        } else if entry.split('/').any(|part| part == "..") {
            at.error(
                &path,
                format!("shared path `{entry}` leaves the release with `..`"),
            );
        } else if entry.is_empty()
            || entry.split('/').any(|part| part.is_empty() || part == ".")
            || entry.chars().any(char::is_control)
        {
            at.error(&path, format!("`{entry}` is not a plain relative path"));
        } else {
            at.unique(&mut seen, &path, entry, "shared path");
        }
    }
}

/// A glob of `opcache_prewarm`: relative to the release root, of path
/// names (letters, digits, `._-`), `/`, `*` and `?` only, no `..`: it
/// reaches the warm script as one line, and a release's paths only.
fn check_glob(at: &mut At, field: &str, glob: &str) {
    let plain = glob
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-/*?".contains(c));
    if glob.is_empty() || glob.len() > 200 || !plain {
        at.error(
            field,
            format!(
                "`{}` is not a glob of release paths",
                glob.escape_default()
            ),
        )
        .hint = Some(
            "letters, digits, `.`, `_`, `-`, `/`, `*` (one name) and `**` (any depth), such as app/**"
                .into(),
        );
    } else if glob.starts_with('/') || glob.split('/').any(|part| part == "..") {
        at.error(
            field,
            format!("`{glob}` is not relative to the release root"),
        );
    }
}

pub(super) fn check_app_in_cluster(at: &mut At, app: &App, cluster: &Document<Cluster>) {
    let cluster_file = cluster.file.display();
    let cluster = &cluster.value;
    if app.php.is_valid() && !cluster.php.contains(&app.php) {
        let installed: Vec<&str> = cluster
            .php
            .iter()
            .map(super::super::values::PhpVersion::as_str)
            .collect();
        at.error(
            "php",
            format!(
                "cluster `{}` does not install PHP {}",
                cluster.name, app.php
            ),
        )
        .hint = Some(format!("it installs {}", list(installed)));
    }
    if app.release_layout == ReleaseLayout::Ab {
        if let Err(why) = cluster.ab_wait() {
            at.error(
                "release_layout",
                format!(
                    "`release_layout: ab` is unsafe on cluster `{}`: {why}",
                    cluster.name
                ),
            )
            .hint = Some(format!(
                "leave OPcache's file checks on in {cluster_file} (opcache.validate_timestamps, \
                 opcache.revalidate_freq up to {} s), or use `release_layout: releases`",
                Cluster::MAX_AB_REVALIDATE_FREQ
            ));
        }
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
    fn a_shared_path_says_its_kind_or_has_it_guessed() {
        use crate::definitions::SharedKind;
        let shared: Vec<SharedPath> = serde_yaml::from_str(
            "[storage/, .env, storage/app, public/.well-known, { path: public/.well-known, kind: dir }, { path: VERSION, kind: file }]",
        )
        .expect("parses");
        let kinds: Vec<(&str, SharedKind, bool)> = shared
            .iter()
            .map(|s| (s.path.as_str(), s.kind(), s.stated.is_some()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("storage", SharedKind::Dir, true),
                (".env", SharedKind::File, false),
                ("storage/app", SharedKind::Dir, false),
                ("public/.well-known", SharedKind::File, false),
                ("public/.well-known", SharedKind::Dir, true),
                ("VERSION", SharedKind::File, true),
            ]
        );
        assert!(serde_yaml::from_str::<Vec<SharedPath>>("[{ path: x, kind: folder }]").is_err());
        assert!(
            serde_yaml::from_str::<Vec<SharedPath>>("[{ path: x, kind: dir, mode: 1 }]").is_err()
        );
    }
}
