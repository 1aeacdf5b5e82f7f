//! petreld's library: configuration ([`config`]), the node's shared state ([`node`]), the
//! service port ([`service`]), the info protocol ([`info`]), the data commands ([`data`]) and
//! latency histograms ([`latency`]). The command line is [`cli`]; the binary in
//! `main.rs` only calls it.

pub mod cli;
pub mod config;
pub mod data;
pub mod info;
pub mod latency;
pub mod node;
pub mod service;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

/// Starts a node on `config` and serves until `shutdown` resolves.
pub async fn run(config: config::Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let node = Arc::new(node::Node::new(config).map_err(anyhow::Error::msg)?);
    let listen = node.config.service.listen;
    let listener =
        TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("service.listen: cannot bind {listen}: {e}"))?;
    node.start_supervisors()?;
    tracing::info!(node = %node.node_name, %listen, namespaces = node.namespaces().len(), "petreld serving");
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(service::serve(Arc::clone(&node), listener, stop_rx));
    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    let _ = stop_tx.send(true);
    server.await?;
    node.stop_supervisors();
    tracing::info!("stopped");
    Ok(())
}
