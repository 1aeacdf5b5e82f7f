//! The heartbeat transport (mesh): each node keeps a TCP connection to every heartbeat
//! endpoint it knows — its seeds, the peers it hears, and the endpoints those peers report —
//! sends a [`Pulse`] on each every interval, and feeds the pulses it receives to its
//! [`Membership`]. One seed is enough: a seed's pulse names everyone it hears.
//!
//! Frames are a `u32` big-endian length and a protobuf `Pulse`, at most [`FRAME_LEN_MAX`]
//! bytes. Each outgoing connection has a small bounded queue; when it is full the pulse is
//! dropped (a newer one follows), so a slow peer never holds the node back. Seeds may be DNS
//! names: each is resolved every 2 s to all the addresses it names (every replica of a scaled
//! service), and each address is dialed.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::cluster::Pulse;
use petrel_storage::clock::{Clock, ClusterClock};
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::membership::{ClusterView, Membership, MembershipConfig, NodeEndpoints};
use crate::partition_table::NodeId;

/// Largest heartbeat frame accepted.
pub const FRAME_LEN_MAX: usize = 64 * 1024;
/// Pulses queued per outgoing connection before new ones are dropped.
const QUEUE_LEN: usize = 4;
/// Most endpoints added at run time by `tip`.
const TIPS_MAX: usize = 64;
/// Most endpoints a node dials at once.
const ENDPOINTS_MAX: usize = 256;
/// How long the rest of a pulse may take to arrive once its length did: a pulse is small, so
/// a peer this slow holds a reader for nothing.
const PULSE_READ_TIMEOUT_MS: u64 = 5_000;
/// How long dialing (and resolving) a heartbeat endpoint may take, and the pause before the
/// next try: a third of the default node timeout (1.5 s), so a node that comes back is
/// heard again well before it would be declared gone, without redialing a dead one per pulse.
const DIAL_TIMEOUT_MS: u64 = 500;
const DIAL_RETRY_PAUSE_MS: u64 = 500;
/// How often seed names are resolved again, and the most addresses one name contributes.
const SEED_RESOLVE_MS: u64 = 2_000;
const SEED_ADDRS_MAX: usize = 64;
/// How long writing one pulse may take before the connection is dropped and dialed anew.
const PULSE_WRITE_TIMEOUT_MS: u64 = 500;
/// A peer's clock further ahead than this is logged (at most every
/// [`CLOCK_WARN_EVERY_MS`]): clocks that far apart are worth an operator's look.
const CLOCK_AHEAD_LOGGED_MS: u64 = 1_000;
const CLOCK_WARN_EVERY_MS: u64 = 10_000;

/// Settings of one node's heartbeat.
#[derive(Debug, Clone)]
pub struct HeartbeatConfig {
    pub node_id: NodeId,
    /// Where to listen for peers' pulses.
    pub listen: SocketAddr,
    /// The heartbeat endpoint peers are told (`host:port`).
    pub advertise: String,
    /// Seeds (`host:port`, names allowed).
    pub seeds: Vec<String>,
    pub membership: MembershipConfig,
    /// The fabric and service endpoints peers are told.
    pub endpoints: NodeEndpoints,
    /// The clock records are stamped by, which pulses carry and follow (see
    /// [`ClusterClock`]); None: pulses carry no time.
    pub clock: Option<Arc<ClusterClock>>,
}

/// A running heartbeat.
#[derive(Debug)]
pub struct Heartbeat {
    view: watch::Receiver<ClusterView>,
    tips: mpsc::UnboundedSender<Option<String>>,
    stop: watch::Sender<bool>,
    tasks: Option<JoinSet<()>>,
    membership: Arc<Mutex<Membership>>,
    inbox: PulseInbox,
    pub local_addr: SocketAddr,
}

