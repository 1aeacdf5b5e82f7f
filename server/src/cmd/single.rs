//! A single-record request's life: routed once (served here, forwarded to the partition's
//! acting master, or unavailable), executed by its command, replicated by the write
//! commands, answered, and timed. A request arrives either as a whole frame or as a row of a
//! batch; only the framing of the answer differs.

use std::sync::atomic::Ordering;
use std::time::Instant;

use petrel_cluster::{ClusterNode, Route, PROXY_HOPS_MAX};
use petrel_proto::batch::BatchRow;
use petrel_proto::message::{begin_frame, end_frame, write_field, Message, MessageMark, MsgHeader};
use petrel_proto::wire::{info3, FieldType, FrameType, MSG_HEADER_LEN, PROTO_HEADER_LEN};
use petrel_proto::ResultCode;
use petrel_storage::exp::Program;

use super::answer::{self, CmdError};
use super::request::{Kind, Single};
use super::{delete, read, read_touch, udf, write};
use crate::client_counters::RequestKind;
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
    execute(node, &single, out, 0, Origin::Client).await;
    end_frame(out, start, FrameType::Message as u8);
}

/// Serves one batch row, appending its answer message (indexed by the row) to `out`.
pub(crate) async fn serve_row(
    node: &Node,
    row: &BatchRow<'_>,
    batch_filter: Option<BatchFilter<'_>>,
    out: &mut Vec<u8>,
    hops: u32,
) {
    let single = match Single::parse(node, row.message, Some(row.digest), batch_filter.map(|f| f.program)) {
        Ok(s) => s,
        Err(e) => return answer::error(out, &e.into(), row.index),
    };
    if let Some(cluster) = node.cluster() {
        match route(cluster, &single, hops).await {
            Route::Local => {}
            Route::Proxy(to) => {
                // The client's map is behind: the row runs there as a single request.
                node.counters.proxied_requests.fetch_add(1, Ordering::Relaxed);
                let answer = cluster.proxy(to, standalone(row, batch_filter.map(|f| f.raw)), hops).await;
                return append_proxied_row(out, answer, row.index);
            }
            Route::Unavailable => return answer::code(out, ResultCode::Unavailable, row.index),
        }
    }
    execute(node, &single, out, row.index, Origin::BatchRow).await;
}

/// Runs a single-record request built on this node (a background job's write to `digest`)
/// here, where the partition's acting master must be; returns its result code.
pub(crate) async fn run_local(node: &Node, body: &[u8], digest: petrel_proto::Digest) -> ResultCode {
    let Ok((msg, _)) = Message::parse(body, petrel_proto::message::MessageLimits::default()) else {
        return ResultCode::Parameter;
    };
    let mut out = Vec::new();
    match Single::parse(node, msg, Some(digest), None) {
        Err(e) => answer::error(&mut out, &e.into(), 0),
        Ok(single) => {
            // At the hop limit, a partition mastered elsewhere is unavailable, never forwarded.
            if let Some(cluster) = node.cluster() {
                if route(cluster, &single, PROXY_HOPS_MAX).await != Route::Local {
                    return ResultCode::Unavailable;
                }
            }
            execute(node, &single, &mut out, 0, Origin::Job).await;
        }
    }
    // The answer message's result code byte.
    out.get(5).and_then(|c| ResultCode::from_u8(*c)).unwrap_or(ResultCode::Unknown)
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

/// Who asked for a command run here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A client's single-record request.
    Client,
    /// A row of a client's batch.
    BatchRow,
    /// A background job's write.
    Job,
}

