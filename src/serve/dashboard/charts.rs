//! The dashboard's small pictures, as numbers an SVG or a bar takes:
//! OPcache fill (a bar of 120 pixels) and its trend, and each app's
//! requests and 5xx per traffic read.

use serde::Serialize;

use crate::board::OpcacheRead;

/// An OPcache's reads (at most [`OPCACHE_READS`](crate::board::OPCACHE_READS))
/// as two lines (used, wasted) of a chart 120 × 20 across its width, with
/// a label from its first to its last read; `None` under two reads.
pub(super) fn trend(version: &str, reads: &[OpcacheRead]) -> Option<TrendView> {
    let (first, last) = (reads.first()?, reads.last()?);
    if reads.len() < 2 {
        return None;
    }
    // Over the whole width: the label says how many reads.
    let step = 120.0 / (reads.len() - 1) as f64;
    let line = |pick: fn(&OpcacheRead) -> u8| -> String {
        reads
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let y = 20.0 - 19.0 * f64::from(pick(r)) / 100.0;
                format!("{:.1},{y:.1}", step * i as f64)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(TrendView {
        label: format!(
            "PHP {version} OPcache used {}% to {}% over {} reads",
            first.0,
            last.0,
            reads.len()
        ),
        used: line(|r| r.0),
        wasted: line(|r| r.1),
    })
}

#[derive(Debug, Serialize)]
pub(super) struct TrendView {
    label: String,
    /// `x,y` pairs for `<polyline points>`.
    used: String,
    wasted: String,
}

/// One app's requests and 5xx per traffic read as two lines of an SVG
/// chart 240 × 40 (the newest read at the right edge).
#[derive(Debug, Serialize)]
pub(super) struct ChartView {
    app: String,
    /// `x,y` pairs for `<polyline points>`.
    requests: String,
    errors: String,
    /// The newest read's figures.
    last_requests: u64,
    last_errors: u64,
    /// The largest request count, the chart's top.
    peak: u64,
}

pub(super) fn chart(app: &str, points: &[(u64, u64)]) -> ChartView {
    let peak = points.iter().map(|(r, _)| *r).max().unwrap_or(0).max(1);
    let step = 240.0 / (crate::board::HISTORY.max(2) - 1) as f64;
    let start = 240.0 - step * (points.len().max(1) - 1) as f64;
    let line = |pick: fn(&(u64, u64)) -> u64| -> String {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let y = 40.0 - 38.0 * pick(p) as f64 / peak as f64;
                format!("{:.1},{y:.1}", start + step * i as f64)
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (last_requests, last_errors) = points.last().copied().unwrap_or_default();
    ChartView {
        app: app.to_owned(),
        requests: line(|p| p.0),
        errors: line(|p| p.1),
        last_requests,
        last_errors,
        peak,
    }
}

/// One php-fpm's OPcache as a bar of 120 pixels: used, wasted, free.
#[derive(Debug, Serialize)]
pub(super) struct OpcacheView {
    version: String,
    used_pct: u64,
    wasted_pct: u64,
    used_mb: u64,
    wasted_mb: u64,
    free_mb: u64,
    used_px: u64,
    wasted_px: u64,
    free_x: u64,
    free_px: u64,
}

pub(super) fn opcache(version: &str, figures: &serde_json::Value) -> Option<OpcacheView> {
    let number = |key: &str| figures[key].as_u64();
    let (used, wasted, free) = (
        number("memory_used")?,
        number("memory_wasted")?,
        number("memory_free")?,
    );
    let total = (used + wasted + free).max(1);
    let px = |part: u64| part * 120 / total;
    Some(OpcacheView {
        version: version.to_owned(),
        used_pct: used * 100 / total,
        wasted_pct: wasted * 100 / total,
        used_mb: used >> 20,
        wasted_mb: wasted >> 20,
        free_mb: free >> 20,
        used_px: px(used),
        wasted_px: px(wasted),
        free_x: px(used) + px(wasted),
        free_px: 120 - px(used) - px(wasted),
    })
}
