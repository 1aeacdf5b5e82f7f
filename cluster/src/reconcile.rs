//! Moving only what differs. A node that restarts on its device store and owns again the
//! partitions it held keeps their restored copies instead of dropping them, and receives
//! only what changed while it was away; an owner whose copy was merged into the source (a
//! split healed, a whole cluster restarted) receives only what the merge changed; and a
//! merge itself sends only the records the source lacks or holds older copies of.
//!
//! The migration source offers the partition a range at a time as record stamps (digest,
//! generation, void time, last-update time: the index is read, the data is not). For each
//! range the receiver deletes its records the source no longer holds, deletes those whose
//! stamp differs, and answers which offered records it lacks; the source sends only those.
//! A record written here by the partition's master under the current plan is left alone
//! (the master's writes reach every owner while the partition migrates); the offered copy
//! is wanted only if it wins under conflict resolution (a later write whose copy failed).
//! Until the last range is in the partition is not complete here, so nothing stale is
//! served.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{Bytes, FabricMessage, MigrateOffer, MigrateWanted, RecordStamp};
use petrel_proto::{Digest, ResultCode, PARTITIONS_COUNT};
use petrel_storage::namespace::RecordMeta;

use crate::migrate::{PushTask, MIGRATE_BATCH_BYTES, MIGRATE_BATCH_TIMEOUT_MS};
use crate::node::{ack, ClusterNode};
use crate::replica::record_copy;

/// Stamps per offer: about 20 KiB on the wire, a range a receiver checks in one go.
const OFFER_STAMPS: usize = 512;
/// The most stamps a receiver takes in one offer.
const OFFER_STAMPS_MAX: usize = 4 * OFFER_STAMPS;
/// Local records a receiver looks at per index walk while it checks a range.
const LOCAL_STAMPS_PER_WALK: usize = 1024;

/// Partitions holding records restored from this node's device store that are not yet
/// checked against a live copy, each with the digests the partition's master wrote here
/// since it was kept (those are current).
#[derive(Debug, Default)]
pub(crate) struct Reconciling {
    /// Whether any partition is being reconciled: replica writes look no further when not.
    any: AtomicBool,
    parts: Mutex<HashMap<(usize, u16), HashSet<Digest>>>,
}

impl Reconciling {
    /// Partition `pid` of namespace `ns` keeps its restored copy until checked.
    pub(crate) fn begin(&self, ns: usize, pid: u16) {
        let mut parts = self.parts.lock();
        parts.entry((ns, pid)).or_default();
        self.any.store(true, Ordering::Release);
    }

    /// The partition is complete here (or gone): nothing left to check.
    pub(crate) fn end(&self, ns: usize, pid: u16) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut parts = self.parts.lock();
        parts.remove(&(ns, pid));
        self.any.store(!parts.is_empty(), Ordering::Release);
    }

    /// At a plan's install (under the state's write lock, so no replica write of either view
    /// is being applied): keeps only the partitions `keep` says are still to be checked, and
    /// forgets what the masters of earlier views wrote. Checked against the new plan's
    /// source, whose copy includes those writes (they reached every complete holder of that
    /// view), such a mark would keep a record the new source holds a later copy of.
    pub(crate) fn install(&self, mut keep: impl FnMut(usize, u16) -> bool) {
        let mut parts = self.parts.lock();
        parts.retain(|&(ns, pid), _| keep(ns, pid));
        parts.values_mut().for_each(HashSet::clear);
        self.any.store(!parts.is_empty(), Ordering::Release);
    }

    /// The master is writing `digest` here: from now on the local record is not stale. Called
    /// before the write is applied, so a check of its range never takes it for stale.
    pub(crate) fn written(&self, ns: usize, digest: &Digest) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        if let Some(written) = self.parts.lock().get_mut(&(ns, digest.partition_id())) {
            written.insert(*digest);
        }
    }

    fn holds(&self, ns: usize, pid: u16) -> bool {
        self.any.load(Ordering::Acquire) && self.parts.lock().contains_key(&(ns, pid))
    }

    fn is_written(&self, ns: usize, pid: u16, digest: &Digest) -> bool {
        self.parts.lock().get(&(ns, pid)).is_some_and(|w| w.contains(digest))
    }
}

