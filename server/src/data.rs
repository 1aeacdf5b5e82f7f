//! AS_MSG commands: single-record reads and writes, batches, and partition scans.
//!
//! Each command is parsed from a borrowed body, applied to the namespace, and answered into
//! the connection's output buffer; long answers (batches, scans) are written out in chunks
//! as they grow so that memory stays bounded.

use std::sync::atomic::Ordering;
use std::time::Instant;

use petrel_cluster::{ClusterNode, CommitLevel, Route, WriteCopy, PROXY_HOPS_MAX};

use petrel_proto::message::{
    begin_frame, end_frame, write_field, write_key_field, write_op, Message, MessageLimits, MsgHeader,
};
use petrel_proto::wire::{info1, info2, info3, FieldType, FrameType, OpType, MSG_HEADER_LEN, PROTO_HEADER_LEN};
use petrel_proto::{Digest, ResultCode};
use petrel_storage::namespace::OperateOutcome;
use petrel_storage::ops::{ExistsAction, GenerationPolicy, Op, OperateRequest, ReadSelect, Ttl, WritePolicy};
use petrel_storage::record::KeyRef;
use petrel_storage::value::ParticleRef;
use petrel_storage::{RecordMeta, StorageError};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::latency::LatencyKind;
use crate::node::{Node, ServiceNamespace};

/// Write out a streaming answer once this much is buffered.
const FLUSH_BYTES: usize = 256 * 1024;

/// Once a streamed answer holds `FLUSH_BYTES`, closes the frame being built, writes it out,
/// and begins the next one.
async fn flush_if_full<W: AsyncWrite + Unpin>(
    out: &mut Vec<u8>,
    frame_start: &mut usize,
    sink: &mut W,
) -> std::io::Result<()> {
    if out.len() - *frame_start >= FLUSH_BYTES {
        end_frame(out, *frame_start, FrameType::Message as u8);
        sink.write_all(out).await?;
        out.clear();
        *frame_start = begin_frame(out);
    }
    Ok(())
}

/// Answers one AS_MSG frame body. Streams to `sink` when the answer is long. `hops` counts
/// the nodes a proxied request has passed through (0 from a client).
pub async fn handle<W: AsyncWrite + Unpin>(
    node: &Node,
    body: &[u8],
    out: &mut Vec<u8>,
    sink: &mut W,
    hops: u32,
) -> std::io::Result<()> {
    let limits = MessageLimits::default();
    let msg = match Message::parse(body, limits) {
        Ok((msg, _)) => msg,
        Err(e) => {
            tracing::debug!(error = %e, "malformed message");
            node.counters.malformed_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            error_frame(out, ResultCode::Parameter, true);
            return Ok(());
        }
    };
    let h = msg.header;
    if h.info1 & info1::BATCH != 0 {
        return batch(node, &msg, out, sink, hops).await;
    }
    if h.info3 & info3::PARTITION_DONE != 0
        || msg.field(FieldType::PidArray).is_some()
        || msg.field(FieldType::DigestArray).is_some()
    {
        return scan(node, &msg, out, sink).await;
    }
    if let Some(cluster) = node.cluster() {
        match route(node, cluster, &msg, hops).await {
            Route::Local => {}
            Route::Proxy(to) => {
                node.counters.proxied_requests.fetch_add(1, Ordering::Relaxed);
                match cluster.proxy(to, body.to_vec(), hops).await {
                    Ok(frames) => out.extend_from_slice(&frames),
                    Err(code) => error_frame(out, code, false),
                }
                return Ok(());
            }
            Route::Unavailable => {
                error_frame(out, ResultCode::Unavailable, false);
                return Ok(());
            }
        }
    }
    let start = begin_frame(out);
    single(node, &msg, out, 0, false).await;
    end_frame(out, start, FrameType::Message as u8);
    Ok(())
}

