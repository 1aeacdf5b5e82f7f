//! Operate and delete: the write path of a record under its sprig lock — policy checks
//! (exists action, generation, stop-writes, size), the new image computed by the bin-op
//! engine (`bin_ops`) while the old one is borrowed, then the image installed with its new
//! generation, void time and last-update time.

use std::sync::atomic::Ordering;

use petrel_proto::wire::SET_NAME_LEN_MAX;
use petrel_proto::Digest;

use crate::engine::StorageEngine;
use crate::exp::{Bins, Program, RecordCtx};
use crate::index::{Entry, Handle, Tree};
use crate::namespace::bin_ops::{apply_op, WorkBin, WorkBins};
use crate::namespace::{Namespace, RecordMeta};
use crate::ops::{ExistsAction, GenerationPolicy, Op, OpResult, OperateRequest, Ttl};
use crate::record::{self, ImageView, KeyRef};
use crate::value::check_bin_name;
use crate::StorageError;

/// What an operate answers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperateOutcome {
    /// The record's metadata after the ops (zeros when the ops deleted it).
    pub meta: RecordMeta,
    pub results: Vec<OpResult>,
    /// The record's new image when the ops wrote one (what replicas are sent); `None` when
    /// nothing was written or the record was removed.
    pub image: Option<Vec<u8>>,
}

impl<E: StorageEngine> Namespace<E> {
    /// Deletes a record.
    pub fn delete(&self, digest: &Digest, generation: GenerationPolicy) -> Result<(), StorageError> {
        self.delete_filtered(digest, generation, None)
    }

