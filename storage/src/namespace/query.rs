//! Secondary indexes on a namespace: creating one (and indexing the records already there),
//! deleting one, and answering a query partition by partition from an index.

use std::sync::Arc;

use petrel_proto::{Digest, PartitionId, PARTITIONS_COUNT};

use crate::engine::StorageEngine;
use crate::exp::Program;
use crate::namespace::{Namespace, RecordMeta, ScanProgress, ScanRecord};
use crate::record::ImageView;
use crate::sindex::{Range, Sindex, SindexDef, SINDEXES_MAX, SINDEX_NAME_LEN_MAX};
use crate::StorageError;

/// What creating an index did.
#[derive(Debug, Clone)]
pub enum SindexCreated {
    /// A new index; records already stored still have to be indexed ([`Namespace::build_sindex`]).
    New(Arc<Sindex>),
    /// An index of that name and definition was already there (creating is idempotent).
    Existing(Arc<Sindex>),
}

impl<E: StorageEngine> Namespace<E> {
    /// Defines a secondary index. Writes keep it up to date from this moment; the records
    /// already stored are indexed by [`Namespace::build_sindex`], and queries are refused
    /// (203) until that has finished.
    pub fn create_sindex(&self, def: SindexDef) -> Result<SindexCreated, StorageError> {
        if def.name.is_empty() || def.name.len() > SINDEX_NAME_LEN_MAX {
            return Err(StorageError::IndexName("index names have 1 to 63 bytes"));
        }
        if def.name.contains([';', ':', '=', '/', '\t', '\n']) {
            return Err(StorageError::IndexName("index names may not contain ; : = / or whitespace"));
        }
        crate::value::check_bin_name(&def.spec.bin)?;
        let set_id = match &def.set {
            Some(set) => self.set_id_or_create(set)?,
            None => 0,
        };
        self.sindexes.with_list(|list| {
            if let Some(same) = list.iter().find(|s| s.def.name == def.name) {
                return if same.def == def {
                    Ok(SindexCreated::Existing(same.clone()))
                } else {
                    Err(StorageError::IndexFound("an index of that name exists with another definition"))
                };
            }
            if list.len() >= SINDEXES_MAX {
                return Err(StorageError::IndexMaxCount);
            }
            let ix = Arc::new(Sindex::new(def, set_id));
            list.push(ix.clone());
            Ok(SindexCreated::New(ix))
        })
    }

    /// Deletes index `name`; false when there is none.
    pub fn delete_sindex(&self, name: &str) -> bool {
        self.sindexes.with_list(|list| {
            let Some(at) = list.iter().position(|s| s.def.name == name) else { return false };
            let ix = list.remove(at);
            ix.dropped.store(true, std::sync::atomic::Ordering::Relaxed);
            true
        })
    }

    /// The index called `name`.
    pub fn sindex(&self, name: &str) -> Option<Arc<Sindex>> {
        self.sindexes.get(name)
    }

    /// Every index, in creation order.
    pub fn sindexes(&self) -> Vec<Arc<Sindex>> {
        self.sindexes.all()
    }

    /// Indexes every record stored when `ix` was created, one sprig at a time under its lock
    /// (so a concurrent write to the same record is either seen here or indexes itself after).
    /// Blocking; stops early when the index is deleted.
    pub fn build_sindex(&self, ix: &Sindex) {
        let mut scratch = Vec::new();
        let mut keys = crate::sindex::Keys::new();
        for partition in self.partitions.iter() {
            if ix.dropped.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            for sprig in 0..partition.sprigs_count() {
                let tree = partition.lock_sprig(sprig);
                tree.visit_from(None, |e| {
                    if ix.set_id != 0 && ix.set_id != e.set_id() {
                        return true;
                    }
                    let Some(loc) = e.loc() else { return true };
                    match self.engine.read(loc, &mut scratch).and_then(ImageView::parse) {
                        Ok(view) => ix.def.spec.keys_of(&view, &mut keys),
                        Err(err) => {
                            tracing::warn!(error = %err, "record unreadable while building a secondary index");
                            keys.clear();
                        }
                    }
                    ix.set_keys(&e.digest, &keys);
                    true
                });
            }
            ix.partition_built();
        }
    }

    /// Answers partition `pid` of a query from index `ix`: the live records with a key in
    /// `range` (and passing `filter`), in digest order from just after `after`, at most
    /// `limit` of them, handed to `visit` until it returns false. Every record is checked
    /// against the range again under its sprig lock, so an entry the supervisor has not yet
    /// reclaimed is never answered.
    #[allow(clippy::too_many_arguments)]
    pub fn query_partition(
        &self,
        ix: &Sindex,
        pid: PartitionId,
        range: &Range,
        after: Option<Digest>,
        set_id: Option<u16>,
        limit: usize,
        filter: Option<&Program>,
        mut visit: impl FnMut(&ScanRecord<'_>) -> bool,
    ) -> Result<ScanProgress, StorageError> {
        if !ix.is_ready() {
            return Err(StorageError::IndexNotReadable);
        }
        debug_assert!((pid as usize) < PARTITIONS_COUNT);
        let mut progress = ScanProgress { last: after, returned: 0, complete: false };
        let partition = &self.partitions[pid as usize];
        let mut scratch = Vec::new();
        let mut bytes = Vec::new();
        let mut keys = crate::sindex::Keys::new();
        for digest in ix.candidates(pid, range, after.as_ref()) {
            if progress.returned >= limit {
                return Ok(progress);
            }
            progress.last = Some(digest);
            let found = {
                let tree = partition.lock(&digest);
                let Some(h) = tree.find(&digest) else { continue };
                let e = tree.entry(h);
                let now_ms = self.clock.now_ms();
                if self.doom(e, (now_ms / 1000) as u32).is_some() || set_id.is_some_and(|s| s != e.set_id()) {
                    continue;
                }
                let Some(loc) = e.loc() else { continue };
                let image = self.engine.read(loc, &mut scratch)?;
                let view = ImageView::parse(image)?;
                ix.def.spec.values_of(&view, &mut keys);
                if !keys.iter().any(|k| range.matches(k)) || !self.passes(filter, e, &view, now_ms) {
                    continue;
                }
                bytes.clear();
                bytes.extend_from_slice(image);
                (RecordMeta::of(e), e.set_id())
            };
            progress.returned += 1;
            let image = ImageView::parse(&bytes)?;
            let rec = ScanRecord { digest, meta: found.0, set_id: found.1, image, raw: &bytes };
            if !visit(&rec) {
                return Ok(progress);
            }
        }
        progress.complete = true;
        Ok(progress)
    }
}
