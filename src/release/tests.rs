//! Ordering and error paths of a release, against fake servers. What the
//! steps do on a server is tested on the fleet (tests/fleet_release.rs).

use std::path::Path;

use super::*;
use crate::transport::Output;
use crate::transport::fake::{FakeConnector, FakeTransport, Reply};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "fedcba9876543210fedcba9876543210fedcba98";

fn shop() -> AppTarget {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let definitions = Definitions::load(&dir).expect("the fleet example is valid");
    AppTarget::find(&definitions, "shop").expect("shop")
}

fn line(kind: &str, name: &str, text: &str) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(text);
    format!("@{kind}\t{name}\t{text}\n")
}

fn out(stdout: String) -> Output {
    Output {
        status: Some(0),
        stdout: stdout.into_bytes(),
        stderr: Vec::new(),
    }
}

/// A server where `OLD` is live and every step succeeds.
fn server(name: &str) -> FakeTransport {
    let state = line("live", "-", OLD) + &line("complete", OLD, "");
    FakeTransport::new(name)
        .on_every("'release_lock'", out(state + "@held\n"))
        .on_every("'release_health'", out(line("done", "health", "200")))
        .on_every("'release_switch'", out(line("done", "switch", "")))
        .on_every("'release_", out(line("done", "step", "")))
}

fn origin() -> Origin {
    Origin {
        who: "ci@build (pid 1)".into(),
        trigger: Trigger::Cli,
    }
}

