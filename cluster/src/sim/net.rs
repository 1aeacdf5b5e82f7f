//! The simulated network: every node's fabric requests and heartbeat pulses pass through one
//! [`SimNet`], which delays them (so they reorder, except pulses on one link, which keep
//! their order as on their TCP connection), loses and duplicates some, honours one-way
//! and two-way cuts, holds what is sent to a paused node until it runs again, and refuses
//! connections to a node that is down. Every choice comes from one seeded generator, drawn in
//! the order the single-threaded runtime runs the senders, so a seed replays exactly.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{FabricMessage, FABRIC_VERSION};
use tokio::sync::watch;

use crate::fabric::{FabricError, FabricHandler, FabricTransport};
use crate::heartbeat::{PulseInbox, PulseOut, RunGate};

/// A small deterministic generator (xorshift64*), so that a seed replays exactly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

/// Fabric port of every simulated node (on its own address).
pub const FABRIC_PORT: u16 = 3001;
/// Heartbeat port of every simulated node.
pub const HEARTBEAT_PORT: u16 = 3002;

/// The address of node `i`: 10.0.0.(i + 1).
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, i as u8 + 1)
}

pub fn fabric_addr(i: usize) -> SocketAddr {
    SocketAddr::from((node_ip(i), FABRIC_PORT))
}

pub fn heartbeat_endpoint(i: usize) -> String {
    format!("{}:{HEARTBEAT_PORT}", node_ip(i))
}

/// The node an address or endpoint names, if it is one of the simulation's.
fn node_of_ip(ip: Ipv4Addr, nodes: usize) -> Option<usize> {
    let [a, b, c, d] = ip.octets();
    ((a, b, c) == (10, 0, 0) && d >= 1 && (d as usize) <= nodes).then(|| d as usize - 1)
}

fn node_of_endpoint(endpoint: &str, nodes: usize) -> Option<usize> {
    let addr: SocketAddr = endpoint.parse().ok()?;
    match addr.ip() {
        std::net::IpAddr::V4(ip) => node_of_ip(ip, nodes),
        _ => None,
    }
}

/// How unreliable the network is at a moment.
#[derive(Debug, Clone, Copy)]
pub struct Weather {
    /// Each message takes 0..=delay_ms_max (plus 1) milliseconds, so messages reorder.
    pub delay_ms_max: u64,
    /// Per million messages: lost, and (pulses) delivered twice.
    pub loss_per_million: u64,
    pub duplicate_per_million: u64,
}

/// One node as the network sees it.
struct Port {
    /// Bumped at each crash: what an earlier life sent is never delivered, and answers to it
    /// are dropped.
    life: u64,
    up: bool,
    handler: Option<Arc<dyn FabricHandler>>,
    inbox: Option<PulseInbox>,
}

struct NetState {
    rng: Rng,
    ports: Vec<Port>,
    /// `link[i][j]`: what i sends reaches j.
    link: Vec<Vec<bool>>,
    weather: Weather,
    /// Messages handed over, for the run's report.
    delivered: u64,
    /// Per link: when its last pulse is due. Pulses on one link arrive in the order sent, as
    /// on the TCP connection that carries them; links differ in their delays.
    pulse_due: Vec<Vec<tokio::time::Instant>>,
}

/// The network all simulated nodes share.
pub struct SimNet {
    state: Mutex<NetState>,
    /// Per node: whether it runs (it does not while paused, as by SIGSTOP).
    running: Vec<Arc<RunGate>>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SimNet")
    }
}

/// What the network decided for one message.
enum Fate {
    /// Delivered after this many milliseconds.
    After(u64),
    /// Never delivered (lost, or the link is cut).
    Lost,
    /// The receiver is down: a connection is refused at once.
    Refused,
}