/// Whether a simulated node runs: while it is stopped (as by SIGSTOP) its heartbeat neither
/// pulses nor decides, and the simulated network holds what it sends and what is sent to it.
/// Waiters wake in the order they came (a `watch` wakes them in a random order, which would
/// keep a simulated run from replaying).
#[derive(Debug, Default)]
pub struct RunGate {
    stopped: std::sync::atomic::AtomicBool,
    resumed: tokio::sync::Notify,
}

impl RunGate {
    pub fn set_running(&self, running: bool) {
        self.stopped.store(!running, std::sync::atomic::Ordering::SeqCst);
        if running {
            self.resumed.notify_waiters();
        }
    }

    pub fn is_running(&self) -> bool {
        !self.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Returns once the node runs.
    pub async fn wait_running(&self) {
        loop {
            let resumed = self.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if self.is_running() {
                return;
            }
            resumed.await;
        }
    }
}

/// How a heartbeat's pulses leave the node: TCP connections ([`TcpPulses`]) or a simulated
/// network.
pub trait PulseOut: Send + 'static {
    /// Sends `frame` (length-prefixed) to each of `targets`, best effort: a pulse may be lost
    /// (a newer one follows).
    fn send(&mut self, targets: &BTreeSet<String>, frame: &[u8], stop: &watch::Receiver<bool>);
}

/// A node's receiving end for pulses: hands each to its membership.
#[derive(Debug, Clone)]
pub struct PulseInbox {
    membership: Arc<Mutex<Membership>>,
    epoch: tokio::time::Instant,
    clock: Option<Arc<ClusterClock>>,
    /// When (membership milliseconds, plus one) a peer's clock was last logged as ahead.
    clock_warned_ms: Arc<AtomicU64>,
}

