//! A member's join, on that server only: provision its packages, apply the
//! commit in force in full, make the live release of every app of its
//! cluster live there (each app's health check included), then `ready`.
//! Any step that fails leaves it `failed` with the cause, and it never
//! becomes part of the loop.
//!
//! The definitions are the commit in force (with the ready members),
//! extended with this member; the other servers are never contacted,
//! except to read which release is live (the app's release logs).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::{Member, MemberState, Members, extend};
use crate::app::{AppTarget, Origin, Trigger};
use crate::converge::{self, Act, ReconcileOptions, Selection};
use crate::definitions::{Definitions, Server, ServerName};
use crate::release::{self, Stop};
use crate::transport::Connector;

/// The definitions of the commit in force, as the board shares them.
pub type InForce = Arc<std::sync::RwLock<Option<Arc<Definitions>>>>;

/// Runs joins in the background (the daemon's jobs, drained on shutdown).
pub struct Joiner {
    /// The member records; each join advances its own to `ready` or
    /// `failed`.
    pub members: Arc<Members>,
    /// The commit in force (with the ready members), read once when a
    /// join starts and extended with its member; `None` (nothing in force
    /// yet) fails the join.
    pub definitions: InForce,
    /// How the join reaches the member (and the app's other servers, to
    /// read their release logs).
    pub connector: Arc<dyn Connector>,
    /// The app mirrors (the daemon's `<state-dir>/apps`).
    pub cache: PathBuf,
    /// Who joins, for host locks and release logs.
    pub holder: String,
    /// The daemon's shutdown: a join's releases stop at it as any
    /// release does.
    pub stop: Stop,
    /// Where joins are spawned: the daemon's own tasks, waited for on
    /// shutdown.
    pub tasks: tokio_util::task::TaskTracker,
}

/// How long a join waits for another apply's host lock.
const LOCK_WAIT: Duration = Duration::from_secs(30);

impl Joiner {
    /// Starts the join of `member` (recorded `joining`).
    pub fn start(self: &Arc<Self>, member: Member) {
        let joiner = Arc::clone(self);
        let span = tracing::info_span!("join", server = %member.name, cluster = %member.cluster);
        let job = async move {
            let started = std::time::Instant::now();
            let result = joiner.steps(&member).await;
            let took_ms = started.elapsed().as_millis();
            match result {
                Ok(()) => tracing::info!(took_ms, "an elastic member is ready"),
                Err(cause) => {
                    tracing::warn!(took_ms, %cause, "an elastic member's join failed");
                    // One that left meanwhile stays `leaving`, and a newer
                    // join of the name is its own.
                    joiner.members.advance(
                        &member.name,
                        member.joined_at,
                        MemberState::Failed,
                        Some(cause),
                        Utc::now(),
                    );
                }
            }
        };
        self.tasks.spawn(tracing::Instrument::instrument(job, span));
    }

    /// Moves the member on, unless it left meanwhile.
    fn enter(&self, member: &Member, state: MemberState) -> Result<(), String> {
        tracing::info!(state = state.as_str(), "joining");
        if self
            .members
            .advance(&member.name, member.joined_at, state, None, Utc::now())
        {
            Ok(())
        } else {
            Err("it left while joining".into())
        }
    }