impl SimNet {
    pub fn new(nodes: usize, seed: u64) -> Arc<SimNet> {
        Arc::new(SimNet {
            state: Mutex::new(NetState {
                rng: Rng::new(seed ^ 0x0005_eed0_f7e7),
                ports: (0..nodes).map(|_| Port { life: 0, up: false, handler: None, inbox: None }).collect(),
                link: vec![vec![true; nodes]; nodes],
                weather: Weather { delay_ms_max: 2, loss_per_million: 0, duplicate_per_million: 0 },
                delivered: 0,
                pulse_due: vec![vec![tokio::time::Instant::now(); nodes]; nodes],
            }),
            running: (0..nodes).map(|_| Arc::new(RunGate::default())).collect(),
        })
    }

    pub fn nodes(&self) -> usize {
        self.running.len()
    }

    pub fn set_weather(&self, weather: Weather) {
        self.state.lock().weather = weather;
    }

    pub fn set_link(&self, from: usize, to: usize, up: bool) {
        self.state.lock().link[from][to] = up;
    }

    pub fn link(&self, from: usize, to: usize) -> bool {
        self.state.lock().link[from][to]
    }

    pub fn heal(&self) {
        for row in self.state.lock().link.iter_mut() {
            row.iter_mut().for_each(|l| *l = true);
        }
    }

    pub fn set_running(&self, node: usize, running: bool) {
        self.running[node].set_running(running);
    }

    /// Whether `node` runs (what its heartbeat waits on while it is paused).
    pub fn run_gate(&self, node: usize) -> Arc<RunGate> {
        Arc::clone(&self.running[node])
    }

    pub fn is_running(&self, node: usize) -> bool {
        self.running[node].is_running()
    }

    pub fn delivered(&self) -> u64 {
        self.state.lock().delivered
    }

    /// Node `i` comes up (a new life): its fabric and heartbeat are reachable once
    /// registered.
    pub fn bring_up(&self, i: usize) -> u64 {
        self.new_life(i, true)
    }

    pub fn register(&self, i: usize, life: u64, handler: Option<Arc<dyn FabricHandler>>, inbox: Option<PulseInbox>) {
        let mut st = self.state.lock();
        let port = &mut st.ports[i];
        if port.life == life {
            if handler.is_some() {
                port.handler = handler;
            }
            if inbox.is_some() {
                port.inbox = inbox;
            }
        }
    }

    /// Node `i` dies: nothing reaches it, and nothing its last life sent arrives any more.
    pub fn bring_down(&self, i: usize) {
        self.new_life(i, false);
    }

    /// Starts node `i`'s next life, up or down, with nothing registered; returns its number.
    fn new_life(&self, i: usize, up: bool) -> u64 {
        let mut st = self.state.lock();
        let port = &mut st.ports[i];
        port.life += 1;
        port.up = up;
        port.handler = None;
        port.inbox = None;
        port.life
    }

    fn alive(&self, i: usize, life: u64) -> bool {
        let st = self.state.lock();
        st.ports[i].up && st.ports[i].life == life
    }

    fn fate(&self, from: usize, to: usize) -> Fate {
        let mut st = self.state.lock();
        if !st.ports[to].up {
            return Fate::Refused;
        }
        let w = st.weather;
        let cut = !st.link[from][to];
        let lost = st.rng.chance(w.loss_per_million);
        let delay = 1 + st.rng.below(w.delay_ms_max + 1);
        if cut || lost {
            Fate::Lost
        } else {
            Fate::After(delay)
        }
    }

    async fn wait_running(&self, node: usize) {
        self.running[node].wait_running().await;
    }

    /// The transports of node `i` in its life `life`.
    pub fn fabric_for(self: &Arc<Self>, i: usize, life: u64) -> Arc<dyn FabricTransport> {
        Arc::new(SimFabric { net: Arc::clone(self), me: i, life })
    }

    pub fn pulses_for(self: &Arc<Self>, i: usize, life: u64) -> Box<dyn PulseOut> {
        Box::new(SimPulses { net: Arc::clone(self), me: i, life })
    }
}

/// A node's fabric on the simulated network.
struct SimFabric {
    net: Arc<SimNet>,
    me: usize,
    life: u64,
}

