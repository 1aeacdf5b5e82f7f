//! What a device store writes to: the [`Medium`] trait (positioned reads and writes, and
//! making writes durable), implemented by files and raw devices, and by failing media in
//! tests (torn and short writes, failing syncs, a full device).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A file or raw block device the store keeps its blocks on.
pub trait Medium: Send + Sync + std::fmt::Debug {
    /// Fills `buf` from `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (to the operating system at least).
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable.
    fn sync(&self) -> io::Result<()>;
}

impl Medium for File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }
}
