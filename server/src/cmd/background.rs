//! Background scans and queries with write operations: the client sends a scan or query
//! carrying write ops (info2 WRITE); each node answers at once (a LAST message) and then, on
//! its own task, applies the ops to every matching record of the partitions it masters,
//! record by record through the single-record write path (routed, replicated, filtered by
//! the request's expression, update-only: records are never created), at most
//! `records_per_second` when the client asks. Jobs are tracked for `query-show` (the clients'
//! job status) and can be stopped with `query-abort`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use petrel_cluster::Route;
use petrel_proto::message::{write_field, Message, MessageLimits, MsgHeader};
use petrel_proto::wire::{info2, info3, FieldType};
use petrel_proto::{Digest, ResultCode};

use super::{answer, scan, single};
use crate::node::Node;

/// Jobs kept for `query-show`, finished ones included (the oldest finished go first).
const JOBS_KEPT_MAX: usize = 100;
/// Records a job collects from one partition before applying the ops to them.
const DIGESTS_PER_PASS_MAX: usize = 1024;

/// One background job.
#[derive(Debug)]
pub struct Job {
    pub trid: u64,
    pub namespace: String,
    pub set: String,
    started: Instant,
    partitions_total: u32,
    partitions_done: AtomicU32,
    done: AtomicBool,
    abort: AtomicBool,
    run_time_ms: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    filtered: AtomicU64,
}

impl Job {
    /// The `query-show` description (Aerospike's keys).
    pub fn describe(&self) -> String {
        let done = self.done.load(Ordering::Acquire);
        let status = match (done, self.abort.load(Ordering::Relaxed)) {
            (false, _) => "active(ok)",
            (true, false) => "done(ok)",
            (true, true) => "done(user-aborted)",
        };
        let run_time_ms =
            if done { self.run_time_ms.load(Ordering::Relaxed) } else { self.started.elapsed().as_millis() as u64 };
        let progress = self.partitions_done.load(Ordering::Relaxed) * 100 / self.partitions_total.max(1);
        format!(
            "trid={}:job-type=background-ops:ns={}:set={}:status={status}:job-progress={}:run-time={run_time_ms}:recs-succeeded={}:recs-failed={}:recs-filtered-meta={}",
            self.trid,
            self.namespace,
            self.set,
            if done { 100 } else { progress },
            self.succeeded.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.filtered.load(Ordering::Relaxed),
        )
    }
}

/// The node's background jobs.
#[derive(Debug, Default)]
pub struct Jobs {
    list: Mutex<VecDeque<Arc<Job>>>,
}