    /// Deletes a record that passes `filter` (evaluated under the record's lock); one that
    /// does not is [`StorageError::FilteredOut`] and stays.
    pub fn delete_filtered(
        &self,
        digest: &Digest,
        generation: GenerationPolicy,
        filter: Option<&Program>,
    ) -> Result<(), StorageError> {
        let now_ms = self.clock.now_ms();
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, (now_ms / 1000) as u32).ok_or(StorageError::NotFound)?;
        generation.check(tree.entry(h).generation)?;
        self.check_filter(&tree, h, filter, now_ms)?;
        let lut_ms = Self::delete_lut_ms(&tree, h, now_ms);
        self.delete_entry(&mut tree, h, digest, lut_ms, lut_ms)?;
        Ok(())
    }

    /// Fails with [`StorageError::FilteredOut`] when the locked record `h` does not pass.
    fn check_filter(
        &self,
        tree: &Tree<E::Loc>,
        h: Handle,
        filter: Option<&Program>,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        if filter.is_none() {
            return Ok(());
        }
        let e = tree.entry(h);
        let mut scratch = Vec::new();
        let loc = e.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let image = ImageView::parse(self.engine.read(loc, &mut scratch)?)?;
        if self.passes(filter, e, &image, now_ms) {
            Ok(())
        } else {
            Err(StorageError::FilteredOut)
        }
    }

    /// Applies `req.ops` to one record atomically.
    pub fn operate(&self, req: &OperateRequest<'_>) -> Result<OperateOutcome, StorageError> {
        self.operate_filtered(req, None)
    }

    /// [`Namespace::operate`] on a record that, when it exists, must pass `filter` (evaluated
    /// under the record's lock, before any op); one that does not is
    /// [`StorageError::FilteredOut`] and is left as it was.
    pub fn operate_filtered(
        &self,
        req: &OperateRequest<'_>,
        filter: Option<&Program>,
    ) -> Result<OperateOutcome, StorageError> {
        let has_write = req.ops.iter().any(Op::is_write);
        for op in req.ops {
            if op.is_write() {
                if !matches!(op, Op::Touch | Op::DeleteRecord) {
                    check_bin_name(op.bin())?;
                }
            } else if op.bin().len() > petrel_proto::wire::BIN_NAME_LEN_MAX {
                return Err(StorageError::BinName("bin name is longer than 15 bytes"));
            }
        }
        if req.set.len() > SET_NAME_LEN_MAX {
            return Err(StorageError::Parameter("set name is longer than 63 bytes"));
        }
        if !has_write {
            return self.operate_read_only(req, filter);
        }
        // One look at the settings for the whole write.
        let (max_record_size, default_ttl_secs, stop_writes_bytes) = {
            let c = self.config.read();
            (
                c.max_record_size_bytes,
                c.default_ttl_secs,
                Self::pct_of_memory(c.memory_size_bytes, c.stop_writes_used_pct),
            )
        };
        if self.memory_used_bytes() >= stop_writes_bytes {
            self.stop_writes.store(true, Ordering::Relaxed);
            return Err(StorageError::OutOfSpace);
        }
        let set_id = self.set_id_or_create(req.set)?;
        let now_ms = self.clock.now_ms();
        let now_secs = (now_ms / 1000) as u32;
        let digest = &req.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let existing = self.find_live(&mut tree, digest, now_secs);

        let policy = req.policy;
        match (policy.exists, existing) {
            (ExistsAction::UpdateOnly | ExistsAction::ReplaceOnly, None) => return Err(StorageError::NotFound),
            (ExistsAction::CreateOnly, Some(_)) => return Err(StorageError::RecordExists),
            _ => {}
        }
        if let Some(h) = existing {
            policy.generation.check(tree.entry(h).generation)?;
            self.check_filter(&tree, h, filter, now_ms)?;
        }
        let replace = matches!(policy.exists, ExistsAction::Replace | ExistsAction::ReplaceOnly);

        // Phase 1: compute the new image and the results while the old image is borrowed.
        let mut scratch = Vec::new();
        let mut new_image = Vec::new();
        // Most records have a few bins: keep the working list on the stack.
        let mut results = Vec::new();
        let (old_void_time, keep_key_stored, bins_left) = {
            let (old_image, old_void) = match existing {
                Some(h) => {
                    let e = tree.entry(h);
                    let loc = e.loc().ok_or(StorageError::Internal("live entry without data"))?;
                    (Some(ImageView::parse(self.engine.read(loc, &mut scratch)?)?), Some(e.void_time))
                }
                None => (None, None),
            };
            let stored_key = old_image.and_then(|i| i.key);
            if let (Some(sent), Some(stored)) = (req.key, stored_key) {
                if sent != stored {
                    return Err(StorageError::KeyMismatch);
                }
            }
            let key = stored_key.or(req.key);
            let rec = exp_ctx(req, key, existing.map(|h| tree.entry(h)), now_ms);
            let mut bins: WorkBins<'_> = WorkBins::new();
            if let (Some(img), false) = (old_image, replace) {
                bins.reserve(img.bins_count() + req.ops.len());
                for b in img.bins() {
                    bins.push(WorkBin::stored(b?));
                }
            }
            for op in req.ops {
                apply_op(op, &mut bins, &mut results, policy.respond_all_ops, max_record_size, &rec)?;
            }
            if !bins.is_empty() {
                let size = record::encoded_len(key, bins.iter().map(|b| (b.name, b.value.len())));
                if size > max_record_size {
                    return Err(StorageError::RecordTooBig { size, limit: max_record_size });
                }
                new_image.reserve_exact(size);
                record::encode(&mut new_image, key, bins.iter().map(|b| (b.name, b.particle, b.value.as_slice())))?;
            }
            (old_void, key.is_some(), !bins.is_empty())
        };

        // Phase 2: install the new image.
        if !bins_left {
            return match existing {
                Some(h) => {
                    let lut_ms = Self::delete_lut_ms(&tree, h, now_ms);
                    self.delete_entry(&mut tree, h, digest, lut_ms, lut_ms)?;
                    Ok(OperateOutcome { meta: RecordMeta::default(), results, image: None })
                }
                // Nothing to create: the ops left no bins on a record that did not exist.
                None => Err(StorageError::NotFound),
            };
        }
        let (old_generation, old_lut_ms, entry_set) = match existing {
            Some(h) => {
                let e = tree.entry(h);
                (e.generation, e.lut_ms, e.set_id())
            }
            // Created again after a delete: later than the delete, whatever the clock says,
            // so that its copies are not taken for older than the delete elsewhere.
            None => (0, self.delete_marks.get(digest).unwrap_or(0), set_id),
        };
        // A write is always newer than the last update and than any truncate cut-off that
        // covers it, even within the millisecond of a truncate.
        let meta = RecordMeta {
            generation: next_generation(old_generation),
            void_time: Self::void_time_for(policy.ttl, old_void_time, now_secs, default_ttl_secs),
            lut_ms: now_ms.max(old_lut_ms + 1).max(self.truncate_cutoff_ms(entry_set) + 1),
        };
        let loc = self.write_image(digest, entry_set, meta, &new_image)?;
        let h = self.install(&mut tree, existing, digest, set_id, loc, &new_image);
        let e = tree.entry_mut(h);
        e.generation = meta.generation;
        e.void_time = meta.void_time;
        e.lut_ms = meta.lut_ms;
        e.set_key_stored(keep_key_stored);
        Ok(OperateOutcome { meta, results, image: Some(new_image) })
    }

    /// An operate with no write: runs the ops on the borrowed image and changes nothing.
    fn operate_read_only(
        &self,
        req: &OperateRequest<'_>,
        filter: Option<&Program>,
    ) -> Result<OperateOutcome, StorageError> {
        // Settings before the partition lock, as for writes; reads never grow a bin anyway.
        let max_record_size = self.config.read().max_record_size_bytes;
        let now_ms = self.clock.now_ms();
        let digest = &req.digest;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, (now_ms / 1000) as u32).ok_or(StorageError::NotFound)?;
        let e = tree.entry(h);
        let mut scratch = Vec::new();
        let loc = e.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let image = ImageView::parse(self.engine.read(loc, &mut scratch)?)?;
        if !self.passes(filter, e, &image, now_ms) {
            return Err(StorageError::FilteredOut);
        }
        let rec = exp_ctx(req, image.key, Some(e), now_ms);
        let mut bins: WorkBins<'_> = WorkBins::with_capacity(image.bins_count());
        for b in image.bins() {
            bins.push(WorkBin::stored(b?));
        }
        let mut results = Vec::new();
        for op in req.ops {
            apply_op(op, &mut bins, &mut results, req.policy.respond_all_ops, max_record_size, &rec)?;
        }
        Ok(OperateOutcome { meta: RecordMeta::of(e), results, image: None })
    }

    /// The void time a write leaves: from its TTL, the record's current void time (for
    /// "keep existing") and the namespace default.
    fn void_time_for(ttl: Ttl, existing: Option<u32>, now_secs: u32, default_ttl_secs: u32) -> u32 {
        let secs = match ttl {
            Ttl::Never => return 0,
            Ttl::KeepExisting => match existing {
                Some(v) => return v,
                None => default_ttl_secs,
            },
            Ttl::NamespaceDefault => default_ttl_secs,
            Ttl::Secs(s) => s,
        };
        if secs == 0 {
            0
        } else {
            now_secs.saturating_add(secs)
        }
    }
}

/// What expression operations see of the record besides its bins.
fn exp_ctx<'a, L>(
    req: &'a OperateRequest<'_>,
    key: Option<KeyRef<'a>>,
    entry: Option<&Entry<L>>,
    now_ms: u64,
) -> RecordCtx<'a> {
    RecordCtx {
        digest: &req.digest,
        set_name: req.set,
        key,
        void_time: entry.map_or(0, |e| e.void_time),
        lut_ms: entry.map_or(0, |e| e.lut_ms),
        now_ms,
        data_size: entry.map_or(0, |e| e.data_size as usize),
        bins: Bins::None,
    }
}

/// The generation after `g`.
fn next_generation(g: u16) -> u16 {
    // Generation 0 means "no record"; it wraps from 65535 back to 1.
    if g == u16::MAX {
        1
    } else {
        g + 1
    }
}
