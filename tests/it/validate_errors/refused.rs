//! Values refused for what they would do: multi-line commands, reserved names, bounds, nesting, template loops, too few session replicas.

use super::*;

#[test]
fn multiline_command() {
    assert_invalid(
        "multiline_command",
        "\
$D/apps/shop.yaml:7:5: a command must be one line without control characters
  hint: chain steps with `&&` or list them as separate commands
error: 1 problem in the definitions
",
    );
}

#[test]
fn reserved_app_name() {
    assert_invalid(
        "reserved_app_name",
        "\
$D/apps/shop.yaml:1:7: app name `www-data` is reserved
  hint: it names a system user, group or file of the server's own; choose another name
error: 1 problem in the definitions
",
    );
}

#[test]
fn duplicate_php_ini_key() {
    assert_invalid(
        "duplicate_php_ini_key",
        "\
$D/clusters/production.yaml:6:3: `memory_limit` is given twice; first at line 4, column 3
error: 1 problem in the definitions
",
    );
}

#[test]
fn reserved_php_ini() {
    // Undone, they let one app read another's cached config through the
    // OPcache every pool shares.
    assert_invalid(
        "reserved_php_ini",
        "\
$D/clusters/production.yaml:5:3: `opcache.validate_permission` is set by reconciler: it keeps each app's code from reading other apps' scripts in the OPcache they share
  hint: remove it from `php_ini`
$D/clusters/production.yaml:6:3: `opcache.restrict_api` is set by reconciler: it keeps each app's code from reading other apps' scripts in the OPcache they share
  hint: remove it from `php_ini`
error: 2 problems in the definitions
",
    );
}

#[test]
fn worker_newline() {
    // A newline once smuggled a root `[program:]` into supervisor's config.
    assert_invalid(
        "worker_newline",
        "\
$D/apps/shop.yaml:8:35: a command must be one line without control characters
  hint: chain steps with `&&` or list them as separate commands
error: 1 problem in the definitions
",
    );
}

#[test]
fn bounds() {
    // `processes: 4294967295` once made supervisord exhaust memory.
    assert_invalid(
        "bounds",
        "\
$D/apps/shop.yaml:6:16: `keep_releases` is 1000; at most 100
$D/apps/shop.yaml:9:25: `max_workers` is 100000; at most 1024
$D/apps/shop.yaml:11:55: `processes` is 4294967295; at most 64
$D/apps/shop.yaml:11:78: `stop_wait` is 100000000; at most 86400
$D/clusters/production.yaml:3:22: `duration` is 1000000; at most 86400
$D/clusters/production.yaml:3:52: `memory` must be at least 1
error: 6 problems in the definitions
",
    );
}

#[test]
fn request_shorter_than_the_slow_log() {
    // php-fpm refuses a pool whose request_terminate_timeout (4 s here) is
    // below its request_slowlog_timeout (5 s): apply would write a pool
    // that php-fpm will not start.
    assert_invalid(
        "short_request",
        "\
$D/clusters/production.yaml:4:13: `duration` is 4; at least 5: php-fpm refuses a pool whose `request_terminate_timeout` is below its slow log's threshold (`request_slowlog_timeout`, 5 s)
  hint: a request may run 5 seconds or more
error: 1 problem in the definitions
",
    );
}

#[test]
fn deep_nesting() {
    assert_invalid(
        "deep_nesting",
        "\
$D/clusters/production.yaml:2:102: nested more than 24 levels deep
error: 1 problem in the definitions
",
    );
}

#[test]
fn template_loop() {
    // Templates that include each other once overflowed the stack (exit 134).
    assert_invalid(
        "template_loop",
        "\
$D/templates/cron.hbs:1:1: templates include each other in a loop: cron.hbs > php.ini.hbs > cron.hbs
$D/templates/php.ini.hbs:1:1: templates include each other in a loop: php.ini.hbs > cron.hbs > php.ini.hbs
error: 2 problems in the definitions
",
    );
}

#[test]
fn template_render() {
    assert_invalid(
        "template_render",
        "\
$D/templates/nginx-vhost.conf.hbs:3:10: the template does not render for app `shop` on server `web-1`: Failed to access variable in strict mode Some(\"no_such_value\")
error: 1 problem in the definitions
",
    );
}

#[test]
fn session_replicas_need_more_memcached_nodes() {
    assert_invalid(
        "session_replicas",
        "\
$D/clusters/production.yaml:3:72: `replicas: 1` needs at least 2 memcached nodes in save_path; it lists 1
  hint: list the nodes: save_path: \"10.0.0.5:11211,10.0.0.6:11211\"
error: 1 problem in the definitions
",
    );
}

#[test]
fn ab_without_file_checks() {
    // With `ab` a release rewrites files in place: an OPcache that never
    // (or only every 5 minutes) compares a script's time with its file's
    // serves the old release's code; without warming, the side's changed
    // scripts are discarded from OPcache only under load.
    assert_invalid(
        "ab_without_file_checks",
        "\
$D/apps/blog.yaml:5:17: `release_layout: ab` is unsafe on cluster `staging`: `opcache.revalidate_freq` is `300`; at most 60 (seconds) for `ab`
  hint: leave OPcache's file checks on in $D/clusters/staging.yaml (opcache.validate_timestamps, opcache.revalidate_freq up to 60 s), or use `release_layout: releases`
$D/apps/blog.yaml:6:18: `release_layout: ab` needs `opcache_prewarm` on: warming discards the side's changed scripts from OPcache before the switch, while no request can run them
  hint: leave `opcache_prewarm` out (on), or list globs to warm
$D/apps/shop.yaml:5:17: `release_layout: ab` is unsafe on cluster `production`: `opcache.validate_timestamps` is `0`: OPcache would never see a changed file, and would serve the old release's scripts
  hint: leave OPcache's file checks on in $D/clusters/production.yaml (opcache.validate_timestamps, opcache.revalidate_freq up to 60 s), or use `release_layout: releases`
error: 3 problems in the definitions
",
    );
}
