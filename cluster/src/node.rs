//! The cluster node itself: its settings, its state, starting and stopping it (heartbeat,
//! fabric, following views), the hooks into the service layer, and the dispatch of requests
//! that peers send over the fabric to the step that handles each one.
//!
//! The steps live beside this module, in the order a view change runs through them:
//! [`crate::exchange`], [`crate::rebalance`], [`crate::migrate`], [`crate::give_back`]; and
//! on the request path [`crate::route`], [`crate::replica`], [`crate::proxy`]. What the node
//! reports is in [`crate::report`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{Ack, FabricMessage};
use petrel_proto::{Digest, ResultCode, PARTITIONS_COUNT};
use petrel_storage::namespace::ConflictResolution;
use petrel_storage::Namespace;
use tokio::sync::{watch, Notify, Semaphore};

use crate::fabric::{Fabric, FabricError, FabricHandler, FabricTransport};
use crate::heartbeat::{Heartbeat, HeartbeatConfig};
use crate::partition_table::NodeId;
use crate::plan::Plan;
use crate::report::ClusterCounters;

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
    /// Where the partition versions of device namespaces are kept across restarts (None:
    /// nowhere, and such a node starts as holding nothing).
    pub state_dir: Option<std::path::PathBuf>,
}

/// What the service layer does for the cluster: answer requests proxied from peers, and info
/// commands every member must run.
pub trait ServiceHooks: Send + Sync + 'static {
    /// Serves a proxied request frame body; returns the answer frames.
    fn proxied(&self, body: Vec<u8>, hops: u32) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>>;
    /// Runs an info command forwarded by a peer.
    fn info(&self, line: &str) -> String;
}

/// Starts a fabric that serves peers' requests with the handler given.
pub type FabricStarter = Box<
    dyn FnOnce(
            Arc<dyn FabricHandler>,
        ) -> Pin<Box<dyn Future<Output = std::io::Result<Arc<dyn FabricTransport>>> + Send>>
        + Send,
>;

/// What a node talks to its peers with: a fabric started around the node's request handler,
/// and a heartbeat being started.
pub struct Transports {
    pub fabric: FabricStarter,
    pub heartbeat: Pin<Box<dyn Future<Output = std::io::Result<Heartbeat>> + Send>>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transports")
    }
}

/// How to reach a member.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) fabric: SocketAddr,
    pub(crate) service: String,
    /// Alternate service endpoint; empty = none.
    pub(crate) service_alt: String,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    /// Key of the newest view the heartbeat agreed on.
    pub(crate) adopted_key: u64,
    /// Key of the installed plans.
    pub(crate) key: u64,
    pub(crate) members: Vec<NodeId>,
    /// Ordered, so that whatever is sent to every member goes out in one order.
    pub(crate) addrs: BTreeMap<NodeId, Member>,
    /// Per namespace, in the node's namespace order; empty until the first view.
    pub(crate) plans: Vec<Plan>,
    /// Digests deleted on partitions this node is still receiving, so that a migration
    /// batch cannot bring them back.
    pub(crate) tombstones: HashMap<(usize, u16), HashSet<Digest>>,
    /// Partitions (namespace, partition) this node, their acting master, is handing to the
    /// table's master with the last batch of a migration: it takes no writes for them until
    /// it knows the new master took over, so that two nodes never take writes for one
    /// partition at once (the new master starts as soon as the last batch is in).
    pub(crate) handoffs: HashSet<(usize, u16)>,
}

/// Per cluster key: per node, its versions per namespace (node's namespace order).
pub(crate) type ExchangeBook = BTreeMap<u64, crate::exchange::VersionBook>;

/// Copies sent in the background at once (writes with commit level "master"). Past this a
/// write waits for its own copies, which slows writers down instead of queueing copies
/// without bound.
pub(crate) const BACKGROUND_COPIES_MAX: usize = 4096;

