//! What a simulated machine keeps across its node's crashes and restarts: its wall clock
//! (which the schedule steps) and, when the run stores records on devices, its disk (the
//! device store's bytes, in memory, and a directory for the node's saved partition
//! versions). A crash kills the process, not the machine: what the node wrote to its disk
//! stays, as it would in the page cache.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use petrel_storage::clock::Clock;
use petrel_storage::device::medium::Medium;
use petrel_storage::DeviceConfig;

/// One machine's wall clock, which its namespace stamps records with: tokio's paused clock
/// from a fixed start, plus an offset the schedule steps now and then (NTP stepping a
/// clock, a resumed VM, an operator's mistake). Timers run on the monotonic clock, which
/// no jump moves, as on a real machine.
#[derive(Debug)]
pub(super) struct SimClock {
    start: tokio::time::Instant,
    pub offset_ms: AtomicI64,
}

impl SimClock {
    pub fn new() -> SimClock {
        SimClock { start: tokio::time::Instant::now(), offset_ms: AtomicI64::new(0) }
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        // 2026 in milliseconds since 2010-01-01, so that times look like real ones.
        let wall = 505_000_000_000 + self.start.elapsed().as_millis() as i64;
        (wall + self.offset_ms.load(Ordering::Relaxed)) as u64
    }
}

/// Size of a node's device file: room for the runs' few records many times over.
const DISK_BYTES: u64 = 8 << 20;
const WRITE_BLOCK_BYTES: usize = 128 << 10;

/// A node's disk: the device store's file, in memory, and its state directory.
#[derive(Debug)]
pub(super) struct Disk {
    bytes: Arc<Mutex<Vec<u8>>>,
    pub state_dir: PathBuf,
}

impl Disk {
    /// A blank disk for node `node` of run `seed`. The state directory goes on a memory file
    /// system where there is one: the node saves its versions often.
    pub fn new(seed: u64, node: usize) -> io::Result<Disk> {
        let shm = PathBuf::from("/dev/shm");
        let base = if shm.is_dir() { shm } else { std::env::temp_dir() };
        let state_dir = base.join(format!("petrel-sim-{}-{seed}-{node}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir)?;
        Ok(Disk { bytes: Arc::new(Mutex::new(vec![0; DISK_BYTES as usize])), state_dir })
    }

    /// The device settings of the namespace on this disk (the file's path is a name only).
    pub fn device_config(&self) -> DeviceConfig {
        let mut c = DeviceConfig::one_file(self.state_dir.join("data"), DISK_BYTES);
        c.write_block_bytes = WRITE_BLOCK_BYTES;
        c
    }

    /// The medium the store writes to, for one life of the node.
    pub fn medium(&self) -> Box<dyn Medium> {
        Box::new(MemMedium(Arc::clone(&self.bytes)))
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

#[derive(Debug)]
struct MemMedium(Arc<Mutex<Vec<u8>>>);

impl Medium for MemMedium {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let bytes = self.0.lock();
        let at = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = at.checked_add(buf.len()).ok_or(io::ErrorKind::InvalidInput)?;
        let src = bytes.get(at..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut bytes = self.0.lock();
        let at = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = at.checked_add(buf.len()).ok_or(io::ErrorKind::InvalidInput)?;
        let dst = bytes.get_mut(at..end).ok_or(io::ErrorKind::WriteZero)?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}
