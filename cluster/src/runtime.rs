//! A node's part in the cluster at run time: it starts the heartbeat and the fabric, follows
//! view changes (exchange of partition versions, then a [`Plan`] per namespace), routes each
//! request (serve here, proxy to the acting master, or unavailable), copies writes to the
//! other owners, moves partitions (migrations, merges after a split) with bounded
//! parallelism, and gives back partitions it no longer owns once their owners are complete.
//!
//! The service layer plugs in through [`ServiceHooks`], which serves proxied requests and
//! info commands forwarded by peers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{
    Ack, Exchange, FabricMessage, InfoCommand, MigrateRecords, NamespaceVersions, PartitionComplete, Proxy, RecordCopy,
    RecordRef,
};
use petrel_proto::{Digest, ResultCode, PARTITIONS_COUNT};
use petrel_storage::namespace::{ConflictResolution, RecordCopy as StoredCopy, RecordMeta};
use petrel_storage::Namespace;
use smallvec::SmallVec;
use tokio::sync::{watch, Notify, Semaphore};

use crate::fabric::{Fabric, FabricHandler};
use crate::heartbeat::{Heartbeat, HeartbeatConfig};
use crate::membership::ClusterView;
use crate::partition_table::NodeId;
use crate::plan::Plan;

/// How long a replica has to apply a write.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a proxied request may take.
const PROXY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a migration batch may take to be applied.
const MIGRATE_BATCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Records per migration batch, and the bytes after which a batch is cut short.
const MIGRATE_BATCH_RECORDS: usize = 512;
const MIGRATE_BATCH_BYTES: usize = 4 << 20;
/// How long a write waits for the plan of a newly adopted view before it is refused.
const TRANSITION_WAIT: Duration = Duration::from_millis(1500);
/// Most hops a proxied request takes.
pub const PROXY_HOPS_MAX: u32 = 2;
/// Exchanges remembered, by cluster key (the newest few views).
const EXCHANGE_KEYS_MAX: usize = 4;
/// Most members a view can have (the heartbeat dials at most this many endpoints).
const MEMBERS_MAX: usize = 256;
/// Most namespaces an exchange may carry.
const EXCHANGE_NAMESPACES_MAX: usize = 64;

/// Settings of a node's cluster layer.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The node's identity, heartbeat listener, seeds, membership timing, and the endpoints
    /// it advertises.
    pub heartbeat: HeartbeatConfig,
    pub fabric_listen: SocketAddr,
    pub conflict_resolution: ConflictResolution,
    /// Partitions sent at once.
    pub migrate_parallelism: usize,
}

/// What the service layer does for the cluster: answer requests proxied from peers, and info
/// commands every member must run.
pub trait ServiceHooks: Send + Sync + 'static {
    /// Serves a proxied request frame body; returns the answer frames.
    fn proxied(&self, body: Vec<u8>, hops: u32) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>>;
    /// Runs an info command forwarded by a peer.
    fn info(&self, line: &str) -> String;
}

/// Where a request for a partition is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local,
    Proxy(SocketAddr),
    /// No plan yet, or the acting master cannot be reached.
    Unavailable,
}

/// A node's published role for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
    None,
}

#[derive(Debug, Clone)]
struct Member {
    fabric: SocketAddr,
    service: String,
}

#[derive(Debug, Default)]
struct State {
    /// Key of the newest view the heartbeat agreed on.
    adopted_key: u64,
    /// Key of the installed plans.
    key: u64,
    members: Vec<NodeId>,
    addrs: HashMap<NodeId, Member>,
    /// Per namespace, in the node's namespace order; empty until the first view.
    plans: Vec<Plan>,
    /// Digests deleted on partitions this node is still receiving, so that a migration
    /// batch cannot bring them back.
    tombstones: HashMap<(usize, u16), HashSet<Digest>>,
}

/// Counters reported by `statistics`.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    pub partition_generation: AtomicU64,
    pub peers_generation: AtomicU64,
    pub cluster_generation: AtomicU64,
    pub migrate_records_sent: AtomicU64,
    pub migrate_records_received: AtomicU64,
    pub migrate_partitions_sent: AtomicU64,
    pub migrate_partitions_received: AtomicU64,
    pub replica_writes_sent: AtomicU64,
    pub replica_writes_failed: AtomicU64,
    pub replica_writes_applied: AtomicU64,
    pub partitions_dropped: AtomicU64,
}

