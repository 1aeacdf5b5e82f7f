//! A data directory shared by the replicas of a scaled service (one volume mounted by every
//! container of a Compose service): each node claims the first `node-<n>` subdirectory that
//! no running node holds, by an exclusive lock on `node-<n>.lock` kept while it runs, and
//! keeps its data (node id, device files, index catalog) there. When the service comes back
//! after `down` with the volume kept, its nodes claim the same subdirectories again and come
//! back with their records.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// Most nodes sharing one directory.
pub const SLOTS_MAX: u32 = 256;

/// A claimed subdirectory; the claim lasts while this value lives.
#[derive(Debug)]
pub struct SlotClaim {
    _lock: File,
    pub dir: PathBuf,
}

/// Claims the first free slot under `root`.
pub fn claim(root: &Path) -> Result<SlotClaim, String> {
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for n in 1..=SLOTS_MAX {
        let lock_path = root.join(format!("node-{n}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("{}: {e}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => return Ok(SlotClaim { _lock: lock, dir: root.join(format!("node-{n}")) }),
            Err(TryLockError::WouldBlock) => continue,
            Err(TryLockError::Error(e)) => return Err(format!("{}: {e}", lock_path.display())),
        }
    }
    Err(format!("{}: all {SLOTS_MAX} node slots are held by running nodes", root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_gets_its_own_slot_and_a_released_slot_is_reused() {
        let root = std::env::temp_dir().join(format!("petrel-slots-{}", std::process::id()));
        let first = claim(&root).expect("first");
        let second = claim(&root).expect("second");
        assert_eq!(first.dir, root.join("node-1"));
        assert_eq!(second.dir, root.join("node-2"));
        drop(first);
        let again = claim(&root).expect("again");
        assert_eq!(again.dir, root.join("node-1"), "the lowest free slot, the one released");
        drop((second, again));
        let _ = std::fs::remove_dir_all(&root);
    }
}