/// This node's cluster layer.
pub struct ClusterNode {
    pub(crate) me: NodeId,
    /// This node, weakly, for the tasks its methods start.
    pub(crate) this: Weak<ClusterNode>,
    pub(crate) config: ClusterConfig,
    pub(crate) namespaces: Vec<Arc<Namespace>>,
    pub(crate) ns_index: HashMap<String, usize>,
    pub(crate) state: RwLock<State>,
    /// Per namespace, per partition: the version of the copy held here (0 = none complete).
    pub(crate) versions: Mutex<Vec<Vec<u64>>>,
    /// Per namespace: its versions were read back at start and no plan was installed since.
    pub(crate) restored: Mutex<Vec<bool>>,
    /// Restored copies kept for partitions this node owns, until checked against a live one.
    pub(crate) reconciling: crate::reconcile::Reconciling,
    pub(crate) exchanges: Mutex<ExchangeBook>,
    pub(crate) exchange_arrived: Notify,
    /// Woken at each plan installed (a `Notify`, not a `watch`: its waiters wake in the order
    /// they came, so that a simulated run replays).
    pub(crate) installed: Notify,
    /// Migration work may be waiting (a partition completed, a push failed).
    pub(crate) work: Notify,
    pub(crate) background_copies: Arc<Semaphore>,
    /// Per namespace, per partition: writes whose copies are still on their way.
    pub(crate) copies_in_flight: Vec<Arc<[std::sync::atomic::AtomicU32]>>,
    fabric: OnceLock<Arc<dyn FabricTransport>>,
    pub(crate) heartbeat: Mutex<Option<Heartbeat>>,
    hooks: OnceLock<Weak<dyn ServiceHooks>>,
    pub(crate) stop: watch::Sender<bool>,
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

/// An answer carrying only a result code.
pub(crate) fn ack(code: ResultCode) -> Body {
    Body::Ack(Ack { result_code: code.code() as u32 })
}

/// The result code of an answer, if it is an [`Ack`].
pub(crate) fn ack_code(answer: &FabricMessage) -> Option<u32> {
    match &answer.body {
        Some(Body::Ack(a)) => Some(a.result_code),
        _ => None,
    }
}

/// The result code an answer carries, if it is one this build knows.
pub(crate) fn result_code(code: u32) -> Option<ResultCode> {
    u8::try_from(code).ok().and_then(ResultCode::from_u8)
}

/// Whether a request was answered "done"; otherwise the result code it failed with (a lost
/// request counts as a timeout).
pub(crate) fn ack_result(r: Result<FabricMessage, FabricError>) -> Result<(), ResultCode> {
    match r {
        Ok(a) => match ack_code(&a) {
            Some(0) => Ok(()),
            Some(c) => Err(result_code(c).unwrap_or(ResultCode::Unknown)),
            None => Err(ResultCode::Unknown),
        },
        Err(_) => Err(ResultCode::Timeout),
    }
}

impl ClusterNode {
    /// Binds the fabric and heartbeat ports and starts following the cluster.
    pub async fn start(config: ClusterConfig, namespaces: Vec<Arc<Namespace>>) -> std::io::Result<Arc<ClusterNode>> {
        let listen = config.fabric_listen;
        let heartbeat = config.heartbeat.clone();
        let transports = Transports {
            fabric: Box::new(move |handler| {
                Box::pin(async move { Ok(Fabric::start(listen, handler).await? as Arc<dyn FabricTransport>) })
            }),
            heartbeat: Box::pin(async move { Heartbeat::start(heartbeat).await }),
        };
        ClusterNode::start_with(config, namespaces, transports).await
    }