/// Where a single-record request is served in a cluster. A request whose namespace or
/// digest is bad is served here, which answers the error.
async fn route(node: &Node, cluster: &ClusterNode, msg: &Message<'_>, hops: u32) -> Route {
    let Some(sns) = msg.field(FieldType::Namespace).and_then(|n| node.namespace(n)) else { return Route::Local };
    let Ok(digest) = digest_of(msg) else { return Route::Local };
    let write = msg.header.info2 & info2::WRITE != 0;
    // A write waits for the plan of a view agreed a moment ago, so that it is never taken
    // under the plan of a view that is gone.
    if write && !cluster.wait_for_plan().await {
        return Route::Unavailable;
    }
    match cluster.route(sns.index, digest.partition_id(), write) {
        Route::Proxy(_) if hops >= PROXY_HOPS_MAX => Route::Unavailable,
        r => r,
    }
}

/// A frame with one message carrying `code`.
fn error_frame(out: &mut Vec<u8>, code: ResultCode, last: bool) {
    let start = begin_frame(out);
    MsgHeader { result_code: code.code(), info3: if last { info3::LAST } else { 0 }, ..Default::default() }.write(out);
    end_frame(out, start, FrameType::Message as u8);
}

/// Writes one answer message with `meta` and `code`, and room for ops; returns where the
/// header starts so the op count can be patched.
fn begin_answer(out: &mut Vec<u8>, code: ResultCode, meta: RecordMeta, row_index: u32) -> usize {
    let at = out.len();
    MsgHeader {
        result_code: code.code(),
        generation: meta.generation as u32,
        record_ttl: meta.void_time,
        transaction_ttl: row_index,
        ..Default::default()
    }
    .write(out);
    at
}

fn set_ops_count(out: &mut [u8], header_at: usize, n_ops: usize) {
    let n = (n_ops.min(u16::MAX as usize) as u16).to_be_bytes();
    out[header_at + MSG_HEADER_LEN - 2..header_at + MSG_HEADER_LEN].copy_from_slice(&n);
}

fn answer_error(out: &mut Vec<u8>, err: &StorageError, row_index: u32) {
    let meta = match err {
        StorageError::Generation { actual } => RecordMeta { generation: *actual, ..Default::default() },
        _ => RecordMeta::default(),
    };
    begin_answer(out, err.result_code(), meta, row_index);
}

/// Decodes the policy bits of a write.
fn write_policy(h: &MsgHeader) -> Result<WritePolicy, StorageError> {
    let exists = if h.info3 & info3::UPDATE_ONLY != 0 {
        ExistsAction::UpdateOnly
    } else if h.info3 & info3::REPLACE_ONLY != 0 {
        ExistsAction::ReplaceOnly
    } else if h.info3 & info3::CREATE_OR_REPLACE != 0 {
        ExistsAction::Replace
    } else if h.info2 & info2::CREATE_ONLY != 0 {
        ExistsAction::CreateOnly
    } else {
        ExistsAction::Update
    };
    let generation = if h.info2 & info2::GENERATION != 0 {
        GenerationPolicy::ExpectEqual(h.generation)
    } else if h.info2 & info2::GENERATION_GT != 0 {
        GenerationPolicy::ExpectGreater(h.generation)
    } else {
        GenerationPolicy::None
    };
    Ok(WritePolicy {
        exists,
        generation,
        ttl: Ttl::from_wire(h.record_ttl)?,
        respond_all_ops: h.info2 & info2::RESPOND_ALL_OPS != 0,
    })
}

/// Converts wire ops to storage ops.
/// A request's ops; inline up to 8, so common requests do not allocate for them.
type Ops<'a> = smallvec::SmallVec<[Op<'a>; 8]>;

