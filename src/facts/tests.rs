//! gather.sh run by the local bash on files in a temporary directory: the
//! script and its parser together, without a server.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

use super::*;
use crate::units::{Directory, HostUnits, ManagedFile};

fn file(path: &str, content: &str) -> ManagedFile {
    ManagedFile {
        path: path.to_owned(),
        owner: "root".into(),
        group: "root".into(),
        mode: 0o644,
        content: content.to_owned(),
    }
}

fn gather_locally(units: &HostUnits) -> HostFacts {
    let output = Command::new("bash")
        .arg("-c")
        .arg(script(units))
        .output()
        .expect("run bash");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse::parse(&output.stdout).expect("facts parse")
}

#[test]
fn content_comes_back_only_for_files_that_differ() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8");
    let same = format!("{root}/same.conf");
    let differs = format!("{root}/differs.conf");
    let missing = format!("{root}/missing.conf");
    fs::write(&same, "a = 1\n").expect("write");
    fs::write(&differs, "b = 1\n@end\nno newline").expect("write");
    fs::set_permissions(&differs, fs::Permissions::from_mode(0o600)).expect("chmod");

    let units = HostUnits {
        files: vec![
            file(&same, "a = 1\n"),
            file(&differs, "b = 2\n"),
            file(&missing, "c = 3\n"),
        ],
        directories: vec![Directory {
            path: root.to_owned(),
            owner: "root".into(),
            group: "root".into(),
            mode: 0o755,
            inside_home_of: None,
        }],
        ..HostUnits::default()
    };
    let facts = gather_locally(&units);

    let same = &facts.paths[&same];
    assert_eq!(same.kind, PathKind::File);
    assert_eq!(same.sha256, Some(units.files[0].sha256()));
    assert_eq!(same.content, None, "equal content is not sent");

    let differs = &facts.paths[&differs];
    assert_eq!(differs.mode, 0o600);
    assert_eq!(differs.content.as_deref(), Some("b = 1\n@end\nno newline"));
    assert_ne!(differs.sha256, Some(units.files[1].sha256()));

    assert!(!facts.paths.contains_key(&missing));
    assert_eq!(facts.paths[root].kind, PathKind::Directory);
    assert_eq!(facts.users["root"].uid, 0);
    let owner_is_a_name = !same.owner.chars().all(|c| c.is_ascii_digit());
    assert!(
        owner_is_a_name,
        "numeric owner `{}` was not mapped",
        same.owner
    );
}
