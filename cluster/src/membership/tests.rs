//! Membership tests: nodes exchanging pulses over links the tests cut, pause and restore,
//! on a shared simulated clock.

use super::*;

/// Nodes exchanging pulses over links that tests cut and restore, on a shared clock.
struct Sim {
    nodes: Vec<Membership>,
    /// `link[i][j]`: pulses from i reach j.
    link: Vec<Vec<bool>>,
    /// Paused nodes neither pulse, hear nor tick (SIGSTOP), and nodes not started yet.
    paused: Vec<bool>,
    now_ms: u64,
    changes: Vec<usize>,
    /// Every view each node entered, in order.
    history: Vec<Vec<ClusterView>>,
}

impl Sim {
    fn new(ids: &[NodeId], name: &str) -> Sim {
        let n = ids.len();
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                Membership::new(id, MembershipConfig::new(name), vec![format!("127.0.0.{}:3002", i + 1)], 0, id * 7919)
            })
            .collect();
        Sim {
            nodes,
            link: vec![vec![true; n]; n],
            paused: vec![false; n],
            now_ms: 0,
            changes: vec![0; n],
            history: vec![Vec::new(); n],
        }
    }

    /// Starts node `i` afresh now (a new process), its links as they are.
    fn start(&mut self, i: usize) {
        let (id, name) = (self.nodes[i].me, self.nodes[i].config.cluster_name.clone());
        let endpoints = self.nodes[i].my_endpoints.clone();
        self.nodes[i] = Membership::new(id, MembershipConfig::new(name), endpoints, self.now_ms, id * 31);
        self.paused[i] = false;
    }

    /// Cuts or restores the links between `i` and `j`, both ways.
    fn cut(&mut self, i: usize, j: usize, on: bool) {
        self.link[i][j] = !on;
        self.link[j][i] = !on;
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
                if i != j && self.link[i][j] && !self.paused[i] && !self.paused[j] {
                    self.nodes[j].on_pulse(self.now_ms, p).expect("pulse accepted");
                }
            }
        }
        for (i, m) in self.nodes.iter_mut().enumerate() {
            if self.paused[i] {
                continue;
            }
            if let Some(v) = m.tick(self.now_ms) {
                self.changes[i] += 1;
                self.history[i].push(v);
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
fn a_leaving_node_stays_a_member_listed_as_leaving_until_it_goes() {
    let mut sim = Sim::new(&[A, B, C], "prod");
    sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    let old_key = sim.nodes[0].view().key;
    // B (not the principal) and then C (the principal) leave: each new view keeps them as
    // members, lists them leaving, and has a new key, on every node.
    sim.nodes[1].set_leaving();
    let quantum = MembershipConfig::new("x").quantum_ms;
    sim.run_until(3 * quantum, |s| s.agree(&[0, 1, 2], &[C, B, A]) && s.nodes[0].view().leaving == [B]);
    assert!(sim.views().iter().all(|v| v.leaving == [B] && v.key != old_key && v.owners() == [C, A]));
    assert!(!sim.nodes[1].everyone_leaving());
    sim.nodes[2].set_leaving();
    sim.run_until(3 * quantum, |s| s.agree(&[0, 1, 2], &[C, B, A]) && s.nodes[0].view().leaving == [C, B]);
    assert_eq!(sim.nodes[0].view().owners(), [A]);
    assert!(!sim.nodes[2].everyone_leaving(), "A stays");
    sim.nodes[0].set_leaving();
    sim.run_until(3 * quantum, |s| s.nodes.iter().all(|m| m.everyone_leaving()));
    // Every member leaving: they keep owning what they hold, having no one to give it to.
    sim.run_until(3 * quantum, |s| s.nodes[0].view().leaving == [C, B, A]);
    assert_eq!(sim.nodes[0].view().owners(), [C, B, A]);
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
    let config = MembershipConfig::new("solo");
    let mut m = Membership::new(A, config.clone(), vec![], 0, 5);
    let mut now = 0;
    while now + config.interval_ms < config.quantum_ms {
        now += config.interval_ms;
        assert!(m.tick(now).is_none());
    }
    let v = m.tick(config.quantum_ms).expect("formed");
    assert_eq!(v.members, vec![A]);
    assert_ne!(v.key, 0);
}

/// Runs `steps` steps; panics if any node enters a view of itself alone.
fn run_without_solo_views(sim: &mut Sim, steps: usize) {
    for _ in 0..steps {
        sim.step();
        for (i, m) in sim.nodes.iter().enumerate() {
            assert!(m.view().members.len() != 1, "node {i} formed a cluster of its own at {} ms", sim.now_ms);
        }
    }
}

#[test]
fn a_paused_node_resumes_in_the_cluster_not_as_a_cluster_of_its_own() {
    for (paused, pause_ms) in [(0, 3_000), (0, 10_000), (2, 3_000), (2, 10_000)] {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        let before = sim.nodes[0].view().key;
        sim.paused[paused] = true;
        let others: Vec<usize> = (0..3).filter(|&i| i != paused).collect();
        let steps = (pause_ms / sim.nodes[0].config.interval_ms) as usize;
        for _ in 0..steps {
            sim.step();
        }
        // The others went on without it (the pause outlasted the node timeout).
        assert!(others.iter().all(|&i| sim.nodes[i].view().members.len() == 2), "pause of {pause_ms} ms");
        sim.paused[paused] = false;
        run_without_solo_views(&mut sim, 100);
        assert!(sim.agree(&[0, 1, 2], &[C, B, A]), "node {paused} after {pause_ms} ms: {:?}", sim.views());
        assert_ne!(sim.nodes[0].view().key, before, "everyone is on a view decided after the pause");
    }
}

#[test]
fn a_view_left_is_never_adopted_again() {
    // The principal pauses; the others form a view without it. When it resumes it still
    // advertises its old view listing them: they must not go back to it, or they would
    // follow a key whose plan the cluster has moved past (and never install one).
    let mut sim = Sim::new(&[A, B, C], "prod");
    sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    let old = sim.nodes[2].view().key;
    sim.paused[2] = true;
    sim.run_until(10_000, |s| s.agree(&[0, 1], &[B, A]));
    sim.paused[2] = false;
    sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    for i in [0, 1] {
        let after_leaving = sim.history[i].iter().skip_while(|v| v.key == old).collect::<Vec<_>>();
        assert!(after_leaving.iter().all(|v| v.key != old), "node {i} went back to the old view: {:?}", sim.history[i]);
    }
}

#[test]
fn a_newcomer_not_yet_heard_by_every_member_leaves_no_member_out() {
    // A newcomer between B and C in id order (C stays principal), and one above everyone (it
    // becomes the principal), each starting while B cannot hear it for a few seconds.
    for newcomer in [0xB8, 0xD0] {
        for seed_steps in [0usize, 5, 11] {
            let mut sim = Sim::new(&[A, B, C, newcomer], "prod");
            sim.paused[3] = true;
            sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
            for _ in 0..seed_steps {
                sim.step();
            }
            sim.cut(1, 3, true);
            sim.start(3);
            for _ in 0..30 {
                sim.step();
            }
            sim.cut(1, 3, false);
            let mut all = vec![newcomer, C, B, A];
            all.sort_unstable_by(|a, b| b.cmp(a));
            sim.run_until(10_000, |s| s.agree(&[0, 1, 2, 3], &all));
            for i in 0..3 {
                assert!(
                    sim.history[i].iter().all(|v| v.members.contains(&B)),
                    "newcomer {newcomer:X}, node {i} entered a view without B: {:?}",
                    sim.history[i]
                );
            }
        }
    }
}

#[test]
fn a_member_that_left_the_view_brings_a_new_one() {
    // A left the view the principal still holds (it formed one of its own) and will not go
    // back to it: the principal must decide a new view, or A would stay out for good.
    let mut sim = Sim::new(&[A, B, C], "prod");
    sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    let old = sim.nodes[0].view().key;
    sim.nodes[0].enter(ClusterView { key: 0x5E1F, members: vec![A], leaving: vec![], boots: vec![] });
    sim.run_until(4 * sim.nodes[0].config.quantum_ms, |s| s.agree(&[0, 1, 2], &[C, B, A]));
    assert_ne!(sim.nodes[0].view().key, old);
}

#[test]
fn a_healed_split_waits_for_every_live_member_of_both_sides() {
    // Two sides, [D, C] and [B, A], heal; for a while C and A still do not hear each other.
    // D must not decide [D, C, B] meanwhile: A is alive and in B's view.
    const D: NodeId = 0xD0;
    let mut sim = Sim::new(&[A, B, C, D], "prod");
    for (i, j) in [(0, 2), (0, 3), (1, 2), (1, 3)] {
        sim.cut(i, j, true);
    }
    sim.run_until(10_000, |s| s.agree(&[2, 3], &[D, C]) && s.agree(&[0, 1], &[B, A]));
    for (i, j) in [(0, 3), (1, 2), (1, 3)] {
        sim.cut(i, j, false);
    }
    for _ in 0..12 {
        sim.step();
    }
    sim.cut(0, 2, false);
    sim.run_until(10_000, |s| s.agree(&[0, 1, 2, 3], &[D, C, B, A]));
    for (i, h) in sim.history.iter().enumerate() {
        assert!(h.iter().all(|v| v.members != [D, C, B]), "node {i} entered a view without A: {h:?}");
    }
}

#[test]
fn a_pause_shorter_than_the_node_timeout_changes_nothing() {
    for paused in [0, 2] {
        let mut sim = Sim::new(&[A, B, C], "prod");
        sim.run_until(10_000, |s| s.agree(&[0, 1, 2], &[C, B, A]));
        let before = sim.changes.clone();
        sim.paused[paused] = true;
        for _ in 0..6 {
            sim.step();
        }
        sim.paused[paused] = false;
        for _ in 0..40 {
            sim.step();
        }
        assert_eq!(sim.changes, before, "node {paused} paused for 900 ms");
    }
}
