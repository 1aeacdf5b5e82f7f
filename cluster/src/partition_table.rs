//! The partition table: for every partition, the ordered list of nodes that hold it
//! (position 0 = master, then the replicas), computed by every node from the member list
//! alone, so that all members agree without exchanging the table.
//!
//! Each partition ranks the members by a hash of (node id, partition id), highest first —
//! rendezvous hashing, so a node joining or leaving moves only the partitions where it ranks
//! among the first `rf`. A balancing pass then bounds each node's count at every position
//! `k < rf` to the ceiling of `partitions / nodes`, by swapping an over-full node with the
//! next under-full node further down the same row. Both steps are deterministic.

use petrel_proto::PARTITIONS_COUNT;

/// A node's 64-bit id.
pub type NodeId = u64;

/// Most copies of a partition the table places.
pub const REPLICATION_FACTOR_MAX: usize = 8;

/// Replica lists of all partitions for one member list and replication factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    /// Effective replication factor: min(configured, members).
    rf: usize,
    /// `rows[pid * rf .. (pid + 1) * rf]`: the nodes holding `pid`, master first.
    rows: Vec<NodeId>,
}

/// A 64-bit mix of two words (the finaliser of SplitMix64 over their combination); good
/// avalanche, stable across platforms and releases.
fn weight(node: NodeId, pid: u16) -> u64 {
    let mut z = node ^ (pid as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl PartitionTable {
    /// Computes the table for `members` (any order, no duplicates) and the configured factor.
    pub fn compute(members: &[NodeId], replication_factor: usize) -> PartitionTable {
        let mut nodes: Vec<NodeId> = members.to_vec();
        nodes.sort_unstable();
        nodes.dedup();
        let n = nodes.len();
        let rf = replication_factor.clamp(1, REPLICATION_FACTOR_MAX).min(n);
        if n == 0 {
            return PartitionTable { rf: 0, rows: Vec::new() };
        }
        // Full rendezvous order per partition (index into `nodes`), highest weight first.
        let mut order: Vec<Vec<usize>> = (0..PARTITIONS_COUNT as u16)
            .map(|pid| {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.sort_unstable_by_key(|&i| std::cmp::Reverse((weight(nodes[i], pid), nodes[i])));
                idx
            })
            .collect();
        // Balance each position: no node above ceil(partitions / n) at position k.
        let cap = PARTITIONS_COUNT.div_ceil(n);
        for k in 0..rf {
            let mut counts = vec![0usize; n];
            for row in order.iter_mut() {
                if counts[row[k]] >= cap {
                    if let Some(j) = (k + 1..n).find(|&j| counts[row[j]] < cap) {
                        row.swap(k, j);
                    }
                }
                counts[row[k]] += 1;
            }
        }
        let mut rows = Vec::with_capacity(PARTITIONS_COUNT * rf);
        for row in &order {
            rows.extend(row[..rf].iter().map(|&i| nodes[i]));
        }
        PartitionTable { rf, rows }
    }

    /// The effective replication factor.
    pub fn replication_factor(&self) -> usize {
        self.rf
    }

    /// The nodes holding `pid`, master first.
    pub fn replicas(&self, pid: u16) -> &[NodeId] {
        let start = pid as usize * self.rf;
        &self.rows[start..start + self.rf]
    }

    /// The master of `pid`.
    pub fn master(&self, pid: u16) -> Option<NodeId> {
        self.replicas(pid).first().copied()
    }

    /// The 512-byte bitmap of partitions where `node` holds position `k` (most significant bit
    /// first), as the `replicas` info command publishes it.
    pub fn bitmap(&self, node: NodeId, k: usize) -> [u8; PARTITIONS_COUNT / 8] {
        let mut bits = [0u8; PARTITIONS_COUNT / 8];
        if k < self.rf {
            for pid in 0..PARTITIONS_COUNT {
                if self.rows[pid * self.rf + k] == node {
                    bits[pid >> 3] |= 0x80 >> (pid & 7);
                }
            }
        }
        bits
    }

    /// How many partitions `node` masters.
    pub fn master_count(&self, node: NodeId) -> usize {
        (0..PARTITIONS_COUNT as u16).filter(|&p| self.master(p) == Some(node)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: [NodeId; 5] = [0xBB90_1000_0000_0C02, 0xBB90_2000_0000_0C02, 0xA1, 0x7f00_0001_0bb8, 0xFFFF_0000_1234];

    #[test]
    fn every_partition_has_rf_distinct_owners_and_one_master() {
        for n in 1..=5 {
            for rf in 1..=3 {
                let t = PartitionTable::compute(&NODES[..n], rf);
                assert_eq!(t.replication_factor(), rf.min(n));
                for pid in 0..PARTITIONS_COUNT as u16 {
                    let r = t.replicas(pid);
                    assert_eq!(r.len(), rf.min(n));
                    let mut d = r.to_vec();
                    d.sort_unstable();
                    d.dedup();
                    assert_eq!(d.len(), r.len(), "distinct owners of {pid}");
                }
                let masters: usize = NODES[..n].iter().map(|&x| t.master_count(x)).sum();
                assert_eq!(masters, PARTITIONS_COUNT);
            }
        }
    }

    #[test]
    fn masters_and_replicas_are_balanced() {
        for n in 2..=5 {
            let t = PartitionTable::compute(&NODES[..n], 2);
            let counts: Vec<usize> = NODES[..n].iter().map(|&x| t.master_count(x)).collect();
            let (lo, hi) = (*counts.iter().min().expect("min"), *counts.iter().max().expect("max"));
            assert!(hi - lo <= PARTITIONS_COUNT / n / 10, "{n} nodes: masters {counts:?}");
            let copies: Vec<usize> = NODES[..n]
                .iter()
                .map(|&x| (0..PARTITIONS_COUNT as u16).filter(|&p| t.replicas(p).contains(&x)).count())
                .collect();
            let (lo, hi) = (*copies.iter().min().expect("min"), *copies.iter().max().expect("max"));
            assert!(hi - lo <= 2 * PARTITIONS_COUNT / n / 10, "{n} nodes: copies {copies:?}");
        }
    }

    #[test]
    fn same_members_same_table_whatever_the_order() {
        let a = PartitionTable::compute(&[NODES[0], NODES[1], NODES[2]], 2);
        let b = PartitionTable::compute(&[NODES[2], NODES[0], NODES[1], NODES[0]], 2);
        assert_eq!(a, b);
    }

    #[test]
    fn a_joining_node_moves_few_partitions() {
        let before = PartitionTable::compute(&NODES[..3], 2);
        let after = PartitionTable::compute(&NODES[..4], 2);
        let moved_masters = (0..PARTITIONS_COUNT as u16).filter(|&p| before.master(p) != after.master(p)).count();
        // Ideal: a quarter of the masters move to the new node; balancing adds a little.
        assert!(moved_masters < PARTITIONS_COUNT * 35 / 100, "{moved_masters} masters moved");
        let to_new = (0..PARTITIONS_COUNT as u16).filter(|&p| after.master(p) == Some(NODES[3])).count();
        assert!(to_new >= PARTITIONS_COUNT / 4 - PARTITIONS_COUNT / 40);
    }

    #[test]
    fn bitmaps_cover_each_partition_once_per_position() {
        let t = PartitionTable::compute(&NODES[..3], 2);
        for k in 0..2 {
            let mut union = [0u8; PARTITIONS_COUNT / 8];
            for &x in &NODES[..3] {
                let b = t.bitmap(x, k);
                for (u, v) in union.iter_mut().zip(b) {
                    assert_eq!(*u & v, 0, "a partition has two nodes at position {k}");
                    *u |= v;
                }
            }
            assert!(union.iter().all(|&b| b == 0xff));
        }
        let single = PartitionTable::compute(&NODES[..1], 2);
        assert!(single.bitmap(NODES[0], 0).iter().all(|&b| b == 0xff));
        assert!(single.bitmap(NODES[0], 1).iter().all(|&b| b == 0));
    }
}
