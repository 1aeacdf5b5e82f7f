//! Copies of records from other nodes: replication (a master's writes, applied in sequence
//! by [`Namespace::apply_replica`]), migration and merges (resolved by
//! [`ConflictResolution`] in [`Namespace::apply_copy`], which honours delete marks), deletes
//! a master made and other nodes' delete marks, and dropping a partition that moved away.

use std::sync::atomic::Ordering;

use petrel_proto::{Digest, PartitionId};

use crate::engine::StorageEngine;
use crate::namespace::{Namespace, RecordMeta};
use crate::record::ImageView;
use crate::value::check_bin_name;
use crate::StorageError;

/// A copy of a record as replication and migration carry it between nodes.
#[derive(Debug, Clone, Copy)]
pub struct RecordCopy<'a> {
    pub digest: Digest,
    /// Set name (empty = none).
    pub set: &'a [u8],
    pub meta: RecordMeta,
    /// The record image (`record` module format).
    pub image: &'a [u8],
}

/// Which of two copies of a record wins when they differ (after a split, during migrations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictResolution {
    /// Higher generation, then later last-update time (Aerospike's default).
    Generation,
    /// Later last-update time, then higher generation: Petrel's default, under which writes
    /// made on one side of a split are kept even where that side held no copy before (its
    /// records start at generation 1 there).
    #[default]
    LastUpdateTime,
}

impl ConflictResolution {
    /// Whether `incoming` beats `local`; an identical copy does not. Generations compare in
    /// sequence order ([`generation_cmp`]), so a record that wrapped past 65 535 still counts
    /// as newer than its copies from before the wrap.
    pub fn incoming_wins(self, local: &RecordMeta, incoming: &RecordMeta) -> bool {
        let by_gen = generation_cmp(incoming.generation, local.generation);
        let by_lut = incoming.lut_ms.cmp(&local.lut_ms);
        let order = match self {
            ConflictResolution::Generation => by_gen.then(by_lut),
            ConflictResolution::LastUpdateTime => by_lut.then(by_gen),
        };
        order == std::cmp::Ordering::Greater
    }
}

/// Orders two generations of one record as a sequence that wraps: generations run 1..=65 535
/// and then start again at 1, so `a` is later than `b` when it is fewer than half the cycle
/// steps ahead of it. Exact as long as two copies being compared are less than 32 767 writes
/// apart, which a replica a few writes behind, or a copy overtaken in flight, always is.
pub fn generation_cmp(a: u16, b: u16) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    const CYCLE: u32 = u16::MAX as u32; // generations 1..=65535
    if a == b {
        return Ordering::Equal;
    }
    // Generation 0 means "no record" and comes before any other.
    if a == 0 || b == 0 {
        return a.cmp(&b);
    }
    let ahead = (a as u32 + CYCLE - b as u32) % CYCLE;
    if ahead < CYCLE.div_ceil(2) {
        Ordering::Greater
    } else {
        Ordering::Less
    }
}

/// What a replica did with a copy its partition's master sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaApplied {
    /// The copy is stored.
    Stored,
    /// This node already holds a later generation of the record (the copy was overtaken in
    /// flight by a later one); the later copy includes this write.
    AlreadyLater,
    /// The copy is already dead here (expired or truncated): there is nothing to keep.
    Dead,
}

impl<E: StorageEngine> Namespace<E> {
    /// Applies a copy of a record from another node during a migration or a merge: it is
    /// stored when this node has no live copy, or when the incoming copy wins under
    /// `resolution`; returns whether it was stored. The image is checked before it is
    /// stored, since it came over the network.
    ///
    /// A copy no newer than a delete of the record this node remembers (a delete mark) is
    /// not stored: it is what the delete removed, still held elsewhere.
    pub fn apply_copy(&self, copy: &RecordCopy<'_>, resolution: ConflictResolution) -> Result<bool, StorageError> {
        let outcome = self.store_copy(copy, true, |local| resolution.incoming_wins(local, &copy.meta))?;
        Ok(outcome == ReplicaApplied::Stored)
    }

    /// Applies a copy the partition's master sent for a write it just made. The master's
    /// writes to one record are a sequence whose last-update times only grow (each write
    /// takes `max(now, last + 1)`), so the copy is stored unless this node already holds a
    /// later one of that sequence (a copy overtaken in flight): later update time first, the
    /// generation (as a wrapping sequence) on a tie. Ordering by update time first also keeps
    /// a stale local copy (a delete that never reached this node, then the record created
    /// anew at generation 1) from hiding the master's newer write behind a higher generation.
    pub fn apply_replica(&self, copy: &RecordCopy<'_>) -> Result<ReplicaApplied, StorageError> {
        self.store_copy(copy, false, |local| {
            copy.meta.lut_ms.cmp(&local.lut_ms).then(generation_cmp(copy.meta.generation, local.generation)).is_ge()
        })
    }

