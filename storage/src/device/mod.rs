//! The flash-optimized store: records appended to large write blocks on one or more files
//! (or raw block devices, opened the same way but never grown), spread over them by digest,
//! behind the in-memory index. Owns the write path (append to the open block, written through
//! to the file; durable after `flush_max_ms`, or before the write returns with
//! `commit_to_device`), reads (from the open and recently written blocks in memory, else from
//! the file), live-byte accounting per block, free blocks and the stop-writes mark
//! (`min_avail_pct`), durable deletes (tombstones), and the scan a cold restart rebuilds the
//! index from. Defragmentation is driven by the namespace (`Namespace::defrag`), which knows
//! which records are still current.
//!
//! Layout byte by byte: [`format`] and `docs/design.md`.

pub mod format;
pub mod medium;

pub(crate) mod file;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::engine::ImageMeta;
use crate::location::{DeviceAddr, Location};
use crate::StorageError;
pub(crate) use file::DeviceFile;
use format::{FileHeader, RecordHeader, RecordView, BLOCK_HEADER_LEN, FILE_HEADER_LEN};
use medium::Medium;

/// One file of a store and its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFileConfig {
    pub path: PathBuf,
    /// Bytes the store may use in it (a regular file is created or grown to this size; for a
    /// raw device, at most its size).
    pub size_bytes: u64,
}

/// Settings of a device store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    pub files: Vec<DeviceFileConfig>,
    /// Bytes per write block (1 MiB by default; 128 KiB to 8 MiB).
    pub write_block_bytes: usize,
    /// Most milliseconds a write waits in a partly filled block before it is written out.
    pub flush_max_ms: u64,
    /// Answer a write only once the block holding it is durable.
    pub commit_to_device: bool,
    /// Blocks whose live bytes fall under this share are defragmented.
    pub defrag_lwm_pct: u8,
    /// Writes fail when fewer free blocks than this share remain (deletes and
    /// defragmentation go on).
    pub min_avail_pct: u8,
    /// Where the state saved at a clean shutdown for a fast restart goes; None: nowhere,
    /// and every start is a cold restart (raw devices with no data directory beside them).
    pub fast_restart_path: Option<PathBuf>,
}

impl DeviceConfig {
    /// One file of `size_bytes` at `path`, with the other settings at their defaults.
    pub fn one_file(path: PathBuf, size_bytes: u64) -> DeviceConfig {
        DeviceConfig {
            fast_restart_path: Some(Self::beside(&path)),
            files: vec![DeviceFileConfig { path, size_bytes }],
            write_block_bytes: 1 << 20,
            flush_max_ms: 1_000,
            commit_to_device: false,
            defrag_lwm_pct: 50,
            min_avail_pct: 5,
        }
    }

    /// The fast-restart state's usual place: beside the store's first file,
    /// `<file>.snapshot`.
    pub fn beside(first_file: &std::path::Path) -> PathBuf {
        let mut name = first_file.to_path_buf().into_os_string();
        name.push(".snapshot");
        PathBuf::from(name)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.files.is_empty() || self.files.len() > DeviceAddr::FILES_MAX {
            return Err(format!("a device store needs 1 to {} files", DeviceAddr::FILES_MAX));
        }
        let b = self.write_block_bytes;
        if !(128 << 10..=8 << 20).contains(&b) || !b.is_power_of_two() {
            return Err("write_block_size must be a power of two from 128 KiB to 8 MiB".into());
        }
        for f in &self.files {
            if f.size_bytes < 4 * b as u64 {
                return Err(format!("{}: size must be at least four write blocks", f.path.display()));
            }
            if f.size_bytes > DeviceAddr::OFFSET_MAX {
                return Err(format!("{}: size over {} bytes", f.path.display(), DeviceAddr::OFFSET_MAX));
            }
        }
        if self.defrag_lwm_pct > 99 || self.min_avail_pct > 50 {
            return Err("defrag_lwm_pct must be at most 99 and min_avail_pct at most 50".into());
        }
        Ok(())
    }
}

