//! An app's `current` that names anything but one of its own releases is
//! a warning in the host's plan, in text and in JSON, and changes nothing.

use super::*;
use crate::facts::AppReleases;

/// The part of a host's facts the fixture gives.
#[derive(serde::Deserialize)]
struct Links {
    paths: BTreeMap<String, PathFacts>,
    releases: BTreeMap<AppName, AppReleases>,
}

/// web-1 converged, with each app's `current` as the fixture has it.
fn with_current_links(units: &HostUnits) -> HostFacts {
    let mut facts = converged(units);
    let links: Links =
        serde_yaml::from_str(include_str!("../fixtures/current-links.yaml")).expect("fixture");
    facts.paths.extend(links.paths);
    facts.releases.extend(links.releases);
    facts
}

const SHOP_RELEASE: &str = "4ba7558d2b67e0c1a4f1e8c2b3d5a6f7e8d9c0b1";

#[test]
fn a_current_pointing_at_another_apps_release_or_at_no_release_is_a_warning() {
    let units = units_for(&fleet(), "web-1");
    let plan = plan_host(&web1(), &units, &with_current_links(&units), &options());
    let blog = format!(
        "`/home/blog/current` points at `/home/shop/releases/{SHOP_RELEASE}`, not at one of \
         blog's releases: only a release should change it (`reconciler release blog` points it back)"
    );
    let billing = "`/home/billing/current` points at \
                   `releases/0000000000000000000000000000000000000000`, which is not on the server: \
                   `reconciler release billing` points it at a release";
    assert_eq!(plan.warnings, [billing, blog.as_str()]);
    assert!(plan.changes.is_empty(), "{:?}", plan.changes);
    assert!(!plan.has_changes());

    let text = text(&Plan::new(vec![plan.clone()]));
    assert!(text.contains(&format!("\n  ! warning: {blog}\n")), "{text}");
    let json: serde_json::Value =
        serde_json::from_str(&render::json(&Plan::new(vec![plan]))).expect("JSON");
    assert_eq!(json["hosts"][0]["warnings"][1], blog.as_str());
}

#[test]
fn its_own_release_by_absolute_path_is_fine_and_a_directory_is_a_warning() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = with_current_links(&units);
    let shop = facts.paths.get_mut("/home/shop/current").expect("shop");
    shop.target = Some(format!("/home/shop/releases/{SHOP_RELEASE}"));
    let blog = facts.paths.get_mut("/home/blog/current").expect("blog");
    blog.kind = PathKind::Directory;
    blog.target = None;
    facts.paths.remove("/home/billing/current");
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(
        plan.warnings,
        [
            "`/home/blog/current` is a directory, not a link to one of blog's releases: it is \
             served as it is, and `reconciler release blog` refuses to replace it (as blog, \
             `cd /home/blog && mv current current.adopted && ln -s current.adopted current` \
             keeps it served and hands it to releases)"
        ]
    );
    // Regression: an adopted app's directory was said to answer 404.
    assert!(
        !plan.notes.iter().any(|n| n.contains("`blog`")),
        "blog serves its directory: {:?}",
        plan.notes
    );
}

#[test]
fn a_link_that_only_resembles_a_release_is_a_warning() {
    let units = units_for(&fleet(), "web-1");
    let mut facts = with_current_links(&units);
    facts
        .paths
        .retain(|path, _| path == "/home/shop/current" || !path.ends_with("/current"));
    for target in [
        format!("releases/{SHOP_RELEASE}/../../../blog/releases/{SHOP_RELEASE}"),
        format!("../blog/releases/{SHOP_RELEASE}"),
        format!("./releases/{SHOP_RELEASE}"),
        "releases/t1".to_owned(),
        "/home/blog/shared".to_owned(),
    ] {
        facts
            .paths
            .get_mut("/home/shop/current")
            .expect("shop")
            .target = Some(target.clone());
        let plan = plan_host(&web1(), &units, &facts, &options());
        assert_eq!(plan.warnings.len(), 1, "{target}: {:?}", plan.warnings);
        assert!(
            plan.warnings[0].contains("not at one of shop's releases"),
            "{target}"
        );
    }
}

#[test]
fn a_current_made_by_root_is_a_warning() {
    // Linked by hand as root (or by another deploy tool): nginx follows no
    // link whose owner is not its target's.
    let units = units_for(&fleet(), "web-1");
    let mut facts = with_current_links(&units);
    facts
        .paths
        .retain(|path, _| path == "/home/shop/current" || !path.ends_with("/current"));
    facts
        .paths
        .get_mut("/home/shop/current")
        .expect("shop")
        .owner = "root".into();
    let plan = plan_host(&web1(), &units, &facts, &options());
    assert_eq!(
        plan.warnings,
        [
            "`/home/shop/current` belongs to `root`, not to shop: nginx serves nothing through a \
             link to another owner's files (the next release of shop links it again as shop)"
        ]
    );
}
