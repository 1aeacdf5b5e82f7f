//! Where record data lives: the [`StorageEngine`] trait, and its in-memory implementation.
//!
//! The index keeps, per record, a location of the engine's choosing; the engine turns a
//! record's data image into a location and back. The memory engine's location is the data
//! itself, a thin owned pointer; the flash store's (`crate::device`) is an address in its
//! write blocks; `crate::location` holds either in one word.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use petrel_proto::Digest;

use crate::StorageError;

/// Largest record image an engine must store (the protocol's write-block bound).
pub const IMAGE_SIZE_MAX: usize = 8 * 1024 * 1024;

/// What a persistent engine stores beside a record's image, so that a cold restart can
/// rebuild the index from the medium alone.
#[derive(Debug, Clone, Copy)]
pub struct ImageMeta<'a> {
    pub digest: &'a Digest,
    pub generation: u16,
    pub void_time: u32,
    pub lut_ms: u64,
    /// The record's set name (empty: none). Only filled for engines that persist.
    pub set: &'a [u8],
    /// A durable delete rather than a record.
    pub tombstone: bool,
}

/// A medium for record data images.
pub trait StorageEngine: Send + Sync + std::fmt::Debug + 'static {
    /// What the index keeps to find a record's data again. Must be at most 8 bytes with a
    /// niche, so that `Option<Loc>` in an index entry stays 8 bytes.
    type Loc: Send + Sync + std::fmt::Debug + 'static;

    /// Stores an image of the record `meta` describes and returns where it went.
    fn write(&self, meta: &ImageMeta<'_>, image: &[u8]) -> Result<Self::Loc, StorageError>;

    /// Records durably that the record `meta` describes was deleted (a persistent engine
    /// writes a tombstone, so that a cold restart does not bring back an older copy).
    fn remove(&self, meta: &ImageMeta<'_>) -> Result<(), StorageError> {
        let _ = meta;
        Ok(())
    }

    /// Records durably that set `set` (the whole namespace when empty) was truncated up to
    /// `cutoff_ms`, so that a cold restart does not bring the truncated records back.
    fn truncate(&self, set: &[u8], cutoff_ms: u64) -> Result<(), StorageError> {
        let _ = (set, cutoff_ms);
        Ok(())
    }

    /// Whether the engine keeps records across restarts (and so needs set names in
    /// [`ImageMeta`]).
    fn persists(&self) -> bool {
        false
    }

    /// Returns the image at `loc`; an engine that cannot lend its bytes copies them into
    /// `scratch` and returns that.
    fn read<'a>(&'a self, loc: &'a Self::Loc, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], StorageError>;

    /// Gives back the space of an image that is no longer referenced.
    fn release(&self, loc: Self::Loc);

    /// Bytes of data currently stored.
    fn data_bytes(&self) -> u64;
}

/// Record data kept in process memory, one allocation per record image.
#[derive(Debug, Default)]
pub struct MemoryEngine {
    data_bytes: AtomicU64,
}

impl MemoryEngine {
    pub fn new() -> Self {
        Self::default()
    }
}

impl StorageEngine for MemoryEngine {
    type Loc = ThinBytes;

    fn write(&self, _meta: &ImageMeta<'_>, image: &[u8]) -> Result<ThinBytes, StorageError> {
        let bytes = ThinBytes::new(image);
        self.data_bytes.fetch_add(bytes.allocated_len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    #[inline]
    fn read<'a>(&'a self, loc: &'a ThinBytes, _scratch: &'a mut Vec<u8>) -> Result<&'a [u8], StorageError> {
        Ok(loc.as_slice())
    }

    fn release(&self, loc: ThinBytes) {
        self.data_bytes.fetch_sub(loc.allocated_len() as u64, Ordering::Relaxed);
    }

    fn data_bytes(&self) -> u64 {
        self.data_bytes.load(Ordering::Relaxed)
    }
}

/// An owned, immutable byte string behind a single (thin) pointer: a 4-byte length followed by
/// the bytes, in one allocation. It is what `Box<[u8]>` is, at half the size in an index entry.
pub struct ThinBytes(NonNull<u8>);

