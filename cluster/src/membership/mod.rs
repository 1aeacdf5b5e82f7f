//! Heartbeat bookkeeping and membership agreement, as a state machine driven by received
//! pulses and by the clock the caller passes in (no sockets, no sleeps: tests inject time).
//!
//! Every node pulses every `interval` with its adjacency list (the nodes it hears) and its
//! view of the cluster (key and members). A peer not heard for `interval × timeout` is dead.
//! The *principal* is the highest node id in the largest fully connected group (clique) a node
//! can see, built greedily from the highest ids down; the principal alone changes the member
//! list, and only at quantum boundaries, so a flapping node cannot churn the cluster faster
//! than once a quantum. Each change gets a new random cluster key. Other nodes adopt the
//! principal's view as soon as it lists them. After a split each side's principal forms its
//! own cluster; when the network heals the cliques merge and the highest principal's view
//! wins. Pulses from another cluster name are refused.

use std::collections::BTreeMap;

use petrel_proto::cluster::{Pulse, HEARTBEAT_VERSION};

use crate::partition_table::NodeId;

/// Timing and identity settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    pub cluster_name: String,
    /// Milliseconds between pulses.
    pub interval_ms: u64,
    /// Missed intervals after which a peer is dead.
    pub timeout_intervals: u64,
    /// Milliseconds between membership decisions.
    pub quantum_ms: u64,
}

impl MembershipConfig {
    /// Aerospike's defaults: 150 ms pulses, dead after 10 missed, decisions every
    /// `node timeout + 2 × (interval + 5 ms)` = 1 810 ms.
    pub fn new(cluster_name: impl Into<String>) -> Self {
        let (interval_ms, timeout_intervals) = (150, 10);
        MembershipConfig {
            cluster_name: cluster_name.into(),
            interval_ms,
            timeout_intervals,
            quantum_ms: interval_ms * timeout_intervals + 2 * (interval_ms + 5),
        }
    }

    pub fn node_timeout_ms(&self) -> u64 {
        self.interval_ms * self.timeout_intervals
    }
}

/// Who is in the cluster: a key (new at every change) and the members, highest id first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    pub key: u64,
    pub members: Vec<NodeId>,
}

impl ClusterView {
    pub fn principal(&self) -> Option<NodeId> {
        self.members.first().copied()
    }
}

/// Why a pulse was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PulseRefused {
    #[error("heartbeat version {0} is not supported")]
    Version(u32),
    #[error("cluster name {0:?} differs")]
    ClusterName(String),
    #[error("pulse claims our own node id")]
    DuplicateNodeId,
}

#[derive(Debug, Clone)]
struct Peer {
    last_heard_ms: u64,
    adjacency: Vec<NodeId>,
    view: ClusterView,
    heartbeat_endpoints: Vec<String>,
    fabric_endpoints: Vec<String>,
    service_endpoints: Vec<String>,
}

/// Where a member can be reached, as it advertises itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeEndpoints {
    pub fabric: String,
    pub service: String,
}

/// One node's membership state.
#[derive(Debug)]
pub struct Membership {
    me: NodeId,
    config: MembershipConfig,
    my_endpoints: Vec<String>,
    my_fabric_and_service: NodeEndpoints,
    peers: BTreeMap<NodeId, Peer>,
    /// Heartbeat endpoints learned from peers' adjacency lists, for nodes not yet heard.
    learned: BTreeMap<NodeId, String>,
    view: ClusterView,
    next_quantum_ms: u64,
    rng_state: u64,
    /// Pulses refused for a different cluster name.
    pub refused_cluster_name: u64,
}

