//! Giving partitions back: once a partition is complete on its owners, a node that is not
//! one of them drops its copy, so that every record sits on its owners only.

use std::sync::atomic::Ordering;

use petrel_proto::PARTITIONS_COUNT;

use crate::node::ClusterNode;

impl ClusterNode {
    /// Drops partitions this node does not own once their owners are complete.
    pub(crate) fn give_back(&self) {
        for (ns, pid) in self.copies_settled_elsewhere() {
            self.give_back_one(ns, pid);
        }
    }

    /// Gives partition `pid` of namespace `ns` back at once if it settled elsewhere.
    ///
    /// Not while a newer view is adopted and its plan not installed yet: this node's
    /// versions for that view may already be sent, and a plan that counts on a copy dropped
    /// after the exchange would merge the other copies into nothing. The version is cleared
    /// under the versions lock, the exchange's snapshot is taken under it after the view is
    /// adopted, so either the exchange sees the copy gone or the copy stays.
    pub(crate) fn give_back_one(&self, ns: usize, pid: u16) {
        {
            let mut versions = self.versions.lock();
            let st = self.state.read();
            let settled_elsewhere =
                st.adopted_key == st.key && st.plans.get(ns).is_some_and(|p| p.row(pid).is_settled_without(self.me));
            let held = versions[ns][pid as usize] != 0 || !self.namespaces[ns].partition(pid).is_empty();
            if !(settled_elsewhere && held) {
                return;
            }
            versions[ns][pid as usize] = 0;
        }
        let records = self.namespaces[ns].drop_partition(pid);
        self.reconciling.end(ns, pid);
        self.counters.partitions_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, records, "gave back a partition settled on its owners");
    }

    /// Whether this node holds partition `pid`: records, or a version it would report. An
    /// empty copy counts too: given back, it stops claiming a version in the next exchange.
    pub(crate) fn holds_copy(&self, ns: usize, pid: u16) -> bool {
        self.versions.lock()[ns][pid as usize] != 0 || !self.namespaces[ns].partition(pid).is_empty()
    }

    /// Partitions settled on their owners that this node still holds a copy of. The cluster
    /// is stable only when there are none, so that every record sits on its owners only.
    /// Looks at every partition's size, so it is for info commands, not for requests.
    pub fn copies_to_give_back(&self) -> usize {
        self.copies_settled_elsewhere().len()
    }

    /// (namespace, partition) of every copy held here that settled on other owners.
    fn copies_settled_elsewhere(&self) -> Vec<(usize, u16)> {
        // Versions before state, the order `give_back_one` takes them in.
        let versions = self.versions.lock();
        let st = self.state.read();
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
