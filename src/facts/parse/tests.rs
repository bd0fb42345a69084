use super::*;
use crate::remote::protocol::encode_text;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A gather stream of `records` (kind and fields) between its first and
/// last record.
fn stream(records: &[(&str, &[&str])]) -> Vec<u8> {
    let mut out = encode_text("facts", &["2"]);
    for (kind, fields) in records {
        out.extend(encode_text(kind, fields));
    }
    out.extend(encode_text("end", &[]));
    out
}

fn every_kind() -> Vec<u8> {
    let opcache = format!(
        r#"{{"opcache_enabled":true,"memory_usage":{{"used_memory":96,"free_memory":4,"wasted_memory":0}},"opcache_statistics":{{"num_cached_scripts":1500,"hits":99,"misses":1,"start_time":1795300000}},"reconciler_release_scripts":{{"/home/shop/releases/{SHA}":377,"/home/shop/releases/planted":5,"/etc/x":1}}}}"#
    );
    let content = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode("a\n@b\nc\n")
    };
    stream(&[
        ("os", &["debian 12"]),
        ("init", &["service"]),
        ("uid", &["0"]),
        ("php", &["7.4", "", "/usr/bin/php7.4"]),
        ("php", &["8.2", "/usr/sbin/php-fpm8.2", "/usr/bin/php8.2"]),
        ("opcache", &["8.2", &opcache]),
        ("tool", &["nginx", "/usr/sbin/nginx"]),
        ("tool", &["cron", ""]),
        ("packages", &["nginx php8.2-fpm "]),
        ("user", &["root", "0", "0", "/root", "/bin/bash"]),
        (
            "user",
            &["shop", "999", "999", "/home/shop", "/usr/sbin/nologin"],
        ),
        ("group", &["root", "0", ""]),
        ("group", &["shop", "999", "www-data,other"]),
        ("sudoer", &["shop"]),
        ("created-user", &["shop"]),
        ("manifest-ignored", &["0"]),
        ("manifest-sha256", &["abc"]),
        ("manifest", &["/etc/cron.d/old"]),
        ("pending", &["php8.2-fpm"]),
        ("journal-started", &["2026-11-22T03:00:00Z"]),
        ("journal-holder", &["root@laptop (pid 7)"]),
        ("journal-backup", &["/var/lib/reconciler/backup/apply.x"]),
        ("journal-staged", &["/etc/cron.d/old"]),
        (
            "lock",
            &["root@ci (pid 9) (apply since 2026-11-22T03:00:01Z)"],
        ),
        ("release", &["/home/shop/releases", SHA]),
        (
            "path",
            &[
                "f",
                "0",
                "0",
                "644",
                "6",
                "/etc/cron.d/old",
                "",
                "1795300000.5",
            ],
        ),
        (
            "path",
            &[
                "l",
                "999",
                "999",
                "777",
                "18",
                "/home/shop/current",
                &format!("releases/{SHA}"),
                "1795300100.25",
            ],
        ),
        (
            "path",
            &[
                "d",
                "999",
                "1234",
                "750",
                "4096",
                "/home/shop",
                "",
                "1795300000.0",
            ],
        ),
        ("sha256", &["deadbeef", "/etc/cron.d/old"]),
        ("content", &["/etc/cron.d/old", &content]),
        ("service", &["nginx", "running"]),
        ("service", &["php8.2-fpm", "stopped"]),
        ("programs", &[]),
        ("program", &["shop:shop-default_00", "RUNNING"]),
        ("program", &["shop:shop-default_01", "FATAL"]),
    ])
}

#[test]
fn reads_every_record() {
    let facts = parse(&every_kind()).expect("parses");
    assert_eq!(facts.os, "debian 12");
    assert_eq!(facts.init, Init::Service);
    assert_eq!(facts.uid, 0);
    assert_eq!(facts.php[&PhpVersion::new("7.4")].fpm, None);
    assert_eq!(
        facts.php[&PhpVersion::new("8.2")].fpm.as_deref(),
        Some("/usr/sbin/php-fpm8.2")
    );
    assert!(facts.has_tool("nginx") && !facts.has_tool("cron"));
    assert_eq!(
        facts.packages,
        BTreeSet::from(["nginx".to_owned(), "php8.2-fpm".to_owned()])
    );
    assert_eq!(facts.users["shop"].home, "/home/shop");
    assert!(facts.users["root"].can_log_in() && !facts.users["shop"].can_log_in());
    assert!(facts.sudoers.contains("shop") && facts.created_users.contains("shop"));
    assert_eq!(facts.manifest_sha256.as_deref(), Some("abc"));
    let journal = facts.journal.as_ref().expect("journal");
    assert_eq!(journal.holder, "root@laptop (pid 7)");
    assert_eq!(journal.staged, ["/etc/cron.d/old"]);
    assert_eq!(
        facts.lock_holder.as_deref(),
        Some("root@ci (pid 9) (apply since 2026-11-22T03:00:01Z)")
    );
    assert!(facts.groups["shop"].contains("www-data"));
    assert_eq!(facts.manifest, ["/etc/cron.d/old"]);
    assert_eq!(facts.pending_reloads, ["php8.2-fpm"]);
    let cache = &facts.opcache[&PhpVersion::new("8.2")];
    assert_eq!((cache.cached_scripts, cache.fill_percent()), (1500, 96));
    assert_eq!(cache.hit_rate_permille(), 990);
    assert_eq!(cache.start_time, 1795300000);
    assert_eq!(
        cache.release_scripts,
        BTreeMap::from([(format!("/home/shop/releases/{SHA}"), 377)]),
        "only release directories reconciler makes are counted"
    );
    assert_eq!(facts.paths["/home/shop/current"].mtime, Some(1795300100));
    let shop = &facts.releases[&AppName::new("shop")];
    assert_eq!(
        shop.current.as_deref(),
        Some(format!("releases/{SHA}").as_str())
    );
    assert_eq!(shop.releases, [SHA]);
    let old = &facts.paths["/etc/cron.d/old"];
    assert_eq!((old.kind, old.mode), (PathKind::File, 0o644));
    assert_eq!(old.sha256.as_deref(), Some("deadbeef"));
    assert_eq!(old.content.as_deref(), Some("a\n@b\nc\n"));
    let home = &facts.paths["/home/shop"];
    assert_eq!(home.kind, PathKind::Directory);
    assert_eq!((home.owner.as_str(), home.group.as_str()), ("shop", "1234"));
    assert_eq!(old.owner, "root");
    assert_eq!(
        facts.services,
        BTreeMap::from([
            ("nginx".to_owned(), ServiceState::Running),
            ("php8.2-fpm".to_owned(), ServiceState::Stopped),
        ])
    );
    assert_eq!(
        facts.programs,
        Some(BTreeMap::from([
            ("shop:shop-default_00".to_owned(), ProgramState::Running),
            ("shop:shop-default_01".to_owned(), ProgramState::Fatal),
        ]))
    );
}

