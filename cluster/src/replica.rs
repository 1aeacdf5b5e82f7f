//! Replica writes. The partition's master hands every write it applied to the partition's
//! other owners through [`ClusterNode::write_copies`], under its installed cluster key. A
//! copy refused (the receiver has another view installed) or lost is sent again under the
//! plan as it then is, until every owner applied it, this node is no longer the acting
//! master, or [`REPLICA_WRITE_DEADLINE_MS`] passes.
//!
//! A replica applies the master's copies in sequence (`Namespace::apply_replica`) and
//! acknowledges only a copy it applied; a copy overtaken by a later one counts as applied,
//! since the later one includes it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::replica_write::Change;
use petrel_proto::cluster::{Bytes, RecordCopy, RecordRef, ReplicaWrite};
use petrel_proto::{Digest, ResultCode};
use petrel_storage::namespace::{RecordCopy as StoredCopy, RecordMeta, ReplicaApplied};
use smallvec::SmallVec;

use crate::node::{ack, ack_result, ClusterNode, State};
use crate::partition_table::NodeId;

/// How long a write may take to reach every other owner of its partition, retries included.
/// Long enough to ride out a view change between live nodes (an exchange and a plan install
/// take a few round trips); short enough that a client with a timeout of a second or two
/// hears a definite answer, and retries, rather than timing out on a write it cannot judge.
/// A replica that died is left out by the next view, which takes longer than this: such
/// writes fail and the client retries them under the new view.
pub const REPLICA_WRITE_DEADLINE_MS: u64 = 1_500;

/// Pause before copies that were refused or lost are sent again: a plan being installed on
/// the receiver needs a moment, and a copy sent again at once would be refused again.
const REPLICA_WRITE_RETRY_PAUSE_MS: u64 = 20;
/// How long a repair of copies that timed out keeps trying, and its pause between tries.
const REPAIR_MS_MAX: u64 = 60_000;
const REPAIR_PAUSE_MS: u64 = 200;

/// Owners a write goes to, with their fabric address when known.
type Targets = SmallVec<[(NodeId, Option<SocketAddr>); 4]>;

/// The outcome of a write that the other owners must apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCopy {
    /// The record as the write left it.
    Record { digest: Digest, set: Vec<u8>, meta: RecordMeta, image: Bytes },
    /// The write removed the record.
    Delete { digest: Digest },
}

impl WriteCopy {
    pub fn digest(&self) -> &Digest {
        match self {
            WriteCopy::Record { digest, .. } | WriteCopy::Delete { digest } => digest,
        }
    }

    /// The change as sent; a delete carries when it was made (`deleted_ms`).
    fn change(&self, namespace: &str, deleted_ms: impl FnOnce(&Digest) -> Option<u64>) -> Change {
        match self {
            WriteCopy::Record { digest, set, meta, image } => {
                Change::Record(record_copy(namespace, digest, set.clone(), meta, image.clone()))
            }
            WriteCopy::Delete { digest } => Change::Delete(RecordRef {
                namespace: namespace.to_string(),
                digest: digest.as_bytes().to_vec(),
                lut_ms: deleted_ms(digest).unwrap_or(0),
            }),
        }
    }
}

/// When a write is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitLevel {
    /// Once every other owner applied it.
    #[default]
    All,
    /// At once; the copies go out in the background.
    Master,
}

/// A record copy as it goes over the fabric.
pub(crate) fn record_copy(
    namespace: &str,
    digest: &Digest,
    set: Vec<u8>,
    meta: &RecordMeta,
    image: Bytes,
) -> RecordCopy {
    RecordCopy {
        namespace: namespace.to_string(),
        digest: digest.as_bytes().to_vec(),
        set,
        generation: u32::from(meta.generation),
        void_time: meta.void_time,
        lut_ms: meta.lut_ms,
        image,
    }
}