/// A summary of the node's cluster state.
#[derive(Debug, Clone, Default)]
pub struct ClusterSummary {
    pub key: u64,
    pub principal: NodeId,
    pub members: Vec<NodeId>,
    /// Partitions this node still sends and receives, over all namespaces.
    pub migrate_tx: usize,
    pub migrate_rx: usize,
    /// Partitions not settled on their owners, as this node knows.
    pub unsettled: usize,
    /// A newer view is agreed but its plan is not installed yet.
    pub in_transition: bool,
}

/// Per cluster key: per node, its versions per namespace (node's namespace order).
type ExchangeBook = BTreeMap<u64, HashMap<NodeId, Vec<Vec<u64>>>>;

/// This node's cluster layer.
pub struct ClusterNode {
    me: NodeId,
    config: ClusterConfig,
    namespaces: Vec<Arc<Namespace>>,
    ns_index: HashMap<String, usize>,
    state: RwLock<State>,
    /// Per namespace, per partition: the version of the copy held here (0 = none complete).
    versions: Mutex<Vec<Vec<u64>>>,
    exchanges: Mutex<ExchangeBook>,
    exchange_arrived: Notify,
    installed: watch::Sender<u64>,
    work: Notify,
    fabric: OnceLock<Arc<Fabric>>,
    heartbeat: Mutex<Option<Heartbeat>>,
    hooks: OnceLock<Weak<dyn ServiceHooks>>,
    stop: watch::Sender<bool>,
    pub counters: ClusterCounters,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode").field("me", &format_args!("{:X}", self.me)).finish()
    }
}

/// The fabric's view of the node: a weak reference, so the fabric does not keep it alive.
struct FabricSide(Weak<ClusterNode>);

impl FabricHandler for FabricSide {
    fn handle(&self, request: FabricMessage) -> Pin<Box<dyn Future<Output = FabricMessage> + Send + '_>> {
        Box::pin(async move {
            let body = match self.0.upgrade() {
                Some(node) => node.on_request(request).await,
                None => ack(ResultCode::Timeout),
            };
            FabricMessage { body: Some(body), ..Default::default() }
        })
    }
}

fn ack(code: ResultCode) -> Body {
    Body::Ack(Ack { result_code: code.code() as u32 })
}

fn ack_code(answer: &FabricMessage) -> Option<u32> {
    match &answer.body {
        Some(Body::Ack(a)) => Some(a.result_code),
        _ => None,
    }
}

impl ClusterNode {
    /// Binds the fabric and heartbeat ports and starts following the cluster.
    pub async fn start(config: ClusterConfig, namespaces: Vec<Arc<Namespace>>) -> std::io::Result<Arc<ClusterNode>> {
        let ns_index = namespaces.iter().enumerate().map(|(i, n)| (n.name().to_string(), i)).collect();
        let versions = vec![vec![0u64; PARTITIONS_COUNT]; namespaces.len()];
        let node = Arc::new(ClusterNode {
            me: config.heartbeat.node_id,
            config: config.clone(),
            namespaces,
            ns_index,
            state: RwLock::new(State::default()),
            versions: Mutex::new(versions),
            exchanges: Mutex::new(BTreeMap::new()),
            exchange_arrived: Notify::new(),
            installed: watch::channel(0).0,
            work: Notify::new(),
            fabric: OnceLock::new(),
            heartbeat: Mutex::new(None),
            hooks: OnceLock::new(),
            stop: watch::channel(false).0,
            counters: ClusterCounters::default(),
        });
        let fabric = Fabric::start(config.fabric_listen, Arc::new(FabricSide(Arc::downgrade(&node)))).await?;
        let _ = node.fabric.set(fabric);
        let heartbeat = Heartbeat::start(config.heartbeat.clone()).await?;
        let views = heartbeat.watch();
        *node.heartbeat.lock() = Some(heartbeat);
        tokio::spawn(Arc::clone(&node).follow_views(views, node.stop.subscribe()));
        Ok(node)
    }