#[test]
fn supervisor_process_names_are_read_only_when_plain() {
    // Names as a hostile program file could make supervisorctl print them:
    // escape codes, a glob that would start every process, a record's
    // framing; and a state nobody knows.
    let facts = parse(&stream(&[
        ("programs", &[]),
        ("program", &["shop:shop-default_00", "STOPPED"]),
        ("program", &["shop:\x1b]0;pwned\x07", "STOPPED"]),
        ("program", &["shop:\u{1b}[2J", "FATAL"]),
        ("program", &["shop:*", "FATAL"]),
        ("program", &["-shop:x", "FATAL"]),
        ("program", &["shop:x\n@service\tnginx", "FATAL"]),
        ("program", &["shop:y", "ASLEEP"]),
    ]))
    .expect("parses");
    assert_eq!(
        facts.programs,
        Some(BTreeMap::from([(
            "shop:shop-default_00".to_owned(),
            ProgramState::Stopped
        )]))
    );
    assert_eq!(facts.programs_unread, 6);
    assert!(facts.services.is_empty());

    // Without the `programs` record, supervisord was not asked: nothing is
    // known, which is not "no processes".
    let facts = parse(&stream(&[("program", &["shop:a_00", "RUNNING"])])).expect("parses");
    assert_eq!(facts.programs, None);
}

#[test]
fn a_service_state_is_running_or_stopped() {
    let bad = stream(&[("service", &["nginx", "maybe"])]);
    assert_eq!(
        parse(&bad),
        Err(ParseError::Malformed {
            index: 1,
            kind: "service".into()
        })
    );
}

#[test]
fn app_made_names_are_fields_never_records() {
    // A release directory and a `current` target the app named to look
    // like records of the old line format, and of this one without NULs.
    let forged = "x\n@lock\tforged holder\n@sudoer\troot\n@release shop 1111111111111111111111111111111111111111";
    let facts = parse(&stream(&[
        ("release", &["/home/shop/releases", forged]),
        ("release", &["/home/shop/releases", SHA]),
        (
            "path",
            &[
                "l",
                "999",
                "999",
                "777",
                "18",
                "/home/shop/current",
                forged,
                "1795300100.25",
            ],
        ),
    ]))
    .expect("parses");
    assert_eq!(facts.lock_holder, None);
    assert!(facts.sudoers.is_empty());
    let shop = &facts.releases[&AppName::new("shop")];
    assert_eq!(shop.releases, [SHA], "only commit ids are releases");
    assert_eq!(
        shop.current.as_deref(),
        Some(forged),
        "kept as the link says, for the plan to judge"
    );
}

#[test]
fn output_cut_short_is_an_error() {
    let whole = every_kind();
    let cut = &whole[..whole.len() - 3];
    assert_eq!(parse(cut), Err(ParseError::Truncated));
    let without_end = &whole[..whole.len() - encode_text("end", &[]).len()];
    assert_eq!(parse(without_end), Err(ParseError::Truncated));
    assert_eq!(
        parse(b"hello"),
        Err(ParseError::Protocol(ProtocolError::NotARecord {
            at: 0,
            found: "hello".into()
        }))
    );
    assert_eq!(
        parse(&encode_text("facts", &["1"])),
        Err(ParseError::NotFacts)
    );
}

#[test]
fn a_bad_number_names_its_record() {
    let bad = stream(&[("user", &["shop", "x", "1", "/home/shop", ""])]);
    assert_eq!(
        parse(&bad),
        Err(ParseError::Malformed {
            index: 1,
            kind: "user".into()
        })
    );
}
