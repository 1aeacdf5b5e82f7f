//! Fast restart of a device namespace: at a clean shutdown the store is closed for writes and
//! the index, the block table and the truncations are saved beside the first file; the next
//! start loads them instead of reading every block, after checking that the store is the one
//! saved and unchanged since (every block header against the saved sequences). The file is
//! removed before the namespace serves, so it is used once; anything missing, damaged or
//! stale falls back to the cold restart.
//!
//! File (little-endian): magic `PTRLSNP2`, u64 store id, u64 next sequence, u64 tombstones
//! on the store, u32 files; per
//! file u32 blocks, then per block u64 sequence (0: free) and u32 live bytes not held by a
//! record (tombstones and truncation markers kept); u32 sets, each u16 id, u8 length, name;
//! u32 truncations, each u16 set id, u64 cut-off ms; u64 records, each digest (20), u8 file,
//! u64 offset, u32 length, u16 set id, u16 generation, u32 void time, u64 last update ms,
//! u32 data size, u8 key stored; u64 delete marks, each digest (20), u64 delete time ms;
//! then the CRC-32 of everything before it.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use petrel_proto::Digest;

use crate::device::DeviceEngine;
use crate::location::{DeviceAddr, Engine, Location};
use crate::namespace::Namespace;

/// Version 2 added the delete marks; a state of version 1 is not used (cold restart).
const MAGIC: &[u8; 8] = b"PTRLSNP2";
const MARK_BYTES: usize = 20 + 8;
const RECORD_BYTES: usize = 20 + 1 + 8 + 4 + 2 + 2 + 4 + 8 + 4 + 1;

/// What a saved state held when it was loaded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSummary {
    pub records: u64,
    pub blocks: u64,
}

