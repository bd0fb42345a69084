//! OPcache pre-warming: before a switch, each web server compiles the
//! release's PHP files into the OPcache of the php-fpm that will serve
//! them, through the app's own pool (`opcache_prewarm`), so that the first
//! requests after the switch do not all compile the same scripts at once.
//!
//! Warming never stops a release: a server where it could not run (no
//! pool, no answer) is reported, and the switch goes on.

use std::time::Duration;

use futures::future::join_all;
use serde::{Deserialize, Serialize};

use super::run::Run;
use crate::app::Step;
use crate::definitions::ServerName;
use crate::layout;
use crate::transport::Input;

/// Seconds the warm script may work on one server (less where the pool's
/// `request.duration` is shorter: the script stops 2 s before it).
pub const WARM_SECONDS: u64 = 30;

/// What warming did on one server, as the warm script reports it
/// (`src/units/opcache-warm.php`, one JSON line), and as the server's
/// release log keeps it (`LogEntry::warmed`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warmed {
    /// Files compiled into OPcache by this run.
    pub compiled: u64,
    /// Files OPcache held already (an earlier release with the same path,
    /// or a second warm of this one).
    pub cached: u64,
    /// Files OPcache compiled but did not keep: written within
    /// `opcache.file_update_protection` seconds, or blacklisted.
    pub skipped: u64,
    /// Files that did not compile (a syntax error, unreadable).
    pub failed: u64,
    /// Files left when warming stopped early (see `stopped`).
    pub left: u64,
    /// Why warming stopped before the last file: `memory` (OPcache kept
    /// a twentieth of its memory, at least 4 MiB, free), `keys` (its key
    /// table was nearly full) or `time`.
    pub stopped: Option<String>,
    /// Milliseconds the script took.
    pub ms: u64,
    /// `opcache.file_update_protection`: OPcache keeps no file modified
    /// within this many seconds of a request's start.
    #[serde(default)]
    pub protection: u64,
    /// OPcache before the first file was compiled.
    pub before: Fill,
    /// OPcache after the last.
    pub after: Fill,
}

/// How full one php-fpm's OPcache is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// Bytes of shared memory in use (`opcache_get_status()`'s
    /// `used_memory`).
    pub used: u64,
    /// Bytes of shared memory free (`free_memory`).
    pub free: u64,
    /// Bytes wasted (`wasted_memory`): scripts replaced or invalidated,
    /// reclaimed only by a restart.
    pub wasted: u64,
    /// Keys in the hash table (`num_cached_keys`).
    pub keys: u64,
    /// The hash table's size (`max_cached_keys`: `max_accelerated_files`
    /// rounded up by PHP).
    pub max_keys: u64,
    /// Restarts for lack of memory since php-fpm started.
    pub oom_restarts: u64,
}

impl Fill {
    /// The share of memory in use or wasted, in percent.
    pub fn percent(&self) -> f64 {
        let total = self.used + self.free + self.wasted;
        if total == 0 {
            return 0.0;
        }
        (self.used + self.wasted) as f64 * 100.0 / total as f64
    }
}

impl Warmed {
    /// Reads the warm script's line; `Err` with its error, or with why
    /// the line is not what the script prints.
    pub fn parse(line: &str) -> Result<Warmed, String> {
        #[derive(Deserialize)]
        struct Refused {
            error: String,
        }
        if let Ok(refused) = serde_json::from_str::<Refused>(line) {
            return Err(crate::text::visible(&refused.error).into_owned());
        }
        serde_json::from_str(line).map_err(|e| format!("the warm script's answer is garbled: {e}"))
    }

    /// The passes of one warm (a second one warms what OPcache did not
    /// keep in the first, see `release_warm`) as one: what each compiled,
    /// what the last left, skipped or failed; OPcache before the first and
    /// after the last. `Err` when there was no pass.
    pub fn merge(passes: Vec<Warmed>) -> Result<Warmed, String> {
        let mut passes = passes.into_iter();
        let first = passes.next().ok_or("the server reported no warm")?;
        Ok(passes.fold(first, |sum, pass| Warmed {
            compiled: sum.compiled + pass.compiled,
            ms: sum.ms + pass.ms,
            before: sum.before,
            cached: sum.cached,
            ..pass
        }))
    }

    /// One line for people: `1874 compiled, 3 skipped in 1.92 s; OPcache
    /// 31% -> 58% full`, with what failed, was left, and why.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} compiled", self.compiled)];
        for (count, what) in [
            (self.cached, "cached already"),
            (self.skipped, "skipped by OPcache"),
            (self.failed, "failed"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {what}"));
            }
        }
        let mut text = format!(
            "{} in {:.2} s; OPcache {:.0}% -> {:.0}% full",
            parts.join(", "),
            self.ms as f64 / 1000.0,
            self.before.percent(),
            self.after.percent()
        );
        if let Some(why) = &self.stopped {
            let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
            let after = &self.after;
            let why = match why.as_str() {
                "memory" => format!(
                    "OPcache's memory is nearly full ({:.1} of {:.1} MiB free, {:.1} MiB wasted); \
                     the rest may not be cached until php-fpm reloads (`opcache_hygiene`)",
                    mib(after.free),
                    mib(after.used + after.free + after.wasted),
                    mib(after.wasted)
                ),
                "keys" => format!(
                    "OPcache's key table is nearly full ({} of {} keys)",
                    after.keys, after.max_keys
                ),
                "time" => "its time was up".to_owned(),
                other => crate::text::visible(other).into_owned(),
            };
            text.push_str(&format!("; stopped with {} left: {why}", self.left));
        }
        if self.after.oom_restarts > self.before.oom_restarts {
            text.push_str("; OPcache restarted for lack of memory meanwhile");
        }
        text
    }
}