const THIN_HEADER: usize = std::mem::size_of::<u32>();

impl ThinBytes {
    /// Copies `data` into a new allocation. `data` must be shorter than 4 GiB.
    pub fn new(data: &[u8]) -> ThinBytes {
        let len = u32::try_from(data.len()).expect("image length fits u32");
        let layout = Self::layout(data.len());
        // SAFETY: the layout has a non-zero size (it always includes the header).
        let raw = unsafe { alloc::alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else { alloc::handle_alloc_error(layout) };
        // SAFETY: the allocation is THIN_HEADER + data.len() bytes, aligned for u32; the
        // header and the payload are written within it and do not overlap `data`.
        unsafe {
            ptr.as_ptr().cast::<u32>().write(len);
            std::ptr::copy_nonoverlapping(data.as_ptr(), ptr.as_ptr().add(THIN_HEADER), data.len());
        }
        ThinBytes(ptr)
    }

    /// Gives up ownership: the allocation lives on until [`ThinBytes::from_raw`] takes it back.
    pub fn into_raw(self) -> NonNull<u8> {
        let p = self.0;
        std::mem::forget(self);
        p
    }

    /// Takes back an allocation given up by [`ThinBytes::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw`, and be taken back once only.
    pub unsafe fn from_raw(p: NonNull<u8>) -> ThinBytes {
        ThinBytes(p)
    }

    /// The bytes of an allocation given up by [`ThinBytes::into_raw`].
    ///
    /// # Safety
    /// `p` must come from `into_raw` and not have been taken back; the slice must not outlive
    /// the allocation.
    pub unsafe fn slice_at<'a>(p: NonNull<u8>) -> &'a [u8] {
        // SAFETY: per the caller's promise, `p` is a live ThinBytes allocation: a u32 length
        // then that many initialised bytes.
        unsafe {
            let len = p.as_ptr().cast::<u32>().read() as usize;
            std::slice::from_raw_parts(p.as_ptr().add(THIN_HEADER), len)
        }
    }

    fn layout(len: usize) -> Layout {
        Layout::from_size_align(THIN_HEADER + len, std::mem::align_of::<u32>()).expect("image layout")
    }

    fn len(&self) -> usize {
        // SAFETY: the header was written by `new` and is never changed.
        unsafe { self.0.as_ptr().cast::<u32>().read() as usize }
    }

    /// Bytes this value occupies in its allocation.
    pub fn allocated_len(&self) -> usize {
        THIN_HEADER + self.len()
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `new` initialised `len` bytes after the header; they live until `drop`.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().add(THIN_HEADER), self.len()) }
    }
}

impl Drop for ThinBytes {
    fn drop(&mut self) {
        let layout = Self::layout(self.len());
        // SAFETY: the pointer came from `alloc::alloc` with this same layout.
        unsafe { alloc::dealloc(self.0.as_ptr(), layout) }
    }
}

impl std::fmt::Debug for ThinBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ThinBytes({} bytes)", self.len())
    }
}

// SAFETY: ThinBytes owns its allocation exclusively and exposes it only immutably, like
// `Box<[u8]>`, which is Send and Sync.
unsafe impl Send for ThinBytes {}
// SAFETY: see above.
unsafe impl Sync for ThinBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thin_bytes_round_trip_and_account() {
        let engine = MemoryEngine::new();
        let d = Digest::default();
        let meta = ImageMeta { digest: &d, generation: 1, void_time: 0, lut_ms: 1, set: b"", tombstone: false };
        let a = engine.write(&meta, b"hello").expect("write");
        let empty = engine.write(&meta, b"").expect("write");
        let mut scratch = Vec::new();
        assert_eq!(engine.read(&a, &mut scratch).expect("read"), b"hello");
        assert_eq!(engine.read(&empty, &mut scratch).expect("read"), b"");
        assert_eq!(engine.data_bytes(), (4 + 5) + 4);
        engine.release(a);
        engine.release(empty);
        assert_eq!(engine.data_bytes(), 0);
        assert_eq!(std::mem::size_of::<Option<ThinBytes>>(), 8);
    }
}