impl Namespace<Engine> {
    /// Closes the store for writes and saves the state a fast restart loads. Call it once
    /// nothing writes any more (at shutdown); afterwards every write to the store fails.
    pub fn save_snapshot(&self) -> Result<SnapshotSummary, String> {
        let device = self.device().ok_or("not a device namespace")?;
        device.close_for_writes();
        device.flush().map_err(|e| format!("flushing the store: {e}"))?;
        let files = device.files();
        let mut out = Vec::with_capacity(64 + self.counters.objects.load(Ordering::Relaxed) as usize * RECORD_BYTES);
        out.extend_from_slice(MAGIC);
        put_u64(&mut out, files[0].store_id());
        put_u64(&mut out, device.next_sequence().load(Ordering::Relaxed));
        put_u64(&mut out, device.counters.tombstones.load(Ordering::Relaxed));
        put_u32(&mut out, files.len() as u32);
        // Live bytes per block that records do not account for: those records' bytes are
        // counted again as they are loaded.
        let mut other_live: Vec<Vec<u32>> =
            files.iter().map(|f| (0..f.blocks).map(|b| f.live_of(b)).collect()).collect();
        let mut records = Vec::new();
        let mut count = 0u64;
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                let tree = partition.lock_sprig(sprig);
                tree.visit_from(None, |e| {
                    let Some(a) = e.loc().and_then(|l| l.device_addr()) else { return true };
                    let block = (a.offset / device.config().write_block_bytes as u64) as usize;
                    if let Some(live) = other_live.get_mut(a.file as usize).and_then(|f| f.get_mut(block)) {
                        *live = live.saturating_sub(a.len);
                    }
                    records.extend_from_slice(e.digest.as_bytes());
                    records.push(a.file);
                    put_u64(&mut records, a.offset);
                    put_u32(&mut records, a.len);
                    put_u16(&mut records, e.set_id());
                    put_u16(&mut records, e.generation);
                    put_u32(&mut records, e.void_time);
                    put_u64(&mut records, e.lut_ms);
                    put_u32(&mut records, e.data_size);
                    records.push(e.key_stored() as u8);
                    count += 1;
                    true
                });
            }
        }
        let mut blocks = 0u64;
        for (f, live) in files.iter().zip(&other_live) {
            put_u32(&mut out, f.blocks);
            for b in 0..f.blocks {
                let sequence = f.sequence_of(b);
                blocks += u64::from(sequence != 0);
                put_u64(&mut out, sequence);
                put_u32(&mut out, live[b as usize]);
            }
        }
        let sets: Vec<(u16, Vec<u8>)> =
            (1..=crate::namespace::SETS_MAX as u16).map_while(|id| self.set_name(id).map(|n| (id, n))).collect();
        put_u32(&mut out, sets.len() as u32);
        for (id, name) in &sets {
            put_u16(&mut out, *id);
            out.push(name.len() as u8);
            out.extend_from_slice(name);
        }
        let truncations: Vec<(u16, u64)> = (0..=sets.len() as u16)
            .map(|id| (id, self.set_truncate_lut_ms[id as usize].load(Ordering::Relaxed)))
            .filter(|&(_, cutoff)| cutoff != 0)
            .collect();
        put_u32(&mut out, truncations.len() as u32);
        for (id, cutoff) in truncations {
            put_u16(&mut out, id);
            put_u64(&mut out, cutoff);
        }
        put_u64(&mut out, count);
        out.extend_from_slice(&records);
        let marks: Vec<(Digest, u64)> =
            (0..petrel_proto::PARTITIONS_COUNT as u16).flat_map(|pid| self.delete_marks.of_partition(pid)).collect();
        put_u64(&mut out, marks.len() as u64);
        for (digest, at) in &marks {
            out.extend_from_slice(digest.as_bytes());
            put_u64(&mut out, *at);
        }
        let crc = crc32fast::hash(&out);
        put_u32(&mut out, crc);
        let path = device.snapshot_path().ok_or(
            "no place for the fast-restart state (raw devices need service.data_dir): the next start reads the devices",
        )?;
        write_durably(path, &out)?;
        Ok(SnapshotSummary { records: count, blocks })
    }

    /// Loads the saved state, if there is one that matches the store as it is: `Ok(None)`
    /// (after logging why) when the cold restart must run instead. Run on an empty index.
    pub(crate) fn load_snapshot(&self) -> Result<Option<SnapshotSummary>, String> {
        let device = self.device().ok_or("not a device namespace")?;
        let Some(path) = device.snapshot_path() else { return Ok(None) };
        // A state larger than this store could ever need is not read into memory.
        match std::fs::metadata(path) {
            Ok(m) if m.len() > largest_state_bytes(device, self.config.read().delete_marks_max) => {
                tracing::warn!(path = %path.display(), bytes = m.len(), "saved state too large for the store: cold restart");
                let _ = std::fs::remove_file(path);
                return Ok(None);
            }
            _ => {}
        }
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "saved state unreadable: cold restart");
                return Ok(None);
            }
        };
        let state = match check(device, &bytes) {
            Ok(state) => state,
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "saved state not used: cold restart");
                let _ = std::fs::remove_file(path);
                return Ok(None);
            }
        };
        // Used once: gone before the namespace changes anything.
        std::fs::remove_file(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        self.apply(device, state).map(Some)
    }

    fn apply(&self, device: &DeviceEngine, mut state: Reader<'_>) -> Result<SnapshotSummary, String> {
        let bad = || "saved state ended early".to_string();
        let mut summary = SnapshotSummary::default();
        state.skip(8 + 8);
        device.next_sequence().store(state.u64().ok_or_else(bad)?, Ordering::Relaxed);
        device.counters.tombstones.store(state.u64().ok_or_else(bad)?, Ordering::Relaxed);
        state.skip(4);
        for f in device.files() {
            state.skip(4);
            for b in 0..f.blocks {
                let sequence = state.u64().ok_or_else(bad)?;
                let live = state.u32().ok_or_else(bad)?;
                if sequence != 0 {
                    f.mark_used(b, sequence);
                    summary.blocks += 1;
                }
                f.add_live(b, live);
            }
        }
        // Saved set ids to this namespace's (the same names may get other ids now).
        let mut set_ids = vec![0u16; crate::namespace::SETS_MAX + 1];
        for _ in 0..state.u32().ok_or_else(bad)? {
            let id = state.u16().ok_or_else(bad)?;
            let len = state.u8().ok_or_else(bad)? as usize;
            let name = state.take(len).ok_or_else(bad)?;
            let slot = set_ids.get_mut(id as usize).ok_or("saved set id out of range")?;
            *slot = self.set_id_or_create(name).map_err(|e| e.to_string())?;
        }
        let set_id = |saved: u16| set_ids.get(saved as usize).copied().ok_or("saved set id out of range");
        for _ in 0..state.u32().ok_or_else(bad)? {
            let id = set_id(state.u16().ok_or_else(bad)?)?;
            let cutoff = state.u64().ok_or_else(bad)?;
            self.set_truncate_lut_ms[id as usize].fetch_max(cutoff, Ordering::Relaxed);
        }
        let now_secs = self.clock.now_secs();
        for _ in 0..state.u64().ok_or_else(bad)? {
            let rec = state.take(RECORD_BYTES).ok_or_else(bad)?;
            let mut r = Reader { bytes: rec };
            let digest = Digest::from_slice(r.take(20).ok_or_else(bad)?).ok_or_else(bad)?;
            let addr = DeviceAddr {
                file: r.u8().ok_or_else(bad)?,
                offset: r.u64().ok_or_else(bad)?,
                len: r.u32().ok_or_else(bad)?,
            };
            let set_id = set_id(r.u16().ok_or_else(bad)?)?;
            let (generation, void_time) = (r.u16().ok_or_else(bad)?, r.u32().ok_or_else(bad)?);
            let (lut_ms, data_size, key_stored) =
                (r.u64().ok_or_else(bad)?, r.u32().ok_or_else(bad)?, r.u8().ok_or_else(bad)? != 0);
            if addr.file as usize >= device.files().len() {
                return Err("saved record on a file the store does not have".into());
            }
            // Expired since it was saved: left out, its bytes not counted as live.
            if void_time != 0 && void_time < now_secs {
                continue;
            }
            let location = Location::device(addr);
            device.keep(&location);
            let mut tree = self.partitions[digest.partition_id() as usize].lock(&digest);
            let h = self.install(&mut tree, None, &digest, set_id, location, &[]);
            let e = tree.entry_mut(h);
            e.generation = generation;
            e.void_time = void_time;
            e.lut_ms = lut_ms;
            e.data_size = data_size;
            e.set_key_stored(key_stored);
            summary.records += 1;
        }
        for _ in 0..state.u64().ok_or_else(bad)? {
            let mark = state.take(MARK_BYTES).ok_or_else(bad)?;
            let digest = Digest::from_slice(&mark[..20]).ok_or_else(bad)?;
            self.delete_marks.note(&digest, u64::from_le_bytes(mark[20..].try_into().expect("8 bytes")));
        }
        Ok(summary)
    }
}

