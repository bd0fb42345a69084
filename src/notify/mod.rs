//! Notifications: the daemon tells webhooks (`notify:` in a cluster, or
//! an app's own) what happened: a release live, failed or rolled back
//! (with the reason), an apply that failed, a commit rejected (with its
//! errors), drift found.
//!
//! A webhook's URL is a secret: the definitions name a target (`to:`),
//! and the daemon reads the URLs from a file of its own
//! (`--notify-urls FILE`, one `NAME URL` a line), never from the
//! definitions repository. Each notification is its own background task,
//! retried with backoff: sending never blocks a release or the loop, and
//! one given up on is logged and counted
//! (`reconciler_notifications_failed_total{target}`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::board::NotifyFailureCounter;
use crate::definitions::{Definitions, NotifyEvent, NotifyFormat, NotifyTarget};

/// Who hears of `app`'s releases: its own `notify:`, else its cluster's.
pub fn app_targets(definitions: &Definitions, app: &str) -> Vec<NotifyTarget> {
    let Some(app) = definitions.apps.iter().find(|a| a.name.as_str() == app) else {
        return Vec::new();
    };
    app.notify
        .clone()
        .unwrap_or_else(|| cluster_targets(definitions, |c| c.name == app.cluster))
}

/// Who hears of the clusters that `which` picks: their `notify:`
/// targets, each once.
pub fn cluster_targets(
    definitions: &Definitions,
    which: impl Fn(&crate::definitions::Cluster) -> bool,
) -> Vec<NotifyTarget> {
    let mut targets: Vec<NotifyTarget> = Vec::new();
    for target in definitions
        .clusters
        .iter()
        .filter(|c| which(c))
        .flat_map(|c| &c.notify)
    {
        if !targets.contains(target) {
            targets.push(target.clone());
        }
    }
    targets
}

/// The pauses between a notification's tries: four tries in all.
pub const RETRIES: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// How long one try may take.
const TRY_LIMIT: Duration = Duration::from_secs(10);

/// One thing that happened, as a `json` target receives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    /// `release-live`, `release-failed`, `rolled-back`, `apply-failed`,
    /// `commit-rejected` or `drift-found`.
    pub event: &'static str,
    /// The app whose release it concerns; absent for a host's apply or
    /// drift, and for a rejected commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// The server it concerns, by its name in the definitions: set for a
    /// failed apply and drift found, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The app's release, or the definitions' commit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// One line for people: what happened, and why.
    pub message: String,
    /// More lines (a rejected commit's errors).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// When it happened (RFC 3339 in JSON), set by [`Notice::new`]; a
    /// retried notice keeps it.
    pub at: DateTime<Utc>,
}

impl Notice {
    /// A notice of `event` saying `message`, now.
    pub fn new(event: NotifyEvent, message: impl Into<String>) -> Self {
        Self {
            event: event.as_str(),
            app: None,
            server: None,
            commit: None,
            message: message.into(),
            details: Vec::new(),
            at: Utc::now(),
        }
    }

    /// The body sent to a target of `format`.
    pub fn body(&self, format: NotifyFormat) -> serde_json::Value {
        match format {
            NotifyFormat::Json => serde_json::to_value(self).unwrap_or_default(),
            NotifyFormat::Slack => {
                let mut text = format!("reconciler: {}", slack_escaped(&self.message));
                for line in &self.details {
                    text.push_str("\n• ");
                    text.push_str(&slack_escaped(line));
                }
                serde_json::json!({ "text": text })
            }
        }
    }
}

/// `text` with Slack's control characters escaped: what a server or an
/// app wrote (an error's output) can neither mention a channel
/// (`<!channel>`) nor make a link.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Why the notify URLs file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UrlsError {
    /// The file could not be read as UTF-8 text.
    #[error("cannot read the notify URLs file `{}`", .path.display())]
    Read {
        /// The file, as given to `--notify-urls`.
        path: std::path::PathBuf,
        /// Why reading it failed.
        #[source]
        source: std::io::Error,
    },
    /// A line is not `NAME URL`, or its URL is not `http://` or
    /// `https://`; the first such line, the file read no further.
    #[error("{}:{line}: {message}", .path.display())]
    Line {
        /// The file, as given to `--notify-urls`.
        path: std::path::PathBuf,
        /// Its number, from 1.
        line: usize,
        /// What is wrong with it, lowercase, naming the target but never
        /// its URL.
        message: String,
    },
}

