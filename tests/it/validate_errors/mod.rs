//! Every invalid fixture under tests/fixtures/invalid gives its exact
//! diagnostics (file, line, column, message, hint) and exit code 1.

use std::path::Path;

/// Runs `reconciler validate` on a fixture and returns (exit code, stdout, stderr),
/// with the fixture's directory written as `$D` in stderr.
fn validate(case: &str) -> (Option<i32>, String, String) {
    validate_with(case, &[])
}

/// `validate` with more arguments, in which `$D` is the fixture's directory.
fn validate_with(case: &str, more: &[&str]) -> (Option<i32>, String, String) {
    let dir = format!("tests/fixtures/invalid/{case}");
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(&dir).is_dir(),
        "no fixture {dir}"
    );
    let more: Vec<String> = more.iter().map(|a| a.replace("$D", &dir)).collect();
    let output = crate::common::reconciler()
        .args(["validate", "-d", &dir])
        .args(&more)
        .output()
        .expect("run reconciler");
    let stderr = String::from_utf8_lossy(&output.stderr).replace(&dir, "$D");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    (output.status.code(), stdout, stderr)
}

fn assert_invalid(case: &str, expected: &str) {
    let (code, stdout, stderr) = validate(case);
    assert_eq!(stderr, expected, "stderr of {case}");
    assert_eq!(stdout, "", "stdout of {case}");
    assert_eq!(code, Some(1), "exit code of {case}");
}

#[test]
fn bad_cron() {
    assert_invalid(
        "bad_cron",
        "\
$D/clusters/production.yaml:4:17: `every night` is not a cron schedule: it has 2 fields; a schedule has 6 (seconds first) or 7 (a year last)
  hint: six fields with seconds first: sec min hour day-of-month month day-of-week, such as \"0 0 3 * * *\"
error: 1 problem in the definitions
",
    );
}

#[test]
fn bad_duration() {
    assert_invalid(
        "bad_duration",
        "\
$D/clusters/production.yaml:4:42: `1x` is not a duration: unknown unit `x`
  hint: such as 90s, 15m, 1h or 1h30m
error: 1 problem in the definitions
",
    );
}

#[test]
fn bad_timezone() {
    assert_invalid(
        "bad_timezone",
        "\
$D/clusters/production.yaml:4:56: `Mars/Olympus` is not a timezone: not an IANA timezone
error: 1 problem in the definitions
",
    );
}

#[test]
fn broken_yaml() {
    assert_invalid(
        "broken_yaml",
        "\
$D/clusters/production.yaml:2:6: mapping values are not allowed in this context
error: 1 problem in the definitions
",
    );
}

#[test]
fn duplicate_app() {
    assert_invalid(
        "duplicate_app",
        "\
$D/apps/shop.yaml:1:7: app `shop` is defined twice; first at $D/apps/shop-copy.yaml:1:7
error: 1 problem in the definitions
",
    );
}

#[test]
fn duplicate_domain() {
    assert_invalid(
        "duplicate_domain",
        "\
$D/apps/shop.yaml:5:11: domain `shop.example.com` is defined twice; first at $D/apps/blog.yaml:5:11
error: 1 problem in the definitions
",
    );
}

/// Two apps whose workers are one supervisor program on one server
/// (`shop-admin-mail`): supervisor would merge them into one.
#[test]
fn duplicate_program() {
    assert_invalid(
        "duplicate_program",
        "\
$D/apps/shop.yaml:8:17: worker `admin-mail` is the supervisor program `shop-admin-mail` on `jobs-1`, which app `shop-admin` has too (first at $D/apps/shop-admin.yaml:8:17)
  hint: rename one of the two workers
error: 1 problem in the definitions
",
    );
}

#[test]
fn duplicate_server() {
    assert_invalid(
        "duplicate_server",
        "\
$D/clusters/staging.yaml:4:13: server `web-1` is defined twice; first at $D/clusters/production.yaml:4:13
error: 1 problem in the definitions
",
    );
}

