//! A namespace stored on devices: opening it (the fast restart from the state saved at a clean
//! shutdown, see [`super::snapshot`], else the cold restart that rebuilds the index from the
//! device store) and defragmentation (rewriting the records still current in sparse
//! blocks, so that those blocks can be used again).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::device::format::{self, FLAG_TOMBSTONE};
use crate::device::{DeviceConfig, DeviceEngine, ScanSummary, ScannedRecord};
use crate::engine::StorageEngine;
use crate::location::{Engine, Location};
use crate::namespace::{Namespace, NamespaceConfig};
use crate::StorageError;

/// Threads a cold restart reads the store with, at most.
const RESTORE_THREADS_MAX: usize = 8;

/// What a cold restart found and kept.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RestoreSummary {
    pub scan: ScanSummary,
    /// Records in the index afterwards.
    pub records: u64,
    /// Copies dropped: older versions, expired or deleted records.
    pub dropped: u64,
    pub tombstones: u64,
    /// Loaded from the state saved at a clean shutdown rather than read from the blocks.
    pub fast: bool,
}

impl Namespace<Engine> {
    /// A namespace stored on the devices of `device`: its index rebuilt from them (a cold
    /// restart), then open for writes.
    pub fn on_device(config: NamespaceConfig, device: DeviceConfig) -> Result<(Self, RestoreSummary), String> {
        Self::on_device_with_clock(config, device, Arc::new(SystemClock))
    }

    pub fn on_device_with_clock(
        config: NamespaceConfig,
        device: DeviceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, RestoreSummary), String> {
        let engine = DeviceEngine::open(&config.name, device)?;
        Self::on_engine(config, engine, clock)
    }

    /// A device namespace on `media` (one per configured file) rather than the files
    /// themselves: for tests that inject faults under the store.
    pub fn on_media(
        config: NamespaceConfig,
        device: DeviceConfig,
        media: Vec<Box<dyn crate::device::medium::Medium>>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, RestoreSummary), String> {
        let engine = DeviceEngine::open_on(&config.name, device, media)?;
        Self::on_engine(config, engine, clock)
    }

    fn on_engine(
        config: NamespaceConfig,
        engine: DeviceEngine,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, RestoreSummary), String> {
        let ns = Namespace::new(config, Engine::Device(engine), clock)?;
        let summary = match ns.load_snapshot()? {
            Some(saved) => RestoreSummary {
                scan: ScanSummary { blocks: saved.blocks, records: saved.records, damaged: 0 },
                records: ns.counters.objects.load(Ordering::Relaxed),
                fast: true,
                ..Default::default()
            },
            None => ns.restore()?,
        };
        ns.device().expect("a device namespace").start()?;
        Ok((ns, summary))
    }

    /// The device store, for a device namespace.
    pub fn device(&self) -> Option<&DeviceEngine> {
        self.engine.device()
    }

