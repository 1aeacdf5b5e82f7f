//! A namespace: its configuration, its 4096 partition indexes, its sets, its statistics, and
//! the single-record operations (read, operate, delete), scans and truncation over them.
//!
//! Every operation on a record runs under the lock of the record's sprig, so a
//! read-modify-write (an operate with several ops, an add) is atomic per record. Expired and
//! truncated records are invisible the moment their time has come, whatever the background
//! supervisor has or has not yet reclaimed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use petrel_proto::wire::SET_NAME_LEN_MAX;
use petrel_proto::{Digest, ParticleType, PartitionId, PARTITIONS_COUNT};

use crate::cdt;
use crate::clock::{Clock, SystemClock};
use crate::engine::{MemoryEngine, StorageEngine, IMAGE_SIZE_MAX};
use crate::index::{Entry, PartitionIndex, Tree};
use crate::ops::{ExistsAction, GenerationPolicy, Op, OpResult, OperateRequest, ReadSelect, Ttl};
use crate::record::{self, BinRef, ImageView};
use crate::value::{check_bin_name, int_from_wire, prepare_for_store, Particle, ParticleRef};
use crate::StorageError;

/// Most sets a namespace may hold (set ids are 12 bits; 0 means "no set").
pub const SETS_MAX: usize = 4095;

/// A namespace's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceConfig {
    pub name: String,
    /// Copies of each partition the cluster keeps.
    pub replication_factor: u8,
    /// TTL of writes that ask for the namespace default; 0 = never expire.
    pub default_ttl_secs: u32,
    /// Memory the namespace may use for index and data.
    pub memory_size_bytes: u64,
    /// Above this share of `memory_size_bytes` the supervisor evicts the records nearest to
    /// expiry; 0 disables eviction.
    pub evict_used_pct: u8,
    /// At or above this share of `memory_size_bytes` client writes fail with OUT_OF_SPACE.
    pub stop_writes_used_pct: u8,
    /// Largest record image, overhead included.
    pub max_record_size_bytes: usize,
    /// Sprigs per partition, a power of two.
    pub sprigs_per_partition: usize,
    /// Seconds between supervisor passes (expiry, truncation, eviction).
    pub nsup_period_secs: u32,
}

impl NamespaceConfig {
    /// The defaults for a namespace called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        NamespaceConfig {
            name: name.into(),
            replication_factor: 2,
            default_ttl_secs: 0,
            memory_size_bytes: 4 << 30,
            evict_used_pct: 60,
            stop_writes_used_pct: 90,
            max_record_size_bytes: 1 << 20,
            sprigs_per_partition: 8,
            nsup_period_secs: 1,
        }
    }

    /// Checks the settings, naming the first one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() || self.name.len() > petrel_proto::wire::NAMESPACE_NAME_LEN_MAX {
            return Err(format!("namespace name {:?} must be 1 to 31 bytes", self.name));
        }
        if self.replication_factor == 0 {
            return Err("replication-factor must be at least 1".into());
        }
        if self.default_ttl_secs > petrel_proto::wire::TTL_SECS_MAX {
            return Err("default-ttl must be at most 10 years".into());
        }
        if self.evict_used_pct > 100 || self.stop_writes_used_pct == 0 || self.stop_writes_used_pct > 100 {
            return Err("evict-used-pct must be 0..=100 and stop-writes-used-pct 1..=100".into());
        }
        if self.max_record_size_bytes < 64 || self.max_record_size_bytes > IMAGE_SIZE_MAX {
            return Err(format!("max-record-size must be 64 bytes to {IMAGE_SIZE_MAX} bytes"));
        }
        if !self.sprigs_per_partition.is_power_of_two()
            || self.sprigs_per_partition > crate::index::SPRIGS_PER_PARTITION_MAX
        {
            return Err("partition-tree-sprigs must be a power of two up to 65536".into());
        }
        if self.nsup_period_secs == 0 {
            return Err("nsup-period must be at least 1 second".into());
        }
        Ok(())
    }
}

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

/// What an operate answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperateOutcome {
    /// The record's metadata after the ops (zeros when the ops deleted it).
    pub meta: RecordMeta,
    pub results: Vec<OpResult>,
    /// The record's new image when the ops wrote one (what replicas are sent); `None` when
    /// nothing was written or the record was removed.
    pub image: Option<Vec<u8>>,
}

/// A record handed to a scan callback.
#[derive(Debug)]
pub struct ScanRecord<'a> {
    pub digest: Digest,
    pub meta: RecordMeta,
    pub set_id: u16,
    pub image: ImageView<'a>,
    /// The image's bytes, as stored.
    pub raw: &'a [u8],
}

/// Where a scan of one partition stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProgress {
    /// Digest of the last record handed over; resume after it.
    pub last: Option<Digest>,
    /// Records handed over.
    pub returned: usize,
    /// True when the partition was walked to its end.
    pub complete: bool,
}