/// Counters of a device store.
#[derive(Debug, Default)]
pub struct DeviceCounters {
    pub tombstones_written: AtomicU64,
    /// Tombstones on the store now (written or restored, not yet reaped).
    pub tombstones: AtomicU64,
    /// Reads served from the open or a recent block in memory, and from the file.
    pub reads_from_cache: AtomicU64,
    pub reads_from_device: AtomicU64,
    pub defrag_blocks_freed: AtomicU64,
    pub defrag_records_moved: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The flusher thread and its stop flag.
type Flusher = (Arc<(Mutex<bool>, Condvar)>, JoinHandle<()>);

/// A store of record data on files or raw devices.
#[derive(Debug)]
pub struct DeviceEngine {
    files: Arc<[DeviceFile]>,
    // Boxed: kept out of line, so that a namespace's engine enum stays small.
    config: Box<DeviceConfig>,
    next_sequence: AtomicU64,
    /// Free blocks each file keeps back from writes (its `min_avail_pct`).
    reserve_free: Vec<usize>,
    pub counters: DeviceCounters,
    flusher: Mutex<Option<Flusher>>,
}

/// A record found by the restore scan, with where it is.
#[derive(Debug)]
pub struct ScannedRecord<'a> {
    pub view: RecordView<'a>,
    pub location: Location,
}

