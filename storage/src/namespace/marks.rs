//! Delete marks: for each recent delete, the digest and the delete's last-update time, per
//! partition. A copy of the record that other nodes still hold (the other side of a split,
//! a replica that missed the delete, a restored copy) is no newer than the delete, and a
//! mark keeps it from being stored again when it arrives by migration or merge. Marks travel
//! with their partition (see `petrel-cluster`'s migrations), are reaped after
//! `tomb_raider_eligible_age`, and are bounded per partition (the oldest go first), so the
//! memory they take is bounded by `delete_marks_max`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use petrel_proto::{Digest, PartitionId, PARTITIONS_COUNT};

/// Bytes a mark takes in memory, roughly: the digest and time in a hash table, and again in
/// the time order that finds the oldest.
pub(crate) const MARK_BYTES: u64 = 96;

/// One partition's marks: by digest, and in time order, so that the oldest is found without
/// a walk (when a full partition takes a new mark, and when old marks are reaped).
#[derive(Debug, Default)]
struct PartitionMarks {
    by_digest: HashMap<Digest, u64>,
    by_time: BTreeSet<(u64, Digest)>,
}

impl PartitionMarks {
    fn remove(&mut self, digest: &Digest) -> bool {
        match self.by_digest.remove(digest) {
            Some(at) => self.by_time.remove(&(at, *digest)),
            None => false,
        }
    }
}

/// The delete marks of one namespace.
#[derive(Debug)]
pub(crate) struct DeleteMarks {
    parts: Box<[Mutex<PartitionMarks>]>,
    /// Marks kept per partition at most (0: none are kept).
    per_partition_max: usize,
    count: AtomicU64,
}

impl DeleteMarks {
    /// Marks for a namespace that keeps at most `max` (spread over its partitions).
    pub(crate) fn new(max: u64) -> Self {
        let per_partition_max = if max == 0 { 0 } else { max.div_ceil(PARTITIONS_COUNT as u64) as usize };
        DeleteMarks {
            parts: (0..PARTITIONS_COUNT).map(|_| Mutex::new(PartitionMarks::default())).collect(),
            per_partition_max,
            count: AtomicU64::new(0),
        }
    }

    /// Notes that `digest` was deleted at `lut_ms` (a later mark of it is kept).
    pub(crate) fn note(&self, digest: &Digest, lut_ms: u64) {
        if self.per_partition_max == 0 || lut_ms == 0 {
            return;
        }
        let mut part = self.parts[digest.partition_id() as usize].lock();
        match part.by_digest.get(digest).copied() {
            Some(at) if at >= lut_ms => {}
            Some(at) => {
                part.by_time.remove(&(at, *digest));
                part.by_time.insert((lut_ms, *digest));
                part.by_digest.insert(*digest, lut_ms);
            }
            None => {
                if part.by_digest.len() >= self.per_partition_max {
                    // Full: the oldest mark goes.
                    if let Some((_, oldest)) = part.by_time.pop_first() {
                        part.by_digest.remove(&oldest);
                        self.count.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                part.by_digest.insert(*digest, lut_ms);
                part.by_time.insert((lut_ms, *digest));
                self.count.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the mark of `digest`: a later write of it is live.
    pub(crate) fn forget(&self, digest: &Digest) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        if self.parts[digest.partition_id() as usize].lock().remove(digest) {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// When `digest` was last deleted, if that is remembered.
    pub(crate) fn get(&self, digest: &Digest) -> Option<u64> {
        if self.count.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.parts[digest.partition_id() as usize].lock().by_digest.get(digest).copied()
    }

    /// The marks of partition `pid`.
    pub(crate) fn of_partition(&self, pid: PartitionId) -> Vec<(Digest, u64)> {
        self.parts[pid as usize].lock().by_digest.iter().map(|(d, &at)| (*d, at)).collect()
    }

    /// Forgets the marks of partition `pid` (it moved away).
    pub(crate) fn clear_partition(&self, pid: PartitionId) {
        let mut part = self.parts[pid as usize].lock();
        self.count.fetch_sub(part.by_digest.len() as u64, Ordering::Relaxed);
        *part = PartitionMarks::default();
    }

    /// Forgets the marks of deletes at or before `cutoff_ms`; returns how many went. Each
    /// partition is looked at from its oldest mark, so a pass over marks that are all young
    /// costs one look per partition.
    pub(crate) fn reap(&self, cutoff_ms: u64) -> u64 {
        if self.count.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut reaped = 0;
        for part in self.parts.iter() {
            let mut part = part.lock();
            while part.by_time.first().is_some_and(|&(at, _)| at <= cutoff_ms) {
                if let Some((_, digest)) = part.by_time.pop_first() {
                    part.by_digest.remove(&digest);
                    reaped += 1;
                }
            }
        }
        self.count.fetch_sub(reaped, Ordering::Relaxed);
        reaped
    }

    pub(crate) fn len(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(pid: u16, n: u8) -> Digest {
        let mut d = [n; 20];
        d[0] = (pid & 0xFF) as u8;
        d[1] = (pid >> 8) as u8;
        Digest(d)
    }

    #[test]
    fn marks_keep_the_latest_delete_stay_bounded_and_are_reaped_by_age() {
        // 2 per partition.
        let marks = DeleteMarks::new(2 * PARTITIONS_COUNT as u64);
        marks.note(&digest(5, 1), 100);
        marks.note(&digest(5, 1), 90);
        assert_eq!(marks.get(&digest(5, 1)), Some(100), "a later mark is kept");
        marks.note(&digest(5, 2), 200);
        marks.note(&digest(5, 3), 300);
        assert_eq!(marks.get(&digest(5, 1)), None, "the oldest went when the partition was full");
        assert_eq!(marks.len(), 2);
        marks.note(&digest(6, 1), 50);
        assert_eq!(marks.of_partition(6), vec![(digest(6, 1), 50)]);
        assert_eq!(marks.reap(200), 2);
        assert_eq!(marks.of_partition(5), vec![(digest(5, 3), 300)]);
        marks.clear_partition(5);
        assert_eq!((marks.len(), marks.get(&digest(5, 3))), (0, None));
        // Off: nothing is kept.
        let off = DeleteMarks::new(0);
        off.note(&digest(5, 1), 100);
        assert_eq!((off.len(), off.get(&digest(5, 1))), (0, None));
    }
}
