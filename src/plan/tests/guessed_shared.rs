//! A shared path written as a bare name has its kind guessed; the plan
//! says so for every such path, on each of the app's servers, with how to
//! state it, and says nothing of a stated one.

use super::*;

#[test]
fn every_guessed_shared_path_is_a_note_naming_the_guess_and_how_to_state_it() {
    let mut definitions = fleet();
    let shop = definitions
        .apps
        .iter_mut()
        .find(|a| a.name.as_str() == "shop")
        .expect("shop");
    shop.shared = serde_yaml::from_str(
        "[public/.well-known, storage, storage/logs/, { path: .env, kind: file }, \"my uploads\"]",
    )
    .expect("shared");
    let units = units_for(&definitions, "web-1");
    let plan = plan_host(&web1(), &units, &converged(&units), &options());
    let guessed: Vec<&str> = plan
        .notes
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("shared path"))
        .collect();
    assert_eq!(
        guessed,
        [
            "shared path `public/.well-known` of app `shop` is guessed a file (a dot in its last \
             name): write `{ path: public/.well-known, kind: file }` to say so, or \
             `public/.well-known/` for a directory",
            "shared path `storage` of app `shop` is guessed a directory (no dot in its last \
             name): write `storage/` to say so, or `{ path: storage, kind: file }` for a file",
            "shared path `my uploads` of app `shop` is guessed a directory (no dot in its last \
             name): write `\"my uploads/\"` to say so, or `{ path: \"my uploads\", kind: file }` \
             for a file",
        ]
    );
    // Notes change nothing: the converged host has nothing to do.
    assert!(!plan.has_changes(), "{:?}", plan.changes);
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("  note: shared path `storage` of app `shop` is guessed a directory"),
        "{text}"
    );

    // The example states every kind: no note.
    for server in ["web-1", "jobs-1"] {
        let units = units_for(&fleet(), server);
        let plan = plan_host(
            &ServerName::new(server),
            &units,
            &converged(&units),
            &options(),
        );
        assert!(
            !plan.notes.iter().any(|n| n.starts_with("shared path")),
            "{server}: {:?}",
            plan.notes
        );
    }
}