/// A record copy from a peer, checked, as storage takes it.
pub(crate) fn stored_copy(copy: &RecordCopy) -> Result<StoredCopy<'_>, ResultCode> {
    let digest = Digest::from_slice(&copy.digest).ok_or(ResultCode::Parameter)?;
    let generation = u16::try_from(copy.generation).map_err(|_| ResultCode::Parameter)?;
    Ok(StoredCopy {
        digest,
        set: &copy.set,
        meta: RecordMeta { generation, void_time: copy.void_time, lut_ms: copy.lut_ms },
        image: &copy.image,
    })
}

impl ClusterNode {
    /// Whether copies are on their way, or being repaired, on this node.
    pub fn copies_busy(&self) -> bool {
        self.background_copies.available_permits() < crate::node::BACKGROUND_COPIES_MAX
            || self.copies_in_flight.iter().any(|ns| ns.iter().any(|n| n.load(Ordering::Acquire) > 0))
    }
}

/// Counts a write's copies as on their way, per partition, while it lives.
struct InFlight {
    counters: Arc<[std::sync::atomic::AtomicU32]>,
    pid: u16,
}

impl InFlight {
    fn new(counters: &Arc<[std::sync::atomic::AtomicU32]>, pid: u16) -> InFlight {
        counters[pid as usize].fetch_add(1, Ordering::AcqRel);
        InFlight { counters: Arc::clone(counters), pid }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters[self.pid as usize].fetch_sub(1, Ordering::AcqRel);
    }
}

impl ClusterNode {
    /// Hands the outcome of a write applied here, on partition `copy.digest()` of namespace
    /// `ns`, to the partition's other owners. With [`CommitLevel::All`] it returns once every
    /// one applied it, or with the error that kept one from it; with [`CommitLevel::Master`]
    /// it returns at once (unless too many copies are already on their way, then it waits
    /// like `All`, so that they cannot pile up).
    pub async fn write_copies(&self, ns: usize, copy: WriteCopy, commit: CommitLevel) -> Result<(), ResultCode> {
        if ns >= self.namespaces.len() {
            return Err(ResultCode::Namespace);
        }
        // Counted before anything waits: an exchange that starts meanwhile reports this
        // partition as diverged (the copies may not all get this write).
        let in_flight = InFlight::new(&self.copies_in_flight[ns], copy.digest().partition_id());
        if commit == CommitLevel::Master {
            let permit = Arc::clone(&self.background_copies).try_acquire_owned();
            if let (Ok(permit), Some(node)) = (permit, self.this.upgrade()) {
                // The count moves with the copies: it never drops to 0 while they are on
                // their way, or an exchange in between would report the copy as equal.
                tokio::spawn(async move {
                    // The client has its answer; a failure shows in the counters and the log.
                    let _ = node.send_copies(ns, &copy).await;
                    drop((permit, in_flight));
                });
                return Ok(());
            }
        }
        let result = self.send_copies(ns, &copy).await;
        drop(in_flight);
        result
    }

    /// Sends `copy` until every other owner applied it; see the module comment. A copy that
    /// timed out while this node still masters the partition is repaired in the background.
    async fn send_copies(&self, ns: usize, copy: &WriteCopy) -> Result<(), ResultCode> {
        let result = self.send_copies_until_deadline(ns, copy).await;
        if result.is_err() {
            // Applied here, not on every owner: this copy is no longer the others' version.
            let pid = copy.digest().partition_id() as usize;
            if let Some(v) = self.versions.lock().get_mut(ns).and_then(|v| v.get_mut(pid)) {
                *v = crate::plan::diverged_version(*v);
            }
        }
        if result == Err(ResultCode::Timeout) {
            self.repair_later(ns, *copy.digest());
        }
        result
    }