fn storage_ops<'a>(msg: &Message<'a>) -> Result<Ops<'a>, StorageError> {
    let mut ops = Ops::with_capacity(msg.header.n_ops as usize);
    for w in msg.ops() {
        let value = ParticleRef { particle: w.particle, bytes: w.value };
        let op = match OpType::from_u8(w.op_type) {
            Some(OpType::Read) => Op::Read { bin: w.name },
            Some(OpType::Write) => Op::Write { bin: w.name, value },
            Some(OpType::CdtRead) => Op::CdtRead { bin: w.name, payload: w.value },
            Some(OpType::CdtModify) => Op::CdtModify { bin: w.name, payload: w.value },
            Some(OpType::Incr) => Op::Add { bin: w.name, value },
            Some(OpType::Append) => Op::Append { bin: w.name, value },
            Some(OpType::Prepend) => Op::Prepend { bin: w.name, value },
            Some(OpType::Touch) => Op::Touch,
            Some(OpType::Delete) => Op::DeleteRecord,
            Some(_) => return Err(StorageError::Unsupported("expression, bit and HLL operations")),
            None => return Err(StorageError::Parameter("unknown op type")),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// The record's digest: the DIGEST field, else computed from SET and KEY.
fn digest_of(msg: &Message<'_>) -> Result<Digest, StorageError> {
    if let Some(d) = msg.field(FieldType::Digest) {
        return Digest::from_slice(d).ok_or(StorageError::Parameter("digest must be 20 bytes"));
    }
    let key = msg.field(FieldType::Key).ok_or(StorageError::Parameter("no digest and no key"))?;
    let (&t, bytes) = key.split_first().ok_or(StorageError::Parameter("empty key field"))?;
    Ok(Digest::compute_raw(msg.field(FieldType::Set).unwrap_or(b""), t, bytes))
}

fn key_of<'a>(msg: &Message<'a>) -> Option<KeyRef<'a>> {
    let key = msg.field(FieldType::Key)?;
    let (&particle, bytes) = key.split_first()?;
    Some(KeyRef { particle, bytes })
}

/// Runs one single-record command and appends its answer message (no frame header). In a
/// cluster, a write is answered only once every other owner has applied it (unless the
/// client asked for commit level "master").
async fn single(node: &Node, msg: &Message<'_>, out: &mut Vec<u8>, row_index: u32, batch_row: bool) {
    let started = Instant::now();
    let Some(ns_field) = msg.field(FieldType::Namespace) else {
        answer_error(out, &StorageError::Parameter("no namespace"), row_index);
        return;
    };
    let Some(sns) = node.namespace(ns_field) else {
        answer_error(out, &StorageError::NamespaceNotFound, row_index);
        return;
    };
    let is_write = msg.header.info2 & info2::WRITE != 0;
    let answer_at = out.len();
    let cluster = node.cluster().filter(|_| is_write);
    match run_single(sns, msg, out, row_index, cluster.is_some()) {
        Err(e) => answer_error(out, &e, row_index),
        Ok(None) => {}
        Ok(Some(copy)) => {
            if let Some(cluster) = cluster {
                let commit =
                    if msg.header.info3 & info3::COMMIT_MASTER != 0 { CommitLevel::Master } else { CommitLevel::All };
                if let Err(code) = cluster.write_copies(sns.index, copy, commit).await {
                    // Applied here but not on every owner: the client must not take it as
                    // done.
                    node.counters.replication_failures.fetch_add(1, Ordering::Relaxed);
                    out.truncate(answer_at);
                    begin_answer(out, code, RecordMeta::default(), row_index);
                }
            }
        }
    }
    let kind = match (is_write, batch_row) {
        (true, false) => LatencyKind::Write,
        (false, false) => LatencyKind::Read,
        (true, true) => LatencyKind::BatchSubWrite,
        (false, true) => LatencyKind::BatchSubRead,
    };
    sns.latencies.record(kind, started.elapsed());
}

