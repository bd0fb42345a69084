//! An app's logs from every server at once (`reconciler logs`): Laravel's
//! and PHP's logs in `shared/storage/logs`, and what root's daemons write
//! for the app in `/var/log/reconciler/<app>` (nginx errors, the FPM slow
//! log, workers). Lines are merged in time order where they carry a
//! timestamp; a line without one (a stack trace) stays after the line it
//! follows.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use futures::future::join_all;

use crate::app::{AppTarget, Lockless, lockless};
use crate::definitions::ServerName;
use crate::transport::Connector;

const LOGS_SH: &str = include_str!("logs.sh");

/// One line of one log on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// The server it was read from, by its name in the definitions.
    pub server: ServerName,
    /// The log's file name, such as `laravel.log` or `nginx-error.log`.
    pub source: String,
    /// Its own timestamp, or the last one before it in the same log.
    pub time: Option<NaiveDateTime>,
    /// The line as the log has it, without its newline (invalid UTF-8
    /// replaced).
    pub text: String,
}

/// The timestamp a log line starts with, in the formats of Laravel
/// (`[2026-11-22 20:00:00]`), nginx (`2026/11/22 20:00:00`), PHP-FPM and
/// PHP (`[22-Nov-2026 20:00:00]`, optionally followed by a zone), or
/// RFC 3339 (`2026-11-22T20:00:00Z`).
pub fn timestamp(line: &str) -> Option<NaiveDateTime> {
    let inner = line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .map(|(inside, _)| inside);
    let candidates: [(&str, &str, usize); 4] = [
        (inner.unwrap_or(""), "%Y-%m-%d %H:%M:%S", 19),
        (inner.unwrap_or(""), "%d-%b-%Y %H:%M:%S", 20),
        (line, "%Y/%m/%d %H:%M:%S", 19),
        (line, "%Y-%m-%dT%H:%M:%S", 19),
    ];
    candidates.into_iter().find_map(|(text, format, len)| {
        let head = text.get(..len.min(text.len()))?;
        NaiveDateTime::parse_from_str(head, format).ok()
    })
}

/// Merges the lines of several logs: by time, stable, so each log's own
/// order holds.
pub fn merge(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    lines.sort_by_key(|l| l.time);
    lines
}

/// Where each log of each server was read up to.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    offsets: BTreeMap<ServerName, BTreeMap<String, u64>>,
    /// The last timestamp of each log, for the lines that have none.
    last: BTreeMap<(ServerName, String), NaiveDateTime>,
}

/// The most of one log one read takes from a server, in bytes: a line
/// count is a byte bound too.
pub const LOG_LIMIT: u64 = 1024 * 1024;

/// What one read of every server's logs found.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// The lines, merged by time.
    pub lines: Vec<LogLine>,
    /// Servers that could not be read, with why.
    pub failed: Vec<(ServerName, String)>,
    /// Logs of which `LOG_LIMIT` cut the read short: `(server, log)`.
    pub cut: Vec<(ServerName, String)>,
}

/// Reads what is new in the app's logs on every server of `target` (at
/// first, the last `lines` lines of each).
pub async fn read(
    target: &AppTarget,
    connector: &dyn Connector,
    cursor: &mut Cursor,
    lines: usize,
) -> Read {
    let lines = lines.to_string();
    let vars = [("LOG_LIMIT", LOG_LIMIT.to_string())];
    let answers = join_all(target.servers.iter().map(|(server, role)| {
        let mut call = vec!["logs_read".to_owned(), lines.clone()];
        if let Some(offsets) = cursor.offsets.get(&server.name) {
            call.extend(offsets.iter().map(|(path, at)| format!("{path}={at}")));
        }
        let vars = &vars;
        async move {
            let call: Vec<&str> = call.iter().map(String::as_str).collect();
            let work = Lockless {
                body: LOGS_SH,
                vars,
                call: &call,
                limit: Duration::from_secs(30),
            };
            let answer = lockless(target, (server, role), &work, connector).await;
            (server.name.clone(), answer)
        }
    }))
    .await;
    let mut read = Read::default();
    for (server, answer) in answers {
        let records = match answer {
            Ok(records) => records,
            Err(e) => {
                read.failed.push((server, e));
                continue;
            }
        };
        let offsets = cursor.offsets.entry(server.clone()).or_default();
        for record in records.iter().filter(|r| r.kind == "chunk") {
            let path = record.text(0).into_owned();
            let source = path.rsplit('/').next().unwrap_or(&path).to_owned();
            offsets.insert(path.clone(), record.text(2).parse().unwrap_or(0));
            if record.text(3) == "1" {
                read.cut.push((server.clone(), source.clone()));
            }
            let bytes = record.base64(1).unwrap_or_default();
            let key = (server.clone(), source.clone());
            for text in String::from_utf8_lossy(&bytes).lines() {
                let time = timestamp(text).or_else(|| cursor.last.get(&key).copied());
                if let Some(time) = time {
                    cursor.last.insert(key.clone(), time);
                }
                read.lines.push(LogLine {
                    server: server.clone(),
                    source: source.clone(),
                    time,
                    text: text.to_owned(),
                });
            }
        }
    }
    read.lines = merge(read.lines);
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Option<String> {
        timestamp(text).map(|t| t.format("%F %T").to_string())
    }

    #[test]
    fn the_timestamps_of_laravel_nginx_php_and_rfc3339() {
        let want = Some("2026-11-22 20:01:02".to_owned());
        assert_eq!(at("[2026-11-22 20:01:02] production.ERROR: boom"), want);
        assert_eq!(at("2026/11/22 20:01:02 [error] 282#282: *1 open()"), want);
        assert_eq!(
            at("[22-Nov-2026 20:01:02] WARNING: [pool shop] child 7"),
            want
        );
        assert_eq!(at("[22-Nov-2026 20:01:02 UTC] PHP Fatal error: x"), want);
        assert_eq!(at("2026-11-22T20:01:02.5Z worker started"), want);
        assert_eq!(at("#0 /home/shop/current/app.php(12): f()"), None);
        assert_eq!(at("[stack] 2026"), None);
    }

    #[test]
    fn merged_by_time_with_each_log_in_its_own_order() {
        let line = |server: &str, time: &str, text: &str| LogLine {
            server: ServerName::new(server),
            source: "laravel.log".into(),
            time: timestamp(time),
            text: text.into(),
        };
        let merged = merge(vec![
            line("web-1", "[2026-11-22 20:00:03]", "a3"),
            line("web-1", "[2026-11-22 20:00:03]", "a3 trace"),
            line("web-2", "[2026-11-22 20:00:01]", "b1"),
            line("web-2", "[2026-11-22 20:00:05]", "b5"),
        ]);
        let texts: Vec<&str> = merged.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["b1", "a3", "a3 trace", "b5"]);
    }
}
