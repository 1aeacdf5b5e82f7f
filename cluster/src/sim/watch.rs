//! What a simulated run shows of its nodes when it is diagnosed: each node's view, plan and
//! exchange state in a line, and one watched key's copy and plan row on every node.

use std::sync::Arc;

use super::net::SimNet;
use super::world::{digest, node_id, read_value};
use crate::node::ClusterNode;
use crate::route::Route;

/// One line per node: installed and adopted keys, members, unsettled partitions, and whose
/// versions it holds for the view it adopted (a node that adopted a view but installed no
/// plan waits for the others').
pub(super) fn describe(nodes: &[Option<Arc<ClusterNode>>]) -> String {
    let parts: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n {
            None => format!("n{i} down"),
            Some(n) => {
                let st = n.state.read();
                let unsettled: usize = st.plans.iter().map(|p| p.unsettled()).sum();
                let exchanged: Vec<u64> = n
                    .exchanges
                    .lock()
                    .get(&st.adopted_key)
                    .map(|book| book.keys().map(|&id| (id - node_id(0)) / 0x11).collect())
                    .unwrap_or_default();
                format!(
                    "n{i} key {:X} adopted {:X} members {} unsettled {unsettled} exchanged {exchanged:?}",
                    st.key,
                    st.adopted_key,
                    st.members.len()
                )
            }
        })
        .collect();
    parts.join("; ")
}

/// With `PETREL_SIM_WATCH=<key>`: per node, its keys, whether it runs, the key's value and
/// (generation, last-update time), handoff, whether it takes writes, and the plan row of
/// the key's partition (or of `PETREL_SIM_WATCH_PID`). None when nothing is watched.
pub(super) fn watched_key(nodes: &[Option<Arc<ClusterNode>>], net: &SimNet) -> Option<Vec<String>> {
    static WATCH: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let k = (*WATCH.get_or_init(|| std::env::var("PETREL_SIM_WATCH").ok().and_then(|v| v.parse().ok())))?;
    let d = digest(k);
    let pid = std::env::var("PETREL_SIM_WATCH_PID").ok().and_then(|v| v.parse().ok()).unwrap_or(d.partition_id());
    Some(
        nodes
            .iter()
            .enumerate()
            .map(|(i, n)| match n {
                None => format!("n{i} down"),
                Some(n) => {
                    let local = n.route(0, pid, true) == Route::Local;
                    let st = n.state.read();
                    let row = st.plans.first().map(|p| p.row(pid).clone());
                    let handoff = st.handoffs.contains(&(0, pid));
                    let meta = n.namespaces[0].exists(&d).ok().map(|m| (m.generation, m.lut_ms % 1_000_000));
                    let value = read_value(&n.namespaces[0], &d).ok().flatten();
                    format!(
                        "n{i} key {:X}/{:X} running {} {value:?} {meta:?} handoff {handoff} writes {local} {row:?}",
                        st.key,
                        st.adopted_key,
                        net.is_running(i)
                    )
                }
            })
            .collect(),
    )
}
