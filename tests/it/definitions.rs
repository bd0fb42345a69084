//! The definitions loader on whole directories, through the library.

use std::fs;
use std::path::Path;

use reconciler::definitions::{Definitions, LoadError};

fn example(name: &str) -> Definitions {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    Definitions::load(&dir).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn the_fleet_example_reads_as_written() {
    let defs = example("fleet");
    let cluster = &defs.clusters[0];
    assert_eq!(cluster.name.as_str(), "production");
    assert_eq!(cluster.request.duration, 30);
    assert_eq!(cluster.servers.len(), 2);
    assert_eq!(cluster.servers[0].port, 22);
    assert_eq!(cluster.servers[0].user, "root");
    let window = &cluster.reload_windows[0];
    assert_eq!(window.duration.get().map(|d| d.0.as_secs()), Some(3600));
    assert_eq!(
        window.timezone.get().map(|t| t.0),
        Some(chrono_tz::Europe::Amsterdam)
    );

    let shop = defs
        .apps
        .iter()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    assert_eq!(shop.keep_releases, 5);
    let jobs = &shop.servers[1];
    assert_eq!(jobs.workers[0].processes, 5);
    assert_eq!(jobs.workers[0].stop_wait, 3600);
    assert!(jobs.scheduler);
    let blog = defs
        .apps
        .iter()
        .find(|a| a.name.as_str() == "blog")
        .expect("blog");
    assert_eq!(blog.branch, "main");
    assert_eq!(blog.health_check.as_ref().map(|h| h.status), Some(200));
}

#[test]
fn an_unquoted_php_version_reads_as_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::create_dir(dir.path().join("clusters")).expect("mkdir");
    fs::write(
        dir.path().join("clusters/c.yaml"),
        "name: c\nphp: [7.4, 8.2]\nservers: [{ name: s, address: local }]\n",
    )
    .expect("write");
    let defs = Definitions::load(dir.path()).expect("valid");
    let versions: Vec<&str> = defs.clusters[0]
        .php
        .iter()
        .map(reconciler::definitions::PhpVersion::as_str)
        .collect();
    assert_eq!(versions, ["7.4", "8.2"]);
}

/// No input panics: every prefix of every example file is either valid or a
/// list of diagnostics.
#[test]
fn truncated_files_give_diagnostics_not_panics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet");
    let work = tempfile::tempdir().expect("tempdir");
    let mut checked = 0;
    for kind in ["clusters", "apps"] {
        for entry in fs::read_dir(root.join(kind)).expect("dir") {
            let path = entry.expect("entry").path();
            let text = fs::read_to_string(&path).expect("read");
            for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
                let case = work.path().join(format!("case-{checked}"));
                fs::create_dir_all(case.join(kind)).expect("mkdir");
                fs::write(case.join(kind).join("x.yaml"), &text[..cut]).expect("write");
                match Definitions::load(&case) {
                    Ok(_) | Err(LoadError::Invalid(_)) => {}
                    Err(other) => panic!("{}: {other}", path.display()),
                }
                fs::remove_dir_all(&case).expect("clean");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} cases");
}

mod control_characters {
    //! Any control character (a line break above all) in text that reaches
    //! a config file is refused, with a diagnostic at that value: a worker
    //! command with a newline once added a root `[program:]` to supervisor.

    use proptest::prelude::*;
    use reconciler::definitions::{DefinitionFiles, Definitions, LoadError};

    const CLUSTER: &str =
        "name: c\nphp: [\"8.2\"]\nservers: [{ name: s, address: local, web_server: true }]\n";

    fn app(field: &str, value: &str) -> String {
        let mut app: serde_yaml::Value = serde_yaml::from_str(
            "name: shop\ncluster: c\nrepo: /srv/shop.git\nphp: \"8.2\"\ndomains: [shop.test]\n\
             servers: [{ name: s, workers: [{ name: w, command: x }] }]\n",
        )
        .expect("yaml");
        let value = serde_yaml::Value::String(value.to_owned());
        match field {
            "command" => app["servers"][0]["workers"][0]["command"] = value,
            "composer" => app["composer"] = value,
            "release_commands" => app["release_commands"] = vec![value].into(),
            "repo" => app["repo"] = value,
            other => panic!("{other}"),
        }
        serde_yaml::to_string(&app).expect("yaml")
    }

    fn problems(cluster: &str, app: &str) -> Vec<String> {
        let mut files = DefinitionFiles::new("repo");
        files.insert("clusters/c.yaml", cluster.as_bytes().to_vec());
        files.insert("apps/shop.yaml", app.as_bytes().to_vec());
        match Definitions::parse(&files) {
            Ok(_) => Vec::new(),
            Err(LoadError::Invalid(problems)) => {
                problems.iter().map(|p| p.message.clone()).collect()
            }
            Err(other) => panic!("{other}"),
        }
    }

    fn with_control() -> impl Strategy<Value = String> {
        (
            "[ -~]{0,8}",
            prop::char::range('\0', '\u{1f}'),
            "[ -~]{0,8}",
        )
            .prop_map(|(a, c, b)| format!("x{a}{c}{b}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn app_text_with_a_control_character_is_refused(
            field in prop::sample::select(vec!["command", "composer", "release_commands", "repo"]),
            value in with_control(),
        ) {
            let found = problems(CLUSTER, &app(field, &value));
            prop_assert!(!found.is_empty(), "{field}: {value:?} was accepted");
        }

        #[test]
        fn php_ini_text_with_a_control_character_is_refused(value in with_control()) {
            let mut cluster: serde_yaml::Value = serde_yaml::from_str(CLUSTER).expect("yaml");
            cluster["php_ini"]["x.y"] = serde_yaml::Value::String(value.clone());
            cluster["sessions"]["handler"] = "redis".into();
            cluster["sessions"]["save_path"] = serde_yaml::Value::String(value.clone());
            let cluster = serde_yaml::to_string(&cluster).expect("yaml");
            let found = problems(&cluster, &app("command", "x"));
            prop_assert_eq!(
                found.iter().filter(|m| m.contains("control characters")).count(),
                2,
                "{:?}",
                found
            );
        }
    }
}
