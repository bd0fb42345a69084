//! Elastic members on the board: the status's `elastic` section and the
//! `reconciler_elastic_member{cluster,server,state}` series.

use chrono::Utc;

use super::Board;
use super::metrics::MemberLabel;
use crate::elastic::Member;

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