/// A snapshot of a namespace's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceStats {
    pub objects: u64,
    pub index_bytes: u64,
    pub data_bytes: u64,
    pub expired_objects: u64,
    pub evicted_objects: u64,
    pub truncated_objects: u64,
    pub stop_writes: bool,
    pub memory_size_bytes: u64,
    /// Per set: name, objects, truncate cutoff (ms since the Citrusleaf epoch, 0 = none).
    pub sets: Vec<SetStats>,
}

/// One set's statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct SetStats {
    pub name: String,
    pub objects: u64,
    pub truncate_lut_ms: u64,
}

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
    #[default]
    Generation,
    /// Later last-update time, then higher generation.
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

/// Why a record is gone before the supervisor reclaimed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doom {
    Expired,
    Truncated,
    Evicted,
}

#[derive(Debug, Default)]
struct SetTable {
    by_name: HashMap<Vec<u8>, u16>,
    /// Index `id - 1`.
    names: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Counters {
    objects: AtomicU64,
    index_bytes: AtomicU64,
    expired: AtomicU64,
    evicted: AtomicU64,
    truncated: AtomicU64,
}

/// A namespace whose record data lives in the storage engine `E`.
#[derive(Debug)]
pub struct Namespace<E: StorageEngine = MemoryEngine> {
    name: String,
    /// Settings; the dynamic ones change through [`Namespace::set_config`].
    config: RwLock<NamespaceConfig>,
    partitions: Box<[PartitionIndex<E::Loc>]>,
    engine: E,
    clock: Arc<dyn Clock>,
    sets: RwLock<SetTable>,
    /// Objects per set id (index 0 = records without a set).
    set_objects: Box<[AtomicU64]>,
    /// Truncate cutoff per set id; index 0 is the whole namespace's.
    set_truncate_lut_ms: Box<[AtomicU64]>,
    counters: Counters,
    stop_writes: AtomicBool,
}

impl Namespace<MemoryEngine> {
    /// A namespace kept in memory, on the wall clock.
    pub fn in_memory(config: NamespaceConfig) -> Result<Self, String> {
        Namespace::new(config, MemoryEngine::new(), Arc::new(SystemClock))
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
            name: config.name.clone(),
            config: RwLock::new(config),
        };
        ns.counters.index_bytes.store(fixed as u64, Ordering::Relaxed);
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A copy of the current settings.
    pub fn config(&self) -> NamespaceConfig {
        self.config.read().clone()
    }

