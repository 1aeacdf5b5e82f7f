//! Requests carried between nodes for the service layer: a client request forwarded to the
//! partition's acting master (and served there through [`crate::ServiceHooks`]), and info
//! commands that every member must run.

use std::net::SocketAddr;
use std::time::Duration;

use petrel_proto::cluster::fabric_message::Body;
use petrel_proto::cluster::{FabricMessage, InfoCommand, Proxy};
use petrel_proto::ResultCode;

use crate::node::{ack, result_code, ClusterNode};
use crate::partition_table::NodeId;

/// Most hops a proxied request takes: to the acting master, and once more if the master
/// changed on the way; more would mean nodes disagree on the plan, and the client retries.
pub const PROXY_HOPS_MAX: u32 = 2;

/// How long a proxied request may take: its own transaction plus a replica write
/// ([`crate::REPLICA_WRITE_DEADLINE_MS`]) with room to spare.
const PROXY_TIMEOUT_MS: u64 = 5_000;

/// How long a peer may take to run an info command (truncation walks whole namespaces).
const INFO_TIMEOUT_MS: u64 = 5_000;

impl ClusterNode {
    /// Forwards a request body to the node at `to`; returns its answer frames.
    pub async fn proxy(&self, to: SocketAddr, body: Vec<u8>, hops: u32) -> Result<Vec<u8>, ResultCode> {
        let answer = self
            .fabric()
            .request(to, Body::Proxy(Proxy { frame: body, hops: hops + 1 }), Duration::from_millis(PROXY_TIMEOUT_MS))
            .await
            .map_err(|_| ResultCode::Timeout)?;
        match answer.body {
            Some(Body::Proxy(p)) => Ok(p.frame),
            Some(Body::Ack(a)) => Err(result_code(a.result_code).unwrap_or(ResultCode::Timeout)),
            _ => Err(ResultCode::Timeout),
        }
    }

    /// Runs an info command on every other member; returns the answers by node.
    pub async fn info_on_peers(&self, line: &str) -> Vec<(NodeId, String)> {
        let body = Body::Info(InfoCommand { line: line.to_string() });
        let timeout = Duration::from_millis(INFO_TIMEOUT_MS);
        self.request_each(&self.peer_addrs(), body, timeout, |answer| match answer {
            Ok(FabricMessage { body: Some(Body::InfoAnswer(a)), .. }) => a.line,
            Ok(_) => "ERROR::unexpected answer".to_string(),
            Err(e) => format!("ERROR::{e}"),
        })
        .await
    }

    /// A client request a peer forwarded here.
    pub(crate) async fn on_proxy(&self, p: Proxy) -> Body {
        if p.hops > PROXY_HOPS_MAX {
            return ack(ResultCode::Unavailable);
        }
        let Some(hooks) = self.hooks() else { return ack(ResultCode::Timeout) };
        let frame = hooks.proxied(p.frame, p.hops).await;
        Body::Proxy(Proxy { frame, hops: p.hops })
    }

    /// An info command a peer runs on every member.
    pub(crate) fn on_info(&self, cmd: &InfoCommand) -> Body {
        let Some(hooks) = self.hooks() else { return ack(ResultCode::Timeout) };
        Body::InfoAnswer(InfoCommand { line: hooks.info(&cmd.line) })
    }
}
