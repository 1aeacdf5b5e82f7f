//! A namespace: the [`Namespace`] struct, its construction, and the private helpers every
//! operation on its records shares — finding a live entry, deciding whether an entry is dead
//! (`Doom`), installing a new image, dropping an entry — with the counters kept true.
//!
//! Every operation on a record runs under the lock of the record's sprig, so a
//! read-modify-write (an operate with several ops, an add) is atomic per record. Expired and
//! truncated records are invisible the moment their time has come, whatever the background
//! supervisor ([`crate::nsup`]) has or has not yet reclaimed.
//!
//! The operations live one concern a file: `config` (settings), `sets` (set names and ids),
//! `read` (read, exists), `operate` (operate, delete) over the bin-op engine in `bin_ops`,
//! `copies` (records from other nodes), `marks` (recent deletes, so older copies are not
//! taken again), `filter` (filter expressions on a locked record), `scan`,
//! `truncate`, `stats`, `snapshot` (the state a device namespace saves for a fast restart).
//! Their public types are
//! re-exported here, so every path is `petrel_storage::namespace::Name`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use petrel_proto::{Digest, PartitionId, PARTITIONS_COUNT};

use crate::clock::{Clock, SystemClock};
use crate::engine::{ImageMeta, MemoryEngine, StorageEngine};
use crate::index::{Entry, Handle, PartitionIndex, Tree};
use crate::location::Engine;
use crate::StorageError;

mod bin_ops;
mod config;
mod copies;
mod device;
mod exp_ops;
mod filter;
mod marks;
mod operate;
mod query;
mod read;
mod scan;
mod sets;
mod snapshot;
mod stats;
mod truncate;

pub use config::NamespaceConfig;
pub use copies::{generation_cmp, ConflictResolution, RecordCopy, ReplicaApplied};
pub use device::{Defragmenter, RestoreSummary};
pub use operate::OperateOutcome;
pub use query::SindexCreated;
pub use scan::{ScanProgress, ScanRecord};
pub use sets::SETS_MAX;
pub use snapshot::SnapshotSummary;
pub use stats::{NamespaceStats, SetStats};

use sets::SetTable;

/// A record's metadata as answered to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMeta {
    pub generation: u16,
    /// Expiry in seconds since the Citrusleaf epoch; 0 = never.
    pub void_time: u32,
    /// Last update, milliseconds since the Citrusleaf epoch.
    pub lut_ms: u64,
}

impl RecordMeta {
    fn of<L>(e: &Entry<L>) -> Self {
        RecordMeta { generation: e.generation, void_time: e.void_time, lut_ms: e.lut_ms }
    }
}

/// Why a record is gone before the supervisor reclaimed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Doom {
    Expired,
    Truncated,
    Evicted,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) objects: AtomicU64,
    index_bytes: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    truncated: AtomicU64,
}

/// A namespace whose record data lives in the storage engine `E`.
#[derive(Debug)]
pub struct Namespace<E: StorageEngine = Engine> {
    name: String,
    /// Settings; the dynamic ones change through [`Namespace::set_config`].
    pub(crate) config: RwLock<NamespaceConfig>,
    pub(crate) partitions: Box<[PartitionIndex<E::Loc>]>,
    pub(crate) engine: E,
    pub(crate) clock: Arc<dyn Clock>,
    sets: RwLock<SetTable>,
    /// Objects per set id (index 0 = records without a set).
    set_objects: Box<[AtomicU64]>,
    /// Truncate cutoff per set id; index 0 is the whole namespace's.
    set_truncate_lut_ms: Box<[AtomicU64]>,
    pub(crate) counters: Counters,
    pub(crate) stop_writes: AtomicBool,
    /// Secondary indexes, kept up to date wherever an image is installed or an entry dropped.
    pub(crate) sindexes: crate::sindex::Registry,
    /// Recent deletes, so older copies from other nodes are not stored again.
    pub(crate) delete_marks: marks::DeleteMarks,
}

impl Namespace<Engine> {
    /// A namespace kept in memory, on the wall clock.
    pub fn in_memory(config: NamespaceConfig) -> Result<Self, String> {
        Namespace::new(config, Engine::Memory(MemoryEngine::new()), Arc::new(SystemClock))
    }
}