impl Jobs {
    pub fn get(&self, trid: u64) -> Option<Arc<Job>> {
        self.list.lock().iter().find(|j| j.trid == trid).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Job>> {
        self.list.lock().iter().cloned().collect()
    }

    /// Asks job `trid` to stop; false when there is no such job.
    pub fn abort(&self, trid: u64) -> bool {
        self.get(trid).map(|j| j.abort.store(true, Ordering::Relaxed)).is_some()
    }

    fn add(&self, job: Arc<Job>) {
        let mut list = self.list.lock();
        while list.len() >= JOBS_KEPT_MAX {
            match list.iter().position(|j| j.done.load(Ordering::Acquire)) {
                Some(oldest_done) => {
                    list.remove(oldest_done);
                }
                None => break,
            }
        }
        list.push_back(job);
    }
}

/// Starts a background job for a scan or query message with write ops and answers the client
/// (LAST, or the error that keeps the job from starting).
pub(crate) fn start(node: &Node, msg: &Message<'_>, out: &mut Vec<u8>) {
    let code = match check_and_spawn(node, msg) {
        Ok(()) => ResultCode::Ok,
        Err(code) => code,
    };
    answer::error_frame(out, code, true);
}

fn check_and_spawn(node: &Node, msg: &Message<'_>) -> Result<(), ResultCode> {
    let sns = node.namespace(msg.field(FieldType::Namespace).unwrap_or(b"")).ok_or(ResultCode::Namespace)?;
    // A background UDF starts even when its module is missing (as on Aerospike): each
    // record then fails, and the job's failure count says so.
    let udf = msg.field(FieldType::UdfOp).is_some();
    if msg.header.n_ops == 0 && !udf {
        return Err(ResultCode::Parameter);
    }
    // Everything the job will need is checked now, so it cannot fail to start later.
    let request = scan::parse(msg, &sns.ns, true)?;
    let trid = match msg.field(FieldType::TaskId) {
        Some(b) => u64::from_be_bytes(b.try_into().map_err(|_| ResultCode::Parameter)?),
        None => rand::random::<u64>() | 1,
    };
    let node = node.arc().ok_or(ResultCode::Unknown)?;
    let job = Arc::new(Job {
        trid,
        namespace: sns.ns.name().to_string(),
        set: String::from_utf8_lossy(msg.field(FieldType::Set).unwrap_or(b"")).into_owned(),
        started: Instant::now(),
        partitions_total: request.work.len() as u32,
        partitions_done: AtomicU32::new(0),
        done: AtomicBool::new(false),
        abort: AtomicBool::new(false),
        run_time_ms: AtomicU64::new(0),
        succeeded: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        filtered: AtomicU64::new(0),
    });
    node.jobs.add(Arc::clone(&job));
    let mut body = Vec::with_capacity(22 + msg.fields_bytes().len() + msg.ops_bytes().len());
    msg.header.write(&mut body);
    body.extend_from_slice(msg.fields_bytes());
    body.extend_from_slice(msg.ops_bytes());
    tokio::spawn(async move {
        run(&node, &body, &job).await;
        job.run_time_ms.store(job.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        job.done.store(true, Ordering::Release);
        tracing::info!(
            trid = job.trid,
            succeeded = job.succeeded.load(Ordering::Relaxed),
            failed = job.failed.load(Ordering::Relaxed),
            "background job finished"
        );
    });
    Ok(())
}

async fn run(node: &Node, body: &[u8], job: &Job) {
    let Ok((msg, _)) = Message::parse(body, MessageLimits::default()) else { return };
    let Some(sns) = node.namespace(msg.field(FieldType::Namespace).unwrap_or(b"")) else { return };
    let Ok(request) = scan::parse(&msg, &sns.ns, true) else { return };
    let rps = msg.field(FieldType::RecordsPerSecond).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
    let mut record_body = Vec::new();
    let mut applied = 0u64;
    for &(pid, after) in &request.work {
        if job.abort.load(Ordering::Relaxed) {
            return;
        }
        // The client sent the job to every node: each takes the partitions it masters.
        if node.cluster().is_some_and(|c| c.route(sns.index, pid, true) != Route::Local) {
            job.partitions_done.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let mut resume = after;
        loop {
            let mut digests = Vec::new();
            let collect = |r: &petrel_storage::namespace::ScanRecord<'_>| {
                digests.push(r.digest);
                true
            };
            let walked = match &request.index {
                Some(q) => sns.ns.query_partition(
                    &q.index,
                    pid,
                    &q.range,
                    resume,
                    request.set_id,
                    DIGESTS_PER_PASS_MAX,
                    None,
                    collect,
                ),
                None => sns.ns.scan_partition(pid, resume, request.set_id, DIGESTS_PER_PASS_MAX, collect),
            };
            let Ok(progress) = walked else {
                job.failed.fetch_add(1, Ordering::Relaxed);
                break;
            };
            for d in &digests {
                record_message(&msg, d, &mut record_body);
                match single::run_local(node, &record_body, *d).await {
                    ResultCode::Ok => job.succeeded.fetch_add(1, Ordering::Relaxed),
                    ResultCode::FilteredOut | ResultCode::NotFound => job.filtered.fetch_add(1, Ordering::Relaxed),
                    _ => job.failed.fetch_add(1, Ordering::Relaxed),
                };
                applied += 1;
                if let Some(rps) = rps.filter(|r| *r > 0) {
                    // Paced from the job's start: `applied` records take at least applied/rps s.
                    let due = Duration::from_secs_f64(applied as f64 / rps as f64);
                    if let Some(wait) = due.checked_sub(job.started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                if job.abort.load(Ordering::Relaxed) {
                    return;
                }
            }
            if progress.complete || progress.last.is_none() {
                break;
            }
            resume = progress.last;
        }
        job.partitions_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// The single-record message that applies the job's ops to record `digest`: update-only (a
/// record deleted meanwhile is not created), with the job's TTL, durable-delete flag and
/// filter expression.
fn record_message(job: &Message<'_>, digest: &Digest, out: &mut Vec<u8>) {
    out.clear();
    let set = job.field(FieldType::Set).filter(|s| !s.is_empty());
    let filter = job.field(FieldType::Filter);
    // A background UDF: the record UDF request for this record (its package, function and
    // arguments), instead of the job's write ops.
    let udf: Vec<(FieldType, &[u8])> = [FieldType::UdfPackageName, FieldType::UdfFunction, FieldType::UdfArgList]
        .into_iter()
        .filter_map(|t| job.field(FieldType::UdfOp).and(job.field(t)).map(|v| (t, v)))
        .collect();
    let n_fields = 2 + u16::from(set.is_some()) + u16::from(filter.is_some()) + udf.len() as u16;
    MsgHeader {
        info2: info2::WRITE | (job.header.info2 & info2::DURABLE_DELETE),
        info3: info3::UPDATE_ONLY,
        record_ttl: job.header.record_ttl,
        n_fields,
        n_ops: job.header.n_ops,
        ..Default::default()
    }
    .write(out);
    write_field(out, FieldType::Namespace as u8, job.field(FieldType::Namespace).unwrap_or(b""));
    if let Some(set) = set {
        write_field(out, FieldType::Set as u8, set);
    }
    write_field(out, FieldType::Digest as u8, digest.as_bytes());
    if let Some(f) = filter {
        write_field(out, FieldType::Filter as u8, f);
    }
    for (t, v) in udf {
        write_field(out, t as u8, v);
    }
    out.extend_from_slice(job.ops_bytes());
}
