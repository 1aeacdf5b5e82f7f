//! One simulated run: the nodes, the clients, the fault schedule and the checks (see the
//! module above for what is checked).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::{Digest, KeyRef};
use petrel_storage::clock::{Clock, ClusterClock};
use petrel_storage::namespace::ConflictResolution;
use petrel_storage::value::ParticleRef;
use petrel_storage::{
    Engine, MemoryEngine, Namespace, NamespaceConfig, Op, OperateRequest, ReadSelect, StorageError, Value, WritePolicy,
};

use super::machine::{Disk, SimClock};
use super::net::{self, Rng, SimNet, Weather};
use super::watch;
use crate::heartbeat::{Heartbeat, HeartbeatConfig};
use crate::membership::{MembershipConfig, NodeEndpoints};
use crate::node::{ClusterConfig, ClusterNode, Transports};
use crate::replica::{CommitLevel, WriteCopy};
use crate::route::Route;

const NODES: usize = 5;
const REPLICATION_FACTOR: u8 = 2;
/// Virtual milliseconds per step.
const STEP_MS: u64 = 10;
const KEYS: u64 = 64;
const CLIENTS: u64 = 4;
/// How long a client waits for an answer (the op goes on without it, as on a server).
const CLIENT_TIMEOUT_MS: u64 = 2_000;
/// After the faults: how long every node has to install one plan and settle.
const SETTLE_MS_MAX: u64 = 90_000;
/// How long two nodes that hear each other may both take writes for one partition (a view
/// change in flight).
const DUAL_MASTER_MS_MAX: u64 = 1_000;
/// Steps between the checks of nodes that hear each other.
const CONNECTED_CHECK_STEPS: usize = 5;
/// Steps between the checks of masters.
const MASTER_CHECK_STEPS: usize = 100;
const SET: &[u8] = b"sim";

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub steps: usize,
    pub acked: u64,
    pub failed: u64,
    pub in_doubt: u64,
    pub crashes: u64,
    pub pauses: u64,
    pub splits: u64,
    pub one_way_cuts: u64,
    pub clock_jumps: u64,
    pub messages: u64,
    /// Records a restarted node's restored copy already held current, so that its
    /// partitions' migrations did not send them (device runs).
    pub records_kept_at_rejoin: u64,
    /// Virtual milliseconds the run took, settling included.
    pub virtual_ms: u64,
}

/// Where the nodes keep their records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// In memory: a crashed node comes back empty.
    #[default]
    Memory,
    /// On a device store (on each machine's disk, kept across crashes): a crashed node comes
    /// back on what it wrote (a cold restart), and the schedule also crashes every node at
    /// once.
    Device,
}

/// Runs seed `seed` for `steps` steps with records in memory; an error names the first
/// check that failed.
pub fn run(seed: u64, steps: usize) -> Result<Report, String> {
    run_on(seed, steps, Storage::Memory)
}

/// [`run`], with records kept as `storage` says.
pub fn run_on(seed: u64, steps: usize, storage: Storage) -> Result<Report, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())?;
    let out = rt.block_on(async move {
        let world = World::new(seed, storage);
        let r = world.run(steps).await;
        world.stop_all().await;
        r
    });
    // Tasks still waiting on the network (lost messages) end with the runtime.
    rt.shutdown_background();
    out
}

/// Most a clock is stepped away from true time, either way: well past the node timeout,
/// so that a clock behind by more than a split's failover is tried.
const CLOCK_OFFSET_MS_MAX: u64 = 5_000;
/// Chance per step (per million) that one machine's clock is stepped.
const CLOCK_JUMP_PER_MILLION: u64 = 500;

/// What the clients know of one key.
#[derive(Debug, Default, Clone)]
struct KeyLog {
    /// The last acknowledged value.
    acked: Option<i64>,
    /// Values written after it whose outcome is unknown.
    doubt: Vec<i64>,
}