impl PulseInbox {
    /// Milliseconds since the heartbeat started (the membership's clock).
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Hands one pulse (the protobuf bytes, without the length prefix) to the membership.
    pub fn deliver(&self, bytes: &[u8]) -> std::io::Result<()> {
        let pulse = Pulse::decode(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if let Err(e) = self.membership.lock().on_pulse(self.now_ms(), &pulse) {
            tracing::debug!(node = format!("{:X}", pulse.node_id), error = %e, "pulse refused");
            return Ok(());
        }
        if let (Some(clock), t) = (&self.clock, pulse.cluster_time_ms) {
            if t != 0 {
                let ahead_ms = clock.heard(t);
                let (now, warned) = (self.now_ms() + 1, self.clock_warned_ms.load(Ordering::Relaxed));
                if ahead_ms > CLOCK_AHEAD_LOGGED_MS && (warned == 0 || now >= warned + CLOCK_WARN_EVERY_MS) {
                    self.clock_warned_ms.store(now, Ordering::Relaxed);
                    tracing::warn!(
                        node = format!("{:X}", pulse.node_id),
                        ahead_ms,
                        lead_ms = clock.lead_ms(),
                        "a peer's clock is ahead of this one: this node's record times follow it"
                    );
                }
            }
        }
        Ok(())
    }
}

/// Pulses over TCP: one connection (and one sender task with a small queue) per endpoint.
#[derive(Debug, Default)]
pub struct TcpPulses {
    senders: HashMap<String, mpsc::Sender<Vec<u8>>>,
}

impl PulseOut for TcpPulses {
    fn send(&mut self, targets: &BTreeSet<String>, frame: &[u8], stop: &watch::Receiver<bool>) {
        // Endpoints no longer wanted lose their sender (its task ends with it).
        self.senders.retain(|endpoint, tx| targets.contains(endpoint) && !tx.is_closed());
        for t in targets {
            let tx = self.senders.entry(t.clone()).or_insert_with(|| spawn_sender(t.clone(), stop.clone()));
            // A full queue means a slow or dead peer: drop this pulse.
            let _ = tx.try_send(frame.to_vec());
        }
    }
}

impl Heartbeat {
    /// Binds the listener and starts pulsing over TCP.
    pub async fn start(config: HeartbeatConfig) -> std::io::Result<Heartbeat> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let clock_nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let random = config.node_id ^ std::process::id() as u64 ^ clock_nanos as u64;
        let seeds = Arc::new(Mutex::new(config.seeds.clone()));
        let seed_names = config.seeds.clone();
        let mut hb =
            Heartbeat::start_on(config, local_addr, Arc::clone(&seeds), Box::<TcpPulses>::default(), random, None);
        let stop_rx = hb.stop.subscribe();
        let inbox = hb.inbox();
        let tasks = hb.tasks.as_mut().expect("tasks of a running heartbeat");
        // Receiving: one task per accepted connection.
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let (inbox, stop) = (inbox.clone(), stop.clone());
                        conns.spawn(async move {
                            if let Err(e) = receive(stream, inbox, stop).await {
                                tracing::debug!(%peer, error = %e, "heartbeat connection ended");
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        // Seeds resolved to every address they name, again and again: a DNS name of a scaled
        // service (Compose, a Kubernetes headless service) gains and loses addresses.
        tasks.spawn(resolve_seeds(seed_names, seeds, stop_rx));
        Ok(hb)
    }

    /// Starts pulsing through `out`, with pulses coming in through [`Heartbeat::inbox`]:
    /// the transport-free part of the heartbeat, which the simulator (`crate::sim`) runs on
    /// its own network. `seeds` are the endpoints to pulse besides those the membership
    /// knows; `random` seeds the membership's choices; while `running` (when given) holds
    /// false the node neither pulses nor decides, as a stopped process would not.
    pub fn start_on(
        config: HeartbeatConfig,
        local_addr: SocketAddr,
        seeds: Arc<Mutex<Vec<String>>>,
        mut out: Box<dyn PulseOut>,
        random: u64,
        running: Option<Arc<RunGate>>,
    ) -> Heartbeat {
        let epoch = tokio::time::Instant::now();
        let membership = Arc::new(Mutex::new(Membership::new(
            config.node_id,
            config.membership.clone(),
            vec![config.advertise.clone()],
            0,
            random,
        )));
        membership.lock().set_endpoints(config.endpoints.clone());
        let clock = config.clock.clone();
        let inbox = PulseInbox {
            membership: Arc::clone(&membership),
            epoch,
            clock: clock.clone(),
            clock_warned_ms: Arc::new(AtomicU64::new(0)),
        };
        let (view_tx, view_rx) = watch::channel(ClusterView::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tips_tx, mut tips_rx) = mpsc::unbounded_channel::<Option<String>>();
        let mut tasks = JoinSet::new();

        // Pulsing and deciding: every interval.
        let interval = Duration::from_millis(config.membership.interval_ms);
        let mut stop = stop_rx.clone();
        let own_endpoint = config.advertise.clone();
        let ticking = inbox.clone();
        tasks.spawn(async move {
            let mut extra: Vec<String> = Vec::new();
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => return,
                    Some(tip) = tips_rx.recv() => match tip {
                        Some(tip) if !extra.contains(&tip) && extra.len() < TIPS_MAX => extra.push(tip),
                        Some(_) => {}
                        None => extra.clear(),
                    },
                    _ = tick.tick() => {
                        if let Some(gate) = &running {
                            gate.wait_running().await;
                        }
                        let now = ticking.now_ms();
                        let (frame, targets, change) = {
                            let mut m = ticking.membership.lock();
                            let change = m.tick(now);
                            let mut pulse = m.pulse(now);
                            pulse.cluster_time_ms = clock.as_ref().map_or(0, |c| c.now_ms());
                            let mut targets: Vec<String> = seeds.lock().iter().chain(&extra).cloned().collect();
                            targets.extend(m.endpoints_to_try(now));
                            targets.extend(pulse.adjacency_endpoints.iter().filter(|e| !e.is_empty()).cloned());
                            let mut frame = Vec::with_capacity(4 + pulse.encoded_len());
                            frame.extend_from_slice(&(pulse.encoded_len() as u32).to_be_bytes());
                            pulse.encode(&mut frame).expect("a Vec grows as needed");
                            (frame, targets, change)
                        };
                        if let Some(view) = change {
                            tracing::info!(
                                key = format!("{:X}", view.key),
                                members = ?view.members,
                                leaving = ?view.leaving,
                                "cluster view changed"
                            );
                            let _ = view_tx.send(view);
                        }
                        // Our own address (a seed name that resolves to us too) needs no pulse;
                        // in a set ordered by name, so that a simulated run sends in one order.
                        let targets: BTreeSet<String> =
                            targets.into_iter().filter(|t| *t != own_endpoint).take(ENDPOINTS_MAX).collect();
                        out.send(&targets, &frame, &stop);
                    }
                }
            }
        });

        Heartbeat {
            view: view_rx,
            tips: tips_tx,
            stop: stop_tx,
            tasks: Some(tasks),
            membership: Arc::clone(&inbox.membership),
            inbox,
            local_addr,
        }
    }

