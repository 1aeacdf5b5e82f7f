//! Filter expressions on the namespace's records: building an expression's view of a locked
//! record (metadata from its index entry, bins from its image) and deciding whether it passes.

use crate::engine::StorageEngine;
use crate::exp::{Bins, Program, RecordCtx};
use crate::index::Entry;
use crate::namespace::Namespace;
use crate::record::ImageView;

impl<E: StorageEngine> Namespace<E> {
    /// Whether the record of `entry`, with its parsed `image`, passes `filter` (always, when
    /// there is none). Called with the record's sprig lock held.
    pub(crate) fn passes(
        &self,
        filter: Option<&Program>,
        entry: &Entry<E::Loc>,
        image: &ImageView<'_>,
        now_ms: u64,
    ) -> bool {
        let Some(program) = filter else { return true };
        let set_name = if program.needs_set_name() { self.set_name(entry.set_id()) } else { None };
        let rec = RecordCtx {
            digest: &entry.digest,
            set_name: set_name.as_deref().unwrap_or(b""),
            key: image.key,
            void_time: entry.void_time,
            lut_ms: entry.lut_ms,
            now_ms,
            data_size: entry.data_size as usize,
            bins: Bins::Image(*image),
        };
        program.matches(&rec, self.config.read().max_record_size_bytes)
    }

    /// [`Namespace::passes`] for an image not yet parsed; a malformed image does not pass.
    pub(crate) fn image_passes(
        &self,
        filter: Option<&Program>,
        entry: &Entry<E::Loc>,
        raw: &[u8],
        now_ms: u64,
    ) -> bool {
        filter.is_none() || ImageView::parse(raw).is_ok_and(|image| self.passes(filter, entry, &image, now_ms))
    }
}
