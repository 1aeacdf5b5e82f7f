//! The node: its identity, its namespaces, its counters, and its cluster layer when one is
//! configured (without one, the node holds every partition itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use petrel_cluster::ClusterNode;
use petrel_storage::clock::{Clock, ClusterClock, SystemClock};
use petrel_storage::namespace::Defragmenter;
use petrel_storage::nsup::Supervisor;
use petrel_storage::{Engine, MemoryEngine, Namespace};

use crate::config::{parse_node_id, Config};
use crate::frame_reader::RequestBudget;
use crate::latency::Latencies;

/// Node-wide counters reported by `statistics`.
#[derive(Debug, Default)]
pub struct NodeCounters {
    pub client_connections: AtomicU64,
    pub client_connections_opened: AtomicU64,
    pub client_connections_closed: AtomicU64,
    pub client_connections_refused: AtomicU64,
    pub client_connections_idle_closed: AtomicU64,
    pub malformed_requests: AtomicU64,
    pub info_requests: AtomicU64,
    /// Requests this node forwarded to another node.
    pub proxied_requests: AtomicU64,
    /// Requests other nodes forwarded here.
    pub proxied_in: AtomicU64,
    /// Writes applied here whose copy to a replica failed (the client got an error).
    pub replication_failures: AtomicU64,
    pub batch_index_initiate: AtomicU64,
    /// Times a connection had to wait for the budget on bytes of requests still arriving.
    pub request_budget_waits: AtomicU64,
    /// Connections closed because a frame did not arrive in time (budget waits included).
    pub client_connections_deadline_closed: AtomicU64,
    pub scans_started: AtomicU64,
}

impl NodeCounters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// One namespace as the service sees it.
#[derive(Debug)]
pub struct ServiceNamespace {
    /// Position in the node's namespace list (the cluster layer's namespace index).
    pub index: usize,
    pub ns: Arc<Namespace>,
    pub latencies: Latencies,
    /// Outcomes of single-record client requests served here.
    pub client: crate::client_counters::ClientCounters,
}

/// Shared state of a running node.
#[derive(Debug)]
pub struct Node {
    pub config: Config,
    pub node_id: u64,
    /// The clock every namespace stamps records by: the machine's, moved ahead to follow
    /// the fastest peer heard (see [`ClusterClock`]).
    pub clock: Arc<ClusterClock>,
    /// `node_id` as clients see it: upper-case hex without leading zeros.
    pub node_name: String,
    /// The service endpoint clients are told (`service-clear-std`): the listen address, or
    /// on a wildcard listener the cluster's advertised host.
    pub service_std: String,
    /// The alternate service endpoint (`service-clear-alt`); empty = none.
    pub service_alt: String,
    pub cluster_key: u64,
    pub started: Instant,
    namespaces: Vec<ServiceNamespace>,
    by_name: HashMap<String, usize>,
    pub counters: NodeCounters,
    /// Bytes client connections may hold in requests still arriving.
    pub request_budget: RequestBudget,
    supervisors: parking_lot::Mutex<Vec<Supervisor>>,
    defragmenters: parking_lot::Mutex<Vec<Defragmenter>>,
    cluster: OnceLock<Arc<ClusterNode>>,
    /// Secondary-index definitions, cluster-wide and saved in the data directory.
    pub sindex_catalog: crate::catalog::Catalog,
    /// Background scans and queries with write ops.
    pub jobs: crate::cmd::background::Jobs,
    /// Registered Lua UDF modules.
    pub udfs: crate::udf::Udfs,
    /// This node, for work that outlives a request (background jobs); set by [`Node::set_arc`].
    this: OnceLock<std::sync::Weak<Node>>,
}

