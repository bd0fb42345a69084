//! Elastic members on the board: what a member record is, the status's
//! `elastic` section and the `reconciler_elastic_member{cluster,server,state}`
//! series. The records are the status document's, so they live here, below
//! `elastic`, which keeps and changes them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Board;
use super::metrics::MemberLabel;

/// Where a member is in its life: `joining` → `provisioning` →
/// `configuring` → `releasing` → `ready`, or `failed` (with the cause);
/// `leaving` after a `DELETE`; `lost` when it stayed unreachable past the
/// grace period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Its join was accepted and recorded; nothing was done on it yet.
    Joining,
    /// The packages its units need are being installed.
    Provisioning,
    /// The commit in force is being applied to it.
    Configuring,
    /// Its apps' live releases are being put on it.
    Releasing,
    /// Configured and released: it is in the cluster's hosts and served.
    Ready,
    /// A step of the join failed (`cause` says which and why); it is not
    /// served.
    Failed,
    /// It asked to leave (`DELETE`) and is no longer served.
    Leaving,
    /// It stayed unreachable past the grace period; it is no longer served.
    Lost,
}

impl MemberState {
    /// The state's word, as in JSON and the metrics' `state` label:
    /// `joining`, `ready`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Joining => "joining",
            Self::Provisioning => "provisioning",
            Self::Configuring => "configuring",
            Self::Releasing => "releasing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Leaving => "leaving",
            Self::Lost => "lost",
        }
    }

    /// Whether the member holds a place under `max_servers` (a failed,
    /// leaving or lost one does not: it is not served, and a new join may
    /// replace it).
    pub fn counts(self) -> bool {
        !matches!(self, Self::Failed | Self::Leaving | Self::Lost)
    }

    /// All states, for metrics.
    pub const ALL: [MemberState; 8] = [
        Self::Joining,
        Self::Provisioning,
        Self::Configuring,
        Self::Releasing,
        Self::Ready,
        Self::Failed,
        Self::Leaving,
        Self::Lost,
    ];
}

/// One elastic member, as kept in `members.json` and shown by
/// `GET /v1/clusters/<cluster>/servers/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Member {
    /// The server's name, as it asked to join; unique among the
    /// definitions' servers and the members.
    pub name: String,
    /// The cluster it joined, by its name in the definitions.
    pub cluster: String,
    /// Host name or IP address it is reached at over SSH.
    pub address: String,
    /// The TCP port its SSH server listens on.
    pub port: u16,
    /// Its SSH host public key, `<algorithm> <base64>`: the join's, or
    /// the one its first connection recorded (its cluster accepting new
    /// host keys); none before that connection.
    #[serde(default)]
    pub host_key: Option<String>,
    /// Where it is in its life.
    pub state: MemberState,
    /// Why it failed or was lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// When its join was accepted (the daemon's clock).
    pub joined_at: DateTime<Utc>,
    /// When it entered its state.
    pub since: DateTime<Utc>,
}

impl Board {
    /// Shows `members` (every member, in every state) in the status and
    /// the metrics, in place of what was shown before.
    pub fn members(&self, members: &[Member]) {
        let family = &self.metrics.elastic;
        family.clear();
        for member in members {
            family
                .get_or_create(&MemberLabel {
                    cluster: member.cluster.clone(),
                    server: member.name.clone(),
                    state: member.state.as_str().to_owned(),
                })
                .set(1);
        }
        self.update(Utc::now(), |s| {
            s.elastic = members
                .iter()
                .map(|m| (m.name.clone(), m.clone()))
                .collect();
        });
    }
}
