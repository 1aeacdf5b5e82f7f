//! One file (or raw device) of a device store: its blocks, the open write block records are
//! appended to, the recently written blocks kept in memory for reads, the live bytes of every
//! block, and the free blocks.
//!
//! Block 0 holds the file header; blocks 1.. are write blocks. A write appends to the open
//! block's memory image and writes the record through to the file at once (one positioned
//! write, into the operating system's cache), so an acknowledged write survives the process
//! being killed; the flusher makes written blocks durable (`fdatasync`) every
//! `flush_max_ms`, and a commit-to-device write does so before it returns. Several writers
//! append to one file; no thread writes for all of them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::format::{self, BlockHeader, BLOCK_HEADER_LEN};
use super::medium::Medium;
use crate::location::DeviceAddr;
use crate::StorageError;

/// Times an append looks at a held file lock before it sleeps on it: some microseconds of
/// `spin_loop`, about as long as a few positioned writes take.
const APPEND_SPINS: u32 = 200;

/// Sealed blocks kept in memory for reads after they were written out.
const RECENT_BLOCKS: usize = 8;

/// The block records are being appended to.
#[derive(Debug)]
struct OpenBlock {
    index: u32,
    /// Header and records so far (all of them written through to the file).
    bytes: Vec<u8>,
}

#[derive(Debug, Default)]
struct FileState {
    open: Option<OpenBlock>,
    free: VecDeque<u32>,
    /// Sealed blocks, newest last: (block index, bytes).
    recent: VecDeque<(u32, Arc<[u8]>)>,
    /// Closed for appends (the store's state was saved for a fast restart).
    closed: bool,
}

/// One file of the store.
#[derive(Debug)]
pub(crate) struct DeviceFile {
    pub index: u8,
    file: Box<dyn Medium>,
    block_bytes: usize,
    pub blocks: u32,
    store_id: u64,
    /// Bytes of live records (and tombstones kept) per block.
    live: Box<[AtomicU32]>,
    /// Sequence of each block in use; 0 when free.
    sequences: Box<[AtomicU64]>,
    state: Mutex<FileState>,
    /// Written to since the last sync.
    dirty: AtomicBool,
    /// Appends waiting for the file or writing to it now (`write_q`).
    appending: AtomicU32,
    /// A sync of this file failed. The kernel may have dropped the pages it could not
    /// write, and a later sync that succeeds would not say so: nothing written since the
    /// last good sync can be trusted durable, so the file takes no more writes until the
    /// process restarts and reads back what the file really holds.
    sync_failed: AtomicBool,
}

impl DeviceFile {
    pub fn new(index: u8, file: Box<dyn Medium>, block_bytes: usize, blocks: u32, store_id: u64) -> DeviceFile {
        DeviceFile {
            index,
            file,
            block_bytes,
            blocks,
            store_id,
            live: (0..blocks).map(|_| AtomicU32::new(0)).collect(),
            sequences: (0..blocks).map(|_| AtomicU64::new(0)).collect(),
            state: Mutex::new(FileState::default()),
            dirty: AtomicBool::new(false),
            appending: AtomicU32::new(0),
            sync_failed: AtomicBool::new(false),
        }
    }

    pub fn file(&self) -> &dyn Medium {
        &*self.file
    }

    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// After a restore: block `b` holds records of `sequence`.
    pub fn mark_used(&self, b: u32, sequence: u64) {
        self.sequences[b as usize].store(sequence, Ordering::Relaxed);
    }

    /// Appends waiting for the file or writing to it now.
    /// Whether a sync of this file failed (it takes no more writes).
    pub fn sync_failed(&self) -> bool {
        self.sync_failed.load(Ordering::Acquire)
    }

    pub fn appending(&self) -> u32 {
        self.appending.load(Ordering::Relaxed)
    }

    /// Closes the file for appends, for good: what it holds stays as it is.
    pub fn close_for_writes(&self) {
        self.state.lock().closed = true;
    }