    /// Connects the service layer (held weakly: the service owns this node).
    pub fn set_hooks(&self, hooks: Weak<dyn ServiceHooks>) {
        let _ = self.hooks.set(hooks);
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// Stops the heartbeat (peers see this node leave after their timeout) and the fabric.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let hb = self.heartbeat.lock().take();
        if let Some(hb) = hb {
            hb.stop().await;
        }
        if let Some(f) = self.fabric.get() {
            f.stop();
        }
    }

    /// Adds a heartbeat seed at run time.
    pub fn tip(&self, endpoint: String) -> bool {
        match self.heartbeat.lock().as_ref() {
            Some(hb) => {
                hb.tip(endpoint);
                true
            }
            None => false,
        }
    }

    /// Forgets the seeds added by [`ClusterNode::tip`].
    pub fn tip_clear(&self) {
        if let Some(hb) = self.heartbeat.lock().as_ref() {
            hb.tip_clear();
        }
    }

    fn fabric(&self) -> &Arc<Fabric> {
        self.fabric.get().expect("the fabric starts before anything uses it")
    }

    fn current_key(&self) -> u64 {
        self.state.read().key
    }

    // ---- the request path ----

    /// Where a request for partition `pid` of namespace `ns` is served.
    pub fn route(&self, ns: usize, pid: u16, write: bool) -> Route {
        let st = self.state.read();
        let Some(plan) = st.plans.get(ns) else { return Route::Unavailable };
        let row = plan.row(pid);
        let master = row.acting_master();
        let local = if write { master == self.me } else { row.serves_reads(self.me) };
        if local {
            return Route::Local;
        }
        match st.addrs.get(&master) {
            Some(m) => Route::Proxy(m.fabric),
            None => Route::Unavailable,
        }
    }

    /// Waits (bounded) while a newly agreed view's plan is not installed, so that no write is
    /// taken under the plan of a view that is already gone. False if it did not settle.
    pub async fn wait_for_plan(&self) -> bool {
        let in_transition = |s: &State| s.adopted_key != s.key || s.plans.is_empty();
        if !in_transition(&self.state.read()) {
            return true;
        }
        let mut installed = self.installed.subscribe();
        let deadline = tokio::time::Instant::now() + TRANSITION_WAIT;
        loop {
            if !in_transition(&self.state.read()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, installed.changed()).await.is_err() {
                return false;
            }
        }
    }

    /// The fabric addresses a write applied here is copied to.
    pub fn copy_targets(&self, ns: usize, pid: u16) -> SmallVec<[SocketAddr; 4]> {
        let st = self.state.read();
        let Some(plan) = st.plans.get(ns) else { return SmallVec::new() };
        plan.row(pid).copy_targets(self.me).filter_map(|n| st.addrs.get(&n).map(|m| m.fabric)).collect()
    }

