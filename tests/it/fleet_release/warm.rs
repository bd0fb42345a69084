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

/// The cluster's php.ini gets `settings` (a YAML map's inside), applied at
/// once (php-fpm reloads); dropping the guard applies the cluster without
/// them, so the next test finds php-fpm as every test expects.
struct PhpIni<'a>(&'a Repo);

impl<'a> PhpIni<'a> {
    fn set(repo: &'a Repo, settings: &str) -> Self {
        let path = repo.dir.path().join("clusters/fleet.yaml");
        let yaml = std::fs::read_to_string(&path).expect("cluster");
        let yaml = yaml.replacen(
            "servers:\n",
            &format!("php_ini: {{ {settings} }}\nservers:\n"),
            1,
        );
        std::fs::write(&path, yaml).expect("write");
        repo.run_expect(&["apply", "--yes", "--now"], 0);
        PhpIni(repo)
    }
}

impl Drop for PhpIni<'_> {
    fn drop(&mut self) {
        let path = self.0.dir.path().join("clusters/fleet.yaml");
        if let Ok(yaml) = std::fs::read_to_string(&path) {
            let yaml: String = yaml
                .lines()
                .filter(|l| !l.starts_with("php_ini:"))
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(&path, yaml);
            let _ = self.0.run(&["apply", "--yes", "--now"]);
        }
    }
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_release_bigger_than_opcache_is_warmed_as_far_as_it_fits_and_restarts_nothing() {
    let app = AppRepo::new();
    // About 2 MB of source in 120 files of 300 small functions: far more
    // compiled code than a 16 MiB OPcache holds.
    let library: Vec<(String, String)> = (0..120)
        .map(|i| {
            let body: String = (0..300)
                .map(|j| {
                    format!("function f{i}_{j}($a) {{ return $a * {j} + strlen('{i}-{j}'); }}\n")
                })
                .collect();
            (format!("lib/big{i}.php"), format!("<?php\n{body}"))
        })
        .collect();
    let files: Vec<(&str, &str)> = library
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    app.commit("big", &files);
    let repo = definitions(&app, 3);
    let _small = PhpIni::set(
        &repo,
        "opcache.memory_consumption: 16, opcache.interned_strings_buffer: 2",
    );
    let restarts = |server: &str| {
        let plan = repo.plan_json();
        common::host(&plan, server)["opcache"]["8.2"]["oom_restarts"]
            .as_u64()
            .expect("oom_restarts")
    };
    let before: Vec<u64> = SERVERS.iter().map(|s| restarts(s)).collect();
    let text = expect(&run(&repo, &app, &["release", "rel"]), 0);
    for (server, before) in SERVERS.iter().zip(before) {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{server}: OPcache warmed")))
            .unwrap_or_else(|| panic!("no warm line for {server}:\n{text}"));
        assert!(
            line.contains(" left: OPcache's memory is nearly full"),
            "{line}"
        );
        assert!(!line.contains("restarted"), "{line}");
        assert_eq!(restarts(server), before, "{server}: {text}");
    }
    assert_serves(&repo, "big");
}
