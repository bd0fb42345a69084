//! The CLI and a daemon's elastic members: `release` and `apply` cover the
//! ready members of the daemon whose state directory `--elastic-members`
//! names, and say that they leave them out without it; the daemon's next
//! drift check then makes the member catch up.

use super::elastic::{
    call, commit_elastic, forget_rel, host_key, join_body, join_token, settled, wait_in_force,
    watch,
};
use super::*;

#[test]
#[ignore = "needs the test fleet: tests/fleet/fleet up 4"]
fn a_release_from_the_cli_covers_the_ready_members_of_the_daemon_it_is_pointed_at() {
    let app = AppRepo::new();
    app.commit("c1", &[]);
    let repo = definitions(&app, 5);
    expect(&run(&repo, &app, &["release", "rel"]), 0);
    forget_rel(&repo, "fleet-3");
    let defs = repo.dir.path();
    git(defs, &["init", "-q", "-b", "main"]);
    commit_elastic(&repo, "{ max_servers: 1, template: { like: fleet-2 } }");
    let home = tempfile::tempdir().expect("tempdir");
    let state = home.path().join("watch");
    let log = state.with_extension("log");
    let tokens = home.path().join("deploy-tokens");
    super::webhook::deploy_token(&tokens, "rel");
    let token = join_token(&state, "fleet");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let daemon = watch(
        &repo,
        defs,
        &state,
        addr,
        &tokens,
        &["--drift-interval", "3s"],
    );
    wait_in_force(addr);
    let body = join_body(&repo, "fleet-3", "fleet-3", &host_key(&repo, "fleet-3"));
    let accepted = call(
        addr,
        "POST",
        "/v1/clusters/fleet/servers",
        Some(&token),
        &body,
    );
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let ready = settled(addr, &token, "fleet-3", &log);
    assert_eq!(ready["state"], "ready", "{ready}");
    assert_eq!(page(&repo, "fleet-3"), (200, "c1 c1".into()));

    // Without the option: the static servers only, said so; the member
    // catches up at the daemon's next drift check (a repair).
    app.commit("c2", &[]);
    let without = expect(&run(&repo, &app, &["release", "rel"]), 0);
    assert!(
        without.contains("cluster `fleet` takes elastic members, and they are left out"),
        "{without}"
    );
    assert_eq!(page(&repo, "fleet-1"), (200, "c2 c2".into()), "{without}");
    super::elastic::wait_page(&repo, "fleet-3", "c2", &log);

    // The daemon is stopped: only the CLI can release to the member.
    drop(daemon);
    app.commit("c3", &[]);
    let state_arg = state.to_str().expect("utf-8");
    let released = expect(
        &run(
            &repo,
            &app,
            &["release", "rel", "--elastic-members", state_arg],
        ),
        0,
    );
    assert!(released.contains("fleet-3"), "{released}");
    assert!(!released.contains("left out"), "{released}");
    for server in ["fleet-1", "fleet-2", "fleet-3"] {
        assert_eq!(
            page(&repo, server),
            (200, "c3 c3".into()),
            "{server}\n{released}"
        );
    }
    let applied = expect(
        &run(
            &repo,
            &app,
            &["apply", "--yes", "--elastic-members", state_arg],
        ),
        0,
    );
    assert!(applied.contains("fleet-3"), "{applied}");

    // A directory that is no daemon's state: refused before any server.
    let wrong = run(
        &repo,
        &app,
        &["release", "rel", "--elastic-members", "/nonexistent"],
    );
    let text = expect(&wrong, 2);
    assert!(text.contains("holds no elastic members"), "{text}");
}
