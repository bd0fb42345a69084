//! OPcache pre-warming (`opcache_prewarm`): a release's PHP files are in
//! each web server's OPcache before its switch, not compiled by the first
//! requests after it.

use super::*;

/// The release's scripts in `server`'s OPcache, as the plan's OPcache
/// facts count them.
fn scripts_in_opcache(repo: &Repo, server: &str, sha: &str) -> u64 {
    let plan = repo.plan_json();
    let opcache = &common::host(&plan, server)["opcache"]["8.2"];
    opcache["release_scripts"][format!("/home/rel/releases/{sha}")]
        .as_u64()
        .unwrap_or(0)
}

/// The count before `what` in the warm line of `server` in `text`.
fn warmed(text: &str, server: &str, what: &str) -> u64 {
    let prefix = format!("{server}: OPcache warmed before the switch: ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no warm line for {server}:\n{text}"));
    line.split([',', ';'])
        .filter_map(|part| part.split(" in ").next()?.trim().strip_suffix(what))
        .find_map(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_release_is_in_opcache_before_its_switch_and_globs_narrow_it() {
    let app = AppRepo::new();
    // 60 library files no request includes, and one that does not compile.
    let library: Vec<(String, String)> = (0..60)
        .map(|i| {
            (
                format!("lib/f{i}.php"),
                format!("<?php\nfunction f{i}() {{ return {i}; }}\n"),
            )
        })
        .chain([("lib/broken.php".into(), "<?php this is not PHP\n".into())])
        .collect();
    let files: Vec<(&str, &str)> = library
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let first = app.commit("w1", &files);
    // The apply takes seconds: the files (dated by their commit) are older
    // than opcache.file_update_protection by the release.
    let repo = definitions(&app, 3);
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    for server in SERVERS {
        // The library, the page and its two includes, the worker, composer's
        // autoloader: every PHP file but the broken one.
        assert!(warmed(&text, server, "compiled") >= 70, "{server}: {text}");
        assert_eq!(warmed(&text, server, "failed"), 1, "{server}: {text}");
        // What composer wrote a moment ago is warmed once OPcache takes it.
        assert_eq!(
            warmed(&text, server, "skipped by OPcache"),
            0,
            "{server}: {text}"
        );
        // Only the health check has asked for a page since: without warming
        // OPcache would hold its three scripts.
        let cached = scripts_in_opcache(&repo, server, &first);
        assert!(
            cached >= 64,
            "{server}: {cached} scripts in OPcache\n{text}"
        );
    }
    assert_serves(&repo, "w1");

    // Globs narrow it: f1 and f10..f19, and nothing else.
    let path = repo.dir.path().join("apps/rel.yaml");
    let yaml = std::fs::read_to_string(&path).expect("app");
    let yaml = yaml.replacen(
        "servers:\n",
        "opcache_prewarm: [\"lib/f1*.php\"]\nservers:\n",
        1,
    );
    std::fs::write(&path, yaml).expect("write");
    let second = app.commit("w2", &[]);
    std::thread::sleep(Duration::from_secs(2));
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    for server in SERVERS {
        assert_eq!(warmed(&text, server, "compiled"), 11, "{server}: {text}");
        assert_eq!(warmed(&text, server, "failed"), 0, "{server}: {text}");
        let cached = scripts_in_opcache(&repo, server, &second);
        assert!(
            (11..=14).contains(&cached),
            "{server}: {cached} scripts in OPcache\n{text}"
        );
    }
    assert_serves(&repo, "w2");
}
