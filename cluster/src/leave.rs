//! Leaving the cluster on purpose (SIGTERM, a scale-down): the node announces it is leaving,
//! its principal decides a view in which it owns nothing, the partitions only it holds
//! migrate to their new owners (it stays their acting master meanwhile, so writes go on),
//! and once every copy it holds is settled elsewhere it may stop. Stopping several nodes at
//! once loses nothing as long as each finishes within its grace time: each hands over to
//! the members that stay.

use std::time::{Duration, Instant};

use petrel_proto::PARTITIONS_COUNT;

use crate::node::ClusterNode;

/// How often the hand-over is looked at.
const LEAVE_POLL_MS: u64 = 50;

/// How a leave ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveOutcome {
    /// Every partition this node held is complete on the members that stay.
    HandedOver,
    /// Every member is leaving: there is no one to hand anything to.
    EveryoneLeaving,
    /// The grace time ran out first; copies only this node held may be lost with it.
    GraceExpired { partitions_left: usize },
}

impl ClusterNode {
    /// Announces that this node is leaving and waits, at most `grace`, until the members
    /// that stay hold everything it holds.
    pub async fn leave(&self, grace: Duration) -> LeaveOutcome {
        if let Some(hb) = self.heartbeat.lock().as_ref() {
            hb.set_leaving();
        }
        let deadline = Instant::now() + grace;
        loop {
            if self.heartbeat.lock().as_ref().is_some_and(|hb| hb.everyone_leaving()) {
                return LeaveOutcome::EveryoneLeaving;
            }
            let left = self.partitions_not_handed_over();
            if left == Some(0) {
                return LeaveOutcome::HandedOver;
            }
            if Instant::now() >= deadline {
                return LeaveOutcome::GraceExpired { partitions_left: left.unwrap_or(PARTITIONS_COUNT) };
            }
            tokio::time::sleep(Duration::from_millis(LEAVE_POLL_MS)).await;
        }
    }

    /// Partitions (over all namespaces) this node holds that are not yet settled on others,
    /// under an installed plan in which it is leaving; `None` before such a plan.
    fn partitions_not_handed_over(&self) -> Option<usize> {
        let view = self.heartbeat.lock().as_ref().map(|hb| hb.view())?;
        let st = self.state.read();
        if st.key == 0 || st.key != view.key || !view.leaving.contains(&self.me) {
            return None;
        }
        let plans = st.plans.clone();
        drop(st);
        let mut left = 0;
        for (ns, plan) in plans.iter().enumerate() {
            for pid in 0..PARTITIONS_COUNT as u16 {
                if !plan.row(pid).is_settled_without(self.me) && self.holds_copy(ns, pid) {
                    left += 1;
                }
            }
        }
        Some(left)
    }
}