#[test]
fn many_problems() {
    assert_invalid(
        "many_problems",
        "\
$D/apps/shop.yaml:1:7: `shop_1` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
$D/apps/shop.yaml:2:10: cluster `nowhere` is not defined
  hint: defined clusters: `Production`
$D/apps/shop.yaml:5:29: `bad domain` is not a domain name
$D/clusters/production.yaml:1:7: `Production` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
$D/clusters/production.yaml:5:30: `-oProxyCommand=x` is not a host name, an IP address or `local`
error: 5 problems in the definitions
",
    );
}

#[test]
fn missing_cluster() {
    assert_invalid(
        "missing_cluster",
        "\
$D/apps/shop.yaml:2:10: cluster `prod` is not defined
  hint: did you mean `production`?
error: 1 problem in the definitions
",
    );
}

/// A `notify:` target's `to:` that no line of the notify URLs file could
/// name, or a target listed twice (it would be told everything twice).
#[test]
fn notify_target_name() {
    assert_invalid(
        "notify_target_name",
        "\
$D/apps/shop.yaml:7:9: `#chat` cannot name a notify target: the notify URLs file gives one `NAME URL` a line
  hint: a name without blanks that does not start with `#`, such as `ops`
$D/clusters/production.yaml:5:11: `ops team` cannot name a notify target: the notify URLs file gives one `NAME URL` a line
  hint: a name without blanks that does not start with `#`, such as `ops`
$D/clusters/production.yaml:6:11: notify target `ops` is listed twice; first at line 4, column 11
  hint: one entry per target, with every event it wants in its `events`
error: 3 problems in the definitions
",
    );
}

/// With `--notify-urls`, a target the file does not name (its
/// notifications would only be counted as failed) is refused; without
/// it, the URLs are the daemon's to know, and the definitions are valid.
#[test]
fn notify_unknown_target() {
    let (code, stdout, stderr) = validate_with(
        "notify_unknown_target",
        &["--notify-urls", "$D/notify-urls"],
    );
    assert_eq!(
        stderr,
        "\
$D/apps/shop.yaml:7:11: notify target `pager` is not in the notify URLs file `$D/notify-urls`
  hint: it names `chat`, `ops`; add a line `pager URL` to it
$D/clusters/production.yaml:5:11: notify target `chta` is not in the notify URLs file `$D/notify-urls`
  hint: did you mean `chat`?
error: 2 problems in the definitions
"
    );
    assert_eq!((code, stdout.as_str()), (Some(1), ""));
    let (code, stdout, _) = validate("notify_unknown_target");
    assert_eq!((code, stdout.as_str()), (Some(0), "ok: 1 cluster, 1 app\n"));
}

#[test]
fn missing_field() {
    assert_invalid(
        "missing_field",
        "\
$D/clusters/production.yaml:5:7: servers[1]: missing field `address`
error: 1 problem in the definitions
",
    );
}

#[test]
fn name_injection() {
    assert_invalid(
        "name_injection",
        "\
$D/apps/shop.yaml:11:17: `x;rm -rf /` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
error: 1 problem in the definitions
",
    );
}

#[test]
fn name_space() {
    assert_invalid(
        "name_space",
        "\
$D/clusters/production.yaml:5:13: `a b` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
error: 1 problem in the definitions
",
    );
}

#[test]
fn name_traversal() {
    assert_invalid(
        "name_traversal",
        "\
$D/apps/shop.yaml:1:7: `../x` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
error: 1 problem in the definitions
",
    );
}

#[test]
fn name_uppercase() {
    assert_invalid(
        "name_uppercase",
        "\
$D/apps/shop.yaml:1:7: `Shop` is not a valid name: it must match ^[a-z][a-z0-9-]{0,31}$
  hint: names become Unix users, file names and supervisor groups: use lowercase letters, digits and `-`, starting with a letter
error: 1 problem in the definitions
",
    );
}

#[test]
fn not_a_mapping() {
    assert_invalid(
        "not_a_mapping",
        "\
$D/clusters/production.yaml:1:1: invalid type: sequence, expected struct Cluster
error: 1 problem in the definitions
",
    );
}

