//! The rebalance plan of one namespace for one cluster view: for every partition, who owns
//! it (from the [`PartitionTable`]), who holds a complete copy and at which version, which
//! holder is the migration source, and from that who acts as master, who must receive the
//! partition, and when the old copies may be dropped.
//!
//! Every member computes the same plan from the same inputs: the member list, the cluster
//! key, and the partition versions each member reported in the exchange that follows a view
//! change. A version is an opaque lineage: copies with the same version hold the same
//! history. At each view change every held version is mixed with the new cluster key, so the
//! two sides of a split end up with different versions and are merged when they meet again,
//! while copies that stayed together keep equal versions and move nothing.
//!
//! Per partition:
//! * the **source** is the first owner (in table order) that holds a copy, else the
//!   highest-id holder; it acts as master until the table's master holds the final version;
//! * when holders disagree on the version, one holder per other version **merges** its copy
//!   into the source first (per-record conflict resolution); the source then takes a new
//!   version;
//! * owners without the source's final version are **immigrants**: the source pushes the
//!   partition to each of them, and each announces the version it reached;
//! * once every owner holds the final version the partition is **settled**, and nodes that
//!   are not owners give their copy back;
//! * when no member holds a copy (a new cluster, or every holder lost), the owners declare
//!   the partition empty and complete.

use petrel_proto::PARTITIONS_COUNT;

use crate::partition_table::{NodeId, PartitionTable};

/// A 64-bit mix (SplitMix64's finaliser) used to derive versions.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.rotate_left(23) ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) | 1
}

/// The version a copy held at `version` carries into the view with `cluster_key`.
pub fn carried_version(version: u64, cluster_key: u64) -> u64 {
    if version == 0 {
        0
    } else {
        mix(version, cluster_key)
    }
}

/// The version owners give a partition nobody holds.
fn declared_version(cluster_key: u64, pid: u16) -> u64 {
    mix(cluster_key, 0xDEC1_A8ED_0000_0000 | pid as u64)
}

/// The version a source takes once every merge into it has finished.
pub fn merged_version(version: u64, cluster_key: u64) -> u64 {
    mix(version ^ 0x6D65_7267_6564, cluster_key)
}

/// The version a master's copy reports once a write applied to it did not reach every other
/// owner (a copy timed out, in doubt): the copies may differ now, though their versions are
/// equal. Reported under this version, the master's copy is merged at the next view instead
/// of being taken for the same as the others'.
pub fn diverged_version(version: u64) -> u64 {
    if version == 0 {
        0
    } else {
        mix(version ^ 0x6469_7665_7267_6564, 0x5EED)
    }
}

/// The version a copy read back from `node`'s device store at its start reports. The saved
/// versions say which lineage the copy belongs to, not whether it got every write of it:
/// writes applied here whose copies were still on their way when the process died (or
/// landed after the versions were last saved) make two copies with one saved version
/// differ. Distinct per node, so that in a whole-cluster restart the restored copies are
/// merged record by record rather than taken for equal.
pub fn restored_version(version: u64, node: NodeId) -> u64 {
    if version == 0 {
        0
    } else {
        mix(version ^ 0x7265_7374_6f72_6564, node)
    }
}

/// The version a copy reports once it stops taking writes: a holder that is neither an owner
/// nor the source under the view with `cluster_key` gets no write of that view, so from the
/// moment the plan is installed its copy falls behind the owners' while its version would
/// still equal theirs. Reported under this version instead, a copy that is not given back in
/// time (the view changes first, or the announcement is lost) is merged at the next view
/// rather than taken for a complete copy.
pub fn frozen_version(version: u64, cluster_key: u64) -> u64 {
    if version == 0 {
        0
    } else {
        mix(version ^ 0x6672_6F7A_656E, cluster_key)
    }
}

/// One partition's row of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    /// The table's owners, master first.
    pub owners: Vec<NodeId>,
    /// Members holding a complete copy, with its version.
    holders: Vec<(NodeId, u64)>,
    /// The node the partition migrates from, and the acting master until the table's
    /// master is complete.
    pub source: NodeId,
    /// Holders of other versions that must still merge into the source.
    pub merges_pending: Vec<NodeId>,
}