    async fn steps(&self, member: &Member) -> Result<(), String> {
        let base = self
            .definitions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or("no commit is in force yet")?;
        let definitions = extend(&base, std::slice::from_ref(member), |name| {
            self.members.known_hosts(name)
        });
        let name = ServerName::new(member.name.as_str());
        if !definitions.servers().any(|(_, s)| s.name == name) {
            return Err(format!(
                "cluster `{}` no longer takes it (see the daemon's log)",
                member.cluster
            ));
        }
        let desired = crate::units::Desired::render(&definitions).map_err(|problems| {
            problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        let host = desired
            .host(&name)
            .ok_or("the member has no desired state")?;

        self.enter(member, MemberState::Provisioning)?;
        if member.host_key.is_none() {
            self.first_contact(&host.server, member).await?;
        }
        let packages = host.units.packages.iter().cloned().collect();
        let provisioned = crate::provision::provision(
            vec![(host.server.clone(), packages)],
            self.connector.as_ref(),
            false,
            1,
            &|_, _| {},
        )
        .await;
        if let Some((_, Err(cause))) = provisioned.into_iter().next() {
            return Err(format!("provisioning failed: {cause}"));
        }

        self.enter(member, MemberState::Configuring)?;
        let selection = Selection {
            servers: vec![name.clone()],
            apps: Vec::new(),
        };
        let target = converge::select(&definitions, &desired, &selection)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or("the member has nothing to apply")?;
        let options = ReconcileOptions {
            now: Utc::now(),
            // It takes no traffic yet: php-fpm may reload at once.
            reload_now: true,
            holder: self.holder.clone(),
            revision: definitions.revision.clone(),
            lock_wait: LOCK_WAIT,
        };
        let outcome = converge::reconcile_host(
            &target,
            self.connector.as_ref(),
            &options,
            Act::Always,
            None,
        )
        .await;
        if !outcome.succeeded() {
            let (_, cause) = outcome.describe();
            return Err(format!("applying the commit in force failed: {cause}"));
        }

        self.enter(member, MemberState::Releasing)?;
        for app in definitions
            .apps
            .iter()
            .filter(|a| a.servers.iter().any(|r| r.name == name))
        {
            self.release(&definitions, app.name.as_str(), &name)
                .await
                .map_err(|cause| format!("releasing {}: {cause}", app.name))?;
        }
        self.enter(member, MemberState::Ready)
    }

    /// Connects to a member whose join carried no host key (its cluster
    /// accepts new ones): ssh records the key the server offers in the
    /// member's own known_hosts file, and that key is the member's from
    /// then on, checked strictly. Logged as a warning with the key's
    /// fingerprint, for an operator to compare with the server's own.
    async fn first_contact(&self, server: &Server, member: &Member) -> Result<(), String> {
        self.connector
            .connect(server)
            .await
            .map_err(|e| format!("the first connection failed: {}", crate::error_chain(&e)))?;
        let file = self.members.known_hosts(&member.name);
        let key = std::fs::read_to_string(&file)
            .ok()
            .as_deref()
            .and_then(super::recorded_key)
            .ok_or(
                "the first connection recorded no host key in the member's known_hosts file \
                 (does a global known_hosts file hold it?)",
            )?;
        let fingerprint = super::fingerprint(&key).unwrap_or_default();
        tracing::warn!(
            %fingerprint,
            host_key = %key,
            "an elastic member's host key was accepted unchecked on first contact (`accept_new_host_keys`)"
        );
        if self.members.learn(&member.name, member.joined_at, &key) {
            Ok(())
        } else {
            Err("it left while joining".into())
        }
    }

    /// Makes the release live on the app's other servers live on the
    /// member (nothing when none is live anywhere).
    async fn release(
        &self,
        definitions: &Definitions,
        app: &str,
        member: &ServerName,
    ) -> Result<(), String> {
        let all = AppTarget::find(definitions, app).map_err(|e| e.to_string())?;
        let check = release::check(&all, &self.cache, self.connector.as_ref())
            .await
            .map_err(|e| crate::error_chain(&e))?;
        let Some(intended) = &check.intended else {
            tracing::info!(app, "no release of the app is live: nothing to release");
            return Ok(());
        };
        let mine: Vec<_> = check
            .servers
            .iter()
            .filter(|(s, _)| s == member)
            .cloned()
            .collect();
        if let Some((_, Err(cause))) = mine.first() {
            return Err(format!("cannot read its releases: {cause}"));
        }
        if mine.iter().any(|(_, s)| {
            s.as_ref()
                .is_ok_and(|s| s.live.as_ref() == Some(intended.sha()))
        }) {
            return Ok(());
        }
        let only = AppTarget {
            app: all.app.clone(),
            servers: all
                .servers
                .iter()
                .filter(|(s, _)| &s.name == member)
                .cloned()
                .collect(),
            ab_wait: all.ab_wait,
        };
        let check = release::Check {
            servers: mine,
            ..check.clone()
        };
        let origin = Origin {
            who: self.holder.clone(),
            trigger: Trigger::Repair,
        };
        release::repair(
            &only,
            &check,
            &self.cache,
            &origin,
            self.connector.as_ref(),
            &(),
            &self.stop,
        )
        .await
        .map(|released| tracing::info!(app, sha = %released.sha.short(), "live on the member"))
        .map_err(|e| crate::error_chain(&e))
    }
}