    /// Checks a copy from the network and stores it when there is no live local copy or when
    /// `incoming_wins(local)` says so; with `respect_marks`, never when a delete of the
    /// record at or after the copy's last update is remembered.
    fn store_copy(
        &self,
        copy: &RecordCopy<'_>,
        respect_marks: bool,
        incoming_wins: impl FnOnce(&RecordMeta) -> bool,
    ) -> Result<ReplicaApplied, StorageError> {
        let image = ImageView::parse(copy.image)?;
        for bin in image.bins() {
            check_bin_name(bin?.name)?;
        }
        if copy.meta.generation == 0 {
            return Err(StorageError::Parameter("a copied record has generation 0"));
        }
        let limit = self.config.read().max_record_size_bytes;
        if copy.image.len() > limit {
            return Err(StorageError::RecordTooBig { size: copy.image.len(), limit });
        }
        let set_id = self.set_id_or_create(copy.set)?;
        let now_secs = self.clock.now_secs();
        let digest = &copy.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        // Under the sprig lock, which every delete holds while it notes its mark.
        if respect_marks && self.delete_marks.get(digest).is_some_and(|deleted| deleted >= copy.meta.lut_ms) {
            return Ok(ReplicaApplied::Dead);
        }
        let existing = self.find_live(&mut tree, digest, now_secs);
        if let Some(h) = existing {
            let local = RecordMeta::of(tree.entry(h));
            if !incoming_wins(&local) {
                return Ok(ReplicaApplied::AlreadyLater);
            }
        }
        // A copy that is already dead here (expired, truncated) is not worth storing.
        if (copy.meta.void_time != 0 && copy.meta.void_time < now_secs)
            || copy.meta.lut_ms <= self.truncate_cutoff_ms(set_id)
        {
            return Ok(ReplicaApplied::Dead);
        }
        let entry_set = existing.map_or(set_id, |h| tree.entry(h).set_id());
        let loc = self.write_image(digest, entry_set, copy.meta, copy.image)?;
        let h = self.install(&mut tree, existing, digest, set_id, loc, copy.image);
        let e = tree.entry_mut(h);
        e.generation = copy.meta.generation;
        e.void_time = copy.meta.void_time;
        e.lut_ms = copy.meta.lut_ms;
        e.set_key_stored(image.key.is_some());
        Ok(ReplicaApplied::Stored)
    }

    /// Removes a record because its master removed it at `deleted_ms` (0: not said); returns
    /// whether there was one. The delete is remembered (a mark) even where the record was
    /// missing, so that a copy of it arriving later is not stored.
    pub fn apply_delete(&self, digest: &Digest, deleted_ms: u64) -> Result<bool, StorageError> {
        let now_ms = self.clock.now_ms();
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let Some(h) = tree.find(digest) else {
            self.delete_marks.note(digest, deleted_ms);
            return Ok(false);
        };
        let lut_ms = if deleted_ms != 0 { deleted_ms } else { Self::delete_lut_ms(&tree, h, now_ms) };
        self.delete_entry(&mut tree, h, digest, lut_ms, deleted_ms)
    }

    /// Another node's delete mark: remembered, and a local copy last updated before it is
    /// deleted (durably). Returns whether a record went.
    pub fn apply_delete_mark(&self, digest: &Digest, deleted_ms: u64) -> Result<bool, StorageError> {
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        match tree.find(digest).filter(|&h| tree.entry(h).lut_ms < deleted_ms) {
            Some(h) => self.delete_entry(&mut tree, h, digest, deleted_ms, deleted_ms),
            None => {
                self.delete_marks.note(digest, deleted_ms);
                Ok(false)
            }
        }
    }

    /// When this node last saw `digest` deleted, if it remembers.
    pub fn delete_mark(&self, digest: &Digest) -> Option<u64> {
        self.delete_marks.get(digest)
    }

    /// The delete marks of partition `pid` (digest, delete time), to go with it.
    pub fn delete_marks_of(&self, pid: PartitionId) -> Vec<(Digest, u64)> {
        self.delete_marks.of_partition(pid)
    }

    /// Deletes record `digest` if it is live here with exactly `meta` (a copy found stale,
    /// unless a write changed it since it was looked at); durably, as a client's delete.
    /// Returns whether it was deleted.
    pub fn delete_if_unchanged(&self, digest: &Digest, meta: RecordMeta) -> Result<bool, StorageError> {
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let Some(h) = tree.find(digest) else { return Ok(false) };
        if RecordMeta::of(tree.entry(h)) != meta {
            return Ok(false);
        }
        // No mark, and a tombstone stamped just after the stale copy, not now: it says only
        // that this copy is dead (a cold restart must not bring it back), and a copy that
        // replaces it may carry an earlier time than this node's clock. The source's marks
        // say when records were deleted.
        let tombstone_ms = tree.entry(h).lut_ms + 1;
        self.delete_entry(&mut tree, h, digest, tombstone_ms, 0)
    }

    /// Drops every record of partition `pid` (it moved to other nodes) and gives its index and
    /// data memory back; returns how many records went.
    pub fn drop_partition(&self, pid: PartitionId) -> u64 {
        let partition = &self.partitions[pid as usize];
        self.delete_marks.clear_partition(pid);
        let mut dropped = 0;
        for sprig in 0..partition.sprigs_count() {
            let mut tree = partition.lock_sprig(sprig);
            let before = tree.arena_bytes();
            let old = std::mem::take(&mut *tree);
            let mut sets = Vec::new();
            old.visit_from(None, |e| {
                sets.push(e.set_id());
                // Under the sprig lock, so a write that follows finds its entries gone.
                self.sindexes.on_remove(&e.digest);
                true
            });
            drop(tree);
            dropped += sets.len() as u64;
            for set in sets {
                self.set_objects[set as usize].fetch_sub(1, Ordering::Relaxed);
            }
            self.counters.objects.fetch_sub(old.len() as u64, Ordering::Relaxed);
            for loc in old.into_locations() {
                self.engine.release(loc);
            }
            self.account_arena(before, 0);
        }
        dropped
    }
}