/// Appends an operate's answer: its metadata and one op per result (a nil particle for a
/// result without value).
fn answer_operate(out: &mut Vec<u8>, outcome: &OperateOutcome, row_index: u32) {
    let at = begin_answer(out, ResultCode::Ok, outcome.meta, row_index);
    for r in &outcome.results {
        match &r.value {
            Some(p) => write_op(out, r.op_type as u8, p.particle, &r.bin, &p.bytes),
            None => write_op(out, r.op_type as u8, 0, &r.bin, &[]),
        }
    }
    set_ops_count(out, at, outcome.results.len());
}

/// Runs a single-record command into `out`. With `replicated`, a write also returns what
/// the other owners must apply.
fn run_single(
    sns: &ServiceNamespace,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    row_index: u32,
    replicated: bool,
) -> Result<Option<WriteCopy>, StorageError> {
    let ns = &sns.ns;
    let h = msg.header;
    if msg.field(FieldType::Filter).is_some() {
        // Answering without applying the filter would return records it excludes.
        return Err(StorageError::Unsupported("filter expressions"));
    }
    let digest = digest_of(msg)?;
    let set = msg.field(FieldType::Set).unwrap_or(b"");
    if h.info2 & info2::WRITE != 0 {
        let policy = write_policy(&h)?;
        if h.info2 & info2::DELETE != 0 {
            ns.delete(&digest, policy.generation)?;
            begin_answer(out, ResultCode::Ok, RecordMeta::default(), row_index);
            return Ok(replicated.then_some(WriteCopy::Delete { digest }));
        }
        let ops = storage_ops(msg)?;
        if ops.is_empty() {
            return Err(StorageError::Parameter("write without ops"));
        }
        let mut outcome = ns.operate(&OperateRequest { digest, set, key: key_of(msg), policy, ops: &ops })?;
        answer_operate(out, &outcome, row_index);
        if !replicated {
            return Ok(None);
        }
        return Ok(Some(match outcome.image.take() {
            Some(image) => WriteCopy::Record { digest, set: set.to_vec(), meta: outcome.meta, image },
            // The ops removed the record.
            None => WriteCopy::Delete { digest },
        }));
    }
    // Reads.
    if h.info1 & info1::GET_NO_BINS != 0 {
        let meta = ns.exists(&digest)?;
        begin_answer(out, ResultCode::Ok, meta, row_index);
        return Ok(None);
    }
    let all = h.info1 & info1::GET_ALL != 0;
    let plain_reads = msg.ops().all(|o| o.op_type == OpType::Read as u8);
    if plain_reads {
        let names: Vec<&[u8]> = msg.ops().map(|o| o.name).collect();
        let select = if all || names.is_empty() || names.iter().any(|n| n.is_empty()) {
            ReadSelect::All
        } else {
            ReadSelect::Bins(&names)
        };
        // The header is written first with a placeholder meta, then patched.
        let at = begin_answer(out, ResultCode::Ok, RecordMeta::default(), row_index);
        let mut n = 0usize;
        let res = ns.read(&digest, select, |b| {
            write_op(out, OpType::Read as u8, b.value.particle, b.name, b.value.bytes);
            n += 1;
        });
        match res {
            Ok(meta) => {
                out[at + 6..at + 10].copy_from_slice(&(meta.generation as u32).to_be_bytes());
                out[at + 10..at + 14].copy_from_slice(&meta.void_time.to_be_bytes());
                set_ops_count(out, at, n);
                Ok(None)
            }
            Err(e) => {
                out.truncate(at);
                Err(e)
            }
        }
    } else {
        let ops = storage_ops(msg)?;
        let policy = WritePolicy { respond_all_ops: h.info2 & info2::RESPOND_ALL_OPS != 0, ..Default::default() };
        let outcome = ns.operate(&OperateRequest { digest, set, key: None, policy, ops: &ops })?;
        answer_operate(out, &outcome, row_index);
        Ok(None)
    }
}

// ---- batch ----