impl DeviceEngine {
    /// Opens (creating or growing regular files as needed) the store of namespace `namespace`.
    /// A file that holds another namespace's store, or another block size, is refused.
    pub fn open(namespace: &str, config: DeviceConfig) -> Result<DeviceEngine, String> {
        config.validate()?;
        let mut media: Vec<Box<dyn Medium>> = Vec::new();
        for fc in &config.files {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&fc.path)
                .map_err(|e| format!("{}: {e}", fc.path.display()))?;
            let meta = file.metadata().map_err(|e| format!("{}: {e}", fc.path.display()))?;
            if meta.is_file() {
                if meta.len() < fc.size_bytes {
                    file.set_len(fc.size_bytes).map_err(|e| format!("{}: {e}", fc.path.display()))?;
                }
            } else {
                // A raw device cannot grow: the store may use no more than it holds.
                let held = (&file).seek(SeekFrom::End(0)).map_err(|e| format!("{}: {e}", fc.path.display()))?;
                if held < fc.size_bytes {
                    return Err(format!(
                        "{}: the device holds {held} bytes, fewer than the {} configured",
                        fc.path.display(),
                        fc.size_bytes
                    ));
                }
            }
            media.push(Box::new(file));
        }
        Self::open_on(namespace, config, media)
    }

    /// Opens the store on `media`, one per configured file (of the configured sizes).
    pub fn open_on(namespace: &str, config: DeviceConfig, media: Vec<Box<dyn Medium>>) -> Result<DeviceEngine, String> {
        config.validate()?;
        if media.len() != config.files.len() {
            return Err("one medium per configured file".into());
        }
        let block = config.write_block_bytes;
        let mut store_id = None;
        let mut had_header = Vec::new();
        for (i, (fc, medium)) in config.files.iter().zip(&media).enumerate() {
            let mut head = [0u8; FILE_HEADER_LEN];
            medium.read_at(&mut head, 0).map_err(|e| format!("{}: {e}", fc.path.display()))?;
            let header = FileHeader::decode(&head).map_err(|e| format!("{}: {e}", fc.path.display()))?;
            if let Some(h) = &header {
                if h.namespace != namespace || h.block_bytes as usize != block || h.file_index as usize != i {
                    return Err(format!(
                        "{}: holds file {} of namespace {:?} with {}-byte blocks, not file {i} of {namespace:?} with {block}",
                        fc.path.display(),
                        h.file_index,
                        h.namespace,
                        h.block_bytes
                    ));
                }
                if store_id.is_some_and(|id| id != h.store_id) {
                    return Err(format!("{}: belongs to another store than the first file", fc.path.display()));
                }
                store_id = Some(h.store_id);
            }
            had_header.push(header.is_some());
        }
        let store_id = store_id.unwrap_or_else(rand_store_id);
        let files_count = config.files.len() as u32;
        let mut files = Vec::new();
        for (i, (medium, had_header)) in media.into_iter().zip(had_header).enumerate() {
            if !had_header {
                let h = FileHeader {
                    block_bytes: block as u32,
                    file_index: i as u32,
                    files_count,
                    store_id,
                    namespace: namespace.to_string(),
                };
                medium.write_at(&h.encode(), 0).and_then(|_| medium.sync()).map_err(|e| e.to_string())?;
            }
            let blocks = (config.files[i].size_bytes / block as u64) as u32;
            files.push(DeviceFile::new(i as u8, medium, block, blocks, store_id));
        }
        let reserve_free =
            files.iter().map(|f| (f.blocks as usize * config.min_avail_pct as usize).div_ceil(100)).collect();
        Ok(DeviceEngine {
            files: files.into(),
            config: Box::new(config),
            next_sequence: AtomicU64::new(1),
            reserve_free,
            counters: DeviceCounters::default(),
            flusher: Mutex::new(None),
        })
    }

    /// Where the state saved for a fast restart lives (None: nowhere; cold restarts only).
    pub fn snapshot_path(&self) -> Option<&std::path::Path> {
        self.config.fast_restart_path.as_deref()
    }

    /// Closes every file for appends: after this the store's content no longer changes.
    pub fn close_for_writes(&self) {
        for f in self.files.iter() {
            f.close_for_writes();
        }
    }

    pub(crate) fn files(&self) -> &[DeviceFile] {
        &self.files
    }

    pub(crate) fn next_sequence(&self) -> &AtomicU64 {
        &self.next_sequence
    }

    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// Walks every record on the store, oldest block first and in order within a block, so
    /// that a later record of a digest comes after an earlier one. Blocks of other stores,
    /// and records after a torn or corrupt one in a block, are skipped (counted in the
    /// result).
    pub fn scan(&self, mut f: impl FnMut(ScannedRecord<'_>)) -> Result<ScanSummary, String> {
        let mut summary = ScanSummary::default();
        let mut buf = vec![0u8; self.config.write_block_bytes];
        for (_, fi, b) in self.blocks_in_write_order()? {
            self.read_block_into(fi, b, &mut buf)?;
            self.walk_block(fi, b, &buf, &mut summary, &mut f);
        }
        Ok(summary)
    }

    /// [`Self::scan`] with `shards` threads applying records: each block is read once, here,
    /// and handed to every thread; each walks every record in the same order (so each sees
    /// the same torn and corrupt records) and `f(shard, record)` keeps those of its own
    /// shard. The summary counts the store once.
    pub fn scan_sharded(
        &self,
        shards: usize,
        f: impl Fn(usize, ScannedRecord<'_>) + Sync,
    ) -> Result<ScanSummary, String> {
        /// Blocks read ahead of the slowest thread.
        const BLOCKS_AHEAD: usize = 4;
        let blocks = self.blocks_in_write_order()?;
        let f = &f;
        std::thread::scope(|s| {
            let mut senders = Vec::new();
            let mut walkers = Vec::new();
            for shard in 0..shards.max(1) {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<(u8, u32, Vec<u8>)>>(BLOCKS_AHEAD);
                senders.push(tx);
                walkers.push(s.spawn(move || {
                    let mut summary = ScanSummary::default();
                    for block in rx {
                        let (fi, b, buf) = &*block;
                        self.walk_block(*fi, *b, buf, &mut summary, &mut |r| f(shard, r));
                    }
                    summary
                }));
            }
            let read = blocks.iter().try_for_each(|&(_, fi, b)| {
                let mut buf = vec![0u8; self.config.write_block_bytes];
                self.read_block_into(fi, b, &mut buf)?;
                let block = Arc::new((fi, b, buf));
                // A thread that is gone panicked: its join below reports it.
                senders.iter().for_each(|tx| drop(tx.send(Arc::clone(&block))));
                Ok::<(), String>(())
            });
            drop(senders);
            let mut summary = None;
            for w in walkers {
                let part = w.join().map_err(|_| "a restore thread panicked".to_string())?;
                summary.get_or_insert(part);
            }
            read.map(|()| summary.unwrap_or_default())
        })
    }

    /// The blocks of this store in use on the files, by sequence (block index 0 holds the file
    /// header); marks them used and moves the next sequence past them.
    fn blocks_in_write_order(&self) -> Result<Vec<(u64, u8, u32)>, String> {
        let mut blocks = Vec::new();
        for file in self.files.iter() {
            for b in 1..file.blocks {
                if let Some(sequence) = file.header_sequence(b).map_err(|e| e.to_string())? {
                    file.mark_used(b, sequence);
                    self.next_sequence.fetch_max(sequence + 1, Ordering::Relaxed);
                    blocks.push((sequence, file.index, b));
                }
            }
        }
        blocks.sort_unstable();
        Ok(blocks)
    }

    fn read_block_into(&self, fi: u8, b: u32, buf: &mut [u8]) -> Result<(), String> {
        let offset = b as u64 * self.config.write_block_bytes as u64;
        self.files[fi as usize].file().read_at(buf, offset).map_err(|e| e.to_string())
    }

    /// Hands over each record block `b` of file `fi` (its bytes in `buf`) holds, in order, up
    /// to its end or to a torn or corrupt record.
    fn walk_block(&self, fi: u8, b: u32, buf: &[u8], summary: &mut ScanSummary, f: &mut impl FnMut(ScannedRecord<'_>)) {
        let block = self.config.write_block_bytes;
        summary.blocks += 1;
        let mut at = BLOCK_HEADER_LEN;
        while at < block {
            match format::read_record(&buf[at..]) {
                Ok(view) => {
                    let addr =
                        DeviceAddr { file: fi, offset: b as u64 * block as u64 + at as u64, len: view.len as u32 };
                    at += view.len;
                    summary.records += 1;
                    f(ScannedRecord { view, location: Location::device(addr) });
                }
                Err(format::RecordError::End) => break,
                Err(_) => {
                    summary.damaged += 1;
                    break;
                }
            }
        }
    }

    /// Counts `loc` as live: the restore keeps the record (or tombstone) there.
    pub fn keep(&self, loc: &Location) {
        if let Some(a) = loc.device_addr() {
            self.files[a.file as usize].add_live(self.block_of(&a), a.len);
        }
    }

    /// Ends a restore: blocks with nothing kept become free (erased on the file); starts the
    /// flusher.
    pub fn start(&self) -> Result<(), String> {
        for f in self.files.iter() {
            f.collect_free().map_err(|e| format!("freeing blocks after the restore: {e}"))?;
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (files, every) = (Arc::clone(&self.files), Duration::from_millis(self.config.flush_max_ms.max(1)));
        let stop_thread = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("device-flush".into())
            .spawn(move || loop {
                {
                    let (lock, cvar) = &*stop_thread;
                    let mut stopped = lock.lock();
                    if !*stopped {
                        cvar.wait_for(&mut stopped, every / 2);
                    }
                    if *stopped {
                        return;
                    }
                }
                for f in files.iter() {
                    if let Err(e) = f.sync() {
                        tracing::error!(file = f.index, error = %e, "making written blocks durable failed");
                    }
                }
            })
            .expect("spawn the device flusher");
        *self.flusher.lock() = Some((stop, handle));
        Ok(())
    }

    fn block_of(&self, a: &DeviceAddr) -> u32 {
        (a.offset / self.config.write_block_bytes as u64) as u32
    }

    fn file_for(&self, digest: &petrel_proto::Digest) -> &DeviceFile {
        let d = digest.as_bytes();
        let n = u32::from_le_bytes([d[4], d[5], d[6], d[7]]) as usize;
        &self.files[n % self.files.len()]
    }

    /// Appends a record. `use_reserve`: defragmentation and tombstones may use the free
    /// blocks kept back from writes (they are what gives space back).
    fn append(&self, meta: &ImageMeta<'_>, image: &[u8], use_reserve: bool) -> Result<Location, StorageError> {
        self.append_flagged(meta, image, use_reserve, if meta.tombstone { format::FLAG_TOMBSTONE } else { 0 })
    }

    fn append_flagged(
        &self,
        meta: &ImageMeta<'_>,
        image: &[u8],
        use_reserve: bool,
        flags: u8,
    ) -> Result<Location, StorageError> {
        let header = RecordHeader {
            digest: *meta.digest,
            generation: meta.generation,
            flags,
            void_time: meta.void_time,
            lut_ms: meta.lut_ms,
        };
        if meta.set.len() > u8::MAX as usize {
            return Err(StorageError::Parameter("set name too long for the device format"));
        }
        let file = self.file_for(meta.digest);
        let reserve = if use_reserve { 0 } else { self.reserve_free[file.index as usize] };
        let addr = file.append(&header, meta.set, image, &self.next_sequence, reserve).map_err(|e| {
            if matches!(e, StorageError::Device(_)) {
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            }
            e
        })?;
        if self.config.commit_to_device {
            if let Err(e) = file.sync() {
                // The write fails; nothing will refer to its bytes.
                self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
                file.release(self.block_of(&addr), addr.len);
                return Err(StorageError::Device(e.to_string()));
            }
        }
        if meta.tombstone {
            self.counters.tombstones.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Location::device(addr))
    }

    /// Stores a record image.
    pub fn write(&self, meta: &ImageMeta<'_>, image: &[u8]) -> Result<Location, StorageError> {
        self.append(meta, image, false)
    }

    /// Stores anew a record (or tombstone) moved out of a block being defragmented.
    pub fn rewrite(&self, meta: &ImageMeta<'_>, image: &[u8]) -> Result<Location, StorageError> {
        self.append(meta, image, true)
    }

    /// Writes a tombstone for the record `meta` describes.
    pub fn remove(&self, meta: &ImageMeta<'_>) -> Result<(), StorageError> {
        // The tombstone's bytes stay live until defragmentation finds nothing older it must
        // hide; no index entry refers to it.
        self.append(&ImageMeta { tombstone: true, ..*meta }, &[], true)?;
        self.counters.tombstones_written.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Writes a truncation marker: set `set` (the namespace when empty) truncated up to
    /// `cutoff_ms`. Like a tombstone, it stays until no older block is in use.
    pub fn truncate(&self, set: &[u8], cutoff_ms: u64) -> Result<(), StorageError> {
        let zero = petrel_proto::Digest([0; 20]);
        let meta = ImageMeta { digest: &zero, generation: 0, void_time: 0, lut_ms: cutoff_ms, set, tombstone: false };
        self.append_flagged(&meta, &[], true, format::FLAG_TRUNCATE).map(|_| ())
    }

    /// Reads the image at `loc` into `scratch`.
    pub fn read<'a>(&self, loc: &Location, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], StorageError> {
        let a = loc.device_addr().ok_or(StorageError::Internal("a memory location in a device namespace"))?;
        let file = self.files.get(a.file as usize).ok_or(StorageError::Internal("no such device file"))?;
        let cached = file.read_record_bytes(a, scratch).map_err(|e| StorageError::Device(e.to_string()))?;
        let counter = if cached { &self.counters.reads_from_cache } else { &self.counters.reads_from_device };
        counter.fetch_add(1, Ordering::Relaxed);
        let view =
            format::read_record(scratch).map_err(|_| StorageError::Device("record on device is damaged".into()))?;
        let (start, len) = (format::RECORD_HEADER_LEN + view.set.len(), view.image.len());
        Ok(&scratch[start..start + len])
    }

    /// Gives back the space of a record no longer referenced.
    pub fn release(&self, loc: Location) {
        if let Some(a) = loc.device_addr() {
            self.files[a.file as usize].release(self.block_of(&a), a.len);
        }
    }

    /// Makes everything written so far durable.
    pub fn flush(&self) -> std::io::Result<()> {
        for f in self.files.iter() {
            f.sync()?;
        }
        Ok(())
    }

    /// Blocks to defragment: in use, not open, live bytes under `defrag_lwm_pct`; emptiest
    /// first, at most `max` per file. Returns (file, block).
    pub fn defrag_candidates(&self, max: usize) -> Vec<(u8, u32)> {
        let threshold = self.defrag_threshold();
        self.files.iter().flat_map(|f| f.sparse_blocks(threshold, max).into_iter().map(move |b| (f.index, b))).collect()
    }

    /// Blocks waiting for defragmentation (`defrag_q`): in use, not open, under the mark.
    pub fn defrag_queue_len(&self) -> usize {
        let threshold = self.defrag_threshold();
        self.files.iter().map(|f| f.sparse_count(threshold)).sum()
    }

    /// Writes waiting for their file or being written to it (`write_q`: records, since each
    /// write goes to the file at once rather than in a queued block).
    pub fn write_queue_len(&self) -> u64 {
        self.files.iter().map(|f| f.appending() as u64).sum()
    }

    /// Whether a sync of one of the files failed: the store then takes no writes until the
    /// node restarts (`device_sync_failed`).
    pub fn sync_failed(&self) -> bool {
        self.files.iter().any(|f| f.sync_failed())
    }

    /// Live bytes under which a block is defragmented.
    fn defrag_threshold(&self) -> u32 {
        (self.config.write_block_bytes as u64 * self.config.defrag_lwm_pct as u64 / 100) as u32
    }

    /// The records of block `b` of file `fi`, as stored, with the block's sequence; the
    /// caller decides which are current.
    pub fn block_records(&self, fi: u8, b: u32) -> Result<(u64, Vec<u8>), StorageError> {
        let file = &self.files[fi as usize];
        let bytes = file.read_block(b).map_err(|e| StorageError::Device(e.to_string()))?;
        Ok((file.sequence_of(b), bytes))
    }

    /// Whether some block other than `b` of file `fi` was written before `sequence` (it may
    /// hold an older copy a tombstone must keep hidden).
    pub fn older_blocks_than(&self, fi: u8, b: u32, sequence: u64) -> bool {
        self.files.iter().any(|f| f.oldest_sequence_except((f.index == fi).then_some(b)) < sequence)
    }

    /// Drops a tombstone's live bytes (it hides nothing any more, or was written anew).
    pub fn release_tombstone(&self, loc: Location) {
        self.counters.tombstones.fetch_sub(1, Ordering::Relaxed);
        self.release(loc);
    }

    /// A restore kept a tombstone at `loc`.
    pub fn keep_tombstone(&self, loc: &Location) {
        self.counters.tombstones.fetch_add(1, Ordering::Relaxed);
        self.keep(loc);
    }

    /// Frees the blocks of `emptied` (file, block) that hold nothing live. The records moved
    /// out of them are made durable first (open blocks written and synced), then the blocks'
    /// headers are erased, so that a crash at any point leaves every record findable once
    /// and no freed block's old records findable at all. Returns the blocks freed.
    pub fn free_blocks(&self, emptied: &[(u8, u32)]) -> Result<usize, StorageError> {
        let device_error = |e: std::io::Error| {
            self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
            StorageError::Device(e.to_string())
        };
        self.flush().map_err(device_error)?;
        let mut freed = 0;
        for f in self.files.iter() {
            let mine: Vec<u32> = emptied.iter().filter(|(fi, _)| *fi == f.index).map(|(_, b)| *b).collect();
            freed += f.erase_and_free(&mine).map_err(device_error)?;
        }
        self.counters.defrag_blocks_freed.fetch_add(freed as u64, Ordering::Relaxed);
        Ok(freed)
    }

    /// Live bytes of block `b` of file `fi`.
    pub fn block_live_bytes(&self, fi: u8, b: u32) -> u32 {
        self.files[fi as usize].live_of(b)
    }

    /// Bytes of live records over all files.
    pub fn used_bytes(&self) -> u64 {
        self.files.iter().map(|f| (1..f.blocks).map(|b| f.live_of(b) as u64).sum::<u64>()).sum()
    }

    /// Bytes of all write blocks.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| (f.blocks as u64 - 1) * self.config.write_block_bytes as u64).sum()
    }

    /// Share of write blocks free, in percent (the least over the files).
    pub fn available_pct(&self) -> u64 {
        self.files.iter().map(|f| f.free_blocks() as u64 * 100 / (f.blocks as u64 - 1).max(1)).min().unwrap_or(0)
    }
}

impl Drop for DeviceEngine {
    fn drop(&mut self) {
        if let Some((stop, handle)) = self.flusher.lock().take() {
            *stop.0.lock() = true;
            stop.1.notify_all();
            let _ = handle.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "flushing the device store at close failed");
        }
    }
}

/// What a restore scan found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanSummary {
    pub blocks: u64,
    pub records: u64,
    /// Blocks whose records ended in a torn or corrupt one.
    pub damaged: u64,
}

fn rand_store_id() -> u64 {
    // Unique enough to tell stores apart: the clock and the process, mixed.
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let x = t ^ (std::process::id() as u64).rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    (x ^ (x >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9) | 1
}

#[cfg(test)]
mod tests;
