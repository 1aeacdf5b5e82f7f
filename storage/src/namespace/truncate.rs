//! Truncation: logically deleting every record of a set, or of the whole namespace, last
//! updated before a cut-off. It takes effect at once, since liveness checks compare each
//! record's last update with the cut-off; the supervisor gives the memory back later.

use std::sync::atomic::Ordering;

use crate::engine::StorageEngine;
use crate::namespace::Namespace;
use crate::StorageError;

impl<E: StorageEngine> Namespace<E> {
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
        // Durable first: a truncation the store could not record is refused, not half done.
        self.engine.truncate(set.unwrap_or(b""), cutoff)?;
        self.set_truncate_lut_ms[id as usize].fetch_max(cutoff, Ordering::Relaxed);
        Ok(())
    }

    /// A truncation found on the device at restart: set `set` (the namespace when empty)
    /// truncated up to `cutoff_ms`.
    pub(crate) fn restore_truncate(&self, set: &[u8], cutoff_ms: u64) -> Result<(), StorageError> {
        let id = self.set_id_or_create(set)?;
        self.set_truncate_lut_ms[id as usize].fetch_max(cutoff_ms, Ordering::Relaxed);
        Ok(())
    }
}