impl Membership {
    /// A node that has heard nobody yet: an orphan until its first quantum.
    pub fn new(me: NodeId, config: MembershipConfig, my_endpoints: Vec<String>, now_ms: u64, seed: u64) -> Membership {
        Membership {
            me,
            next_quantum_ms: now_ms + config.quantum_ms,
            config,
            my_endpoints,
            my_fabric_and_service: NodeEndpoints::default(),
            peers: BTreeMap::new(),
            learned: BTreeMap::new(),
            view: ClusterView::default(),
            rng_state: seed | 1,
            refused_cluster_name: 0,
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// Sets the fabric and service endpoints this node advertises in its pulses.
    pub fn set_endpoints(&mut self, endpoints: NodeEndpoints) {
        self.my_fabric_and_service = endpoints;
    }

    /// The fabric and service endpoints `id` advertises (ours for our own id).
    pub fn endpoints_of(&self, id: NodeId) -> Option<NodeEndpoints> {
        if id == self.me {
            return Some(self.my_fabric_and_service.clone());
        }
        let p = self.peers.get(&id)?;
        Some(NodeEndpoints {
            fabric: p.fabric_endpoints.first().cloned().unwrap_or_default(),
            service: p.service_endpoints.first().cloned().unwrap_or_default(),
        })
    }

    /// The current view (empty members = orphan).
    pub fn view(&self) -> &ClusterView {
        &self.view
    }

    /// Peers heard within the node timeout.
    pub fn alive_peers(&self, now_ms: u64) -> Vec<NodeId> {
        self.peers.iter().filter(|(_, p)| self.is_alive(p, now_ms)).map(|(id, _)| *id).collect()
    }

    /// Heartbeat endpoints of nodes some peer hears but we do not: where to connect next.
    pub fn endpoints_to_try(&self, now_ms: u64) -> Vec<String> {
        self.learned
            .iter()
            .filter(|(id, _)| **id != self.me && !self.peers.get(id).is_some_and(|p| self.is_alive(p, now_ms)))
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn is_alive(&self, p: &Peer, now_ms: u64) -> bool {
        now_ms.saturating_sub(p.last_heard_ms) < self.config.node_timeout_ms()
    }

    /// Takes a pulse received at `now_ms`.
    pub fn on_pulse(&mut self, now_ms: u64, pulse: &Pulse) -> Result<(), PulseRefused> {
        if pulse.version != HEARTBEAT_VERSION {
            return Err(PulseRefused::Version(pulse.version));
        }
        if pulse.cluster_name != self.config.cluster_name {
            self.refused_cluster_name += 1;
            return Err(PulseRefused::ClusterName(pulse.cluster_name.clone()));
        }
        if pulse.node_id == self.me {
            return Err(PulseRefused::DuplicateNodeId);
        }
        for (id, endpoint) in pulse.adjacency.iter().zip(&pulse.adjacency_endpoints) {
            if *id != self.me && !endpoint.is_empty() {
                self.learned.insert(*id, endpoint.clone());
            }
        }
        if let Some(e) = pulse.heartbeat_endpoints.first() {
            self.learned.insert(pulse.node_id, e.clone());
        }
        self.peers.insert(
            pulse.node_id,
            Peer {
                last_heard_ms: now_ms,
                adjacency: pulse.adjacency.clone(),
                view: ClusterView { key: pulse.cluster_key, members: pulse.members.clone() },
                heartbeat_endpoints: pulse.heartbeat_endpoints.clone(),
                fabric_endpoints: pulse.fabric_endpoints.clone(),
                service_endpoints: pulse.service_endpoints.clone(),
            },
        );
        Ok(())
    }

    /// Whether `a` and `b` hear each other.
    fn adjacent(&self, a: NodeId, b: NodeId, now_ms: u64) -> bool {
        let hears = |x: NodeId, y: NodeId| -> bool {
            if x == self.me {
                self.peers.get(&y).is_some_and(|p| self.is_alive(p, now_ms))
            } else {
                self.peers.get(&x).is_some_and(|p| p.adjacency.contains(&y))
            }
        };
        hears(a, b) && hears(b, a)
    }

    /// The clique we see: ourselves, then every alive peer (highest id first) adjacent to all
    /// already chosen.
    fn clique(&self, now_ms: u64) -> Vec<NodeId> {
        let mut chosen = vec![self.me];
        for id in self.alive_peers(now_ms).into_iter().rev() {
            if chosen.iter().all(|&c| self.adjacent(id, c, now_ms)) {
                chosen.push(id);
            }
        }
        chosen.sort_unstable_by(|a, b| b.cmp(a));
        chosen
    }

    fn new_key(&mut self) -> u64 {
        loop {
            // xorshift64*; the key only has to differ from the last one and be non-zero.
            let mut x = self.rng_state;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.rng_state = x;
            let key = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 16;
            if key != 0 && key != self.view.key {
                return key;
            }
        }
    }

    /// Advances time: drops dead peers from consideration, and either (as principal, at a
    /// quantum boundary) decides a new member list or (as a follower) adopts the principal's.
    /// Returns the new view when it changed.
    pub fn tick(&mut self, now_ms: u64) -> Option<ClusterView> {
        // Peers silent for ten node timeouts are forgotten altogether.
        let forget_ms = 10 * self.config.node_timeout_ms();
        self.peers.retain(|_, p| now_ms.saturating_sub(p.last_heard_ms) < forget_ms);
        // Learned endpoints are kept only for nodes some remembered peer still names (or that
        // are peers themselves), so pulses cannot grow the table without bound.
        let peers = &self.peers;
        self.learned.retain(|id, _| peers.contains_key(id) || peers.values().any(|p| p.adjacency.contains(id)));
        let clique = self.clique(now_ms);
        let principal = clique[0];
        if principal != self.me {
            let theirs = self.peers.get(&principal).map(|p| p.view.clone())?;
            if theirs.key != 0 && theirs.members.contains(&self.me) && theirs != self.view {
                self.view = theirs;
                return Some(self.view.clone());
            }
            return None;
        }
        if now_ms < self.next_quantum_ms {
            return None;
        }
        self.next_quantum_ms = now_ms + self.config.quantum_ms;
        if clique != self.view.members {
            self.view = ClusterView { key: self.new_key(), members: clique };
            return Some(self.view.clone());
        }
        None
    }

    /// The pulse to send now.
    pub fn pulse(&self, now_ms: u64) -> Pulse {
        let adjacency = self.alive_peers(now_ms);
        let adjacency_endpoints = adjacency
            .iter()
            .map(|id| self.peers.get(id).and_then(|p| p.heartbeat_endpoints.first().cloned()).unwrap_or_default())
            .collect();
        Pulse {
            version: HEARTBEAT_VERSION,
            node_id: self.me,
            cluster_name: self.config.cluster_name.clone(),
            heartbeat_endpoints: self.my_endpoints.clone(),
            fabric_endpoints: vec![self.my_fabric_and_service.fabric.clone()],
            service_endpoints: vec![self.my_fabric_and_service.service.clone()],
            adjacency,
            adjacency_endpoints,
            cluster_key: self.view.key,
            members: self.view.members.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes exchanging pulses over links that tests cut and restore, on a shared clock.
    struct Sim {
        nodes: Vec<Membership>,
        /// `link[i][j]`: pulses from i reach j.
        link: Vec<Vec<bool>>,
        now_ms: u64,
        changes: Vec<usize>,
    }

    impl Sim {
        fn new(ids: &[NodeId], name: &str) -> Sim {
            let n = ids.len();
            let nodes = ids
                .iter()
                .enumerate()
                .map(|(i, &id)| {
                    Membership::new(
                        id,
                        MembershipConfig::new(name),
                        vec![format!("127.0.0.{}:3002", i + 1)],
                        0,
                        id * 7919,
                    )
                })
                .collect();
            Sim { nodes, link: vec![vec![true; n]; n], now_ms: 0, changes: vec![0; n] }
        }

        fn isolate(&mut self, i: usize, on: bool) {
            for j in 0..self.nodes.len() {
                if i != j {
                    self.link[i][j] = !on;
                    self.link[j][i] = !on;
                }
            }
        }

        fn step(&mut self) {
            self.now_ms += self.nodes[0].config.interval_ms;
            let pulses: Vec<Pulse> = self.nodes.iter().map(|m| m.pulse(self.now_ms)).collect();
            for (i, p) in pulses.iter().enumerate() {
                for j in 0..self.nodes.len() {
                    if i != j && self.link[i][j] {
                        self.nodes[j].on_pulse(self.now_ms, p).expect("pulse accepted");
                    }
                }
            }
            for (i, m) in self.nodes.iter_mut().enumerate() {
                if m.tick(self.now_ms).is_some() {
                    self.changes[i] += 1;
                }
            }
        }

        /// Steps until `done`, at most `ms` of simulated time; returns the time taken.
        fn run_until(&mut self, ms: u64, done: impl Fn(&Sim) -> bool) -> u64 {
            let start = self.now_ms;
            while !done(self) {
                assert!(self.now_ms - start <= ms, "not converged within {ms} ms: {:?}", self.views());
                self.step();
            }
            self.now_ms - start
        }

        fn views(&self) -> Vec<ClusterView> {
            self.nodes.iter().map(|m| m.view().clone()).collect()
        }

        fn agree(&self, group: &[usize], members: &[NodeId]) -> bool {
            let v = self.nodes[group[0]].view();
            v.key != 0 && v.members == members && group.iter().all(|&i| self.nodes[i].view() == v)
        }
    }

    const A: NodeId = 0xA0;
    const B: NodeId = 0xB0;
    const C: NodeId = 0xC0;

    #[test]
    fn three_nodes_agree_with_the_highest_as_principal() {
        let mut sim = Sim::new(&[A, B, C], "prod");
        let quantum = MembershipConfig::new("x").quantum_ms;
        let took = sim.run_until(3 * quantum, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        assert!(took <= quantum + 300, "took {took} ms");
        assert_eq!(sim.nodes[0].view().principal(), Some(C));
    }

    #[test]
    fn a_dead_node_leaves_after_timeout_and_a_quantum_with_a_new_key() {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        let old_key = sim.nodes[0].view().key;
        sim.isolate(2, true); // the principal dies
        let cfg = MembershipConfig::new("x");
        let took = sim.run_until(10_000, |s| s.agree(&[0, 1], &[B, A]));
        assert!(took <= cfg.node_timeout_ms() + cfg.quantum_ms + 2 * cfg.interval_ms, "failover took {took} ms");
        assert_ne!(sim.nodes[0].view().key, old_key);
    }

    #[test]
    fn flapping_is_absorbed_by_timeout_and_quanta() {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        let before = sim.changes.clone();
        // Short flaps (300 ms down, 300 ms up) stay under the node timeout: no change at all.
        for k in 0..100 {
            sim.isolate(0, k % 4 < 2);
            sim.step();
        }
        sim.isolate(0, false);
        assert_eq!(sim.changes, before, "short flaps changed membership");
        // Long flaps (2.4 s down, 2.4 s up) for 60 s: at most one change per quantum.
        let start_changes: usize = sim.changes[2];
        let steps = 60_000 / 150;
        for k in 0..steps {
            sim.isolate(0, (k / 16) % 2 == 0);
            sim.step();
        }
        let quantum = MembershipConfig::new("x").quantum_ms;
        let changes = sim.changes[2] - start_changes;
        assert!(changes as u64 <= 60_000 / quantum + 1, "{changes} changes in 60 s");
        sim.isolate(0, false);
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    }

    #[test]
    fn split_forms_two_clusters_and_heal_merges_them() {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        // Cut A off from B and C.
        sim.isolate(0, true);
        sim.run_until(10_000, |s| s.agree(&[1, 2], &[C, B]) && s.agree(&[0], &[A]));
        let (k_major, k_minor) = (sim.nodes[2].view().key, sim.nodes[0].view().key);
        assert_ne!(k_major, k_minor);
        // Heal: one cluster again, under the highest principal, with a key neither side had.
        sim.isolate(0, false);
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        let k = sim.nodes[0].view().key;
        assert!(k != k_major && k != k_minor);
    }

    #[test]
    fn one_way_links_are_not_membership() {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        // C stops hearing A, though A still hears C: A is not adjacent to everyone.
        sim.link[0][2] = false;
        sim.run_until(10_000, |s| s.agree(&[1, 2], &[C, B]));
        assert!(!sim.nodes[2].view().members.contains(&A));
    }

    #[test]
    fn another_cluster_name_is_refused_and_versions_are_checked() {
        let mut a = Membership::new(A, MembershipConfig::new("prod"), vec![], 0, 1);
        let b = Membership::new(B, MembershipConfig::new("staging"), vec![], 0, 2);
        let p = b.pulse(150);
        assert_eq!(a.on_pulse(150, &p), Err(PulseRefused::ClusterName("staging".into())));
        assert_eq!(a.refused_cluster_name, 1);
        assert!(a.alive_peers(150).is_empty());
        let mut future = Membership::new(B, MembershipConfig::new("prod"), vec![], 0, 2).pulse(150);
        future.version = 99;
        assert_eq!(a.on_pulse(150, &future), Err(PulseRefused::Version(99)));
        let mut me = p.clone();
        me.cluster_name = "prod".into();
        me.node_id = A;
        assert_eq!(a.on_pulse(150, &me), Err(PulseRefused::DuplicateNodeId));
    }

    #[test]
    fn one_seed_is_enough_to_learn_everyone() {
        // A knows only B; B hears C: A learns C's heartbeat endpoint from B's pulse.
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.link[0][2] = false;
        sim.link[2][0] = false;
        for _ in 0..3 {
            sim.step();
        }
        assert_eq!(sim.nodes[0].endpoints_to_try(sim.now_ms), vec!["127.0.0.3:3002".to_string()]);
    }

    #[test]
    fn learned_endpoints_are_forgotten_with_the_peers_that_named_them() {
        let mut a = Membership::new(A, MembershipConfig::new("prod"), vec![], 0, 1);
        let mut p = Membership::new(B, MembershipConfig::new("prod"), vec!["b:3002".into()], 0, 2).pulse(0);
        p.adjacency = (1000..1100).collect();
        p.adjacency_endpoints = (1000..1100).map(|i| format!("n{i}:3002")).collect();
        a.on_pulse(0, &p).expect("pulse");
        assert_eq!(a.endpoints_to_try(0).len(), 100, "every node B names; B itself is already heard");
        // B goes silent; once it is forgotten, so is everything it named.
        let forget = 10 * MembershipConfig::new("prod").node_timeout_ms();
        a.tick(forget + 1);
        assert!(a.endpoints_to_try(forget + 1).is_empty());
    }

    #[test]
    fn a_single_node_forms_its_own_cluster_after_a_quantum() {
        let mut m = Membership::new(A, MembershipConfig::new("solo"), vec![], 0, 5);
        assert!(m.tick(150).is_none());
        let v = m.tick(MembershipConfig::new("solo").quantum_ms).expect("formed");
        assert_eq!(v.members, vec![A]);
        assert_ne!(v.key, 0);
    }
}