    /// Reads block `b`'s header: its sequence when it is a block of this file's store in use.
    pub fn header_sequence(&self, b: u32) -> std::io::Result<Option<u64>> {
        let mut head = [0u8; BLOCK_HEADER_LEN];
        self.file.read_at(&mut head, b as u64 * self.block_bytes as u64)?;
        Ok(BlockHeader::read(&head)
            .filter(|h| h.store_id == self.store_id && h.file_index == self.index as u32)
            .map(|h| h.sequence))
    }

    pub fn add_live(&self, b: u32, bytes: u32) {
        self.live[b as usize].fetch_add(bytes, Ordering::Relaxed);
    }

    /// After a restore: every block with nothing live is free.
    /// Blocks that held records but keep none are erased on the file first: a block on the
    /// file with a valid header is always one in use, so that nothing it held can come back
    /// at a later restart once what superseded it is gone.
    pub fn collect_free(&self) -> std::io::Result<()> {
        let mut st = self.state.lock();
        st.free.clear();
        let mut erased = false;
        for b in 1..self.blocks {
            if self.live[b as usize].load(Ordering::Relaxed) == 0 {
                if self.sequences[b as usize].swap(0, Ordering::Relaxed) != 0 {
                    self.file.write_at(&[0u8; BLOCK_HEADER_LEN], b as u64 * self.block_bytes as u64)?;
                    erased = true;
                }
                st.free.push_back(b);
            }
        }
        if erased {
            self.file.sync()?;
        }
        Ok(())
    }

    pub fn free_blocks(&self) -> usize {
        self.state.lock().free.len()
    }

    /// The lowest sequence among blocks in use other than `except` (u64::MAX if none).
    pub fn oldest_sequence_except(&self, except: Option<u32>) -> u64 {
        (1..self.blocks)
            .filter(|&b| Some(b) != except)
            .map(|b| self.sequences[b as usize].load(Ordering::Relaxed))
            .filter(|&s| s != 0)
            .min()
            .unwrap_or(u64::MAX)
    }

    pub fn sequence_of(&self, b: u32) -> u64 {
        self.sequences[b as usize].load(Ordering::Relaxed)
    }

    pub fn live_of(&self, b: u32) -> u32 {
        self.live[b as usize].load(Ordering::Relaxed)
    }