/// The targets' URLs, by name.
#[derive(Clone, Default)]
pub struct Urls(BTreeMap<String, String>);

impl std::fmt::Debug for Urls {
    /// The names only: the URLs are secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Urls {
    /// The target names it gives a URL.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Reads `NAME URL` lines (blank lines and `#` comments skipped); a
    /// URL is `http://` or `https://`.
    ///
    /// # Errors
    /// The file cannot be read, or a line is not `NAME URL`.
    pub fn read(path: &Path) -> Result<Self, UrlsError> {
        let text = std::fs::read_to_string(path).map_err(|source| UrlsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, message)| UrlsError::Line {
            path: path.to_owned(),
            line,
            message,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut urls = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, url] = fields[..] else {
                return Err((i + 1, "not `NAME URL`".into()));
            };
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err((i + 1, format!("the URL of `{name}` is not http(s)")));
            }
            urls.insert(name.to_owned(), url.to_owned());
        }
        Ok(Self(urls))
    }
}

/// Sends notices to targets, each in its own task.
#[derive(Clone)]
pub struct Notifier {
    urls: Arc<Urls>,
    client: reqwest::Client,
    failures: NotifyFailureCounter,
    tasks: tokio_util::task::TaskTracker,
    retries: Vec<Duration>,
}

impl Notifier {
    /// A notifier for `urls`, counting what it gives up in `failures`;
    /// its tasks in `tasks` (which the daemon drains on shutdown).
    pub fn new(
        urls: Urls,
        failures: NotifyFailureCounter,
        tasks: tokio_util::task::TaskTracker,
    ) -> Self {
        Self {
            urls: Arc::new(urls),
            client: reqwest::Client::builder()
                .timeout(TRY_LIMIT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            failures,
            tasks,
            retries: RETRIES.to_vec(),
        }
    }

    /// This notifier, pausing `retries` between tries.
    #[must_use]
    pub fn retrying(self, retries: Vec<Duration>) -> Self {
        Self { retries, ..self }
    }

    /// Sends `notice` to each of `targets` that wants `event`, in the
    /// background. A target the URLs file does not name is logged and
    /// counted as a failure.
    pub fn send(&self, targets: &[NotifyTarget], event: NotifyEvent, notice: &Notice) {
        for target in targets.iter().filter(|t| t.wants(event)) {
            let name = target.to.clone();
            let Some(url) = self.urls.0.get(&name).cloned() else {
                tracing::warn!(target = %name, event = notice.event, "no URL for this notify target in the notify URLs file");
                self.failures.inc(&name);
                continue;
            };
            let body = notice.body(target.format);
            let this = self.clone();
            let event = notice.event;
            self.tasks.spawn(async move {
                if let Err(error) = this.deliver(&url, &body).await {
                    tracing::warn!(target = %name, event, %error, "a notification was not delivered");
                    this.failures.inc(&name);
                } else {
                    tracing::debug!(target = %name, event, "notified");
                }
            });
        }
    }

    /// Posts `body` to `url` until it answers 2xx, with a pause from
    /// `retries` between tries: the last error when none did.
    async fn deliver(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let mut pauses = self.retries.iter();
        loop {
            let error = match self.client.post(url).json(body).send().await {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => format!("answered {}", answer.status()),
                // Without the URL: it is a secret.
                Err(error) => crate::error_chain(&error.without_url()),
            };
            let Some(pause) = pauses.next() else {
                return Err(error);
            };
            tokio::time::sleep(*pause).await;
        }
    }
}

#[cfg(test)]
mod tests;