    /// Where this node's incoming pulses are delivered.
    pub fn inbox(&self) -> PulseInbox {
        self.inbox.clone()
    }

    /// The current cluster view.
    pub fn view(&self) -> ClusterView {
        self.view.borrow().clone()
    }

    /// A receiver that wakes on every view change.
    pub fn watch(&self) -> watch::Receiver<ClusterView> {
        self.view.clone()
    }

    /// The fabric and service endpoints `id` advertises, if it has been heard.
    pub fn endpoints_of(&self, id: NodeId) -> Option<NodeEndpoints> {
        self.membership.lock().endpoints_of(id)
    }

    /// From now on this node announces it is leaving.
    pub fn set_leaving(&self) {
        self.membership.lock().set_leaving();
    }

    /// Whether every member of the view, this node included, announces it is leaving.
    pub fn everyone_leaving(&self) -> bool {
        self.membership.lock().everyone_leaving()
    }

    /// Pulses refused because they named another cluster.
    pub fn refused_cluster_name(&self) -> u64 {
        self.membership.lock().refused_cluster_name
    }

    /// Adds a seed at run time (the `tip` info command).
    pub fn tip(&self, endpoint: String) {
        let _ = self.tips.send(Some(endpoint));
    }

    /// Forgets every endpoint added by [`Heartbeat::tip`] (the `tip-clear` info command).
    pub fn tip_clear(&self) {
        let _ = self.tips.send(None);
    }

    /// Stops every task and waits for them.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(mut tasks) = self.tasks.take() {
            while tasks.join_next().await.is_some() {}
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(tasks) = self.tasks.as_mut() {
            tasks.abort_all();
        }
    }
}

/// Resolves every seed to all its addresses each [`SEED_RESOLVE_MS`] into `resolved` (a seed
/// that does not resolve stays as written, and is tried as such).
async fn resolve_seeds(seeds: Vec<String>, resolved: Arc<Mutex<Vec<String>>>, mut stop: watch::Receiver<bool>) {
    loop {
        let mut all = Vec::new();
        for seed in &seeds {
            let lookup = tokio::time::timeout(Duration::from_millis(DIAL_TIMEOUT_MS), tokio::net::lookup_host(seed));
            match lookup.await {
                Ok(Ok(addrs)) => all.extend(addrs.take(SEED_ADDRS_MAX).map(|a| a.to_string())),
                _ => all.push(seed.clone()),
            }
        }
        all.sort_unstable();
        all.dedup();
        *resolved.lock() = all;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(SEED_RESOLVE_MS)) => {}
        }
    }
}

/// Reads pulses from one accepted connection into the membership.
async fn receive(mut stream: TcpStream, inbox: PulseInbox, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let mut len = [0u8; 4];
        tokio::select! {
            r = stream.read_exact(&mut len) => { r?; }
            _ = stop.changed() => return Ok(()),
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > FRAME_LEN_MAX {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "heartbeat frame too large"));
        }
        buf.resize(len, 0);
        tokio::time::timeout(Duration::from_millis(PULSE_READ_TIMEOUT_MS), stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        inbox.deliver(&buf)?;
    }
}

