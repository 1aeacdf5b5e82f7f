//! The primary index of one partition: a fixed number of sprigs, each a red-black [`Tree`]
//! behind its own lock.
//!
//! A digest picks its sprig from the 28 digest bits that follow the partition id bits, so
//! sprigs in index order hold ascending digest ranges and walking sprigs `0..n` in order walks
//! the whole partition in digest order. Splitting a partition into sprigs keeps each tree
//! shallow and each lock narrow; the lock of a sprig is also the lock of every record in it,
//! which is what makes a read-modify-write of one record atomic.

mod tree;

use parking_lot::{Mutex, MutexGuard};
use petrel_proto::Digest;

pub use tree::{Entry, Handle, Removed, Tree, NIL, NODES_MAX};

/// Most sprigs a partition may be split into (the digest offers 28 bits to pick one).
pub const SPRIGS_PER_PARTITION_MAX: usize = 1 << 16;
const SPRIG_BITS: u32 = 28;
const _: () = assert!(SPRIGS_PER_PARTITION_MAX <= 1 << SPRIG_BITS);

/// One partition's index.
#[derive(Debug)]
pub struct PartitionIndex<L> {
    sprigs: Box<[Mutex<Tree<L>>]>,
    sprig_shift: u32,
}

impl<L> PartitionIndex<L> {
    /// Creates an empty index split into `sprigs_count` sprigs, a power of two between 1 and
    /// [`SPRIGS_PER_PARTITION_MAX`].
    pub fn new(sprigs_count: usize) -> Self {
        assert!(
            sprigs_count.is_power_of_two() && sprigs_count <= SPRIGS_PER_PARTITION_MAX,
            "sprig count must be a power of two up to {SPRIGS_PER_PARTITION_MAX}"
        );
        let sprigs = (0..sprigs_count).map(|_| Mutex::new(Tree::default())).collect();
        PartitionIndex { sprigs, sprig_shift: SPRIG_BITS - sprigs_count.trailing_zeros() }
    }

    /// Index of the sprig that holds `digest`.
    #[inline]
    pub fn sprig_index(&self, digest: &Digest) -> usize {
        // A shift by 28 (one sprig) leaves 0 for every digest, as wanted.
        (digest.sprig_bits() >> self.sprig_shift) as usize
    }

    /// Locks the sprig that holds `digest`.
    #[inline]
    pub fn lock(&self, digest: &Digest) -> MutexGuard<'_, Tree<L>> {
        self.sprigs[self.sprig_index(digest)].lock()
    }

    /// Locks sprig `i`.
    pub fn lock_sprig(&self, i: usize) -> MutexGuard<'_, Tree<L>> {
        self.sprigs[i].lock()
    }

    pub fn sprigs_count(&self) -> usize {
        self.sprigs.len()
    }

    /// Bytes of index memory this partition holds: the sprig array and every sprig's arena.
    pub fn memory_bytes(&self) -> usize {
        let fixed = std::mem::size_of_val(&*self.sprigs);
        fixed + self.sprigs.iter().map(|s| s.lock().arena_bytes()).sum::<usize>()
    }

    /// Number of entries (live or not yet reclaimed) over all sprigs.
    pub fn len(&self) -> usize {
        self.sprigs.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Entry<crate::engine::ThinBytes>>(), 56);
        assert_eq!(std::mem::size_of::<Entry<std::num::NonZeroU64>>(), 56);
    }

    #[test]
    fn sprigs_hold_ascending_digest_ranges() {
        let index: PartitionIndex<u64> = PartitionIndex::new(16);
        let mut lo = Digest::default();
        lo.0[1] = 0x00;
        let mut hi = Digest::default();
        hi.0[1] = 0xf0;
        assert_eq!(index.sprig_index(&lo), 0);
        assert_eq!(index.sprig_index(&hi), 15);
        let one: PartitionIndex<u64> = PartitionIndex::new(1);
        assert_eq!(one.sprig_index(&hi), 0);
    }
}
