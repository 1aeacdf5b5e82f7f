//! The node's HTTP endpoint (`service.http_listen`), for orchestrators and monitoring:
//! `/health` (the process answers), `/ready` (it serves: alone, or joined to a cluster with
//! the current view's plan installed), and `/metrics` in the Prometheus text format, with the
//! names the Aerospike Prometheus exporter gives: every numeric value of the `statistics`
//! info answer as `aerospike_node_stats_<name>`, of `namespace/<ns>` as
//! `aerospike_namespace_<name>{ns="…"}`, and the latency histograms as
//! `aerospike_latencies_<op>_ms_bucket{ns="…",le="…"}`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::info;
use crate::node::Node;

/// Serves the endpoint on `listener` until `stop` turns true.
pub async fn serve(node: Arc<Node>, listener: TcpListener, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(node);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
}

/// Whether the node serves its share: alone (no cluster configured), or a member of the
/// agreed view with that view's plan installed.
pub fn is_ready(node: &Node) -> bool {
    match node.cluster() {
        None => true,
        Some(c) => {
            let s = c.summary();
            s.key != 0 && !s.in_transition && s.members.contains(&c.node_id())
        }
    }
}

async fn ready(State(node): State<Arc<Node>>) -> impl IntoResponse {
    if is_ready(&node) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: no cluster view with this node installed yet\n")
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], render(&node))
}

/// The metrics page.
pub fn render(node: &Node) -> String {
    let mut out = String::new();
    let labels = format!(
        "cluster_name=\"{}\",service=\"{}\"",
        escape(&node.config.service.cluster_name),
        node.config.service.listen
    );
    let _ = writeln!(out, "# TYPE aerospike_node_up gauge\naerospike_node_up{{{labels}}} 1");
    let _ = writeln!(
        out,
        "# TYPE aerospike_node_ready gauge\naerospike_node_ready{{{labels}}} {}",
        u8::from(is_ready(node))
    );
    numeric_metrics(&mut out, "aerospike_node_stats_", &labels, &info::answer_here(node, "statistics"));
    for s in node.namespaces() {
        let ns = s.ns.name();
        let labels = format!("{labels},ns=\"{}\"", escape(ns));
        numeric_metrics(
            &mut out,
            "aerospike_namespace_",
            &labels,
            &info::answer_here(node, &format!("namespace/{ns}")),
        );
        s.latencies.prometheus(&labels, &mut out);
    }
    out
}

/// Writes every `name=value` pair of an info answer whose value is a number (or a boolean,
/// as 0 or 1) as a gauge.
fn numeric_metrics(out: &mut String, prefix: &str, labels: &str, answer: &str) {
    for pair in answer.split(';') {
        let Some((name, value)) = pair.split_once('=') else { continue };
        let value = match value {
            "true" => "1",
            "false" => "0",
            v if v.parse::<f64>().is_ok_and(f64::is_finite) => v,
            _ => continue,
        };
        let name: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c.to_ascii_lowercase() } else { '_' })
            .collect();
        let _ = writeln!(out, "# TYPE {prefix}{name} gauge\n{prefix}{name}{{{labels}}} {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
