//! Every log file reconciler has a daemon or cron write is rotated, and a
//! session lock is waited for as long as a request may hold it.

use super::super::parse_back;
use super::*;
use crate::definitions::SessionHandler;

/// The log files the rendered units make nginx, php-fpm, PHP and cron
/// write: whatever follows `error_log`, `access_log`, `slowlog =`,
/// `error_log] =` and `>>` in them.
fn logs_written(units: &HostUnits) -> Vec<String> {
    let mut logs = Vec::new();
    for f in &units.files {
        for line in f.content.lines().map(str::trim) {
            let path = line
                .strip_prefix("error_log ")
                .map(|rest| rest.trim_end_matches(';'))
                .or_else(|| {
                    line.strip_prefix("access_log ")
                        .and_then(|rest| rest.split_whitespace().next())
                })
                .or_else(|| line.strip_prefix("slowlog = "))
                .or_else(|| line.strip_prefix("php_admin_value[error_log] = "))
                .or_else(|| {
                    line.split_once(">> ")
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                });
            logs.extend(path.map(str::to_owned));
        }
    }
    logs
}

/// The rules of `/etc/logrotate.d/reconciler-<app>`: each block's files
/// and its directives.
fn rules(content: &str) -> Vec<(Vec<String>, String)> {
    let mut rules = Vec::new();
    let mut lines = content
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty());
    while let Some(head) = lines.next() {
        let files = head
            .trim_end_matches('{')
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "}").collect();
        rules.push((files, body.join("\n")));
    }
    rules
}

#[test]
fn every_log_a_daemon_or_cron_writes_is_rotated() {
    for server in ["web-1", "jobs-1"] {
        let units = units(&fleet(), server);
        let written = logs_written(&units);
        assert!(!written.is_empty(), "{server}");
        let rotated: Vec<(Vec<String>, String)> = units
            .files
            .iter()
            .filter(|f| f.path.starts_with("/etc/logrotate.d/reconciler-"))
            .flat_map(|f| rules(&f.content))
            .collect();
        for log in &written {
            let (_, rule) = rotated
                .iter()
                .find(|(files, _)| files.contains(log))
                .unwrap_or_else(|| panic!("{server}: {log} is never rotated: {rotated:#?}"));
            // Root acts as the app wherever the app owns the directory.
            if log.starts_with("/home/") {
                let app = log.split('/').nth(2).expect("an app");
                assert!(rule.contains(&format!("su {app} {app}\n")), "{log}: {rule}");
            } else {
                assert!(log.starts_with("/var/log/reconciler/"), "{log}");
                assert!(!rule.contains("su "), "{log}: {rule}");
                assert!(rule.contains("kill -USR1"), "{log} is reopened: {rule}");
            }
        }
        assert!(units.packages.contains("logrotate"), "{server}");
    }
    // Workers' output: supervisord rotates it itself.
    let jobs = units(&fleet(), "jobs-1");
    let conf = &file(&jobs, "/etc/supervisor/conf.d/shop.conf").content;
    let programs = conf.matches("stdout_logfile=").count();
    assert!(programs > 0);
    assert_eq!(
        conf.matches("stdout_logfile_maxbytes=50MB").count(),
        programs
    );
    assert_eq!(conf.matches("stdout_logfile_backups=10").count(), programs);
}

#[test]
fn logrotate_rules() {
    let units = units(&fleet(), "web-1");
    insta::assert_snapshot!(file(&units, "/etc/logrotate.d/reconciler-shop").content);
}

#[test]
fn memcached_waits_for_a_session_lock_as_long_as_redis() {
    let mut definitions = fleet();
    definitions.clusters[0].request.duration = 45;
    for handler in [SessionHandler::Redis, SessionHandler::Memcached] {
        definitions.clusters[0].sessions.handler = handler;
        let units = units(&definitions, "web-1");
        let ini = &file(&units, "/etc/php/8.2/fpm/conf.d/99-reconciler.ini").content;
        let d = parse_back::php_ini(ini).expect("parses");
        // Tries × wait between them (ms) ≥ the request duration.
        let (tries, wait_ms, expire) = match handler {
            SessionHandler::Memcached => {
                assert_eq!(d["memcached.sess_locking"], "1");
                assert_eq!(
                    d["memcached.sess_lock_wait_min"],
                    d["memcached.sess_lock_wait_max"]
                );
                (
                    &d["memcached.sess_lock_retries"],
                    d["memcached.sess_lock_wait_max"]
                        .parse::<u64>()
                        .expect("ms"),
                    &d["memcached.sess_lock_expire"],
                )
            }
            _ => (
                &d["redis.session.lock_retries"],
                d["redis.session.lock_wait_time"]
                    .parse::<u64>()
                    .expect("us")
                    / 1000,
                &d["redis.session.lock_expire"],
            ),
        };
        let tries: u64 = tries.parse().expect("a number");
        assert_eq!(tries * wait_ms, 45_000, "{handler:?}: {ini}");
        assert_eq!(expire, "45", "{handler:?}");
    }
    // Without locking, no lock settings.
    definitions.clusters[0].sessions.locking = Some(false);
    let units = units(&definitions, "web-1");
    let ini = &file(&units, "/etc/php/8.2/fpm/conf.d/99-reconciler.ini").content;
    assert!(ini.contains("memcached.sess_locking = 0\n"), "{ini}");
    assert!(!ini.contains("sess_lock_"), "{ini}");
}