/// What is in progress now, so that one disruption happens at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Disruption {
    None,
    Crashed {
        node: usize,
        until_ms: u64,
    },
    /// Every node killed at once (a power cut, a `kill -9` on all): only with devices.
    AllCrashed {
        until_ms: u64,
    },
    Paused {
        node: usize,
        until_ms: u64,
    },
    Split {
        until_ms: u64,
    },
    OneWay {
        from: usize,
        to: usize,
        until_ms: u64,
    },
}

struct World {
    seed: u64,
    net: Arc<SimNet>,
    rng: Mutex<Rng>,
    nodes: Mutex<Vec<Option<Arc<ClusterNode>>>>,
    /// Each machine's wall clock; a restarted node keeps its machine's.
    clocks: Vec<Arc<SimClock>>,
    /// Draws the clock jumps, apart from `rng` so that they leave the other faults' schedule
    /// as it was.
    clock_rng: Mutex<Rng>,
    /// Each machine's disk, when records are stored on devices ([`Storage::Device`]).
    disks: Option<Vec<Disk>>,
    keys: Mutex<Vec<KeyLog>>,
    /// Per node: whether clients reach it (false for the side of a split they are not on).
    client_reach: Mutex<Vec<bool>>,
    next_value: AtomicU64,
    stop_clients: AtomicBool,
    /// A cut (split or one-way) healed and the sides have not merged yet.
    healing_cut: AtomicBool,
    /// Until when a healed cut may still split the cluster: a node cut off just past the node
    /// timeout may decide a view of its own a quantum after the heal.
    healing_until_ms: AtomicU64,
    /// The partitions of the clients' keys.
    client_pids: Vec<u16>,
    report: Mutex<Report>,
    started: tokio::time::Instant,
}

/// Whether to print what happens (`PETREL_SIM_TRACE=1`), for replaying a failing seed.
fn tracing_on() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("PETREL_SIM_TRACE").is_some())
}

macro_rules! trace {
    ($world:expr, $($arg:tt)*) => {
        if tracing_on() {
            eprintln!("{:>7} ms  {}", $world.now_ms(), format!($($arg)*));
        }
    };
}

pub(super) fn node_id(i: usize) -> u64 {
    0xA000 + i as u64 * 0x11
}

pub(super) fn digest(k: u64) -> Digest {
    Digest::compute(SET, KeyRef::Int(k as i64))
}

