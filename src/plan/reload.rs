//! Services and when they reload: the reload policy.
//!
//! nginx and supervisor reload at once (cheap, graceful); php-fpm reloads
//! stall requests and empty the OPcache, so they wait for a reload window
//! (`window`), or for `--now` when the cluster has none (`manual`), unless
//! a window is open, the cluster says `fpm_reload: immediate`, or a pool is
//! new (its app cannot serve without it). A reload an earlier apply
//! recorded as pending stays in the plan until it happens.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Change;
use super::opcache::OpcacheReport;
use crate::definitions::{FpmReload, PhpVersion};
use crate::facts::{HostFacts, Journal};
use crate::layout::{ConfigFile, Sapi};
use crate::windows::WindowState;

/// A service that must validate and reload when its files change.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(tag = "service", rename_all = "kebab-case")]
pub enum Service {
    /// nginx, for vhosts: `nginx -t`, then a graceful reload.
    Nginx,
    /// One PHP version's php-fpm, for its php.ini, global config and
    /// pools: `php-fpm<version> -t`, then a reload.
    PhpFpm {
        /// The PHP version whose php-fpm it is, such as `8.2`.
        version: PhpVersion,
    },
    /// One app's supervisor programs (`group` is the app's name): reread,
    /// then `update` of those of its programs supervisord finds changed.
    Supervisor {
        /// The app's name, which is its supervisor group's prefix.
        group: String,
    },
    /// One app's workers, restarted whole (`supervisorctl restart
    /// <program>:*` for each): long-running PHP that must read a changed
    /// CLI php.ini again.
    Workers {
        /// The app whose workers restart.
        app: String,
    },
}

impl Service {
    /// The service that reads `file`; `None` for files read on each use
    /// (the CLI's php.ini, cron.d, logrotate.d).
    pub fn of(file: &ConfigFile) -> Option<Service> {
        match file {
            ConfigFile::PhpIni {
                sapi: Sapi::Cli, ..
            }
            | ConfigFile::Cron { .. }
            | ConfigFile::Logrotate { .. }
            | ConfigFile::OpcacheStatus
            | ConfigFile::OpcacheWarm
            | ConfigFile::PhpShim { .. } => None,
            ConfigFile::PhpIni { version, .. }
            | ConfigFile::FpmGlobal { version }
            | ConfigFile::FpmPool { version, .. } => Some(Service::PhpFpm {
                version: version.clone(),
            }),
            ConfigFile::Vhost { .. } => Some(Service::Nginx),
            ConfigFile::Supervisor { app } => Some(Service::Supervisor {
                group: app.to_string(),
            }),
        }
    }

    /// The service a label names; the inverse of `label`.
    pub fn from_label(label: &str) -> Option<Service> {
        if label == "nginx" {
            return Some(Service::Nginx);
        }
        if let Some(group) = label.strip_prefix("supervisor:") {
            return crate::definitions::names::is_valid(group).then(|| Service::Supervisor {
                group: group.to_owned(),
            });
        }
        if let Some(app) = label.strip_prefix("workers:") {
            return crate::definitions::names::is_valid(app).then(|| Service::Workers {
                app: app.to_owned(),
            });
        }
        let version = PhpVersion::new(label.strip_prefix("php")?.strip_suffix("-fpm")?);
        version.is_valid().then_some(Service::PhpFpm { version })
    }

    /// The name operators know it by: `nginx`, `php8.2-fpm`,
    /// `supervisor:shop`, `workers:shop`.
    pub fn label(&self) -> String {
        match self {
            Service::Nginx => "nginx".into(),
            Service::PhpFpm { version } => format!("php{version}-fpm"),
            Service::Supervisor { group } => format!("supervisor:{group}"),
            Service::Workers { app } => format!("workers:{app}"),
        }
    }

    /// php-fpm reloads stall requests and flush OPcache: they wait for a
    /// reload window. The others are cheap and happen at once.
    pub fn is_expensive(&self) -> bool {
        matches!(self, Service::PhpFpm { .. })
    }
}

/// When a reload happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReloadWhen {
    /// During this apply.
    Now,
    /// In the next reload window (or with `--now`).
    Window,
    /// With `--now` only: the cluster has no reload windows.
    Manual,
}