    /// Appends one record and writes it through to the file; returns its address.
    /// `next_sequence` numbers a new block; `reserve_free` free blocks are kept back.
    pub fn append(
        &self,
        header: &format::RecordHeader,
        set: &[u8],
        image: &[u8],
        next_sequence: &AtomicU64,
        reserve_free: usize,
    ) -> Result<DeviceAddr, StorageError> {
        let len = format::record_len(set.len(), image.len());
        if BLOCK_HEADER_LEN + len > self.block_bytes {
            return Err(StorageError::RecordTooBig { size: len, limit: self.block_bytes - BLOCK_HEADER_LEN });
        }
        let io_error = |e: std::io::Error| StorageError::Device(e.to_string());
        if self.sync_failed.load(Ordering::Acquire) {
            return Err(StorageError::Device(format!(
                "file {}: an earlier sync failed; writes stop until the node restarts",
                self.index
            )));
        }
        self.appending.fetch_add(1, Ordering::Relaxed);
        let _appended = Appended(&self.appending);
        let mut st = self.lock_for_append();
        if st.closed {
            return Err(StorageError::Device("the store is closed for writes".into()));
        }
        let fits = st.open.as_ref().is_some_and(|o| o.bytes.len() + len <= self.block_bytes);
        if !fits {
            if st.free.len() <= reserve_free {
                return Err(StorageError::OutOfSpace);
            }
            let index = *st.free.front().expect("a free block");
            let sequence = next_sequence.fetch_add(1, Ordering::Relaxed);
            let mut bytes = Vec::with_capacity(self.block_bytes);
            bytes.resize(BLOCK_HEADER_LEN, 0);
            BlockHeader { sequence, store_id: self.store_id, file_index: self.index as u32 }.write(&mut bytes);
            // The header goes out with an end mark behind it, in one write: the records of the
            // block's previous use are still on the file after the header, and a restart
            // before this use's first record lands must not read them as this use's.
            bytes.extend_from_slice(&[0u8; format::RECORD_END_LEN]);
            self.file.write_at(&bytes, index as u64 * self.block_bytes as u64).map_err(io_error)?;
            bytes.truncate(BLOCK_HEADER_LEN);
            st.free.pop_front();
            self.sequences[index as usize].store(sequence, Ordering::Relaxed);
            if let Some(old) = st.open.replace(OpenBlock { index, bytes }) {
                st.recent.push_back((old.index, old.bytes.into()));
                if st.recent.len() > RECENT_BLOCKS {
                    st.recent.pop_front();
                }
            }
        }
        let open = st.open.as_mut().expect("an open block");
        let in_block = open.bytes.len();
        format::append_record(&mut open.bytes, header, set, image);
        let offset = open.index as u64 * self.block_bytes as u64 + in_block as u64;
        // Written with the record: a zero length after it ends the block's records, so that
        // the records of the block's previous use, still on the file past this one, are
        // never read as this use's.
        let end = open.bytes.len();
        let terminated = end + format::RECORD_END_LEN <= self.block_bytes;
        if terminated {
            open.bytes.extend_from_slice(&[0u8; format::RECORD_END_LEN]);
        }
        let written = self.file.write_at(&open.bytes[in_block..], offset);
        open.bytes.truncate(end);
        if let Err(e) = written {
            // Not on the file: not appended either.
            open.bytes.truncate(in_block);
            return Err(io_error(e));
        }
        let block = open.index;
        drop(st);
        self.dirty.store(true, Ordering::Release);
        self.live[block as usize].fetch_add(len as u32, Ordering::Relaxed);
        Ok(DeviceAddr { file: self.index, offset, len: len as u32 })
    }

