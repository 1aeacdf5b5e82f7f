//! Migrations: what this node owes under the installed plan (partitions to send to new
//! owners, records to merge back into a holder after a split healed), streaming them in
//! batches with bounded parallelism (or only what a target lacks, see `reconcile`), taking
//! batches from peers, and announcing to every member that a partition is complete here.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{Bytes, MigrateRecords, PartitionComplete, RecordCopy, RecordStamp};
use petrel_proto::{Digest, ResultCode, PARTITIONS_COUNT};
use tokio::sync::Semaphore;

use crate::node::{ack, ack_result, ClusterNode};
use crate::partition_table::NodeId;
use crate::reconcile::Offered;
use crate::replica::{record_copy, stored_copy};

/// How long a migration batch may take to be applied: a full batch is up to
/// [`MIGRATE_BATCH_BYTES`] of records, which a busy receiver may take a while to store.
pub(crate) const MIGRATE_BATCH_TIMEOUT_MS: u64 = 30_000;
/// Records per migration batch, and the bytes after which a batch is cut short: big enough
/// to amortize a round trip, small enough not to hold a fabric connection for long.
const MIGRATE_BATCH_RECORDS: usize = 512;
pub(crate) const MIGRATE_BATCH_BYTES: usize = 4 << 20;
/// Pause before a partition whose sending failed is tried again (a peer that is gone leaves
/// the view meanwhile, and the new plan no longer owes it anything).
const MIGRATE_RETRY_PAUSE_MS: u64 = 500;
/// Delete marks one migration batch carries at most (the most a partition keeps, see
/// `NamespaceConfig::delete_marks_max`).
const MIGRATE_DELETES_MAX: usize = 1 << 16;
/// How often the migration loop looks at what is owed when nothing wakes it, and how long it
/// lets wake-ups gather before it looks.
const MIGRATE_POLL_MS: u64 = 500;
const MIGRATE_COALESCE_MS: u64 = 25;
/// Tries to tell a member that a partition is complete here, the time each may take, and
/// the pause between them: a minute in all, by which time a member that still has not taken
/// it is gone (and a new view starts a new exchange anyway).
const ANNOUNCE_TRIES: usize = 200;
const ANNOUNCE_TIMEOUT_MS: u64 = 2_000;
const ANNOUNCE_RETRY_PAUSE_MS: u64 = 300;

/// A delete mark as a migration carries it.
fn delete_stamp(digest: &Digest, deleted_ms: u64) -> RecordStamp {
    RecordStamp { digest: digest.as_bytes().to_vec(), generation: 0, void_time: 0, lut_ms: deleted_ms }
}

/// One partition to send to one node.
#[derive(Debug, Clone)]
pub(crate) struct PushTask {
    pub(crate) ns: usize,
    pub(crate) pid: u16,
    pub(crate) target: NodeId,
    pub(crate) addr: SocketAddr,
    pub(crate) merge: bool,
    pub(crate) version: u64,
}

