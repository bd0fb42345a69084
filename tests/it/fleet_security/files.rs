//! Files, commands and users the apps control: root never follows, runs or takes them.

use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_worker_log_is_never_opened_by_root_where_the_app_can_write() {
    let repo = Repo::new(&["fleet-1"]);
    web_app(
        &repo,
        "logger",
        "fleet-1",
        "    workers: [{ name: w, command: sleep 600 }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "logger");
    let conf = repo.ssh("fleet-1", "cat /etc/supervisor/conf.d/logger.conf");
    assert!(
        conf.contains("stdout_logfile=/var/log/reconciler/logger/worker-w.log"),
        "{conf}"
    );

    // The attack: plant a link where the log was, and where it is now,
    // then kill the worker so supervisord (root) reopens its log.
    let attack = as_app(
        "logger",
        "mkdir -p /home/logger/shared/storage/logs; \
         ln -sfn /etc/cron.d/pwn /home/logger/shared/storage/logs/worker-w.log; \
         ln -sfn /etc/cron.d/pwn /var/log/reconciler/logger/worker-w.log 2>&1 || echo refused; \
         pkill -KILL -u logger sleep || true",
    );
    let out = repo.ssh("fleet-1", &attack);
    assert!(out.contains("Permission denied"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    let check = repo.ssh(
        "fleet-1",
        "test -e /etc/cron.d/pwn && echo PWNED; stat -c '%U:%G %a %F' /var/log/reconciler/logger /var/log/reconciler/logger/worker-w.log",
    );
    assert!(!check.contains("PWNED"), "{check}");
    assert!(check.starts_with("root:logger 750 directory\n"), "{check}");
    assert!(check.contains("regular"), "{check}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn commands_with_shell_and_config_syntax_run_as_written() {
    let repo = Repo::new(&["fleet-1"]);
    // ` ;` once became a supervisor comment (BACKOFF after a "successful"
    // apply); `%` an expansion; `'` broke the quoting.
    web_app(
        &repo,
        "quoted",
        "fleet-1",
        "    workers: [{ name: w, command: \"echo \\\"it's 100%\\\" ; echo 'done # a hash' ; sleep 600\" }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "quoted");
    repo.ssh(
        "fleet-1",
        "supervisorctl start quoted-w:* >/dev/null 2>&1 || true",
    );
    let started = Instant::now();
    let status = loop {
        let status = repo.ssh("fleet-1", "supervisorctl status quoted-w:* || true");
        if status.contains("RUNNING") || started.elapsed() > Duration::from_secs(10) {
            break status;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(status.contains("RUNNING"), "{status}");
    let log = repo.ssh(
        "fleet-1",
        "sleep 1; cat /var/log/reconciler/quoted/worker-w.log",
    );
    assert!(log.contains("it's 100%\ndone # a hash\n"), "{log}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn the_real_parsers_read_hostile_values_as_written() {
    // The property tests check the renderers against models of these
    // parsers; this checks the models' verdicts with the parsers
    // themselves: supervisor's (Python) and PHP's.
    let fleet = common::Fleet::load();
    let server = fleet.server("fleet-1");
    let hostile = [
        "sleep 30 ; echo done",
        "a # b",
        "it's",
        "100%",
        "%(ENV_HOME)s",
        "\"${HOME}\"",
        "x = y ; [program:pwn]",
        "back\\slash\\",
        "$(id) `id`",
    ];
    for value in hostile {
        let command = reconciler::units::escape::supervisor_command(value);
        let ini = reconciler::units::escape::php_ini_string(value);
        let script = format!(
            "set -e\ncat > /tmp/t.conf <<'EOF'\n[program:x]\ncommand={command}\nEOF\n\
             cat > /tmp/t.ini <<'EOF'\nsession.name = {ini}\nEOF\n\
             python3 -c 'from supervisor.options import UnhosedConfigParser\n\
import shlex, json\np = UnhosedConfigParser()\np.read(\"/tmp/t.conf\")\n\
print(json.dumps(shlex.split(p.get(\"program:x\", \"command\") % {{}})))'\n\
             php -n -c /tmp/t.ini -r 'echo json_encode(ini_get(\"session.name\")), \"\\n\";'\n"
        );
        let out = server.ssh_ok(&fleet, &script);
        let mut lines = out.lines();
        let argv: Vec<String> =
            serde_json::from_str(lines.next().expect("argv")).expect("argv JSON");
        let script = format!("{}{value}", reconciler::units::escape::shell_prefix(value));
        assert_eq!(argv, ["/bin/sh", "-c", &script], "{value}");
        let read: String = serde_json::from_str(lines.next().expect("ini")).expect("ini JSON");
        assert_eq!(read, value);
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_symlink_swapped_in_after_the_plan_gives_the_app_nothing() {
    let repo = Repo::new(&["fleet-2"]);
    repo.write(
        "apps/racer.yaml",
        "name: racer\ncluster: fleet\nrepo: /srv/racer.git\nphp: \"8.2\"\n\
         servers: [{ name: fleet-2, scheduler: true }]\n",
    );
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    // Drift the app made itself: apply wants to put the mode back.
    let logs = "/home/racer/shared/storage/logs";
    repo.ssh(
        "fleet-2",
        &format!(
            "mkdir -p /opt/victim && chmod 700 /opt/victim && chown root:root /opt/victim\n{}",
            as_app("racer", &format!("chmod 700 {logs}"))
        ),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let files = DefinitionFiles::read_dir(repo.dir.path()).expect("read");
        let loaded = converge::load(&files).expect("valid");
        let selection = Selection {
            servers: vec![ServerName::new("fleet-2")],
            apps: Vec::new(),
        };
        let target = converge::select(&loaded.definitions, &loaded.desired, &selection)
            .expect("select")
            .remove(0);
        let options = ConnectOptions {
            known_hosts: Some(repo.fleet.known_hosts.clone()),
            identity: Some(repo.fleet.key.clone()),
            ..ConnectOptions::default()
        };
        let transport = transport::connect(&target.desired.server, &options)
            .await
            .expect("connect");
        let reconcile = ReconcileOptions {
            now: chrono::Utc::now(),
            reload_now: true,
            holder: "test".into(),
            revision: None,
            lock_wait: Duration::from_secs(10),
        };
        let observed = converge::observe(&target, transport.as_ref(), &reconcile)
            .await
            .expect("observe");
        let kinds: Vec<String> = observed
            .plan
            .changes
            .iter()
            .map(|c| format!("{c:?}"))
            .collect();
        assert!(
            kinds.iter().any(|k| k.contains(logs)),
            "the plan fixes the mode: {kinds:?}"
        );
        // The race: between plan and apply, the app swaps in a link.
        repo.ssh(
            "fleet-2",
            &as_app(
                "racer",
                &format!("mv {logs} {logs}.old && ln -s /opt/victim {logs}"),
            ),
        );
        let report = converge::act(&target, transport.as_ref(), &observed, &reconcile).await;
        assert!(!report.succeeded(), "{report:?}");
    });
    let victim = repo.ssh("fleet-2", "stat -c '%U:%G %a' /opt/victim");
    assert_eq!(victim, "root:root 700\n");
    repo.ssh(
        "fleet-2",
        &format!("rm -f {logs} && mv {logs}.old {logs}; rmdir /opt/victim"),
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn nginx_serves_no_link_into_another_apps_files() {
    let repo = Repo::new(&["fleet-1"]);
    web_app(&repo, "shop", "fleet-1", "");
    web_app(&repo, "blog", "fleet-1", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    install_release(&repo, "fleet-1", "shop");
    install_release(&repo, "fleet-1", "blog");
    repo.ssh(
        "fleet-1",
        &format!(
            "{}\n{}",
            as_app(
                "blog",
                "echo DB_PASSWORD=hunter2 > /home/blog/shared/.env && chmod 640 /home/blog/shared/.env"
            ),
            as_app(
                "shop",
                "ln -sfn /home/blog/shared/.env /home/shop/releases/t1/public/leak.txt; \
                 echo own > /home/shop/shared/own.txt; \
                 ln -sfn /home/shop/shared/own.txt /home/shop/releases/t1/public/own.txt"
            ),
        ),
    );
    let server = repo.server("fleet-1");
    // nginx refuses the link; `try_files` then hands the request to the
    // app's index.php.
    let leak = server.http_response("/leak.txt", "shop.test");
    assert!(!leak.body.contains("hunter2"), "{leak:?}");
    assert_eq!(leak.body, "shop redis", "{leak:?}");
    // The app's own links and releases (through `current`) still work.
    assert_eq!(
        server.http_get("/own.txt", "shop.test"),
        (200, "own\n".into())
    );
    assert_eq!(server.http_get("/", "shop.test").0, 200);
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_existing_login_user_is_not_taken_over() {
    let repo = Repo::new(&["fleet-3"]);
    repo.ssh(
        "fleet-3",
        "id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups sudo deploy",
    );
    repo.write(
        "apps/deploy.yaml",
        "name: deploy\ncluster: fleet\nrepo: /srv/deploy.git\nphp: \"8.2\"\n\
         servers: [{ name: fleet-3, scheduler: true }]\n",
    );
    let out = repo.run_expect(&["plan"], 1);
    assert!(
        out.contains(
            "fleet-3: error: user `deploy` exists and reconciler did not create it: \
             it has the login shell `/bin/bash`, its uid"
        ),
        "{out}"
    );
    assert!(out.contains("it is in the group `sudo`"), "{out}");
    assert!(out.contains("adopt_user: true"), "{out}");
    let out = repo.run_expect(&["apply", "--yes"], 1);
    assert!(out.contains("Apply: 0 applied"), "{out}");
    let untouched = repo.ssh(
        "fleet-3",
        "test -e /etc/cron.d/deploy && echo written || echo none",
    );
    assert_eq!(untouched, "none\n");

    // Said explicitly, the user is taken over.
    repo.write(
        "apps/deploy.yaml",
        "name: deploy\ncluster: fleet\nrepo: /srv/deploy.git\nphp: \"8.2\"\nadopt_user: true\n\
         servers: [{ name: fleet-3, scheduler: true }]\n",
    );
    repo.run_expect(&["plan", "--detailed-exitcode"], 2);
    repo.ssh("fleet-3", "userdel -r deploy >/dev/null 2>&1 || true");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_path_planted_in_the_manifest_is_neither_shown_nor_removed() {
    let repo = Repo::new(&["fleet-3"]);
    web_app(&repo, "plain", "fleet-3", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    repo.ssh(
        "fleet-3",
        "echo 'TOP SECRET' > /root/secret.txt\n\
         printf '%s\\n' /root/secret.txt /etc/nginx/sites-enabled/../../shadow >> /var/lib/reconciler/manifest",
    );
    let plan = repo.run_expect(&["plan"], 0);
    assert!(!plan.contains("secret"), "{plan}");
    assert!(!plan.contains("TOP SECRET"), "{plan}");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    let left = repo.ssh(
        "fleet-3",
        "cat /root/secret.txt; test -e /etc/shadow && echo shadow",
    );
    assert_eq!(left, "TOP SECRET\nshadow\n");
    let manifest = repo.ssh("fleet-3", "cat /var/lib/reconciler/manifest");
    assert!(
        !manifest.contains("secret"),
        "rewritten without it: {manifest}"
    );
    repo.ssh("fleet-3", "rm -f /root/secret.txt");
}