    /// Sends a record copy (or a delete) to each target and waits until every one applied it.
    pub async fn replicate(&self, targets: &[SocketAddr], body: Body) -> Result<(), ResultCode> {
        let fabric = Arc::clone(self.fabric());
        self.counters.replica_writes_sent.fetch_add(targets.len() as u64, Ordering::Relaxed);
        let result = match targets {
            [] => Ok(()),
            [one] => check_ack(fabric.request(*one, body, REPLICA_TIMEOUT).await),
            many => {
                let mut set = tokio::task::JoinSet::new();
                for &t in many {
                    let (fabric, body) = (Arc::clone(&fabric), body.clone());
                    set.spawn(async move { check_ack(fabric.request(t, body, REPLICA_TIMEOUT).await) });
                }
                let mut result = Ok(());
                while let Some(r) = set.join_next().await {
                    if let Ok(Err(e)) | Err(e) = r.map_err(|_| ResultCode::Timeout) {
                        result = Err(e);
                    }
                }
                result
            }
        };
        if result.is_err() {
            self.counters.replica_writes_failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Forwards a request body to the node at `to`; returns its answer frames.
    pub async fn proxy(&self, to: SocketAddr, body: Vec<u8>, hops: u32) -> Result<Vec<u8>, ResultCode> {
        let answer = self
            .fabric()
            .request(to, Body::Proxy(Proxy { frame: body, hops: hops + 1 }), PROXY_TIMEOUT)
            .await
            .map_err(|_| ResultCode::Timeout)?;
        match answer.body {
            Some(Body::Proxy(p)) => Ok(p.frame),
            Some(Body::Ack(a)) => Err(ResultCode::from_u8(a.result_code as u8).unwrap_or(ResultCode::Timeout)),
            _ => Err(ResultCode::Timeout),
        }
    }

    /// Runs an info command on every other member; returns the answers by node.
    pub async fn info_on_peers(&self, line: &str) -> Vec<(NodeId, String)> {
        let targets: Vec<(NodeId, SocketAddr)> = {
            let st = self.state.read();
            st.members
                .iter()
                .filter(|&&n| n != self.me)
                .filter_map(|n| st.addrs.get(n).map(|m| (*n, m.fabric)))
                .collect()
        };
        let mut set = tokio::task::JoinSet::new();
        for (id, addr) in targets {
            let fabric = Arc::clone(self.fabric());
            let body = Body::Info(InfoCommand { line: line.to_string() });
            set.spawn(async move {
                let answer = match fabric.request(addr, body, PROXY_TIMEOUT).await {
                    Ok(FabricMessage { body: Some(Body::InfoAnswer(a)), .. }) => a.line,
                    Ok(_) => "ERROR::unexpected answer".to_string(),
                    Err(e) => format!("ERROR::{e}"),
                };
                (id, answer)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(a) = r {
                out.push(a);
            }
        }
        out
    }

    // ---- what the node reports ----

    /// The cluster as this node sees it; cheap (no record locks).
    pub fn summary(&self) -> ClusterSummary {
        let st = self.state.read();
        let (mut tx, mut rx, mut unsettled) = (0, 0, 0);
        for plan in &st.plans {
            let (t, r) = plan.remaining_for(self.me);
            tx += t;
            rx += r;
            unsettled += plan.unsettled();
        }
        ClusterSummary {
            key: st.key,
            principal: st.members.first().copied().unwrap_or(self.me),
            members: st.members.clone(),
            migrate_tx: tx,
            migrate_rx: rx,
            unsettled,
            in_transition: st.adopted_key != st.key,
        }
    }

    /// The other members with their service endpoints.
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        let st = self.state.read();
        st.members
            .iter()
            .filter(|&&n| n != self.me)
            .map(|n| (*n, st.addrs.get(n).map(|m| m.service.clone()).unwrap_or_default()))
            .collect()
    }

    /// Partitions of namespace `ns` this node still has to send and to receive.
    pub fn migrations(&self, ns: usize) -> (usize, usize) {
        self.state.read().plans.get(ns).map_or((0, 0), |p| p.remaining_for(self.me))
    }

    /// Partitions settled on their owners that this node still holds a copy of. The cluster
    /// is stable only when there are none, so that every record sits on its owners only.
    /// Looks at every partition's size, so it is for info commands, not for requests.
    pub fn copies_to_give_back(&self) -> usize {
        self.copies_settled_elsewhere().len()
    }

    /// (namespace, partition) of every non-empty partition settled on other owners.
    fn copies_settled_elsewhere(&self) -> Vec<(usize, u16)> {
        let st = self.state.read();
        let mut v = Vec::new();
        for (i, plan) in st.plans.iter().enumerate() {
            for pid in 0..PARTITIONS_COUNT as u16 {
                if plan.row(pid).is_settled_without(self.me) && !self.namespaces[i].partition(pid).is_empty() {
                    v.push((i, pid));
                }
            }
        }
        v
    }

    /// Effective replication factor of namespace `ns` (0 before the first view).
    pub fn replication_factor(&self, ns: usize) -> usize {
        self.state.read().plans.get(ns).map_or(0, |p| p.replication_factor)
    }

    /// The published bitmap of position `k` for this node in namespace `ns`.
    pub fn bitmap(&self, ns: usize, k: usize) -> [u8; PARTITIONS_COUNT / 8] {
        self.state.read().plans.get(ns).map_or([0; PARTITIONS_COUNT / 8], |p| p.bitmap(self.me, k))
    }

    /// This node's published role for each partition of namespace `ns`.
    pub fn roles(&self, ns: usize) -> Vec<Role> {
        let st = self.state.read();
        let Some(plan) = st.plans.get(ns) else { return vec![Role::None; PARTITIONS_COUNT] };
        plan.rows
            .iter()
            .map(|r| match r.published().position(|n| n == self.me) {
                Some(0) => Role::Master,
                Some(_) => Role::Replica,
                None => Role::None,
            })
            .collect()
    }

    // ---- following views ----

    async fn follow_views(self: Arc<Self>, mut views: watch::Receiver<ClusterView>, mut stop: watch::Receiver<bool>) {
        loop {
            let view = views.borrow_and_update().clone();
            if !view.members.is_empty() && view.key != self.current_key() {
                self.state.write().adopted_key = view.key;
                tokio::select! {
                    _ = self.rebalance(&view, &views) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            tokio::select! {
                r = views.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
                // Partitions are given back as they settle; this sweep catches copies that
                // stale replica writes recreated.
                _ = tokio::time::sleep(Duration::from_secs(1)) => self.give_back(),
            }
        }
    }

    /// Exchanges versions with every member of `view` and installs the new plans. Returns
    /// early when the view changes again.
    async fn rebalance(self: &Arc<Self>, view: &ClusterView, views: &watch::Receiver<ClusterView>) {
        let key = view.key;
        let changed = || views.has_changed().unwrap_or(true);
        // Where the members are: from their pulses.
        let mut addrs = HashMap::new();
        for _ in 0..50 {
            addrs.clear();
            for &id in &view.members {
                let Some(e) = self.heartbeat.lock().as_ref().and_then(|hb| hb.endpoints_of(id)) else { continue };
                let Some(fabric) = resolve(&e.fabric).await else { continue };
                addrs.insert(id, Member { fabric, service: e.service });
            }
            if addrs.len() == view.members.len() || changed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if changed() {
            return;
        }
        if addrs.len() != view.members.len() {
            tracing::warn!(key = format!("{key:X}"), "members' endpoints unknown; waiting for the next view");
            return;
        }
        // Send our versions to everyone, and wait for everyone's.
        let mine: Vec<Vec<u64>> = self.versions.lock().clone();
        self.record_exchange(key, self.me, mine.clone());
        let exchange = Exchange {
            cluster_key: key,
            node_id: self.me,
            namespaces: self
                .namespaces
                .iter()
                .zip(&mine)
                .map(|(ns, v)| NamespaceVersions { namespace: ns.name().to_string(), versions: v.clone() })
                .collect(),
        };
        for (&id, m) in &addrs {
            if id == self.me {
                continue;
            }
            let (node, addr, exchange) = (Arc::clone(self), m.fabric, exchange.clone());
            tokio::spawn(async move {
                // Until it is taken or the view moves on.
                while node.state.read().adopted_key == key {
                    let r = node.fabric().request(addr, Body::Exchange(exchange.clone()), Duration::from_secs(2)).await;
                    if r.ok().and_then(|a| ack_code(&a)) == Some(0) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
        }
        let book = loop {
            let arrived = self.exchange_arrived.notified();
            {
                let ex = self.exchanges.lock();
                if let Some(got) = ex.get(&key) {
                    if view.members.iter().all(|n| got.contains_key(n)) {
                        break got.clone();
                    }
                }
            }
            if changed() {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(200), arrived).await;
        };
        // Every member computes the same plans from the same exchange.
        let plans: Vec<Plan> = self
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let rf = ns.config().replication_factor as usize;
                Plan::compute(&view.members, rf, key, |n| book.get(&n).and_then(|v| v.get(i)).map(Vec::as_slice))
            })
            .collect();
        {
            let mut versions = self.versions.lock();
            for (i, plan) in plans.iter().enumerate() {
                for (pid, row) in plan.rows.iter().enumerate() {
                    versions[i][pid] = row.version_of(self.me);
                }
            }
        }
        let (master_count, unsettled) = (
            plans.first().map_or(0, |p| {
                (0..PARTITIONS_COUNT as u16).filter(|&pid| p.row(pid).acting_master() == self.me).count()
            }),
            plans.iter().map(Plan::unsettled).sum::<usize>(),
        );
        {
            let mut st = self.state.write();
            let members_changed = st.members != view.members;
            st.key = key;
            st.members = view.members.clone();
            st.addrs = addrs;
            st.tombstones.retain(|(ns, pid), _| plans.get(*ns).is_some_and(|p| !p.row(*pid).is_complete(self.me)));
            st.plans = plans;
            if members_changed {
                self.counters.peers_generation.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.cluster_generation.fetch_add(1, Ordering::Relaxed);
        self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
        let _ = self.installed.send(key);
        tracing::info!(
            key = format!("{key:X}"),
            members = view.members.len(),
            masters = master_count,
            unsettled,
            "partition plan installed"
        );
        tokio::spawn(Arc::clone(self).migrate(key));
    }

    fn record_exchange(&self, key: u64, node: NodeId, versions: Vec<Vec<u64>>) {
        let mut ex = self.exchanges.lock();
        let book = ex.entry(key).or_default();
        // A view has at most as many members as the heartbeat dials; more senders for one
        // key are not members, and are not kept.
        if book.len() >= MEMBERS_MAX && !book.contains_key(&node) {
            return;
        }
        book.insert(node, versions);
        while ex.len() > EXCHANGE_KEYS_MAX {
            // Keys are random, so their order says nothing about age: forget any view other
            // than the one being adopted and the one this exchange is for.
            let current = self.state.read().adopted_key;
            let Some(old) = ex.keys().copied().find(|&k| k != current && k != key) else { break };
            ex.remove(&old);
        }
        self.exchange_arrived.notify_waiters();
    }

    // ---- migrations ----

    /// Sends what this node owes under the plan of `key`, until the view changes or nothing
    /// is left (each finished partition is given back by its sender and by every member told
    /// of it).
    async fn migrate(self: Arc<Self>, key: u64) {
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
                            // Try again after a pause (a peer that is gone leaves the view).
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            started.lock().remove(&id);
                        }
                        node.work.notify_one();
                    });
                }
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => return,
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

    /// Streams one partition to its target; true when the target took all of it.
    async fn push(&self, key: u64, task: &PushTask) -> bool {
        let ns = &self.namespaces[task.ns];
        let mut set_names: HashMap<u16, Vec<u8>> = HashMap::new();
        let mut after = None;
        let mut sent = 0u64;
        loop {
            if self.current_key() != key {
                return false;
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
                records.push(RecordCopy {
                    namespace: String::new(),
                    digest: r.digest.as_bytes().to_vec(),
                    set,
                    generation: r.meta.generation as u32,
                    void_time: r.meta.void_time,
                    lut_ms: r.meta.lut_ms,
                    image: r.raw.to_vec(),
                });
                bytes < MIGRATE_BATCH_BYTES
            });
            let progress = match progress {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, pid = task.pid, "migration scan failed");
                    return false;
                }
            };
            after = progress.last;
            let n = records.len() as u64;
            let msg = MigrateRecords {
                namespace: ns.name().to_string(),
                partition_id: task.pid as u32,
                cluster_key: key,
                records,
                done: progress.complete,
                version: task.version,
                merge: task.merge,
                from_node: self.me,
            };
            let answer = self.fabric().request(task.addr, Body::MigrateRecords(msg), MIGRATE_BATCH_TIMEOUT).await;
            if answer.ok().and_then(|a| ack_code(&a)) != Some(0) {
                return false;
            }
            sent += n;
            self.counters.migrate_records_sent.fetch_add(n, Ordering::Relaxed);
            if progress.complete {
                break;
            }
        }
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
            }
            drop(st);
            self.give_back_one(task.ns, task.pid);
        }
        self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Drops partitions this node does not own once their owners are complete.
    fn give_back(&self) {
        for (ns, pid) in self.copies_settled_elsewhere() {
            self.drop_copy(ns, pid);
        }
    }

    /// Gives partition `pid` of namespace `ns` back at once if it settled elsewhere.
    fn give_back_one(&self, ns: usize, pid: u16) {
        let settled_elsewhere = self.state.read().plans.get(ns).is_some_and(|p| p.row(pid).is_settled_without(self.me));
        if settled_elsewhere && !self.namespaces[ns].partition(pid).is_empty() {
            self.drop_copy(ns, pid);
        }
    }

    fn drop_copy(&self, ns: usize, pid: u16) {
        let records = self.namespaces[ns].drop_partition(pid);
        self.versions.lock()[ns][pid as usize] = 0;
        self.counters.partitions_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(pid, records, "gave back a partition settled on its owners");
    }

    /// Tells every other member that this node holds `pid` at `version`.
    fn announce(self: &Arc<Self>, key: u64, ns: usize, pid: u16, version: u64) {
        let targets: Vec<SocketAddr> = {
            let st = self.state.read();
            st.members.iter().filter(|&&n| n != self.me).filter_map(|n| st.addrs.get(n).map(|m| m.fabric)).collect()
        };
        let msg = PartitionComplete {
            cluster_key: key,
            namespace: self.namespaces[ns].name().to_string(),
            partition_id: pid as u32,
            node_id: self.me,
            version,
        };
        for addr in targets {
            let (node, msg) = (Arc::clone(self), msg.clone());
            tokio::spawn(async move {
                // Until taken, or this view is gone (a new view starts a new exchange).
                for _ in 0..200 {
                    if node.current_key() != key {
                        return;
                    }
                    let r =
                        node.fabric().request(addr, Body::PartitionComplete(msg.clone()), Duration::from_secs(2)).await;
                    if r.ok().and_then(|a| ack_code(&a)) == Some(0) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
            });
        }
    }

    // ---- requests from peers ----

    async fn on_request(self: Arc<Self>, request: FabricMessage) -> Body {
        match request.body {
            Some(Body::ReplicaWrite(copy)) => self.on_replica_write(&copy),
            Some(Body::ReplicaDelete(r)) => self.on_replica_delete(&r),
            Some(Body::MigrateRecords(m)) => self.on_migrate(m),
            Some(Body::PartitionComplete(c)) => {
                let Some(&ns) = self.ns_index.get(&c.namespace) else { return ack(ResultCode::Namespace) };
                if c.partition_id as usize >= PARTITIONS_COUNT {
                    return ack(ResultCode::Parameter);
                }
                let mut st = self.state.write();
                if st.key != c.cluster_key {
                    // Not installed here yet (or a view gone by): the sender retries while
                    // its view lasts.
                    return ack(ResultCode::ClusterKeyMismatch);
                }
                if !st.members.contains(&c.node_id) {
                    // Only members hold partitions; anything else would grow the plan.
                    return ack(ResultCode::Parameter);
                }
                st.plans[ns].row_mut(c.partition_id as u16).on_complete(c.node_id, c.version);
                drop(st);
                self.give_back_one(ns, c.partition_id as u16);
                self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
                self.work.notify_one();
                ack(ResultCode::Ok)
            }
            Some(Body::Exchange(e)) => {
                if e.namespaces.len() > EXCHANGE_NAMESPACES_MAX
                    || e.namespaces.iter().any(|n| n.versions.len() != PARTITIONS_COUNT)
                {
                    return ack(ResultCode::Parameter);
                }
                // Our namespace order; a namespace the peer lacks holds nothing there.
                let mut versions = vec![vec![0u64; PARTITIONS_COUNT]; self.namespaces.len()];
                for n in e.namespaces {
                    if let Some(&i) = self.ns_index.get(&n.namespace) {
                        versions[i] = n.versions;
                    }
                }
                self.record_exchange(e.cluster_key, e.node_id, versions);
                ack(ResultCode::Ok)
            }
            Some(Body::Proxy(p)) => {
                if p.hops > PROXY_HOPS_MAX {
                    return ack(ResultCode::Unavailable);
                }
                let Some(hooks) = self.hooks.get().and_then(Weak::upgrade) else { return ack(ResultCode::Timeout) };
                let frame = hooks.proxied(p.frame, p.hops).await;
                Body::Proxy(Proxy { frame, hops: p.hops })
            }
            Some(Body::Info(cmd)) => {
                let Some(hooks) = self.hooks.get().and_then(Weak::upgrade) else { return ack(ResultCode::Timeout) };
                Body::InfoAnswer(InfoCommand { line: hooks.info(&cmd.line) })
            }
            _ => ack(ResultCode::Parameter),
        }
    }

    fn namespace_of(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.ns_index.get(name).map(|&i| &self.namespaces[i])
    }

    fn on_replica_write(&self, copy: &RecordCopy) -> Body {
        let Some(ns) = self.namespace_of(&copy.namespace) else { return ack(ResultCode::Namespace) };
        match apply_copy(ns, copy, self.config.conflict_resolution) {
            Ok(_) => {
                self.counters.replica_writes_applied.fetch_add(1, Ordering::Relaxed);
                ack(ResultCode::Ok)
            }
            Err(code) => ack(code),
        }
    }

    fn on_replica_delete(&self, r: &RecordRef) -> Body {
        let Some(&i) = self.ns_index.get(&r.namespace) else { return ack(ResultCode::Namespace) };
        let Some(digest) = Digest::from_slice(&r.digest) else { return ack(ResultCode::Parameter) };
        self.namespaces[i].apply_delete(&digest);
        let pid = digest.partition_id();
        let mut st = self.state.write();
        let receiving = st.plans.get(i).is_some_and(|p| !p.row(pid).is_complete(self.me));
        if receiving {
            st.tombstones.entry((i, pid)).or_default().insert(digest);
        }
        ack(ResultCode::Ok)
    }

    fn on_migrate(self: &Arc<Self>, m: MigrateRecords) -> Body {
        let Some(&i) = self.ns_index.get(&m.namespace) else { return ack(ResultCode::Namespace) };
        if m.partition_id as usize >= PARTITIONS_COUNT {
            return ack(ResultCode::Parameter);
        }
        let pid = m.partition_id as u16;
        if self.current_key() != m.cluster_key {
            return ack(ResultCode::ClusterKeyMismatch);
        }
        let ns = &self.namespaces[i];
        let deleted_here = |d: &Digest| self.state.read().tombstones.get(&(i, pid)).is_some_and(|t| t.contains(d));
        let mut applied = 0u64;
        for copy in &m.records {
            let Some(digest) = Digest::from_slice(&copy.digest) else { return ack(ResultCode::Parameter) };
            if digest.partition_id() != pid {
                return ack(ResultCode::Parameter);
            }
            // Deleted here since the source read it: keep it deleted.
            if deleted_here(&digest) && ns.exists(&digest).is_err() {
                continue;
            }
            if apply_copy(ns, copy, self.config.conflict_resolution).is_ok() {
                applied += 1;
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

#[derive(Debug, Clone)]
struct PushTask {
    ns: usize,
    pid: u16,
    target: NodeId,
    addr: SocketAddr,
    merge: bool,
    version: u64,
}

fn check_ack(r: Result<FabricMessage, crate::fabric::FabricError>) -> Result<(), ResultCode> {
    match r {
        Ok(a) => match ack_code(&a) {
            Some(0) => Ok(()),
            Some(c) => Err(ResultCode::from_u8(c as u8).unwrap_or(ResultCode::Unknown)),
            None => Err(ResultCode::Unknown),
        },
        Err(_) => Err(ResultCode::Timeout),
    }
}

/// Applies a record copy from a peer, checking what came over the network.
fn apply_copy(ns: &Namespace, copy: &RecordCopy, resolution: ConflictResolution) -> Result<bool, ResultCode> {
    let digest = Digest::from_slice(&copy.digest).ok_or(ResultCode::Parameter)?;
    let generation = u16::try_from(copy.generation).map_err(|_| ResultCode::Parameter)?;
    let stored = StoredCopy {
        digest,
        set: &copy.set,
        meta: RecordMeta { generation, void_time: copy.void_time, lut_ms: copy.lut_ms },
        image: &copy.image,
    };
    ns.apply_copy(&stored, resolution).map_err(|e| e.result_code())
}

/// Resolves `host:port` (names allowed) to its first address.
async fn resolve(endpoint: &str) -> Option<SocketAddr> {
    if let Ok(a) = endpoint.parse() {
        return Some(a);
    }
    tokio::net::lookup_host(endpoint).await.ok()?.next()
}
