//! OPcache hygiene: when a full or outdated cache is due for a reload.

use super::*;

fn opcache(used_mib: u64, start_time: i64) -> crate::facts::Opcache {
    crate::facts::Opcache {
        enabled: true,
        memory_used: used_mib << 20,
        memory_free: (128 - used_mib) << 20,
        cached_scripts: 1500,
        hits: 990,
        misses: 10,
        start_time,
        ..Default::default()
    }
}

#[test]
fn a_full_opcache_is_due_for_a_reload_in_the_open_window() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts
        .opcache
        .insert(PhpVersion::new("8.2"), opcache(118, 1_795_300_000));
    let mut options = options();
    options.hygiene = Some(crate::definitions::OpcacheHygiene {
        max_fill: 80,
        after_release: true,
    });
    // Closed window: shown as waiting, not a change.
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Window, false)]
    );
    assert_eq!(
        plan.reloads[0].reasons,
        ["OPcache is 92% full (more than 80%)"]
    );
    assert!(!plan.has_changes());
    // Open window: due now.
    options.reloads.windows = crate::windows::WindowState::Open {
        until: "2026-11-23T03:00:00Z".parse().expect("time"),
    };
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Now, false)]
    );
    assert!(plan.has_changes());
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("(OPcache is 92% full (more than 80%))"),
        "{text}"
    );
    assert!(
        text.contains("opcache php8.2: 92% full (118.0 of 128.0 MiB), 1500 scripts, hit rate 99.0%, since 2026-11-21 22:26 UTC"),
        "{text}"
    );
}

#[test]
fn a_release_after_the_cache_started_is_due_and_an_idle_cache_is_not() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts
        .opcache
        .insert(PhpVersion::new("8.2"), opcache(20, 1_795_300_000));
    let hygiene = crate::definitions::OpcacheHygiene {
        max_fill: 80,
        after_release: true,
    };
    let mut options = options();
    options.hygiene = Some(hygiene);
    assert_eq!(plan_host(&web1(), &units, &facts, &options).reloads, []);
    let mut current = facts.paths["/home/shop"].clone();
    current.kind = PathKind::Symlink;
    current.mtime = Some(1_795_300_100);
    facts.paths.insert("/home/shop/current".into(), current);
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        plan.reloads[0].reasons,
        ["`shop`'s live release changed after the cache started"]
    );
    // Without windows hygiene waits for nothing: it is not shown.
    options.reloads.windows = crate::windows::WindowState::NoWindows;
    assert_eq!(plan_host(&web1(), &units, &facts, &options).reloads, []);
}

#[test]
fn an_ab_release_after_the_cache_started_is_not_due() {
    // `release_layout: ab` rewrites the paths OPcache holds: a reload
    // after each release would only throw away what the release warmed.
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts
        .opcache
        .insert(PhpVersion::new("8.2"), opcache(20, 1_795_300_000));
    let mut options = options();
    options.hygiene = Some(crate::definitions::OpcacheHygiene {
        max_fill: 80,
        after_release: true,
    });
    let mut current = facts.paths["/home/shop"].clone();
    current.kind = PathKind::Symlink;
    current.target = Some("b".into());
    current.mtime = Some(1_795_300_100);
    facts.paths.insert("/home/shop/current".into(), current);
    assert_eq!(plan_host(&web1(), &units, &facts, &options).reloads, []);
    // A full cache is still due.
    facts
        .opcache
        .insert(PhpVersion::new("8.2"), opcache(118, 1_795_300_000));
    assert_eq!(
        plan_host(&web1(), &units, &facts, &options).reloads[0].reasons,
        ["OPcache is 92% full (more than 80%)"]
    );
}