/// The reload window a deferred reload waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NextWindow {
    /// When it opens (UTC); absent when no window will ever open (a
    /// schedule that never fires).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The same in the windows' timezone, with its offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_local: Option<String>,
    /// The windows' timezone, such as Europe/Amsterdam.
    pub timezone: String,
    /// Seconds from the plan until it opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_seconds: Option<i64>,
}

/// A service reload the plan needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Reload {
    /// The service that reloads (flattened: its `service` tag and fields
    /// are this object's).
    #[serde(flatten)]
    pub service: Service,
    /// `nginx`, `php8.2-fpm`, `supervisor:shop`.
    pub label: String,
    /// During this apply, in the next window, or only with `--now`.
    pub when: ReloadWhen,
    /// Whether an earlier apply left it pending (rather than this plan's changes).
    pub pending: bool,
    /// Whether an interrupted apply left its files unvalidated: this apply
    /// validates them first.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// For `when: window`, the window it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_window: Option<NextWindow>,
    /// For a php-fpm reload made now because a window is open: until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_open_until: Option<DateTime<Utc>>,
    /// Why it reloads: changed files, a new pool, an earlier apply, an
    /// interrupted one, OPcache hygiene.
    pub reasons: Vec<String>,
    /// Whether this plan's own changes are its only cause (it goes when
    /// they are left alone).
    #[serde(skip)]
    pub for_changes_only: bool,
    /// For a supervisor reload: the process groups `supervisorctl update`
    /// may touch (`supervisor_groups`); apply updates only those
    /// supervisord finds changed, new or gone. For a restart of workers:
    /// the app's groups, each restarted. Empty for other services.
    #[serde(skip)]
    pub groups: Vec<String>,
}

/// What decides when php-fpm reloads, for one host at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPolicy {
    /// `--now`: reload everything during this apply.
    pub reload_now: bool,
    /// The cluster's `fpm_reload`: wait for a window, or reload at once.
    pub fpm_reload: FpmReload,
    /// The cluster's reload windows at the plan's time.
    pub windows: WindowState,
    /// The windows' timezone, for showing times.
    pub timezone: Tz,
}

impl Default for ReloadPolicy {
    fn default() -> Self {
        Self {
            reload_now: false,
            fpm_reload: FpmReload::Window,
            windows: WindowState::NoWindows,
            timezone: Tz::UTC,
        }
    }
}

/// Why a service is in the plan, strongest first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Cause {
    /// A pool for an app that had none: it must start now.
    NewPool,
    Changes,
    Interrupted,
    Pending,
    /// The OPcache needs emptying (why): only in a window, or with --now.
    Hygiene(String),
    /// The CLI php.ini changed: workers read it when they start.
    CliIni,
}

impl Cause {
    fn reason(&self) -> String {
        match self {
            Cause::NewPool => "a new pool".into(),
            Cause::Changes => "its configuration changed".into(),
            Cause::Interrupted => "an interrupted apply left its files unvalidated".into(),
            Cause::Pending => "pending from an earlier apply".into(),
            Cause::Hygiene(why) => why.clone(),
            Cause::CliIni => {
                "the CLI php.ini changed: running workers keep what they read at start".into()
            }
        }
    }
}

/// Why each service must reload: the `changes` to its files (a new pool
/// among them), reloads an earlier apply left pending, files an interrupted
/// apply left unvalidated, and OPcache hygiene due in `opcache`.
pub(super) fn causes(
    changes: &[Change],
    facts: &HostFacts,
    interrupted: Option<&Journal>,
    opcache: &BTreeMap<PhpVersion, OpcacheReport>,
) -> Vec<(Service, Cause)> {
    let changed = changes.iter().filter_map(|change| {
        let cause = match change {
            Change::CreateFile { path, .. }
                if matches!(ConfigFile::parse(path), Some(ConfigFile::FpmPool { .. })) =>
            {
                Cause::NewPool
            }
            _ => Cause::Changes,
        };
        change.service().map(|s| (s, cause))
    });
    let pending = facts
        .pending_reloads
        .iter()
        .filter_map(|label| Service::from_label(label))
        .map(|s| (s, Cause::Pending));
    let unvalidated = interrupted
        .iter()
        .flat_map(|j| &j.staged)
        .filter_map(|path| ConfigFile::parse(path))
        .filter_map(|file| Service::of(&file))
        .map(|s| (s, Cause::Interrupted));
    let hygiene = opcache.iter().flat_map(|(version, report)| {
        report.due.iter().map(move |why| {
            let service = Service::PhpFpm {
                version: version.clone(),
            };
            (service, Cause::Hygiene(why.clone()))
        })
    });
    changed
        .chain(pending)
        .chain(unvalidated)
        .chain(hygiene)
        .collect()
}

