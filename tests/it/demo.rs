//! The README's first command, run the way a person would, with its
//! three suggested steps performed and checked (`./demo --check`), so that
//! the demo never rots. It starts its own servers under its own prefix.

use std::process::Command;

#[test]
#[ignore = "needs Docker: the demo starts its own fleet"]
fn the_demo_converges_defers_a_reload_releases_and_leaves_nothing_behind() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/demo"))
        .arg("--check")
        .env("RECONCILER_BIN", env!("CARGO_BIN_EXE_reconciler"))
        .output()
        .expect("run ./demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for step in [
        "ok: the three servers converge on the first commit",
        "ok: the app's first release answers on both web servers",
        "ok: its php-fpm reload waits for the window",
        "ok: the pending reloads happen in the window",
        "all three steps worked",
    ] {
        assert!(stderr.contains(step), "{step:?} in {stderr}");
    }
    let left = Command::new("docker")
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left
            .lines()
            .any(|name| name.starts_with("reconciler-demo-")),
        "containers left behind: {left}"
    );
}
