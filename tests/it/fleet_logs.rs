//! Log rotation on a fleet server: logrotate, run by hand (`-f`) on the
//! rules reconciler writes for an app, moves aside every log the app's
//! daemons and cron write, and each writer goes on in a new file: nginx
//! and php-fpm reopen theirs on their signal, PHP and cron's shell open
//! theirs anew, as the app.

use crate::common;

use std::time::{Duration, Instant};

use common::Repo;

const SERVER: &str = "fleet-1";
const APP: &str = "rot";
const RULES: &str = "/etc/logrotate.d/reconciler-rot";
const LOGS: &str = "/var/log/reconciler/rot";
const APP_LOGS: &str = "/home/rot/shared/storage/logs";

/// The release: a page that logs `php-<m>` through PHP's error_log, and
/// an `artisan` that prints `scheduler-` and the release's `mark` file.
const RELEASE: &str = r#"set -e
d=/home/rot/releases/r1
mkdir -p $d/public
cat > $d/public/index.php <<'PHP'
<?php
error_log('php-' . ($_GET['m'] ?? ''));
echo 'ok';
PHP
cat > $d/artisan <<'PHP'
<?php
echo 'scheduler-', trim(file_get_contents(__DIR__ . '/mark')), "\n";
PHP
chown -R rot:rot $d
ln -sfn releases/r1 /home/rot/current && chown -h rot:rot /home/rot/current
"#;

/// Makes every writer write a line with `mark`: nginx (a request its
/// vhost denies, which it logs as an error and in its access log), PHP (a page that calls
/// error_log) and the scheduler (cron.d's own command line, run as cron
/// runs it: as the app, in sh).
fn write_each(repo: &Repo, mark: &str) {
    let server = repo.server(SERVER);
    let host = format!("{APP}.test");
    let (status, _) = server.http_get(&format!("/.denied-nginx-{mark}"), &host);
    assert_eq!(status, 403);
    let (status, body) = server.http_get(&format!("/?m={mark}"), &host);
    assert_eq!((status, body.as_str()), (200, "ok"));
    repo.ssh(
        SERVER,
        &format!(
            "set -e\necho {mark} > /home/rot/releases/r1/mark\n\
             line=$(grep -m1 'schedule:run' /etc/cron.d/rot)\n\
             case $line in '* * * * * rot '*) ;; *) exit 1 ;; esac\n\
             runuser -u rot -- sh -c \"${{line#* rot }}\"\n"
        ),
    );
}

/// `path` on the server, or "" when it does not exist.
fn read(repo: &Repo, path: &str) -> String {
    repo.ssh(SERVER, &format!("cat {path} 2>/dev/null || true"))
}

