//! Routing a client request: whether a partition is served here, proxied to its acting
//! master, or unavailable, under the installed plan; and the bounded wait a write makes while
//! a newly agreed view's plan is being installed.

use std::net::SocketAddr;
use std::time::Duration;

use crate::node::{ClusterNode, State};

/// How long a write waits for the plan of a newly adopted view before it is refused: an
/// exchange between live members takes a few fabric round trips, so this is ample for them,
/// while a client with a timeout of a second or two still hears an answer it can retry on.
const TRANSITION_WAIT_MS: u64 = 1_500;

/// Where a request for a partition is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Local,
    Proxy(SocketAddr),
    /// No plan yet, the acting master cannot be reached, or (for writes) the partition is
    /// merging copies of another lineage. Nothing was applied.
    Unavailable,
}

impl ClusterNode {
    /// Where a request for partition `pid` of namespace `ns` is served.
    pub fn route(&self, ns: usize, pid: u16, write: bool) -> Route {
        let st = self.state.read();
        let Some(plan) = st.plans.get(ns) else { return Route::Unavailable };
        let row = plan.row(pid);
        let master = row.acting_master();
        if write && master == self.me && (!row.merges_pending.is_empty() || st.handoffs.contains(&(ns, pid))) {
            // Copies of another lineage are still merging into this one: a write applied to
            // this copy now could be undone, record by record, by the merge's conflict
            // resolution. Or the partition is being handed to its new master, which may
            // already take writes. Clients retry once the merge or the handoff is done.
            return Route::Unavailable;
        }
        let local = if write { master == self.me } else { row.serves_reads(self.me) };
        if local {
            return Route::Local;
        }
        match st.addrs.get(&master) {
            Some(m) => Route::Proxy(m.fabric),
            None => Route::Unavailable,
        }
    }

    /// Waits (bounded) while a newly agreed view's plan is not installed, so that no write is
    /// taken under the plan of a view that is already gone. False if it did not settle.
    pub async fn wait_for_plan(&self) -> bool {
        let in_transition = |s: &State| s.adopted_key != s.key || s.plans.is_empty();
        if !in_transition(&self.state.read()) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(TRANSITION_WAIT_MS);
        loop {
            let installed = self.installed.notified();
            tokio::pin!(installed);
            installed.as_mut().enable();
            if !in_transition(&self.state.read()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, installed).await.is_err() {
                return false;
            }
        }
    }
}