/// The reloads for services with `causes`, by the policy, at `now`.
pub(super) fn reloads(
    causes: impl IntoIterator<Item = (Service, Cause)>,
    policy: &ReloadPolicy,
    now: DateTime<Utc>,
) -> Vec<Reload> {
    let mut by_service: std::collections::BTreeMap<Service, Vec<Cause>> = Default::default();
    for (service, cause) in causes {
        by_service.entry(service).or_default().push(cause);
    }
    by_service
        .into_iter()
        .filter(|(_, causes)| {
            // Hygiene alone happens in windows (or with --now) only.
            let hygiene_only = causes.iter().all(|c| matches!(c, Cause::Hygiene(_)));
            !hygiene_only || policy.reload_now || policy.windows != WindowState::NoWindows
        })
        .map(|(service, causes)| {
            let mut reload = Reload {
                label: service.label(),
                when: ReloadWhen::Now,
                pending: causes.iter().all(|c| *c == Cause::Pending),
                interrupted: causes.contains(&Cause::Interrupted),
                next_window: None,
                window_open_until: None,
                reasons: causes
                    .iter()
                    .map(Cause::reason)
                    .fold(Vec::new(), |mut all, why| {
                        if !all.contains(&why) {
                            all.push(why);
                        }
                        all
                    }),
                for_changes_only: causes
                    .iter()
                    .all(|c| matches!(c, Cause::Changes | Cause::NewPool | Cause::CliIni)),
                groups: Vec::new(),
                service,
            };
            let at_once = !reload.service.is_expensive()
                || policy.reload_now
                || policy.fpm_reload == FpmReload::Immediate
                || causes.contains(&Cause::NewPool);
            if !at_once {
                match policy.windows {
                    WindowState::Open { until } => reload.window_open_until = Some(until),
                    WindowState::NoWindows => reload.when = ReloadWhen::Manual,
                    WindowState::Closed { next } => {
                        reload.when = ReloadWhen::Window;
                        reload.next_window = Some(NextWindow {
                            start: next,
                            start_local: next
                                .map(|at| at.with_timezone(&policy.timezone).to_rfc3339()),
                            timezone: policy.timezone.name().to_owned(),
                            in_seconds: next.map(|at| (at - now).num_seconds()),
                        });
                    }
                }
            }
            reload
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::AppName;

    #[test]
    fn services_are_known_from_config_files() {
        let v = PhpVersion::new("8.2");
        let app = AppName::new("shop");
        let of = |file: ConfigFile| Service::of(&file);
        assert_eq!(
            of(ConfigFile::Vhost { app: app.clone() }),
            Some(Service::Nginx)
        );
        assert_eq!(
            of(ConfigFile::FpmPool {
                version: v.clone(),
                app: app.clone()
            }),
            Some(Service::PhpFpm { version: v.clone() })
        );
        assert_eq!(
            of(ConfigFile::PhpIni {
                version: v,
                sapi: Sapi::Cli
            }),
            None
        );
        assert_eq!(
            of(ConfigFile::Supervisor { app: app.clone() }),
            Some(Service::Supervisor {
                group: "shop".into()
            })
        );
        assert_eq!(of(ConfigFile::Cron { app }), None);
    }

    #[test]
    fn labels_read_back_and_nothing_else_does() {
        for service in [
            Service::Nginx,
            Service::PhpFpm {
                version: PhpVersion::new("8.2"),
            },
            Service::Supervisor {
                group: "shop".into(),
            },
            Service::Workers { app: "shop".into() },
        ] {
            assert_eq!(Service::from_label(&service.label()), Some(service));
        }
        for label in [
            "mysql",
            "php-fpm",
            "phpx-fpm",
            "supervisor:a;b",
            "supervisor:",
            "workers:",
            "workers:a b",
        ] {
            assert_eq!(Service::from_label(label), None, "{label}");
        }
    }
}
