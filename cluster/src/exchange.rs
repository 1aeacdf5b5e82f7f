//! The exchange of partition versions after a view change: each member sends every other
//! member the version of each partition it holds, under the new view's cluster key, and
//! waits until it has every member's versions; from those every member computes the same
//! plan ([`crate::rebalance`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{Exchange, NamespaceVersions};
use petrel_proto::{ResultCode, PARTITIONS_COUNT};

use crate::node::{ack, ack_result, ClusterNode, Member};
use crate::partition_table::NodeId;

/// Exchanges remembered, by cluster key (the newest few views).
const EXCHANGE_KEYS_MAX: usize = 4;
/// Most members a view can have (the heartbeat dials at most this many endpoints).
const MEMBERS_MAX: usize = 256;
/// Most namespaces an exchange may carry.
const EXCHANGE_NAMESPACES_MAX: usize = 64;
/// How long a peer may take to take an exchange (it only records it).
const EXCHANGE_TIMEOUT_MS: u64 = 2_000;
/// Pause before an exchange a peer did not take is sent again (the peer may not have
/// adopted the view yet, or its fabric port is still coming up).
const EXCHANGE_RETRY_PAUSE_MS: u64 = 200;
/// How often the wait for the members' exchanges looks whether the view moved on, when no
/// exchange arrives to wake it.
const EXCHANGE_WAIT_POLL_MS: u64 = 200;

/// One node's versions of one namespace's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldVersions {
    pub versions: Vec<u64>,
    /// Read back from the node's device store at its start (see [`NamespaceVersions`]).
    pub restored: bool,
}

/// Every member's versions for one view: per node, per namespace (this node's order).
pub(crate) type VersionBook = HashMap<NodeId, Vec<HeldVersions>>;

impl ClusterNode {
    /// Sends this node's versions to every member of the view with `key` (each until taken
    /// or the view moves on), then waits for every member's. None if the view moved on
    /// (`changed`) first.
    pub(crate) async fn exchange_versions(
        self: &Arc<Self>,
        key: u64,
        addrs: &BTreeMap<NodeId, Member>,
        changed: impl Fn() -> bool,
    ) -> Option<VersionBook> {
        let restored = self.restored.lock().clone();
        let mine: Vec<HeldVersions> = {
            let mut versions = self.versions.lock();
            // A partition with copies still on their way holds writes its other copies may
            // never get: reported as diverged, so that the plan merges it rather than counting
            // the copies equal.
            for (v, in_flight) in versions.iter_mut().zip(&self.copies_in_flight) {
                for (pid, n) in in_flight.iter().enumerate() {
                    if n.load(std::sync::atomic::Ordering::Acquire) > 0 {
                        v[pid] = crate::plan::diverged_version(v[pid]);
                    }
                }
            }
            versions.iter().zip(restored).map(|(v, restored)| HeldVersions { versions: v.clone(), restored }).collect()
        };
        self.record_exchange(key, self.me, mine.clone());
        let exchange = Exchange {
            cluster_key: key,
            node_id: self.me,
            namespaces: self
                .namespaces
                .iter()
                .zip(&mine)
                .map(|(ns, v)| NamespaceVersions {
                    namespace: ns.name().to_string(),
                    versions: v.versions.clone(),
                    restored: v.restored,
                })
                .collect(),
        };
        for (&id, m) in addrs {
            if id == self.me {
                continue;
            }
            let (node, addr, exchange) = (Arc::clone(self), m.fabric, exchange.clone());
            tokio::spawn(async move {
                // Bounded by the view: a new view starts a new exchange.
                while node.state.read().adopted_key == key {
                    let timeout = Duration::from_millis(EXCHANGE_TIMEOUT_MS);
                    let r = node.fabric().request(addr, Body::Exchange(exchange.clone()), timeout).await;
                    if ack_result(r).is_ok() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(EXCHANGE_RETRY_PAUSE_MS)).await;
                }
            });
        }
        loop {
            let arrived = self.exchange_arrived.notified();
            {
                let ex = self.exchanges.lock();
                if let Some(got) = ex.get(&key) {
                    if addrs.keys().all(|n| got.contains_key(n)) {
                        return Some(got.clone());
                    }
                }
            }
            if changed() {
                return None;
            }
            let _ = tokio::time::timeout(Duration::from_millis(EXCHANGE_WAIT_POLL_MS), arrived).await;
        }
    }

    /// Keeps `node`'s versions for the view with `key`.
    pub(crate) fn record_exchange(&self, key: u64, node: NodeId, versions: Vec<HeldVersions>) {
        let mut ex = self.exchanges.lock();
        let book = ex.entry(key).or_default();
        // A view has at most as many members as the heartbeat dials; more senders for one
        // key are not members, and are not kept.
        if book.len() >= MEMBERS_MAX && !book.contains_key(&node) {
            return;
        }
        book.insert(node, versions);
        while ex.len() > EXCHANGE_KEYS_MAX {
            // Keys are random, so their order says nothing about age: forget any view other
            // than the one being adopted and the one this exchange is for.
            let current = self.state.read().adopted_key;
            let Some(old) = ex.keys().copied().find(|&k| k != current && k != key) else { break };
            ex.remove(&old);
        }
        self.exchange_arrived.notify_waiters();
    }

    /// A peer's versions.
    pub(crate) fn on_exchange(&self, e: Exchange) -> Body {
        if e.namespaces.len() > EXCHANGE_NAMESPACES_MAX
            || e.namespaces.iter().any(|n| n.versions.len() != PARTITIONS_COUNT)
        {
            return ack(ResultCode::Parameter);
        }
        // Our namespace order; a namespace the peer lacks holds nothing there.
        let mut versions =
            vec![HeldVersions { versions: vec![0u64; PARTITIONS_COUNT], restored: false }; self.namespaces.len()];
        for n in e.namespaces {
            if let Some(&i) = self.ns_index.get(&n.namespace) {
                versions[i] = HeldVersions { versions: n.versions, restored: n.restored };
            }
        }
        let key = e.cluster_key;
        self.record_exchange(key, e.node_id, versions);
        // Taken for good only by a node working on (or done with) that view: a book for a
        // view not adopted yet may be forgotten before the view is (several views can be
        // proposed meanwhile), so the sender is asked to send it again until it is.
        let st = self.state.read();
        if st.adopted_key == key || st.key == key {
            ack(ResultCode::Ok)
        } else {
            ack(ResultCode::ClusterKeyMismatch)
        }
    }
}
