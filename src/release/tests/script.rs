//! release.sh run by the local bash: what it reads back, quotes and seeds.

use super::*;

#[test]
fn a_current_link_the_app_pointed_elsewhere_is_no_release() {
    let forged = format!("/home/other/releases/{SHA}\n@live\0releases/{OLD}");
    let state = ServerReleases::from_records(
        &crate::remote::protocol::parse(
            &[
                record("live", &[&forged.replace('\0', "")]),
                record("complete", &[SHA]),
            ]
            .concat(),
        )
        .expect("records"),
    );
    assert_eq!(state.live, None);
    assert!(state.stray_current.is_some());
    assert_eq!(state.previous_good(), None);
}

#[test]
fn hostile_values_reach_the_script_as_quoted_words() {
    let target = shop();
    let (_, role) = &target.servers[0];
    let origin = Origin {
        who: "x'; rm -rf / #\"\n".into(),
        trigger: Trigger::Cli,
    };
    let mut session =
        crate::app::Session::new(&target.app, RELEASE_SH, &origin, &()).expect("a token");
    session.set("SHA", SHA);
    let script = session.script(role, &["release_shared", "a'b"]);
    assert!(
        script.contains("\nWHO='x'\\''; rm -rf / #\" '\n"),
        "{script}"
    );
    assert!(script.trim_end().ends_with(r"'release_shared' 'a'\''b'"));
}

/// Runs `call` of release.sh with the local bash as this user, the app's
/// home in `home` (no setpriv, no lock: what is left is the step itself).
fn run_locally(home: &Path, call: &[&str]) -> std::process::Output {
    let body = format!(
        "{APP_SH}\n{RELEASE_SH}\napp_argv() {{ APP_ARGV=(env); }}\ncheck_lock() {{ :; }}\n"
    );
    let script = crate::remote::Script::new()
        .var("APP", "shop")
        .var("HOME_DIR", home.display().to_string())
        .var("APP_PATH", "/usr/bin:/bin")
        .var("RELEASES", home.join("releases").display().to_string())
        .var("SHARED", home.join("shared").display().to_string())
        .var("SHA", SHA)
        .var("CURRENT", home.join("current").display().to_string())
        .var("APP_STATE", home.join("state").display().to_string())
        .var("WORKERS", "0")
        .build(&body, call);
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

    let out = run_locally(
        home.path(),
        &[
            "release_shared",
            "dir",
            "storage",
            "file",
            ".env",
            "dir",
            "public/.well-known",
        ],
    );
    let records = crate::remote::protocol::parse(&out.stdout).expect("records");
    assert!(
        crate::remote::first(&records, "done").is_some(),
        "{records:?} {}",
        String::from_utf8_lossy(&out.stderr)
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
    assert!(
        home.path().join("shared/public/.well-known").is_dir(),
        "a directory with a dot in its name, stated as one"
    );
}

#[test]
fn a_switch_onto_a_directory_leaves_no_link_behind_and_going_back_says_it_stayed() {
    // Regression: `.current.new` stayed, and going back said "no release"
    // with the directory still there.
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(home.path().join(format!("releases/{SHA}"))).expect("release");
    std::fs::create_dir_all(home.path().join("state/complete")).expect("state");
    std::fs::write(home.path().join(format!("state/complete/{SHA}")), "").expect("complete");
    std::fs::create_dir_all(home.path().join("current/public")).expect("adopted");
    std::fs::write(home.path().join("current/public/index.php"), "adopted").expect("write");
    for call in ["release_switch", "release_unswitch"] {
        let args: &[&str] = if call == "release_switch" {
            &[call, SHA]
        } else {
            &[call]
        };
        let out = run_locally(home.path(), args);
        let records = crate::remote::protocol::parse(&out.stdout).expect("records");
        assert!(
            crate::remote::first(&records, "failed").is_some()
                && crate::remote::first(&records, "switched").is_none(),
            "{call}: {records:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!home.path().join(".current.new").exists(), "{call}");
        assert_eq!(
            std::fs::read_to_string(home.path().join("current/public/index.php")).expect("kept"),
            "adopted",
            "{call}"
        );
    }
}

#[test]
fn a_switch_that_failed_is_not_said_to_have_gone_live() {
    let failure = StepFailure {
        server: ServerName::new("web-1"),
        step: Step::Switch,
        output: "mv: cannot overwrite directory".into(),
    };
    let text = rolled_back(&failure, None, &[]);
    assert!(
        text.starts_with("the switch failed on web-1, so every server went back to no release\n"),
        "{text}"
    );
    let health = StepFailure {
        step: Step::Health,
        ..failure
    };
    assert!(rolled_back(&health, None, &[]).starts_with("the release went live but failed on"));
}
