//! The namespace supervisor: a background thread that, every `nsup-period`, reclaims expired
//! and truncated records, evicts above the high-water mark, reaps old delete marks, and
//! refreshes stop-writes; and
//! the passes it runs ([`Namespace::supervise`], [`Namespace::reclaim_dead`],
//! [`Namespace::evict_if_needed`]), which walk the namespace's indexes through its
//! crate-visible internals.
//!
//! Reads never depend on it (a dead record is invisible at once); it exists to give memory
//! back and to keep the namespace below its marks.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use petrel_proto::Digest;

use crate::engine::StorageEngine;
use crate::index::Entry;
use crate::namespace::{Doom, Namespace};

/// A running supervisor; stopping it (or dropping it) joins its thread.
#[derive(Debug)]
pub struct Supervisor {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Starts supervising `ns` every `nsup-period` (read again before each pass, so a change
    /// takes effect at the next one).
    pub fn start<E: StorageEngine>(ns: Arc<Namespace<E>>) -> std::io::Result<Supervisor> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop_thread = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("nsup-{}", ns.name())).spawn(move || {
            let (lock, cvar) = &*stop_thread;
            loop {
                {
                    let period = Duration::from_secs(ns.config().nsup_period_secs as u64);
                    let mut stopped = lock.lock();
                    if !*stopped {
                        cvar.wait_for(&mut stopped, period);
                    }
                    if *stopped {
                        return;
                    }
                }
                let before = ns.stats();
                ns.supervise();
                let after = ns.stats();
                if after.expired_objects + after.evicted_objects + after.truncated_objects
                    != before.expired_objects + before.evicted_objects + before.truncated_objects
                {
                    tracing::debug!(
                        namespace = ns.name(),
                        expired = after.expired_objects - before.expired_objects,
                        evicted = after.evicted_objects - before.evicted_objects,
                        truncated = after.truncated_objects - before.truncated_objects,
                        "supervisor pass"
                    );
                }
            }
        })?;
        Ok(Supervisor { stop, thread: Some(thread) })
    }

    /// Stops the supervisor and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock() = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl<E: StorageEngine> Namespace<E> {
    /// Removes every expired or truncated record; returns how many went. Holds each sprig
    /// lock for at most one bounded batch at a time.
    pub fn reclaim_dead(&self) -> u64 {
        let mut reclaimed = 0;
        self.sweep(|ns, e, now_secs| ns.doom(e, now_secs), &mut |ns, doom| {
            ns.count_doom(doom);
            reclaimed += 1;
        });
        reclaimed
    }

    /// Walks every sprig, dropping each entry `pick` dooms and telling `on_drop` of it; each
    /// sprig lock is held for one batch of at most `BATCH` doomed entries at a time, so
    /// client requests wait behind a sweep for a short while only.
    fn sweep(
        &self,
        mut pick: impl FnMut(&Self, &Entry<E::Loc>, u32) -> Option<Doom>,
        on_drop: &mut dyn FnMut(&Self, Doom),
    ) {
        const BATCH: usize = 256;
        let mut doomed: Vec<(Digest, Doom)> = Vec::with_capacity(BATCH);
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                let mut after: Option<Digest> = None;
                loop {
                    let mut tree = partition.lock_sprig(sprig);
                    let now_secs = self.clock.now_secs();
                    doomed.clear();
                    let mut more = false;
                    let start = after;
                    tree.visit_from(start.as_ref(), |e| {
                        if doomed.len() == BATCH {
                            more = true;
                            return false;
                        }
                        after = Some(e.digest);
                        if let Some(d) = pick(self, e, now_secs) {
                            doomed.push((e.digest, d));
                        }
                        true
                    });
                    for (digest, doom) in &doomed {
                        if self.drop_entry(&mut tree, digest) {
                            on_drop(self, *doom);
                        }
                    }
                    if !more {
                        break;
                    }
                }
            }
        }
    }

    /// If memory use is above the eviction mark, evicts the records nearest to expiry until it
    /// is below (or nothing evictable is left); returns how many were evicted. Records that
    /// never expire are never evicted.
    pub fn evict_if_needed(&self) -> u64 {
        const ROUNDS_MAX: usize = 8;
        let mut evicted = 0;
        for _ in 0..ROUNDS_MAX {
            match self.evict_round() {
                0 => break,
                n => evicted += n,
            }
        }
        evicted
    }

    /// One round of eviction: finds the void-time cut-off below which enough data lies to get
    /// back under the mark, then drops the records below it; returns how many it evicted.
    fn evict_round(&self) -> u64 {
        let mark = {
            let c = self.config.read();
            if c.evict_used_pct == 0 {
                return 0;
            }
            Self::pct_of_memory(c.memory_size_bytes, c.evict_used_pct)
        };
        let used = self.memory_used_bytes();
        if used <= mark {
            return 0;
        }
        let need = used - mark;
        // One pass builds a histogram of data bytes by void time; the cutoff is the smallest
        // void time below which enough bytes lie. Only data counts: a freed index slot stays
        // in its sprig's arena for reuse.
        const BUCKETS: usize = 10_000;
        let now = self.clock.now_secs();
        let mut max_void = now;
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                partition.lock_sprig(sprig).visit_from(None, |e| {
                    max_void = max_void.max(e.void_time);
                    true
                });
            }
        }
        let span = (max_void - now) as u64 + 1;
        let width = span.div_ceil(BUCKETS as u64).max(1);
        let mut hist = vec![0u64; BUCKETS];
        for partition in self.partitions.iter() {
            for sprig in 0..partition.sprigs_count() {
                partition.lock_sprig(sprig).visit_from(None, |e| {
                    if e.void_time != 0 && e.void_time >= now {
                        let b = (((e.void_time - now) as u64) / width).min(BUCKETS as u64 - 1);
                        hist[b as usize] += e.data_size as u64;
                    }
                    true
                });
            }
        }
        let mut sum = 0u64;
        let mut cutoff_bucket = None;
        for (i, bytes) in hist.iter().enumerate() {
            sum += bytes;
            if sum >= need {
                cutoff_bucket = Some(i);
                break;
            }
        }
        // Every evictable record goes when even all of them do not free enough.
        let last_bucket = cutoff_bucket.unwrap_or(BUCKETS - 1) as u64;
        let cutoff = now as u64 + (last_bucket + 1) * width;
        let mut evicted = 0u64;
        self.sweep(
            |ns, e, now_secs| {
                if let Some(d) = ns.doom(e, now_secs) {
                    return Some(d);
                }
                (e.void_time != 0 && (e.void_time as u64) < cutoff).then_some(Doom::Evicted)
            },
            &mut |ns, doom| {
                ns.count_doom(doom);
                evicted += u64::from(doom == Doom::Evicted);
            },
        );
        evicted
    }

    /// One supervisor pass: reclaim dead records, evict if above the mark, reap delete marks
    /// older than `tomb_raider_eligible_age`, refresh the stop-writes state.
    pub fn supervise(&self) {
        self.reclaim_dead();
        let age_ms = u64::from(self.config.read().tomb_raider_eligible_age_secs) * 1000;
        self.delete_marks.reap(self.clock.now_ms().saturating_sub(age_ms));
        self.evict_if_needed();
        let stop = self.memory_used_bytes() >= self.stop_writes_bytes();
        self.stop_writes.store(stop, Ordering::Relaxed);
    }
}
