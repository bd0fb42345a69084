//! The dashboard's private pages on a loopback port: an app's logs and
//! its rollback, behind a login with the deploy tokens. The servers are
//! fakes (`FakeConnector`): the logs script's answer is a hostile line,
//! and the rollback's scripts are looked at, not run.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use reconciler::board::Board;
use reconciler::definitions::Definitions;
use reconciler::release::{LogEntry, LogResult, Sha};
use reconciler::remote::protocol::encode_text;
use reconciler::serve::dashboard::console::{Console, router};
use reconciler::serve::dashboard::session::Sessions;
use reconciler::serve::deploy::Deployer;
use reconciler::serve::{self, Tokens};
use reconciler::transport::Output;
use reconciler::transport::fake::{FakeConnector, FakeTransport};

use crate::common::{HttpResponse, http};

const SHOP_TOKEN: &str = "shop-token-0123456789abcdef0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const LIVE: &str = "4ba7c0ffee124ba7c0ffee124ba7c0ffee124ba7";
const HOSTILE: &str =
    "[2026-11-22 20:00:00] production.ERROR: <script>document.title='owned'</script>";

struct Server {
    addr: SocketAddr,
    connector: Arc<FakeConnector>,
    _dir: tempfile::TempDir,
    _runtime: tokio::runtime::Runtime,
}

/// Definitions of `shop` and `blog` on web-1, the tokens of shop and of
/// the admin, a board with one live release of shop, and web-1 a fake
/// whose logs hold a hostile line.
fn start() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("defs");
    std::fs::create_dir_all(root.join("clusters")).expect("mkdir");
    std::fs::create_dir_all(root.join("apps")).expect("mkdir");
    std::fs::write(
        root.join("clusters/fleet.yaml"),
        "name: fleet\nphp: [\"8.2\"]\nservers:\n  - { name: web-1, address: 127.0.0.1, port: 9, web_server: true }\n",
    )
    .expect("cluster");
    for app in ["shop", "blog"] {
        std::fs::write(
            root.join(format!("apps/{app}.yaml")),
            format!(
                "name: {app}\ncluster: fleet\nrepo: https://git.example.com/{app}.git\nphp: \"8.2\"\n\
                 domains: [{app}.test]\nservers:\n  - name: web-1\n    web: {{ max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }}\n"
            ),
        )
        .expect("app");
    }
    let definitions = Definitions::load(&root).expect("definitions");
    let tokens_file = dir.path().join("tokens");
    std::fs::write(
        &tokens_file,
        format!(
            "{}\n{}\n",
            Tokens::line("shop", SHOP_TOKEN),
            Tokens::line("*", ADMIN_TOKEN)
        ),
    )
    .expect("tokens");
    let tokens = Tokens::read(&tokens_file).expect("tokens");

    let mut logs = encode_text(
        "chunk",
        &[
            "/home/shop/shared/storage/logs/laravel.log",
            &base64_of(HOSTILE),
            "100",
            "0",
        ],
    );
    logs.extend(encode_text("done", &["logs", ""]));
    let connector = Arc::new(
        FakeConnector::default().with(FakeTransport::new("web-1").on_every(
            "logs_read",
            Output {
                status: Some(0),
                stdout: logs,
                stderr: Vec::new(),
            },
        )),
    );

    let board = Arc::new(Board::new("/srv/defs.git", "main", None));
    let entry = LogEntry {
        sha: Sha::parse(LIVE).expect("sha"),
        time: "2026-11-22T19:00:00Z".into(),
        trigger: "webhook".into(),
        result: LogResult::Live,
        duration_ms: 1000,
        who: "webhook".into(),
        previous: None,
        reason: None,
        warmed: None,
    };
    board.release_logs("shop", "web-1", &[entry], chrono::Utc::now());

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let deployer = Arc::new(Deployer::new(
        tokens,
        Arc::new(RwLock::new(Some(Arc::new(definitions)))),
        connector.clone(),
        dir.path().join("apps"),
        Arc::new(serve::AuthGuard::default()),
        tokio_util::task::TaskTracker::new(),
    ));
    let console = Arc::new(Console {
        deployer,
        board,
        sessions: Sessions::default(),
    });
    let listener = runtime
        .block_on(serve::bind("127.0.0.1:0".parse().expect("addr")))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    runtime.spawn(serve::serve(
        listener,
        router(console),
        serve::Limits::default(),
        std::future::pending(),
    ));
    Server {
        addr,
        connector,
        _dir: dir,
        _runtime: runtime,
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http(server.addr, "GET", path, headers, b"").expect("answer")
}