/// Runs the command here and appends its answer message.
async fn execute(node: &Node, single: &Single<'_, '_>, out: &mut Vec<u8>, row_index: u32, origin: Origin) {
    let started = Instant::now();
    let answer_at = out.len();
    let batch_row = origin == Origin::BatchRow;
    let result: Result<(), CmdError> = match single.kind {
        // Like Aerospike, a single-record read naming no bins and not asking for all of them
        // is refused.
        Kind::Read if !batch_row && read::selects_nothing(single) => {
            Err(petrel_storage::StorageError::Parameter("no bins selected").into())
        }
        Kind::Read => read::bins(single, out, row_index),
        Kind::Exists => read::exists(single, out, row_index),
        Kind::ReadOps => read::operate(single, out, row_index),
        Kind::Write => write::apply(node, single, out, row_index).await,
        Kind::Delete => delete::apply(node, single, out, row_index).await,
        Kind::Udf => udf::apply(node, single, out, row_index).await,
    };
    match result {
        Err(e) => answer::error(out, &e, row_index),
        Ok(()) if matches!(single.kind, Kind::Read | Kind::Exists | Kind::ReadOps) => {
            read_touch::after_read(node, single).await;
        }
        Ok(()) => {}
    }
    let kind = match (single.is_write(), batch_row) {
        _ if single.kind == Kind::Udf => LatencyKind::Udf,
        (true, false) => LatencyKind::Write,
        (false, false) => LatencyKind::Read,
        (true, true) => LatencyKind::BatchSubWrite,
        (false, true) => LatencyKind::BatchSubRead,
    };
    single.sns.latencies.record(kind, started.elapsed());
    if origin == Origin::Client {
        let counted = match single.kind {
            Kind::Read | Kind::Exists | Kind::ReadOps => RequestKind::Read,
            Kind::Write | Kind::Udf => RequestKind::Write,
            Kind::Delete => RequestKind::Delete,
        };
        // The answer message's result code byte.
        let code = out.get(answer_at + 5).and_then(|c| ResultCode::from_u8(*c)).unwrap_or(ResultCode::Unknown);
        single.sns.client.count(counted, code);
    }
}

/// A batch's filter: its bytes (forwarded with rows served elsewhere) and its compiled form.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchFilter<'a> {
    pub raw: &'a [u8],
    pub program: &'a Program,
}

/// A batch row as a standalone message (its digest as a field), to run on another node; a
/// row without a filter of its own carries the batch's.
fn standalone(row: &BatchRow<'_>, batch_filter: Option<&[u8]>) -> Vec<u8> {
    let m = &row.message;
    let filter = batch_filter.filter(|_| m.field(FieldType::Filter).is_none());
    let extra = 1 + u16::from(filter.is_some());
    let mut buf = Vec::with_capacity(
        MSG_HEADER_LEN + 25 + filter.map_or(0, |f| f.len() + 5) + m.fields_bytes().len() + m.ops_bytes().len(),
    );
    MsgHeader { n_fields: m.header.n_fields + extra, ..m.header }.write(&mut buf);
    write_field(&mut buf, FieldType::Digest as u8, row.digest.as_bytes());
    if let Some(f) = filter {
        write_field(&mut buf, FieldType::Filter as u8, f);
    }
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

#[cfg(test)]
mod tests {
    use petrel_proto::batch::{encode_row, BatchRows};
    use petrel_proto::message::{Message, MessageLimits};
    use petrel_proto::wire::{info1, FieldType};
    use petrel_proto::Digest;

    use super::*;

    #[test]
    fn a_forwarded_row_carries_the_batch_filter() {
        let mut body = Vec::new();
        MsgHeader { info1: info1::READ, n_fields: 1, ..Default::default() }.write(&mut body);
        write_field(&mut body, FieldType::Namespace as u8, b"test");
        let (m, _) = Message::parse(&body, MessageLimits::default()).expect("row message");
        let mut field = vec![0, 0, 0, 1, 0];
        encode_row(&mut field, 0, &Digest([7; 20]), Some(&m));
        let (mut rows, _) = BatchRows::parse(&field, MessageLimits::default()).expect("batch field");
        let row = rows.next_row().expect("a row").expect("parses");
        let filter = [0x93, 0x01, 0x02, 0x02];
        let with = standalone(&row, Some(&filter));
        let (msg, _) = Message::parse(&with, MessageLimits::default()).expect("message");
        assert_eq!(msg.field(FieldType::Filter), Some(&filter[..]));
        assert_eq!(msg.field(FieldType::Digest), Some(&[7u8; 20][..]));
        assert_eq!(msg.field(FieldType::Namespace), Some(&b"test"[..]));
        let without = standalone(&row, None);
        let (msg, _) = Message::parse(&without, MessageLimits::default()).expect("message");
        assert_eq!(msg.field(FieldType::Filter), None);
    }
}