impl PartitionRow {
    pub fn version_of(&self, node: NodeId) -> u64 {
        self.holders.iter().find(|(n, _)| *n == node).map_or(0, |(_, v)| *v)
    }

    /// The version every owner must end with (known once merges are done).
    pub fn final_version(&self) -> u64 {
        self.version_of(self.source)
    }

    /// Whether `node` holds the final version.
    pub fn is_complete(&self, node: NodeId) -> bool {
        self.merges_pending.is_empty() && self.version_of(node) != 0 && self.version_of(node) == self.final_version()
    }

    /// The node that takes writes for the partition.
    pub fn acting_master(&self) -> NodeId {
        match self.owners.first() {
            Some(&m) if self.is_complete(m) => m,
            _ => self.source,
        }
    }

    /// Owners still waiting for the partition (empty while merges are pending).
    pub fn immigrants(&self) -> impl Iterator<Item = NodeId> + '_ {
        let ready = self.merges_pending.is_empty();
        self.owners.iter().copied().filter(move |&n| ready && !self.is_complete(n))
    }

    /// Every owner holds the final version: copies elsewhere are no longer needed.
    pub fn is_settled(&self) -> bool {
        self.merges_pending.is_empty() && self.owners.iter().all(|&n| self.is_complete(n))
    }

    /// Settled, and `node` is not an owner: its copy is no longer needed.
    pub fn is_settled_without(&self, node: NodeId) -> bool {
        !self.owners.contains(&node) && self.is_settled()
    }

    /// Nodes a write applied by `master` is copied to: the owners, and the source while the
    /// partition is not settled (once it is, the source's copy is given back, and a source
    /// that was leaving may be gone).
    pub fn copy_targets(&self, master: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let source = (!self.owners.contains(&self.source) && !self.is_settled()).then_some(self.source);
        self.owners.iter().copied().chain(source).filter(move |&n| n != master)
    }

    /// Whether `node` may answer reads: it is the acting master, or a complete owner.
    pub fn serves_reads(&self, node: NodeId) -> bool {
        self.acting_master() == node || (self.owners.contains(&node) && self.is_complete(node))
    }

    /// The replica list as published to clients: the acting master, then complete owners.
    pub fn published(&self) -> impl Iterator<Item = NodeId> + '_ {
        let master = self.acting_master();
        std::iter::once(master).chain(self.owners.iter().copied().filter(move |&n| n != master && self.is_complete(n)))
    }

    /// The version `node` reports for this partition once the plan is installed: the version
    /// it holds, frozen when it holds a copy that takes no writes of this view.
    pub fn reported_version(&self, node: NodeId, cluster_key: u64) -> u64 {
        let version = self.version_of(node);
        if node == self.source || self.owners.contains(&node) {
            version
        } else {
            frozen_version(version, cluster_key)
        }
    }

    /// Records that `node` holds `version`. A new version from the source ends its merges.
    pub fn on_complete(&mut self, node: NodeId, version: u64) {
        match self.holders.iter_mut().find(|(n, _)| *n == node) {
            Some(h) => h.1 = version,
            None => self.holders.push((node, version)),
        }
        if node == self.source {
            self.merges_pending.clear();
        }
    }

    /// Records that `from` finished merging into the source; returns the source's new
    /// version once the last merge is in.
    pub fn on_merge_done(&mut self, from: NodeId, cluster_key: u64) -> Option<u64> {
        let before = self.merges_pending.len();
        self.merges_pending.retain(|&n| n != from);
        if before == 0 || !self.merges_pending.is_empty() {
            return None;
        }
        let v = merged_version(self.final_version(), cluster_key);
        let source = self.source;
        self.on_complete(source, v);
        Some(v)
    }
}

/// One namespace's plan for one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub cluster_key: u64,
    pub replication_factor: usize,
    pub rows: Vec<PartitionRow>,
}

