//! Members that are gone without leaving: a ready member that stays
//! unreachable, or whose reconciles keep failing, for longer than the grace
//! period is marked `lost` and no longer worked on (the loop takes only
//! ready members), rather than tried forever. Join it again once it is back.
//!
//! The loop alone would not notice a member that went away between commits:
//! it reconciles a host only for a new commit or a drift check, and an app
//! check that cannot read the member only retries. So the sweep reaches every
//! ready member itself, one `true` over its (warm) connection per look.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Member, MemberState, Members};
use crate::board::{Board, HostStatus};
use crate::transport::Connector;

/// The longest a look at one member may take (a connection that does not
/// answer counts as unreachable).
const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// Marks `lost` every ready member unreachable, or whose reconciles have
/// failed, for longer than `grace` (since its last success, or since it
/// became ready). Runs until dropped, looking every quarter of `grace`
/// (1 to 30 s); reaches the members through `connector` with the servers
/// of the definitions in force on `board`.
pub async fn sweep_lost(
    members: Arc<Members>,
    board: Arc<Board>,
    connector: Arc<dyn Connector>,
    grace: Duration,
) {
    let period = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let mut every = tokio::time::interval(period);
    let mut unreachable: HashMap<String, Unreachable> = HashMap::new();
    loop {
        every.tick().await;
        let ready: Vec<Member> = members
            .all()
            .into_iter()
            .filter(|m| m.state == MemberState::Ready)
            .collect();
        let reached =
            futures::future::join_all(ready.iter().map(|m| reach(&board, connector.as_ref(), m)))
                .await;
        let now = Utc::now();
        let status = board.snapshot();
        unreachable.retain(|name, _| ready.iter().any(|m| &m.name == name));
        for (member, reached) in ready.iter().zip(reached) {
            match reached {
                Ok(()) => {
                    unreachable.remove(&member.name);
                }
                Err(cause) => {
                    let since = unreachable.get(&member.name).map_or(now, |u| u.since);
                    unreachable.insert(member.name.clone(), Unreachable { since, cause });
                }
            }
            let cause = lost(member, status.hosts.get(&member.name), now, grace).or_else(|| {
                unreachable
                    .get(&member.name)
                    .and_then(|u| u.past(member, now, grace))
            });
            if let Some(cause) = cause {
                tracing::warn!(server = %member.name, %cause, "an elastic member is lost");
                members.set(&member.name, MemberState::Lost, Some(cause), now);
                unreachable.remove(&member.name);
            }
        }
    }
}

/// Runs `true` on `member` as the definitions in force have it, or says
/// why it cannot be reached (a member they do not have yet counts as
/// reached: the loop has not taken it).
async fn reach(board: &Board, connector: &dyn Connector, member: &Member) -> Result<(), String> {
    let server = board
        .definitions
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(|d| {
            d.servers()
                .find(|(_, s)| s.name.as_str() == member.name)
                .map(|(_, s)| s.clone())
        });
    let Some(server) = server else {
        return Ok(());
    };
    let look = async {
        let transport = connector.connect(&server).await?;
        transport.run("true", PROBE_LIMIT).await
    };
    match tokio::time::timeout(PROBE_LIMIT, look).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(crate::error_chain(&e)),
        Err(_) => Err(format!("no answer within {} s", PROBE_LIMIT.as_secs())),
    }
}

/// Since when a member has not been reached, and the last cause.
#[derive(Debug, Clone)]
pub(super) struct Unreachable {
    pub since: DateTime<Utc>,
    pub cause: String,
}

impl Unreachable {
    /// Why `member` counts as lost at `now`, if unreachable for longer
    /// than `grace` since it became ready.
    pub fn past(
        &self,
        member: &Member,
        now: DateTime<Utc>,
        grace: chrono::Duration,
    ) -> Option<String> {
        let since = self.since.max(member.since);
        (member.state == MemberState::Ready && now - since > grace).then(|| {
            format!(
                "unreachable since {}: {}",
                since.format("%Y-%m-%d %H:%M:%S UTC"),
                self.cause
            )
        })
    }
}

/// Why a ready `member` whose host is `host` on the board counts as lost
/// at `now` because its reconciles keep failing, if it does.
pub(super) fn lost(
    member: &Member,
    host: Option<&HostStatus>,
    now: DateTime<Utc>,
    grace: chrono::Duration,
) -> Option<String> {
    let host = host?;
    if member.state != MemberState::Ready || host.failures == 0 {
        return None;
    }
    let good = host
        .last_success_at
        .map_or(member.since, |at| at.max(member.since));
    (now - good > grace).then(|| {
        format!(
            "failing since {}: {}",
            good.format("%Y-%m-%d %H:%M:%S UTC"),
            host.last_message.as_deref().unwrap_or("no message")
        )
    })
}