impl World {
    fn new(seed: u64, storage: Storage) -> Arc<World> {
        Arc::new(World {
            seed,
            net: SimNet::new(NODES, seed),
            rng: Mutex::new(Rng::new(seed)),
            nodes: Mutex::new(vec![None; NODES]),
            clocks: (0..NODES).map(|_| Arc::new(SimClock::new())).collect(),
            clock_rng: Mutex::new(Rng::new(seed ^ 0xC10C_C10C_C10C_C10C)),
            disks: (storage == Storage::Device).then(|| {
                (0..NODES).map(|i| Disk::new(seed, i).expect("a state directory for the simulated node")).collect()
            }),
            keys: Mutex::new(vec![KeyLog::default(); KEYS as usize]),
            client_reach: Mutex::new(vec![true; NODES]),
            next_value: AtomicU64::new(1),
            stop_clients: AtomicBool::new(false),
            healing_cut: AtomicBool::new(false),
            healing_until_ms: AtomicU64::new(0),
            client_pids: {
                let mut pids: Vec<u16> = (0..KEYS).map(|k| digest(k).partition_id()).collect();
                pids.sort_unstable();
                pids.dedup();
                pids
            },
            report: Mutex::new(Report { seed, ..Report::default() }),
            started: tokio::time::Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn node(&self, i: usize) -> Option<Arc<ClusterNode>> {
        self.nodes.lock()[i].clone()
    }

    /// Starts node `i` afresh (an empty namespace: memory namespaces keep nothing).
    async fn start_node(&self, i: usize) -> Result<(), String> {
        let life = self.net.bring_up(i);
        let mut ns_config = NamespaceConfig::new("test");
        ns_config.replication_factor = REPLICATION_FACTOR;
        ns_config.sprigs_per_partition = 1;
        // The node's clock follows its peers' from its start; its machine's stays stepped.
        let clock = Arc::new(ClusterClock::new(Arc::clone(&self.clocks[i]) as Arc<dyn Clock>));
        let ns_clock = Arc::clone(&clock) as Arc<dyn Clock>;
        let disk = self.disks.as_ref().map(|d| &d[i]);
        // On a device, the node restarts on what its earlier lives wrote (a cold restart).
        let ns = match disk {
            None => Namespace::new(ns_config, Engine::Memory(MemoryEngine::new()), ns_clock)?,
            Some(disk) => Namespace::on_media(ns_config, disk.device_config(), vec![disk.medium()], ns_clock)?.0,
        };
        let heartbeat = HeartbeatConfig {
            node_id: node_id(i),
            listen: SocketAddr::from((net::node_ip(i), net::HEARTBEAT_PORT)),
            advertise: net::heartbeat_endpoint(i),
            seeds: (0..NODES).map(net::heartbeat_endpoint).collect(),
            membership: MembershipConfig::new("sim"),
            endpoints: NodeEndpoints {
                fabric: net::fabric_addr(i).to_string(),
                service: format!("{}:3000", net::node_ip(i)),
                service_alt: String::new(),
            },
            clock: Some(clock),
        };
        let config = ClusterConfig {
            heartbeat: heartbeat.clone(),
            fabric_listen: net::fabric_addr(i),
            // The default, what users run; `PETREL_SIM_CONFLICT=generation` for the other.
            conflict_resolution: if std::env::var("PETREL_SIM_CONFLICT").as_deref() == Ok("generation") {
                ConflictResolution::Generation
            } else {
                ConflictResolution::default()
            },
            migrate_parallelism: 4,
            state_dir: disk.map(|d| d.state_dir.clone()),
        };
        let (fabric, pulses) = (self.net.fabric_for(i, life), self.net.pulses_for(i, life));
        let running = self.net.run_gate(i);
        let random = self.rng.lock().next_u64();
        let net = Arc::clone(&self.net);
        let seeds = Arc::new(Mutex::new(heartbeat.seeds.clone()));
        let listen = heartbeat.listen;
        let transports = Transports {
            fabric: Box::new(move |handler| {
                net.register(i, life, Some(handler), None);
                Box::pin(async move { Ok(fabric) })
            }),
            heartbeat: Box::pin(async move {
                Ok(Heartbeat::start_on(heartbeat, listen, seeds, pulses, random, Some(running)))
            }),
        };
        let node = ClusterNode::start_with(config, vec![Arc::new(ns)], transports).await.map_err(|e| e.to_string())?;
        let inbox = node.heartbeat.lock().as_ref().map(Heartbeat::inbox);
        self.net.register(i, life, None, inbox);
        self.nodes.lock()[i] = Some(node);
        Ok(())
    }

    async fn crash(&self, i: usize) {
        self.net.bring_down(i);
        let node = self.nodes.lock()[i].take();
        if let Some(node) = node {
            self.report.lock().records_kept_at_rejoin += node.counters.migrate_records_skipped.load(Ordering::Relaxed);
            node.stop().await;
        }
    }

    async fn stop_all(&self) {
        self.stop_clients.store(true, Ordering::Relaxed);
        for i in 0..NODES {
            self.net.set_running(i, true);
            self.crash(i).await;
        }
    }

    async fn run(self: &Arc<Self>, steps: usize) -> Result<Report, String> {
        for i in 0..NODES {
            self.start_node(i).await?;
        }
        // The cluster forms before the load starts.
        self.wait_settled(SETTLE_MS_MAX).await.map_err(|e| format!("seed {}: forming: {e}", self.seed))?;
        let clients: Vec<_> = (0..CLIENTS).map(|c| tokio::spawn(Arc::clone(self).client(c))).collect();
        let mut disruption = Disruption::None;
        let mut watched = Vec::new();
        let mut dual_since = BTreeMap::new();
        for step in 0..steps {
            disruption = self.schedule(disruption).await?;
            tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
            self.watch_key(&mut watched);
            if step % CONNECTED_CHECK_STEPS == 0 {
                self.check_connected_masters(&mut dual_since)
                    .map_err(|e| format!("seed {} step {step}: {e}", self.seed))?;
            }
            if step % MASTER_CHECK_STEPS == 0 {
                self.check_masters().map_err(|e| format!("seed {} step {step}: {e}", self.seed))?;
            }
        }
        // Quiescence: every fault healed, every node up and running.
        self.end_disruption(disruption).await?;
        self.net.heal();
        self.net.set_weather(Weather { delay_ms_max: 2, loss_per_million: 0, duplicate_per_million: 0 });
        self.stop_clients.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = tokio::time::timeout(Duration::from_millis(CLIENT_TIMEOUT_MS * 4), c).await;
        }
        self.wait_settled(SETTLE_MS_MAX).await.map_err(|e| format!("seed {}: after the faults: {e}", self.seed))?;
        self.client_reach.lock().iter_mut().for_each(|r| *r = true);
        self.wait_copies_landed(SETTLE_MS_MAX).await.map_err(|e| format!("seed {}: at the end: {e}", self.seed))?;
        self.check_masters().map_err(|e| format!("seed {}: at the end: {e}", self.seed))?;
        self.check_records().map_err(|e| format!("seed {}: at the end: {e}", self.seed))?;
        let mut report = self.report.lock().clone();
        for node in self.nodes.lock().iter().flatten() {
            report.records_kept_at_rejoin += node.counters.migrate_records_skipped.load(Ordering::Relaxed);
        }
        report.steps = steps;
        report.messages = self.net.delivered();
        report.virtual_ms = self.now_ms();
        Ok(report)
    }

    /// Decides this step's faults: the network's weather now and then, and at most one
    /// disruption at a time, started only on a settled cluster.
    async fn schedule(self: &Arc<Self>, current: Disruption) -> Result<Disruption, String> {
        let now = self.now_ms();
        let (weather, draw) = {
            let mut rng = self.rng.lock();
            let weather = rng.chance(2_000).then(|| match rng.below(4) {
                0 => Weather { delay_ms_max: 2, loss_per_million: 0, duplicate_per_million: 0 },
                1 => Weather { delay_ms_max: 40, loss_per_million: 0, duplicate_per_million: 10_000 },
                2 => Weather { delay_ms_max: 10, loss_per_million: 30_000, duplicate_per_million: 20_000 },
                _ => Weather { delay_ms_max: 120, loss_per_million: 10_000, duplicate_per_million: 0 },
            });
            (weather, rng.next_u64())
        };
        if let Some(w) = weather {
            trace!(self, "weather {w:?}");
            self.net.set_weather(w);
        }
        self.maybe_step_a_clock();
        let due = match current {
            Disruption::None => false,
            Disruption::Crashed { until_ms, .. }
            | Disruption::AllCrashed { until_ms }
            | Disruption::Paused { until_ms, .. }
            | Disruption::Split { until_ms }
            | Disruption::OneWay { until_ms, .. } => now >= until_ms,
        };
        if due {
            trace!(self, "end {current:?}");
            self.end_disruption(current).await?;
            return Ok(Disruption::None);
        }
        let start = draw % 1_000 < 15;
        let restricted = self.client_reach.lock().iter().any(|r| !r) || self.healing_cut.load(Ordering::Relaxed);
        // `settled` looks at every partition of every node: only when it matters.
        if current != Disruption::None || !(start || restricted) || !self.settled() {
            return Ok(current);
        }
        self.client_reach.lock().iter_mut().for_each(|r| *r = true);
        self.healing_cut.store(false, Ordering::Relaxed);
        if !start {
            return Ok(current);
        }
        let started = self.start_disruption(now).await;
        trace!(self, "start {started:?}, clients reach {:?} ({})", self.client_reach.lock(), self.describe());
        Ok(started)
    }

    /// Now and then steps one machine's wall clock to a new offset from true time, forward
    /// or back, at any moment (splits, pauses and crashes included).
    fn maybe_step_a_clock(&self) {
        let mut rng = self.clock_rng.lock();
        if !rng.chance(CLOCK_JUMP_PER_MILLION) {
            return;
        }
        let node = rng.below(NODES as u64) as usize;
        let offset_ms = rng.below(2 * CLOCK_OFFSET_MS_MAX + 1) as i64 - CLOCK_OFFSET_MS_MAX as i64;
        self.clocks[node].offset_ms.store(offset_ms, Ordering::Relaxed);
        self.report.lock().clock_jumps += 1;
        trace!(self, "clock of n{node} stepped to {offset_ms:+} ms");
    }

    async fn start_disruption(&self, now: u64) -> Disruption {
        let d = self.draw_disruption(now);
        match d {
            Disruption::Crashed { node, .. } => self.crash(node).await,
            Disruption::AllCrashed { .. } => {
                for node in 0..NODES {
                    self.crash(node).await;
                }
            }
            _ => {}
        }
        d
    }

    /// Draws the next disruption and starts it (a crash is left to the caller).
    fn draw_disruption(&self, now: u64) -> Disruption {
        let mut rng = self.rng.lock();
        let node = rng.below(NODES as u64) as usize;
        let mut report = self.report.lock();
        // A whole-cluster crash only where records outlive it; the memory runs' schedules
        // stay as they were.
        match rng.below(if self.disks.is_some() { 5 } else { 4 }) {
            0 => {
                report.crashes += 1;
                Disruption::Crashed { node, until_ms: now + 200 + rng.below(4_000) }
            }
            4 => {
                report.crashes += NODES as u64;
                Disruption::AllCrashed { until_ms: now + 200 + rng.below(4_000) }
            }
            1 => {
                report.pauses += 1;
                // Under the node timeout (1.5 s), around it, and well past it (3 s, 10 s).
                let ms = [700, 1_400, 1_700, 3_000, 10_000][rng.below(5) as usize];
                self.net.set_running(node, false);
                Disruption::Paused { node, until_ms: now + ms }
            }
            2 => {
                report.splits += 1;
                // A random cut into two sides; clients on one of them.
                let mut side = [false; NODES];
                while side.iter().all(|&s| s) || side.iter().all(|&s| !s) {
                    side.iter_mut().for_each(|s| *s = rng.chance(500_000));
                }
                let clients_side = rng.chance(500_000);
                for a in 0..NODES {
                    for b in 0..NODES {
                        if side[a] != side[b] {
                            self.net.set_link(a, b, false);
                        }
                    }
                }
                *self.client_reach.lock() = side.iter().map(|&s| s == clients_side).collect();
                Disruption::Split { until_ms: now + 1_000 + rng.below(8_000) }
            }
            _ => {
                report.one_way_cuts += 1;
                let to = (node + 1 + rng.below(NODES as u64 - 1) as usize) % NODES;
                self.net.set_link(node, to, false);
                Disruption::OneWay { from: node, to, until_ms: now + 500 + rng.below(5_000) }
            }
        }
    }

    async fn end_disruption(&self, d: Disruption) -> Result<(), String> {
        if d != Disruption::None {
            trace!(self, "healed: {d:?}");
        }
        match d {
            Disruption::None => {}
            Disruption::Crashed { node, .. } => self.start_node(node).await?,
            Disruption::AllCrashed { .. } => {
                for node in 0..NODES {
                    self.start_node(node).await?;
                }
            }
            Disruption::Paused { node, .. } => self.net.set_running(node, true),
            // Clients stay on their side until the sides merged: a write to the other side
            // before that is a write on both sides, which AP mode cannot keep.
            Disruption::Split { .. } => {
                self.net.heal();
                self.cut_healed();
            }
            Disruption::OneWay { from, to, .. } => {
                self.net.set_link(from, to, true);
                self.cut_healed();
            }
        }
        Ok(())
    }

    fn cut_healed(&self) {
        self.healing_cut.store(true, Ordering::Relaxed);
        let quantum_ms = MembershipConfig::new("sim").quantum_ms;
        self.healing_until_ms.store(self.now_ms() + 2 * quantum_ms, Ordering::Relaxed);
    }

    /// Every node up, running and reachable, all with one installed plan of a view of all
    /// of them, and nothing left to migrate.
    fn settled(&self) -> bool {
        let nodes = self.nodes.lock();
        let mut key = None;
        for (i, n) in nodes.iter().enumerate() {
            let Some(n) = n else { return false };
            if !self.net.is_running(i) {
                return false;
            }
            let st = n.state.read();
            if st.key == 0 || st.adopted_key != st.key || st.members.len() != NODES || st.plans.is_empty() {
                return false;
            }
            if *key.get_or_insert(st.key) != st.key {
                return false;
            }
        }
        if !(0..NODES).all(|a| (0..NODES).all(|b| self.net.link(a, b))) {
            return false;
        }
        nodes.iter().flatten().all(|n| n.state.read().plans.iter().all(|p| p.rows.iter().all(|r| r.is_settled())))
    }

    async fn wait_settled(&self, limit_ms: u64) -> Result<(), String> {
        let deadline = self.now_ms() + limit_ms;
        while !self.settled() {
            if self.now_ms() >= deadline {
                return Err(format!("not settled within {limit_ms} ms: {}", self.describe()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits (bounded) until no node has copies on their way or repairs running.
    async fn wait_copies_landed(&self, limit_ms: u64) -> Result<(), String> {
        let deadline = self.now_ms() + limit_ms;
        loop {
            let busy = self.nodes.lock().iter().flatten().any(|n| n.copies_busy());
            if !busy {
                return Ok(());
            }
            if self.now_ms() >= deadline {
                return Err(format!("copies still on their way after {limit_ms} ms"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn describe(&self) -> String {
        watch::describe(&self.nodes.lock())
    }

    /// With `PETREL_SIM_WATCH=<key>` (and tracing on): prints each node's installed key,
    /// plan row and copy of that key whenever one of them changes.
    fn watch_key(&self, last: &mut Vec<String>) {
        let nodes = self.nodes.lock().clone();
        let Some(now) = watch::watched_key(&nodes, &self.net) else { return };
        for (i, line) in now.iter().enumerate() {
            if last.get(i) != Some(line) {
                trace!(self, "watch {line}");
            }
        }
        *last = now;
    }

    /// Two running nodes that hear each other (links up both ways) never both take writes
    /// for a partition the clients write for longer than [`DUAL_MASTER_MS_MAX`]: a view change
    /// reaches every member within a few heartbeats, while a node that wrongly formed a
    /// cluster of its own (after a pause) or was left out of a view (at a join) takes writes
    /// beside the others for a quantum or more. Nodes on two sides of a cut are not compared.
    fn check_connected_masters(&self, since: &mut BTreeMap<(u16, usize, usize), u64>) -> Result<(), String> {
        if self.healing_cut.load(Ordering::Relaxed) || self.now_ms() < self.healing_until_ms.load(Ordering::Relaxed) {
            // Two clusters formed on the two sides of a cut take writes until they merge, a
            // quantum or two after it heals: AP by design (clients stay on one side).
            since.clear();
            return Ok(());
        }
        let nodes = self.nodes.lock().clone();
        let now = self.now_ms();
        let mut seen = Vec::new();
        for &pid in &self.client_pids {
            let masters: Vec<usize> = (0..NODES)
                .filter(|&i| self.net.is_running(i))
                .filter(|&i| nodes[i].as_ref().is_some_and(|n| takes_writes(n, pid)))
                .collect();
            for (x, &a) in masters.iter().enumerate() {
                for &b in &masters[x + 1..] {
                    if self.net.link(a, b) && self.net.link(b, a) {
                        let start = *since.entry((pid, a, b)).or_insert(now);
                        if now - start > DUAL_MASTER_MS_MAX {
                            return Err(format!(
                                "n{a} and n{b} hear each other and both took writes for partition {pid} for {} ms ({})",
                                now - start,
                                self.describe()
                            ));
                        }
                        seen.push((pid, a, b));
                    }
                }
            }
        }
        since.retain(|k, _| seen.contains(k));
        Ok(())
    }

    /// Among running nodes holding one cluster key, at most one takes writes for each
    /// partition.
    fn check_masters(&self) -> Result<(), String> {
        let nodes = self.nodes.lock().clone();
        let mut by_key: BTreeMap<u64, Vec<(usize, &Arc<ClusterNode>)>> = BTreeMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if let Some(n) = n.as_ref().filter(|_| self.net.is_running(i)) {
                let st = n.state.read();
                if st.key != 0 && st.adopted_key == st.key {
                    by_key.entry(st.key).or_default().push((i, n));
                }
            }
        }
        for (key, group) in by_key {
            if group.len() < 2 {
                continue;
            }
            for pid in 0..petrel_proto::PARTITIONS_COUNT as u16 {
                let masters: Vec<usize> =
                    group.iter().filter(|(_, n)| n.route(0, pid, true) == Route::Local).map(|(i, _)| *i).collect();
                if masters.len() > 1 {
                    let rows: Vec<String> =
                        group.iter().map(|(i, n)| format!("n{i}: {:?}", n.state.read().plans[0].row(pid))).collect();
                    return Err(format!("key {key:X}: partition {pid} takes writes on nodes {masters:?}: {rows:?}"));
                }
            }
        }
        Ok(())
    }

    /// Every owner holds the same copy of each record, and it is the last acknowledged value
    /// or a later one in doubt.
    fn check_records(&self) -> Result<(), String> {
        let nodes = self.nodes.lock().clone();
        let keys = self.keys.lock().clone();
        let any = nodes.iter().flatten().next().ok_or("no node")?;
        for (k, log) in keys.iter().enumerate() {
            let d = digest(k as u64);
            let owners = {
                let st = any.state.read();
                st.plans[0].row(d.partition_id()).owners.clone()
            };
            let mut values = Vec::new();
            for owner in &owners {
                let i = (0..NODES).find(|&i| node_id(i) == *owner).ok_or("an owner that is no node")?;
                let node = nodes[i].as_ref().ok_or("an owner is down")?;
                values.push((i, read_value(&node.namespaces[0], &d)?));
            }
            let first = values[0].1;
            if values.iter().any(|(_, v)| *v != first) {
                let metas: Vec<String> = values
                    .iter()
                    .map(|(i, _)| {
                        let n = nodes[*i].as_ref().expect("an owner up");
                        let meta = n.namespaces[0].exists(&d).ok();
                        let row = n.state.read().plans[0].row(d.partition_id()).clone();
                        format!("n{i}: {meta:?} {row:?}")
                    })
                    .collect();
                return Err(format!("key {k}: the owners' copies differ: {values:?}: {metas:?}"));
            }
            let ok = first == log.acked || first.is_some_and(|v| log.doubt.contains(&v));
            if !ok {
                return Err(format!(
                    "key {k}: holds {first:?}; last acknowledged {:?}, in doubt {:?}",
                    log.acked, log.doubt
                ));
            }
        }
        Ok(())
    }

    /// One client: writes its keys one after another through the node it reaches, as a smart
    /// client would (to the master; once more to the master the node names).
    async fn client(self: Arc<Self>, c: u64) {
        let mut rng = Rng::new(self.seed ^ ((c + 1) * 0x1234_5678_9abc));
        while !self.stop_clients.load(Ordering::Relaxed) {
            let k = c + CLIENTS * rng.below(KEYS / CLIENTS);
            let value = self.next_value.fetch_add(1, Ordering::Relaxed) as i64;
            let entry = rng.below(NODES as u64) as usize;
            let world = Arc::clone(&self);
            let op = tokio::spawn(async move { world.write(entry, k, value).await });
            let outcome = match tokio::time::timeout(Duration::from_millis(CLIENT_TIMEOUT_MS), op).await {
                Ok(Ok(outcome)) => outcome,
                _ => Outcome::InDoubt,
            };
            trace!(self, "client {c}: key {k} = {value} via n{entry}: {outcome:?}");
            {
                let mut keys = self.keys.lock();
                let log = &mut keys[k as usize];
                let mut report = self.report.lock();
                match outcome {
                    Outcome::Acked => {
                        report.acked += 1;
                        *log = KeyLog { acked: Some(value), doubt: Vec::new() };
                    }
                    Outcome::Failed => report.failed += 1,
                    Outcome::InDoubt => {
                        report.in_doubt += 1;
                        log.doubt.push(value);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1 + rng.below(5))).await;
        }
    }

    /// One write of `value` to key `k`, entering at node `entry`.
    async fn write(&self, entry: usize, k: u64, value: i64) -> Outcome {
        let d = digest(k);
        let pid = d.partition_id();
        let mut at = entry;
        for _hop in 0..2 {
            let reachable = self.client_reach.lock()[at] && self.net.is_running(at);
            let Some(node) = self.node(at).filter(|_| reachable) else { return Outcome::Failed };
            if !node.wait_for_plan().await {
                return Outcome::Failed;
            }
            match node.route(0, pid, true) {
                Route::Unavailable => return Outcome::Failed,
                Route::Proxy(addr) => {
                    match (0..NODES).find(|&i| net::fabric_addr(i) == addr) {
                        Some(next) => at = next,
                        None => return Outcome::Failed,
                    }
                    continue;
                }
                Route::Local => {}
            }
            let ns = &node.namespaces[0];
            let particle = Value::Int(value).to_particle();
            let ops =
                [Op::Write { bin: b"v", value: ParticleRef { particle: particle.particle, bytes: &particle.bytes } }];
            let request = OperateRequest { digest: d, set: SET, key: None, policy: WritePolicy::default(), ops: &ops };
            let outcome = match ns.operate(&request) {
                Ok(o) => o,
                Err(_) => return Outcome::Failed,
            };
            let Some(image) = outcome.image else { return Outcome::Failed };
            let copy = WriteCopy::Record { digest: d, set: SET.to_vec(), meta: outcome.meta, image: image.into() };
            return match node.write_copies(0, copy, CommitLevel::All).await {
                Ok(()) => Outcome::Acked,
                Err(_) => Outcome::InDoubt,
            };
        }
        Outcome::Failed
    }
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Acked,
    /// Refused before anything was applied.
    Failed,
    InDoubt,
}

/// Whether `node` would apply a write for partition `pid` now: its view's plan is installed
/// (what [`ClusterNode::wait_for_plan`] waits for) and it is the partition's writing master.
fn takes_writes(node: &ClusterNode, pid: u16) -> bool {
    let installed = {
        let st = node.state.read();
        st.adopted_key == st.key && !st.plans.is_empty()
    };
    installed && node.route(0, pid, true) == Route::Local
}

pub(super) fn read_value(ns: &Namespace, d: &Digest) -> Result<Option<i64>, String> {
    let mut v = None;
    match ns.read(d, ReadSelect::All, |b| v = Value::from_particle(b.value).ok()) {
        Ok(_) => match v {
            Some(Value::Int(i)) => Ok(Some(i)),
            other => Err(format!("bin v is {other:?}")),
        },
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
