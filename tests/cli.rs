//! The binary on the shipped examples and schemas.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

fn reconciler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reconciler"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run reconciler")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_fleet_example_validates() {
    let out = reconciler(&["validate", "-d", "examples/fleet"]);
    assert_eq!(
        text(&out.stdout),
        "ok: 1 cluster, 3 apps\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn the_quickstart_example_validates() {
    let out = reconciler(&["validate", "-d", "examples/quickstart"]);
    assert_eq!(
        text(&out.stdout),
        "ok: 1 cluster, 1 app\n",
        "{}",
        text(&out.stderr)
    );
    assert!(out.status.success());
}

#[test]
fn every_example_file_names_its_schema() {
    for example in ["examples/fleet", "examples/quickstart"] {
        for (kind, schema) in [("clusters", "cluster"), ("apps", "app")] {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(example)
                .join(kind);
            for entry in fs::read_dir(&dir).expect("example dir") {
                let path = entry.expect("entry").path();
                let first = fs::read_to_string(&path).expect("read example");
                let expected = format!(
                    "# yaml-language-server: $schema=../../../schemas/{schema}.schema.json"
                );
                assert_eq!(
                    first.lines().next(),
                    Some(expected.as_str()),
                    "{}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn committed_schemas_are_what_the_schema_command_writes() {
    let out_dir = tempfile::tempdir().expect("tempdir");
    let out = reconciler(&[
        "schema",
        "--out",
        out_dir.path().to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut written: Vec<_> = fs::read_dir(out_dir.path())
        .expect("schema dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    written.sort();
    assert!(!written.is_empty());
    for name in written {
        let fresh = fs::read_to_string(out_dir.path().join(&name)).expect("fresh schema");
        let committed = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(&name);
        let committed = fs::read_to_string(&committed).unwrap_or_default();
        assert!(
            fresh == committed,
            "schemas/{} is stale: run `cargo run -- schema`",
            name.to_string_lossy()
        );
    }
}

#[test]
fn a_directory_without_definitions_is_an_error() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = reconciler(&["validate", "-d", empty.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr).replace(empty.path().to_str().expect("utf-8"), "$D");
    assert_eq!(
        stderr,
        "error: no definitions in `$D`: it has neither clusters/ nor apps/\n"
    );
}

#[test]
fn a_missing_directory_names_the_cause() {
    let out = reconciler(&["validate", "-d", "does/not/exist"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "error: cannot read definitions in `does/not/exist`\n  caused by: No such file or directory (os error 2)\n"
    );
}
