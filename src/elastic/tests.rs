use super::*;
use crate::definitions::DefinitionFiles;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb9uY5w0d2nQ7bQdQ0fP3u0Jx0oQ0QJ3m2m4e3b8x8B";

fn files(elastic: &str) -> DefinitionFiles {
    let mut files = DefinitionFiles::new("repo");
    files.insert(
        "clusters/c.yaml",
        format!(
            "name: c\nphp: [\"8.2\"]\nservers:\n  - {{ name: web-1, address: 192.0.2.1, web_server: true }}\n  - {{ name: jobs-1, address: 192.0.2.2 }}\n{elastic}"
        )
        .into_bytes(),
    );
    files.insert(
        "apps/shop.yaml",
        b"name: shop\ncluster: c\nrepo: /srv/shop.git\nphp: \"8.2\"\ndomains: [shop.test]\nservers:\n  - { name: web-1, web: { max_workers: 9 }, workers: [{ name: q, command: php q }], deploy_commands: [php migrate] }\n  - { name: jobs-1, scheduler: true }\n".to_vec(),
    );
    files
}

fn definitions(elastic: &str) -> Definitions {
    Definitions::parse(&files(elastic)).expect("valid")
}

fn request(name: &str) -> JoinRequest {
    JoinRequest {
        name: name.into(),
        address: "192.0.2.50".into(),
        port: None,
        host_key: Some(format!("{KEY} root@image")),
    }
}

fn now() -> DateTime<Utc> {
    "2026-12-01T04:00:00Z".parse().expect("time")
}

/// A ready member `web-9` of cluster `c`.
fn ready_member() -> Member {
    Member {
        name: "web-9".into(),
        cluster: "c".into(),
        address: "192.0.2.50".into(),
        port: 22,
        host_key: Some(KEY.into()),
        state: MemberState::Ready,
        cause: None,
        joined_at: now(),
        since: now(),
    }
}