#[test]
fn php_not_in_cluster() {
    assert_invalid(
        "php_not_in_cluster",
        "\
$D/apps/shop.yaml:4:6: cluster `production` does not install PHP 8.3
  hint: it installs `8.2`
error: 1 problem in the definitions
",
    );
}

#[test]
fn pool_sizes() {
    assert_invalid(
        "pool_sizes",
        "\
$D/apps/shop.yaml:8:91: `max_spare_workers` (10) is less than `initial_workers` (12)
  hint: pool sizes must satisfy min_spare_workers ≤ initial_workers ≤ max_spare_workers ≤ max_workers
error: 1 problem in the definitions
",
    );
}

#[test]
fn redis_without_save_path() {
    assert_invalid(
        "redis_without_save_path",
        "\
$D/clusters/production.yaml:3:13: a shared session store needs a `save_path`
  hint: such as save_path: \"tcp://10.0.0.5:6379\"
error: 1 problem in the definitions
",
    );
}

#[test]
fn server_not_in_cluster() {
    assert_invalid(
        "server_not_in_cluster",
        "\
$D/apps/shop.yaml:7:11: server `web-2` is not in cluster `production`
  hint: did you mean `web-1`?
error: 1 problem in the definitions
",
    );
}

#[test]
fn shared_absolute() {
    assert_invalid(
        "shared_absolute",
        "\
$D/apps/shop.yaml:6:19: shared path `/etc` is absolute
  hint: shared paths are relative to the release root, such as storage/app
error: 1 problem in the definitions
",
    );
}

#[test]
fn shared_dotdot() {
    assert_invalid(
        "shared_dotdot",
        "\
$D/apps/shop.yaml:6:10: shared path `storage/../../secrets` leaves the release with `..`
error: 1 problem in the definitions
",
    );
}

#[test]
fn shared_duplicate() {
    assert_invalid(
        "shared_duplicate",
        "\
$D/apps/shop.yaml:9:5: shared path `storage/app` is defined twice; first at $D/apps/shop.yaml:7:5
error: 1 problem in the definitions
",
    );
}

#[test]
fn unclosed_flow() {
    assert_invalid(
        "unclosed_flow",
        "\
$D/clusters/production.yaml:3:1: did not find expected ',' or ']', while parsing a flow sequence
error: 1 problem in the definitions
",
    );
}

#[test]
fn unknown_key() {
    assert_invalid(
        "unknown_key",
        "\
$D/clusters/production.yaml:5:21: unknown key `adress`
  hint: did you mean `address`?
error: 1 problem in the definitions
",
    );
}

#[test]
fn unknown_key_app() {
    assert_invalid(
        "unknown_key_app",
        "\
$D/apps/shop.yaml:5:1: unknown key `domain`
  hint: did you mean `domains`?
error: 1 problem in the definitions
",
    );
}

#[test]
fn unknown_variant() {
    assert_invalid(
        "unknown_variant",
        "\
$D/clusters/production.yaml:3:22: sessions.handler: unknown variant `rediss`, expected one of `files`, `redis`, `memcached`
  hint: did you mean `redis`?
error: 1 problem in the definitions
",
    );
}

#[test]
fn web_on_worker_server() {
    assert_invalid(
        "web_on_worker_server",
        "\
$D/apps/shop.yaml:8:5: server `jobs-1` is not a web server
  hint: set `web_server: true` on it in $D/clusters/production.yaml, or give the web role to a web server
error: 1 problem in the definitions
",
    );
}

#[test]
fn wrong_type() {
    assert_invalid(
        "wrong_type",
        "\
$D/clusters/production.yaml:5:48: servers[1].port: invalid type: string \"ssh\", expected u16
error: 1 problem in the definitions
",
    );
}

mod refused;

#[test]
fn bad_elastic() {
    assert_invalid(
        "bad_elastic",
        "\
$D/clusters/production.yaml:7:16: `max_servers` must be at least 1
$D/clusters/production.yaml:8:21: `Root` is not a Unix user name
$D/clusters/production.yaml:8:35: port 0 cannot be connected to
$D/clusters/production.yaml:8:44: `web-2` is not a server of cluster `production`
  hint: did you mean `web-1`?
error: 4 problems in the definitions
",
    );
}
