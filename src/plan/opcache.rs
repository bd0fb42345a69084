//! OPcache figures in the plan, and OPcache hygiene: when a php-fpm's cache
//! needs a reload in the next window.
//!
//! Each release lives in its own directory (`releases/<sha>`), so the old
//! release's scripts stay in the cache after a switch; after a few releases
//! the cache is full, new scripts are no longer cached and requests get
//! ten times slower. A reload empties it. Hygiene asks for one in a window
//! when the cache is fuller than `max_fill` percent, or (`after_release`)
//! when an app's live release changed after the cache started.
//!
//! An app whose `current` links to a side (`release_layout: ab`, `a` or
//! `b`) is no reason for `after_release`: its releases rewrite the paths
//! OPcache already holds (one entry per path, two sides), so the cache does
//! not grow with releases, and a reload would only throw away what the
//! release warmed. `max_fill` still applies to it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::definitions::{OpcacheHygiene, PhpVersion};
use crate::facts::{HostFacts, Opcache};
use crate::layout::{AppPaths, ConfigFile};
use crate::units::HostUnits;

/// One php-fpm's OPcache, as the plan shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OpcacheReport {
    /// The figures `opcache_get_status(false)` gave (flattened: they are
    /// this object's fields).
    #[serde(flatten)]
    pub figures: Opcache,
    /// Used plus wasted memory, in percent of the cache's size.
    pub fill_percent: u64,
    /// Hits in percent of lookups.
    pub hit_rate_percent: f64,
    /// When the cache started (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<DateTime<Utc>>,
    /// Why hygiene wants this php-fpm reloaded; empty when it does not.
    pub due: Vec<String>,
}

/// Each php-fpm's figures, with the hygiene reasons to reload it.
pub(super) fn reports(
    units: &HostUnits,
    facts: &HostFacts,
    hygiene: Option<&OpcacheHygiene>,
) -> BTreeMap<PhpVersion, OpcacheReport> {
    facts
        .opcache
        .iter()
        .map(|(version, cache)| {
            let due = match hygiene {
                Some(hygiene) if cache.enabled => reasons(version, cache, units, facts, *hygiene),
                _ => Vec::new(),
            };
            let report = OpcacheReport {
                fill_percent: cache.fill_percent(),
                hit_rate_percent: cache.hit_rate_permille() as f64 / 10.0,
                started: DateTime::from_timestamp(cache.start_time, 0),
                figures: cache.clone(),
                due,
            };
            (version.clone(), report)
        })
        .collect()
}

fn reasons(
    version: &PhpVersion,
    cache: &Opcache,
    units: &HostUnits,
    facts: &HostFacts,
    hygiene: OpcacheHygiene,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let fill = cache.fill_percent();
    if fill > u64::from(hygiene.max_fill) {
        reasons.push(format!(
            "OPcache is {fill}% full (more than {}%)",
            hygiene.max_fill
        ));
    }
    if hygiene.after_release {
        for file in &units.files {
            let Some(ConfigFile::FpmPool { version: v, app }) = ConfigFile::parse(&file.path)
            else {
                continue;
            };
            if &v != version {
                continue;
            }
            let Some(current) = facts.paths.get(&AppPaths::new(&app).current) else {
                continue;
            };
            if matches!(current.target.as_deref(), Some("a" | "b")) {
                continue;
            }
            let switched = current.mtime;
            if switched.is_some_and(|at| at > cache.start_time) {
                reasons.push(format!(
                    "`{app}`'s live release changed after the cache started"
                ));
            }
        }
    }
    reasons
}

/// `php8.2: 92% full (110.2 of 128.0 MiB, 8.0 MiB wasted), 1500 scripts,
/// hit rate 99.1%, 2 OOM restarts, since 2026-11-22 03:00 UTC`
pub fn summary(version: &PhpVersion, report: &OpcacheReport) -> String {
    let cache = &report.figures;
    if !cache.enabled {
        return format!("php{version}: OPcache is off");
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let total = cache.memory_used + cache.memory_free + cache.memory_wasted;
    let mut line = format!(
        "php{version}: {}% full ({:.1} of {:.1} MiB",
        report.fill_percent,
        mib(cache.memory_used + cache.memory_wasted),
        mib(total)
    );
    if cache.memory_wasted > 0 {
        line.push_str(&format!(", {:.1} MiB wasted", mib(cache.memory_wasted)));
    }
    line.push_str(&format!(
        "), {}, hit rate {:.1}%",
        crate::definitions::plural(cache.cached_scripts as usize, "script"),
        report.hit_rate_percent
    ));
    let restarts = cache.oom_restarts + cache.hash_restarts;
    if restarts > 0 {
        line.push_str(&format!(", {restarts} restarts when full"));
    }
    if let Some(started) = report.started {
        line.push_str(&format!(", since {}", started.format("%Y-%m-%d %H:%M UTC")));
    }
    line
}