/// Batch-index row flags.
mod row {
    pub const REPEAT: u8 = 0x01;
    pub const INFO: u8 = 0x02;
    pub const GEN: u8 = 0x04;
    pub const TTL: u8 = 0x08;
    pub const INFO4: u8 = 0x10;
}

/// A batch row's own message, rebuilt as a standalone AS_MSG so it runs through `single`.
fn row_message(
    buf: &mut Vec<u8>,
    header: MsgHeader,
    digest: &[u8],
    fields: &[u8],
    n_fields: u16,
    ops: &[u8],
    n_ops: u16,
) {
    buf.clear();
    MsgHeader { n_fields: n_fields + 1, n_ops, ..header }.write(buf);
    write_field(buf, FieldType::Digest as u8, digest);
    buf.extend_from_slice(fields);
    buf.extend_from_slice(ops);
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// Skips `n` length-prefixed items (fields or ops), returning their bytes.
    fn items(&mut self, n: u16) -> Option<&'a [u8]> {
        let start = self.pos;
        for _ in 0..n {
            let size = self.u32()? as usize;
            self.take(size)?;
        }
        Some(&self.buf[start..self.pos])
    }
}

/// A full batch row's header, fields (with their count) and ops (with their count), which
/// REPEAT rows reuse.
type RowTemplate<'a> = (MsgHeader, &'a [u8], u16, &'a [u8], u16);

async fn batch<W: AsyncWrite + Unpin>(
    node: &Node,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    sink: &mut W,
    hops: u32,
) -> std::io::Result<()> {
    node.counters.batch_index_initiate.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let Some(field) = msg.field(FieldType::BatchIndex) else {
        error_frame(out, ResultCode::Parameter, true);
        return Ok(());
    };
    let mut c = Cursor { buf: field, pos: 0 };
    let (Some(n_rows), Some(_parent_flags)) = (c.u32(), c.u8()) else {
        error_frame(out, ResultCode::Parameter, true);
        return Ok(());
    };
    if n_rows > node.config.service.batch_max_requests {
        error_frame(out, ResultCode::BatchMaxRequests, true);
        return Ok(());
    }
    let mut row_buf = Vec::new();
    // The last full row's header, fields and ops, reused by REPEAT rows.
    let mut prev: Option<RowTemplate<'_>> = None;
    let mut frame_start = begin_frame(out);
    for _ in 0..n_rows {
        let parsed = (|| {
            let index = c.u32()?;
            let digest = c.take(20)?;
            let flags = c.u8()?;
            if flags & row::REPEAT != 0 {
                return Some((index, digest, prev?));
            }
            let mut h = MsgHeader { info1: c.u8()?, ..Default::default() };
            if flags == 0 {
                // Legacy read-only row: info1, field and op counts follow.
            } else {
                if flags & row::INFO != 0 {
                    h.info2 = c.u8()?;
                    h.info3 = c.u8()?;
                }
                if flags & row::INFO4 != 0 {
                    h.info4 = c.u8()?;
                }
                if flags & row::GEN != 0 {
                    h.generation = c.u16()? as u32;
                }
                if flags & row::TTL != 0 {
                    h.record_ttl = c.u32()?;
                }
            }
            let n_fields = c.u16()?;
            let n_ops = c.u16()?;
            let fields = c.items(n_fields)?;
            let ops = c.items(n_ops)?;
            let full = (h, fields, n_fields, ops, n_ops);
            prev = Some(full);
            Some((index, digest, full))
        })();
        let Some((index, digest, (h, fields, n_fields, ops, n_ops))) = parsed else {
            // A malformed row ends the batch: answer what was done, then the error.
            node.counters.malformed_requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            end_frame(out, frame_start, FrameType::Message as u8);
            error_frame(out, ResultCode::Parameter, true);
            return Ok(());
        };
        row_message(&mut row_buf, h, digest, fields, n_fields, ops, n_ops);
        match Message::parse(&row_buf, MessageLimits::default()) {
            Ok((row_msg, _)) => match node.cluster() {
                Some(cluster) => match route(node, cluster, &row_msg, hops).await {
                    Route::Local => single(node, &row_msg, out, index, true).await,
                    Route::Proxy(to) => {
                        // A row for a partition served elsewhere (the client's map is
                        // behind): run it there as a single request.
                        node.counters.proxied_requests.fetch_add(1, Ordering::Relaxed);
                        let answer = cluster.proxy(to, row_buf.clone(), hops).await;
                        append_proxied_row(out, answer, index);
                    }
                    Route::Unavailable => {
                        begin_answer(out, ResultCode::Unavailable, RecordMeta::default(), index);
                    }
                },
                None => single(node, &row_msg, out, index, true).await,
            },
            Err(_) => answer_error(out, &StorageError::Parameter("malformed batch row"), index),
        }
        flush_if_full(out, &mut frame_start, sink).await?;
    }
    MsgHeader { info3: info3::LAST, ..Default::default() }.write(out);
    end_frame(out, frame_start, FrameType::Message as u8);
    Ok(())
}

