//! petreld's library: configuration ([`config`]), the node's shared state ([`node`]), the
//! service port ([`service`]), the info protocol ([`info`]), the data commands ([`cmd`]) and
//! latency histograms ([`latency`]). The command line is [`cli`]; the binary in
//! `main.rs` only calls it.

pub mod catalog;
pub mod cli;
pub mod client_counters;
pub mod cmd;
pub mod config;
pub mod data_slot;
pub mod frame_reader;
pub mod http;
pub mod info;
mod info_sindex;
pub mod latency;
pub mod node;
pub mod service;
pub mod udf;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use petrel_cluster::{ClusterConfig, ClusterNode, HeartbeatConfig, MembershipConfig, NodeEndpoints, ServiceHooks};
use petrel_storage::namespace::ConflictResolution;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Starts a node on `config` and serves until `shutdown` resolves.
pub async fn run(mut config: config::Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    // Held until the node stops: no other node takes this data directory meanwhile.
    let _slot = if config.service.data_dir_shared {
        let slot = data_slot::claim(&config.service.data_dir).map_err(anyhow::Error::msg)?;
        tracing::info!(dir = %slot.dir.display(), "claimed a node directory of the shared data directory");
        config.service.data_dir = slot.dir.clone();
        Some(slot)
    } else {
        None
    };
    let node = Arc::new(node::Node::new(config).map_err(anyhow::Error::msg)?);
    node.set_arc();
    let listen = node.config.service.listen;
    let listener =
        TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("service.listen: cannot bind {listen}: {e}"))?;
    node.start_supervisors()?;
    info_sindex::restore(&node);
    if node.config.cluster.enabled() {
        let cluster = start_cluster(&node).await?;
        node.set_cluster(cluster);
    }
    tracing::info!(node = %node.node_name, %listen, namespaces = node.namespaces().len(), "petreld serving");
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = if node.config.service.http_listen.is_empty() {
        None
    } else {
        let at = &node.config.service.http_listen;
        let l =
            TcpListener::bind(at).await.map_err(|e| anyhow::anyhow!("service.http_listen: cannot bind {at}: {e}"))?;
        tracing::info!(listen = %at, "HTTP endpoint serving /health, /ready and /metrics");
        Some(tokio::spawn(http::serve(Arc::clone(&node), l, stop_rx.clone())))
    };
    let catalog_pull =
        node.cluster().is_some().then(|| tokio::spawn(pull_catalogs(Arc::clone(&node), stop_rx.clone())));
    let server = tokio::spawn(service::serve(Arc::clone(&node), listener, stop_rx));
    shutdown.await;
    if let Some(c) = node.cluster() {
        leave_cluster(c, node.config.cluster.leave_grace_secs).await;
    }
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    server.await?;
    if let Some(h) = catalog_pull {
        h.await?;
    }
    if let Some(h) = http {
        h.await??;
    }
    if let Some(c) = node.cluster() {
        c.stop().await;
    }
    node.stop_supervisors();
    node.save_snapshots();
    tracing::info!("stopped");
    Ok(())
}

/// Hands this node's partitions to the members that stay (at most `grace_secs`), still
/// serving meanwhile: it is their acting master until they hold them. Then keeps serving a
/// little longer, so clients see the new partition map before its connections close.
async fn leave_cluster(cluster: &ClusterNode, grace_secs: u64) {
    use petrel_cluster::LeaveOutcome;
    /// Past two client tend intervals (1 s by default).
    const CLIENT_MAP_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
    if grace_secs == 0 {
        return;
    }
    tracing::info!(grace_secs, "leaving the cluster: handing partitions over");
    let started = std::time::Instant::now();
    match cluster.leave(std::time::Duration::from_secs(grace_secs)).await {
        LeaveOutcome::HandedOver => {
            tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "partitions handed over");
            tokio::time::sleep(CLIENT_MAP_REFRESH).await;
        }
        LeaveOutcome::EveryoneLeaving => tracing::info!("every member is leaving: nothing to hand over"),
        LeaveOutcome::GraceExpired { partitions_left } => tracing::warn!(
            partitions_left,
            grace_secs,
            "leave grace time expired: partitions only this node held may be lost"
        ),
    }
}

/// Every second, takes the index and UDF catalog changes peers hold and this node does not.
async fn pull_catalogs(node: Arc<node::Node>, mut stop: watch::Receiver<bool>) {
    const PULL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PULL_INTERVAL) => {
                info_sindex::pull_from_peers(&node).await;
                udf::sync::pull_from_peers(&node).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// Starts the heartbeat and the fabric for `node` and connects them to its service.
async fn start_cluster(node: &Arc<node::Node>) -> anyhow::Result<Arc<ClusterNode>> {
    let settings = &node.config.cluster;
    let addrs = settings.addresses(node.config.service.listen).map_err(anyhow::Error::msg)?;
    let mut membership = MembershipConfig::new(node.config.service.cluster_name.clone());
    membership.interval_ms = settings.heartbeat_interval_ms;
    membership.timeout_intervals = settings.heartbeat_timeout;
    membership.quantum_ms = membership.node_timeout_ms() + 2 * (membership.interval_ms + 5);
    let config = ClusterConfig {
        heartbeat: HeartbeatConfig {
            node_id: node.node_id,
            listen: addrs.heartbeat,
            advertise: format!("{}:{}", addrs.advertise, addrs.heartbeat.port()),
            seeds: settings.seeds.clone(),
            membership,
            endpoints: NodeEndpoints {
                fabric: format!("{}:{}", addrs.advertise, addrs.fabric.port()),
                // Worked out once, when the node was built: peers and clients are told the same.
                service: node.service_std.clone(),
                service_alt: node.service_alt.clone(),
            },
            clock: Some(Arc::clone(&node.clock)),
        },
        fabric_listen: addrs.fabric,
        conflict_resolution: if settings.conflict_resolution == "last-update-time" {
            ConflictResolution::LastUpdateTime
        } else {
            ConflictResolution::Generation
        },
        migrate_parallelism: settings.migrate_threads,
        state_dir: {
            let dir = &node.config.service.data_dir;
            (!dir.as_os_str().is_empty()).then(|| dir.clone())
        },
    };
    let namespaces = node.namespaces().iter().map(|s| Arc::clone(&s.ns)).collect();
    let cluster = ClusterNode::start(config, namespaces).await.map_err(|e| {
        anyhow::anyhow!("cluster: cannot bind heartbeat {} or fabric {}: {e}", addrs.heartbeat, addrs.fabric)
    })?;
    let hooks: std::sync::Weak<dyn ServiceHooks> = Arc::downgrade(node) as std::sync::Weak<node::Node>;
    cluster.set_hooks(hooks);
    tracing::info!(heartbeat = %addrs.heartbeat, fabric = %addrs.fabric, seeds = ?settings.seeds, "cluster layer started");
    Ok(cluster)
}

impl ServiceHooks for node::Node {
    fn proxied(&self, body: Vec<u8>, hops: u32) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send + '_>> {
        Box::pin(async move {
            self.counters.proxied_in.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut streamed: Vec<u8> = Vec::new();
            let mut out = Vec::new();
            // Writing to a Vec cannot fail.
            let _ = cmd::handle(self, &body, &mut out, &mut streamed, hops).await;
            streamed.extend_from_slice(&out);
            streamed
        })
    }

    fn info(&self, line: &str) -> String {
        info::answer_here(self, line)
    }
}
