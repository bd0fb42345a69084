use super::*;
use crate::release::LogResult;

fn sha(n: u8) -> Sha {
    Sha::parse(&format!("{n:02x}").repeat(20)).expect("a sha")
}

fn entry(n: u8, result: LogResult) -> LogEntry {
    LogEntry {
        reason: None,
        warmed: None,
        sha: sha(n),
        time: format!("2026-11-30T00:00:{n:02}Z"),
        trigger: "cli".into(),
        result,
        duration_ms: 1,
        who: "t".into(),
        previous: None,
    }
}

fn state(live: Option<u8>, complete: &[u8], log: &[(u8, LogResult)]) -> ServerReleases {
    ServerReleases {
        live: live.map(sha),
        complete: complete.iter().map(|&n| sha(n)).collect(),
        log: log.iter().map(|&(n, r)| entry(n, r)).collect(),
        ..ServerReleases::default()
    }
}

#[test]
fn a_release_is_prepared_where_it_is_not_complete_and_goes_back_to_what_was_live() {
    let web = state(Some(1), &[1, 2], &[]);
    let fresh = state(None, &[], &[]);
    let plan = plan(
        &sha(2),
        &[
            (ServerName::new("web-1"), &web),
            (ServerName::new("web-2"), &fresh),
        ],
    );
    assert_eq!(plan.reuse, [ServerName::new("web-1")]);
    assert_eq!(plan.prepare, [ServerName::new("web-2")]);
    assert_eq!(plan.back[&ServerName::new("web-1")], Some(sha(1)));
    assert_eq!(plan.back[&ServerName::new("web-2")], None);
}

#[test]
fn pruning_keeps_the_newest_good_releases_and_always_the_previous_good_one() {
    use LogResult::*;
    let log = [
        (1, Live),
        (2, Live),
        (3, Failed),
        (4, Live),
        (5, RolledBack),
        (6, Live),
    ];
    let server = state(Some(6), &[1, 2, 3, 4, 5, 6], &log);
    let log: Vec<LogEntry> = server.log.clone();
    let kept = |n: u32| keep(&server, Some(&sha(6)), &log, n);
    assert_eq!(
        kept(3),
        BTreeSet::from([sha(6), sha(4), sha(2)]),
        "failed ones do not count"
    );
    assert_eq!(
        kept(1),
        BTreeSet::from([sha(6), sha(4)]),
        "the previous good one stays"
    );
    assert_eq!(kept(10), BTreeSet::from([sha(6), sha(4), sha(2), sha(1)]));
    let gone = state(Some(6), &[6, 1], &[]);
    assert_eq!(
        keep(&gone, Some(&sha(6)), &log, 3),
        BTreeSet::from([sha(6), sha(1), sha(4)]),
        "only complete ones fill `keep`; the previous good one stays named even if gone"
    );
}

#[test]
fn a_rollback_goes_to_the_previous_good_release_or_to_one_named_everywhere() {
    use LogResult::*;
    let a = state(Some(3), &[1, 2, 3], &[(1, Live), (2, Live), (3, Live)]);
    let b = state(Some(3), &[2, 3], &[(2, Live), (3, Live)]);
    let servers = [(ServerName::new("a"), &a), (ServerName::new("b"), &b)];
    assert_eq!(rollback_target(&servers, None), Ok(sha(2)));
    assert_eq!(rollback_target(&servers, Some("0202")), Ok(sha(2)));
    assert_eq!(
        rollback_target(&servers, Some("0101")),
        Err("010101010101 is not complete on b".into())
    );
    assert_eq!(
        rollback_target(&servers, Some("0")),
        Err("`0` names more than one release".into())
    );
    assert_eq!(
        rollback_target(&servers, Some("ff")),
        Err("no release `ff` on the servers".into())
    );
    let none = state(Some(3), &[3], &[(3, Live)]);
    assert!(rollback_target(&[(ServerName::new("c"), &none)], None).is_err());
}

#[test]
fn what_was_live_before_the_first_logged_release_is_kept_for_a_rollback() {
    // The server ran 1 before reconciler logged anything; 2 just went live.
    let server = state(Some(1), &[1, 2], &[]);
    let mut new = entry(2, LogResult::Live);
    new.previous = Some(sha(1));
    assert_eq!(
        keep(&server, Some(&sha(2)), &[new], 1),
        BTreeSet::from([sha(2), sha(1)])
    );
}
