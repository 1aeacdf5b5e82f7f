//! The engine a namespace is configured with, chosen at start ([`Engine`]: memory or device),
//! and the 8-byte [`Location`] its index entries keep for either, so that an index entry stays
//! 56 bytes whichever engine holds the data.
//!
//! A location is a tagged word: an even value is the address of a memory image (a
//! [`ThinBytes`] allocation, aligned to 4, owned by the location); an odd value is a device
//! address (`1 | file << 1 | (offset / 8) << 8 | (length / 8) << 44`).

use std::num::NonZeroU64;
use std::ptr::NonNull;

use crate::device::DeviceEngine;
use crate::engine::{ImageMeta, MemoryEngine, StorageEngine, ThinBytes};
use crate::StorageError;

/// Where one record image is: owned memory, or a place on a device.
#[derive(PartialEq, Eq)]
pub struct Location(NonZeroU64);

/// A place on a device, unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAddr {
    pub file: u8,
    /// Byte offset in the file (a multiple of 8).
    pub offset: u64,
    /// Bytes of the record there (a multiple of 8).
    pub len: u32,
}

impl DeviceAddr {
    /// Most files a device address can name.
    pub const FILES_MAX: usize = 1 << 7;
    /// Largest file offset a device address can hold.
    pub const OFFSET_MAX: u64 = ((1 << 36) - 1) * 8;
    /// Longest record a device address can hold.
    pub const LEN_MAX: u32 = ((1 << 20) - 1) * 8;
}

impl Location {
    fn memory(bytes: ThinBytes) -> Location {
        let addr = bytes.into_raw().as_ptr() as usize as u64;
        debug_assert!(addr & 1 == 0, "ThinBytes allocations are aligned to 4");
        Location(NonZeroU64::new(addr).expect("a non-null pointer"))
    }

    /// A device location; `a` must be within the limits of [`DeviceAddr`].
    pub fn device(a: DeviceAddr) -> Location {
        debug_assert!((a.file as usize) < DeviceAddr::FILES_MAX);
        debug_assert!(a.offset.is_multiple_of(8) && a.offset <= DeviceAddr::OFFSET_MAX);
        debug_assert!(a.len.is_multiple_of(8) && a.len <= DeviceAddr::LEN_MAX);
        let v = 1 | (a.file as u64) << 1 | (a.offset / 8) << 8 | (a.len as u64 / 8) << 44;
        Location(NonZeroU64::new(v).expect("tagged"))
    }

    /// The device address, for a device location.
    pub fn device_addr(&self) -> Option<DeviceAddr> {
        let v = self.0.get();
        (v & 1 == 1).then(|| DeviceAddr {
            file: ((v >> 1) & 0x7f) as u8,
            offset: ((v >> 8) & ((1 << 36) - 1)) * 8,
            len: ((v >> 44) as u32) * 8,
        })
    }

    fn memory_ptr(&self) -> Option<NonNull<u8>> {
        let v = self.0.get();
        (v & 1 == 0).then(|| NonNull::new(v as usize as *mut u8).expect("non-null"))
    }

    /// The memory image's bytes, for a memory location.
    fn memory_slice(&self) -> Option<&[u8]> {
        // SAFETY: an even location was made by `Location::memory` from a ThinBytes it owns
        // until it is dropped or released; the bytes live as long as `self`.
        self.memory_ptr().map(|p| unsafe { ThinBytes::slice_at(p) })
    }

    /// Takes back the memory image a memory location owns.
    fn into_memory(self) -> Option<ThinBytes> {
        let p = self.memory_ptr()?;
        std::mem::forget(self);
        // SAFETY: the pointer came from `ThinBytes::into_raw` in `Location::memory`, and
        // `self` (its only owner) was just forgotten.
        Some(unsafe { ThinBytes::from_raw(p) })
    }
}

