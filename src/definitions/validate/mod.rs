//! Rules that serde cannot check: name syntax, cross-references between
//! files, and consistency within a file. Every rule reports at the position
//! of the value that breaks it, and every problem is reported, not just the
//! first.

mod app;
mod cluster;
mod role;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::diagnostic::closest;
use super::model::{App, Cluster, NotifyTarget};
use super::names::{self, NAME_PATTERN};
use super::values::{Parsed, Syntax};
use super::{Diagnostic, Document, NotifyNames};

use app::{check_app, check_app_in_cluster};
use cluster::check_cluster;
pub(crate) use cluster::is_address;

const NAME_HINT: &str = "names become Unix users, file names and supervisor groups: \
                         use lowercase letters, digits and `-`, starting with a letter";

/// Upper bounds on counts and sizes: beyond them a value is a mistake (or
/// an attack: `processes: 4294967295` made supervisord exhaust memory).
pub const MAX_PROCESSES: u32 = 64;
pub const MAX_WORKERS_PER_SERVER: usize = 32;
pub const MAX_POOL_WORKERS: u32 = 1024;
pub const MAX_STOP_WAIT: u32 = 86_400;
pub const MAX_KEEP_RELEASES: u32 = 100;
/// Request limits: seconds, MB, MB.
const REQUEST_LIMITS: [(&str, u32); 3] = [
    ("duration", 86_400),
    ("payload", 10_240),
    ("memory", 65_536),
];

/// Checks everything serde cannot. `unreadable_cluster` says that some
/// cluster file did not load, so an app naming an unknown cluster is not
/// reported again (its cluster is most likely the broken file). With
/// `notify`, every `notify:` target must be one of its names.
pub(super) fn check(
    clusters: &[Document<Cluster>],
    apps: &[Document<App>],
    unreadable_cluster: bool,
    notify: Option<&NotifyNames>,
) -> Vec<Diagnostic> {
    let mut report = Report::default();
    let mut cluster_names = FirstSeen::default();
    let mut server_names = FirstSeen::default();
    for doc in clusters {
        let mut at = report.at(doc);
        check_cluster(&mut at, &doc.value);
        at.notify_targets(&doc.value.notify, notify);
        at.unique(
            &mut cluster_names,
            "name",
            doc.value.name.as_str(),
            "cluster",
        );
        for (i, server) in doc.value.servers.iter().enumerate() {
            let path = format!("servers[{i}].name");
            at.unique(&mut server_names, &path, server.name.as_str(), "server");
        }
    }

    let by_name: HashMap<&str, &Document<Cluster>> = clusters
        .iter()
        .map(|d| (d.value.name.as_str(), d))
        .rev() // the first definition wins, as the duplicate error says
        .collect();
    let mut app_names = FirstSeen::default();
    let mut domains = FirstSeen::default();
    let mut programs = Programs::default();
    for doc in apps {
        let mut at = report.at(doc);
        let app = &doc.value;
        check_app(&mut at, app);
        if let Some(targets) = &app.notify {
            at.notify_targets(targets, notify);
        }
        at.unique(&mut app_names, "name", app.name.as_str(), "app");
        for (i, domain) in app.domains.iter().enumerate() {
            let path = format!("domains[{i}]");
            at.unique(&mut domains, &path, &domain.to_ascii_lowercase(), "domain");
        }
        at.programs(&mut programs, app);
        match by_name.get(app.cluster.as_str()) {
            Some(cluster) => check_app_in_cluster(&mut at, app, cluster),
            None if unreadable_cluster => {}
            None => {
                let known: Vec<&str> = by_name.keys().copied().collect();
                let hint = match closest(app.cluster.as_str(), known.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("defined clusters: {}", list(known)),
                };
                at.error(
                    "cluster",
                    format!("cluster `{}` is not defined", app.cluster),
                )
                .hint = Some(hint);
            }
        }
    }
    report.problems
}

/// Collects diagnostics for all files.
#[derive(Default)]
struct Report {
    problems: Vec<Diagnostic>,
}

impl Report {
    fn at<'a, T>(&'a mut self, doc: &'a Document<T>) -> At<'a> {
        At {
            problems: &mut self.problems,
            file: &doc.file,
            map: &doc.map,
        }
    }
}

/// Reports problems in one file.
pub(super) struct At<'a> {
    problems: &'a mut Vec<Diagnostic>,
    file: &'a Path,
    map: &'a super::SourceMap,
}

