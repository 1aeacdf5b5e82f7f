//! Statistics: a snapshot of a namespace's counters, memory and sets.

use std::sync::atomic::Ordering;

use crate::engine::StorageEngine;
use crate::namespace::Namespace;

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
    /// Delete marks kept (recent deletes, see `marks`), and about the memory they take.
    pub delete_marks: u64,
    pub delete_marks_bytes: u64,
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

impl<E: StorageEngine> Namespace<E> {
    /// Records held, dead ones the supervisor has not yet reclaimed included.
    pub fn objects(&self) -> u64 {
        self.counters.objects.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters; each is read on its own, so they need not agree exactly.
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
            delete_marks: self.delete_marks.len(),
            delete_marks_bytes: self.delete_marks.len() * super::marks::MARK_BYTES,
            sets,
        }
    }
}
