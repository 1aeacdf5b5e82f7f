//! Seeded fault schedules for membership: five nodes exchanging pulses through a simulated
//! network that delays, drops, duplicates and reorders them, with one-way and two-way link
//! cuts, pauses (SIGSTOP) and restarts, all drawn from a seed on a simulated clock. After every
//! step: nodes holding the same cluster key hold the same member list (so they compute the same
//! partition table: at most one master per partition per key). After the faults stop: every
//! node reaches one view of all five within a bounded time. A failing seed replays exactly:
//! `PETREL_SIM_SEED=<n> cargo test -p petrel-cluster membership::sim_tests`; more seeds with
//! `PETREL_SIM_SEEDS=<count>` (CI runs 200).

use std::collections::BTreeMap;

use super::*;

const NODES: usize = 5;
/// Steps of faults, then at most this many more for the cluster to settle.
const FAULT_STEPS: usize = 600;
const SETTLE_MS_MAX: u64 = 30_000;
const SIM_STEP_MS: u64 = 50;

/// A small deterministic generator (xorshift64*), so a seed replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, per_thousand: u64) -> bool {
        self.below(1000) < per_thousand
    }
}

struct Net {
    nodes: Vec<Membership>,
    ids: Vec<NodeId>,
    /// `link[i][j]`: pulses from i reach j.
    link: Vec<Vec<bool>>,
    paused: Vec<bool>,
    /// Pulses on the way: (delivery time, order of sending, to, pulse).
    in_flight: BTreeMap<(u64, u64), (usize, Pulse)>,
    sent: u64,
    now_ms: u64,
    next_pulse_ms: Vec<u64>,
}

impl Net {
    fn new(seed: u64) -> Net {
        let ids: Vec<NodeId> = (0..NODES as u64).map(|i| 0x100 + i * 0x10).collect();
        let nodes = ids.iter().map(|&id| fresh(id, 0, seed)).collect();
        Net {
            nodes,
            ids,
            link: vec![vec![true; NODES]; NODES],
            paused: vec![false; NODES],
            in_flight: BTreeMap::new(),
            sent: 0,
            now_ms: 0,
            next_pulse_ms: vec![0; NODES],
        }
    }

    /// One step of `SIM_STEP_MS`: due pulses delivered, nodes pulse on their interval and tick.
    fn step(&mut self, rng: &mut Rng, faults: bool) {
        self.now_ms += SIM_STEP_MS;
        let due: Vec<(u64, u64)> = self.in_flight.range(..(self.now_ms + 1, 0)).map(|(k, _)| *k).collect();
        for k in due {
            let (to, pulse) = self.in_flight.remove(&k).expect("due pulse");
            if !self.paused[to] {
                // A pulse from another cluster name is refused; these never are.
                self.nodes[to].on_pulse(self.now_ms, &pulse).expect("pulse accepted");
            }
        }
        let interval = self.nodes[0].config.interval_ms;
        for i in 0..NODES {
            if self.paused[i] || self.now_ms < self.next_pulse_ms[i] {
                continue;
            }
            self.next_pulse_ms[i] = self.now_ms + interval;
            let pulse = self.nodes[i].pulse(self.now_ms);
            for j in (0..NODES).filter(|&j| j != i && self.link[i][j]) {
                if faults && rng.chance(50) {
                    continue; // lost
                }
                let copies = if faults && rng.chance(20) { 2 } else { 1 };
                for _ in 0..copies {
                    // Up to 3 intervals late when faults run: pulses overtake each other.
                    let delay = if faults { rng.below(3 * interval) } else { rng.below(20) };
                    self.sent += 1;
                    self.in_flight.insert((self.now_ms + delay, self.sent), (j, pulse.clone()));
                }
            }
        }
        for i in 0..NODES {
            if !self.paused[i] {
                self.nodes[i].tick(self.now_ms);
            }
        }
    }

    /// One random fault, sometimes.
    fn fault(&mut self, rng: &mut Rng, seed: u64) {
        if !rng.chance(30) {
            return;
        }
        let (i, j) = (rng.below(NODES as u64) as usize, rng.below(NODES as u64) as usize);
        match rng.below(6) {
            0 if i != j => self.link[i][j] = !self.link[i][j],
            1 if i != j => {
                let on = !self.link[i][j];
                self.link[i][j] = on;
                self.link[j][i] = on;
            }
            2 => self.paused[i] = !self.paused[i],
            3 => {
                // A restart: a new process with the same id, its queue of pulses gone.
                self.nodes[i] = fresh(self.ids[i], self.now_ms, seed ^ self.now_ms);
                self.paused[i] = false;
            }
            4 => {
                // A partition into two sides.
                let side: Vec<bool> = (0..NODES).map(|_| rng.chance(500)).collect();
                for a in 0..NODES {
                    for b in 0..NODES {
                        self.link[a][b] = side[a] == side[b];
                    }
                }
            }
            _ => self.heal(),
        }
    }

    fn heal(&mut self) {
        self.link = vec![vec![true; NODES]; NODES];
        self.paused = vec![false; NODES];
    }

    /// Nodes that hold the same key hold the same members.
    fn check_agreement(&self, seed: u64) {
        let mut by_key: BTreeMap<u64, &ClusterView> = BTreeMap::new();
        for (i, m) in self.nodes.iter().enumerate() {
            let v = m.view();
            if v.key == 0 {
                continue;
            }
            if let Some(other) = by_key.insert(v.key, v) {
                assert_eq!(
                    (&other.members, &other.leaving),
                    (&v.members, &v.leaving),
                    "seed {seed}, t={} ms: node {i} holds key {:x} with other members",
                    self.now_ms,
                    v.key
                );
            }
        }
    }

    fn converged(&self) -> bool {
        let v = self.nodes[0].view();
        let mut all = self.ids.clone();
        all.sort_unstable_by(|a, b| b.cmp(a));
        v.key != 0 && v.members == all && self.nodes.iter().all(|m| m.view() == v)
    }
}

fn fresh(id: NodeId, now_ms: u64, seed: u64) -> Membership {
    Membership::new(id, MembershipConfig::new("sim"), vec![format!("node-{id:x}:3002")], now_ms, seed ^ id)
}

/// Runs one seed; returns how many distinct views (cluster keys) its nodes went through.
fn run_seed(seed: u64) -> usize {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut net = Net::new(seed);
    let mut keys = std::collections::BTreeSet::new();
    for _ in 0..FAULT_STEPS {
        net.fault(&mut rng, seed);
        net.step(&mut rng, true);
        net.check_agreement(seed);
        keys.extend(net.nodes.iter().map(|m| m.view().key));
    }
    net.heal();
    let healed_at = net.now_ms;
    while !net.converged() {
        assert!(
            net.now_ms - healed_at <= SETTLE_MS_MAX,
            "seed {seed}: not one view of every node {SETTLE_MS_MAX} ms after the faults stopped: {:?}",
            net.nodes.iter().map(|m| m.view().clone()).collect::<Vec<_>>()
        );
        net.step(&mut rng, false);
        net.check_agreement(seed);
    }
    keys.len()
}

#[test]
fn seeded_fault_schedules_keep_views_consistent_and_converge() {
    if let Some(seed) = std::env::var("PETREL_SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        println!("seed {seed}: {} views", run_seed(seed));
        return;
    }
    let seeds: u64 = std::env::var("PETREL_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(200);
    let views: usize = (0..seeds).map(run_seed).sum();
    // The faults bite: clusters split, merge and re-form many times per seed.
    assert!(views as u64 > 5 * seeds, "{views} views over {seeds} seeds");
}
