//! Partition scans and queries: each requested partition is walked in digest order (a query
//! with an index range walks the index's matching records of the partition, also in digest
//! order, see [`super::index_query`]), from its start or after a digest, a batch of records
//! at a time without holding a sprig lock while answering (a filter expression, when sent,
//! is applied under the lock); each partition answered
//! "done", or "unavailable" in a cluster when this node is not its acting master (the client
//! asks again where its refreshed map points). Aggregations (stream UDFs) are answered by
//! [`super::aggregate`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use petrel_cluster::Route;
use petrel_proto::message::{write_field, write_key_field, write_op, Message, MsgHeader};
use petrel_proto::wire::{info1, info2, info3, FieldType, OpType};
use petrel_proto::{Digest, ResultCode, PARTITIONS_COUNT};
use petrel_storage::exp::Program;
use tokio::io::AsyncWrite;

use super::aggregate;
use super::answer::{self, Stream};
use super::index_query::{self, IndexQuery};
use super::request::carries_transaction;
use crate::latency::LatencyKind;
use crate::node::Node;

/// Fields every scanned record's answer carries: namespace and digest.
const SCAN_RECORD_FIELDS_MIN: u16 = 2;

/// What a scan asks for, checked before anything is read.
pub(crate) struct ScanRequest<'a> {
    pub(crate) set_id: Option<u16>,
    no_bins: bool,
    bins: Vec<&'a [u8]>,
    pub(crate) records_max: usize,
    /// The filter expression every returned record passes, compiled once.
    filter: Option<Program>,
    /// Partitions from their start (PID_ARRAY), and partitions to resume after a digest.
    pub(crate) work: Vec<(u16, Option<Digest>)>,
    /// The secondary index and range of a query; `None` for a scan.
    pub(crate) index: Option<IndexQuery>,
}

impl ScanRequest<'_> {
    pub(crate) fn filter(&self) -> Option<&Program> {
        self.filter.as_ref()
    }

    /// Whether the request's bin selection keeps bin `name`.
    pub(crate) fn selects(&self, name: &[u8]) -> bool {
        !self.no_bins && (self.bins.is_empty() || self.bins.contains(&name))
    }
}

/// UDF_OP 2: a record UDF run on each record, in the background.
pub(crate) fn is_background_udf(op: &[u8]) -> bool {
    op == [2]
}

/// Checks and decodes a scan or query; one with write ops only as a `background` job.
pub(crate) fn parse<'a>(
    msg: &Message<'a>,
    ns: &petrel_storage::Namespace,
    background: bool,
) -> Result<ScanRequest<'a>, ResultCode> {
    // Background jobs run record UDFs; foreground queries and scans run aggregations.
    let udf_runs = |op: &[u8]| if background { is_background_udf(op) } else { aggregate::is_aggregation(op) };
    if msg.field(FieldType::UdfOp).is_some_and(|op| !udf_runs(op))
        || (msg.header.info2 & info2::WRITE != 0) != background
        || carries_transaction(msg)
    {
        return Err(ResultCode::UnsupportedFeature);
    }
    let set_name = msg.field(FieldType::Set).unwrap_or(b"");
    // A set that does not exist matches nothing.
    let set_id = if set_name.is_empty() { None } else { Some(ns.set_id(set_name).unwrap_or(u16::MAX)) };
    let records_max = match msg.field(FieldType::MaxRecords) {
        Some(b) => {
            let n = u64::from_be_bytes(<[u8; 8]>::try_from(b).map_err(|_| ResultCode::Parameter)?);
            if n == 0 {
                usize::MAX
            } else {
                n.min(usize::MAX as u64) as usize
            }
        }
        None => usize::MAX,
    };
    let mut work = Vec::new();
    if let Some(pids) = msg.field(FieldType::PidArray) {
        if pids.len() % 2 != 0 || pids.len() / 2 > PARTITIONS_COUNT {
            return Err(ResultCode::Parameter);
        }
        for p in pids.chunks_exact(2) {
            let pid = u16::from_le_bytes([p[0], p[1]]);
            if pid as usize >= PARTITIONS_COUNT {
                return Err(ResultCode::Parameter);
            }
            work.push((pid, None));
        }
    }
    if let Some(digests) = msg.field(FieldType::DigestArray) {
        if digests.len() % 20 != 0 || digests.len() / 20 > PARTITIONS_COUNT {
            return Err(ResultCode::Parameter);
        }
        for d in digests.chunks_exact(20) {
            let d = Digest::from_slice(d).ok_or(ResultCode::Parameter)?;
            work.push((d.partition_id(), Some(d)));
        }
    }
    if work.is_empty() {
        work.extend((0..PARTITIONS_COUNT as u16).map(|p| (p, None)));
    }
    Ok(ScanRequest {
        set_id,
        no_bins: msg.header.info1 & info1::GET_NO_BINS != 0,
        bins: msg.ops().filter(|o| !o.name.is_empty()).map(|o| o.name).collect(),
        records_max,
        filter: msg.field(FieldType::Filter).map(Program::compile).transpose().map_err(|e| e.result_code())?,
        work,
        index: index_query::parse(msg, ns)?,
    })
}

