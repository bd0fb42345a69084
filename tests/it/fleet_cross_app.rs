//! One app must never read another's files: the cross-app attacks of the
//! security review ("Security round 3"), run against the test fleet as the
//! app's own code would run them (as its Unix user, or as PHP in its own
//! pool). Each was reproduced on the fleet before the fix. These tests
//! change the shared server fleet-1, so nextest runs no other fleet test
//! on their fleet beside them.

use crate::common;

use common::apps::{as_app, live_release, web_app};
use common::{Repo, host};

/// The live releases of the two apps: real commit ids, as releases name
/// them.
const SHOP: &str = "5309a1c6f2e84d7b9a0c3e1f5d7b9a2c4e6f8a0b";
const BLOG: &str = "b1096e2d4f6a8c0e2a4c6e8f0b2d4f6a8c0e2a4c";

/// blog's Laravel config cache: every `.env` value, as PHP.
const BLOG_CONFIG: &str = "bootstrap/cache/config.php";
const BLOG_SECRET: &str = "base64:blog-app-key-never-shown";

/// `shop` and `blog` on fleet-1, each with a live release; blog's page
/// reads its config cache, so that the config is in the OPcache once blog
/// answered a request.
fn two_apps(shop_files: &[(&str, &str)]) -> Repo {
    let repo = Repo::new(&["fleet-1"]);
    web_app(&repo, "shop", "fleet-1", "");
    web_app(&repo, "blog", "fleet-1", "");
    repo.run_expect(&["apply", "--yes", "--now"], 0);
    let config = format!("<?php return ['app' => ['key' => '{BLOG_SECRET}']];");
    live_release(
        &repo,
        "fleet-1",
        "blog",
        BLOG,
        &[
            (BLOG_CONFIG, &config),
            (
                "public/index.php",
                "<?php $config = require __DIR__.'/../bootstrap/cache/config.php'; \
                 echo 'blog ', strlen($config['app']['key']);",
            ),
        ],
    );
    let mut files = vec![("public/index.php", "<?php echo 'shop';")];
    files.extend_from_slice(shop_files);
    live_release(&repo, "fleet-1", "shop", SHOP, &files);
    repo
}

/// What blog's page answers: it read its config.
fn blog_page() -> String {
    format!("blog {}", BLOG_SECRET.len())
}

