//! The `petreld` command line: flags, configuration loading, logging, and running the node
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, Overrides};
use clap::Parser;

/// Petrel server node.
#[derive(Debug, Parser)]
#[command(name = "petreld", version)]
struct Args {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Service address (host:port); overrides service.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve this namespace (repeatable); replaces the configured set of namespaces.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Data directory; overrides service.data_dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Node id in hex; overrides service.node_id.
    #[arg(long)]
    node_id: Option<String>,
    /// Heartbeat address (host:port, usually port 3002); turns the cluster layer on.
    #[arg(long)]
    heartbeat: Option<String>,
    /// Fabric address (host:port); default: the heartbeat's host, one port below it.
    #[arg(long)]
    fabric: Option<String>,
    /// Heartbeat endpoint of another node (host:port; repeatable; one is enough).
    #[arg(long = "seed")]
    seeds: Vec<String>,
    /// Cluster name; nodes of other clusters are refused.
    #[arg(long)]
    cluster_name: Option<String>,
    /// Copies of each partition, for every namespace.
    #[arg(long)]
    replication_factor: Option<u8>,
    /// The host peers and clients are told (default: the service address's host).
    #[arg(long)]
    advertise: Option<String>,
    /// HTTP endpoint (/health, /ready, /metrics) address; overrides service.http_listen.
    #[arg(long)]
    http: Option<String>,
    /// Log lines as plain text or as one JSON object each (for log collectors).
    #[arg(long, env = "PETREL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs `petreld` with the process's arguments; exits with status 2 on invalid configuration.
pub fn main() -> anyhow::Result<()> {
    // Logs go to stderr, coloured only on a terminal (containers collect plain lines).
    let args = Args::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("PETREL_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    let overrides = Overrides {
        listen: args.listen,
        namespaces: args.namespaces,
        data_dir: args.data_dir,
        node_id: args.node_id,
        heartbeat: args.heartbeat,
        fabric: args.fabric,
        seeds: args.seeds,
        cluster_name: args.cluster_name,
        replication_factor: args.replication_factor,
        advertise: args.advertise,
        http_listen: args.http,
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("petreld: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.service.service_threads > 0 {
        builder.worker_threads(config.service.service_threads);
    }
    let runtime = builder.thread_name("petrel-service").enable_all().build()?;
    runtime.block_on(crate::run(config, shutdown_signal()))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