impl Run<'_> {
    /// Warms OPcache with the release in `SHA` (the session's) on every
    /// web server of the app, in parallel, unless `opcache_prewarm` is
    /// off: per server, what it did or why it could not.
    pub(super) async fn warm_all(&self) -> Vec<(ServerName, Result<Warmed, String>)> {
        let app = self.session.app;
        let Some(globs) = app.opcache_prewarm.globs() else {
            return Vec::new();
        };
        let globs = globs.join("\n");
        let socket = layout::fpm_socket(&app.name, &app.php);
        let cli = format!("/usr/bin/php{}", app.php);
        let seconds = WARM_SECONDS.to_string();
        let steps = self
            .locked
            .iter()
            .filter(|l| l.host.role.web.is_some())
            .map(|l| {
                let call = [
                    "release_warm",
                    cli.as_str(),
                    socket.as_str(),
                    seconds.as_str(),
                    globs.as_str(),
                ];
                async move {
                    let limit = Duration::from_secs(WARM_SECONDS + 30);
                    let result = self
                        .step(l, Step::Warm, &call, Input::None, limit)
                        .await
                        .map_err(|failure| failure.output)
                        .and_then(|records| {
                            let passes = records
                                .iter()
                                .filter(|r| r.kind == "warmed")
                                .map(|r| Warmed::parse(&r.text(0)))
                                .collect::<Result<Vec<_>, _>>()?;
                            Warmed::merge(passes)
                        });
                    (l.host.server.name.clone(), result)
                }
            });
        join_all(steps).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_line_reads_back_and_sums_up() {
        let line = r#"{"compiled":1874,"cached":0,"skipped":3,"failed":1,"left":0,"stopped":null,"ms":1920,"before":{"used":30,"free":70,"wasted":0,"keys":10,"max_keys":16229,"oom_restarts":0},"after":{"used":58,"free":42,"wasted":0,"keys":1900,"max_keys":16229,"oom_restarts":0}}"#;
        let warmed = Warmed::parse(line).expect("parsed");
        assert_eq!(warmed.compiled, 1874);
        assert_eq!(
            warmed.summary(),
            "1874 compiled, 3 skipped by OPcache, 1 failed in 1.92 s; OPcache 30% -> 58% full"
        );
    }

    #[test]
    fn a_second_pass_adds_what_it_compiled_and_ends_the_story() {
        let first = Warmed {
            compiled: 64,
            skipped: 9,
            failed: 1,
            ms: 100,
            before: Fill {
                used: 1,
                ..Fill::default()
            },
            ..Warmed::default()
        };
        let second = Warmed {
            compiled: 9,
            cached: 64,
            failed: 1,
            ms: 50,
            after: Fill {
                used: 3,
                ..Fill::default()
            },
            ..Warmed::default()
        };
        let merged = Warmed::merge(vec![first, second]).expect("merged");
        assert_eq!(
            (
                merged.compiled,
                merged.cached,
                merged.skipped,
                merged.failed,
                merged.ms
            ),
            (73, 0, 0, 1, 150)
        );
        assert_eq!((merged.before.used, merged.after.used), (1, 3));
        assert!(Warmed::merge(Vec::new()).is_err());
    }

    #[test]
    fn a_stop_and_a_restart_are_said() {
        let warmed = Warmed {
            compiled: 10,
            left: 500,
            stopped: Some("memory".into()),
            after: Fill {
                used: 120 << 20,
                free: 4 << 20,
                wasted: 4 << 20,
                oom_restarts: 1,
                ..Fill::default()
            },
            ..Warmed::default()
        };
        assert!(
            warmed
                .summary()
                .ends_with("stopped with 500 left: OPcache's memory is nearly full (4.0 of 128.0 MiB free, 4.0 MiB wasted); the rest may not be cached until php-fpm reloads (`opcache_hygiene`); OPcache restarted for lack of memory meanwhile"),
            "{}",
            warmed.summary()
        );
    }

    #[test]
    fn a_refusal_or_garbage_is_an_error_never_a_count() {
        assert_eq!(
            Warmed::parse(r#"{"error":"OPcache is not enabled in php-fpm"}"#),
            Err("OPcache is not enabled in php-fpm".to_owned())
        );
        assert!(Warmed::parse("").is_err());
        assert!(Warmed::parse(r#"{"compiled":-1}"#).is_err());
    }
}