fn blog_config() -> String {
    format!("/home/blog/releases/{BLOG}/{BLOG_CONFIG}")
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_app_cannot_list_another_apps_scripts_in_the_shared_opcache() {
    let scripts = "<?php $status = @opcache_get_status(true); \
                   echo json_encode($status === false ? false : array_keys($status['scripts'] ?? []));";
    let cached = format!(
        "<?php var_export(@opcache_is_script_cached('{}'));",
        blog_config()
    );
    // reconciler's own status script, included by the app's code: the API
    // is allowed by the request's script, not by the file that calls it.
    let borrowed = "<?php include '/usr/local/lib/reconciler/opcache-status.php';";
    let repo = two_apps(&[
        ("public/scripts.php", scripts),
        ("public/cached.php", &cached),
        ("public/borrowed.php", borrowed),
    ]);
    let server = repo.server("fleet-1");
    assert_eq!(server.http_get("/", "blog.test"), (200, blog_page()));

    let (status, listed) = server.http_get("/scripts.php", "shop.test");
    assert_eq!(status, 200);
    // (JSON writes `/` as `\/`.)
    let listed = listed.replace("\\/", "/");
    assert!(
        !listed.contains("/home/blog"),
        "shop lists blog's scripts: {listed}"
    );
    assert_eq!(listed, "false");
    assert_eq!(
        server.http_get("/cached.php", "shop.test"),
        (200, "false".into())
    );
    let (_, borrowed) = server.http_get("/borrowed.php", "shop.test");
    let borrowed = borrowed.replace("\\/", "/");
    assert!(
        !borrowed.contains("/home/blog"),
        "shop sees blog's release: {borrowed}"
    );
    assert_eq!(borrowed, r#"{"opcache_enabled":false}"#);

    // reconciler's figures still come: its status pool runs its script.
    let plan = repo.plan_json();
    let opcache = &host(&plan, "fleet-1")["opcache"]["8.2"];
    assert_eq!(opcache["enabled"], true, "{opcache:#}");
    assert!(opcache["cached_scripts"].as_u64() >= Some(2), "{opcache:#}");
    let blog_release = format!("/home/blog/releases/{BLOG}");
    assert!(
        opcache["release_scripts"][&blog_release].as_u64() >= Some(2),
        "{opcache:#}"
    );
    // So does a script of reconciler's directory run in the app's own pool
    // (as the app, asked over FastCGI by root): what compiles a release
    // into the cache before it goes live.
    let own_pool = repo.ssh(
        "fleet-1",
        &format!(
            "php -n -r {} /run/php/php8.2-fpm-shop.sock /usr/local/lib/reconciler/opcache-status.php",
            reconciler::shell::quote(FASTCGI_GET)
        ),
    );
    let figures: serde_json::Value = serde_json::from_str(&own_pool).expect("status JSON");
    assert_eq!(figures["opcache_enabled"], true, "{own_pool}");
    assert!(
        figures["reconciler_release_scripts"][&blog_release].is_u64(),
        "{own_pool}"
    );
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_app_cannot_include_another_apps_cached_config() {
    let leak = |include: &str| {
        format!(
            "<?php $config = @{include} '{}'; echo json_encode($config);",
            blog_config()
        )
    };
    let repo = two_apps(&[
        ("public/include.php", &leak("include")),
        ("public/include-once.php", &leak("include_once")),
    ]);
    // shop cannot read the file itself (blog's home is blog's alone).
    let cat = repo.ssh(
        "fleet-1",
        &as_app("shop", &format!("cat {} 2>&1 || true", blog_config())),
    );
    assert!(cat.contains("Permission denied"), "{cat}");

    // blog's request caches its config; shop's own code includes it right
    // after (OPcache checks no timestamp for 2 seconds).
    for page in ["include.php", "include-once.php"] {
        let out = repo.ssh(
            "fleet-1",
            &format!(
                "curl -s -H 'Host: blog.test' http://127.0.0.1/; echo\n\
                 curl -s -H 'Host: shop.test' http://127.0.0.1/{page}"
            ),
        );
        assert!(
            !out.contains(BLOG_SECRET),
            "{page}: shop read blog's config: {out}"
        );
        assert_eq!(out, format!("{}\nfalse", blog_page()), "{page}");
    }
    // blog itself still reads its own config.
    let server = repo.server("fleet-1");
    assert_eq!(server.http_get("/", "blog.test"), (200, blog_page()));
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn an_app_serves_nothing_through_links_that_form_its_document_root() {
    let repo = two_apps(&[("public/robots.txt", "shop robots")]);
    let shop = format!("/home/shop/releases/{SHOP}");
    // blog's upload and page: readable by blog's group, which nginx is in.
    // shop's own uploads, through its release's links to its shared
    // directory (as `artisan storage:link` makes them).
    repo.ssh(
        "fleet-1",
        &format!(
            "{}\n{}",
            as_app(
                "blog",
                &format!(
                    "set -e; mkdir -p /home/blog/shared/storage/app/public\n\
                     echo blog upload > /home/blog/shared/storage/app/public/secret.txt\n\
                     echo blog page > /home/blog/releases/{BLOG}/public/blog.txt\n\
                     chmod 640 /home/blog/shared/storage/app/public/secret.txt /home/blog/releases/{BLOG}/public/blog.txt"
                )
            ),
            as_app(
                "shop",
                &format!(
                    "set -e; mkdir -p /home/shop/shared/storage/app/public\n\
                     echo own upload > /home/shop/shared/storage/app/public/own.txt\n\
                     ln -s /home/shop/shared/storage {shop}/storage\n\
                     ln -s {shop}/storage/app/public {shop}/public/storage"
                )
            ),
        ),
    );
    let server = repo.server("fleet-1");
    let own = || {
        assert_eq!(
            server.http_get("/robots.txt", "shop.test"),
            (200, "shop robots".into())
        );
        assert_eq!(
            server.http_get("/storage/own.txt", "shop.test"),
            (200, "own upload\n".into())
        );
        assert_eq!(server.http_get("/", "shop.test"), (200, "shop".into()));
    };
    own();

    // `public` made a link to blog's uploads; or to reconciler's directory,
    // so that the app's pool runs reconciler's script, which the OPcache
    // API answers (restrict_api allows it by the request's script path).
    for (target, path, secret) in [
        (
            "/home/blog/shared/storage/app/public",
            "/secret.txt",
            "blog upload",
        ),
        (
            "/usr/local/lib/reconciler",
            "/opcache-status.php",
            "opcache",
        ),
    ] {
        repo.ssh(
            "fleet-1",
            &as_app(
                "shop",
                &format!("mv {shop}/public {shop}/public.own && ln -s {target} {shop}/public"),
            ),
        );
        let leak = server.http_response(path, "shop.test");
        assert!(!leak.body.contains(secret), "{target}: {leak:?}");
        repo.ssh(
            "fleet-1",
            &as_app(
                "shop",
                &format!("rm {shop}/public && mv {shop}/public.own {shop}/public"),
            ),
        );
        own();
    }

    // `current` pointed at blog's release.
    repo.ssh(
        "fleet-1",
        &as_app(
            "shop",
            &format!("ln -sfn /home/blog/releases/{BLOG} /home/shop/current"),
        ),
    );
    let leak = server.http_response("/blog.txt", "shop.test");
    assert!(!leak.body.contains("blog page"), "{leak:?}");
    let plan = repo.plan_json();
    let warnings = host(&plan, "fleet-1")["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "`/home/shop/current` points at `/home/blog/releases/{BLOG}`"
        )),
        "{plan:#}"
    );
    repo.ssh(
        "fleet-1",
        &as_app(
            "shop",
            &format!("ln -sfn releases/{SHOP} /home/shop/current"),
        ),
    );
    own();
    let plan = repo.plan_json();
    assert_eq!(host(&plan, "fleet-1").get("warnings"), None, "{plan:#}");
}

/// A FastCGI client in PHP (`php -r`): a GET of the script `$argv[2]` from
/// the php-fpm pool at the socket `$argv[1]`; prints the response body.
const FASTCGI_GET: &str = r#"
[$socket, $script] = [$argv[1], $argv[2]];
$s = stream_socket_client("unix://$socket", $errno, $error, 3) or exit(1);
$record = fn($type, $body) => pack("CCnnCx", 1, $type, 1, strlen($body), 0) . $body;
$params = "";
foreach (["SCRIPT_FILENAME" => $script, "REQUEST_METHOD" => "GET"] as $k => $v) {
    $params .= chr(strlen($k)) . chr(strlen($v)) . $k . $v;
}
fwrite($s, $record(1, pack("nCxxxxx", 1, 0)) . $record(4, $params) . $record(4, "") . $record(5, ""));
$out = "";
while (strlen($head = fread($s, 8)) == 8) {
    $h = unpack("Cversion/Ctype/nid/nlength/Cpadding", $head);
    $body = $h["length"] ? stream_get_contents($s, $h["length"]) : "";
    if ($h["padding"]) fread($s, $h["padding"]);
    if ($h["type"] == 6) $out .= $body; elseif ($h["type"] == 3) break;
}
echo substr($out, strpos($out, "\r\n\r\n") + 4);
"#;
