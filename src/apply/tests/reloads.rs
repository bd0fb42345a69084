//! Reloads: recorded as pending for a window, and every web app checked after php-fpm reloads.

use super::*;

#[test]
fn a_reload_for_a_window_is_recorded_as_pending() {
    let sandbox = Sandbox::new();
    let conf = sandbox.path("pool.conf");
    let fpm = Reload {
        service: Service::PhpFpm {
            version: crate::definitions::PhpVersion::new("8.2"),
        },
        label: "php8.2-fpm".into(),
        when: ReloadWhen::Window,
        pending: false,
        interrupted: false,
        next_window: None,
        window_open_until: None,
        reasons: Vec::new(),
        for_changes_only: true,
        groups: Vec::new(),
    };
    let plan = plan(vec![create(&conf, "x\n")], vec![fpm]);
    let (outcome, stderr) = sandbox.run(&sandbox.script(&plan, &HostFacts::default(), VALID));
    assert!(
        matches!(&outcome, Outcome::Applied { deferred, .. } if deferred == &["php8.2-fpm"]),
        "{outcome:?} {stderr}"
    );
    let pending = fs::read_to_string(sandbox.state().join("pending-reloads")).expect("pending");
    assert_eq!(pending, "php8.2-fpm\n");
}

/// A web server on loopback answering `answers` in turn (the last one
/// from then on) to each request for `domain`, and 200 to any other
/// domain; stops with the test.
fn web(domain: &'static str, answers: &'static [u16]) -> u16 {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut served = 0;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut host = String::new();
            for line in BufReader::new(&stream).lines() {
                let line = line.unwrap_or_default();
                if let Some(value) = line.strip_prefix("Host: ") {
                    host = value.to_owned();
                }
                if line.is_empty() {
                    break;
                }
            }
            let code = if host == domain {
                served += 1;
                answers[(served - 1).min(answers.len() - 1)]
            } else {
                200
            };
            let _ = write!(stream, "HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
        }
    });
    port
}

#[test]
fn after_php_fpm_reloads_every_web_app_must_answer() {
    let sandbox = Sandbox::new();
    let file = sandbox.path("pool.conf");
    let fpm = Reload {
        service: Service::PhpFpm {
            version: PhpVersion::new("8.2"),
        },
        label: "php8.2-fpm".into(),
        ..nginx_reload()
    };
    let plan = plan(vec![create(&file, "[pool]\n")], vec![fpm]);
    let check = |domain: &str| crate::units::WebCheck {
        app: AppName::new("shop"),
        domain: domain.into(),
        path: "/up".into(),
    };
    let options = ScriptOptions {
        web_checks: vec![check("warming.test"), check("broken.test")],
        ..ScriptOptions::default()
    };
    // warming.test answers 502 twice, then 200; broken.test 503 always.
    let port = web("warming.test", &[502, 502, 200]);
    let broken = web("broken.test", &[503]);
    let (script, _) = super::script::build(&plan, &HostFacts::default(), &options);
    let stubs = format!("{VALID}\nWEB_TRIES=10\nWEB_PORT={port}");
    let (first, _) = sandbox.run(&sandbox.with_overrides(&script, &stubs));
    let Outcome::Applied { unanswered, .. } = &first else {
        panic!("{first:?}");
    };
    assert_eq!(unanswered, &Vec::<StepOutput>::new(), "502, 502, then 200");

    let stubs = format!("{VALID}\nWEB_TRIES=10\nWEB_PORT={broken}");
    let sandbox = Sandbox::new();
    let plan = self::plan(
        vec![create(&sandbox.path("pool.conf"), "[pool]\n")],
        plan.reloads,
    );
    let (script, _) = super::script::build(&plan, &HostFacts::default(), &options);
    let (second, _) = sandbox.run(&sandbox.with_overrides(&script, &stubs));
    let Outcome::Applied { unanswered, .. } = &second else {
        panic!("{second:?}");
    };
    assert_eq!(
        unanswered,
        &vec![StepOutput::new(
            "broken.test",
            "GET /up answered 503 for 1 s after php-fpm reloaded"
        )]
    );
    assert!(!HostReport::new(ServerName::new("web-1"), second).succeeded());
}

/// supervisord (a stub) says which groups its files changed: the apply
/// updates only those that are the app's (its programs in the plan, its
/// group of old, a program of its that no file names any more), and says
/// which.
#[test]
fn a_supervisor_reload_updates_only_the_apps_changed_programs() {
    let sandbox = Sandbox::new();
    let updates = sandbox.path("updates");
    let shop = Reload {
        service: Service::Supervisor {
            group: "shop".into(),
        },
        label: "supervisor:shop".into(),
        groups: ["shop", "shop-a", "shop-b", "shop-c"]
            .map(String::from)
            .into(),
        ..nginx_reload()
    };
    let stubs = |reread: &str| {
        format!(
            "validate_one() {{ out=ok; }}\n\
             run_step() {{ shift 2; case \"$*\" in\n\
               'supervisorctl reread') out=$(printf '{reread}') ;;\n\
               'supervisorctl update '*) echo \"$*\" >>{updates}; out=updated ;;\n\
             esac; }}"
        )
    };
    let reread = "other-x: changed\\nshop: disappeared\\nshop-a: changed\\nshop-b: available\\n\
                  shop-old: disappeared\\nshopping-y: disappeared\\n";
    let plan = plan(Vec::new(), vec![shop.clone()]);
    let (outcome, stderr) =
        sandbox.run(&sandbox.script(&plan, &HostFacts::default(), &stubs(reread)));
    let Outcome::Applied {
        reloaded, programs, ..
    } = &outcome
    else {
        panic!("{outcome:?} {stderr}");
    };
    assert_eq!(reloaded, &["supervisor:shop"]);
    let updated = ["shop", "shop-a", "shop-b", "shop-old"];
    assert_eq!(programs["supervisor:shop"], updated);
    let calls = fs::read_to_string(&updates).expect("updates");
    assert_eq!(
        calls,
        format!("supervisorctl update {}\n", updated.join(" "))
    );

    // Nothing of shop's changed: no update at all, and the report says so.
    // (A sandbox of its own: this one's state says an apply ran.)
    fs::remove_file(&updates).expect("rm");
    let fresh = Sandbox::new();
    let (outcome, stderr) =
        fresh.run(&fresh.script(&plan, &HostFacts::default(), &stubs("other-x: changed\\n")));
    assert!(
        matches!(&outcome, Outcome::Applied { programs, .. } if programs["supervisor:shop"].is_empty()),
        "{outcome:?} {stderr}"
    );
    assert!(!Path::new(&updates).exists());
}