    /// An owner that did not take a write in time (paused, slow, or its answer was lost,
    /// while the view stayed the same) would keep its older copy until the record's next
    /// write or the next view: the copies would differ. The record as it stands now (or its
    /// removal) is sent again, in the background, until every owner has it, this node no
    /// longer masters the partition, or [`REPAIR_MS_MAX`] passes. Repairs share the bound of
    /// background copies; past it a repair is dropped (counted) and the next view reconciles.
    fn repair_later(&self, ns: usize, digest: Digest) {
        let Some(node) = self.this.upgrade() else { return };
        let Ok(permit) = Arc::clone(&self.background_copies).try_acquire_owned() else {
            self.counters.replica_repairs_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let until = tokio::time::Instant::now() + Duration::from_millis(REPAIR_MS_MAX);
            let pid = digest.partition_id();
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(REPAIR_PAUSE_MS)).await;
                if node.copy_targets(ns, pid, &[]).is_none() {
                    return;
                }
                let copy = match node.namespaces[ns].current_image(&digest) {
                    Ok(Some(now)) => {
                        WriteCopy::Record { digest, set: now.set, meta: now.meta, image: now.image.into() }
                    }
                    Ok(None) => WriteCopy::Delete { digest },
                    Err(_) => return,
                };
                match node.send_copies_until_deadline(ns, &copy).await {
                    Ok(()) => {
                        node.counters.replica_repairs.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    // Refused for good (too big, out of space): sending again changes nothing.
                    Err(code) if code != ResultCode::Timeout => return,
                    Err(_) => {}
                }
            }
        });
    }

    async fn send_copies_until_deadline(&self, ns: usize, copy: &WriteCopy) -> Result<(), ResultCode> {
        let pid = copy.digest().partition_id();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(REPLICA_WRITE_DEADLINE_MS);
        let name = self.namespaces[ns].name();
        // Owners that applied the copy; they keep it across a view change.
        let mut applied: SmallVec<[NodeId; 4]> = SmallVec::new();
        let result = loop {
            let Some((key, targets)) = self.copy_targets(ns, pid, &applied) else {
                // Another node masters the partition now; this write is not this node's to
                // finish, and the client must not take it as done. It was applied here, so
                // the answer is "timeout" (in doubt), never "unavailable", which tells a
                // client that nothing was applied.
                break Err(ResultCode::Timeout);
            };
            if targets.is_empty() {
                break Ok(());
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break Err(ResultCode::Timeout);
            }
            // Built for each try: the fabric takes the message, and the image is copied once
            // per try rather than kept twice for the rare retry.
            let deleted_ms = |d: &Digest| self.namespaces[ns].delete_mark(d);
            let body =
                Body::ReplicaWrite(ReplicaWrite { cluster_key: key, change: Some(copy.change(name, deleted_ms)) });
            self.counters.replica_writes_sent.fetch_add(targets.len() as u64, Ordering::Relaxed);
            let reachable: SmallVec<[(NodeId, SocketAddr); 4]> =
                targets.iter().filter_map(|&(n, addr)| Some((n, addr?))).collect();
            // An owner whose address is unknown counts as not reached.
            let (mut failure, mut again) = (None, reachable.len() < targets.len());
            for (node, outcome) in self.request_each(&reachable, body, deadline - now, ack_result).await {
                match outcome {
                    Ok(()) => applied.push(node),
                    // Refused for another view, or lost: worth sending again.
                    Err(ResultCode::ClusterKeyMismatch | ResultCode::Timeout) => again = true,
                    Err(code) => failure = Some(code),
                }
            }
            if let Some(code) = failure {
                // The replica cannot take this record (too big, out of memory, ...): sending
                // it again would not change that.
                break Err(code);
            }
            if again {
                let pause = Duration::from_millis(REPLICA_WRITE_RETRY_PAUSE_MS);
                if tokio::time::Instant::now() + pause >= deadline {
                    break Err(ResultCode::Timeout);
                }
                tokio::time::sleep(pause).await;
            }
        };
        if let Err(code) = result {
            self.counters.replica_writes_failed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(pid, code = ?code, "a write did not reach every owner");
        }
        result
    }

    /// The installed cluster key and the owners of partition `pid` that must still get a
    /// write, or None when this node is not the partition's acting master. An owner whose
    /// address is unknown stays in the list (with no address), so that the write fails
    /// rather than skipping it.
    fn copy_targets(&self, ns: usize, pid: u16, applied: &[NodeId]) -> Option<(u64, Targets)> {
        let st = self.state.read();
        let row = st.plans.get(ns)?.row(pid);
        if row.acting_master() != self.me {
            return None;
        }
        let targets = row
            .copy_targets(self.me)
            .filter(|n| !applied.contains(n))
            .map(|n| (n, st.addrs.get(&n).map(|m| m.fabric)))
            .collect();
        Some((st.key, targets))
    }

    /// A write from a partition's master: applied if this node has the same view installed.
    /// The view is held (read-locked) from the key check through the apply, so that no plan
    /// is installed in between and a migration scan cannot pass the record meanwhile.
    pub(crate) fn on_replica_write(&self, w: ReplicaWrite) -> Body {
        let st = self.state.read();
        // Key 0 is "no plan installed yet": nothing may be applied under it.
        if w.cluster_key == 0 || st.key != w.cluster_key {
            // The sender retries under its next plan, or gives up when it is not master.
            return ack(ResultCode::ClusterKeyMismatch);
        }
        let outcome = match &w.change {
            Some(Change::Record(copy)) => self.apply_replica_record(copy),
            Some(Change::Delete(r)) => self.apply_replica_delete(r, &st),
            None => Err(ResultCode::Parameter),
        };
        drop(st);
        let outcome = outcome.map(|tombstone| {
            if let Some((i, digest)) = tombstone {
                self.remember_delete(w.cluster_key, i, digest);
            }
        });
        match outcome {
            Ok(()) => {
                self.counters.replica_writes_applied.fetch_add(1, Ordering::Relaxed);
                ack(ResultCode::Ok)
            }
            Err(code) => ack(code),
        }
    }

    /// Applies a record copy; no tombstone to remember.
    fn apply_replica_record(&self, copy: &RecordCopy) -> Result<Option<(usize, Digest)>, ResultCode> {
        let &i = self.ns_index.get(&copy.namespace).ok_or(ResultCode::Namespace)?;
        let stored = stored_copy(copy)?;
        self.reconciling.written(i, &stored.digest);
        match self.namespaces[i].apply_replica(&stored).map_err(|e| e.result_code())? {
            // A later copy of the record is here already, and it includes this write; or the
            // record is dead here (expired, truncated) and there is nothing to keep.
            ReplicaApplied::Stored | ReplicaApplied::AlreadyLater | ReplicaApplied::Dead => Ok(None),
        }
    }

    /// Applies a delete; returns the digest to remember when the partition is still arriving
    /// here (checked under the view `st`, read-locked by the caller).
    fn apply_replica_delete(&self, r: &RecordRef, st: &State) -> Result<Option<(usize, Digest)>, ResultCode> {
        let &i = self.ns_index.get(&r.namespace).ok_or(ResultCode::Namespace)?;
        let digest = Digest::from_slice(&r.digest).ok_or(ResultCode::Parameter)?;
        self.reconciling.written(i, &digest);
        self.namespaces[i].apply_delete(&digest, r.lut_ms).map_err(|e| e.result_code())?;
        let pid = digest.partition_id();
        let receiving = st.plans.get(i).is_some_and(|p| !p.row(pid).is_complete(self.me));
        Ok(receiving.then_some((i, digest)))
    }

    /// Remembers a delete on a partition still arriving, so that a migration batch read
    /// before it cannot bring the record back. The write lock is taken only here, not for
    /// every replica delete.
    fn remember_delete(&self, key: u64, i: usize, digest: Digest) {
        let mut st = self.state.write();
        // A newer view drops the tombstones of partitions that completed; under it a batch
        // from this view is refused anyway.
        if st.key == key {
            st.tombstones.entry((i, digest.partition_id())).or_default().insert(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::heartbeat::HeartbeatConfig;
    use crate::membership::{MembershipConfig, NodeEndpoints};
    use crate::node::{ack_result, ClusterConfig};
    use petrel_proto::cluster::FabricMessage;
    use petrel_proto::KeyRef;
    use petrel_storage::{Namespace, NamespaceConfig, ReadSelect, Value};

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
    }

    /// A node on loopback with one namespace (replication factor 2), seeded with `seeds`.
    async fn node_on_loopback(id: NodeId, seeds: Vec<String>) -> (Arc<ClusterNode>, SocketAddr) {
        let (heartbeat, fabric) = (free_addr(), free_addr());
        let config = ClusterConfig {
            heartbeat: HeartbeatConfig {
                node_id: id,
                listen: heartbeat,
                advertise: heartbeat.to_string(),
                seeds,
                membership: MembershipConfig::new("replica-test"),
                endpoints: NodeEndpoints {
                    fabric: fabric.to_string(),
                    service: "127.0.0.1:1".into(),
                    service_alt: String::new(),
                },
                clock: None,
            },
            fabric_listen: fabric,
            conflict_resolution: Default::default(),
            migrate_parallelism: 1,
            state_dir: None,
        };
        let ns = Arc::new(Namespace::in_memory(NamespaceConfig::new("test")).expect("namespace"));
        (ClusterNode::start(config, vec![ns]).await.expect("start"), heartbeat)
    }

    /// Waits until every node installed the plan of one view with all of them.
    async fn formed(nodes: &[&ClusterNode]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let keys: Vec<(u64, usize)> = nodes.iter().map(|n| (n.current_key(), n.summary().members.len())).collect();
            if keys.iter().all(|&(k, m)| k != 0 && k == keys[0].0 && m == nodes.len()) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "no common view: {keys:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A lone node on loopback, once it installed the plan of its one-node view.
    async fn lone_node() -> Arc<ClusterNode> {
        let (node, _) = node_on_loopback(0xA, Vec::new()).await;
        formed(&[&node]).await;
        node
    }

    fn image(n: i64) -> Vec<u8> {
        let mut bytes = Vec::new();
        let p = Value::Int(n).to_particle();
        petrel_storage::record::encode(&mut bytes, None, [(&b"n"[..], p.particle, &p.bytes[..])].into_iter())
            .expect("encode");
        bytes
    }

    fn record(digest: Digest, generation: u16, n: i64) -> WriteCopy {
        let meta = RecordMeta { generation, void_time: 0, lut_ms: 1_000 + n as u64 };
        WriteCopy::Record { digest, set: Vec::new(), meta, image: image(n).into() }
    }

    fn send(node: &ClusterNode, key: u64, copy: &WriteCopy) -> Result<(), ResultCode> {
        let body =
            node.on_replica_write(ReplicaWrite { cluster_key: key, change: Some(copy.change("test", |_| None)) });
        ack_result(Ok(FabricMessage { body: Some(body), ..Default::default() }))
    }

    fn value(node: &ClusterNode, d: &Digest) -> Option<Value> {
        let mut got = None;
        let _ = node.namespaces[0].read(d, ReadSelect::All, |b| got = Value::from_particle(b.value).ok());
        got
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replica_applies_copies_of_its_view_only_and_acknowledges_only_what_it_applied() {
        let node = lone_node().await;
        let key = node.current_key();
        let d = Digest::compute(b"replica", KeyRef::Int(1));

        // Another view's copy is refused, and not applied.
        assert_eq!(send(&node, key ^ 1, &record(d, 1, 1)), Err(ResultCode::ClusterKeyMismatch));
        assert_eq!(value(&node, &d), None);

        // The master's copies apply in sequence, across the generation wrap.
        assert_eq!(send(&node, key, &record(d, u16::MAX, 2)), Ok(()));
        assert_eq!(send(&node, key, &record(d, 1, 3)), Ok(()));
        assert_eq!(value(&node, &d), Some(Value::Int(3)));

        // A copy overtaken in flight counts as applied (the later one includes it) and
        // changes nothing.
        assert_eq!(send(&node, key, &record(d, u16::MAX, 2)), Ok(()));
        assert_eq!(value(&node, &d), Some(Value::Int(3)));

        // A copy that cannot be applied is answered with its error, not acknowledged.
        let broken =
            WriteCopy::Record { digest: d, set: Vec::new(), meta: RecordMeta::default(), image: image(4).into() };
        assert!(send(&node, key, &broken).is_err());
        assert_eq!(value(&node, &d), Some(Value::Int(3)));

        // Deletes likewise.
        assert_eq!(send(&node, key ^ 1, &WriteCopy::Delete { digest: d }), Err(ResultCode::ClusterKeyMismatch));
        assert_eq!(value(&node, &d), Some(Value::Int(3)));
        assert_eq!(send(&node, key, &WriteCopy::Delete { digest: d }), Ok(()));
        assert_eq!(value(&node, &d), None);
        assert_eq!(node.counters.replica_writes_applied.load(Ordering::Relaxed), 4);

        // The lone owner has no one to copy to.
        assert_eq!(node.write_copies(0, record(d, 5, 5), CommitLevel::All).await, Ok(()));
        assert_eq!(node.write_copies(1, record(d, 5, 5), CommitLevel::All).await, Err(ResultCode::Namespace));
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_master_sends_refused_copies_again_until_the_replica_takes_them_or_the_deadline_passes() {
        let (a, seed) = node_on_loopback(0xA, Vec::new()).await;
        let (b, _) = node_on_loopback(0xB, vec![seed.to_string()]).await;
        formed(&[&a, &b]).await;
        // A record of a partition that `a` masters, and one of a partition it does not.
        let digest_mastered_by = |node: &ClusterNode| {
            (0..10_000)
                .map(|i| Digest::compute(b"retry", KeyRef::Int(i)))
                .find(|d| node.route(0, d.partition_id(), true) == crate::Route::Local)
                .expect("a partition mastered by the node")
        };
        let (d, elsewhere) = (digest_mastered_by(&a), digest_mastered_by(&b));

        assert_eq!(a.write_copies(0, record(d, 1, 1), CommitLevel::All).await, Ok(()));
        assert_eq!(value(&b, &d), Some(Value::Int(1)));

        // `b` stops following views (its heartbeat and fabric go on), so that the key set
        // below stays until the test changes it.
        let _ = b.stop.send(true);
        // `b` has another view installed for a moment: refused, sent again, taken.
        let key = b.current_key();
        b.state.write().key = key ^ 1;
        let sent_before = a.counters.replica_writes_sent.load(Ordering::Relaxed);
        let writer = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.write_copies(0, record(d, 2, 2), CommitLevel::All).await })
        };
        tokio::time::sleep(Duration::from_millis(REPLICA_WRITE_DEADLINE_MS / 3)).await;
        assert_eq!(value(&b, &d), Some(Value::Int(1)));
        b.state.write().key = key;
        assert_eq!(writer.await.expect("writer"), Ok(()));
        assert_eq!(value(&b, &d), Some(Value::Int(2)));
        assert!(a.counters.replica_writes_sent.load(Ordering::Relaxed) - sent_before > 1, "sent again");

        // Refused until the deadline: the write fails, and says so.
        b.state.write().key = key ^ 1;
        let started = tokio::time::Instant::now();
        assert_eq!(a.write_copies(0, record(d, 3, 3), CommitLevel::All).await, Err(ResultCode::Timeout));
        assert!(started.elapsed() >= Duration::from_millis(REPLICA_WRITE_DEADLINE_MS / 2));
        b.state.write().key = key;
        assert_eq!(value(&b, &d), Some(Value::Int(2)));

        // Not the acting master: not this node's write to finish.
        assert_eq!(a.write_copies(0, record(elsewhere, 1, 1), CommitLevel::All).await, Err(ResultCode::Timeout));
        a.stop().await;
        b.stop().await;
    }
}
