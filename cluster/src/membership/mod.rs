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

use std::collections::{BTreeMap, VecDeque};

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

/// Who is in the cluster: a key (new at every change), the members, highest id first, and
/// those of them that are leaving (highest id first): members still, so they hand their
/// partitions over, but owners of nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterView {
    pub key: u64,
    pub members: Vec<NodeId>,
    pub leaving: Vec<NodeId>,
    /// Each member's boot id when the view was decided, parallel to `members` (empty, or 0
    /// for a member: not known).
    pub boots: Vec<u64>,
}

impl ClusterView {
    /// The boot id the view holds for `id`, when it holds one.
    fn boot_of(&self, id: NodeId) -> Option<u64> {
        let i = self.members.iter().position(|&m| m == id)?;
        self.boots.get(i).copied().filter(|&b| b != 0)
    }

    pub fn principal(&self) -> Option<NodeId> {
        self.members.first().copied()
    }

    /// The members partitions are given to: every member not leaving, or every member when
    /// all are leaving (the data has nowhere else to go).
    pub fn owners(&self) -> Vec<NodeId> {
        let staying: Vec<NodeId> = self.members.iter().copied().filter(|m| !self.leaving.contains(m)).collect();
        if staying.is_empty() {
            self.members.clone()
        } else {
            staying
        }
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
    /// The peer announces it is leaving.
    leaving: bool,
    /// The peer's boot id (0: not sent).
    boot_id: u64,
}

/// Where a member can be reached, as it advertises itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeEndpoints {
    pub fabric: String,
    pub service: String,
    /// The alternate service endpoint clients behind NAT use; empty = none.
    pub service_alt: String,
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
    /// When `tick` last ran: a longer gap than [`Membership::stall_ms`] means this node was
    /// stalled (paused, starved, or its clock jumped) and heard nothing meanwhile.
    last_tick_ms: Option<u64>,
    /// Keys of views this node has left, newest last: a principal's stale view is never
    /// adopted again.
    left_keys: VecDeque<u64>,
    /// Quanta in a row put off because the view would leave a live member out.
    deferrals: u32,
    /// A principal's view not adopted yet because it leaves out a live member, and since when.
    refusing: Option<(u64, u64)>,
    /// Quanta in a row at which a member advertised another view.
    stray_rekeys: u32,
    /// Pulses refused for a different cluster name.
    pub refused_cluster_name: u64,
    /// This node is leaving: its pulses say so, and as principal it lists itself leaving.
    leaving: bool,
    /// Random at each start (never 0): peers tell a restart of this node by it.
    boot_id: u64,
}