/// Appends the answer of a batch row run on another node, as the row's answer.
fn append_proxied_row(out: &mut Vec<u8>, answer: Result<Vec<u8>, ResultCode>, index: u32) {
    let at = out.len();
    match answer {
        // One frame holding one message: the proto header, then the message.
        Ok(frame) if frame.len() >= PROTO_HEADER_LEN + MSG_HEADER_LEN => {
            out.extend_from_slice(&frame[PROTO_HEADER_LEN..]);
            out[at + 14..at + 18].copy_from_slice(&index.to_be_bytes());
            out[at + 3] &= !info3::LAST;
        }
        Ok(_) => {
            begin_answer(out, ResultCode::Unknown, RecordMeta::default(), index);
        }
        Err(code) => {
            begin_answer(out, code, RecordMeta::default(), index);
        }
    }
}

// ---- scan ----

async fn scan<W: AsyncWrite + Unpin>(
    node: &Node,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    sink: &mut W,
) -> std::io::Result<()> {
    node.counters.scans_started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    let ns_name = msg.field(FieldType::Namespace).unwrap_or(b"");
    let Some(sns) = node.namespace(ns_name) else {
        error_frame(out, ResultCode::Namespace, true);
        return Ok(());
    };
    if msg.field(FieldType::IndexRange).is_some()
        || msg.field(FieldType::UdfOp).is_some()
        || msg.field(FieldType::Filter).is_some()
    {
        error_frame(out, ResultCode::UnsupportedFeature, true);
        return Ok(());
    }
    if msg.header.info2 & info2::WRITE != 0 {
        error_frame(out, ResultCode::UnsupportedFeature, true);
        return Ok(());
    }
    let ns = &sns.ns;
    let set_name = msg.field(FieldType::Set).unwrap_or(b"");
    let set_id = if set_name.is_empty() { None } else { Some(ns.set_id(set_name).unwrap_or(u16::MAX)) };
    let no_bins = msg.header.info1 & info1::GET_NO_BINS != 0;
    let bins: Vec<&[u8]> = msg.ops().filter(|o| !o.name.is_empty()).map(|o| o.name).collect();
    let mut limit = match msg.field(FieldType::MaxRecords) {
        Some(b) => match <[u8; 8]>::try_from(b) {
            Ok(a) => u64::from_be_bytes(a).min(usize::MAX as u64) as usize,
            Err(_) => {
                error_frame(out, ResultCode::Parameter, true);
                return Ok(());
            }
        },
        None => usize::MAX,
    };
    if limit == 0 {
        limit = usize::MAX;
    }
    // Partitions from the beginning (PID_ARRAY), and partitions to resume after a digest.
    let mut work: Vec<(u16, Option<Digest>)> = Vec::new();
    if let Some(pids) = msg.field(FieldType::PidArray) {
        if pids.len() % 2 != 0 || pids.len() / 2 > petrel_proto::PARTITIONS_COUNT {
            error_frame(out, ResultCode::Parameter, true);
            return Ok(());
        }
        for p in pids.chunks_exact(2) {
            let pid = u16::from_le_bytes([p[0], p[1]]);
            if pid as usize >= petrel_proto::PARTITIONS_COUNT {
                error_frame(out, ResultCode::Parameter, true);
                return Ok(());
            }
            work.push((pid, None));
        }
    }
    if let Some(digests) = msg.field(FieldType::DigestArray) {
        if digests.len() % 20 != 0 || digests.len() / 20 > petrel_proto::PARTITIONS_COUNT {
            error_frame(out, ResultCode::Parameter, true);
            return Ok(());
        }
        for d in digests.chunks_exact(20) {
            let d = Digest::from_slice(d).unwrap_or_default();
            work.push((d.partition_id(), Some(d)));
        }
    }
    if work.is_empty() {
        work.extend((0..petrel_proto::PARTITIONS_COUNT as u16).map(|p| (p, None)));
    }
    let ns_field = ns.name().as_bytes().to_vec();
    let mut set_names: std::collections::HashMap<u16, Option<Vec<u8>>> = std::collections::HashMap::new();
    let mut returned = 0usize;
    let mut frame_start = begin_frame(out);
    for (pid, after) in work {
        if returned >= limit {
            break;
        }
        // In a cluster a partition is scanned at its acting master; elsewhere it is reported
        // unavailable, and the client asks again where its refreshed map points.
        if node.cluster().is_some_and(|c| c.route(sns.index, pid, true) != Route::Local) {
            MsgHeader {
                info3: info3::PARTITION_DONE,
                result_code: ResultCode::Unavailable.code(),
                generation: pid as u32,
                ..Default::default()
            }
            .write(out);
            continue;
        }
        let res = ns.scan_partition(pid, after, set_id, limit - returned, |r| {
            let at = begin_answer(out, ResultCode::Ok, r.meta, 0);
            if no_bins {
                out[at + 1] = info1::GET_NO_BINS;
            }
            let mut n_fields = 2u16;
            write_field(out, FieldType::Namespace as u8, &ns_field);
            write_field(out, FieldType::Digest as u8, r.digest.as_bytes());
            if r.set_id != 0 {
                // Set names are looked up once per scan, not once per record.
                let name = set_names.entry(r.set_id).or_insert_with(|| ns.set_name(r.set_id));
                if let Some(name) = name {
                    write_field(out, FieldType::Set as u8, name);
                    n_fields += 1;
                }
            }
            if let Some(k) = r.image.key {
                write_key_field(out, k.particle, k.bytes);
                n_fields += 1;
            }
            out[at + 18..at + 20].copy_from_slice(&n_fields.to_be_bytes());
            let mut n_ops = 0;
            if !no_bins {
                for b in r.image.bins().flatten() {
                    if bins.is_empty() || bins.contains(&b.name) {
                        write_op(out, OpType::Read as u8, b.value.particle, b.name, b.value.bytes);
                        n_ops += 1;
                    }
                }
            }
            set_ops_count(out, at, n_ops);
            true
        });
        let progress = match res {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, pid, "scan failed");
                MsgHeader { info3: info3::LAST, result_code: e.result_code().code(), ..Default::default() }.write(out);
                end_frame(out, frame_start, FrameType::Message as u8);
                return Ok(());
            }
        };
        returned += progress.returned;
        if progress.complete {
            MsgHeader { info3: info3::PARTITION_DONE, generation: pid as u32, ..Default::default() }.write(out);
        }
        flush_if_full(out, &mut frame_start, sink).await?;
    }
    MsgHeader { info3: info3::LAST, ..Default::default() }.write(out);
    end_frame(out, frame_start, FrameType::Message as u8);
    sns.latencies.record(LatencyKind::PiQuery, started.elapsed());
    Ok(())
}