impl Node {
    /// Builds the node and its namespaces from a validated configuration.
    pub fn new(config: Config) -> Result<Node, String> {
        let node_id = if config.service.node_id.is_empty() {
            kept_node_id(&config)?
        } else {
            parse_node_id(&config.service.node_id)?
        };
        let clock = Arc::new(ClusterClock::new(Arc::new(SystemClock)));
        let mut namespaces = Vec::new();
        let mut by_name = HashMap::new();
        for (name, settings) in &config.namespace {
            let ns = match settings.device(name, &config.service.data_dir)? {
                None => Namespace::new(
                    settings.to_storage(name),
                    Engine::Memory(MemoryEngine::new()),
                    Arc::clone(&clock) as Arc<dyn Clock>,
                ),
                Some(device) => {
                    if let Some(dir) = device.files.first().and_then(|f| f.path.parent()) {
                        std::fs::create_dir_all(dir)
                            .map_err(|e| format!("namespace.{name}: {}: {e}", dir.display()))?;
                    }
                    let started = Instant::now();
                    let clock = Arc::clone(&clock) as Arc<dyn Clock>;
                    Namespace::on_device_with_clock(settings.to_storage(name), device, clock).map(|(ns, restored)| {
                        tracing::info!(
                            namespace = %name,
                            records = restored.records,
                            tombstones = restored.tombstones,
                            dropped = restored.dropped,
                            damaged_blocks = restored.scan.damaged,
                            fast = restored.fast,
                            ms = started.elapsed().as_millis() as u64,
                            "namespace restored from its device store"
                        );
                        ns
                    })
                }
            }
            .map_err(|e| format!("namespace.{name}: {e}"))?;
            by_name.insert(name.clone(), namespaces.len());
            namespaces.push(ServiceNamespace {
                index: namespaces.len(),
                ns: Arc::new(ns),
                latencies: Latencies::default(),
                client: Default::default(),
            });
        }
        let catalog_path =
            (!config.service.data_dir.as_os_str().is_empty()).then(|| config.service.data_dir.join("sindex-catalog"));
        if let Some(dir) = catalog_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("service.data_dir: {}: {e}", dir.display()))?;
        }
        let sindex_catalog = crate::catalog::Catalog::open(catalog_path)?;
        Ok(Node {
            sindex_catalog,
            jobs: Default::default(),
            udfs: crate::udf::Udfs::open(
                (!config.service.data_dir.as_os_str().is_empty()).then(|| config.service.data_dir.join("udf")),
            )?,
            this: OnceLock::new(),
            node_name: format!("{node_id:X}"),
            service_std: service_endpoint(&config),
            service_alt: alternate_endpoint(&config),
            node_id,
            clock,
            cluster_key: rand::random::<u64>() & 0x0000_ffff_ffff_ffff | 1,
            started: Instant::now(),
            namespaces,
            by_name,
            counters: NodeCounters::default(),
            request_budget: RequestBudget::new(config.service.incomplete_requests_bytes_max),
            supervisors: parking_lot::Mutex::new(Vec::new()),
            defragmenters: parking_lot::Mutex::new(Vec::new()),
            cluster: OnceLock::new(),
            config,
        })
    }

    /// Starts each namespace's supervisor thread, and a defragmentation thread for each
    /// device namespace.
    pub fn start_supervisors(&self) -> std::io::Result<()> {
        let mut sups = self.supervisors.lock();
        let mut defrag = self.defragmenters.lock();
        for s in &self.namespaces {
            sups.push(Supervisor::start(Arc::clone(&s.ns))?);
            if s.ns.device().is_some() {
                defrag.push(Defragmenter::start(Arc::clone(&s.ns))?);
            }
        }
        Ok(())
    }

    /// Stops the supervisors.
    pub fn stop_supervisors(&self) {
        for d in self.defragmenters.lock().drain(..) {
            d.stop();
        }
        for s in self.supervisors.lock().drain(..) {
            s.stop();
        }
    }

    /// At a clean shutdown, once nothing writes any more: each device namespace closes its
    /// store for writes and saves the state its next start loads instead of reading every
    /// block (a fast restart).
    pub fn save_snapshots(&self) {
        for s in self.namespaces.iter().filter(|s| s.ns.device().is_some()) {
            let started = Instant::now();
            match s.ns.save_snapshot() {
                Ok(saved) => tracing::info!(
                    namespace = s.ns.name(),
                    records = saved.records,
                    ms = started.elapsed().as_millis() as u64,
                    "namespace state saved for a fast restart"
                ),
                Err(e) => tracing::warn!(
                    namespace = s.ns.name(),
                    error = e,
                    "namespace state not saved: the next start reads the store"
                ),
            }
        }
    }

    /// Records the `Arc` this node lives in.
    pub fn set_arc(self: &Arc<Node>) {
        let _ = self.this.set(Arc::downgrade(self));
    }

    /// The `Arc` this node lives in, once [`Node::set_arc`] has run.
    pub fn arc(&self) -> Option<Arc<Node>> {
        self.this.get()?.upgrade()
    }

    pub fn namespace(&self, name: &[u8]) -> Option<&ServiceNamespace> {
        let name = std::str::from_utf8(name).ok()?;
        self.by_name.get(name).map(|i| &self.namespaces[*i])
    }

    pub fn namespaces(&self) -> &[ServiceNamespace] {
        &self.namespaces
    }

    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The cluster layer, when this node is part of a cluster.
    pub fn cluster(&self) -> Option<&Arc<ClusterNode>> {
        self.cluster.get()
    }

    /// Attaches the started cluster layer.
    pub fn set_cluster(&self, cluster: Arc<ClusterNode>) {
        let _ = self.cluster.set(cluster);
    }

    /// Generation of the partition map: it changes whenever what this node publishes in
    /// `replicas` may have changed. A node on its own never changes its map.
    pub fn partition_generation(&self) -> u64 {
        match self.cluster() {
            Some(c) => 1 + c.counters.partition_generation.load(Ordering::Relaxed),
            None => 1,
        }
    }
}

/// With a data directory, the node id kept there (made on the first start): a node started
/// again on its data is the same node, owns the same partitions, and its saved partition
/// versions mean something. Without one, a new id each start.
fn kept_node_id(config: &Config) -> Result<u64, String> {
    let dir = &config.service.data_dir;
    if dir.as_os_str().is_empty() {
        return Ok(derive_node_id(config));
    }
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_node_id(text.trim()).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = derive_node_id(config);
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            std::fs::write(&path, format!("{id:X}\n")).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The service endpoint clients and peers are told: in a cluster, the advertised host (set,
/// else the listen host, else the address routing to the seeds) with the service port; on
/// its own, the listen address.
fn service_endpoint(config: &Config) -> String {
    let listen = config.service.listen;
    if !config.cluster.enabled() {
        return listen.to_string();
    }
    match config.cluster.addresses(listen) {
        Ok(a) => format!("{}:{}", a.advertise, listen.port()),
        Err(_) => listen.to_string(),
    }
}

/// `alternate_access_address:port` (the service port when no port is set); empty = none.
fn alternate_endpoint(config: &Config) -> String {
    let s = &config.service;
    if s.alternate_access_address.is_empty() {
        return String::new();
    }
    let port = if s.alternate_access_port == 0 { s.listen.port() } else { s.alternate_access_port };
    format!("{}:{port}", s.alternate_access_address)
}

/// A node id from the port and a random salt, so two nodes on one host differ.
fn derive_node_id(config: &Config) -> u64 {
    let port = config.service.listen.port() as u64;
    let salt = rand::random::<u64>() & 0x0000_ffff_ffff_0000;
    (0xB0u64 << 48) | salt | port
}
