//! The client's view of the cluster: its nodes, each with a pool of connections, and per
//! namespace the partition map (which node holds replica i of partition p), refreshed by a
//! background tend task from `peers-clear-std`, `partition-generation` and `replicas`.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use petrel_proto::PARTITIONS_COUNT;
use tokio::time::Instant;

use crate::connection::Connection;
use crate::policy::ClientPolicy;
use crate::Error;

/// Most replicas per partition the client tracks.
const REPLICAS_MAX: usize = 8;
/// Drop a pooled connection idle longer than this (servers close idle ones too).
const IDLE_MAX: Duration = Duration::from_secs(55);

/// A server node.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    pool: Mutex<Vec<Connection>>,
    pool_max: usize,
    partition_generation: AtomicI64,
    peers_generation: AtomicI64,
    pub(crate) active: AtomicBool,
    failures: AtomicI64,
}

impl Node {
    /// A pooled connection, or a new one.
    pub async fn get_connection(&self, timeout: Duration) -> Result<Connection, Error> {
        loop {
            let conn = self.pool.lock().pop();
            match conn {
                Some(c) if c.last_used.elapsed() < IDLE_MAX => return Ok(c),
                Some(_) => continue,
                None => return Connection::connect(self.addr, timeout).await,
            }
        }
    }

    /// Returns a healthy connection to the pool.
    pub fn put_connection(&self, conn: Connection) {
        let mut pool = self.pool.lock();
        if pool.len() < self.pool_max {
            pool.push(conn);
        }
    }

    /// Closes every pooled connection.
    pub fn close(&self) {
        self.pool.lock().clear();
    }
}

/// Per namespace: `replicas[i][pid]` = the node holding replica i of partition pid.
#[derive(Debug, Default, Clone)]
pub struct PartitionMap {
    pub replicas: Vec<Vec<Option<Arc<Node>>>>,
}

/// A node and the partitions it masters.
pub type NodePartitions = (Arc<Node>, Vec<u16>);

/// The shared cluster state.
#[derive(Debug)]
pub struct Cluster {
    pub policy: ClientPolicy,
    seeds: Vec<String>,
    nodes: RwLock<Vec<Arc<Node>>>,
    maps: RwLock<HashMap<String, Arc<PartitionMap>>>,
    pub(crate) closed: AtomicBool,
}