    /// Rebuilds the index from the device: records in the order they were written, so that a
    /// later copy of a record (or its tombstone) replaces an earlier one. One thread per core
    /// (at most [`RESTORE_THREADS_MAX`]) walks every block (each read once), applying the records of
    /// its share of the partitions (truncation markers: the first), so each digest's copies
    /// are still applied in write order by one thread.
    fn restore(&self) -> Result<RestoreSummary, String> {
        let device = self.device().expect("a device namespace");
        let now_secs = self.clock.now_secs();
        let shards = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, RESTORE_THREADS_MAX);
        // Per shard: what it kept, and its first failure (each shard's own, so uncontended).
        let partial: Vec<Mutex<(RestoreSummary, Option<StorageError>)>> =
            (0..shards).map(|_| Mutex::new(Default::default())).collect();
        let scan = device.scan_sharded(shards, |shard, r: ScannedRecord<'_>| {
            let h = &r.view.header;
            let owner =
                if h.flags & format::FLAG_TRUNCATE != 0 { 0 } else { h.digest.partition_id() as usize % shards };
            if owner != shard {
                return;
            }
            let mut p = partial[shard].lock();
            if p.1.is_none() {
                let (summary, failure) = &mut *p;
                if let Err(e) = self.restore_one(device, r, now_secs, summary) {
                    *failure = Some(e);
                }
            }
        })?;
        let mut summary = RestoreSummary { scan, ..Default::default() };
        for p in partial {
            let (part, failure) = p.into_inner();
            if let Some(e) = failure {
                return Err(format!("restoring namespace {}: {e}", self.name()));
            }
            summary.dropped += part.dropped;
            summary.tombstones += part.tombstones;
        }
        summary.records = self.counters.objects.load(Ordering::Relaxed);
        Ok(summary)
    }

    fn restore_one(
        &self,
        device: &DeviceEngine,
        r: ScannedRecord<'_>,
        now_secs: u32,
        summary: &mut RestoreSummary,
    ) -> Result<(), StorageError> {
        let h = r.view.header;
        let digest = &h.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        if h.flags & format::FLAG_TRUNCATE != 0 {
            drop(tree);
            self.restore_truncate(r.view.set, h.lut_ms)?;
            device.keep(&r.location);
            return Ok(());
        }
        if h.flags & FLAG_TOMBSTONE != 0 {
            summary.tombstones += 1;
            // Remembered, so that a copy another node still holds is not stored again.
            self.delete_marks.note(digest, h.lut_ms);
            if self.drop_entry(&mut tree, digest) {
                summary.dropped += 1;
            }
            // Kept until defragmentation finds no older block it must hide a copy in.
            device.keep_tombstone(&r.location);
            return Ok(());
        }
        if h.void_time != 0 && h.void_time < now_secs {
            summary.dropped += 1;
            return Ok(());
        }
        let set_id = self.set_id_or_create(r.view.set)?;
        // Written after any tombstone of it found so far (blocks are applied in write order):
        // the record is live, so no mark of an earlier delete stands against it.
        self.delete_marks.forget(digest);
        let existing = tree.find(digest);
        if existing.is_some() {
            summary.dropped += 1;
        }
        device.keep(&r.location);
        let key_stored = crate::record::ImageView::parse(r.view.image).map(|i| i.key.is_some()).unwrap_or(false);
        let h2 = self.install(&mut tree, existing, digest, set_id, r.location, r.view.image);
        let e = tree.entry_mut(h2);
        e.generation = h.generation;
        e.void_time = h.void_time;
        e.lut_ms = h.lut_ms;
        e.set_key_stored(key_stored);
        Ok(())
    }

    /// One pass of defragmentation over at most `max_blocks` blocks per file: the records
    /// still current in each are written anew (into the open block), tombstones that may
    /// still hide an older copy likewise, and the emptied blocks are freed. Returns the
    /// blocks freed.
    pub fn defrag(&self, max_blocks: usize) -> Result<usize, StorageError> {
        let Some(device) = self.device() else { return Ok(0) };
        let mut emptied = Vec::new();
        for (fi, b) in device.defrag_candidates(max_blocks) {
            let (sequence, bytes) = device.block_records(fi, b)?;
            if sequence == 0 {
                continue;
            }
            let block_bytes = device.config().write_block_bytes;
            // Whether an older block is in use: asked once per block, not per tombstone (it
            // looks at every block, and nothing is freed until the pass ends).
            let older_in_use = device.older_blocks_than(fi, b, sequence);
            let mut at = format::BLOCK_HEADER_LEN;
            while at < bytes.len() {
                let Ok(view) = format::read_record(&bytes[at..]) else { break };
                let addr = crate::location::DeviceAddr {
                    file: fi,
                    offset: b as u64 * block_bytes as u64 + at as u64,
                    len: view.len as u32,
                };
                at += view.len;
                self.relocate(device, &view, Location::device(addr), older_in_use)?;
            }
            emptied.push((fi, b));
        }
        device.free_blocks(&emptied)
    }

    /// Moves one record of a block being defragmented, if it is still current; a tombstone or
    /// truncation marker moves only while `older_in_use` (an older block may hold what it
    /// hides).
    fn relocate(
        &self,
        device: &DeviceEngine,
        view: &format::RecordView<'_>,
        here: Location,
        older_in_use: bool,
    ) -> Result<(), StorageError> {
        let digest = &view.header.digest;
        if view.header.flags & format::FLAG_TRUNCATE != 0 {
            if older_in_use {
                device.truncate(view.set, view.header.lut_ms)?;
            }
            device.release(here);
            return Ok(());
        }
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let current = tree.find(digest);
        if view.header.flags & FLAG_TOMBSTONE != 0 {
            // A record written after the delete supersedes the tombstone; without one, the
            // tombstone must outlive every older block.
            if current.is_none() && older_in_use {
                let meta = crate::engine::ImageMeta {
                    digest,
                    generation: view.header.generation,
                    void_time: 0,
                    lut_ms: view.header.lut_ms,
                    set: view.set,
                    tombstone: true,
                };
                device.rewrite(&meta, &[])?;
            }
            device.release_tombstone(here);
            return Ok(());
        }
        let Some(h) = current else { return Ok(()) };
        if tree.entry(h).loc() != Some(&here) {
            // An older copy: the index points elsewhere, and its bytes were released then.
            return Ok(());
        }
        let e = tree.entry(h);
        let meta = crate::engine::ImageMeta {
            digest,
            generation: e.generation,
            void_time: e.void_time,
            lut_ms: e.lut_ms,
            set: view.set,
            tombstone: false,
        };
        let loc = device.rewrite(&meta, view.image)?;
        let e = tree.entry_mut(h);
        let old = e.loc.replace(loc);
        if let Some(old) = old {
            self.engine.release(old);
        }
        device.counters.defrag_records_moved.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Pause between defragmentation passes when the last one had nothing to do.
const DEFRAG_IDLE_MS: u64 = 200;
/// Blocks per file one pass looks at: a bounded pace, so that defragmentation never takes
/// more than a share of the device from client writes.
const DEFRAG_BLOCKS_PER_PASS: usize = 4;

/// A running defragmentation thread of one device namespace; stopping it (or dropping it)
/// joins the thread.
#[derive(Debug)]
pub struct Defragmenter {
    stop: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Defragmenter {
    /// Starts defragmenting `ns` (a device namespace) in the background.
    pub fn start(ns: Arc<Namespace<Engine>>) -> std::io::Result<Defragmenter> {
        let stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let stop_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("defrag-{}", ns.name())).spawn(move || loop {
            let freed = match ns.defrag(DEFRAG_BLOCKS_PER_PASS) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(namespace = ns.name(), error = %e, "defragmentation pass failed");
                    0
                }
            };
            let (lock, cvar) = &*stop_thread;
            let mut stopped = lock.lock();
            if !*stopped && freed == 0 {
                cvar.wait_for(&mut stopped, std::time::Duration::from_millis(DEFRAG_IDLE_MS));
            }
            if *stopped {
                return;
            }
        })?;
        Ok(Defragmenter { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Defragmenter {
    fn drop(&mut self) {
        self.halt();
    }
}
