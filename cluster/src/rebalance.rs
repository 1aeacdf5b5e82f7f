//! Following the views the heartbeat agrees on: for each new view, find the members'
//! fabric addresses, exchange partition versions ([`crate::exchange`]), compute a [`Plan`]
//! per namespace, install it, and start the migrations it calls for ([`crate::migrate`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::PARTITIONS_COUNT;
use tokio::sync::watch;

use crate::membership::ClusterView;
use crate::node::{ClusterNode, Member};
use crate::plan::Plan;

/// Tries, and the pause between them, to learn every member's endpoints from its pulses:
/// a member that just joined may not have been heard with its endpoints yet. Five seconds in
/// all, longer than a node timeout, after which the view is surely gone or settled.
const ENDPOINTS_TRIES: usize = 50;
const ENDPOINTS_RETRY_PAUSE_MS: u64 = 100;

/// How often, with no view change, copies settled on other owners are looked for and given
/// back: partitions are given back as they settle, so this only catches copies that stale
/// replica writes recreated.
const GIVE_BACK_SWEEP_MS: u64 = 1_000;

impl ClusterNode {
    /// Installs a plan for each view the heartbeat agrees on, until stopped.
    pub(crate) async fn follow_views(
        self: Arc<Self>,
        mut views: watch::Receiver<ClusterView>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let view = views.borrow_and_update().clone();
            if view.members.is_empty() && view.key == 0 {
                // This node was stalled past the node timeout and left its view: its plan is
                // stale until a view decided after the stall is installed, so writes wait
                // (and fail) meanwhile rather than diverge from what the others took.
                let mut st = self.state.write();
                if st.key != 0 && st.adopted_key != 0 {
                    st.adopted_key = 0;
                    tracing::warn!(
                        key = format!("{:X}", st.key),
                        "stalled past the node timeout: writes wait for a new view"
                    );
                }
            } else if view.key != self.current_key() {
                self.state.write().adopted_key = view.key;
                tokio::select! {
                    // In the order written, so that a simulated run replays exactly.
                    biased;
                    _ = self.rebalance(&view, &views) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
            tokio::select! {
                // In the order written, so that a simulated run replays exactly.
                biased;
                r = views.changed() => if r.is_err() { return },
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(GIVE_BACK_SWEEP_MS)) => self.give_back(),
            }
        }
    }