impl Cluster {
    pub fn new(policy: ClientPolicy, seeds: Vec<String>) -> Cluster {
        Cluster {
            policy,
            seeds,
            nodes: RwLock::new(Vec::new()),
            maps: RwLock::new(HashMap::new()),
            closed: AtomicBool::new(false),
        }
    }

    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.read().iter().filter(|n| n.active.load(Ordering::Relaxed)).cloned().collect()
    }

    /// The node holding replica `replica` of `pid` in `namespace` (falling back to the master).
    pub fn node_for(&self, namespace: &str, pid: u16, replica: usize) -> Result<Arc<Node>, Error> {
        let maps = self.maps.read();
        let no_node = || Error::NoNode { namespace: namespace.to_string(), partition: pid };
        let map = maps.get(namespace).ok_or_else(no_node)?;
        let count = map.replicas.len();
        if count == 0 {
            return Err(no_node());
        }
        for i in 0..count {
            let r = (replica + i) % count;
            if let Some(node) = &map.replicas[r][pid as usize] {
                if node.active.load(Ordering::Relaxed) {
                    return Ok(Arc::clone(node));
                }
            }
        }
        Err(no_node())
    }

    /// Nodes that are masters of some partition of `namespace`, with those partitions.
    pub fn masters(&self, namespace: &str) -> Result<Vec<NodePartitions>, Error> {
        let maps = self.maps.read();
        let map =
            maps.get(namespace).ok_or_else(|| Error::NoNode { namespace: namespace.to_string(), partition: 0 })?;
        let mut by_node: Vec<(Arc<Node>, Vec<u16>)> = Vec::new();
        let masters =
            map.replicas.first().ok_or_else(|| Error::NoNode { namespace: namespace.to_string(), partition: 0 })?;
        for (pid, node) in masters.iter().enumerate() {
            let node = node
                .as_ref()
                .ok_or_else(|| Error::NoNode { namespace: namespace.to_string(), partition: pid as u16 })?;
            match by_node.iter_mut().find(|(n, _)| Arc::ptr_eq(n, node)) {
                Some((_, pids)) => pids.push(pid as u16),
                None => by_node.push((Arc::clone(node), vec![pid as u16])),
            }
        }
        Ok(by_node)
    }

    /// One tend round: discover nodes from the seeds (when none is known) and from peers,
    /// then refresh partition maps whose generation changed.
    pub async fn tend(&self) -> Result<(), Error> {
        let timeout = self.policy.connect_timeout;
        if self.nodes().is_empty() {
            let mut last_err = None;
            for seed in &self.seeds {
                match self.add_node_from(seed, timeout).await {
                    Ok(_) => {}
                    Err(e) => last_err = Some(e),
                }
            }
            if self.nodes().is_empty() {
                return Err(last_err.unwrap_or_else(|| Error::Connect("no seeds".into())));
            }
        }
        let mut map_changed = false;
        // Nodes found through peers during this round are tended in it too, so that a new
        // client has every node's map after its first round.
        let mut next = 0;
        loop {
            let Some(node) = self.nodes().get(next).cloned() else { break };
            next += 1;
            let deadline = Some(Instant::now() + timeout);
            let mut conn = match node.get_connection(timeout).await {
                Ok(c) => c,
                Err(e) => {
                    self.node_failed(&node, &e);
                    continue;
                }
            };
            let answers = match conn.info(&["node", "peers-generation", "partition-generation"], deadline).await {
                Ok(a) => a,
                Err(e) => {
                    self.node_failed(&node, &e);
                    continue;
                }
            };
            let get = |k: &str| answers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            if get("node") != Some(node.name.as_str()) {
                node.active.store(false, Ordering::Relaxed);
                continue;
            }
            node.failures.store(0, Ordering::Relaxed);
            let peers_gen = get("peers-generation").and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
            if peers_gen != node.peers_generation.load(Ordering::Relaxed) {
                if let Ok(peers) = conn.info(&["peers-clear-std"], deadline).await {
                    if let Some((_, v)) = peers.first() {
                        for (name, host) in parse_peers(v, node.addr.port()) {
                            if !self.nodes().iter().any(|n| n.name == name) {
                                let _ = self.add_node_from(&host, timeout).await;
                            }
                        }
                        node.peers_generation.store(peers_gen, Ordering::Relaxed);
                    }
                }
            }
            let part_gen = get("partition-generation").and_then(|v| v.parse::<i64>().ok()).unwrap_or(-1);
            if part_gen != node.partition_generation.load(Ordering::Relaxed) {
                if let Ok(replicas) = conn.info(&["replicas"], deadline).await {
                    if let Some((_, v)) = replicas.first() {
                        self.apply_replicas(&node, v)?;
                        node.partition_generation.store(part_gen, Ordering::Relaxed);
                        map_changed = true;
                    }
                }
            }
            node.put_connection(conn);
        }
        if map_changed {
            tracing::debug!(nodes = self.nodes().len(), "partition map refreshed");
        }
        Ok(())
    }

    fn node_failed(&self, node: &Node, e: &Error) {
        let failures = node.failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(node = %node.name, error = %e, failures, "tend failed");
        if failures >= 3 {
            node.active.store(false, Ordering::Relaxed);
            node.close();
        }
    }

    async fn add_node_from(&self, host: &str, timeout: Duration) -> Result<Arc<Node>, Error> {
        let addr = host
            .to_socket_addrs()
            .map_err(|e| Error::Connect(format!("{host}: {e}")))?
            .next()
            .ok_or_else(|| Error::Connect(format!("{host} resolves to nothing")))?;
        let mut conn = Connection::connect(addr, timeout).await?;
        let answers = conn
            .info(&["node", "cluster-name", "build", "partition-generation"], Some(Instant::now() + timeout))
            .await?;
        let get = |k: &str| answers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let name = get("node")
            .filter(|n| !n.is_empty() && !n.starts_with("ERROR"))
            .ok_or_else(|| Error::Connect(format!("{host}: no node name")))?;
        if let Some(want) = &self.policy.cluster_name {
            if get("cluster-name").as_deref() != Some(want.as_str()) {
                return Err(Error::Connect(format!("{host}: cluster name differs")));
            }
        }
        let mut nodes = self.nodes.write();
        if let Some(existing) = nodes.iter().find(|n| n.name == name) {
            existing.active.store(true, Ordering::Relaxed);
            return Ok(Arc::clone(existing));
        }
        let node = Arc::new(Node {
            name,
            addr,
            pool: Mutex::new(vec![conn]),
            pool_max: self.policy.connections_per_node_max,
            partition_generation: AtomicI64::new(-1),
            peers_generation: AtomicI64::new(-1),
            active: AtomicBool::new(true),
            failures: AtomicI64::new(0),
        });
        nodes.push(Arc::clone(&node));
        Ok(node)
    }

    /// Applies a node's `replicas` answer: `ns:regime,count,b64,...;ns:...`.
    fn apply_replicas(&self, node: &Arc<Node>, text: &str) -> Result<(), Error> {
        let bad = |m: &str| Error::Protocol(format!("replicas: {m}"));
        let mut maps = self.maps.write();
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (ns, rest) = part.split_once(':').ok_or_else(|| bad("no namespace"))?;
            let mut fields = rest.split(',');
            let _regime: u32 = fields.next().and_then(|v| v.parse().ok()).ok_or_else(|| bad("regime"))?;
            let count: usize = fields.next().and_then(|v| v.parse().ok()).ok_or_else(|| bad("replica count"))?;
            let count = count.min(REPLICAS_MAX);
            let mut map = maps.get(ns).map(|m| (**m).clone()).unwrap_or_default();
            if map.replicas.len() < count {
                map.replicas.resize(count, vec![None; PARTITIONS_COUNT]);
            }
            for (i, b64) in fields.take(count).enumerate() {
                let bits = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|_| bad("bitmap"))?;
                if bits.len() < PARTITIONS_COUNT / 8 {
                    return Err(bad("short bitmap"));
                }
                for pid in 0..PARTITIONS_COUNT {
                    let owned = bits[pid >> 3] & (0x80 >> (pid & 7)) != 0;
                    let slot = &mut map.replicas[i][pid];
                    if owned {
                        *slot = Some(Arc::clone(node));
                    } else if slot.as_ref().is_some_and(|n| Arc::ptr_eq(n, node)) {
                        *slot = None;
                    }
                }
            }
            maps.insert(ns.to_string(), Arc::new(map));
        }
        Ok(())
    }

    pub fn has_partition_map(&self) -> bool {
        !self.maps.read().is_empty()
    }

    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        for n in self.nodes.read().iter() {
            n.close();
        }
    }
}

