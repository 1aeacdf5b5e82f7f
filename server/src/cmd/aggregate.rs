//! Aggregations: a query or scan carrying a stream UDF (UDF_OP 1). The request is checked
//! here, then a blocking worker walks the partitions this node masters (as the query or scan
//! would, index range and filter expression included), pushes each record through the
//! module's stream pipeline ([`crate::udf::aggregate`]) and hands the values that come out to
//! this task in bounded batches, which answers each as a record with a `SUCCESS` bin while
//! the walk goes on. The client runs the pipeline's final `reduce` over every node's values.
//! The clients send aggregations without partition tracking, so no per-partition "done"
//! markers are answered; a failing function ends the answer with code 100.

use std::collections::HashMap;
use std::sync::Arc;

use petrel_cluster::Route;
use petrel_proto::message::{write_op, Message, MessageLimits};
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::particle;
use petrel_proto::wire::{FieldType, OpType};
use petrel_proto::ResultCode;
use petrel_storage::namespace::{RecordMeta, ScanRecord};
use tokio::io::AsyncWrite;
use tokio::sync::{mpsc, Semaphore};

use super::answer::{self, Stream};
use super::scan::{self, ScanRequest};
use crate::node::{Node, ServiceNamespace};
use crate::udf::aggregate::Aggregation;
use crate::udf::lua::RecordIn;
use crate::udf::Module;

/// Answer bytes gathered before they are handed to the answering task.
const ANSWER_BATCH_BYTES: usize = 64 << 10;
/// Batches in flight between the worker and the answering task.
const BATCHES_IN_FLIGHT: usize = 4;
/// Aggregations running at once on a node (each holds a blocking thread and a Lua state of up
/// to 64 MiB); more wait for a turn.
const RUNNING_MAX: usize = 8;
static RUNNING: Semaphore = Semaphore::const_new(RUNNING_MAX);

/// UDF_OP 1: a stream UDF over the records.
pub(crate) fn is_aggregation(op: &[u8]) -> bool {
    op == [1]
}

enum Chunk {
    Answers(Vec<u8>),
    End(ResultCode),
}

/// What the stream function is and is called with.
struct Call {
    module: Arc<Module>,
    function: String,
    args: Vec<MsgValue>,
}

fn check(node: &Node, sns: &ServiceNamespace, msg: &Message<'_>) -> Result<Call, ResultCode> {
    scan::parse(msg, &sns.ns, false)?;
    let field = |t: FieldType| msg.field(t).map(|b| String::from_utf8_lossy(b).into_owned());
    let (Some(package), Some(function)) = (field(FieldType::UdfPackageName), field(FieldType::UdfFunction)) else {
        return Err(ResultCode::Parameter);
    };
    let args = match msg.field(FieldType::UdfArgList) {
        // The clients send an empty field for a call without arguments.
        None | Some([]) => Vec::new(),
        Some(raw) => match msgpack::decode(raw) {
            Ok(MsgValue::List(items)) => items,
            _ => return Err(ResultCode::Parameter),
        },
    };
    let Some(module) = node.udfs.get(&package) else {
        tracing::info!(module = package, "aggregation names a UDF module that is not registered");
        return Err(ResultCode::UdfExecution);
    };
    Ok(Call { module, function, args })
}

pub(crate) async fn run<W: AsyncWrite + Unpin>(
    node: &Node,
    sns: &ServiceNamespace,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    sink: &mut W,
) -> std::io::Result<()> {
    let call = match check(node, sns, msg).and_then(|c| Ok((c, node.arc().ok_or(ResultCode::Unknown)?))) {
        Ok(c) => c,
        Err(code) => {
            answer::error_frame(out, code, true);
            return Ok(());
        }
    };
    let (call, node_arc) = call;
    let mut body = Vec::with_capacity(22 + msg.fields_bytes().len() + msg.ops_bytes().len());
    msg.header.write(&mut body);
    body.extend_from_slice(msg.fields_bytes());
    body.extend_from_slice(msg.ops_bytes());
    let Ok(turn) = RUNNING.acquire().await else {
        answer::error_frame(out, ResultCode::Unknown, true);
        return Ok(());
    };
    let (tx, mut rx) = mpsc::channel(BATCHES_IN_FLIGHT);
    // The worker stops at its next hand-over once this task stops receiving (the client left).
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        let code = match walk(&node_arc, &body, &call, &tx) {
            Ok(()) => ResultCode::Ok,
            Err(code) => code,
        };
        let _ = tx.blocking_send(Chunk::End(code));
    });
    let mut stream = Stream::begin(out, sink);
    // A worker that ended without saying how (it panicked) fails the answer.
    let mut code = ResultCode::Unknown;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Chunk::Answers(bytes) => {
                stream.out.extend_from_slice(&bytes);
                stream.flush_if_full().await?;
            }
            Chunk::End(c) => code = c,
        }
    }
    stream.finish(code);
    Ok(())
}