    /// Exchanges versions with every member of `view` and installs the new plans. Returns
    /// early when the view changes again.
    async fn rebalance(self: &Arc<Self>, view: &ClusterView, views: &watch::Receiver<ClusterView>) {
        let key = view.key;
        let changed = || views.has_changed().unwrap_or(true);
        let Some(addrs) = self.member_addrs(view, &changed).await else { return };
        let Some(book) = self.exchange_versions(key, &addrs, &changed).await else { return };
        // Every member computes the same plans from the same exchange.
        let plans: Vec<Plan> = self
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, ns)| {
                let rf = ns.config().replication_factor as usize;
                let held = |n: crate::NodeId| book.get(&n).and_then(|v| v.get(i));
                Plan::compute_with_restored(
                    &view.members,
                    &view.leaving,
                    rf,
                    key,
                    |n| held(n).map(|h| h.versions.as_slice()),
                    |n| held(n).is_some_and(|h| h.restored),
                )
            })
            .collect();
        self.drop_replaced_restored_copies(&plans);
        self.keep_merged_copies_to_reconcile(&plans);
        {
            let mut versions = self.versions.lock();
            for (i, plan) in plans.iter().enumerate() {
                for (pid, row) in plan.rows.iter().enumerate() {
                    versions[i][pid] = row.reported_version(self.me, key);
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
            // A restored copy the plan counts complete (no other copy is left) is the data.
            self.reconciling.install(|ns, pid| plans.get(ns).is_some_and(|p| !p.row(pid).is_complete(self.me)));
            st.plans = plans;
            st.handoffs.clear();
            if members_changed {
                self.counters.peers_generation.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.counters.cluster_generation.fetch_add(1, Ordering::Relaxed);
        self.counters.partition_generation.fetch_add(1, Ordering::Relaxed);
        self.installed.notify_waiters();
        tracing::info!(
            key = format!("{key:X}"),
            members = view.members.len(),
            masters = master_count,
            unsettled,
            "partition plan installed"
        );
        tokio::spawn(Arc::clone(self).migrate(key));
    }

    /// At the first plan after a start with a device store: the restored copies the plan
    /// does not count (live members hold newer ones) are dropped before anything is sent to
    /// this node, so that records deleted or changed while it was down cannot come back from
    /// them, unless this node owns the partition: then the copy stays, not complete, and is
    /// reconciled with the live one as it arrives (`reconcile`). Restored copies the plan
    /// counts (no live holder: a whole-cluster restart) stay.
    fn drop_replaced_restored_copies(&self, plans: &[Plan]) {
        let restored = std::mem::take(&mut *self.restored.lock());
        for (i, plan) in plans.iter().enumerate() {
            if !restored.get(i).copied().unwrap_or(false) {
                continue;
            }
            let (mut dropped, mut kept) = (0, 0);
            for pid in 0..PARTITIONS_COUNT as u16 {
                let row = plan.row(pid);
                if row.version_of(self.me) != 0 || self.namespaces[i].partition(pid).is_empty() {
                    continue;
                }
                if row.owners.contains(&self.me) {
                    // Owned here again: kept, and checked against the live copy as it
                    // arrives, so that only what changed moves.
                    self.reconciling.begin(i, pid);
                    kept += 1;
                } else {
                    dropped += self.namespaces[i].drop_partition(pid);
                }
            }
            tracing::info!(
                namespace = self.namespaces[i].name(),
                records_dropped = dropped,
                partitions_kept = kept,
                "restored copies replaced by live holders' dropped, or kept to be reconciled"
            );
        }
        *self.restored.lock() = vec![false; self.namespaces.len()];
    }

    /// An owner that holds a copy of another version than the final one merges it into the
    /// source (or another holder of its version does) before the source sends it anything:
    /// once the source's copy includes it, the owner's is reconciled with the source's
    /// (`reconcile`) instead of being sent again whole.
    fn keep_merged_copies_to_reconcile(&self, plans: &[Plan]) {
        for (i, plan) in plans.iter().enumerate() {
            for pid in 0..PARTITIONS_COUNT as u16 {
                let row = plan.row(pid);
                if row.source != self.me
                    && row.owners.contains(&self.me)
                    && row.version_of(self.me) != 0
                    && !row.is_complete(self.me)
                {
                    self.reconciling.begin(i, pid);
                }
            }
        }
    }

    /// Where the members of `view` are, from their pulses. None if some stay unknown or the
    /// view moves on (`changed`).
    async fn member_addrs(
        &self,
        view: &ClusterView,
        changed: impl Fn() -> bool,
    ) -> Option<BTreeMap<crate::NodeId, Member>> {
        let mut addrs = BTreeMap::new();
        for _ in 0..ENDPOINTS_TRIES {
            addrs.clear();
            for &id in &view.members {
                let Some(e) = self.heartbeat.lock().as_ref().and_then(|hb| hb.endpoints_of(id)) else { continue };
                let Some(fabric) = resolve(&e.fabric).await else { continue };
                addrs.insert(id, Member { fabric, service: e.service, service_alt: e.service_alt });
            }
            if addrs.len() == view.members.len() || changed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(ENDPOINTS_RETRY_PAUSE_MS)).await;
        }
        if changed() {
            return None;
        }
        if addrs.len() != view.members.len() {
            tracing::warn!(key = format!("{:X}", view.key), "members' endpoints unknown; waiting for the next view");
            return None;
        }
        Some(addrs)
    }
}

/// Resolves `host:port` (names allowed) to its first address.
async fn resolve(endpoint: &str) -> Option<SocketAddr> {
    if let Ok(a) = endpoint.parse() {
        return Some(a);
    }
    tokio::net::lookup_host(endpoint).await.ok()?.next()
}