impl Drop for Location {
    fn drop(&mut self) {
        if let Some(p) = self.memory_ptr() {
            // SAFETY: as in `into_memory`: this location owned the allocation.
            drop(unsafe { ThinBytes::from_raw(p) });
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.device_addr() {
            Some(a) => write!(f, "Location({a:?})"),
            None => write!(f, "Location(memory, {} bytes)", self.memory_slice().map_or(0, <[u8]>::len)),
        }
    }
}

// SAFETY: a memory location owns its allocation exclusively and exposes it only immutably
// (like `Box<[u8]>`); a device location is a plain number.
unsafe impl Send for Location {}
// SAFETY: see above.
unsafe impl Sync for Location {}

/// The engine of a namespace: its records' data in process memory, or on devices.
#[derive(Debug)]
pub enum Engine {
    Memory(MemoryEngine),
    Device(DeviceEngine),
}

impl Engine {
    /// The device store, for a device namespace.
    pub fn device(&self) -> Option<&DeviceEngine> {
        match self {
            Engine::Device(d) => Some(d),
            Engine::Memory(_) => None,
        }
    }
}

impl StorageEngine for Engine {
    type Loc = Location;

    fn write(&self, meta: &ImageMeta<'_>, image: &[u8]) -> Result<Location, StorageError> {
        match self {
            Engine::Memory(m) => m.write(meta, image).map(Location::memory),
            Engine::Device(d) => d.write(meta, image),
        }
    }

    #[inline]
    fn read<'a>(&'a self, loc: &'a Location, scratch: &'a mut Vec<u8>) -> Result<&'a [u8], StorageError> {
        if let Some(bytes) = loc.memory_slice() {
            return Ok(bytes);
        }
        match self {
            Engine::Device(d) => d.read(loc, scratch),
            Engine::Memory(_) => Err(StorageError::Internal("a device location in a memory namespace")),
        }
    }

    fn release(&self, loc: Location) {
        match self {
            Engine::Memory(m) => {
                if let Some(bytes) = loc.into_memory() {
                    m.release(bytes);
                }
            }
            Engine::Device(d) => d.release(loc),
        }
    }

    fn remove(&self, meta: &ImageMeta<'_>) -> Result<(), StorageError> {
        match self {
            Engine::Memory(_) => Ok(()),
            Engine::Device(d) => d.remove(meta),
        }
    }

    fn truncate(&self, set: &[u8], cutoff_ms: u64) -> Result<(), StorageError> {
        match self {
            Engine::Memory(_) => Ok(()),
            Engine::Device(d) => d.truncate(set, cutoff_ms),
        }
    }

    fn persists(&self) -> bool {
        matches!(self, Engine::Device(_))
    }

    fn data_bytes(&self) -> u64 {
        match self {
            Engine::Memory(m) => m.data_bytes(),
            // Record data is on the device: it takes no memory.
            Engine::Device(_) => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_proto::Digest;

    #[test]
    fn locations_are_eight_bytes_and_round_trip() {
        assert_eq!(std::mem::size_of::<Option<Location>>(), 8);
        let a = DeviceAddr { file: 127, offset: DeviceAddr::OFFSET_MAX, len: DeviceAddr::LEN_MAX };
        assert_eq!(Location::device(a).device_addr(), Some(a));
        let b = DeviceAddr { file: 0, offset: 8 << 20, len: 48 };
        assert_eq!(Location::device(b).device_addr(), Some(b));

        let engine = Engine::Memory(MemoryEngine::new());
        let d = Digest::default();
        let meta = ImageMeta { digest: &d, generation: 1, void_time: 0, lut_ms: 1, set: b"", tombstone: false };
        let loc = engine.write(&meta, b"hello").expect("write");
        assert_eq!(loc.device_addr(), None);
        let mut scratch = Vec::new();
        assert_eq!(engine.read(&loc, &mut scratch).expect("read"), b"hello");
        assert_eq!(engine.data_bytes(), 9);
        engine.release(loc);
        assert_eq!(engine.data_bytes(), 0);
        // Dropped without release: the allocation goes with it.
        drop(engine.write(&meta, b"dropped").expect("write"));
    }
}
