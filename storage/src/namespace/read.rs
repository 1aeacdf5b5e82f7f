//! Reads: a record's selected bins handed out under its sprig lock, a record's whole current
//! image (for copies), and existence checks.

use petrel_proto::Digest;

use crate::engine::StorageEngine;
use crate::exp::Program;
use crate::namespace::{Namespace, RecordMeta};
use crate::ops::ReadSelect;
use crate::record::{BinRef, ImageView};
use crate::StorageError;

/// A record as it stands: its metadata, its set's name (empty: none) and its image.
#[derive(Debug, Clone)]
pub struct CurrentImage {
    pub meta: RecordMeta,
    pub set: Vec<u8>,
    pub image: Vec<u8>,
}

impl<E: StorageEngine> Namespace<E> {
    /// Reads a record, handing each selected bin to `sink` while the record is locked (so a
    /// caller can copy it straight into its answer).
    pub fn read(
        &self,
        digest: &Digest,
        select: ReadSelect<'_>,
        sink: impl FnMut(BinRef<'_>),
    ) -> Result<RecordMeta, StorageError> {
        self.read_filtered(digest, select, None, sink)
    }

    /// [`Namespace::read`] of a record that must pass `filter` (evaluated under the record's
    /// lock); one that does not is [`StorageError::FilteredOut`].
    pub fn read_filtered(
        &self,
        digest: &Digest,
        select: ReadSelect<'_>,
        filter: Option<&Program>,
        mut sink: impl FnMut(BinRef<'_>),
    ) -> Result<RecordMeta, StorageError> {
        let now_ms = self.clock.now_ms();
        let now_secs = (now_ms / 1000) as u32;
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let h = self.find_live(&mut tree, digest, now_secs).ok_or(StorageError::NotFound)?;
        let entry = tree.entry(h);
        let meta = RecordMeta::of(entry);
        if matches!(select, ReadSelect::NoBins) && filter.is_none() {
            return Ok(meta);
        }
        let mut scratch = Vec::new();
        let loc = entry.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let image = ImageView::parse(self.engine.read(loc, &mut scratch)?)?;
        if !self.passes(filter, entry, &image, now_ms) {
            return Err(StorageError::FilteredOut);
        }
        for bin in image.bins() {
            let bin = bin?;
            let wanted = match select {
                ReadSelect::All => true,
                ReadSelect::Bins(names) => names.contains(&bin.name),
                ReadSelect::NoBins => false,
            };
            if wanted {
                sink(bin);
            }
        }
        Ok(meta)
    }

    /// A live record as it stands, whole (what a copy to another node carries); None when
    /// there is no live record.
    pub fn current_image(&self, digest: &Digest) -> Result<Option<CurrentImage>, StorageError> {
        let now_secs = self.clock.now_secs();
        let mut tree = self.partitions[digest.partition_id() as usize].lock(digest);
        let Some(h) = self.find_live(&mut tree, digest, now_secs) else { return Ok(None) };
        let entry = tree.entry(h);
        let loc = entry.loc().ok_or(StorageError::Internal("live entry without data"))?;
        let mut scratch = Vec::new();
        let image = self.engine.read(loc, &mut scratch)?.to_vec();
        let (meta, set_id) = (RecordMeta::of(entry), entry.set_id());
        drop(tree);
        let set = if set_id == 0 { Vec::new() } else { self.set_name(set_id).unwrap_or_default() };
        Ok(Some(CurrentImage { meta, set, image }))
    }

    /// Whether a live record exists, and its metadata.
    pub fn exists(&self, digest: &Digest) -> Result<RecordMeta, StorageError> {
        self.read(digest, ReadSelect::NoBins, |_| {})
    }

    /// [`Namespace::exists`] of a record that must pass `filter`.
    pub fn exists_filtered(&self, digest: &Digest, filter: Option<&Program>) -> Result<RecordMeta, StorageError> {
        self.read_filtered(digest, ReadSelect::NoBins, filter, |_| {})
    }
}