/// How an offered migration ended.
pub(crate) enum Offered {
    /// The target had a restored copy and now holds the partition; records sent.
    Done(u64),
    /// Not finished: tried again later (or under the next view).
    Failed,
    /// The target keeps no restored copy: the partition is sent whole.
    Whole,
}

fn stamp(digest: &Digest, meta: &RecordMeta) -> RecordStamp {
    RecordStamp {
        digest: digest.as_bytes().to_vec(),
        generation: u32::from(meta.generation),
        void_time: meta.void_time,
        lut_ms: meta.lut_ms,
    }
}

/// An offer's bound: empty = none, else a digest of the partition.
fn bound(bytes: &[u8], pid: u16) -> Result<Option<Digest>, ResultCode> {
    if bytes.is_empty() {
        return Ok(None);
    }
    match Digest::from_slice(bytes) {
        Some(d) if d.partition_id() == pid => Ok(Some(d)),
        _ => Err(ResultCode::Parameter),
    }
}

/// An offer's stamps, checked: digests of the partition, strictly ascending, within the
/// range.
fn offered_stamps(
    o: &MigrateOffer,
    pid: u16,
    after: Option<Digest>,
    through: Option<Digest>,
) -> Result<Vec<(Digest, RecordMeta)>, ResultCode> {
    if o.stamps.len() > OFFER_STAMPS_MAX {
        return Err(ResultCode::Parameter);
    }
    let mut out: Vec<(Digest, RecordMeta)> = Vec::with_capacity(o.stamps.len());
    for s in &o.stamps {
        let digest = Digest::from_slice(&s.digest).ok_or(ResultCode::Parameter)?;
        let generation = u16::try_from(s.generation).map_err(|_| ResultCode::Parameter)?;
        let ordered = out.last().map_or(after.is_none_or(|a| digest > a), |(prev, _)| digest > *prev);
        if digest.partition_id() != pid || !ordered || through.is_some_and(|t| digest > t) {
            return Err(ResultCode::Parameter);
        }
        out.push((digest, RecordMeta { generation, void_time: s.void_time, lut_ms: s.lut_ms }));
    }
    Ok(out)
}

fn wanted(reconciling: bool, wanted: Vec<u32>) -> Body {
    Body::MigrateWanted(MigrateWanted { result_code: 0, reconciling, wanted })
}

