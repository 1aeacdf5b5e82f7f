//! What a node reports about the cluster, for info commands and clients: a summary, the
//! peers, its role and the published bitmaps per partition, and the counters.

use std::sync::atomic::AtomicU64;

use petrel_proto::PARTITIONS_COUNT;

use crate::node::ClusterNode;
use crate::partition_table::NodeId;

/// A node's published role for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    None,
}

/// Counters reported by `statistics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub partition_generation: AtomicU64,
    pub peers_generation: AtomicU64,
    pub cluster_generation: AtomicU64,
    pub migrate_records_sent: AtomicU64,
    pub migrate_records_received: AtomicU64,
    pub migrate_partitions_sent: AtomicU64,
    pub migrate_partitions_received: AtomicU64,
    /// Records a migration found already current on a node that kept a restored copy.
    pub migrate_records_skipped: AtomicU64,
    /// Records of a restored copy deleted as stale (gone from, or changed on, the source).
    pub migrate_stale_records_dropped: AtomicU64,
    /// Copies sent to replicas, each try counted.
    pub replica_writes_sent: AtomicU64,
    /// Writes that did not reach every owner.
    pub replica_writes_failed: AtomicU64,
    pub replica_writes_applied: AtomicU64,
    /// Records sent again, in the background, to owners a write did not reach in time.
    pub replica_repairs: AtomicU64,
    /// Repairs not started: too many background copies at once (the next view reconciles).
    pub replica_repairs_dropped: AtomicU64,
    pub partitions_dropped: AtomicU64,
}

/// A summary of the node's cluster state.
#[derive(Debug, Clone, Default)]
pub struct ClusterSummary {
    pub key: u64,
    pub principal: NodeId,
    pub members: Vec<NodeId>,
    /// Partitions this node still sends and receives, over all namespaces.
    pub migrate_tx: usize,
    pub migrate_rx: usize,
    /// Partitions not settled on their owners, as this node knows.
    pub unsettled: usize,
    /// A newer view is agreed but its plan is not installed yet.
    pub in_transition: bool,
}

impl ClusterNode {
    /// The cluster as this node sees it; cheap (no record locks).
    pub fn summary(&self) -> ClusterSummary {
        let st = self.state.read();
        let (mut tx, mut rx, mut unsettled) = (0, 0, 0);
        for plan in &st.plans {
            let (t, r) = plan.remaining_for(self.me);
            tx += t;
            rx += r;
            unsettled += plan.unsettled();
        }
        ClusterSummary {
            key: st.key,
            principal: st.members.first().copied().unwrap_or(self.me),
            members: st.members.clone(),
            migrate_tx: tx,
            migrate_rx: rx,
            unsettled,
            in_transition: st.adopted_key != st.key,
        }
    }

    /// The other members with their service endpoints.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        self.peers_by(|m| m.service.clone())
    }

    /// The other members' alternate service endpoints (their standard one where they have
    /// none).
    pub fn peers_alt(&self) -> Vec<(NodeId, String)> {
        self.peers_by(|m| if m.service_alt.is_empty() { m.service.clone() } else { m.service_alt.clone() })
    }

    fn peers_by(&self, endpoint: impl Fn(&crate::node::Member) -> String) -> Vec<(NodeId, String)> {
        let st = self.state.read();
        st.members
            .iter()
            .filter(|&&n| n != self.me)
            .map(|n| (*n, st.addrs.get(n).map(&endpoint).unwrap_or_default()))
            .collect()
    }

    /// Partitions of namespace `ns` this node still has to send and to receive.
    pub fn migrations(&self, ns: usize) -> (usize, usize) {
        self.state.read().plans.get(ns).map_or((0, 0), |p| p.remaining_for(self.me))
    }

    /// Effective replication factor of namespace `ns` (0 before the first view).
    pub fn replication_factor(&self, ns: usize) -> usize {
        self.state.read().plans.get(ns).map_or(0, |p| p.replication_factor)
    }

    /// The published bitmap of position `k` for this node in namespace `ns`.
    pub fn bitmap(&self, ns: usize, k: usize) -> [u8; PARTITIONS_COUNT / 8] {
        self.state.read().plans.get(ns).map_or([0; PARTITIONS_COUNT / 8], |p| p.bitmap(self.me, k))
    }

    /// This node's published role for each partition of namespace `ns`.
    pub fn roles(&self, ns: usize) -> Vec<Role> {
        let st = self.state.read();
        let Some(plan) = st.plans.get(ns) else { return vec![Role::None; PARTITIONS_COUNT] };
        plan.rows
            .iter()
            .map(|r| match r.published().position(|n| n == self.me) {
                Some(0) => Role::Master,
                Some(_) => Role::Replica,
                None => Role::None,
            })
            .collect()
    }
}