fn post_form(server: &Server, path: &str, headers: &[(&str, &str)], form: &str) -> HttpResponse {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http(server.addr, "POST", path, &all, form.as_bytes()).expect("answer")
}

/// Signs in with `token` by the login form: the `Cookie` header to send.
fn sign_in(server: &Server, token: &str) -> (String, HttpResponse) {
    let answer = post_form(server, "/login", &[], &format!("token={token}&app=shop"));
    assert_eq!(answer.status, 303, "{answer:?}");
    let set = answer.header("set-cookie").expect("a cookie").to_owned();
    let pair = set.split(';').next().expect("pair").to_owned();
    (pair, answer)
}

#[test]
fn an_apps_logs_need_a_token_and_its_lines_are_text() {
    let server = start();

    // Without a token: 401 and the login form, no log line read.
    let answer = get(&server, "/apps/shop/logs", &[]);
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer
            .body
            .contains(r#"<form method="post" action="/login">"#),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("production.ERROR"), "{}", answer.body);
    let wrong = get(
        &server,
        "/apps/shop/logs",
        &[("Authorization", "Bearer not-a-token")],
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let stale = get(
        &server,
        "/apps/shop/logs",
        &[("Cookie", "reconciler_session=0123")],
    );
    assert_eq!(stale.status, 401, "{stale:?}");
    let transport = server.connector.transport("web-1").expect("web-1");
    assert!(transport.sent().is_empty(), "a server was asked");
    // A wrong token at the login: 401 again.
    let refused = post_form(&server, "/login", &[], "token=nope&app=shop");
    assert_eq!(refused.status, 401, "{refused:?}");

    // The login form's token becomes a cookie: HttpOnly, SameSite=Strict,
    // never the token, never in the address it sends the browser to.
    let (cookie, login) = sign_in(&server, SHOP_TOKEN);
    let set = login.header("set-cookie").expect("cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains(SHOP_TOKEN), "{set}");
    let location = login.header("location").expect("location");
    assert_eq!(location, "/apps/shop/logs");

    let page = get(&server, "/apps/shop/logs", &[("Cookie", &cookie)]);
    assert_eq!(page.status, 200, "{page:?}");
    let policy = page.header("content-security-policy").expect("a policy");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("script-src 'self'"),
        "{policy}"
    );
    // The hostile line is text.
    assert!(
        page.body
            .contains("production.ERROR: &lt;script&gt;document.title"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<script>document"), "{}", page.body);
    assert!(
        page.body.contains("laravel.log") && page.body.contains("2026-11-22 20:00:00"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(SHOP_TOKEN), "{}", page.body);

    // Shop's token is not blog's; the admin's is every app's, as a
    // bearer token too.
    let other = get(&server, "/apps/blog/logs", &[("Cookie", &cookie)]);
    assert_eq!(other.status, 403, "{other:?}");
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let blog = get(&server, "/apps/blog/logs", &[("Authorization", &admin)]);
    assert_eq!(blog.status, 200, "{blog:?}");

    // Signed out: the cookie no longer works.
    let out = post_form(&server, "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(out.status, 303, "{out:?}");
    let after = get(&server, "/apps/shop/logs", &[("Cookie", &cookie)]);
    assert_eq!(after.status, 401, "{after:?}");
}

#[test]
fn a_rollback_from_the_dashboard_needs_a_token_and_runs_the_clis_rollback_as_who_asked() {
    let server = start();
    let transport = server.connector.transport("web-1").expect("web-1");
    let form = format!("to={LIVE}");

    let refused = post_form(&server, "/apps/shop/rollback", &[], &form);
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(transport.sent().is_empty(), "a server was asked");

    let (cookie, _) = sign_in(&server, SHOP_TOKEN);
    // The page lists the release that went live, with its button.
    let page = get(&server, "/apps/shop/logs", &[("Cookie", &cookie)]);
    assert!(
        page.body.contains(&format!(r#"name="to" value="{LIVE}""#)),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(r#"action="/apps/shop/rollback""#),
        "{}",
        page.body
    );

    // Only a release the history lists.
    let unlisted = post_form(
        &server,
        "/apps/shop/rollback",
        &[("Cookie", &cookie)],
        "to=badbadbadbadbadbadbadbadbadbadbadbadbad0",
    );
    assert_eq!(unlisted.status, 422, "{unlisted:?}");
    let other = post_form(
        &server,
        "/apps/blog/rollback",
        &[("Cookie", &cookie)],
        &form,
    );
    assert_eq!(other.status, 403, "{other:?}");

    let asked = post_form(
        &server,
        "/apps/shop/rollback",
        &[("Cookie", &cookie)],
        &form,
    );
    assert_eq!(asked.status, 303, "{asked:?}");
    assert_eq!(
        asked.header("location"),
        Some("/apps/shop/logs?rolling_back=4ba7c0ffee12")
    );
    // The CLI's rollback takes the app lock first, naming who asked.
    let started = std::time::Instant::now();
    let script = loop {
        let rollback = transport
            .sent()
            .into_iter()
            .find(|s| !s.contains("logs_read"));
        if let Some(script) = rollback {
            break script;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "no rollback reached web-1"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        script.contains("dashboard: shop token from 127.0.0.1"),
        "{script}"
    );
    assert!(script.contains("rollback"), "{script}");
}

/// The real daemon with deploy tokens (its one server's port is closed):
/// signing in, reading logs with the cookie and with a bearer token, and a
/// wrong token leave no token in any address it answers with, nor in its
/// log (debug level).
#[test]
fn a_real_daemon_keeps_tokens_out_of_addresses_and_its_log() {
    use crate::cli::git;
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("clusters")).expect("mkdir");
    std::fs::create_dir_all(work.join("apps")).expect("mkdir");
    std::fs::write(
        work.join("clusters/fleet.yaml"),
        "name: fleet\nphp: [\"8.2\"]\nservers:\n  - { name: web-1, address: 127.0.0.1, port: 9, web_server: true }\n",
    )
    .expect("cluster");
    std::fs::write(
        work.join("apps/shop.yaml"),
        "name: shop\ncluster: fleet\nrepo: https://git.example.com/shop.git\nphp: \"8.2\"\n\
         domains: [shop.test]\nservers:\n  - name: web-1\n    web: { max_workers: 2, min_spare_workers: 1, initial_workers: 1, max_spare_workers: 1 }\n",
    )
    .expect("app");
    git(&work, &["init", "-q", "-b", "main"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "shop on web-1"]);
    git(
        dir.path(),
        &["clone", "-q", "--bare", "work", "definitions.git"],
    );
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{}\n", Tokens::line("shop", SHOP_TOKEN))).expect("tokens");
    let daemon = crate::common::daemon::Daemon::start(
        &[
            "watch",
            "--repo",
            dir.path().join("definitions.git").to_str().expect("path"),
            "--state-dir",
            dir.path().join("state").to_str().expect("path"),
            "--interval",
            "1s",
            "--deploy-tokens",
            tokens.to_str().expect("path"),
        ],
        None,
        "/v1/status",
        &dir.path().join("watch.log"),
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = |token: &str| {
        http(
            daemon.addr,
            "POST",
            "/login",
            &form,
            format!("token={token}&app=shop").as_bytes(),
        )
        .expect("answer")
    };
    let wrong = login("shop-token-but-wrong");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    // The definitions are in force once the daemon has read them.
    let started = std::time::Instant::now();
    let page = loop {
        let signed = login(SHOP_TOKEN);
        assert_eq!(signed.status, 303, "{signed:?}");
        let location = signed.header("location").expect("location").to_owned();
        assert!(!location.contains(SHOP_TOKEN), "{location}");
        let cookie = signed.header("set-cookie").expect("cookie");
        assert!(!cookie.contains(SHOP_TOKEN), "{cookie}");
        let pair = cookie.split(';').next().expect("pair").to_owned();
        let page = http(daemon.addr, "GET", &location, &[("Cookie", &pair)], b"").expect("answer");
        if page.status == 200 || started.elapsed().as_secs() > 30 {
            break page;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(page.status, 200, "{page:?}\n{}", daemon.log_text());
    // web-1 cannot be reached: said, not fatal.
    assert!(page.body.contains("web-1:"), "{}", page.body);
    let bearer = format!("Bearer {SHOP_TOKEN}");
    let by_header = http(
        daemon.addr,
        "GET",
        "/apps/shop/logs",
        &[("Authorization", &bearer)],
        b"",
    )
    .expect("answer");
    assert_eq!(by_header.status, 200, "{by_header:?}");
    let none = http(daemon.addr, "GET", "/apps/shop/logs", &[], b"").expect("answer");
    assert_eq!(none.status, 401, "{none:?}");

    let log = daemon.log_text();
    assert!(log.contains("signed in to the dashboard"), "{log}");
    assert!(
        !log.contains(SHOP_TOKEN) && !log.contains("shop-token"),
        "{log}"
    );
}