/// How many left views a node remembers: more than a principal could show it in the time it
/// takes that principal to decide anew after a stall.
const LEFT_KEYS_MAX: usize = 16;
/// How often, and after how many intervals each time, a principal puts off a view that would
/// leave out a live member: a newcomer is heard by everyone within a few intervals, while a
/// node that stays unreachable from some members must not hold the cluster back for long
/// (ten times two intervals: three seconds with the default interval).
const DEFERRALS_MAX: u32 = 10;
/// How many quanta in a row a principal decides a new view because a member advertises
/// another one: one is enough for a member that left and follows this principal; a member
/// that keeps following someone else (links that disagree) must not churn the cluster.
const STRAY_REKEYS_MAX: u32 = 3;
const DEFERRAL_PAUSE_INTERVALS: u64 = 2;

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
            last_tick_ms: None,
            left_keys: VecDeque::new(),
            deferrals: 0,
            refusing: None,
            stray_rekeys: 0,
            refused_cluster_name: 0,
            leaving: false,
            // Mixed from the seed (SplitMix64's finaliser), never 0.
            boot_id: {
                let mut z = seed ^ 0x9e37_79b9_7f4a_7c15;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) | 1
            },
        }
    }

    /// A gap between ticks beyond which this node counts as having been stalled: ticks come
    /// every interval, so half a node timeout without one means the node was not running (a
    /// pause, a starved process, a suspended machine) rather than merely busy.
    fn stall_ms(&self) -> u64 {
        (self.config.node_timeout_ms() / 2).max(2 * self.config.interval_ms)
    }

    /// After a stall of `gap_ms`, peers are judged by what was heard while this node was
    /// running: their silence during the stall is this node's, not theirs. Pulses queued
    /// meanwhile arrive within an interval. Without this, a node resumed after a pause longer
    /// than the node timeout finds every peer "dead" and forms a cluster of its own, taking
    /// writes no one else sees.
    ///
    /// A stall longer than the node timeout also ends this node's view: the others have
    /// judged it dead and may have formed a view without it, so its plan is stale even if its
    /// member list is not. It leaves the view (returned as the change, with no members and
    /// key 0), takes no writes until a view decided after the stall is installed, and
    /// advertises key 0 so that its principal decides one.
    fn ride_out_stall(&mut self, now_ms: u64, gap_ms: u64) -> Option<ClusterView> {
        let missed = gap_ms.saturating_sub(self.config.interval_ms);
        for p in self.peers.values_mut() {
            p.last_heard_ms = p.last_heard_ms.saturating_add(missed).min(now_ms);
        }
        // Decide nothing until there was time to hear everyone again.
        self.next_quantum_ms = self.next_quantum_ms.max(now_ms + self.config.quantum_ms);
        (gap_ms >= self.config.node_timeout_ms() && self.view.key != 0).then(|| self.enter(ClusterView::default()))
    }

    /// Whether a node we hear is left out of `clique` although it is a member of our view or
    /// of the view of a node chosen in `clique`.
    fn leaves_out_live_member(&self, clique: &[NodeId], now_ms: u64) -> bool {
        let in_some_view = |id: &NodeId| {
            self.view.members.contains(id)
                || clique.iter().any(|c| self.peers.get(c).is_some_and(|p| p.view.members.contains(id)))
        };
        self.alive_peers(now_ms).iter().any(|id| !clique.contains(id) && in_some_view(id))
    }

    /// Whether adopting the principal's view `theirs` now would leave out a member of our
    /// view that we and the principal both hear: the principal decided before that member
    /// was adjacent to everyone, and will include it at its next quantum. Adopting meanwhile
    /// would leave that member behind in the old view, still believing itself a member. Put
    /// off for one quantum at most per view, so that a member the principal cannot take in
    /// does not keep this node out of the cluster.
    fn would_leave_out_member(&mut self, theirs: &ClusterView, principal: NodeId, now_ms: u64) -> bool {
        let principal_hears = |id: &NodeId| self.peers.get(&principal).is_some_and(|p| p.adjacency.contains(id));
        let left_out =
            self.view.members.iter().any(|id| {
                *id != self.me && !theirs.members.contains(id) && self.alive(*id, now_ms) && principal_hears(id)
            });
        if !left_out {
            return false;
        }
        match self.refusing {
            Some((key, since_ms)) if key == theirs.key => now_ms.saturating_sub(since_ms) < self.config.quantum_ms,
            _ => {
                self.refusing = Some((theirs.key, now_ms));
                true
            }
        }
    }

    /// The principal of this node's view advertises a newer view without it: this node was
    /// left out (it was unreachable a moment, as in a short split) and its view is stale. It
    /// leaves it at once, taking no writes, instead of acting as a member (and as master of
    /// its partitions beside the others' new masters) until the principal takes it in again
    /// at its next quantum. A view this node was in before is an older one, not evidence.
    fn evicted(&mut self, now_ms: u64) -> Option<ClusterView> {
        let principal = self.view.principal().filter(|&p| p != self.me && self.view.key != 0)?;
        let theirs = &self.peers.get(&principal).filter(|p| self.is_alive(p, now_ms))?.view;
        let newer = theirs.key != 0 && theirs.key != self.view.key && !self.left_keys.contains(&theirs.key);
        (newer && !theirs.members.contains(&self.me)).then(|| self.enter(ClusterView::default()))
    }

    fn alive(&self, id: NodeId, now_ms: u64) -> bool {
        self.peers.get(&id).is_some_and(|p| self.is_alive(p, now_ms))
    }

    /// Whether a member of our view (in `clique`) advertises another view: it left ours (it
    /// was paused, or formed a view of its own) and will not go back to it, so only a new
    /// view brings it in again, with an exchange in which its copies count.
    fn member_elsewhere(&self, clique: &[NodeId]) -> bool {
        self.view.key != 0
            && clique.iter().any(|id| {
                *id != self.me
                    && self.view.members.contains(id)
                    && self.peers.get(id).is_some_and(|p| p.view.key != self.view.key)
            })
    }

    /// Moves to `view`, remembering the key left.
    fn enter(&mut self, view: ClusterView) -> ClusterView {
        if self.view.key != 0 {
            if self.left_keys.len() == LEFT_KEYS_MAX {
                self.left_keys.pop_front();
            }
            self.left_keys.push_back(self.view.key);
        }
        self.view = view;
        self.view.clone()
    }

    pub fn node_id(&self) -> NodeId {
        self.me
    }

    /// Marks this node as leaving: from its next pulse on it asks to own nothing, and its
    /// principal decides a view that lists it leaving at the next quantum.
    pub fn set_leaving(&mut self) {
        self.leaving = true;
    }

    /// Whether this node is leaving and so is every other member of its view (a whole
    /// cluster told to stop): there is no one to hand partitions to.
    pub fn everyone_leaving(&self) -> bool {
        self.leaving && self.view.members.iter().all(|&m| self.announces_leaving(m))
    }

    /// Whether `id` announces it is leaving (this node included).
    fn announces_leaving(&self, id: NodeId) -> bool {
        if id == self.me {
            self.leaving
        } else {
            self.peers.get(&id).is_some_and(|p| p.leaving)
        }
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
            // The second service endpoint, when a peer sends one, is its alternate.
            service_alt: p.service_endpoints.get(1).cloned().unwrap_or_default(),
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
                view: ClusterView {
                    key: pulse.cluster_key,
                    members: pulse.members.clone(),
                    leaving: pulse.leaving_members.clone(),
                    boots: pulse.member_boots.clone(),
                },
                heartbeat_endpoints: pulse.heartbeat_endpoints.clone(),
                fabric_endpoints: pulse.fabric_endpoints.clone(),
                service_endpoints: pulse.service_endpoints.clone(),
                leaving: pulse.leaving,
                boot_id: pulse.boot_id,
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

    /// The clique we see: ourselves, then every alive member of the current view, then every
    /// other alive peer (each group highest id first), each adjacent to all already chosen.
    /// Members come first so that a newcomer not yet heard by every member is left for a later
    /// quantum, rather than a live member being left out for it.
    fn clique(&self, now_ms: u64) -> Vec<NodeId> {
        let mut chosen = vec![self.me];
        let alive = self.alive_peers(now_ms);
        let (members, others): (Vec<NodeId>, Vec<NodeId>) =
            alive.into_iter().rev().partition(|id| self.view.members.contains(id));
        for id in members.into_iter().chain(others) {
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
        if let Some(gap_ms) = self.last_tick_ms.map(|last| now_ms.saturating_sub(last)) {
            if gap_ms > self.stall_ms() {
                self.last_tick_ms = Some(now_ms);
                if let Some(left) = self.ride_out_stall(now_ms, gap_ms) {
                    return Some(left);
                }
            }
        }
        self.last_tick_ms = Some(now_ms);
        // Peers silent for ten node timeouts are forgotten altogether.
        let forget_ms = 10 * self.config.node_timeout_ms();
        self.peers.retain(|_, p| now_ms.saturating_sub(p.last_heard_ms) < forget_ms);
        // Learned endpoints are kept only for nodes some remembered peer still names (or that
        // are peers themselves), so pulses cannot grow the table without bound.
        let peers = &self.peers;
        self.learned.retain(|id, _| peers.contains_key(id) || peers.values().any(|p| p.adjacency.contains(id)));
        if let Some(evicted) = self.evicted(now_ms) {
            return Some(evicted);
        }
        let clique = self.clique(now_ms);
        let principal = clique[0];
        if principal != self.me {
            let theirs = self.peers.get(&principal).map(|p| p.view.clone())?;
            // A view this node left is stale (its principal was stalled, and decides anew
            // at its next quantum): adopting it again would bring back a plan the others
            // have moved past.
            let fresh = !self.left_keys.contains(&theirs.key);
            // A view decided before this node's start (it was a member in an earlier life, and
            // restarted faster than the others could notice) is stale for it: its copies are
            // gone. It stays out, advertising key 0, until its principal decides anew.
            let earlier_life = theirs.boot_of(self.me).is_some_and(|b| b != self.boot_id);
            if theirs.key == 0 || !fresh || !theirs.members.contains(&self.me) || theirs == self.view || earlier_life {
                return None;
            }
            if self.would_leave_out_member(&theirs, principal, now_ms) {
                return None;
            }
            self.refusing = None;
            return Some(self.enter(theirs));
        }
        if now_ms < self.next_quantum_ms {
            return None;
        }
        if clique != self.view.members && self.deferrals < DEFERRALS_MAX && self.leaves_out_live_member(&clique, now_ms)
        {
            // Some node we hear belongs to a chosen member's cluster but is not adjacent to
            // everyone chosen yet (a newcomer not yet heard by all): a view decided now would
            // leave that live member out while it still believes itself in. Look again soon.
            self.deferrals += 1;
            self.next_quantum_ms = now_ms + DEFERRAL_PAUSE_INTERVALS * self.config.interval_ms;
            return None;
        }
        self.deferrals = 0;
        self.next_quantum_ms = now_ms + self.config.quantum_ms;
        let stray = self.member_elsewhere(&clique);
        if stray {
            self.stray_rekeys += 1;
        } else {
            self.stray_rekeys = 0;
        }
        let stray = stray && self.stray_rekeys <= STRAY_REKEYS_MAX;
        let leaving: Vec<NodeId> = clique.iter().copied().filter(|&id| self.announces_leaving(id)).collect();
        let boots: Vec<u64> =
            clique.iter().map(|&id| if id == self.me { self.boot_id } else { self.boot_of_peer(id) }).collect();
        // A member that restarted since the view was decided lost its copies: only a new view
        // (and its exchange) counts it again.
        let restarted = clique
            .iter()
            .zip(&boots)
            .any(|(&id, &boot)| boot != 0 && self.view.boot_of(id).is_some_and(|held| held != boot));
        if clique != self.view.members || stray || restarted || leaving != self.view.leaving {
            let key = self.new_key();
            return Some(self.enter(ClusterView { key, members: clique, leaving, boots }));
        }
        None
    }

    /// The boot id peer `id` last sent (0: none).
    fn boot_of_peer(&self, id: NodeId) -> u64 {
        self.peers.get(&id).map_or(0, |p| p.boot_id)
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
            service_endpoints: std::iter::once(&self.my_fabric_and_service.service)
                .chain(Some(&self.my_fabric_and_service.service_alt).filter(|a| !a.is_empty()))
                .cloned()
                .collect(),
            adjacency,
            adjacency_endpoints,
            cluster_key: self.view.key,
            members: self.view.members.clone(),
            leaving: self.leaving,
            leaving_members: self.view.leaving.clone(),
            boot_id: self.boot_id,
            member_boots: self.view.boots.clone(),
            // The heartbeat stamps its clock, which the membership does not keep.
            cluster_time_ms: 0,
        }
    }
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
