//! When reloads happen: windows, --now, pending and new pools.

use super::*;

#[test]
fn a_deferred_reload_says_when_its_window_opens() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.pending_reloads.push("php8.2-fpm".into());
    let plan = plan_host(&web1(), &units, &facts, &options());
    let next = plan.reloads[0]
        .next_window
        .clone()
        .expect("the next window");
    assert_eq!(
        next.start_local.as_deref(),
        Some("2026-11-23T03:00:00+01:00")
    );
    assert_eq!(next.in_seconds, Some(3 * 3600 + 12 * 60));
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("reload php8.2-fpm in the next reload window, 2026-11-23 03:00 CET (02:00 UTC), in 3h12m"),
        "{text}"
    );
}

#[test]
fn without_windows_a_reload_waits_for_now_and_says_so() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.pending_reloads.push("php8.2-fpm".into());
    let mut options = options();
    options.reloads.windows = crate::windows::WindowState::NoWindows;
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Manual, true)]
    );
    assert!(!plan.has_changes());
    let text = text(&Plan::new(vec![plan]));
    assert!(
        text.contains("reload php8.2-fpm on `apply --now`: the cluster has no reload windows"),
        "{text}"
    );
    assert!(text.contains("reload php8.2-fpm on --now"), "{text}");
}

#[test]
fn in_an_open_window_a_pending_reload_is_due_now() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.pending_reloads.push("php8.2-fpm".into());
    let mut options = options();
    let until = "2026-11-23T03:00:00Z".parse().expect("time");
    options.reloads.windows = crate::windows::WindowState::Open { until };
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Now, true)]
    );
    assert_eq!(plan.reloads[0].window_open_until, Some(until));
    assert!(
        plan.has_changes(),
        "apply would reload: --detailed-exitcode gives 2"
    );
}

#[test]
fn a_new_pool_starts_at_once_and_immediate_clusters_reload_at_once() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = converged(&units);
    facts.paths.remove("/etc/php/8.2/fpm/pool.d/blog.conf");
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Now, false)]
    );

    let mut facts = converged(&units);
    facts.pending_reloads.push("php8.2-fpm".into());
    let mut options = options();
    options.reloads.fpm_reload = crate::definitions::FpmReload::Immediate;
    let plan = plan_host(&web1(), &units, &facts, &options);
    assert_eq!(
        labels(&plan),
        [("php8.2-fpm".into(), ReloadWhen::Now, true)]
    );
}

#[test]
fn an_app_without_a_release_and_a_removed_app_are_explained() {
    let mut defs = fleet();
    let units = units_for(&defs, "web-1");
    let mut facts = converged(&units);
    for app in ["billing", "shop"] {
        facts.releases.entry(AppName::new(app)).or_default().current = Some("releases/a".into());
    }
    defs.apps.retain(|a| a.name.as_str() != "billing");
    let plan = plan_host(&web1(), &units_for(&defs, "web-1"), &facts, &options());
    assert_eq!(
        plan.notes,
        [
            "app `blog` has no live release yet (/home/blog/current): its site answers 404 until one is deployed",
            "app `billing` left the definitions: its config files here are removed, but its user and /home/billing stay (reconciler never deletes an app's data; remove them by hand once you are sure)",
        ]
    );
}
