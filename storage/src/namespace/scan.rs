//! Scans: walking one partition in digest order, a bounded batch of live records at a time,
//! so no sprig lock is held while the caller looks at a record; and listing a digest range's
//! live records by metadata alone (no data read), as a migration compares two copies.

use petrel_proto::{Digest, PartitionId};

use crate::engine::StorageEngine;
use crate::exp::Program;
use crate::namespace::{Namespace, RecordMeta};
use crate::record::ImageView;
use crate::StorageError;

/// A record handed to a scan callback.
#[derive(Debug)]
pub struct ScanRecord<'a> {
    pub digest: Digest,
    pub meta: RecordMeta,
    pub set_id: u16,
    pub image: ImageView<'a>,
    /// The image's bytes, as stored.
    pub raw: &'a [u8],
}

/// Where a scan of one partition stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanProgress {
    /// Digest of the last record handed over; resume after it.
    pub last: Option<Digest>,
    /// Records handed over.
    pub returned: usize,
    /// True when the partition was walked to its end.
    pub complete: bool,
}

impl<E: StorageEngine> Namespace<E> {
    /// Walks partition `pid` in ascending digest order from just after `after`, handing at
    /// most `limit` live records (of set `set_id`, when given) to `visit` until it returns
    /// false. Records are copied out a small batch at a time, so no sprig lock is held while
    /// `visit` runs.
    pub fn scan_partition(
        &self,
        pid: PartitionId,
        after: Option<Digest>,
        set_id: Option<u16>,
        limit: usize,
        visit: impl FnMut(&ScanRecord<'_>) -> bool,
    ) -> Result<ScanProgress, StorageError> {
        self.scan_partition_filtered(pid, after, set_id, limit, None, visit)
    }

    /// [`Namespace::scan_partition`] handing over only the records that pass `filter`,
    /// evaluated under the sprig lock; the others are walked past.
    pub fn scan_partition_filtered(
        &self,
        pid: PartitionId,
        after: Option<Digest>,
        set_id: Option<u16>,
        limit: usize,
        filter: Option<&Program>,
        mut visit: impl FnMut(&ScanRecord<'_>) -> bool,
    ) -> Result<ScanProgress, StorageError> {
        const BATCH: usize = 64;
        let partition = &self.partitions[pid as usize];
        let mut progress = ScanProgress { last: after, returned: 0, complete: false };
        let first_sprig = after.map_or(0, |d| partition.sprig_index(&d));
        let mut batch: Vec<(Digest, RecordMeta, u16, std::ops::Range<usize>)> = Vec::with_capacity(BATCH);
        let mut bytes: Vec<u8> = Vec::new();
        let mut scratch = Vec::new();
        for sprig in first_sprig..partition.sprigs_count() {
            loop {
                if progress.returned >= limit {
                    return Ok(progress);
                }
                let want = BATCH.min(limit - progress.returned);
                batch.clear();
                bytes.clear();
                let mut exhausted = true;
                {
                    let tree = partition.lock_sprig(sprig);
                    let now_ms = self.clock.now_ms();
                    let now_secs = (now_ms / 1000) as u32;
                    let mut failure = None;
                    let start = progress.last;
                    tree.visit_from(start.as_ref(), |e| {
                        if batch.len() == want {
                            exhausted = false;
                            return false;
                        }
                        if self.doom(e, now_secs).is_some() || set_id.is_some_and(|s| s != e.set_id()) {
                            // Skipped, but the cursor still moves past it.
                            progress.last = Some(e.digest);
                            return true;
                        }
                        let Some(loc) = e.loc() else { return true };
                        match self.engine.read(loc, &mut scratch) {
                            Ok(image) if !self.image_passes(filter, e, image, now_ms) => {
                                progress.last = Some(e.digest);
                                true
                            }
                            Ok(image) => {
                                let start = bytes.len();
                                bytes.extend_from_slice(image);
                                batch.push((e.digest, RecordMeta::of(e), e.set_id(), start..bytes.len()));
                                true
                            }
                            Err(err) => {
                                failure = Some(err);
                                false
                            }
                        }
                    });
                    if let Some(err) = failure {
                        return Err(err);
                    }
                }
                for (digest, meta, set, range) in &batch {
                    progress.last = Some(*digest);
                    progress.returned += 1;
                    let raw = &bytes[range.clone()];
                    let image = ImageView::parse(raw)?;
                    let rec = ScanRecord { digest: *digest, meta: *meta, set_id: *set, image, raw };
                    if !visit(&rec) {
                        return Ok(progress);
                    }
                }
                if exhausted {
                    break;
                }
            }
        }
        progress.complete = true;
        Ok(progress)
    }

    /// The live records of partition `pid` after `after` and up to and including `through`
    /// (None: to the end), ascending, at most `limit`, by metadata alone: the index is read,
    /// the data is not. The progress's `last` moves past dead records too, and `complete`
    /// says the range was walked to its end.
    pub fn partition_stamps(
        &self,
        pid: PartitionId,
        after: Option<Digest>,
        through: Option<Digest>,
        limit: usize,
    ) -> (Vec<(Digest, RecordMeta)>, ScanProgress) {
        let partition = &self.partitions[pid as usize];
        let mut out = Vec::new();
        let mut progress = ScanProgress { last: after, returned: 0, complete: false };
        let first_sprig = after.map_or(0, |d| partition.sprig_index(&d));
        let now_secs = self.clock.now_secs();
        for sprig in first_sprig..partition.sprigs_count() {
            let tree = partition.lock_sprig(sprig);
            let mut beyond = false;
            let start = progress.last;
            tree.visit_from(start.as_ref(), |e| {
                if through.is_some_and(|t| e.digest > t) {
                    beyond = true;
                    return false;
                }
                if out.len() == limit {
                    return false;
                }
                if self.doom(e, now_secs).is_none() {
                    out.push((e.digest, RecordMeta::of(e)));
                }
                progress.last = Some(e.digest);
                true
            });
            drop(tree);
            if beyond {
                break;
            }
            if out.len() == limit {
                progress.returned = out.len();
                return (out, progress);
            }
        }
        progress.returned = out.len();
        progress.complete = true;
        (out, progress)
    }
}