impl At<'_> {
    pub(super) fn push(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.problems.push(diagnostic);
        self.problems.last_mut().expect("just pushed")
    }

    /// A problem with the value at `path`.
    pub(super) fn error(&mut self, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        let position = self.map.value(path);
        self.push(Diagnostic::new(self.file, position, message))
    }

    /// A problem with the key that holds `path`.
    pub(super) fn error_at_key(
        &mut self,
        path: &str,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let position = self.map.key(path);
        self.push(Diagnostic::new(self.file, position, message))
    }

    pub(super) fn name(&mut self, path: &str, name: &str) {
        if !names::is_valid(name) {
            self.error(
                path,
                format!("`{name}` is not a valid name: it must match {NAME_PATTERN}"),
            )
            .hint = Some(NAME_HINT.into());
        }
    }

    pub(super) fn parsed<T: Syntax>(&mut self, path: &str, value: &Parsed<T>, what: &str) {
        if let Some(reason) = value.error() {
            self.error(
                path,
                format!("`{}` is not a {what}: {reason}", value.text()),
            )
            .hint = T::HINT.map(str::to_owned);
        }
    }

    /// A command line: it goes into one line of a config file.
    pub(super) fn command(&mut self, path: &str, command: &str) {
        if command.chars().any(char::is_control) {
            self.error(
                path,
                "a command must be one line without control characters",
            )
            .hint = Some("chain steps with `&&` or list them as separate commands".into());
        }
    }

    /// Text that goes into php.ini as one quoted value (quotes, `$` and
    /// `;` are escaped by the renderer; a line break cannot be).
    pub(super) fn ini_text(&mut self, path: &str, text: &str) {
        if text.chars().any(char::is_control) {
            self.error(
                path,
                "php.ini values cannot hold control characters such as line breaks",
            );
        }
    }

    /// A number that must lie in `min..=max`.
    pub(super) fn range(&mut self, path: &str, field: &str, value: u32, min: u32, max: u32) {
        if value < min {
            self.error(path, format!("`{field}` must be at least {min}"));
        } else if value > max {
            self.error(path, format!("`{field}` is {value}; at most {max}"));
        }
    }

    /// Reports `value` if an earlier one of the same kind was seen.
    pub(super) fn unique(&mut self, seen: &mut FirstSeen, path: &str, value: &str, kind: &str) {
        let position = self.map.value(path);
        let here = format!(
            "{}:{}:{}",
            self.file.display(),
            position.line,
            position.column
        );
        if let Some(first) = seen.0.get(value) {
            let message = format!("{kind} `{value}` is defined twice; first at {first}");
            self.push(Diagnostic::new(self.file, position, message));
        } else {
            seen.0.insert(value.to_owned(), here);
        }
    }
}

impl At<'_> {
    /// A `notify:` list: each `to:` a name the notify URLs file can give
    /// (one `NAME URL` a line: no blanks, no leading `#`), once; and, with
    /// `known`, one it does give.
    fn notify_targets(&mut self, targets: &[NotifyTarget], known: Option<&NotifyNames>) {
        let mut seen: BTreeMap<&str, super::Position> = BTreeMap::new();
        for (i, target) in targets.iter().enumerate() {
            let path = format!("notify[{i}].to");
            let to = target.to.as_str();
            if to.is_empty()
                || to.starts_with('#')
                || to.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                self.error(
                    &path,
                    format!(
                        "`{}` cannot name a notify target: the notify URLs file gives one `NAME URL` a line",
                        to.escape_debug()
                    ),
                )
                .hint = Some("a name without blanks that does not start with `#`, such as `ops`".into());
                continue;
            }
            if let Some(first) = seen.get(to) {
                let message = format!(
                    "notify target `{to}` is listed twice; first at line {}, column {}",
                    first.line, first.column
                );
                self.error(&path, message).hint =
                    Some("one entry per target, with every event it wants in its `events`".into());
                continue;
            }
            seen.insert(to, self.map.value(&path));
            let Some(known) = known else {
                continue;
            };
            if !known.names.contains(to) {
                let names = known.names.iter().map(String::as_str);
                let hint = match closest(to, names.clone()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("it names {}; add a line `{to} URL` to it", list(names)),
                };
                self.error(
                    &path,
                    format!(
                        "notify target `{to}` is not in the notify URLs file `{}`",
                        known.file.display()
                    ),
                )
                .hint = Some(hint);
            }
        }
    }
}

/// Where each value of a kind was first seen, for duplicate errors.
#[derive(Default)]
pub(super) struct FirstSeen(BTreeMap<String, String>);

/// Each server's supervisor programs (`<app>-<worker>`), with the app that
/// has it and where.
#[derive(Default)]
struct Programs(BTreeMap<(String, String), (String, String)>);

impl At<'_> {
    /// Reports a worker whose supervisor program another app has on the
    /// same server (app `shop`'s worker `admin-mail` and app `shop-admin`'s
    /// worker `mail` are both `shop-admin-mail`): supervisor reads sections
    /// of one name as one program, so one app's worker would run the
    /// other's command, as the other's user.
    fn programs(&mut self, seen: &mut Programs, app: &App) {
        for (i, role) in app.servers.iter().enumerate() {
            for (j, worker) in role.workers.iter().enumerate() {
                let program = format!("{}-{}", app.name, worker.name);
                let key = (role.name.to_string(), program.clone());
                let path = format!("servers[{i}].workers[{j}].name");
                let position = self.map.value(&path);
                match seen.0.get(&key) {
                    Some((other, first)) if other != app.name.as_str() => {
                        let message = format!(
                            "worker `{}` is the supervisor program `{program}` on `{}`, \
                             which app `{other}` has too (first at {first})",
                            worker.name, role.name
                        );
                        self.push(Diagnostic::new(self.file, position, message))
                            .hint = Some("rename one of the two workers".into());
                    }
                    Some(_) => {}
                    None => {
                        let here = format!(
                            "{}:{}:{}",
                            self.file.display(),
                            position.line,
                            position.column
                        );
                        seen.0.insert(key, (app.name.to_string(), here));
                    }
                }
            }
        }
    }
}

pub(super) fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let mut items: Vec<&str> = items.into_iter().collect();
    items.sort_unstable();
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