impl<E: StorageEngine> Namespace<E> {
    pub fn new(config: NamespaceConfig, engine: E, clock: Arc<dyn Clock>) -> Result<Self, String> {
        config.validate()?;
        let partitions: Box<[_]> =
            (0..PARTITIONS_COUNT).map(|_| PartitionIndex::new(config.sprigs_per_partition)).collect();
        let fixed =
            PARTITIONS_COUNT * config.sprigs_per_partition * std::mem::size_of::<parking_lot::Mutex<Tree<E::Loc>>>();
        let ns = Namespace {
            partitions,
            engine,
            clock,
            sets: RwLock::new(SetTable::default()),
            set_objects: (0..=SETS_MAX).map(|_| AtomicU64::new(0)).collect(),
            set_truncate_lut_ms: (0..=SETS_MAX).map(|_| AtomicU64::new(0)).collect(),
            counters: Counters::default(),
            stop_writes: AtomicBool::new(false),
            sindexes: crate::sindex::Registry::default(),
            delete_marks: marks::DeleteMarks::new(config.delete_marks_max),
            name: config.name.clone(),
            config: RwLock::new(config),
        };
        ns.counters.index_bytes.store(fixed as u64, Ordering::Relaxed);
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The index of partition `pid`.
    pub fn partition(&self, pid: PartitionId) -> &PartitionIndex<E::Loc> {
        &self.partitions[pid as usize]
    }

    /// Bytes of memory in use: primary index, data and secondary indexes (all count toward
    /// eviction and stop-writes).
    pub fn memory_used_bytes(&self) -> u64 {
        self.counters.index_bytes.load(Ordering::Relaxed) + self.engine.data_bytes() + self.sindex_used_bytes()
    }

    /// Bytes of memory the secondary indexes take (their statistics' estimate).
    pub fn sindex_used_bytes(&self) -> u64 {
        self.sindexes.memory_used_bytes()
    }

    pub(crate) fn pct_of_memory(memory_size_bytes: u64, pct: u8) -> u64 {
        memory_size_bytes / 100 * pct as u64
    }

    /// The stop-writes mark, in bytes of memory used.
    pub(crate) fn stop_writes_bytes(&self) -> u64 {
        let c = self.config.read();
        Self::pct_of_memory(c.memory_size_bytes, c.stop_writes_used_pct)
    }

    // ---- liveness ----

    /// The truncate cut-off that covers records of set `set_id`: the later of the
    /// namespace's and the set's (ms since the Citrusleaf epoch; 0 = none).
    fn truncate_cutoff_ms(&self, set_id: u16) -> u64 {
        let ns_cut = self.set_truncate_lut_ms[0].load(Ordering::Relaxed);
        let set_cut = self.set_truncate_lut_ms[set_id as usize].load(Ordering::Relaxed);
        ns_cut.max(set_cut)
    }

    /// Why the entry is dead at `now_secs`, if it is.
    pub(crate) fn doom<L>(&self, e: &Entry<L>, now_secs: u32) -> Option<Doom> {
        if e.void_time != 0 && e.void_time < now_secs {
            return Some(Doom::Expired);
        }
        if e.lut_ms <= self.truncate_cutoff_ms(e.set_id()) {
            return Some(Doom::Truncated);
        }
        None
    }

    /// Stores `image` of record `digest` (of set `set_id`, with the metadata given) in the
    /// engine. A persistent engine gets the set name with it.
    pub(crate) fn write_image(
        &self,
        digest: &Digest,
        set_id: u16,
        meta: RecordMeta,
        image: &[u8],
    ) -> Result<E::Loc, StorageError> {
        let write = |set: &[u8]| {
            let m = ImageMeta {
                digest,
                generation: meta.generation,
                void_time: meta.void_time,
                lut_ms: meta.lut_ms,
                set,
                tombstone: false,
            };
            self.engine.write(&m, image)
        };
        if self.engine.persists() {
            self.with_set_name(set_id, write)
        } else {
            write(b"")
        }
    }

    /// The last-update time a delete of entry `h` made now takes: after the record's own.
    pub(crate) fn delete_lut_ms(tree: &Tree<E::Loc>, h: Handle, now_ms: u64) -> u64 {
        now_ms.max(tree.entry(h).lut_ms + 1)
    }

    /// Before a live entry is deleted (by a client or the partition's master): a persistent
    /// engine records the delete (made at `lut_ms`) durably, so that a cold restart does not
    /// bring the record back. Nothing is deleted when that fails.
    pub(crate) fn persist_delete(&self, tree: &Tree<E::Loc>, h: Handle, lut_ms: u64) -> Result<(), StorageError> {
        if !self.engine.persists() {
            return Ok(());
        }
        let e = tree.entry(h);
        let (digest, generation) = (e.digest, e.generation);
        self.with_set_name(e.set_id(), |set| {
            let m = ImageMeta { digest: &digest, generation, void_time: 0, lut_ms, set, tombstone: true };
            self.engine.remove(&m)
        })
    }

    /// Deletes live entry `h` of `digest`: the delete recorded durably at `tombstone_ms`, then
    /// remembered as a delete mark at `mark_ms` (0: not remembered), then the entry dropped.
    /// Nothing changes when the durable record fails.
    pub(crate) fn delete_entry(
        &self,
        tree: &mut Tree<E::Loc>,
        h: Handle,
        digest: &Digest,
        tombstone_ms: u64,
        mark_ms: u64,
    ) -> Result<bool, StorageError> {
        self.persist_delete(tree, h, tombstone_ms)?;
        self.delete_marks.note(digest, mark_ms);
        Ok(self.drop_entry(tree, digest))
    }

    /// Removes an entry from `tree` and releases its data, keeping the counters true.
    pub(crate) fn drop_entry(&self, tree: &mut Tree<E::Loc>, digest: &Digest) -> bool {
        let before = tree.arena_bytes();
        let Some(removed) = tree.remove(digest) else {
            return false;
        };
        self.sindexes.on_remove(digest);
        self.account_arena(before, tree.arena_bytes());
        if let Some(loc) = removed.loc {
            self.engine.release(loc);
        }
        self.counters.objects.fetch_sub(1, Ordering::Relaxed);
        self.set_objects[removed.set_id as usize].fetch_sub(1, Ordering::Relaxed);
        true
    }

    fn account_arena(&self, before: usize, after: usize) {
        if after > before {
            self.counters.index_bytes.fetch_add((after - before) as u64, Ordering::Relaxed);
        } else if before > after {
            self.counters.index_bytes.fetch_sub((before - after) as u64, Ordering::Relaxed);
        }
    }

    /// Puts a newly written image in place: into the existing entry (releasing the old image)
    /// or into a new entry of set `set_id`, keeping the counters and the secondary indexes
    /// true. Returns the entry.
    fn install(
        &self,
        tree: &mut Tree<E::Loc>,
        existing: Option<Handle>,
        digest: &Digest,
        set_id: u16,
        loc: E::Loc,
        image: &[u8],
    ) -> Handle {
        let h = match existing {
            Some(h) => h,
            None => {
                let before = tree.arena_bytes();
                let (h, inserted) = tree.find_or_insert(digest);
                debug_assert!(inserted);
                self.account_arena(before, tree.arena_bytes());
                self.counters.objects.fetch_add(1, Ordering::Relaxed);
                self.set_objects[set_id as usize].fetch_add(1, Ordering::Relaxed);
                tree.entry_mut(h).set_set_id(set_id);
                h
            }
        };
        let e = tree.entry_mut(h);
        if let Some(old) = e.loc.replace(loc) {
            self.engine.release(old);
        }
        e.data_size = image.len() as u32;
        let entry_set = e.set_id();
        self.sindexes.on_write(digest, entry_set, image);
        h
    }

    /// Finds the live entry for `digest`, reclaiming it on the spot if it is dead.
    fn find_live(&self, tree: &mut Tree<E::Loc>, digest: &Digest, now_secs: u32) -> Option<Handle> {
        let h = tree.find(digest)?;
        match self.doom(tree.entry(h), now_secs) {
            None => Some(h),
            Some(doom) => {
                self.drop_entry(tree, digest);
                self.count_doom(doom);
                None
            }
        }
    }

    /// Counts a record that went for `doom`.
    pub(crate) fn count_doom(&self, doom: Doom) {
        let c = match doom {
            Doom::Expired => &self.counters.expired,
            Doom::Truncated => &self.counters.truncated,
            Doom::Evicted => &self.counters.evicted,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}