/// A task that keeps a connection to `endpoint` and writes the frames it is given.
fn spawn_sender(endpoint: String, mut stop: watch::Receiver<bool>) -> mpsc::Sender<Vec<u8>> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(QUEUE_LEN);
    tokio::spawn(async move {
        let mut stream: Option<TcpStream> = None;
        let mut retry_at = tokio::time::Instant::now();
        loop {
            let frame = tokio::select! {
                _ = stop.changed() => return,
                f = rx.recv() => match f { Some(f) => f, None => return },
            };
            if stream.is_none() {
                if tokio::time::Instant::now() < retry_at {
                    continue;
                }
                // Resolved on every attempt: seeds may be DNS names that move.
                let connect = async {
                    let addr =
                        tokio::net::lookup_host(endpoint.as_str()).await?.next().ok_or(std::io::ErrorKind::NotFound)?;
                    TcpStream::connect(addr).await
                };
                match tokio::time::timeout(Duration::from_millis(DIAL_TIMEOUT_MS), connect).await {
                    Ok(Ok(s)) => {
                        let _ = s.set_nodelay(true);
                        stream = Some(s);
                    }
                    _ => {
                        retry_at = tokio::time::Instant::now() + Duration::from_millis(DIAL_RETRY_PAUSE_MS);
                        continue;
                    }
                }
            }
            if let Some(s) = stream.as_mut() {
                let write =
                    tokio::time::timeout(Duration::from_millis(PULSE_WRITE_TIMEOUT_MS), s.write_all(&frame)).await;
                if !matches!(write, Ok(Ok(()))) {
                    stream = None;
                }
            }
        }
    });
    tx
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn free_addr() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
    }

    async fn start(id: NodeId, addr: SocketAddr, seeds: Vec<String>) -> Heartbeat {
        let mut membership = MembershipConfig::new("test-mesh");
        // Faster than the defaults so the test is short; the logic is the same.
        membership.interval_ms = 50;
        membership.timeout_intervals = 6;
        membership.quantum_ms = 500;
        Heartbeat::start(HeartbeatConfig {
            node_id: id,
            listen: addr,
            advertise: addr.to_string(),
            seeds,
            membership,
            endpoints: Default::default(),
            clock: None,
        })
        .await
        .expect("start heartbeat")
    }

    async fn wait_for(hbs: &[&Heartbeat], members: &[NodeId], within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let views: Vec<ClusterView> = hbs.iter().map(|h| h.view()).collect();
            if views.iter().all(|v| v.members == members && v.key == views[0].key && v.key != 0) {
                return;
            }
            assert!(Instant::now() < deadline, "no agreement on {members:?} within {within:?}: {views:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_seed_forms_the_mesh_and_a_departure_is_noticed() {
        let (a, b, c) = (free_addr(), free_addr(), free_addr());
        let ha = start(0xA, a, vec![]).await;
        // B and C know only A.
        let hb = start(0xB, b, vec![a.to_string()]).await;
        let hc = start(0xC, c, vec![a.to_string()]).await;
        wait_for(&[&ha, &hb, &hc], &[0xC, 0xB, 0xA], Duration::from_secs(10)).await;
        let key = ha.view().key;
        hc.stop().await;
        wait_for(&[&ha, &hb], &[0xB, 0xA], Duration::from_secs(10)).await;
        assert_ne!(ha.view().key, key);
        ha.stop().await;
        hb.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_on_the_heartbeat_port_is_dropped() {
        let a = free_addr();
        let ha = start(0xA, a, vec![]).await;
        let mut s = TcpStream::connect(a).await.expect("connect");
        s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await.expect("write");
        let mut byte = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await.expect("closed in time");
        assert!(matches!(closed, Ok(0) | Err(_)), "an oversized frame closes the connection");
        wait_for(&[&ha], &[0xA], Duration::from_secs(5)).await;
        ha.stop().await;
    }
}