    /// The file's lock, for an append. Its holder is in a short positioned write (a few
    /// microseconds); waiting for it by spinning a while costs less than sleeping on the
    /// lock and being woken, which with two writers on two cores was a quarter of the
    /// store's insert time (`storage/benches/device_write.rs`).
    fn lock_for_append(&self) -> parking_lot::MutexGuard<'_, FileState> {
        for _ in 0..APPEND_SPINS {
            if !self.state.is_locked() {
                if let Some(st) = self.state.try_lock() {
                    return st;
                }
            }
            std::hint::spin_loop();
        }
        self.state.lock()
    }

    /// Makes everything written so far durable, if anything was written since the last time.
    pub fn sync(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.file.sync() {
                self.dirty.store(true, Ordering::Release);
                if !self.sync_failed.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        file = self.index,
                        error = %e,
                        "a sync failed: this file takes no more writes until the node restarts"
                    );
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Copies the record at `a` into `scratch`: from the open block or a recent one when it
    /// is there (returns true), else from the file.
    pub fn read_record_bytes(&self, a: DeviceAddr, scratch: &mut Vec<u8>) -> std::io::Result<bool> {
        let block = (a.offset / self.block_bytes as u64) as u32;
        let in_block = (a.offset % self.block_bytes as u64) as usize;
        let len = a.len as usize;
        scratch.clear();
        {
            let st = self.state.lock();
            let memory: Option<&[u8]> = match &st.open {
                Some(o) if o.index == block => Some(&o.bytes),
                _ => st.recent.iter().rev().find(|(b, _)| *b == block).map(|(_, bytes)| &bytes[..]),
            };
            if let Some(bytes) = memory {
                if in_block + len <= bytes.len() {
                    scratch.extend_from_slice(&bytes[in_block..in_block + len]);
                    return Ok(true);
                }
            }
        }
        scratch.resize(len, 0);
        self.file.read_at(scratch, a.offset)?;
        Ok(false)
    }

    /// The whole of block `b` as it stands (from memory when it is open or recent).
    pub fn read_block(&self, b: u32) -> std::io::Result<Vec<u8>> {
        {
            let st = self.state.lock();
            if let Some(o) = st.open.as_ref().filter(|o| o.index == b) {
                return Ok(o.bytes.clone());
            }
            if let Some((_, bytes)) = st.recent.iter().rev().find(|(i, _)| *i == b) {
                return Ok(bytes.to_vec());
            }
        }
        let mut buf = vec![0u8; self.block_bytes];
        self.file.read_at(&mut buf, b as u64 * self.block_bytes as u64)?;
        Ok(buf)
    }

    /// Gives back `len` live bytes of block `b`.
    pub fn release(&self, b: u32, len: u32) {
        self.live[b as usize].fetch_sub(len, Ordering::Relaxed);
    }

    /// The index of the open block, if any.
    pub fn open_block(&self) -> Option<u32> {
        self.state.lock().open.as_ref().map(|o| o.index)
    }

    /// Whether block `b` holds nothing live, is in use and is not open: it can be freed.
    pub fn is_empty_block(&self, b: u32) -> bool {
        let st = self.state.lock();
        st.open.as_ref().is_none_or(|o| o.index != b)
            && self.live[b as usize].load(Ordering::Relaxed) == 0
            && self.sequences[b as usize].load(Ordering::Relaxed) != 0
    }

    /// Erases the headers of `blocks` on the file (durably: a restart must never find the
    /// old records of a freed block again, or deleted records would come back), then frees
    /// those still empty. Returns how many were freed.
    pub fn erase_and_free(&self, blocks: &[u32]) -> std::io::Result<usize> {
        let blocks: Vec<u32> = blocks.iter().copied().filter(|&b| self.is_empty_block(b)).collect();
        if blocks.is_empty() {
            return Ok(0);
        }
        for &b in &blocks {
            self.file.write_at(&[0u8; BLOCK_HEADER_LEN], b as u64 * self.block_bytes as u64)?;
        }
        self.file.sync()?;
        let mut st = self.state.lock();
        let mut freed = 0;
        for b in blocks {
            // Nothing is written into a block that is neither open nor free, so it stayed
            // empty meanwhile.
            if self.sequences[b as usize].swap(0, Ordering::Relaxed) != 0 {
                st.recent.retain(|(i, _)| *i != b);
                st.free.push_back(b);
                freed += 1;
            }
        }
        Ok(freed)
    }

    /// Blocks in use whose live bytes are under `threshold`, emptiest first, at most `max`.
    /// How many blocks in use (the open one aside) hold fewer than `threshold` live bytes.
    pub fn sparse_count(&self, threshold: u32) -> usize {
        let open = self.open_block();
        (1..self.blocks)
            .filter(|&b| Some(b) != open && self.sequences[b as usize].load(Ordering::Relaxed) != 0)
            .filter(|&b| self.live[b as usize].load(Ordering::Relaxed) < threshold)
            .count()
    }

    pub fn sparse_blocks(&self, threshold: u32, max: usize) -> Vec<u32> {
        let open = self.open_block();
        let mut v: Vec<(u32, u32)> = (1..self.blocks)
            .filter(|&b| Some(b) != open && self.sequences[b as usize].load(Ordering::Relaxed) != 0)
            .map(|b| (self.live[b as usize].load(Ordering::Relaxed), b))
            .filter(|&(live, _)| live < threshold)
            .collect();
        v.sort_unstable();
        v.into_iter().take(max).map(|(_, b)| b).collect()
    }
}

/// Counts an append out of `write_q` however it ends.
struct Appended<'a>(&'a AtomicU32);

impl Drop for Appended<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