    /// Starts a node on the transports given: the real ones ([`ClusterNode::start`]) or a
    /// simulated network's (`crate::sim`).
    pub async fn start_with(
        config: ClusterConfig,
        namespaces: Vec<Arc<Namespace>>,
        transports: Transports,
    ) -> std::io::Result<Arc<ClusterNode>> {
        let ns_index = namespaces.iter().enumerate().map(|(i, n)| (n.name().to_string(), i)).collect();
        let ns_count = namespaces.len();
        let mut versions = vec![vec![0u64; PARTITIONS_COUNT]; namespaces.len()];
        let mut restored = vec![false; namespaces.len()];
        // Namespaces whose records outlive the process report the versions they held.
        let persistent: Vec<usize> = (0..namespaces.len()).filter(|&i| namespaces[i].device().is_some()).collect();
        if let Some(dir) = &config.state_dir {
            let names: Vec<&str> = persistent.iter().map(|&i| namespaces[i].name()).collect();
            for (&i, saved) in persistent.iter().zip(crate::saved::load(dir, &names)) {
                if let Some(v) = saved {
                    let me = config.heartbeat.node_id;
                    versions[i] = v.into_iter().map(|v| crate::plan::restored_version(v, me)).collect();
                    restored[i] = true;
                }
            }
        }
        let node = Arc::new_cyclic(|this| ClusterNode {
            me: config.heartbeat.node_id,
            this: this.clone(),
            config: config.clone(),
            namespaces,
            ns_index,
            state: RwLock::new(State::default()),
            versions: Mutex::new(versions),
            restored: Mutex::new(restored),
            reconciling: Default::default(),
            exchanges: Mutex::new(BTreeMap::new()),
            exchange_arrived: Notify::new(),
            installed: Notify::new(),
            work: Notify::new(),
            background_copies: Arc::new(Semaphore::new(BACKGROUND_COPIES_MAX)),
            copies_in_flight: (0..ns_count)
                .map(|_| (0..PARTITIONS_COUNT).map(|_| std::sync::atomic::AtomicU32::new(0)).collect())
                .collect(),
            fabric: OnceLock::new(),
            heartbeat: Mutex::new(None),
            hooks: OnceLock::new(),
            stop: watch::channel(false).0,
            counters: ClusterCounters::default(),
        });
        let fabric = (transports.fabric)(Arc::new(FabricSide(Arc::downgrade(&node)))).await?;
        let _ = node.fabric.set(fabric);
        let heartbeat = transports.heartbeat.await?;
        let views = heartbeat.watch();
        *node.heartbeat.lock() = Some(heartbeat);
        tokio::spawn(Arc::clone(&node).follow_views(views, node.stop.subscribe()));
        if let (Some(dir), false) = (config.state_dir.clone(), persistent.is_empty()) {
            tokio::spawn(Arc::clone(&node).keep_versions_saved(dir, persistent));
        }
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

    pub(crate) fn fabric(&self) -> &Arc<dyn FabricTransport> {
        self.fabric.get().expect("the fabric starts before anything uses it")
    }

    pub(crate) fn hooks(&self) -> Option<Arc<dyn ServiceHooks>> {
        self.hooks.get().and_then(Weak::upgrade)
    }

    /// Key of the installed plans.
    pub(crate) fn current_key(&self) -> u64 {
        self.state.read().key
    }

    /// Fabric addresses of the other members, by node.
    pub(crate) fn peer_addrs(&self) -> Vec<(NodeId, SocketAddr)> {
        let st = self.state.read();
        st.members.iter().filter(|&&n| n != self.me).filter_map(|n| st.addrs.get(n).map(|m| (*n, m.fabric))).collect()
    }

    /// Sends `body` to each target at once and waits for every answer (each bounded by
    /// `timeout`); `read` turns each answer, or the failure to get one, into what the caller
    /// wants.
    pub(crate) async fn request_each<T: Send + 'static>(
        &self,
        targets: &[(NodeId, SocketAddr)],
        body: Body,
        timeout: Duration,
        read: fn(Result<FabricMessage, FabricError>) -> T,
    ) -> Vec<(NodeId, T)> {
        let fabric = self.fabric();
        if let [(node, addr)] = targets {
            // The usual case (replication factor 2): no task to spawn.
            return vec![(*node, read(fabric.request(*addr, body, timeout).await))];
        }
        let mut set = tokio::task::JoinSet::new();
        for &(node, addr) in targets {
            let (fabric, body) = (Arc::clone(fabric), body.clone());
            set.spawn(async move { (node, read(fabric.request(addr, body, timeout).await)) });
        }
        let mut out = Vec::with_capacity(targets.len());
        while let Some(r) = set.join_next().await {
            if let Ok(one) = r {
                out.push(one);
            }
        }
        out
    }

    /// Hands a peer's request to the step it belongs to.
    async fn on_request(self: Arc<Self>, request: FabricMessage) -> Body {
        match request.body {
            Some(Body::ReplicaWrite(w)) => self.on_replica_write(w),
            Some(Body::MigrateRecords(m)) => self.on_migrate(m),
            Some(Body::MigrateOffer(o)) => self.on_migrate_offer(o),
            Some(Body::PartitionComplete(c)) => self.on_partition_complete(&c),
            Some(Body::Exchange(e)) => self.on_exchange(e),
            Some(Body::Proxy(p)) => self.on_proxy(p).await,
            Some(Body::Info(cmd)) => self.on_info(&cmd),
            _ => ack(ResultCode::Parameter),
        }
    }
}