pub(crate) async fn run<W: AsyncWrite + Unpin>(
    node: &Node,
    msg: &Message<'_>,
    out: &mut Vec<u8>,
    sink: &mut W,
) -> std::io::Result<()> {
    node.counters.scans_started.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let Some(sns) = node.namespace(msg.field(FieldType::Namespace).unwrap_or(b"")) else {
        answer::error_frame(out, ResultCode::Namespace, true);
        return Ok(());
    };
    if msg.header.info2 & info2::WRITE != 0 && msg.field(FieldType::UdfOp).is_none_or(is_background_udf) {
        super::background::start(node, msg, out);
        return Ok(());
    }
    if msg.field(FieldType::UdfOp).is_some_and(aggregate::is_aggregation) {
        return aggregate::run(node, sns, msg, out, sink).await;
    }
    let ns = &sns.ns;
    let scan = match parse(msg, ns, false) {
        Ok(s) => s,
        Err(code) => {
            answer::error_frame(out, code, true);
            return Ok(());
        }
    };
    if let Some(q) = &scan.index {
        q.index.count_query();
    }
    let ns_field = ns.name().as_bytes();
    // Set names are looked up once per scan, not once per record.
    let mut set_names: HashMap<u16, Option<Vec<u8>>> = HashMap::new();
    let mut returned = 0usize;
    let mut stream = Stream::begin(out, sink);
    for &(pid, after) in &scan.work {
        if returned >= scan.records_max {
            break;
        }
        if node.cluster().is_some_and(|c| c.route(sns.index, pid, true) != Route::Local) {
            MsgHeader {
                info3: info3::PARTITION_DONE,
                result_code: ResultCode::Unavailable.code(),
                generation: pid as u32,
                ..Default::default()
            }
            .write(stream.out);
            continue;
        }
        let out = &mut *stream.out;
        let limit = scan.records_max - returned;
        let visit = |r: &petrel_storage::namespace::ScanRecord<'_>| {
            // Like Aerospike, a scan selecting bins skips the records holding none of them.
            if !scan.no_bins && !scan.bins.is_empty() && !r.image.bins().flatten().any(|b| scan.bins.contains(&b.name))
            {
                return true;
            }
            let mark = answer::begin(out, ResultCode::Ok, r.meta, 0);
            if scan.no_bins {
                mark.set_info1(out, info1::GET_NO_BINS);
            }
            let mut n_fields = SCAN_RECORD_FIELDS_MIN;
            write_field(out, FieldType::Namespace as u8, ns_field);
            write_field(out, FieldType::Digest as u8, r.digest.as_bytes());
            if r.set_id != 0 {
                if let Some(name) = set_names.entry(r.set_id).or_insert_with(|| ns.set_name(r.set_id)) {
                    write_field(out, FieldType::Set as u8, name);
                    n_fields += 1;
                }
            }
            if let Some(k) = r.image.key {
                write_key_field(out, k.particle, k.bytes);
                n_fields += 1;
            }
            if let Some(q) = &scan.index {
                // The clients keep the last value per partition and send it back on resume;
                // Petrel resumes by digest alone, but answers the value like Aerospike does.
                write_field(out, FieldType::BvalArray as u8, &q.bval(&r.image).to_le_bytes());
                n_fields += 1;
            }
            mark.set_n_fields(out, n_fields);
            let mut n_ops = 0;
            if !scan.no_bins {
                for b in r.image.bins().flatten() {
                    if scan.bins.is_empty() || scan.bins.contains(&b.name) {
                        write_op(out, OpType::Read as u8, b.value.particle, b.name, b.value.bytes);
                        n_ops += 1;
                    }
                }
            }
            mark.set_n_ops(out, answer::saturating_u16(n_ops));
            true
        };
        let walked = match &scan.index {
            Some(q) => {
                ns.query_partition(&q.index, pid, &q.range, after, scan.set_id, limit, scan.filter.as_ref(), visit)
            }
            None => ns.scan_partition_filtered(pid, after, scan.set_id, limit, scan.filter.as_ref(), visit),
        };
        let progress = match walked {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, pid, "scan failed");
                stream.finish(e.result_code());
                return Ok(());
            }
        };
        returned += progress.returned;
        if progress.complete {
            MsgHeader { info3: info3::PARTITION_DONE, generation: pid as u32, ..Default::default() }.write(stream.out);
        }
        stream.flush_if_full().await?;
    }
    stream.finish(ResultCode::Ok);
    let kind = if scan.index.is_some() { LatencyKind::SiQuery } else { LatencyKind::PiQuery };
    sns.latencies.record(kind, started.elapsed());
    Ok(())
}