impl Plan {
    /// Computes the plan. `reported(node)` gives the versions `node` sent in the exchange
    /// (one per partition; `None` counts as holding nothing); `members` is the view's member
    /// list, highest id first.
    pub fn compute<'a>(
        members: &[NodeId],
        replication_factor: usize,
        cluster_key: u64,
        reported: impl Fn(NodeId) -> Option<&'a [u64]>,
    ) -> Plan {
        Self::compute_with_restored(members, &[], replication_factor, cluster_key, reported, |_| false)
    }

    /// [`Plan::compute`], where `restored(node)` says that `node` reported versions read back
    /// from its device store at start. Such a copy stopped taking writes when the node went
    /// down, so it is at most as new as a live holder's: it counts only for a partition no
    /// live member holds (a whole-cluster restart), and is otherwise replaced. Members in
    /// `leaving` own nothing (unless every member is leaving): their copies count as any
    /// holder's, so they are the source of what only they hold and hand it to the owners.
    pub fn compute_with_restored<'a>(
        members: &[NodeId],
        leaving: &[NodeId],
        replication_factor: usize,
        cluster_key: u64,
        reported: impl Fn(NodeId) -> Option<&'a [u64]>,
        restored: impl Fn(NodeId) -> bool,
    ) -> Plan {
        let staying: Vec<NodeId> = members.iter().copied().filter(|m| !leaving.contains(m)).collect();
        let table = PartitionTable::compute(if staying.is_empty() { members } else { &staying }, replication_factor);
        let mut by_id: Vec<NodeId> = members.to_vec();
        by_id.sort_unstable_by(|a, b| b.cmp(a));
        let versions: Vec<(NodeId, Option<&[u64]>)> = by_id.iter().map(|&n| (n, reported(n))).collect();
        let mut rows = Vec::with_capacity(PARTITIONS_COUNT);
        for pid in 0..PARTITIONS_COUNT as u16 {
            let owners = table.replicas(pid).to_vec();
            let mut holders: Vec<(NodeId, u64)> = versions
                .iter()
                .filter_map(|(n, v)| {
                    let v = carried_version(v.and_then(|v| v.get(pid as usize).copied()).unwrap_or(0), cluster_key);
                    (v != 0).then_some((*n, v))
                })
                .collect();
            if holders.iter().any(|(n, _)| !restored(*n)) {
                holders.retain(|(n, _)| !restored(*n));
            }
            if holders.is_empty() {
                let v = declared_version(cluster_key, pid);
                holders = owners.iter().map(|&n| (n, v)).collect();
            }
            let version_of = |n: NodeId| holders.iter().find(|(h, _)| *h == n).map(|(_, v)| *v);
            let source = owners.iter().copied().find(|&n| version_of(n).is_some()).unwrap_or(holders[0].0);
            let source_version = version_of(source).unwrap_or(0);
            let mut merges_pending: Vec<NodeId> = Vec::new();
            let mut seen: Vec<u64> = vec![source_version];
            for &(n, v) in &holders {
                if !seen.contains(&v) {
                    seen.push(v);
                    merges_pending.push(n);
                }
            }
            rows.push(PartitionRow { owners, holders, source, merges_pending });
        }
        Plan { cluster_key, replication_factor: table.replication_factor(), rows }
    }

    pub fn row(&self, pid: u16) -> &PartitionRow {
        &self.rows[pid as usize]
    }

    pub fn row_mut(&mut self, pid: u16) -> &mut PartitionRow {
        &mut self.rows[pid as usize]
    }

    /// Partitions not yet settled.
    pub fn unsettled(&self) -> usize {
        self.rows.iter().filter(|r| !r.is_settled()).count()
    }

    /// Partitions `node` still has to send or receive.
    pub fn remaining_for(&self, node: NodeId) -> (usize, usize) {
        let (mut tx, mut rx) = (0, 0);
        for r in &self.rows {
            if r.merges_pending.contains(&node) || (r.source == node && r.immigrants().next().is_some()) {
                tx += 1;
            }
            if r.owners.contains(&node) && !r.is_complete(node) {
                rx += 1;
            }
        }
        (tx, rx)
    }

    /// The 512-byte bitmap of partitions where `node` is at position `k` of the published
    /// replica list (most significant bit first).
    pub fn bitmap(&self, node: NodeId, k: usize) -> [u8; PARTITIONS_COUNT / 8] {
        let mut bits = [0u8; PARTITIONS_COUNT / 8];
        for (pid, r) in self.rows.iter().enumerate() {
            if r.published().nth(k) == Some(node) {
                bits[pid >> 3] |= 0x80 >> (pid & 7);
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = 0xA0;
    const B: NodeId = 0xB0;
    const C: NodeId = 0xC0;
    const D: NodeId = 0xD0;

    fn versions_from(plan: &Plan, node: NodeId) -> Vec<u64> {
        plan.rows.iter().map(|r| if r.is_complete(node) { r.final_version() } else { 0 }).collect()
    }

    /// Runs every migration of `plan` to completion, as the nodes would.
    fn settle(plan: &mut Plan) {
        for pid in 0..PARTITIONS_COUNT as u16 {
            let key = plan.cluster_key;
            let row = plan.row_mut(pid);
            for m in row.merges_pending.clone() {
                row.on_merge_done(m, key);
            }
            let v = row.final_version();
            for n in row.immigrants().collect::<Vec<_>>() {
                row.on_complete(n, v);
            }
            assert!(row.is_settled());
        }
    }

    #[test]
    fn a_new_cluster_declares_every_partition_complete_on_its_owners() {
        let plan = Plan::compute(&[C, B, A], 2, 77, |_| None);
        for r in &plan.rows {
            assert!(r.is_settled());
            assert_eq!(r.acting_master(), r.owners[0]);
            assert_eq!(r.published().count(), 2);
        }
        assert_eq!(plan.unsettled(), 0);
        // Every partition is published with one master.
        let masters: u32 =
            [A, B, C].iter().map(|&n| plan.bitmap(n, 0).iter().map(|b| b.count_ones()).sum::<u32>()).sum();
        assert_eq!(masters as usize, PARTITIONS_COUNT);
    }

    #[test]
    fn a_joining_node_receives_its_partitions_from_the_old_owners() {
        let mut before = Plan::compute(&[C, B, A], 2, 1, |_| None);
        settle(&mut before);
        let held: Vec<(NodeId, Vec<u64>)> = [A, B, C].iter().map(|&n| (n, versions_from(&before, n))).collect();
        let reported = |n: NodeId| held.iter().find(|(h, _)| *h == n).map(|(_, v)| v.as_slice());
        let plan = Plan::compute(&[D, C, B, A], 2, 2, reported);
        let mut moved = 0;
        for r in &plan.rows {
            assert!(r.merges_pending.is_empty(), "one lineage: nothing to merge");
            assert_ne!(r.source, D, "the new node holds nothing");
            if r.owners.contains(&D) {
                moved += 1;
                assert!(!r.is_settled());
                assert_eq!(r.immigrants().collect::<Vec<_>>(), vec![D]);
                // Until D has the data, the source takes the writes and copies them to D.
                assert_ne!(r.acting_master(), D);
                assert!(r.copy_targets(r.acting_master()).any(|n| n == D));
                assert!(!r.serves_reads(D));
            }
        }
        // D takes about half the partitions (rf 2 of 4 nodes); the balancing pass may move a
        // few more between the old nodes.
        assert!(moved > 1500 && moved < 2600, "moved {moved}");
        let unsettled = plan.unsettled();
        assert!(unsettled >= moved && unsettled < moved + 400, "{unsettled} unsettled");
        assert_eq!(plan.remaining_for(D).1, moved);
    }

    #[test]
    fn a_dead_nodes_partitions_are_served_by_the_surviving_copy() {
        let mut before = Plan::compute(&[C, B, A], 2, 1, |_| None);
        settle(&mut before);
        let held: Vec<(NodeId, Vec<u64>)> = [A, B].iter().map(|&n| (n, versions_from(&before, n))).collect();
        let reported = |n: NodeId| held.iter().find(|(h, _)| *h == n).map(|(_, v)| v.as_slice());
        let mut plan = Plan::compute(&[B, A], 2, 2, reported);
        for (pid, r) in plan.rows.iter().enumerate() {
            // Every partition had a copy on A or B, so one of them is the source.
            let old = &before.rows[pid].owners;
            assert!(old.contains(&r.source));
            assert!(r.serves_reads(r.acting_master()));
        }
        settle(&mut plan);
        assert_eq!(plan.unsettled(), 0);
    }

    #[test]
    fn the_two_sides_of_a_split_merge_when_they_meet() {
        let mut before = Plan::compute(&[C, B, A], 2, 1, |_| None);
        settle(&mut before);
        // A alone on one side, B and C on the other.
        let a_side = versions_from(&before, A);
        let mut minority = Plan::compute(&[A], 2, 10, |n| (n == A).then_some(a_side.as_slice()));
        settle(&mut minority);
        let (b_side, c_side) = (versions_from(&before, B), versions_from(&before, C));
        let mut majority = Plan::compute(&[C, B], 2, 20, |n| match n {
            B => Some(b_side.as_slice()),
            C => Some(c_side.as_slice()),
            _ => None,
        });
        settle(&mut majority);
        let held: Vec<(NodeId, Vec<u64>)> =
            vec![(A, versions_from(&minority, A)), (B, versions_from(&majority, B)), (C, versions_from(&majority, C))];
        let reported = |n: NodeId| held.iter().find(|(h, _)| *h == n).map(|(_, v)| v.as_slice());
        let mut healed = Plan::compute(&[C, B, A], 2, 30, reported);
        // Every partition has a copy on both sides, with different versions: each merges.
        for r in &healed.rows {
            assert_eq!(r.merges_pending.len(), 1, "{r:?}");
            assert_eq!(r.immigrants().count(), 0, "pushes wait for the merge");
        }
        settle(&mut healed);
        assert_eq!(healed.unsettled(), 0);
    }

    #[test]
    fn every_member_computes_the_same_plan() {
        let held = vec![1u64; PARTITIONS_COUNT];
        let p1 = Plan::compute(&[C, B, A], 2, 9, |n| (n == B).then_some(held.as_slice()));
        let p2 = Plan::compute(&[A, C, B], 2, 9, |n| (n == B).then_some(held.as_slice()));
        assert_eq!(p1, p2);
        // B holds everything, so B is every partition's source; owners other than B immigrate.
        assert!(p1.rows.iter().all(|r| r.source == B));
    }

    #[test]
    fn a_leaving_member_owns_nothing_and_hands_over_what_only_it_holds() {
        let all = vec![5u64; PARTITIONS_COUNT];
        // C is leaving and alone holds every partition: it is the source everywhere, the
        // others are the owners and receive it.
        let plan = Plan::compute_with_restored(&[C, B, A], &[C], 2, 9, |n| (n == C).then_some(&all[..]), |_| false);
        for row in &plan.rows {
            assert!(!row.owners.contains(&C));
            assert_eq!(row.owners.len(), 2);
            assert_eq!(row.source, C);
            assert_eq!(row.acting_master(), C, "it takes writes until an owner is complete");
            assert!(!row.is_settled());
        }
        assert_eq!(plan.remaining_for(C).0, PARTITIONS_COUNT);
        // When the others hold it too, nothing moves and C's copy is no longer needed.
        let plan = Plan::compute_with_restored(&[C, B, A], &[C], 2, 9, |_| Some(&all[..]), |_| false);
        assert!(plan.rows.iter().all(|r| r.is_settled_without(C)));
        // Everyone leaving: the data has nowhere else to go, so the members keep owning it.
        let plan = Plan::compute_with_restored(&[B, A], &[B, A], 2, 9, |_| Some(&all[..]), |_| false);
        assert!(plan.rows.iter().all(|r| r.owners.len() == 2 && r.is_settled()));
    }

    #[test]
    fn restored_copies_count_only_where_no_live_member_holds_the_partition() {
        let live = vec![5u64; PARTITIONS_COUNT];
        let restored_v = vec![3u64; PARTITIONS_COUNT];
        // C restarted on its data while A and B held everything: C's copies are replaced.
        let plan = Plan::compute_with_restored(
            &[C, B, A],
            &[],
            2,
            9,
            |n| Some(if n == C { &restored_v[..] } else { &live[..] }),
            |n| n == C,
        );
        for row in &plan.rows {
            assert_eq!(row.version_of(C), 0);
            assert!(row.merges_pending.is_empty());
        }
        // The whole cluster restarted: the restored copies are the data.
        let plan = Plan::compute_with_restored(&[C, B, A], &[], 2, 9, |_| Some(&restored_v[..]), |_| true);
        for row in &plan.rows {
            assert!(row.owners.iter().all(|&o| row.version_of(o) != 0));
            assert!(row.is_settled());
        }
    }
}
