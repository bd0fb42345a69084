//! Each app's traffic on each web server, from the compact access log its
//! vhost writes in root's per-app log directory
//! (`/var/log/reconciler/<app>/access.log`: each request's time, status
//! and durations, nothing a client or the app chooses): requests, 5xx,
//! 4xx, a histogram of request times and their sum. One round trip per server reads
//! every app there, each from where the last read ended, so a read costs
//! what is new, not what the log holds (`reconciler top`).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::join_all;

use crate::app::AppTarget;
use crate::definitions::{AppName, Definitions, Server, ServerName};
use crate::remote::Script;
use crate::transport::{Connector, Input};

const TRAFFIC_SH: &str = include_str!("traffic.sh");

/// Upper bounds, in seconds, of the request-time histogram's buckets (the
/// last, twelfth, bucket is everything slower).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Requests of one app on one server over some time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Figures {
    /// Requests in the app's access log (nginx's, in root's per-app log
    /// directory), whatever their status.
    pub requests: u64,
    /// Answered 5xx.
    pub errors: u64,
    /// Answered 4xx.
    pub client_errors: u64,
    /// Request times (nginx's `$request_time`) per bucket of `BUCKETS`,
    /// the twelfth slower than 10 s.
    pub buckets: [u64; 12],
    /// The sum of the request times, in milliseconds (nginx writes each to
    /// the millisecond, so the sum is exact).
    pub time_ms: u64,
}

impl Figures {
    /// Reads `END REQUESTS 5XX 4XX BUCKET×12 TIME_MS` (from
    /// `traffic_count`): the byte to read from next, and the figures.
    pub fn parse(fields: &[String]) -> Option<(u64, Figures)> {
        let numbers: Vec<u64> = fields
            .iter()
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [end, requests, errors, client_errors, buckets @ .., time_ms] = numbers.as_slice()
        else {
            return None;
        };
        Some((
            *end,
            Figures {
                requests: *requests,
                errors: *errors,
                client_errors: *client_errors,
                buckets: buckets.try_into().ok()?,
                time_ms: *time_ms,
            },
        ))
    }