impl ClusterNode {
    /// Sends what this node owes under the plan of `key`, until the view changes or nothing
    /// is left (each finished partition is given back by its sender and by every member told
    /// of it).
    pub(crate) async fn migrate(self: Arc<Self>, key: u64) {
        let slots = Arc::new(Semaphore::new(self.config.migrate_parallelism.max(1)));
        let started: Arc<Mutex<HashSet<(usize, u16, NodeId)>>> = Arc::default();
        let mut stop = self.stop.subscribe();
        loop {
            let woken = self.work.notified();
            if self.current_key() != key {
                return;
            }
            let owed = self.owed();
            let idle = {
                let s = started.lock();
                owed.iter().all(|t| s.contains(&(t.ns, t.pid, t.target)))
            };
            if owed.is_empty() {
                if self.state.read().plans.iter().all(|p| p.unsettled() == 0) {
                    tracing::info!(key = format!("{key:X}"), "migrations done");
                    return;
                }
            } else if !idle {
                for task in owed {
                    let id = (task.ns, task.pid, task.target);
                    if !started.lock().insert(id) {
                        continue;
                    }
                    let Ok(permit) = Arc::clone(&slots).acquire_owned().await else { return };
                    let (node, started) = (Arc::clone(&self), Arc::clone(&started));
                    tokio::spawn(async move {
                        let ok = node.push(key, &task).await;
                        drop(permit);
                        if !ok {
                            tokio::time::sleep(Duration::from_millis(MIGRATE_RETRY_PAUSE_MS)).await;
                            started.lock().remove(&id);
                        }
                        node.work.notify_one();
                    });
                }
            }
            let was_woken = tokio::select! {
                // In the order written, so that a simulated run replays exactly.
                biased;
                _ = woken => true,
                _ = tokio::time::sleep(Duration::from_millis(MIGRATE_POLL_MS)) => false,
                _ = stop.changed() => return,
            };
            if was_woken {
                // Completions come in bursts (every partition of a view change, on every
                // member): one look at the plan per burst, not one per partition, which
                // cost a scan of every partition each time.
                tokio::time::sleep(Duration::from_millis(MIGRATE_COALESCE_MS)).await;
            }
        }
    }

    /// Partitions this node must send now.
    fn owed(&self) -> Vec<PushTask> {
        let st = self.state.read();
        let mut out = Vec::new();
        for (ns, plan) in st.plans.iter().enumerate() {
            for (pid, row) in plan.rows.iter().enumerate() {
                let pid = pid as u16;
                if row.merges_pending.contains(&self.me) {
                    if let Some(m) = st.addrs.get(&row.source) {
                        out.push(PushTask { ns, pid, target: row.source, addr: m.fabric, merge: true, version: 0 });
                    }
                }
                if row.source == self.me {
                    for t in row.immigrants() {
                        if let Some(m) = st.addrs.get(&t) {
                            let version = row.final_version();
                            out.push(PushTask { ns, pid, target: t, addr: m.fabric, merge: false, version });
                        }
                    }
                }
            }
        }
        out
    }