impl SimFabric {
    async fn exchange(&self, to: usize, addr: SocketAddr, body: Body) -> Result<FabricMessage, FabricError> {
        let net = &self.net;
        // A stopped process sends nothing until it runs again.
        net.wait_running(self.me).await;
        if !net.alive(self.me, self.life) {
            return Err(FabricError::Closed(addr));
        }
        match net.fate(self.me, to) {
            Fate::Refused => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                return Err(FabricError::Closed(addr));
            }
            Fate::Lost => std::future::pending::<()>().await,
            Fate::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        // Held by the receiver's kernel while it is stopped.
        net.wait_running(to).await;
        let handler = {
            let st = net.state.lock();
            if !st.ports[to].up {
                return Err(FabricError::Closed(addr));
            }
            st.ports[to].handler.clone()
        };
        let Some(handler) = handler else { return Err(FabricError::Closed(addr)) };
        let request = FabricMessage { version: FABRIC_VERSION, request_id: 0, is_answer: false, body: Some(body) };
        // The receiver finishes the request whatever happens to the sender's wait.
        let answer =
            tokio::spawn(async move { handler.handle(request).await }).await.map_err(|_| FabricError::Closed(addr))?;
        net.state.lock().delivered += 1;
        match net.fate(to, self.me) {
            Fate::Refused | Fate::Lost => std::future::pending::<()>().await,
            Fate::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        }
        net.wait_running(self.me).await;
        if !net.alive(self.me, self.life) {
            return Err(FabricError::Closed(addr));
        }
        Ok(answer)
    }
}

impl FabricTransport for SimFabric {
    fn request(
        &self,
        addr: SocketAddr,
        body: Body,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = Result<FabricMessage, FabricError>> + Send + '_>> {
        Box::pin(async move {
            let to = match addr.ip() {
                std::net::IpAddr::V4(ip) => node_of_ip(ip, self.net.nodes()),
                _ => None,
            };
            let Some(to) = to.filter(|&to| addr.port() == FABRIC_PORT && to != self.me) else {
                return Err(FabricError::Closed(addr));
            };
            tokio::time::timeout(timeout, self.exchange(to, addr, body))
                .await
                .map_err(|_| FabricError::Timeout(addr))?
        })
    }

    fn stop(&self) {}
}

/// A node's heartbeat pulses on the simulated network.
struct SimPulses {
    net: Arc<SimNet>,
    me: usize,
    life: u64,
}

impl PulseOut for SimPulses {
    fn send(&mut self, targets: &std::collections::BTreeSet<String>, frame: &[u8], _stop: &watch::Receiver<bool>) {
        let nodes = self.net.nodes();
        for t in targets {
            let Some(to) = node_of_endpoint(t, nodes).filter(|&to| to != self.me) else { continue };
            let copies = {
                let mut st = self.net.state.lock();
                let per_million = st.weather.duplicate_per_million;
                let dup = st.rng.chance(per_million);
                1 + dup as usize
            };
            for _ in 0..copies {
                let ms = match self.net.fate(self.me, to) {
                    Fate::After(ms) => ms,
                    Fate::Lost | Fate::Refused => continue,
                };
                let due = {
                    let mut st = self.net.state.lock();
                    let due = (tokio::time::Instant::now() + Duration::from_millis(ms)).max(st.pulse_due[self.me][to]);
                    st.pulse_due[self.me][to] = due;
                    due
                };
                let (net, life, bytes) = (Arc::clone(&self.net), self.life, frame[4.min(frame.len())..].to_vec());
                let me = self.me;
                tokio::spawn(async move {
                    tokio::time::sleep_until(due).await;
                    net.wait_running(to).await;
                    if !net.alive(me, life) {
                        return;
                    }
                    let inbox = net.state.lock().ports[to].inbox.clone();
                    if let Some(inbox) = inbox {
                        let _ = inbox.deliver(&bytes);
                        net.state.lock().delivered += 1;
                    }
                });
            }
        }
    }
}