    /// Adds `other`'s requests, answers and request times to these.
    pub fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.client_errors += other.client_errors;
        for (sum, count) in self.buckets.iter_mut().zip(other.buckets) {
            *sum += count;
        }
        self.time_ms += other.time_ms;
    }

    /// The share of 5xx, 0 to 1 (0 without requests).
    pub fn error_ratio(&self) -> f64 {
        ratio(self.errors, self.requests)
    }

    /// The share of 4xx, 0 to 1.
    pub fn client_error_ratio(&self) -> f64 {
        ratio(self.client_errors, self.requests)
    }

    /// The request time under which a share `q` (0 to 1) of requests
    /// ended, as the upper bound of its bucket, in seconds (`None` without
    /// requests; infinity past 10 s).
    pub fn percentile(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let wanted = (q * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return Some(BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Where each app's log on each server was read up to.
#[derive(Debug, Clone, Default)]
pub struct Cursor {
    offsets: BTreeMap<(ServerName, AppName), u64>,
}

/// What one read found: per server and app, the figures since the last
/// read (the first read: of the last `window`); servers that could not be
/// read, with why.
#[derive(Debug, Clone, Default)]
pub struct Read {
    /// One entry per app on each server that was read.
    pub figures: Vec<AppFigures>,
    /// Servers that could not be read, with why in one line (no
    /// connection, a script that failed or stopped early, a garbled
    /// answer); their cursors stay where they were.
    pub failed: Vec<(ServerName, String)>,
}

/// One app's figures on one server in a `Read`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFigures {
    /// The web server, by its name in the definitions.
    pub server: ServerName,
    /// The app whose access log was read.
    pub app: AppName,
    /// Its requests since the read before (or over `window`, if `first`).
    pub figures: Figures,
    /// The first read of this log: its figures are of the last `window`,
    /// not of the time since a read before.
    pub first: bool,
}

/// The web servers of `definitions` with the apps they serve (of `only`,
/// when it names some), in the definitions' order.
pub fn web_servers(definitions: &Definitions, only: &[String]) -> Vec<(Server, Vec<AppName>)> {
    let targets: Vec<AppTarget> = definitions
        .apps
        .iter()
        .filter(|app| only.is_empty() || only.iter().any(|o| o == app.name.as_str()))
        .filter_map(|app| AppTarget::find(definitions, app.name.as_str()).ok())
        .collect();
    by_server(&targets)
}

/// The web servers of `targets`, each with the apps it serves.
pub fn by_server<'a>(
    targets: impl IntoIterator<Item = &'a AppTarget>,
) -> Vec<(Server, Vec<AppName>)> {
    let mut servers: Vec<(Server, Vec<AppName>)> = Vec::new();
    for target in targets {
        for (server, _) in target.servers.iter().filter(|(_, role)| role.web.is_some()) {
            match servers.iter_mut().find(|(s, _)| s.name == server.name) {
                Some((_, apps)) => apps.push(target.app.name.clone()),
                None => servers.push((server.clone(), vec![target.app.name.clone()])),
            }
        }
    }
    servers
}

/// Reads every app's traffic on every server of `servers`, in parallel,
/// one round trip each: what is new since `cursor`, or, for an app read
/// for the first time, its last `window`.
pub async fn read(
    servers: &[(Server, Vec<AppName>)],
    connector: &dyn Connector,
    cursor: &mut Cursor,
    window: Duration,
) -> Read {
    let window = window.as_secs().to_string();
    let answers = join_all(servers.iter().map(|(server, apps)| {
        let mut call = vec!["traffic_read".to_owned(), window.clone()];
        for app in apps {
            let from = cursor
                .offsets
                .get(&(server.name.clone(), app.clone()))
                .map_or("tail".to_owned(), ToString::to_string);
            call.push(format!("{app}={from}"));
        }
        async move {
            let call: Vec<&str> = call.iter().map(String::as_str).collect();
            let script = Script::new().build(TRAFFIC_SH, &call);
            let answer = match connector.connect(server).await {
                Err(e) => Err(e.cause().to_string()),
                Ok(transport) => match transport
                    .run_with(&script, Input::None, Duration::from_secs(30))
                    .await
                {
                    Err(e) => Err(e.cause().to_string()),
                    Ok(output) => crate::remote::protocol::parse(&output.stdout)
                        .map_err(|e| format!("the server's answer is garbled: {e}")),
                },
            };
            (server.name.clone(), answer)
        }
    }))
    .await;
    let mut read = Read::default();
    for (server, answer) in answers {
        let records = match answer {
            Ok(records) if crate::remote::first(&records, "done").is_some() => records,
            Ok(_) => {
                read.failed
                    .push((server, "the read ended before it finished".into()));
                continue;
            }
            Err(e) => {
                read.failed.push((server, e));
                continue;
            }
        };
        for record in records.iter().filter(|r| r.kind == "traffic") {
            let app = record.text(0);
            let Some((app, (end, figures))) = servers
                .iter()
                .flat_map(|(_, apps)| apps)
                .find(|a| a.as_str() == app)
                .zip(Figures::parse(&record.texts_from(1)))
            else {
                continue;
            };
            let first = cursor
                .offsets
                .insert((server.clone(), app.clone()), end)
                .is_none();
            read.figures.push(AppFigures {
                server: server.clone(),
                app: app.clone(),
                figures,
                first,
            });
        }
    }
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_read_line_gives_its_end_and_figures() {
        let (end, f) = Figures::parse(&fields("4096 40 10 5 20 10 0 0 5 0 0 0 0 0 0 5 60250"))
            .expect("parsed");
        assert_eq!(end, 4096);
        assert_eq!((f.requests, f.errors, f.client_errors), (40, 10, 5));
        assert_eq!(f.time_ms, 60_250);
        assert_eq!(f.error_ratio(), 0.25);
        assert_eq!(f.percentile(0.5), Some(0.005));
        assert_eq!(f.percentile(0.8), Some(0.1));
        assert_eq!(f.percentile(0.99), Some(f64::INFINITY));
        let mut sum = Figures::default();
        sum.add(&f);
        sum.add(&f);
        assert_eq!(
            (sum.requests, sum.errors, sum.buckets[0], sum.time_ms),
            (80, 20, 40, 120_500)
        );
    }

    /// `traffic_count` of `log` from byte `from`, run by the local bash:
    /// the byte to read from next, and the figures.
    fn count(log: &std::path::Path, from: &str) -> (u64, Figures) {
        let body = "count() { record counted $(traffic_count \"$1\" \"$2\" 0); }";
        let path = log.to_str().expect("a UTF-8 path");
        let script = Script::new().build(body, &["count", path, from]);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .output()
            .expect("bash");
        let records = crate::remote::protocol::parse(&out.stdout).expect("records");
        let record = crate::remote::first(&records, "counted").expect("a count");
        Figures::parse(&record.texts_from(0)).expect("figures")
    }

    #[test]
    fn the_count_of_a_log_sums_its_request_times_to_the_millisecond() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("access.log");
        std::fs::write(
            &log,
            "1795300000.001 200 0.004 0.004\n\
             1795300000.002 500 0.120 0.119\n\
             1795300000.003 404 0.001 -\n\
             a line nginx never wrote\n\
             1795300000.004 200 12.500 12.499\n",
        )
        .expect("write");
        let (end, f) = count(&log, "0");
        assert_eq!(end, std::fs::metadata(&log).expect("size").len());
        assert_eq!((f.requests, f.errors, f.client_errors), (4, 1, 1));
        assert_eq!(f.buckets, [2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(f.time_ms, 4 + 120 + 1 + 12_500);

        let mut more = std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open");
        std::io::Write::write_all(&mut more, b"1795300001.000 200 0.031 0.03\n").expect("append");
        let (_, next) = count(&log, &end.to_string());
        assert_eq!((next.requests, next.buckets[3], next.time_ms), (1, 1, 31));
    }

    #[test]
    fn garbage_or_a_short_line_is_no_figures() {
        assert_eq!(Figures::parse(&fields("1 2 3")), None);
        assert_eq!(
            Figures::parse(&fields("1 2 3 4 5 6 7 8 9 10 11 12 13 14 -1 16")),
            None
        );
        assert_eq!(Figures::default().percentile(0.5), None);
    }
}