    /// Sends one partition to its target; true when the target took all of it. A merge, and
    /// a target that keeps a copy to reconcile, get only the records they lack
    /// ([`ClusterNode::push_offered`]); any other target gets the partition whole.
    async fn push(&self, key: u64, task: &PushTask) -> bool {
        let sent = match self.push_offered(key, task).await {
            Offered::Done(n) => Some(n),
            Offered::Failed => None,
            Offered::Whole => self.push_whole(key, task).await,
        };
        let Some(sent) = sent else { return false };
        self.counters.migrate_partitions_sent.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            pid = task.pid,
            target = format!("{:X}", task.target),
            records = sent,
            merge = task.merge,
            "partition sent"
        );
        if !task.merge {
            let mut st = self.state.write();
            if st.key == key {
                st.plans[task.ns].row_mut(task.pid).on_complete(task.target, task.version);
                // Handed over once the new master is complete here too (another owner's
                // completion leaves a handoff to the master in flight).
                if st.plans[task.ns].row(task.pid).acting_master() != self.me {
                    st.handoffs.remove(&(task.ns, task.pid));
                }
            }
            drop(st);
            self.give_back_one(task.ns, task.pid);
        }
        self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Streams every record of the partition; the records sent, or None when the target did
    /// not take them all.
    async fn push_whole(&self, key: u64, task: &PushTask) -> Option<u64> {
        let ns = &self.namespaces[task.ns];
        let mut set_names: HashMap<u16, Vec<u8>> = HashMap::new();
        let mut after = None;
        let mut sent = 0u64;
        // Bounded: each batch moves the scan past at least one record, or completes it.
        loop {
            if self.current_key() != key {
                return None;
            }
            let mut records = Vec::new();
            let mut bytes = 0usize;
            let progress = ns.scan_partition(task.pid, after, None, MIGRATE_BATCH_RECORDS, |r| {
                let set = if r.set_id == 0 {
                    Vec::new()
                } else {
                    set_names.entry(r.set_id).or_insert_with(|| ns.set_name(r.set_id).unwrap_or_default()).clone()
                };
                bytes += r.raw.len() + 64;
                // The batch names the namespace once; its records do not.
                records.push(record_copy("", &r.digest, set, &r.meta, Bytes::copy_from_slice(r.raw)));
                bytes < MIGRATE_BATCH_BYTES
            });
            let progress = match progress {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, pid = task.pid, "migration scan failed");
                    return None;
                }
            };
            after = progress.last;
            sent += records.len() as u64;
            if !self.send_batch(key, task, records, progress.complete).await {
                return None;
            }
            if progress.complete {
                return Some(sent);
            }
        }
    }

    /// Sends one batch of a partition's records (`done`: the last); true when the target
    /// took it.
    pub(crate) async fn send_batch(&self, key: u64, task: &PushTask, records: Vec<RecordCopy>, done: bool) -> bool {
        let n = records.len() as u64;
        // The last batch carries the partition's delete marks (at most `MIGRATE_DELETES_MAX`:
        // a namespace keeps at most that many per partition).
        let deletes = if done {
            let marks = self.namespaces[task.ns].delete_marks_of(task.pid);
            marks.iter().take(MIGRATE_DELETES_MAX).map(|(d, at)| delete_stamp(d, *at)).collect()
        } else {
            Vec::new()
        };
        let msg = MigrateRecords {
            namespace: self.namespaces[task.ns].name().to_string(),
            partition_id: task.pid as u32,
            cluster_key: key,
            records,
            done,
            version: task.version,
            merge: task.merge,
            from_node: self.me,
            deletes,
        };
        if done && !task.merge {
            // The target takes over as master once it has this last batch: from now on,
            // until this node knows it did, writes are refused here. A failed send keeps
            // them refused (the target may have taken over all the same) until a resend
            // or the target's announcement settles it, or a new view.
            let mut st = self.state.write();
            if st.key != key {
                return false;
            }
            if st.plans[task.ns].row(task.pid).owners.first() == Some(&task.target) {
                st.handoffs.insert((task.ns, task.pid));
            }
        }
        let timeout = Duration::from_millis(MIGRATE_BATCH_TIMEOUT_MS);
        if ack_result(self.fabric().request(task.addr, Body::MigrateRecords(msg), timeout).await).is_err() {
            return false;
        }
        self.counters.migrate_records_sent.fetch_add(n, Ordering::Relaxed);
        true
    }

    /// Tells every other member that this node holds `pid` at `version`.
    fn announce(&self, key: u64, ns: usize, pid: u16, version: u64) {
        let Some(node) = self.this.upgrade() else { return };
        let msg = PartitionComplete {
            cluster_key: key,
            namespace: self.namespaces[ns].name().to_string(),
            partition_id: pid as u32,
            node_id: self.me,
            version,
        };
        for (_, addr) in self.peer_addrs() {
            let (node, msg) = (Arc::clone(&node), msg.clone());
            tokio::spawn(async move {
                // Until taken, or this view is gone (a new view starts a new exchange).
                for _ in 0..ANNOUNCE_TRIES {
                    if node.current_key() != key {
                        return;
                    }
                    let timeout = Duration::from_millis(ANNOUNCE_TIMEOUT_MS);
                    let r = node.fabric().request(addr, Body::PartitionComplete(msg.clone()), timeout).await;
                    if ack_result(r).is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(ANNOUNCE_RETRY_PAUSE_MS)).await;
                }
            });
        }
    }

    /// A member announced that it holds a partition complete.
    pub(crate) fn on_partition_complete(&self, c: &PartitionComplete) -> Body {
        let Some(&ns) = self.ns_index.get(&c.namespace) else { return ack(ResultCode::Namespace) };
        if c.partition_id as usize >= PARTITIONS_COUNT {
            return ack(ResultCode::Parameter);
        }
        let mut st = self.state.write();
        if c.cluster_key == 0 || st.key != c.cluster_key {
            // Not installed here yet (or a view gone by): the sender retries while its view
            // lasts.
            return ack(ResultCode::ClusterKeyMismatch);
        }
        if !st.members.contains(&c.node_id) {
            // Only members hold partitions; anything else would grow the plan.
            return ack(ResultCode::Parameter);
        }
        st.plans[ns].row_mut(c.partition_id as u16).on_complete(c.node_id, c.version);
        if st.plans[ns].row(c.partition_id as u16).acting_master() != self.me {
            st.handoffs.remove(&(ns, c.partition_id as u16));
        }
        drop(st);
        self.give_back_one(ns, c.partition_id as u16);
        self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
        self.work.notify_one();
        ack(ResultCode::Ok)
    }

    /// A batch of a partition moving here (or merging into this holder).
    pub(crate) fn on_migrate(&self, m: MigrateRecords) -> Body {
        let Some(&i) = self.ns_index.get(&m.namespace) else { return ack(ResultCode::Namespace) };
        if m.partition_id as usize >= PARTITIONS_COUNT {
            return ack(ResultCode::Parameter);
        }
        let pid = m.partition_id as u16;
        // Key 0 is "no plan installed yet": nothing may be received under it.
        if m.cluster_key == 0 || self.current_key() != m.cluster_key {
            return ack(ResultCode::ClusterKeyMismatch);
        }
        let ns = &self.namespaces[i];
        if m.deletes.len() > MIGRATE_DELETES_MAX {
            return ack(ResultCode::Parameter);
        }
        // The source's deletes first: older copies here go, and none is taken again.
        for mark in &m.deletes {
            let Some(digest) = Digest::from_slice(&mark.digest).filter(|d| d.partition_id() == pid) else {
                return ack(ResultCode::Parameter);
            };
            if let Err(e) = ns.apply_delete_mark(&digest, mark.lut_ms) {
                return ack(e.result_code());
            }
        }
        let deleted_here = |d: &Digest| self.state.read().tombstones.get(&(i, pid)).is_some_and(|t| t.contains(d));
        let mut applied = 0u64;
        for copy in &m.records {
            let stored = match stored_copy(copy) {
                Ok(s) if s.digest.partition_id() == pid => s,
                _ => return ack(ResultCode::Parameter),
            };
            // Deleted here since the source read it: keep it deleted.
            if deleted_here(&stored.digest) && ns.exists(&stored.digest).is_err() {
                continue;
            }
            match ns.apply_copy(&stored, self.config.conflict_resolution) {
                Ok(_) => applied += 1,
                // A record this node cannot keep (too big for its limit, out of space): the
                // batch is refused, so that the source does not count the partition as
                // moved and give its copy back.
                Err(e) => {
                    self.counters.migrate_records_received.fetch_add(applied, Ordering::Relaxed);
                    return ack(e.result_code());
                }
            }
        }
        self.counters.migrate_records_received.fetch_add(applied, Ordering::Relaxed);
        if m.done {
            let key = m.cluster_key;
            let version = {
                let mut st = self.state.write();
                if st.key != key {
                    return ack(ResultCode::ClusterKeyMismatch);
                }
                let row = st.plans[i].row_mut(pid);
                let version = if m.merge {
                    row.on_merge_done(m.from_node, key)
                } else {
                    row.on_complete(self.me, m.version);
                    Some(m.version)
                };
                if version.is_some() {
                    st.tombstones.remove(&(i, pid));
                    self.reconciling.end(i, pid);
                }
                version
            };
            if let Some(v) = version {
                self.versions.lock()[i][pid as usize] = v;
                self.counters.migrate_partitions_received.fetch_add(1, Ordering::Relaxed);
                self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
                self.announce(key, i, pid, v);
            }
            self.work.notify_one();
        }
        ack(ResultCode::Ok)
    }
}
