//! Giving partitions back: once a partition is complete on its owners, a node that is not
//! one of them drops its copy, so that every record sits on its owners only.

use std::sync::atomic::Ordering;

use petrel_proto::PARTITIONS_COUNT;

use crate::node::ClusterNode;

impl ClusterNode {
    /// Drops partitions this node does not own once their owners are complete.
    pub(crate) fn give_back(&self) {
        for (ns, pid) in self.copies_settled_elsewhere() {
            self.drop_copy(ns, pid);
        }
    }

    /// Gives partition `pid` of namespace `ns` back at once if it settled elsewhere.
    pub(crate) fn give_back_one(&self, ns: usize, pid: u16) {
        let settled_elsewhere = self.state.read().plans.get(ns).is_some_and(|p| p.row(pid).is_settled_without(self.me));
        if settled_elsewhere && self.holds_copy(ns, pid) {
            self.drop_copy(ns, pid);
        }
    }

    /// Whether this node holds partition `pid`: records, or a version it would report. An
    /// empty copy counts too: given back, it stops claiming a version in the next exchange.
    pub(crate) fn holds_copy(&self, ns: usize, pid: u16) -> bool {
        self.versions.lock()[ns][pid as usize] != 0 || !self.namespaces[ns].partition(pid).is_empty()
    }

    fn drop_copy(&self, ns: usize, pid: u16) {
        let records = self.namespaces[ns].drop_partition(pid);
        self.versions.lock()[ns][pid as usize] = 0;
        self.counters.partitions_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, records, "gave back a partition settled on its owners");
    }

    /// Partitions settled on their owners that this node still holds a copy of. The cluster
    /// is stable only when there are none, so that every record sits on its owners only.
    /// Looks at every partition's size, so it is for info commands, not for requests.
    pub fn copies_to_give_back(&self) -> usize {
        self.copies_settled_elsewhere().len()
    }

    /// (namespace, partition) of every copy held here that settled on other owners.
    fn copies_settled_elsewhere(&self) -> Vec<(usize, u16)> {
        let st = self.state.read();
        let versions = self.versions.lock();
        let mut v = Vec::new();
        for (i, plan) in st.plans.iter().enumerate() {
            for pid in 0..PARTITIONS_COUNT as u16 {
                let held = versions[i][pid as usize] != 0 || !self.namespaces[i].partition(pid).is_empty();
                if held && plan.row(pid).is_settled_without(self.me) {
                    v.push((i, pid));
                }
            }
        }
        v
    }
}
