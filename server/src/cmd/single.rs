//! A single-record request's life: routed once (served here, forwarded to the partition's
//! acting master, or unavailable), executed by its command, replicated by the write
//! commands, answered, and timed. A request arrives either as a whole frame or as a row of a
//! batch; only the framing of the answer differs.

use std::sync::atomic::Ordering;
use std::time::Instant;

use petrel_cluster::runtime::{ClusterNode, Route, PROXY_HOPS_MAX};
use petrel_proto::batch::BatchRow;
use petrel_proto::message::{begin_frame, end_frame, write_field, Message, MessageMark, MsgHeader};
use petrel_proto::wire::{info3, FieldType, FrameType, MSG_HEADER_LEN, PROTO_HEADER_LEN};
use petrel_proto::ResultCode;
use petrel_storage::exp::Program;

use super::answer::{self, CmdError};
use super::request::{Kind, Single};
use super::{delete, read, write};
use crate::latency::LatencyKind;
use crate::node::Node;

/// Serves a single-record request that came as a whole frame (`body`, kept to forward as
/// it is).
pub(crate) async fn serve_frame(node: &Node, msg: Message<'_>, body: &[u8], out: &mut Vec<u8>, hops: u32) {
    let single = match Single::parse(node, msg, None, None) {
        Ok(s) => s,
        Err(e) => {
            let start = begin_frame(out);
            answer::error(out, &e.into(), 0);
            end_frame(out, start, FrameType::Message as u8);
            return;
        }
    };
    if let Some(cluster) = node.cluster() {
        match route(cluster, &single, hops).await {
            Route::Local => {}
            Route::Proxy(to) => {
                node.counters.proxied_requests.fetch_add(1, Ordering::Relaxed);
                match cluster.proxy(to, body.to_vec(), hops).await {
                    Ok(frames) => out.extend_from_slice(&frames),
                    Err(code) => answer::error_frame(out, code, false),
                }
                return;
            }
            Route::Unavailable => {
                answer::error_frame(out, ResultCode::Unavailable, false);
                return;
            }
        }
    }
    let start = begin_frame(out);
    execute(node, &single, out, 0, false).await;
    end_frame(out, start, FrameType::Message as u8);
}

/// Serves one batch row, appending its answer message (indexed by the row) to `out`.
pub(crate) async fn serve_row(
    node: &Node,
    row: &BatchRow<'_>,
    batch_filter: Option<&Program>,
    out: &mut Vec<u8>,
    hops: u32,
) {
    let single = match Single::parse(node, row.message, Some(row.digest), batch_filter) {
        Ok(s) => s,
        Err(e) => return answer::error(out, &e.into(), row.index),
    };
    if let Some(cluster) = node.cluster() {
        match route(cluster, &single, hops).await {
            Route::Local => {}
            Route::Proxy(to) => {
                // The client's map is behind: the row runs there as a single request.
                node.counters.proxied_requests.fetch_add(1, Ordering::Relaxed);
                let answer = cluster.proxy(to, standalone(row), hops).await;
                return append_proxied_row(out, answer, row.index);
            }
            Route::Unavailable => return answer::code(out, ResultCode::Unavailable, row.index),
        }
    }
    execute(node, &single, out, row.index, true).await;
}

/// Where a request is served in a cluster. A write first waits, bounded, for the plan of a
/// view agreed a moment ago, so that it is never taken under the plan of a view that is gone.
async fn route(cluster: &ClusterNode, single: &Single<'_, '_>, hops: u32) -> Route {
    let write = single.is_write();
    if write && !cluster.wait_for_plan().await {
        return Route::Unavailable;
    }
    match cluster.route(single.sns.index, single.partition(), write) {
        Route::Proxy(_) if hops >= PROXY_HOPS_MAX => Route::Unavailable,
        r => r,
    }
}

/// Runs the command here and appends its answer message.
async fn execute(node: &Node, single: &Single<'_, '_>, out: &mut Vec<u8>, row_index: u32, batch_row: bool) {
    let started = Instant::now();
    let result: Result<(), CmdError> = match single.kind {
        Kind::Read => read::bins(single, out, row_index),
        Kind::Exists => read::exists(single, out, row_index),
        Kind::ReadOps => read::operate(single, out, row_index),
        Kind::Write => write::apply(node, single, out, row_index).await,
        Kind::Delete => delete::apply(node, single, out, row_index).await,
    };
    if let Err(e) = result {
        answer::error(out, &e, row_index);
    }
    let kind = match (single.is_write(), batch_row) {
        (true, false) => LatencyKind::Write,
        (false, false) => LatencyKind::Read,
        (true, true) => LatencyKind::BatchSubWrite,
        (false, true) => LatencyKind::BatchSubRead,
    };
    single.sns.latencies.record(kind, started.elapsed());
}

/// A batch row as a standalone message (its digest as a field), to run on another node.
fn standalone(row: &BatchRow<'_>) -> Vec<u8> {
    let m = &row.message;
    let mut buf = Vec::with_capacity(MSG_HEADER_LEN + 25 + m.fields_bytes().len() + m.ops_bytes().len());
    MsgHeader { n_fields: m.header.n_fields + 1, ..m.header }.write(&mut buf);
    write_field(&mut buf, FieldType::Digest as u8, row.digest.as_bytes());
    buf.extend_from_slice(m.fields_bytes());
    buf.extend_from_slice(m.ops_bytes());
    buf
}

/// Appends the answer of a batch row run on another node (one frame holding one message) as
/// the row's answer.
fn append_proxied_row(out: &mut Vec<u8>, answer: Result<Vec<u8>, ResultCode>, index: u32) {
    match answer {
        Ok(frame) if frame.len() >= PROTO_HEADER_LEN + MSG_HEADER_LEN => {
            let mark = MessageMark::at(out.len());
            out.extend_from_slice(&frame[PROTO_HEADER_LEN..]);
            mark.set_transaction_ttl(out, index);
            mark.clear_info3(out, info3::LAST);
        }
        Ok(_) => answer::code(out, ResultCode::Unknown, index),
        Err(code) => answer::code(out, code, index),
    }
}