/// Parses `gen,port,[[name,tls,[host:port,...]],...]` into (node name, "host:port").
pub fn parse_peers(text: &str, default_port: u16) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut parts = text.splitn(3, ',');
    let _gen = parts.next();
    let port = parts.next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(default_port);
    let Some(list) = parts.next() else { return out };
    let list = list.trim();
    let Some(inner) = list.strip_prefix('[').and_then(|l| l.strip_suffix(']')) else { return out };
    // Each peer is `[name,tls,[hosts]]`; walk brackets by depth.
    let mut depth = 0;
    let mut start = 0;
    for (i, ch) in inner.char_indices() {
        match ch {
            '[' => {
                if depth == 0 {
                    start = i + 1;
                }
                depth += 1;
            }
            ']' => {
                depth -= 1;
                if depth == 0 {
                    let peer = &inner[start..i];
                    let mut f = peer.splitn(3, ',');
                    let name = f.next().unwrap_or("").to_string();
                    let _tls = f.next();
                    let hosts = f.next().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
                    if let Some(host) = hosts.split(',').find(|h| !h.is_empty()) {
                        let host = if host.starts_with('[') {
                            if host.contains("]:") {
                                host.to_string()
                            } else {
                                format!("{host}:{port}")
                            }
                        } else if host.contains(':') {
                            host.to_string()
                        } else {
                            format!("{host}:{port}")
                        };
                        if !name.is_empty() {
                            out.push((name, host));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_lists_parse() {
        assert!(parse_peers("1,3000,[]", 3000).is_empty());
        let p = parse_peers("5,3000,[[BB9020011AC4202,,[10.0.0.2]],[BB9030011AC4202,,[10.0.0.3:3100]]]", 3000);
        assert_eq!(
            p,
            vec![
                ("BB9020011AC4202".into(), "10.0.0.2:3000".into()),
                ("BB9030011AC4202".into(), "10.0.0.3:3100".into())
            ]
        );
    }
}