/// The most bytes a saved state of `device` can take: its fixed parts, every set and
/// truncation, the block table, one entry per smallest record the files could hold, and the
/// delete marks kept at most.
fn largest_state_bytes(device: &DeviceEngine, delete_marks_max: u64) -> u64 {
    let sets = crate::namespace::SETS_MAX as u64;
    let partitions = petrel_proto::PARTITIONS_COUNT as u64;
    let marks = 8 + delete_marks_max.div_ceil(partitions) * partitions * MARK_BYTES as u64;
    let fixed = 8 + 8 + 8 + 8 + 4 + 4 + sets * (2 + 1 + 255) + 4 + (sets + 1) * 10 + 8 + marks + 4;
    let smallest_record = crate::device::format::record_len(0, 0) as u64;
    device.files().iter().fold(fixed, |total, f| {
        let bytes = f.blocks as u64 * device.config().write_block_bytes as u64;
        total + 4 + f.blocks as u64 * 12 + bytes / smallest_record * RECORD_BYTES as u64
    })
}

/// Checks a saved state against the store: its checksum, the store's identity and shape, and
/// that every block on the files is as it was saved. The reader is positioned at its start.
fn check<'a>(device: &DeviceEngine, bytes: &'a [u8]) -> Result<Reader<'a>, String> {
    let (body, crc) = bytes.split_at_checked(bytes.len().saturating_sub(4)).ok_or("too short")?;
    if crc.len() != 4 || crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader { bytes: body };
    if r.take(8) != Some(MAGIC.as_slice()) {
        return Err("not a saved state".into());
    }
    let files = device.files();
    if r.u64() != Some(files[0].store_id()) {
        return Err("saved for another store".into());
    }
    r.skip(8 + 8);
    if r.u32() != Some(files.len() as u32) {
        return Err("saved for another number of files".into());
    }
    for f in files {
        if r.u32() != Some(f.blocks) {
            return Err("saved for another file size".into());
        }
        for b in 0..f.blocks {
            let saved = r.u64().ok_or("ended early")?;
            r.skip(4);
            if b == 0 {
                continue;
            }
            let on_file = f.header_sequence(b).map_err(|e| e.to_string())?;
            if on_file != (saved != 0).then_some(saved) {
                return Err(format!("block {b} of file {} changed since it was saved", f.index));
            }
        }
    }
    Ok(Reader { bytes: body })
}

fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("snapshot-tmp");
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    Ok(())
}

fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Reads a saved state front to back; `None` past its end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.bytes.split_at_checked(n)?;
        self.bytes = rest;
        Some(head)
    }

    fn skip(&mut self, n: usize) {
        let _ = self.take(n);
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes(b.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}