/// The marks of each writer a log must hold: (file, line). The access
/// log's lines name no path: the denied request is its 403.
fn lines(mark: &str) -> [(String, String); 4] {
    [
        (format!("{LOGS}/access.log"), " 403 ".to_owned()),
        (
            format!("{LOGS}/nginx-error.log"),
            format!("/.denied-nginx-{mark}"),
        ),
        (format!("{APP_LOGS}/php-error.log"), format!("php-{mark}")),
        (
            format!("{APP_LOGS}/scheduler.log"),
            format!("scheduler-{mark}"),
        ),
    ]
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn every_log_a_daemon_or_cron_writes_is_rotated_and_written_anew() {
    let repo = Repo::new(&[SERVER]);
    repo.app(APP, &[SERVER], 2, "    scheduler: true\n");
    // Only what this apply writes counts, not a rule an earlier run left.
    repo.ssh(SERVER, &format!("rm -f {RULES}"));
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.ssh(SERVER, RELEASE);
    // nginx holds its log open: emptied, not removed.
    repo.ssh(
        SERVER,
        &format!(
            "rm -f {LOGS}/*.log.* {APP_LOGS}/*.log.*\n\
             for f in {LOGS}/*.log {APP_LOGS}/*.log; do [ ! -f \"$f\" ] || : > \"$f\"; done"
        ),
    );
    // Marks of this run only.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let before = format!("before{run}");
    write_each(&repo, &before);
    // cron runs the scheduler every minute too: from now on its lines must
    // not carry the mark, or a tick just after the rotation writes it anew.
    repo.ssh(SERVER, "echo idle > /home/rot/releases/r1/mark");
    // A trace of a request over 5 s, which the master appends as root (a
    // slow request would make the test 5 s longer): an empty log is not
    // rotated, and php-fpm is sent USR1 only after its log was.
    repo.ssh(
        SERVER,
        &format!("echo 'script_filename = {before}' >> {LOGS}/fpm-slow.log"),
    );

    let fpm_log = "/var/log/php8.2-fpm.log";
    let reopened = |repo: &Repo| {
        read(repo, fpm_log)
            .matches("error log file re-opened")
            .count()
    };
    let fpm_reopened = reopened(&repo);
    let fpm_master = repo.ssh(SERVER, "cat /run/php/php8.2-fpm.pid");
    let started = Instant::now();
    let out = repo.ssh(
        SERVER,
        &format!("logrotate -f -s /tmp/rot.status {RULES} 2>&1; echo \"exit $?\""),
    );
    assert_eq!(out, "exit 0\n", "logrotate -f {RULES}");
    let rotated_in = started.elapsed();

    // Each log was moved aside with what was written before; the app's own
    // were moved as the app.
    let slow = (
        format!("{LOGS}/fpm-slow.log"),
        format!("script_filename = {before}"),
    );
    for (log, line) in lines(&before).into_iter().chain([slow]) {
        let old = read(&repo, &format!("{log}.1"));
        assert!(old.contains(&line), "{log}.1 lacks {line:?}: {old:?}");
        assert!(
            !read(&repo, &log).contains(&line),
            "{log} still holds {line:?}"
        );
    }
    let owners = repo.ssh(
        SERVER,
        &format!("stat -c '%U %n' {APP_LOGS}/php-error.log.1 {APP_LOGS}/scheduler.log.1"),
    );
    assert_eq!(
        owners,
        format!("rot {APP_LOGS}/php-error.log.1\nrot {APP_LOGS}/scheduler.log.1\n")
    );
    // php-fpm reopened its logs (USR1), and was not restarted.
    assert_eq!(
        reopened(&repo),
        fpm_reopened + 1,
        "{}",
        read(&repo, fpm_log)
    );
    assert_eq!(repo.ssh(SERVER, "cat /run/php/php8.2-fpm.pid"), fpm_master);

    // Every writer goes on in the new file: nginx once its master has
    // reopened the file (at once, or within the deadline).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut round = 0;
    loop {
        let mark = format!("after{run}-{round}");
        write_each(&repo, &mark);
        let missing: Vec<String> = lines(&mark)
            .into_iter()
            .filter(|(log, line)| !read(&repo, log).contains(line))
            .map(|(log, line)| {
                format!(
                    "{line:?} not in {log} (.1: {:?})",
                    read(&repo, &format!("{log}.1"))
                )
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{}", missing.join("\n"));
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("rotated in {:.2} s", rotated_in.as_secs_f64());

    // An app that links its logs directory to a directory of root's: the
    // rules act there as the app, who may not even look in it, so root's
    // file is neither moved nor compressed.
    let trap = "/root/rot-trap";
    let out = repo.ssh(
        SERVER,
        &format!(
            "set -e\nmkdir -p {trap} && chmod 700 {trap} && echo root > {trap}/php-error.log\n\
             runuser -u rot -- sh -c 'mv {APP_LOGS} {APP_LOGS}.real && ln -s {trap} {APP_LOGS}'\n\
             logrotate -f -s /tmp/rot.status {RULES} >/dev/null 2>&1 || true\n\
             ls {trap}; cat {trap}/php-error.log\n\
             rm -f {APP_LOGS} && runuser -u rot -- mv {APP_LOGS}.real {APP_LOGS}\nrm -rf {trap}\n"
        ),
    );
    assert_eq!(out, "php-error.log\nroot\n", "root's file was rotated");
}
