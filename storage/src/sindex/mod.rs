//! Secondary indexes of a namespace: their definitions, their entries and their upkeep.
//!
//! Each index keeps its entries per partition — `(key, digest)` pairs in key order, and for
//! each indexed record the keys it is indexed under — behind one mutex per partition. Per
//! partition because partitions are what moves between nodes and what a query walks: a
//! migrated partition carries its index with the records written into it, a dropped copy takes
//! its entries along, and a query answers partition by partition like a scan, resumable after a
//! digest. The reverse map (digest → keys) lets a write or delete replace a record's entries
//! without reading the old image back from a device.
//!
//! Upkeep happens where a record's image is installed or its entry dropped
//! ([`crate::namespace`]), under the record's sprig lock, so an index never disagrees with
//! the records for longer than one such critical section. Expired and truncated records stay
//! indexed until the supervisor reclaims them; queries re-check every record they return
//! (liveness, set, the key against the range), so such entries are never answered.

mod geo_cells;
mod keys;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use petrel_proto::{Digest, PartitionId, PARTITIONS_COUNT};

use crate::record::ImageView;

pub use geo_cells::{CellLookup, CELLS_MAX as GEO_CELLS_MAX, LEVEL_MAX as GEO_LEVEL_MAX, LEVEL_MIN as GEO_LEVEL_MIN};
pub use keys::{Collection, GeoQuery, Key, KeySpec, KeyType, Keys, Range, KEYS_PER_RECORD_MAX};

/// Most secondary indexes per namespace (Aerospike's limit).
pub const SINDEXES_MAX: usize = 256;
/// Longest index name, in bytes (Aerospike's limit).
pub const SINDEX_NAME_LEN_MAX: usize = 63;
/// Bytes an entry costs besides its key's own bytes: the ordered pair and the reverse-map
/// slot, with the maps' overhead, as estimated for the statistics.
const ENTRY_OVERHEAD_BYTES: u64 = 2 * (std::mem::size_of::<Key>() as u64 + 20) + 32;

/// What a secondary index is defined as.
#[derive(Debug, Clone, PartialEq)]
pub struct SindexDef {
    pub name: String,
    /// The set whose records are indexed; `None` for every record of the namespace.
    pub set: Option<Vec<u8>>,
    pub spec: KeySpec,
    /// The CDT context as the client sent it (base64 msgpack), answered back in listings.
    pub ctx_base64: Option<String>,
}

/// Hashes a digest by its first 8 bytes: digests are RIPEMD-160 output, already uniform, so
/// hashing them again (SipHash) would only cost time on every indexed write.
#[derive(Debug, Default, Clone, Copy)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Digest's Hash writes its 20 bytes in one call; anything else folds in.
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(head);
    }
}

type DigestMap<V> = HashMap<Digest, V, std::hash::BuildHasherDefault<DigestHasher>>;

/// One partition's entries of one index.
#[derive(Debug, Default)]
struct PartitionEntries {
    by_key: BTreeSet<(Key, Digest)>,
    by_digest: DigestMap<Keys>,
}

/// A secondary index: its definition and its entries.
#[derive(Debug)]
pub struct Sindex {
    pub def: SindexDef,
    /// The set id its records have (0 = any set).
    pub(crate) set_id: u16,
    partitions: Box<[Mutex<PartitionEntries>]>,
    entries: AtomicU64,
    key_bytes: AtomicU64,
    /// Partitions the initial build has walked.
    built_partitions: AtomicU32,
    /// Set when the index is deleted: an unfinished build stops.
    pub(crate) dropped: AtomicBool,
    pub(crate) queries: AtomicU64,
}

/// An index's figures for `sindex/<ns>/<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SindexStats {
    pub entries: u64,
    pub memory_used_bytes: u64,
    pub load_pct: u32,
    pub queries: u64,
}

impl Sindex {
    pub(crate) fn new(def: SindexDef, set_id: u16) -> Sindex {
        Sindex {
            def,
            set_id,
            partitions: (0..PARTITIONS_COUNT).map(|_| Mutex::new(PartitionEntries::default())).collect(),
            entries: AtomicU64::new(0),
            key_bytes: AtomicU64::new(0),
            built_partitions: AtomicU32::new(0),
            dropped: AtomicBool::new(false),
            queries: AtomicU64::new(0),
        }
    }

    /// True once every existing record has been indexed; queries are answered from then on.
    pub fn is_ready(&self) -> bool {
        self.built_partitions.load(Ordering::Acquire) as usize >= PARTITIONS_COUNT
    }

    /// Counts one query answered from this index.
    pub fn count_query(&self) {
        self.queries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn partition_built(&self) {
        self.built_partitions.fetch_add(1, Ordering::AcqRel);
    }

    pub fn stats(&self) -> SindexStats {
        let entries = self.entries.load(Ordering::Relaxed);
        SindexStats {
            entries,
            memory_used_bytes: entries * ENTRY_OVERHEAD_BYTES + self.key_bytes.load(Ordering::Relaxed),
            load_pct: self.built_partitions.load(Ordering::Relaxed) * 100 / PARTITIONS_COUNT as u32,
            queries: self.queries.load(Ordering::Relaxed),
        }
    }

    /// Whether a query for `bin` (of `key_type`, over `collection`, at `ctx`) in set `set` can
    /// be answered by this index.
    pub fn serves(&self, bin: &[u8], key_type: KeyType, collection: Collection, ctx: &[u8], set: &[u8]) -> bool {
        let s = &self.def.spec;
        let ctx_matches = match &self.def.ctx_base64 {
            None => ctx.is_empty(),
            Some(b64) => {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).is_ok_and(|raw| raw == ctx)
            }
        };
        s.bin == bin
            && s.key_type == key_type
            && s.collection == collection
            && ctx_matches
            && self.def.set.as_deref().is_none_or(|own| own == set)
    }