/// Walks the request's partitions through the pipeline; the result code of a failure.
fn walk(node: &Node, body: &[u8], call: &Call, tx: &mpsc::Sender<Chunk>) -> Result<(), ResultCode> {
    let (msg, _) = Message::parse(body, MessageLimits::default()).map_err(|_| ResultCode::Parameter)?;
    let sns = node.namespace(msg.field(FieldType::Namespace).unwrap_or(b"")).ok_or(ResultCode::Namespace)?;
    let ns = &sns.ns;
    let request = scan::parse(&msg, ns, false)?;
    let udf_failed = |message: String| {
        tracing::info!(module = call.module.name, function = call.function, message, "aggregation failed");
        ResultCode::UdfExecution
    };
    let mut agg =
        Aggregation::start(&call.module.name, &call.module.source, &call.function, &call.args).map_err(udf_failed)?;
    let mut set_names: HashMap<u16, Option<Vec<u8>>> = HashMap::new();
    let mut records: Vec<RecordIn> = Vec::new();
    let mut answers = Vec::new();
    let mut fed = 0usize;
    for &(pid, after) in &request.work {
        if fed >= request.records_max {
            break;
        }
        // The client left: stop here, even when the values so far are too few to hand over.
        if tx.is_closed() {
            return Err(ResultCode::Timeout);
        }
        if node.cluster().is_some_and(|c| c.route(sns.index, pid, true) != Route::Local) {
            continue;
        }
        records.clear();
        let mut bad = false;
        let visit = |r: &ScanRecord<'_>| {
            match record_in(ns, &request, r, &mut set_names) {
                Some(rec) => records.push(rec),
                None => bad = true,
            }
            true
        };
        let limit = request.records_max - fed;
        let walked = match &request.index {
            Some(q) => {
                ns.query_partition(&q.index, pid, &q.range, after, request.set_id, limit, request.filter(), visit)
            }
            None => ns.scan_partition_filtered(pid, after, request.set_id, limit, request.filter(), visit),
        };
        let progress = walked.map_err(|e| e.result_code())?;
        if bad {
            return Err(ResultCode::Unknown);
        }
        fed += progress.returned;
        for rec in &records {
            agg.push(rec).map_err(udf_failed)?;
        }
        answer_values(agg.take().map_err(udf_failed)?, &mut answers);
        if answers.len() >= ANSWER_BATCH_BYTES {
            hand_over(tx, &mut answers)?;
        }
    }
    agg.finish().map_err(udf_failed)?;
    answer_values(agg.take().map_err(udf_failed)?, &mut answers);
    hand_over(tx, &mut answers)
}

fn hand_over(tx: &mpsc::Sender<Chunk>, answers: &mut Vec<u8>) -> Result<(), ResultCode> {
    if answers.is_empty() {
        return Ok(());
    }
    tx.blocking_send(Chunk::Answers(std::mem::take(answers))).map_err(|_| ResultCode::Timeout)
}

/// Each value as a record with a `SUCCESS` bin, as the clients read aggregation results.
fn answer_values(values: Vec<MsgValue>, out: &mut Vec<u8>) {
    for v in values {
        let (p, bytes) = particle::from_msgpack(&v);
        let mark = answer::begin(out, ResultCode::Ok, RecordMeta::default(), 0);
        write_op(out, OpType::Read as u8, p, b"SUCCESS", &bytes);
        mark.set_n_ops(out, 1);
    }
}

/// The record as the stream function sees it (the request's bins when it selects some);
/// `None` when a stored bin cannot be decoded.
fn record_in(
    ns: &petrel_storage::Namespace,
    request: &ScanRequest<'_>,
    r: &ScanRecord<'_>,
    set_names: &mut HashMap<u16, Option<Vec<u8>>>,
) -> Option<RecordIn> {
    let mut bins = Vec::new();
    for b in r.image.bins().flatten() {
        if request.selects(b.name) {
            bins.push((
                String::from_utf8_lossy(b.name).into_owned(),
                particle::to_msgpack(b.value.particle, b.value.bytes).ok()?,
            ));
        }
    }
    let set = match r.set_id {
        0 => String::new(),
        id => set_names
            .entry(id)
            .or_insert_with(|| ns.set_name(id))
            .as_deref()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .unwrap_or_default(),
    };
    Some(RecordIn {
        exists: true,
        bins,
        generation: r.meta.generation,
        ttl: super::udf::ttl_left(ns, r.meta),
        set,
        key: r.image.key.and_then(|k| particle::to_msgpack(k.particle, k.bytes).ok()),
        digest: r.digest.0,
        lut_ms: r.meta.lut_ms,
    })
}
