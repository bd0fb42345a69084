//! `reconciler provision` against the test fleet, with no network: the
//! test builds a .deb with dpkg-deb and serves it to one server as a
//! local apt repository (its other apt sources set aside meanwhile).

use crate::common;

use std::process::Command;

use common::Repo;

/// fleet-1 with only a local repository holding `php8.2-fixture`, until
/// dropped.
fn local_repository(repo: &Repo) -> common::apt::LocalApt {
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("pkg");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(root.join("usr/share/reconciler-fixture")).expect("mkdir");
    std::fs::write(
        root.join("DEBIAN/control"),
        "Package: php8.2-fixture\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: reconciler tests <tests@example.com>\nDescription: a fixture extension\n",
    )
    .expect("control");
    std::fs::write(
        root.join("usr/share/reconciler-fixture/marker"),
        "installed\n",
    )
    .expect("marker");
    let served = work.path().join("repo");
    std::fs::create_dir_all(&served).expect("mkdir");
    let deb = served.join("php8.2-fixture_1.0_all.deb");
    let built = Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("dpkg-deb");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let bytes = std::fs::read(&deb).expect("deb");
    let sha256 = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let index = format!(
        "Package: php8.2-fixture\nVersion: 1.0\nArchitecture: all\n\
         Maintainer: reconciler tests <tests@example.com>\nFilename: ./php8.2-fixture_1.0_all.deb\n\
         Size: {}\nSHA256: {sha256}\nDescription: a fixture extension\n\n",
        bytes.len()
    );
    std::fs::write(served.join("Packages"), index).expect("Packages");
    common::apt::LocalApt::serve(&repo.fleet, &["fleet-1"], &served, &["php8.2-fixture"])
}

fn cluster(extra: &str) -> Repo {
    let repo = Repo::new(&["fleet-1"]);
    let path = repo.dir.path().join("clusters/fleet.yaml");
    let yaml = std::fs::read_to_string(&path).expect("cluster");
    std::fs::write(
        path,
        yaml.replacen("servers:\n", &format!("{extra}servers:\n"), 1),
    )
    .expect("write");
    repo.app("prov", &["fleet-1"], 2, "");
    repo
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn provision_installs_what_is_missing_once_and_then_costs_one_round_trip() {
    let repo = cluster("extensions: [fixture]\n");
    let _local = local_repository(&repo);

    let dry = repo.run_expect(&["provision", "--dry-run"], 0);
    assert_eq!(dry, "fleet-1: would install php8.2-fixture\n");
    let plan = repo.run_expect(&["plan"], 0);
    assert!(
        plan.contains(
            "1 package not installed: php8.2-fixture (`reconciler provision` installs them)"
        ),
        "{plan}"
    );
    assert_eq!(
        repo.ssh(
            "fleet-1",
            "test -e /usr/share/reconciler-fixture/marker || echo absent"
        ),
        "absent\n"
    );

    let installed = repo.run_expect(&["provision"], 0);
    assert_eq!(installed, "fleet-1: installed php8.2-fixture\n");
    assert_eq!(
        repo.ssh("fleet-1", "cat /usr/share/reconciler-fixture/marker"),
        "installed\n"
    );

    // Converged: nothing to install, one round trip, no apt-get.
    let again = repo.run(&["provision", "-vv"]);
    assert!(again.status.success());
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "fleet-1: every package is installed\n"
    );
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.matches("script done").count(), 1, "{stderr}");
}

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_package_apt_cannot_find_fails_with_apts_words() {
    let repo = cluster("packages: [reconciler-no-such-package]\n");
    let _local = local_repository(&repo);
    let out = repo.run(&["provision"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("fleet-1: FAILED: apt-get install failed:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Unable to locate package reconciler-no-such-package"),
        "{stdout}"
    );
}