/// The steps a server was sent, by their release.sh function.
fn calls(connector: &FakeConnector, server: &str) -> Vec<String> {
    connector
        .transport(server)
        .expect("server")
        .sent()
        .iter()
        .map(|script| {
            let last = script.trim_end().lines().last().unwrap_or_default();
            last.split(' ')
                .next()
                .unwrap_or_default()
                .trim_matches('\'')
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn every_server_is_prepared_before_any_switches() {
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("jobs-1"));
    let released = release(&shop(), SHA, b"archive", &origin(), &connector, &())
        .await
        .expect("released");
    assert_eq!(released.sha, SHA);
    for name in ["web-1", "jobs-1"] {
        let calls = calls(&connector, name);
        let first_switch = calls
            .iter()
            .position(|c| c == "release_switch")
            .expect("switched");
        assert!(
            calls[..first_switch].contains(&"release_complete".to_owned()),
            "{calls:?}"
        );
        assert_eq!(calls[0], "release_lock");
        assert_eq!(calls.last().map(String::as_str), Some("release_finish"));
    }
    // shop builds (composer and its release_commands) on both servers and
    // deploys only where it has deploy commands.
    assert!(calls(&connector, "jobs-1").contains(&"release_commands".to_owned()));
    // The health check runs on the web server only.
    assert!(calls(&connector, "web-1").contains(&"release_health".to_owned()));
    assert!(!calls(&connector, "jobs-1").contains(&"release_health".to_owned()));
    // The archive went to each server once.
    assert_eq!(connector.transport("web-1").unwrap().inputs(), [7]);
}

#[tokio::test]
async fn a_failed_build_on_one_server_switches_nothing_anywhere() {
    let failing = FakeTransport::new("jobs-1")
        .on(
            "'release_commands' 'deploy'",
            Reply::stdout(line(
                "failed",
                "deploy",
                "$ php artisan migrate --force\nSQLSTATE[HY000]",
            )),
        )
        .on_every("'release_lock'", out(line("live", "-", OLD) + "@held\n"))
        .on_every("'release_", out(line("done", "step", "")));
    let connector = FakeConnector::default().with(server("web-1")).with(failing);
    let error = release(&shop(), SHA, b"archive", &origin(), &connector, &())
        .await
        .expect_err("failed");
    let text = error.to_string();
    assert!(text.contains("deploy failed on jobs-1"), "{text}");
    assert!(text.contains("SQLSTATE[HY000]"), "{text}");
    for name in ["web-1", "jobs-1"] {
        let calls = calls(&connector, name);
        assert!(
            !calls.contains(&"release_switch".to_owned()),
            "{name}: {calls:?}"
        );
        assert!(
            calls.contains(&"release_discard".to_owned()),
            "{name}: {calls:?}"
        );
    }
}

#[tokio::test]
async fn a_failed_health_check_switches_every_server_back() {
    let unhealthy = FakeTransport::new("web-1")
        .on_every("'release_lock'", out(line("live", "-", OLD) + "@held\n"))
        .on_every(
            "'release_health'",
            out(line(
                "failed",
                "health",
                "GET /up for shop.example.com answered 500",
            )),
        )
        .on_every("'release_switch'", out(line("done", "switch", "")))
        .on_every("'release_", out(line("done", "step", "")));
    let connector = FakeConnector::default()
        .with(unhealthy)
        .with(server("jobs-1"));
    let error = release(&shop(), SHA, b"archive", &origin(), &connector, &())
        .await
        .expect_err("rolled back");
    assert!(matches!(error, ReleaseError::RolledBack { .. }), "{error}");
    assert!(error.to_string().contains(short(OLD)), "{error}");
    for name in ["web-1", "jobs-1"] {
        let switches: Vec<String> = connector
            .transport(name)
            .unwrap()
            .sent()
            .into_iter()
            .filter_map(|s| s.trim_end().lines().last().map(str::to_owned))
            .filter(|l| l.starts_with("'release_switch'"))
            .collect();
        assert_eq!(
            switches,
            [
                format!("'release_switch' '{SHA}'"),
                format!("'release_switch' '{OLD}'")
            ],
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_busy_app_names_its_holder_and_nothing_runs() {
    let busy = FakeTransport::new("jobs-1").on_every(
        "'release_lock'",
        out(line(
            "busy",
            "shop",
            "ana@laptop (pid 7)\tcli of 0123456789ab since 2026-11-22T10:00:00Z\t4242",
        )),
    );
    let connector = FakeConnector::default().with(server("web-1")).with(busy);
    let error = release(&shop(), SHA, b"archive", &origin(), &connector, &())
        .await
        .expect_err("busy");
    assert!(error.to_string().contains("ana@laptop (pid 7)"), "{error}");
    assert_eq!(calls(&connector, "web-1"), ["release_lock"]);
    assert_eq!(calls(&connector, "jobs-1"), ["release_lock"]);
}

#[tokio::test]
async fn a_release_complete_everywhere_is_not_uploaded_again() {
    let complete = |name: &str| {
        let state = line("live", "-", OLD) + &line("complete", SHA, "");
        FakeTransport::new(name)
            .on_every("'release_lock'", out(state + "@held\n"))
            .on_every("'release_health'", out(line("done", "health", "200")))
            .on_every("'release_", out(line("done", "step", "")))
    };
    let connector = FakeConnector::default()
        .with(complete("web-1"))
        .with(complete("jobs-1"));
    let released = release(&shop(), SHA, b"archive", &origin(), &connector, &())
        .await
        .expect("released");
    assert_eq!(released.reused.len(), 2);
    assert!(connector.transport("web-1").unwrap().inputs().is_empty());
    assert!(!calls(&connector, "jobs-1").contains(&"release_commands".to_owned()));
}

#[tokio::test]
async fn rollback_goes_to_the_newest_other_release_that_was_live() {
    let log = [
        format!(r#"{{"sha":"{OLD}","time":"t1","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":""}}"#),
        format!(r#"{{"sha":"{SHA}","time":"t2","trigger":"cli","result":"live","duration_ms":1,"who":"a","previous":"{OLD}"}}"#),
    ]
    .join("\n");
    let state = line("live", "-", SHA)
        + &line("complete", SHA, "")
        + &line("complete", OLD, "")
        + &line("log", "-", &log);
    let server = |name: &str| {
        FakeTransport::new(name)
            .on_every("'release_lock'", out(state.clone() + "@held\n"))
            .on_every("'release_health'", out(line("done", "health", "200")))
            .on_every("'release_", out(line("done", "step", "")))
    };
    let connector = FakeConnector::default()
        .with(server("web-1"))
        .with(server("jobs-1"));
    let done = rollback(&shop(), None, &origin(), &connector, &())
        .await
        .expect("rolled back");
    assert_eq!(done.sha, OLD);
    let error = rollback(&shop(), Some("abc"), &origin(), &connector, &())
        .await
        .expect_err("unknown");
    assert!(error.to_string().contains("no release `abc`"), "{error}");
}

#[test]
fn hostile_values_reach_the_script_as_quoted_words() {
    let target = shop();
    let (_, role) = &target.servers[0];
    let origin = Origin {
        who: "x'; rm -rf / #\"\n".into(),
        trigger: Trigger::Cli,
    };
    let script = script(
        &target.app,
        role,
        SHA,
        "t",
        &origin,
        &["release_shared", "a'b"],
    );
    let header: Vec<&str> = script.lines().take(16).collect();
    assert!(header.iter().all(|l| l.contains("='")), "{header:#?}");
    assert!(
        script.contains(r#"WHO_JSON='x'\''; rm -rf / #\"\n'"#),
        "{script}"
    );
    assert!(script.trim_end().ends_with(r"'release_shared' 'a'\''b'"));
}

/// Runs release.sh's `call` with the local bash as this user, the app's
/// home in `home` (no setpriv, no lock: what is left is the step itself).
fn run_locally(home: &Path, call: &[&str]) -> std::process::Output {
    let mut script = String::new();
    for (name, value) in [
        ("APP", "shop".to_owned()),
        ("HOME_DIR", home.display().to_string()),
        ("APP_PATH", "/usr/bin:/bin".to_owned()),
        ("RELEASES", home.join("releases").display().to_string()),
        ("SHARED", home.join("shared").display().to_string()),
        ("SHA", SHA.to_owned()),
    ] {
        script.push_str(&format!("{name}={}\n", quote(&value)));
    }
    script.push_str(RELEASE_SH);
    script.push_str(crate::shell::STEPS);
    script.push_str("\nAS_APP=(env)\ncheck_lock() { :; }\n");
    script.push_str(&call.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "));
    std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .output()
        .expect("bash")
}

#[test]
fn a_release_seeds_a_shared_directory_that_exists_without_replacing_anything() {
    let home = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, text: &str| {
        let path = home.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    };
    let release = format!("releases/{SHA}");
    // What the release brings: Laravel's storage tree, kept by .gitignore files.
    for dir in ["framework/views", "framework/cache", "logs", "app/public"] {
        write(&format!("{release}/storage/{dir}/.gitignore"), "*\n");
    }
    write(
        &format!("{release}/storage/app/public/logo.svg"),
        "from the release",
    );
    // What is in shared/ already: an apply made logs/, the app uploaded a logo.
    write("shared/storage/logs/php-error.log", "kept");
    write("shared/storage/app/public/logo.svg", "uploaded by a user");

    let out = run_locally(home.path(), &["release_shared", "storage", ".env"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("@done\tshared"),
        "{out:?}"
    );
    let read = |path: &str| std::fs::read_to_string(home.path().join(path)).expect(path);
    assert_eq!(read("shared/storage/logs/php-error.log"), "kept");
    assert_eq!(
        read("shared/storage/app/public/logo.svg"),
        "uploaded by a user"
    );
    for dir in ["framework/views", "framework/cache", "logs", "app/public"] {
        assert_eq!(
            read(&format!("shared/storage/{dir}/.gitignore")),
            "*\n",
            "{dir}"
        );
    }
    let link = std::fs::read_link(home.path().join(&release).join("storage")).expect("a link");
    assert_eq!(link, home.path().join("shared/storage"));
    assert_eq!(
        read(&format!("{release}/storage/framework/views/.gitignore")),
        "*\n"
    );
    assert_eq!(read("shared/.env"), "", "a missing .env starts empty");
}