impl ClusterNode {
    /// Offers the partition to its target range by range and sends what it lacks.
    pub(crate) async fn push_offered(&self, key: u64, task: &PushTask) -> Offered {
        let ns = &self.namespaces[task.ns];
        let timeout = Duration::from_millis(MIGRATE_BATCH_TIMEOUT_MS);
        let mut after: Option<Digest> = None;
        let mut sent = 0u64;
        // Bounded: each offer moves past at least one digest, or reaches the end.
        loop {
            if self.current_key() != key {
                return Offered::Failed;
            }
            let (stamps, progress) = ns.partition_stamps(task.pid, after, None, OFFER_STAMPS);
            let through = if progress.complete { None } else { progress.last };
            let offer = MigrateOffer {
                namespace: ns.name().to_string(),
                partition_id: task.pid as u32,
                cluster_key: key,
                from_node: self.me,
                after: after.map(|d| d.as_bytes().to_vec()).unwrap_or_default(),
                through: through.map(|d| d.as_bytes().to_vec()).unwrap_or_default(),
                stamps: stamps.iter().map(|(d, m)| stamp(d, m)).collect(),
                merge: task.merge,
            };
            let answer = match self.fabric().request(task.addr, Body::MigrateOffer(offer), timeout).await {
                Ok(FabricMessage { body: Some(Body::MigrateWanted(w)), .. }) if w.result_code == 0 => w,
                _ => return Offered::Failed,
            };
            if !answer.reconciling {
                // Only the first offer may find no copy to reconcile; a later one means the
                // target dropped it meanwhile (a new view): start again. A merge's target
                // always holds a copy.
                return if after.is_none() && !task.merge { Offered::Whole } else { Offered::Failed };
            }
            let mut records = Vec::new();
            let mut bytes = 0usize;
            for &i in &answer.wanted {
                let Some((digest, _)) = stamps.get(i as usize) else { return Offered::Failed };
                match ns.current_image(digest) {
                    Ok(Some(current)) => {
                        bytes += current.image.len() + 64;
                        records.push(record_copy("", digest, current.set, &current.meta, Bytes::from(current.image)));
                    }
                    // Deleted (or expired) since it was offered: the delete reached the
                    // target as a replica write.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, pid = task.pid, "migration read failed");
                        return Offered::Failed;
                    }
                }
                if bytes >= MIGRATE_BATCH_BYTES {
                    sent += records.len() as u64;
                    if !self.send_batch(key, task, std::mem::take(&mut records), false).await {
                        return Offered::Failed;
                    }
                    bytes = 0;
                }
            }
            if progress.complete || !records.is_empty() {
                sent += records.len() as u64;
                if !self.send_batch(key, task, records, progress.complete).await {
                    return Offered::Failed;
                }
            }
            if progress.complete {
                return Offered::Done(sent);
            }
            after = progress.last;
        }
    }

    /// A node offers a range of a partition: in a merge, the offered records this node
    /// lacks or holds older copies of are answered; otherwise, when this node keeps a copy
    /// to reconcile, the range's stale records are deleted here and the offered records it
    /// lacks are answered.
    pub(crate) fn on_migrate_offer(&self, o: MigrateOffer) -> Body {
        let Some(&i) = self.ns_index.get(&o.namespace) else { return ack(ResultCode::Namespace) };
        if o.partition_id as usize >= PARTITIONS_COUNT {
            return ack(ResultCode::Parameter);
        }
        let pid = o.partition_id as u16;
        if o.cluster_key == 0 || self.current_key() != o.cluster_key {
            return ack(ResultCode::ClusterKeyMismatch);
        }
        let checked = bound(&o.after, pid).and_then(|after| {
            let through = bound(&o.through, pid)?;
            Ok((after, through, offered_stamps(&o, pid, after, through)?))
        });
        let (after, through, offered) = match checked {
            Ok(c) => c,
            Err(code) => return ack(code),
        };
        if o.merge {
            return match self.merge_wanted(i, &offered) {
                Ok(w) => wanted(true, w),
                Err(code) => ack(code),
            };
        }
        if !self.reconciling.holds(i, pid) {
            return wanted(false, Vec::new());
        }
        match self.reconcile_range(i, pid, after, through, &offered) {
            Ok(w) => wanted(true, w),
            Err(code) => ack(code),
        }
    }

    /// A holder offers its records for a merge into this node's copy: the ones this node
    /// lacks, or whose copy here loses to the offered one, are wanted; a record deleted here
    /// after the offered copy was written is not. Nothing is deleted: a merge keeps both
    /// sides' records.
    fn merge_wanted(&self, i: usize, offered: &[(Digest, RecordMeta)]) -> Result<Vec<u32>, ResultCode> {
        let ns = &self.namespaces[i];
        let resolution = self.config.conflict_resolution;
        let mut out = Vec::new();
        let mut same = 0u64;
        for (k, (digest, meta)) in offered.iter().enumerate() {
            if ns.delete_mark(digest).is_some_and(|deleted| deleted >= meta.lut_ms) {
                continue;
            }
            match ns.exists(digest) {
                Ok(local) if !resolution.incoming_wins(&local, meta) => same += u64::from(local == *meta),
                Ok(_) | Err(petrel_storage::StorageError::NotFound) => out.push(k as u32),
                Err(e) => return Err(e.result_code()),
            }
        }
        self.counters.migrate_records_skipped.fetch_add(same, Ordering::Relaxed);
        Ok(out)
    }

    /// Brings the local records of (`after`, `through`] in line with `offered`; returns the
    /// indexes of the offered records to send.
    fn reconcile_range(
        &self,
        i: usize,
        pid: u16,
        after: Option<Digest>,
        through: Option<Digest>,
        offered: &[(Digest, RecordMeta)],
    ) -> Result<Vec<u32>, ResultCode> {
        let ns = &self.namespaces[i];
        let mut held = vec![false; offered.len()];
        let (mut same, mut dropped) = (0u64, 0u64);
        let resolution = self.config.conflict_resolution;
        let mut cursor = after;
        // Bounded: each walk moves past at least one local record, or reaches the end.
        loop {
            let (local, progress) = ns.partition_stamps(pid, cursor, through, LOCAL_STAMPS_PER_WALK);
            for (digest, meta) in local {
                let at = offered.binary_search_by(|(d, _)| d.cmp(&digest));
                if self.reconciling.is_written(i, pid, &digest) {
                    // The master wrote it here since: current, unless a later write of it did
                    // not arrive (its copy failed) and the offered copy is that one: then the
                    // offered copy is wanted, and resolved against this one as it lands.
                    if let Ok(k) = at {
                        held[k] = !resolution.incoming_wins(&meta, &offered[k].1);
                    }
                    continue;
                }
                if let Ok(k) = at {
                    if offered[k].1 == meta {
                        held[k] = true;
                        same += 1;
                        continue;
                    }
                }
                // Gone from the source, or another copy of it: the restored one is stale.
                // Unless a write of the master changed it meanwhile, it goes (durably, so a
                // later cold restart cannot bring it back), and the source's is wanted.
                match ns.delete_if_unchanged(&digest, meta) {
                    Ok(true) => dropped += 1,
                    Ok(false) => {
                        if let Ok(k) = at {
                            held[k] = true;
                        }
                    }
                    Err(e) => return Err(e.result_code()),
                }
            }
            if progress.complete {
                break;
            }
            cursor = progress.last;
        }
        self.counters.migrate_records_skipped.fetch_add(same, Ordering::Relaxed);
        self.counters.migrate_stale_records_dropped.fetch_add(dropped, Ordering::Relaxed);
        // Deleted here by the master since it was offered: not wanted.
        let st = self.state.read();
        let deleted_here = st.tombstones.get(&(i, pid));
        Ok((0..offered.len())
            .filter(|&k| !held[k] && deleted_here.is_none_or(|t| !t.contains(&offered[k].0)))
            .map(|k| k as u32)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(pid: u16, tail: u8) -> Digest {
        let mut d = [tail; 20];
        d[0] = (pid & 0xFF) as u8;
        d[1] = (d[1] & 0xF0) | ((pid >> 8) as u8 & 0x0F);
        Digest(d)
    }

    fn offer(stamps: &[Digest]) -> MigrateOffer {
        let meta = RecordMeta { generation: 1, void_time: 0, lut_ms: 5 };
        MigrateOffer { stamps: stamps.iter().map(|d| stamp(d, &meta)).collect(), ..Default::default() }
    }

    #[test]
    fn offers_are_checked_before_anything_is_touched() {
        let pid = 77;
        let (a, b, c) = (digest_of(pid, 0x10), digest_of(pid, 0x20), digest_of(pid, 0x30));
        assert_eq!(a.partition_id(), pid);
        // In order, within the range: taken.
        let ok = offered_stamps(&offer(&[a, b, c]), pid, None, Some(c)).expect("valid");
        assert_eq!(ok.iter().map(|(d, _)| *d).collect::<Vec<_>>(), vec![a, b, c]);
        // Out of order, repeated, at or before `after`, past `through`, another partition.
        let bad = [
            offered_stamps(&offer(&[b, a]), pid, None, None),
            offered_stamps(&offer(&[a, a]), pid, None, None),
            offered_stamps(&offer(&[a, b]), pid, Some(a), None),
            offered_stamps(&offer(&[a, c]), pid, None, Some(b)),
            offered_stamps(&offer(&[digest_of(pid + 1, 0x10)]), pid, None, None),
        ];
        assert!(bad.iter().all(|r| *r == Err(ResultCode::Parameter)), "{bad:?}");
        // A short digest, a generation past 16 bits, too many stamps.
        let mut short = offer(&[a]);
        short.stamps[0].digest.pop();
        assert_eq!(offered_stamps(&short, pid, None, None), Err(ResultCode::Parameter));
        let mut wide = offer(&[a]);
        wide.stamps[0].generation = 1 << 16;
        assert_eq!(offered_stamps(&wide, pid, None, None), Err(ResultCode::Parameter));
        let many: Vec<Digest> = (0..=OFFER_STAMPS_MAX).map(|_| a).collect();
        assert_eq!(offered_stamps(&offer(&many), pid, None, None), Err(ResultCode::Parameter));
        // Bounds: empty, a digest of the partition, nothing else.
        assert_eq!(bound(&[], pid), Ok(None));
        assert_eq!(bound(a.as_bytes(), pid), Ok(Some(a)));
        assert_eq!(bound(&a.as_bytes()[..19], pid), Err(ResultCode::Parameter));
        assert_eq!(bound(digest_of(pid + 1, 1).as_bytes(), pid), Err(ResultCode::Parameter));
    }
}