    /// Changes a dynamic setting (names as in the configuration file, `-` or `_`); the whole
    /// configuration is validated again before the change takes effect.
    pub fn set_config(&self, key: &str, value: &str) -> Result<(), String> {
        let mut next = self.config();
        let parse_err = |_| format!("{key}: {value:?} is not a valid number");
        match key.replace('-', "_").as_str() {
            "default_ttl" => next.default_ttl_secs = value.parse().map_err(parse_err)?,
            "evict_used_pct" => next.evict_used_pct = value.parse().map_err(parse_err)?,
            "stop_writes_used_pct" => next.stop_writes_used_pct = value.parse().map_err(parse_err)?,
            "max_record_size" => next.max_record_size_bytes = value.parse().map_err(parse_err)?,
            "memory_size" => next.memory_size_bytes = value.parse().map_err(parse_err)?,
            "nsup_period" => next.nsup_period_secs = value.parse().map_err(parse_err)?,
            _ => return Err(format!("{key} is not a dynamic namespace setting")),
        }
        next.validate()?;
        *self.config.write() = next;
        Ok(())
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The index of partition `pid`.
    pub fn partition(&self, pid: PartitionId) -> &PartitionIndex<E::Loc> {
        &self.partitions[pid as usize]
    }

    /// Bytes of memory in use: index plus data.
    pub fn memory_used_bytes(&self) -> u64 {
        self.counters.index_bytes.load(Ordering::Relaxed) + self.engine.data_bytes()
    }

    fn pct_of_memory(memory_size_bytes: u64, pct: u8) -> u64 {
        memory_size_bytes / 100 * pct as u64
    }

    /// The stop-writes mark, in bytes of memory used.
    fn stop_writes_bytes(&self) -> u64 {
        let c = self.config.read();
        Self::pct_of_memory(c.memory_size_bytes, c.stop_writes_used_pct)
    }

    // ---- sets ----

    /// The id of set `name`, if it exists.
    pub fn set_id(&self, name: &[u8]) -> Option<u16> {
        if name.is_empty() {
            return Some(0);
        }
        self.sets.read().by_name.get(name).copied()
    }

    /// The name of set `id`.
    pub fn set_name(&self, id: u16) -> Option<Vec<u8>> {
        let table = self.sets.read();
        table.names.get((id as usize).checked_sub(1)?).cloned()
    }

    fn set_id_or_create(&self, name: &[u8]) -> Result<u16, StorageError> {
        if name.is_empty() {
            return Ok(0);
        }
        if name.len() > SET_NAME_LEN_MAX {
            return Err(StorageError::Parameter("set name is longer than 63 bytes"));
        }
        if let Some(id) = self.sets.read().by_name.get(name) {
            return Ok(*id);
        }
        let mut table = self.sets.write();
        if let Some(id) = table.by_name.get(name) {
            return Ok(*id);
        }
        if table.names.len() >= SETS_MAX {
            return Err(StorageError::Forbidden("namespace already holds 4095 sets"));
        }
        table.names.push(name.to_vec());
        let id = table.names.len() as u16;
        table.by_name.insert(name.to_vec(), id);
        Ok(id)
    }

    // ---- liveness ----

    fn doom<L>(&self, e: &Entry<L>, now_secs: u32) -> Option<Doom> {
        if e.void_time != 0 && e.void_time < now_secs {
            return Some(Doom::Expired);
        }
        let ns_cut = self.set_truncate_lut_ms[0].load(Ordering::Relaxed);
        let set_cut = self.set_truncate_lut_ms[e.set_id() as usize].load(Ordering::Relaxed);
        if e.lut_ms <= ns_cut.max(set_cut) {
            return Some(Doom::Truncated);
        }
        None
    }

    /// Removes an entry from `tree` and releases its data, keeping the counters true.
    fn drop_entry(&self, tree: &mut Tree<E::Loc>, digest: &Digest) -> bool {
        let before = tree.arena_bytes();
        let Some(removed) = tree.remove(digest) else {
            return false;
        };
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
    /// or into a new entry of set `set_id`, keeping the counters true. Returns the entry.
    fn install(
        &self,
        tree: &mut Tree<E::Loc>,
        existing: Option<crate::index::Handle>,
        digest: &Digest,
        set_id: u16,
        loc: E::Loc,
        data_size: usize,
    ) -> crate::index::Handle {
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
        e.data_size = data_size as u32;
        h
    }

    /// Finds the live entry for `digest`, reclaiming it on the spot if it is dead.
    fn find_live(&self, tree: &mut Tree<E::Loc>, digest: &Digest, now_secs: u32) -> Option<crate::index::Handle> {
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

    fn count_doom(&self, doom: Doom) {
        let c = match doom {
            Doom::Expired => &self.counters.expired,
            Doom::Truncated => &self.counters.truncated,
            Doom::Evicted => &self.counters.evicted,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    fn void_time_for(ttl: Ttl, existing: Option<u32>, now_secs: u32, default_ttl_secs: u32) -> u32 {
        let secs = match ttl {
            Ttl::Never => return 0,
            Ttl::KeepExisting => match existing {
                Some(v) => return v,
                None => default_ttl_secs,
            },
            Ttl::NamespaceDefault => default_ttl_secs,
            Ttl::Secs(s) => s,
        };
        if secs == 0 {
            0
        } else {
            now_secs.saturating_add(secs)
        }
    }

    // ---- reads ----

    /// Reads a record, handing each selected bin to `sink` while the record is locked (so a
    /// caller can copy it straight into its answer).
    pub fn read(
        &self,
        digest: &Digest,
        select: ReadSelect<'_>,
        mut sink: impl FnMut(BinRef<'_>),
    ) -> Result<RecordMeta, StorageError> {
        let now_secs = self.clock.now_secs();
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, now_secs).ok_or(StorageError::NotFound)?;
        let entry = tree.entry(h);
        let meta = RecordMeta::of(entry);
        if matches!(select, ReadSelect::NoBins) {
            return Ok(meta);
        }
        let mut scratch = Vec::new();
        let loc = entry.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let image = ImageView::parse(self.engine.read(loc, &mut scratch)?)?;
        for bin in image.bins() {
            let bin = bin?;
            let wanted = match select {
                ReadSelect::All => true,
                ReadSelect::Bins(names) => names.contains(&bin.name),
                ReadSelect::NoBins => false,
            };
            if wanted {
                sink(bin);
            }
        }
        Ok(meta)
    }

    /// Whether a live record exists, and its metadata.
    pub fn exists(&self, digest: &Digest) -> Result<RecordMeta, StorageError> {
        self.read(digest, ReadSelect::NoBins, |_| {})
    }

    // ---- writes ----

    // ---- copies from other nodes (replication, migration) ----

    /// Applies a copy of a record from another node during a migration or a merge: it is
    /// stored when this node has no live copy, or when the incoming copy wins under
    /// `resolution`; returns whether it was stored. The image is checked before it is
    /// stored, since it came over the network.
    pub fn apply_copy(&self, copy: &RecordCopy<'_>, resolution: ConflictResolution) -> Result<bool, StorageError> {
        let outcome = self.store_copy(copy, |local| resolution.incoming_wins(local, &copy.meta))?;
        Ok(outcome == ReplicaApplied::Stored)
    }

    /// Applies a copy the partition's master sent for a write it just made. The master's
    /// writes to one record are a sequence, so the copy is stored unless this node already
    /// holds a later generation of it (a copy overtaken in flight); there is no conflict to
    /// resolve on this path.
    pub fn apply_replica(&self, copy: &RecordCopy<'_>) -> Result<ReplicaApplied, StorageError> {
        self.store_copy(copy, |local| generation_cmp(copy.meta.generation, local.generation).is_ge())
    }

    /// Checks a copy from the network and stores it when there is no live local copy or when
    /// `incoming_wins(local)` says so.
    fn store_copy(
        &self,
        copy: &RecordCopy<'_>,
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
        let existing = self.find_live(&mut tree, digest, now_secs);
        if let Some(h) = existing {
            let local = RecordMeta::of(tree.entry(h));
            if !incoming_wins(&local) {
                return Ok(ReplicaApplied::AlreadyLater);
            }
        }
        // A copy that is already dead here (expired, truncated) is not worth storing.
        if (copy.meta.void_time != 0 && copy.meta.void_time < now_secs)
            || copy.meta.lut_ms
                <= self.set_truncate_lut_ms[0]
                    .load(Ordering::Relaxed)
                    .max(self.set_truncate_lut_ms[set_id as usize].load(Ordering::Relaxed))
        {
            return Ok(ReplicaApplied::Dead);
        }
        let loc = self.engine.write(digest, copy.image)?;
        let h = self.install(&mut tree, existing, digest, set_id, loc, copy.image.len());
        let e = tree.entry_mut(h);
        e.generation = copy.meta.generation;
        e.void_time = copy.meta.void_time;
        e.lut_ms = copy.meta.lut_ms;
        e.set_key_stored(image.key.is_some());
        Ok(ReplicaApplied::Stored)
    }

    /// Removes a record because its master removed it; returns whether there was one.
    pub fn apply_delete(&self, digest: &Digest) -> bool {
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        self.drop_entry(&mut tree, digest)
    }

    /// Drops every record of partition `pid` (it moved to other nodes) and gives its index and
    /// data memory back; returns how many records went.
    pub fn drop_partition(&self, pid: PartitionId) -> u64 {
        let partition = &self.partitions[pid as usize];
        let mut dropped = 0;
        for sprig in 0..partition.sprigs_count() {
            let mut tree = partition.lock_sprig(sprig);
            let before = tree.arena_bytes();
            let old = std::mem::take(&mut *tree);
            drop(tree);
            let mut sets = Vec::new();
            old.visit_from(None, |e| {
                sets.push(e.set_id());
                true
            });
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

    /// Deletes a record.
    pub fn delete(&self, digest: &Digest, generation: GenerationPolicy) -> Result<(), StorageError> {
        let now_secs = self.clock.now_secs();
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, now_secs).ok_or(StorageError::NotFound)?;
        generation.check(tree.entry(h).generation)?;
        self.drop_entry(&mut tree, digest);
        Ok(())
    }

    /// Applies `req.ops` to one record atomically.
    pub fn operate(&self, req: &OperateRequest<'_>) -> Result<OperateOutcome, StorageError> {
        let has_write = req.ops.iter().any(Op::is_write);
        for op in req.ops {
            if op.is_write() {
                if !matches!(op, Op::Touch | Op::DeleteRecord) {
                    check_bin_name(op.bin())?;
                }
            } else if op.bin().len() > petrel_proto::wire::BIN_NAME_LEN_MAX {
                return Err(StorageError::BinName("bin name is longer than 15 bytes"));
            }
        }
        if req.set.len() > SET_NAME_LEN_MAX {
            return Err(StorageError::Parameter("set name is longer than 63 bytes"));
        }
        if !has_write {
            return self.operate_read_only(req);
        }
        // One look at the settings for the whole write.
        let (max_record_size, default_ttl_secs, stop_writes_bytes) = {
            let c = self.config.read();
            (
                c.max_record_size_bytes,
                c.default_ttl_secs,
                Self::pct_of_memory(c.memory_size_bytes, c.stop_writes_used_pct),
            )
        };
        if self.memory_used_bytes() >= stop_writes_bytes {
            self.stop_writes.store(true, Ordering::Relaxed);
            return Err(StorageError::OutOfSpace);
        }
        let set_id = self.set_id_or_create(req.set)?;
        let now_ms = self.clock.now_ms();
        let now_secs = (now_ms / 1000) as u32;
        let digest = &req.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let existing = self.find_live(&mut tree, digest, now_secs);

        let policy = req.policy;
        match (policy.exists, existing) {
            (ExistsAction::UpdateOnly | ExistsAction::ReplaceOnly, None) => return Err(StorageError::NotFound),
            (ExistsAction::CreateOnly, Some(_)) => return Err(StorageError::RecordExists),
            _ => {}
        }
        if let Some(h) = existing {
            policy.generation.check(tree.entry(h).generation)?;
        }
        let replace = matches!(policy.exists, ExistsAction::Replace | ExistsAction::ReplaceOnly);

        // Phase 1: compute the new image and the results while the old image is borrowed.
        let mut scratch = Vec::new();
        let mut new_image = Vec::new();
        // Most records have a few bins: keep the working list on the stack.
        let mut results = Vec::new();
        let (old_void_time, keep_key_stored, bins_left) = {
            let (old_image, old_void) = match existing {
                Some(h) => {
                    let e = tree.entry(h);
                    let loc = e.loc().ok_or(StorageError::Internal("live entry without data"))?;
                    (Some(ImageView::parse(self.engine.read(loc, &mut scratch)?)?), Some(e.void_time))
                }
                None => (None, None),
            };
            let stored_key = old_image.and_then(|i| i.key);
            if let (Some(sent), Some(stored)) = (req.key, stored_key) {
                if sent != stored {
                    return Err(StorageError::KeyMismatch);
                }
            }
            let key = stored_key.or(req.key);
            let mut bins: WorkBins<'_> = WorkBins::new();
            if let (Some(img), false) = (old_image, replace) {
                bins.reserve(img.bins_count() + req.ops.len());
                for b in img.bins() {
                    let b = b?;
                    bins.push(WorkBin {
                        name: b.name,
                        particle: b.value.particle,
                        value: CowBytes::Borrowed(b.value.bytes),
                    });
                }
            }
            for op in req.ops {
                apply_op(op, &mut bins, &mut results, policy.respond_all_ops)?;
            }
            if !bins.is_empty() {
                let size = record::encoded_len(key, bins.iter().map(|b| (b.name, b.value.len())));
                if size > max_record_size {
                    return Err(StorageError::RecordTooBig { size, limit: max_record_size });
                }
                new_image.reserve_exact(size);
                record::encode(&mut new_image, key, bins.iter().map(|b| (b.name, b.particle, b.value.as_slice())))?;
            }
            (old_void, key.is_some(), !bins.is_empty())
        };

        // Phase 2: install the new image.
        if !bins_left {
            return match existing {
                Some(_) => {
                    self.drop_entry(&mut tree, digest);
                    Ok(OperateOutcome { meta: RecordMeta::default(), results, image: None })
                }
                // Nothing to create: the ops left no bins on a record that did not exist.
                None => Err(StorageError::NotFound),
            };
        }
        let loc = self.engine.write(digest, &new_image)?;
        let void_time = Self::void_time_for(policy.ttl, old_void_time, now_secs, default_ttl_secs);
        let h = self.install(&mut tree, existing, digest, set_id, loc, new_image.len());
        let e = tree.entry_mut(h);
        e.generation = next_generation(e.generation);
        e.void_time = void_time;
        // A write is always newer than the last update and than any truncate cut-off that
        // covers it, even within the millisecond of a truncate.
        let cutoff = self.set_truncate_lut_ms[0]
            .load(Ordering::Relaxed)
            .max(self.set_truncate_lut_ms[e.set_id() as usize].load(Ordering::Relaxed));
        e.lut_ms = now_ms.max(e.lut_ms + 1).max(cutoff + 1);
        e.set_key_stored(keep_key_stored);
        Ok(OperateOutcome { meta: RecordMeta::of(e), results, image: Some(new_image) })
    }

    fn operate_read_only(&self, req: &OperateRequest<'_>) -> Result<OperateOutcome, StorageError> {
        let now_secs = self.clock.now_secs();
        let digest = &req.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, now_secs).ok_or(StorageError::NotFound)?;
        let e = tree.entry(h);
        let mut scratch = Vec::new();
        let loc = e.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let image = ImageView::parse(self.engine.read(loc, &mut scratch)?)?;
        let mut bins: WorkBins<'_> = WorkBins::with_capacity(image.bins_count());
        for b in image.bins() {
            let b = b?;
            bins.push(WorkBin { name: b.name, particle: b.value.particle, value: CowBytes::Borrowed(b.value.bytes) });
        }
        let mut results = Vec::new();
        for op in req.ops {
            apply_op(op, &mut bins, &mut results, req.policy.respond_all_ops)?;
        }
        Ok(OperateOutcome { meta: RecordMeta::of(e), results, image: None })
    }

    // ---- scans ----

    /// Walks partition `pid` in ascending digest order from just after `after`, handing at
    /// most `limit` live records (of set `set_id`, when given) to `visit` until it returns
    /// false. Records are copied out a small batch at a time, so no sprig lock is held while
    /// `visit` runs.
    pub fn scan_partition(
        &self,
        pid: PartitionId,
        after: Option<Digest>,
        set_id: Option<u16>,
        limit: usize,
        mut visit: impl FnMut(&ScanRecord<'_>) -> bool,
    ) -> Result<ScanProgress, StorageError> {
        const BATCH: usize = 64;
        let partition = &self.partitions[pid as usize];
        let mut progress = ScanProgress { last: after, returned: 0, complete: false };
        let first_sprig = after.map_or(0, |d| partition.sprig_index(&d));
        let mut batch: Vec<(Digest, RecordMeta, u16, std::ops::Range<usize>)> = Vec::with_capacity(BATCH);
        let mut bytes: Vec<u8> = Vec::new();
        let mut scratch = Vec::new();
        for sprig in first_sprig..partition.sprigs_count() {
            loop {
                if progress.returned >= limit {
                    return Ok(progress);
                }
                let want = BATCH.min(limit - progress.returned);
                batch.clear();
                bytes.clear();
                let mut exhausted = true;
                {
                    let tree = partition.lock_sprig(sprig);
                    let now_secs = self.clock.now_secs();
                    let mut failure = None;
                    let start = progress.last;
                    tree.visit_from(start.as_ref(), |e| {
                        if batch.len() == want {
                            exhausted = false;
                            return false;
                        }
                        if self.doom(e, now_secs).is_some() || set_id.is_some_and(|s| s != e.set_id()) {
                            // Skipped, but the cursor still moves past it.
                            progress.last = Some(e.digest);
                            return true;
                        }
                        let Some(loc) = e.loc() else { return true };
                        match self.engine.read(loc, &mut scratch) {
                            Ok(image) => {
                                let start = bytes.len();
                                bytes.extend_from_slice(image);
                                batch.push((e.digest, RecordMeta::of(e), e.set_id(), start..bytes.len()));
                                true
                            }
                            Err(err) => {
                                failure = Some(err);
                                false
                            }
                        }
                    });
                    if let Some(err) = failure {
                        return Err(err);
                    }
                }
                for (digest, meta, set, range) in &batch {
                    progress.last = Some(*digest);
                    progress.returned += 1;
                    let raw = &bytes[range.clone()];
                    let image = ImageView::parse(raw)?;
                    let rec = ScanRecord { digest: *digest, meta: *meta, set_id: *set, image, raw };
                    if !visit(&rec) {
                        return Ok(progress);
                    }
                }
                if exhausted {
                    break;
                }
            }
        }
        progress.complete = true;
        Ok(progress)
    }

    // ---- truncation and reclamation ----

    /// Logically deletes every record of `set` (or of the whole namespace when `None`) last
    /// updated at or before `before_ms` (default: now). Takes effect at once; the supervisor
    /// reclaims the memory.
    pub fn truncate(&self, set: Option<&[u8]>, before_ms: Option<u64>) -> Result<(), StorageError> {
        let now = self.clock.now_ms();
        let cutoff = before_ms.map_or(now, |b| b.min(now));
        let id = match set {
            None => 0,
            Some(name) => self.set_id(name).ok_or(StorageError::Parameter("no such set"))?,
        };
        self.set_truncate_lut_ms[id as usize].fetch_max(cutoff, Ordering::Relaxed);
        Ok(())
    }

    /// Removes every expired or truncated record; returns how many went. Holds each sprig
    /// lock for at most one bounded batch at a time.
    pub fn reclaim_dead(&self) -> u64 {
        let mut reclaimed = 0;
        self.sweep(|ns, e, now_secs| ns.doom(e, now_secs), &mut |ns, doom| {
            ns.count_doom(doom);
            reclaimed += 1;
        });
        reclaimed
    }

    fn sweep(
        &self,
        mut pick: impl FnMut(&Self, &Entry<E::Loc>, u32) -> Option<Doom>,
        on_drop: &mut dyn FnMut(&Self, Doom),
    ) {
        const BATCH: usize = 256;
        let mut doomed: Vec<(Digest, Doom)> = Vec::with_capacity(BATCH);
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                let mut after: Option<Digest> = None;
                loop {
                    let mut tree = partition.lock_sprig(sprig);
                    let now_secs = self.clock.now_secs();
                    doomed.clear();
                    let mut more = false;
                    let start = after;
                    tree.visit_from(start.as_ref(), |e| {
                        if doomed.len() == BATCH {
                            more = true;
                            return false;
                        }
                        after = Some(e.digest);
                        if let Some(d) = pick(self, e, now_secs) {
                            doomed.push((e.digest, d));
                        }
                        true
                    });
                    for (digest, doom) in &doomed {
                        if self.drop_entry(&mut tree, digest) {
                            on_drop(self, *doom);
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
    }

    /// If memory use is above the eviction mark, evicts the records nearest to expiry until it
    /// is below (or nothing evictable is left); returns how many were evicted. Records that
    /// never expire are never evicted.
    pub fn evict_if_needed(&self) -> u64 {
        const ROUNDS_MAX: usize = 8;
        let mut evicted = 0;
        for _ in 0..ROUNDS_MAX {
            match self.evict_round() {
                0 => break,
                n => evicted += n,
            }
        }
        evicted
    }

    fn evict_round(&self) -> u64 {
        let mark = {
            let c = self.config.read();
            if c.evict_used_pct == 0 {
                return 0;
            }
            Self::pct_of_memory(c.memory_size_bytes, c.evict_used_pct)
        };
        let used = self.memory_used_bytes();
        if used <= mark {
            return 0;
        }
        let need = used - mark;
        // One pass builds a histogram of data bytes by void time; the cutoff is the smallest
        // void time below which enough bytes lie. Only data counts: a freed index slot stays
        // in its sprig's arena for reuse.
        const BUCKETS: usize = 10_000;
        let now = self.clock.now_secs();
        let mut max_void = now;
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                partition.lock_sprig(sprig).visit_from(None, |e| {
                    max_void = max_void.max(e.void_time);
                    true
                });
            }
        }
        let span = (max_void - now) as u64 + 1;
        let width = span.div_ceil(BUCKETS as u64).max(1);
        let mut hist = vec![0u64; BUCKETS];
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                partition.lock_sprig(sprig).visit_from(None, |e| {
                    if e.void_time != 0 && e.void_time >= now {
                        let b = (((e.void_time - now) as u64) / width).min(BUCKETS as u64 - 1);
                        hist[b as usize] += e.data_size as u64;
                    }
                    true
                });
            }
        }
        let mut sum = 0u64;
        let mut cutoff_bucket = None;
        for (i, bytes) in hist.iter().enumerate() {
            sum += bytes;
            if sum >= need {
                cutoff_bucket = Some(i);
                break;
            }
        }
        // Every evictable record goes when even all of them do not free enough.
        let last_bucket = cutoff_bucket.unwrap_or(BUCKETS - 1) as u64;
        let cutoff = now as u64 + (last_bucket + 1) * width;
        let mut evicted = 0u64;
        self.sweep(
            |ns, e, now_secs| {
                if let Some(d) = ns.doom(e, now_secs) {
                    return Some(d);
                }
                (e.void_time != 0 && (e.void_time as u64) < cutoff).then_some(Doom::Evicted)
            },
            &mut |ns, doom| {
                ns.count_doom(doom);
                evicted += u64::from(doom == Doom::Evicted);
            },
        );
        evicted
    }

    /// One supervisor pass: reclaim dead records, evict if above the mark, refresh the
    /// stop-writes state.
    pub fn supervise(&self) {
        self.reclaim_dead();
        self.evict_if_needed();
        let stop = self.memory_used_bytes() >= self.stop_writes_bytes();
        self.stop_writes.store(stop, Ordering::Relaxed);
    }

    // ---- statistics ----

    pub fn objects(&self) -> u64 {
        self.counters.objects.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> NamespaceStats {
        let table = self.sets.read();
        let sets = table
            .names
            .iter()
            .enumerate()
            .map(|(i, name)| SetStats {
                name: String::from_utf8_lossy(name).into_owned(),
                objects: self.set_objects[i + 1].load(Ordering::Relaxed),
                truncate_lut_ms: self.set_truncate_lut_ms[i + 1].load(Ordering::Relaxed),
            })
            .collect();
        NamespaceStats {
            objects: self.objects(),
            index_bytes: self.counters.index_bytes.load(Ordering::Relaxed),
            data_bytes: self.engine.data_bytes(),
            expired_objects: self.counters.expired.load(Ordering::Relaxed),
            evicted_objects: self.counters.evicted.load(Ordering::Relaxed),
            truncated_objects: self.counters.truncated.load(Ordering::Relaxed),
            stop_writes: self.stop_writes.load(Ordering::Relaxed),
            memory_size_bytes: self.config.read().memory_size_bytes,
            sets,
        }
    }
}

fn next_generation(g: u16) -> u16 {
    // Generation 0 means "no record"; it wraps from 65535 back to 1.
    if g == u16::MAX {
        1
    } else {
        g + 1
    }
}

/// Bytes borrowed from the old image or owned after a change.
#[derive(Debug)]
enum CowBytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl CowBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            CowBytes::Borrowed(b) => b,
            CowBytes::Owned(v) => v,
        }
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// The bins of a record being worked on; inline up to 8.
type WorkBins<'a> = smallvec::SmallVec<[WorkBin<'a>; 8]>;

/// A bin being worked on by an operate.
#[derive(Debug)]
struct WorkBin<'a> {
    name: &'a [u8],
    particle: u8,
    value: CowBytes<'a>,
}

impl WorkBin<'_> {
    fn particle_ref(&self) -> ParticleRef<'_> {
        ParticleRef { particle: self.particle, bytes: self.value.as_slice() }
    }
    fn to_particle(&self) -> Particle {
        Particle { particle: self.particle, bytes: self.value.as_slice().to_vec() }
    }
}

fn find_bin(bins: &[WorkBin<'_>], name: &[u8]) -> Option<usize> {
    bins.iter().position(|b| b.name == name)
}

fn set_bin<'a>(bins: &mut WorkBins<'a>, name: &'a [u8], particle: u8, value: CowBytes<'a>) -> Result<(), StorageError> {
    match find_bin(bins, name) {
        Some(i) => {
            bins[i].particle = particle;
            bins[i].value = value;
        }
        None => {
            if bins.len() >= record::BINS_MAX {
                return Err(StorageError::Parameter("too many bins"));
            }
            bins.push(WorkBin { name, particle, value });
        }
    }
    Ok(())
}

fn apply_op<'a>(
    op: &Op<'a>,
    bins: &mut WorkBins<'a>,
    results: &mut Vec<OpResult>,
    respond_all: bool,
) -> Result<(), StorageError> {
    let op_type = op.op_type();
    let write_ack = |results: &mut Vec<OpResult>, bin: &[u8]| {
        if respond_all {
            results.push(OpResult { op_type, bin: bin.to_vec(), value: None });
        }
    };
    match *op {
        Op::Read { bin } => {
            if bin.is_empty() {
                for b in bins.iter() {
                    results.push(OpResult { op_type, bin: b.name.to_vec(), value: Some(b.to_particle()) });
                }
            } else {
                match find_bin(bins, bin) {
                    Some(i) => {
                        results.push(OpResult { op_type, bin: bin.to_vec(), value: Some(bins[i].to_particle()) })
                    }
                    None if respond_all => results.push(OpResult { op_type, bin: bin.to_vec(), value: None }),
                    None => {}
                }
            }
        }
        Op::Write { bin, value } => {
            if value.particle == ParticleType::Null as u8 {
                bins.retain(|b| b.name != bin);
            } else {
                let stored = match prepare_for_store(value)? {
                    std::borrow::Cow::Borrowed(b) => CowBytes::Borrowed(b),
                    std::borrow::Cow::Owned(v) => CowBytes::Owned(v),
                };
                set_bin(bins, bin, value.particle, stored)?;
            }
            write_ack(results, bin);
        }
        Op::Add { bin, value } => {
            let current = find_bin(bins, bin).map(|i| bins[i].particle_ref());
            let (particle, bytes) = add_values(current, value)?;
            set_bin(bins, bin, particle, CowBytes::Owned(bytes))?;
            write_ack(results, bin);
        }
        Op::Append { bin, value } | Op::Prepend { bin, value } => {
            let t = value.particle;
            if t != ParticleType::String as u8 && t != ParticleType::Blob as u8 {
                return Err(StorageError::IncompatibleType);
            }
            match find_bin(bins, bin) {
                Some(i) => {
                    if bins[i].particle != t {
                        return Err(StorageError::IncompatibleType);
                    }
                    let old = bins[i].value.as_slice();
                    let mut joined = Vec::with_capacity(old.len() + value.bytes.len());
                    if matches!(op, Op::Append { .. }) {
                        joined.extend_from_slice(old);
                        joined.extend_from_slice(value.bytes);
                    } else {
                        joined.extend_from_slice(value.bytes);
                        joined.extend_from_slice(old);
                    }
                    bins[i].value = CowBytes::Owned(joined);
                }
                None => set_bin(bins, bin, t, CowBytes::Borrowed(value.bytes))?,
            }
            write_ack(results, bin);
        }
        // Touch answers nothing, even when every op is to be answered.
        Op::Touch => {}
        Op::DeleteRecord => {
            bins.clear();
            write_ack(results, b"");
        }
        Op::CdtRead { bin, payload } | Op::CdtModify { bin, payload } => {
            let modify = matches!(op, Op::CdtModify { .. });
            let idx = find_bin(bins, bin);
            let outcome = cdt::apply(idx.map(|i| bins[i].particle_ref()), payload, modify)?;
            match outcome.new_value {
                None => {}
                Some(None) => bins.retain(|b| b.name != bin),
                Some(Some(p)) => set_bin(bins, bin, p.particle, CowBytes::Owned(p.bytes))?,
            }
            match outcome.result {
                Some(p) => results.push(OpResult { op_type, bin: bin.to_vec(), value: Some(p) }),
                None if respond_all => results.push(OpResult { op_type, bin: bin.to_vec(), value: None }),
                None => {}
            }
        }
    }
    Ok(())
}

/// Integer add wraps on overflow, as in Aerospike; float add is IEEE. The bin is created with
/// the operand when missing.
fn add_values(current: Option<ParticleRef<'_>>, operand: ParticleRef<'_>) -> Result<(u8, Vec<u8>), StorageError> {
    let int = ParticleType::Integer as u8;
    let float = ParticleType::Float as u8;
    if operand.particle == int {
        let add = int_from_wire(operand.bytes)?;
        let base = match current {
            None => 0,
            Some(c) if c.particle == int => int_from_wire(c.bytes)?,
            Some(_) => return Err(StorageError::IncompatibleType),
        };
        Ok((int, base.wrapping_add(add).to_be_bytes().to_vec()))
    } else if operand.particle == float {
        let add =
            f64::from_be_bytes(operand.bytes.try_into().map_err(|_| StorageError::Parameter("float must be 8 bytes"))?);
        let base = match current {
            None => 0.0,
            Some(c) if c.particle == float => f64::from_be_bytes(
                c.bytes.try_into().map_err(|_| StorageError::Internal("stored float is not 8 bytes"))?,
            ),
            Some(_) => return Err(StorageError::IncompatibleType),
        };
        Ok((float, (base + add).to_be_bytes().to_vec()))
    } else {
        Err(StorageError::IncompatibleType)
    }
}