    /// Makes `keys` (sorted, without duplicates) the record's entries.
    pub(crate) fn set_keys(&self, digest: &Digest, keys: &[Key]) {
        let mut p = self.partitions[digest.partition_id() as usize].lock();
        if p.by_digest.get(digest).is_some_and(|old| old.as_slice() == keys) {
            return;
        }
        if let Some(old) = p.by_digest.remove(digest) {
            for k in old.iter() {
                p.by_key.remove(&(k.clone(), *digest));
            }
            self.forget(&old);
        }
        if keys.is_empty() {
            return;
        }
        for k in keys {
            p.by_key.insert((k.clone(), *digest));
        }
        self.entries.fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.key_bytes.fetch_add(keys.iter().map(|k| k.heap_bytes() as u64).sum(), Ordering::Relaxed);
        p.by_digest.insert(*digest, Keys::from(keys));
    }

    /// Drops the record's entries.
    pub(crate) fn remove(&self, digest: &Digest) {
        let mut p = self.partitions[digest.partition_id() as usize].lock();
        if let Some(old) = p.by_digest.remove(digest) {
            for k in old.iter() {
                p.by_key.remove(&(k.clone(), *digest));
            }
            self.forget(&old);
        }
    }

    fn forget(&self, keys: &[Key]) {
        self.entries.fetch_sub(keys.len() as u64, Ordering::Relaxed);
        self.key_bytes.fetch_sub(keys.iter().map(|k| k.heap_bytes() as u64).sum(), Ordering::Relaxed);
    }

    /// The digests of partition `pid` with a key in `range`, ascending and without duplicates,
    /// strictly after `after` when given.
    pub fn candidates(&self, pid: PartitionId, range: &Range, after: Option<&Digest>) -> Vec<Digest> {
        let p = self.partitions[pid as usize].lock();
        let mut found: Vec<Digest> = match range {
            Range::Int(lo, hi) if lo <= hi => p
                .by_key
                .range((Key::Int(*lo), Digest([0; 20]))..=(Key::Int(*hi), Digest([0xff; 20])))
                .map(|(_, d)| *d)
                .collect(),
            Range::Int(..) => Vec::new(),
            Range::Bytes(b) => {
                let k = Key::Bytes(b.as_slice().into());
                p.by_key.range((k.clone(), Digest([0; 20]))..=(k, Digest([0xff; 20]))).map(|(_, d)| *d).collect()
            }
            // The cells that can hold a match; the caller tests each candidate exactly.
            Range::Geo(query) => {
                let mut found = Vec::new();
                for lookup in &query.lookups {
                    let (lo, hi) = match *lookup {
                        CellLookup::Span(lo, hi) => (lo, hi),
                        CellLookup::Exact(cell) => (cell, cell),
                    };
                    found.extend(
                        p.by_key
                            .range((Key::Cell(lo), Digest([0; 20]))..=(Key::Cell(hi), Digest([0xff; 20])))
                            .map(|(_, d)| *d),
                    );
                }
                found
            }
        };
        drop(p);
        found.sort_unstable();
        found.dedup();
        if let Some(after) = after {
            let from = found.partition_point(|d| d <= after);
            found.drain(..from);
        }
        found
    }

    /// Entries of partition `pid` (for checks against a scan).
    pub fn partition_entries(&self, pid: PartitionId) -> Vec<(Key, Digest)> {
        self.partitions[pid as usize].lock().by_key.iter().cloned().collect()
    }
}

/// The indexes of one namespace.
#[derive(Debug, Default)]
pub struct Registry {
    list: RwLock<Vec<Arc<Sindex>>>,
    /// True while any index exists: writes skip all upkeep without it.
    any: AtomicBool,
}

impl Registry {
    pub fn all(&self) -> Vec<Arc<Sindex>> {
        self.list.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<Arc<Sindex>> {
        self.list.read().iter().find(|s| s.def.name == name).cloned()
    }

    /// Adds `ix`; the caller has checked name and count under [`Registry::with_list`].
    pub(crate) fn with_list<T>(&self, f: impl FnOnce(&mut Vec<Arc<Sindex>>) -> T) -> T {
        let mut list = self.list.write();
        let out = f(&mut list);
        self.any.store(!list.is_empty(), Ordering::Release);
        out
    }

    /// Bytes of memory all indexes take; 0 at once when there are none.
    pub fn memory_used_bytes(&self) -> u64 {
        if !self.any.load(Ordering::Acquire) {
            return 0;
        }
        self.list.read().iter().map(|ix| ix.stats().memory_used_bytes).sum()
    }

    /// Upkeep after record `digest` of set `set_id` got `image`.
    pub(crate) fn on_write(&self, digest: &Digest, set_id: u16, image: &[u8]) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let list = self.list.read();
        let view = ImageView::parse(image).ok();
        let mut keys = Keys::new();
        for ix in list.iter().filter(|ix| ix.set_id == 0 || ix.set_id == set_id) {
            match &view {
                Some(v) => ix.def.spec.keys_of(v, &mut keys),
                None => keys.clear(),
            }
            ix.set_keys(digest, &keys);
        }
    }

    /// Upkeep after record `digest` was dropped.
    pub(crate) fn on_remove(&self, digest: &Digest) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        for ix in self.list.read().iter() {
            ix.remove(digest);
        }
    }
}