#[test]
fn a_join_is_refused_where_the_cluster_takes_none_is_full_or_the_name_is_taken() {
    let dir = tempfile::tempdir().expect("dir");
    let members = Members::open(dir.path()).expect("open");
    let plain = definitions("");
    assert!(matches!(
        members.admit(&plain, "c", &request("web-9"), now()),
        Err(Refusal::NotFound(_))
    ));
    assert!(matches!(
        members.admit(&plain, "nope", &request("web-9"), now()),
        Err(Refusal::NotFound(_))
    ));
    let elastic = definitions("elastic: { max_servers: 1 }\n");
    assert!(matches!(
        members.admit(&elastic, "c", &request("web-1"), now()),
        Err(Refusal::Conflict(_))
    ));
    for bad in [
        JoinRequest {
            host_key: Some("ssh-dss AAAAB3NzaC1kc3MAAACBAP".into()),
            ..request("web-9")
        },
        JoinRequest {
            host_key: Some(format!("{KEY}\n[127.0.0.1]:22 ssh-ed25519 AAAA")),
            ..request("web-9")
        },
        JoinRequest {
            address: "-oProxyCommand=x".into(),
            ..request("web-9")
        },
        JoinRequest {
            name: "Web_9".into(),
            ..request("web-9")
        },
    ] {
        assert!(
            matches!(
                members.admit(&elastic, "c", &bad, now()),
                Err(Refusal::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    assert!(members.all().is_empty(), "nothing refused is recorded");
    let member = members
        .admit(&elastic, "c", &request("web-9"), now())
        .expect("admitted");
    assert_eq!(member.state, MemberState::Joining);
    assert_eq!(
        member.host_key.as_deref(),
        Some(KEY),
        "the comment is dropped"
    );
    assert!(matches!(
        members.admit(&elastic, "c", &request("web-10"), now()),
        Err(Refusal::Conflict(_))
    ));
    assert!(matches!(
        members.admit(&elastic, "c", &request("web-9"), now()),
        Err(Refusal::Conflict(_))
    ));
    // A member that left frees its place.
    members.leave("c", "web-9", now()).expect("leaves");
    members
        .admit(&elastic, "c", &request("web-10"), now())
        .expect("its place is free");
}

#[test]
fn members_and_their_host_keys_are_kept_across_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let elastic = definitions("elastic: { max_servers: 3, template: { port: 2222 } }\n");
    {
        let members = Members::open(dir.path()).expect("open");
        members
            .admit(&elastic, "c", &request("web-9"), now())
            .expect("admitted");
        members.set("web-9", MemberState::Ready, None, now());
    }
    let members = Members::open(dir.path()).expect("open again");
    let kept = members.get("c", "web-9").expect("kept");
    assert_eq!((kept.state, kept.port), (MemberState::Ready, 2222));
    let line = std::fs::read_to_string(members.known_hosts("web-9")).expect("known_hosts");
    assert_eq!(line, format!("[192.0.2.50]:2222 {KEY}\n"));
    assert!(members.get("other", "web-9").is_none());
}

#[test]
fn a_member_copies_the_roles_of_its_like_server_but_not_its_scheduler_or_deploy_commands() {
    let elastic = definitions("elastic: { max_servers: 3, template: { like: web-1 } }\n");
    let member = ready_member();
    let extended = extend(&elastic, std::slice::from_ref(&member), |n| {
        PathBuf::from(format!("/kh/{n}"))
    });
    let (_, server) = extended
        .servers()
        .find(|(_, s)| s.name.as_str() == "web-9")
        .expect("a server of c");
    assert!(server.web_server);
    assert_eq!(
        server.known_hosts,
        Some(MemberKnownHosts {
            file: PathBuf::from("/kh/web-9"),
            accept_new: false
        })
    );
    let role = extended.apps[0]
        .servers
        .iter()
        .find(|r| r.name.as_str() == "web-9")
        .expect("a role in shop");
    assert_eq!(role.web.map(|w| w.max_workers), Some(9));
    assert_eq!(role.workers.len(), 1);
    assert!(role.deploy_commands.is_empty() && !role.scheduler);
    crate::units::Desired::render(&extended).expect("renders");

    // Without `like`: a web role with the default pool in apps with domains.
    let plain = definitions("elastic: { max_servers: 3 }\n");
    let extended = extend(&plain, std::slice::from_ref(&member), |n| PathBuf::from(n));
    let role = extended.apps[0]
        .servers
        .iter()
        .find(|r| r.name.as_str() == "web-9")
        .expect("a role in shop");
    assert_eq!(role.web, Some(WebPool::default()));
    assert!(role.workers.is_empty());

    // A static server that takes the name wins; so does a cluster that
    // no longer takes joins.
    let taken = Member {
        name: "web-1".into(),
        ..member.clone()
    };
    assert_eq!(
        extend(&plain, &[taken], |n| PathBuf::from(n)).clusters[0]
            .servers
            .len(),
        2
    );
    assert_eq!(
        extend(&definitions(""), &[member], |n| PathBuf::from(n)).clusters[0]
            .servers
            .len(),
        2
    );
}

#[test]
fn a_ready_member_failing_past_the_grace_period_is_lost() {
    let member = ready_member();
    let grace = chrono::Duration::minutes(10);
    let mut host = crate::board::HostStatus {
        failures: 3,
        last_message: Some("connection refused".into()),
        ..Default::default()
    };
    let later = now() + chrono::Duration::minutes(11);
    assert!(
        lost(
            &member,
            Some(&host),
            now() + chrono::Duration::minutes(9),
            grace
        )
        .is_none()
    );
    let cause = lost(&member, Some(&host), later, grace).expect("lost");
    assert!(cause.contains("connection refused"), "{cause}");
    host.last_success_at = Some(now() + chrono::Duration::minutes(5));
    assert!(lost(&member, Some(&host), later, grace).is_none());
    host.failures = 0;
    host.last_success_at = None;
    assert!(lost(&member, Some(&host), later, grace).is_none());
    let joining = Member {
        state: MemberState::Configuring,
        ..member
    };
    assert!(lost(&joining, Some(&host), later, grace).is_none());
}

/// Whether the definitions shared in `in_force` have server `name`.
fn in_force_has(in_force: &crate::board::DefinitionsInForce, name: &str) -> bool {
    in_force
        .read()
        .expect("lock")
        .as_deref()
        .is_some_and(|d| d.servers().any(|(_, s)| s.name.as_str() == name))
}

#[test]
fn a_member_that_leaves_while_a_commit_loads_is_not_put_back_in_force_by_its_take() {
    let dir = tempfile::tempdir().expect("dir");
    let members = Members::open(dir.path()).expect("open");
    let in_force = crate::board::DefinitionsInForce::default();
    members.publish_to(std::sync::Arc::clone(&in_force));
    let files = files("elastic: { max_servers: 3 }\n");
    let elastic = Definitions::parse(&files).expect("valid");
    members
        .admit(&elastic, "c", &request("web-9"), now())
        .expect("admitted");
    members.put_in_force(elastic.clone());
    assert!(!in_force_has(&in_force, "web-9"), "joining is not in force");
    members.set("web-9", MemberState::Ready, None, now());
    assert!(
        in_force_has(&in_force, "web-9"),
        "ready is in force at once"
    );

    // The loop loads the commit while web-9 is ready (a restart's resume)…
    let (loaded, base) = load(&files, Some(&members)).expect("loads");
    assert!(
        loaded
            .definitions
            .servers()
            .any(|(_, s)| s.name.as_str() == "web-9")
    );
    // …web-9 leaves before the loop takes what it loaded…
    members.leave("c", "web-9", now()).expect("leaves");
    assert!(
        !in_force_has(&in_force, "web-9"),
        "a leave is in force at once"
    );
    // …and the take does not put it back.
    members.put_in_force(base.expect("the files' own definitions"));
    assert!(!in_force_has(&in_force, "web-9"), "the take resurrected it");
}

#[test]
fn a_join_without_a_host_key_is_refused_unless_the_cluster_accepts_new_host_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let members = Members::open(dir.path()).expect("open");
    let keyless = JoinRequest {
        host_key: None,
        ..request("web-9")
    };
    let strict = definitions("elastic: { max_servers: 2 }\n");
    let refused = members.admit(&strict, "c", &keyless, now());
    assert!(
        matches!(&refused, Err(Refusal::Invalid(m)) if m.contains("accept_new_host_keys")),
        "{refused:?}"
    );
    assert!(members.all().is_empty(), "nothing refused is recorded");

    let trusting = definitions("elastic: { max_servers: 2, accept_new_host_keys: true }\n");
    let member = members
        .admit(&trusting, "c", &keyless, now())
        .expect("admitted");
    assert_eq!(member.host_key, None);
    let file = members.known_hosts("web-9");
    assert_eq!(std::fs::read_to_string(&file).expect("made"), "");
    // Until its first connection recorded a key, a connection may record
    // one; from then on the key is checked strictly.
    let first = |m: &Member| {
        extend(&trusting, std::slice::from_ref(m), |n| {
            members.known_hosts(n)
        })
        .servers()
        .find(|(_, s)| s.name.as_str() == "web-9")
        .and_then(|(_, s)| s.known_hosts.clone())
        .expect("a member's own known_hosts")
    };
    assert!(first(&member).accept_new);
    assert!(members.learn("web-9", member.joined_at, KEY));
    let learnt = members.get("c", "web-9").expect("kept");
    assert_eq!(learnt.host_key.as_deref(), Some(KEY));
    assert!(!first(&learnt).accept_new);
    // A member whose join carried its key never records another, even in
    // a cluster that accepts new keys.
    let keyed = members
        .admit(&trusting, "c", &request("web-10"), now())
        .expect("admitted");
    assert!(
        !first(&Member {
            name: "web-9".into(),
            ..keyed
        })
        .accept_new
    );
}

#[test]
fn a_recorded_host_key_is_read_from_a_hashed_or_plain_line_with_its_fingerprint() {
    let hashed = format!("|1|c2FsdA==|aGFzaA== {KEY}\n");
    assert_eq!(recorded_key(&hashed).as_deref(), Some(KEY));
    let plain = format!("[192.0.2.50]:2222 {KEY}\n");
    assert_eq!(recorded_key(&plain).as_deref(), Some(KEY));
    assert_eq!(recorded_key(""), None);
    assert_eq!(recorded_key("host ssh-dss AAAAB3NzaC1kc3MAAACBAP\n"), None);
    // As `ssh-keygen -lf` shows it for this key.
    assert_eq!(
        fingerprint(KEY).as_deref(),
        Some("SHA256:RDRFGDKXGf5ikWaV3+19/MonWqQG+kxsrfY6BxTPKDQ")
    );
}

#[test]
fn a_ready_member_unreachable_past_the_grace_period_is_lost() {
    let member = ready_member();
    let grace = chrono::Duration::seconds(5);
    let unreachable = Unreachable {
        since: now() + chrono::Duration::seconds(10),
        cause: "connection refused".into(),
    };
    assert!(
        unreachable
            .past(&member, now() + chrono::Duration::seconds(14), grace)
            .is_none()
    );
    let cause = unreachable
        .past(&member, now() + chrono::Duration::seconds(16), grace)
        .expect("lost");
    assert!(
        cause.starts_with("unreachable since 2026-12-01 04:00:10 UTC: connection refused"),
        "{cause}"
    );
    // Counted from when it became ready, not from an earlier failure.
    let rejoined = Member {
        since: now() + chrono::Duration::seconds(12),
        ..member.clone()
    };
    assert!(
        unreachable
            .past(&rejoined, now() + chrono::Duration::seconds(16), grace)
            .is_none()
    );
    let leaving = Member {
        state: MemberState::Leaving,
        ..member
    };
    assert!(
        unreachable
            .past(&leaving, now() + chrono::Duration::minutes(9), grace)
            .is_none()
    );
}
