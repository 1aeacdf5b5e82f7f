//! The async client: routes each call to the node that owns the key's partition, with
//! retries on the partition's other replicas within the policy's time budget.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use petrel_proto::message::{begin_frame, end_frame, write_field, write_op, MsgHeader};
use petrel_proto::wire::{info1, info2, info3, FieldType, FrameType};
use petrel_proto::ResultCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::cluster::{Cluster, Node};
use crate::command::{self, StreamItem};
use crate::connection::Connection;
use crate::key::Key;
use crate::operation::Operation;
use crate::policy::{BasePolicy, BatchPolicy, ClientPolicy, ReadPolicy, Replica, ScanPolicy, WritePolicy};
use crate::query::IndexFilter;
use crate::record::Record;
use crate::stream::RecordStream;
use crate::value::Bin;
use crate::Error;

/// Which bins a read returns.
#[derive(Debug, Clone, Copy)]
pub enum Bins<'a> {
    All,
    Some(&'a [&'a str]),
    /// Metadata only.
    None,
}

/// A connection to a Petrel (or Aerospike) cluster.
#[derive(Debug)]
pub struct Client {
    pub(crate) cluster: Arc<Cluster>,
    tender: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects through `seeds` (`host:port`), learns the cluster and its partition map, and
    /// keeps tending it in the background.
    pub async fn new(policy: ClientPolicy, seeds: &[&str]) -> Result<Client, Error> {
        let fail_if_not_connected = policy.fail_if_not_connected;
        let interval = policy.tend_interval;
        let cluster = Arc::new(Cluster::new(policy, seeds.iter().map(|s| s.to_string()).collect()));
        match cluster.tend().await {
            Ok(()) => {}
            Err(e) if fail_if_not_connected => return Err(e),
            Err(e) => tracing::warn!(error = %e, "no seed answered yet"),
        }
        if fail_if_not_connected && !cluster.has_partition_map() {
            return Err(Error::Connect("the cluster reported no partition map".into()));
        }
        let weak = Arc::downgrade(&cluster);
        let tender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(cluster) = weak.upgrade() else { return };
                if cluster.closed.load(Ordering::Relaxed) {
                    return;
                }
                if let Err(e) = cluster.tend().await {
                    tracing::debug!(error = %e, "tend failed");
                }
            }
        });
        Ok(Client { cluster, tender: Some(tender) })
    }

    /// Names of the nodes currently known.
    pub fn node_names(&self) -> Vec<String> {
        self.cluster.nodes().iter().map(|n| n.name.clone()).collect()
    }

    /// Closes every connection and stops tending.
    pub fn close(&mut self) {
        self.cluster.close();
        if let Some(t) = self.tender.take() {
            t.abort();
        }
    }

    /// Sends info commands to one node (by name; any node when `None`) and returns
    /// `(command, value)` pairs.
    pub async fn info(&self, node: Option<&str>, commands: &[&str]) -> Result<Vec<(String, String)>, Error> {
        let nodes = self.cluster.nodes();
        let node = match node {
            Some(name) => nodes
                .into_iter()
                .find(|n| n.name == name)
                .ok_or_else(|| Error::InvalidArgument(format!("no node {name}")))?,
            None => nodes.into_iter().next().ok_or_else(|| Error::Connect("no node".into()))?,
        };
        let timeout = self.cluster.policy.connect_timeout;
        let mut conn = node.get_connection(timeout).await?;
        let answers = conn.info(commands, Some(Instant::now() + timeout)).await?;
        node.put_connection(conn);
        Ok(answers)
    }

    /// Removes every record of `set` (the whole namespace when `set` is `None`) last updated
    /// before `before_nanos` since the Unix epoch (now when `None`), on every node.
    pub async fn truncate(&self, namespace: &str, set: Option<&str>, before_nanos: Option<u64>) -> Result<(), Error> {
        let mut command = match set {
            Some(set) => format!("truncate:namespace={namespace};set={set}"),
            None => format!("truncate-namespace:namespace={namespace}"),
        };
        if let Some(lut) = before_nanos {
            command.push_str(&format!(";lut={lut}"));
        }
        for node in self.cluster.nodes() {
            let answers = self.info(Some(&node.name), &[&command]).await?;
            match answers.first() {
                Some((_, v)) if v == "ok" => {}
                Some((_, v)) => {
                    let code = v
                        .strip_prefix("ERROR:")
                        .and_then(|r| r.split(':').next())
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1);
                    return Err(Error::Server { code });
                }
                None => return Err(Error::Protocol("truncate: empty answer".into())),
            }
        }
        Ok(())
    }

    /// Runs one single-record command with retries: the first attempt goes to the
    /// partition's master, retries along its replicas (see the policy's `replica`).
    async fn execute(&self, base: &BasePolicy, key: &Key, frame: &[u8]) -> Result<Record, Error> {
        let deadline = (!base.total_timeout.is_zero()).then(|| Instant::now() + base.total_timeout);
        let mut last_err = Error::Timeout;
        for attempt in 0..=base.max_retries {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if attempt > 0 && !base.sleep_between_retries.is_zero() {
                tokio::time::sleep(base.sleep_between_retries).await;
            }
            // Retries move along the partition's replica list (writes too: a replica that is
            // not the acting master forwards the write to it), unless the policy pins the
            // master.
            let replica = if base.replica == Replica::Master { 0 } else { attempt as usize };
            let node = match self.cluster.node_for(&key.namespace, key.partition_id(), replica) {
                Ok(n) => n,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            let attempt_deadline = attempt_deadline(base, deadline);
            match round_trip(&node, frame, attempt_deadline, self.cluster.policy.connect_timeout).await {
                Ok(body) => match command::parse_single(&body) {
                    // The node could not serve it now (a cluster change): try again.
                    Err(e) if e.is_retryable() => last_err = e,
                    r => return r,
                },
                Err(e) if e.is_retryable() => last_err = e,
                Err(e) => return Err(e),
            }
        }
        Err(last_err)
    }

    /// Reads a record (all bins, some, or metadata only).
    pub async fn get(&self, policy: &ReadPolicy, key: &Key, bins: Bins<'_>) -> Result<Record, Error> {
        if let Bins::Some(names) = bins {
            if let Some(n) = names.iter().find(|n| n.len() > petrel_proto::wire::BIN_NAME_LEN_MAX) {
                return Err(Error::InvalidArgument(format!("bin name {n:?} is longer than 15 bytes")));
            }
        }
        let (h, ops) = match bins {
            Bins::All => command::read_header(None),
            Bins::Some(names) => command::read_header(Some(names)),
            Bins::None => (MsgHeader { info1: info1::READ | info1::GET_NO_BINS, ..Default::default() }, Vec::new()),
        };
        let mut frame = Vec::new();
        command::encode_single(&mut frame, h, key, false, &ops, &policy.base);
        self.execute(&policy.base, key, &frame).await.map(|mut r| {
            r.key = Some(key.clone());
            r
        })
    }

    /// Writes bins.
    pub async fn put(&self, policy: &WritePolicy, key: &Key, bins: &[Bin]) -> Result<(), Error> {
        let ops: Vec<Operation> = bins.iter().map(Operation::put).collect();
        check_bin_names(&ops)?;
        let mut frame = Vec::new();
        command::encode_single(&mut frame, command::write_header(policy), key, policy.send_key, &ops, &policy.base);
        self.execute(&policy.base, key, &frame).await.map(|_| ())
    }

    /// Deletes a record; `false` when it did not exist.
    pub async fn delete(&self, policy: &WritePolicy, key: &Key) -> Result<bool, Error> {
        let mut h = command::write_header(policy);
        h.info2 |= info2::DELETE;
        h.record_ttl = 0;
        let mut frame = Vec::new();
        command::encode_single(&mut frame, h, key, false, &[], &policy.base);
        match self.execute(&policy.base, key, &frame).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a record exists.
    pub async fn exists(&self, policy: &ReadPolicy, key: &Key) -> Result<bool, Error> {
        match self.get(policy, key, Bins::None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Bumps the generation and resets the expiry from the policy.
    pub async fn touch(&self, policy: &WritePolicy, key: &Key) -> Result<(), Error> {
        let mut frame = Vec::new();
        command::encode_single(
            &mut frame,
            command::write_header(policy),
            key,
            false,
            &[Operation::touch()],
            &policy.base,
        );
        self.execute(&policy.base, key, &frame).await.map(|_| ())
    }

    /// Applies several operations to one record atomically; returns the read results.
    pub async fn operate(&self, policy: &WritePolicy, key: &Key, ops: &[Operation]) -> Result<Record, Error> {
        if ops.is_empty() {
            return Err(Error::InvalidArgument("operate needs at least one operation".into()));
        }
        check_bin_names(ops)?;
        let writes = ops.iter().any(Operation::is_write);
        let mut frame = Vec::new();
        command::encode_single(
            &mut frame,
            command::operate_header(policy, ops),
            key,
            policy.send_key && writes,
            ops,
            &policy.base,
        );
        self.execute(&policy.base, key, &frame).await
    }

    /// Reads many records; the answer holds one entry per key, `None` for missing records.
    pub async fn batch_get(
        &self,
        policy: &BatchPolicy,
        keys: &[Key],
        bins: Bins<'_>,
    ) -> Result<Vec<Option<Record>>, Error> {
        let mut results: Vec<Option<Record>> = vec![None; keys.len()];
        // Group key indexes by the node that masters their partition.
        let mut groups: Vec<(Arc<Node>, Vec<usize>)> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            let node = self.cluster.node_for(&k.namespace, k.partition_id(), 0)?;
            match groups.iter_mut().find(|(n, _)| Arc::ptr_eq(n, &node)) {
                Some((_, idx)) => idx.push(i),
                None => groups.push((node, vec![i])),
            }
        }
        let deadline = (!policy.base.total_timeout.is_zero()).then(|| Instant::now() + policy.base.total_timeout);
        let mut tasks = Vec::new();
        for (node, idx) in groups {
            let frame = encode_batch(keys, &idx, bins, &policy.base);
            let connect_timeout = self.cluster.policy.connect_timeout;
            tasks.push(tokio::spawn(async move {
                // Batch rows carry no key fields: each answer names its row by index.
                batch_round_trip(&node, &frame, deadline, connect_timeout).await
            }));
        }
        for t in tasks {
            let rows = t.await.map_err(|e| Error::Protocol(format!("batch task: {e}")))??;
            for (index, mut rec) in rows {
                let index = index as usize;
                if let Some(slot) = results.get_mut(index) {
                    rec.key = keys.get(index).cloned();
                    *slot = Some(rec);
                }
            }
        }
        Ok(results)
    }

    /// Scans a namespace (or one set of it): one command per node for the partitions it
    /// masters, records delivered as a stream.
    pub async fn scan(
        &self,
        policy: &ScanPolicy,
        namespace: &str,
        set: &str,
        bins: Bins<'_>,
    ) -> Result<RecordStream, Error> {
        self.partitions_stream(policy, namespace, set, bins, None).await
    }

    /// Queries a secondary index: the records of `namespace` (and `set`) whose indexed bin
    /// matches `filter`, one command per node for the partitions it masters, delivered as a
    /// stream. A query no index serves ends the stream with server error 201.
    pub async fn query(
        &self,
        policy: &ScanPolicy,
        namespace: &str,
        set: &str,
        bins: Bins<'_>,
        filter: &IndexFilter,
    ) -> Result<RecordStream, Error> {
        if filter.bin().is_empty() || filter.bin().len() > petrel_proto::wire::BIN_NAME_LEN_MAX {
            return Err(Error::InvalidArgument(format!("bin name {:?} must have 1 to 15 bytes", filter.bin())));
        }
        self.partitions_stream(policy, namespace, set, bins, Some(filter)).await
    }

    async fn partitions_stream(
        &self,
        policy: &ScanPolicy,
        namespace: &str,
        set: &str,
        bins: Bins<'_>,
        filter: Option<&IndexFilter>,
    ) -> Result<RecordStream, Error> {
        let masters = self.cluster.masters(namespace)?;
        let (tx, rx) = mpsc::channel(policy.record_queue_size.max(1));
        let per_node_max =
            if policy.max_records == 0 { 0 } else { policy.max_records.div_ceil(masters.len().max(1) as u64) };
        let mut handles = Vec::new();
        for (node, pids) in masters {
            let frame = encode_scan(namespace, set, &pids, bins, per_node_max, &policy.base, filter);
            let tx = tx.clone();
            let ns = namespace.to_string();
            let deadline = (!policy.base.total_timeout.is_zero()).then(|| Instant::now() + policy.base.total_timeout);
            let connect_timeout = self.cluster.policy.connect_timeout;
            handles.push(tokio::spawn(async move {
                let result = scan_node(&node, &frame, deadline, connect_timeout, &ns, &tx).await;
                if let Err(e) = result {
                    let _ = tx.send(Err(e)).await;
                }
            }));
        }
        Ok(RecordStream::new(rx, handles))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// Bin names are 1 to 15 bytes; refused here rather than sent.
fn check_bin_names(ops: &[Operation]) -> Result<(), Error> {
    match ops.iter().find(|o| o.bin.len() > petrel_proto::wire::BIN_NAME_LEN_MAX) {
        Some(o) => Err(Error::InvalidArgument(format!("bin name {:?} is longer than 15 bytes", o.bin))),
        None => Ok(()),
    }
}

pub(crate) fn timeout_ms(base: &BasePolicy) -> u32 {
    base.total_timeout.as_millis().min(u32::MAX as u128) as u32
}

fn attempt_deadline(base: &BasePolicy, total: Option<Instant>) -> Option<Instant> {
    let socket = (!base.socket_timeout.is_zero()).then(|| Instant::now() + base.socket_timeout);
    match (socket, total) {
        (Some(s), Some(t)) => Some(s.min(t)),
        (s, t) => s.or(t),
    }
}

/// Sends a frame and reads one answer frame on a pooled connection.
async fn round_trip(
    node: &Node,
    frame: &[u8],
    deadline: Option<Instant>,
    connect_timeout: Duration,
) -> Result<Vec<u8>, Error> {
    let timeout =
        deadline.map_or(connect_timeout, |d| d.saturating_duration_since(Instant::now()).min(connect_timeout));
    let mut conn = node.get_connection(timeout).await?;
    conn.send(frame, deadline).await?;
    let t = conn.recv(deadline).await?;
    if t != FrameType::Message as u8 {
        return Err(Error::Protocol(format!("data answered with frame type {t}")));
    }
    let body = std::mem::take(&mut conn.buf);
    node.put_connection(conn);
    Ok(body)
}

/// Sends a batch frame and collects `(row index, record)` until the LAST message.
async fn batch_round_trip(
    node: &Node,
    frame: &[u8],
    deadline: Option<Instant>,
    connect_timeout: Duration,
) -> Result<Vec<(u32, Record)>, Error> {
    let mut conn = node.get_connection(connect_timeout).await?;
    conn.send(frame, deadline).await?;
    let mut rows = Vec::new();
    loop {
        conn.recv(deadline).await?;
        let mut pos = 0;
        let body = &conn.buf;
        while pos < body.len() {
            let (msg, used) = petrel_proto::message::Message::parse(&body[pos..], command::ANSWER_LIMITS)
                .map_err(|e| Error::Protocol(e.to_string()))?;
            pos += used;
            let h = msg.header;
            if h.info3 & info3::LAST != 0 {
                if h.result_code != 0 {
                    return Err(Error::Server { code: h.result_code });
                }
                node.put_connection(conn);
                return Ok(rows);
            }
            match h.result_code {
                0 => rows.push((h.transaction_ttl, command::record_of(&msg)?)),
                c if c == ResultCode::NotFound.code() || c == ResultCode::FilteredOut.code() => {}
                c => return Err(Error::Server { code: c }),
            }
        }
    }
}

async fn scan_node(
    node: &Node,
    frame: &[u8],
    deadline: Option<Instant>,
    connect_timeout: Duration,
    ns: &str,
    tx: &mpsc::Sender<Result<Record, Error>>,
) -> Result<(), Error> {
    let mut conn: Connection = node.get_connection(connect_timeout).await?;
    conn.send(frame, deadline).await?;
    let mut unavailable: Vec<u16> = Vec::new();
    loop {
        conn.recv(deadline).await?;
        let mut records = Vec::new();
        let mut end: Option<u8> = None;
        command::stream_items(&conn.buf, ns, |item| match item {
            StreamItem::Record(r) => records.push(r),
            StreamItem::PartitionDone { partition, result_code } => {
                if result_code != 0 {
                    unavailable.push(partition);
                }
            }
            StreamItem::Last { result_code } => end = Some(result_code),
        })?;
        for r in records {
            if tx.send(Ok(r)).await.is_err() {
                // The consumer went away; the connection has unread data, so it is dropped.
                return Ok(());
            }
        }
        match end {
            None => continue,
            Some(0) => {
                node.put_connection(conn);
                if !unavailable.is_empty() {
                    // Partitions this node could not serve: the scan is incomplete.
                    tracing::warn!(node = %node.name, partitions = unavailable.len(), "scan: partitions unavailable");
                    return Err(Error::Server { code: ResultCode::Unavailable.code() });
                }
                return Ok(());
            }
            Some(code) if code == ResultCode::NotFound.code() => return Ok(()),
            Some(code) => return Err(Error::Server { code }),
        }
    }
}

fn encode_batch(keys: &[Key], idx: &[usize], bins: Bins<'_>, base: &BasePolicy) -> Vec<u8> {
    let mut buf = Vec::new();
    let start = begin_frame(&mut buf);
    let filter = base.filter_expression.as_ref();
    MsgHeader {
        info1: info1::BATCH,
        n_fields: 1 + u16::from(filter.is_some()),
        transaction_ttl: timeout_ms(base),
        ..Default::default()
    }
    .write(&mut buf);
    // The batch's filter applies to every row.
    if let Some(f) = filter {
        write_field(&mut buf, FieldType::Filter as u8, f.as_bytes());
    }
    let mut field = Vec::new();
    field.extend_from_slice(&(idx.len() as u32).to_be_bytes());
    field.push(0x04 | 0x08); // respond to all keys; report the failing key
    let (row_info1, names): (u8, &[&str]) = match bins {
        Bins::All => (info1::READ | info1::GET_ALL, &[]),
        Bins::Some(n) => (info1::READ, n),
        Bins::None => (info1::READ | info1::GET_NO_BINS, &[]),
    };
    let mut prev: Option<(&str, &str)> = None;
    for &i in idx {
        let k = &keys[i];
        field.extend_from_slice(&(i as u32).to_be_bytes());
        field.extend_from_slice(k.digest.as_bytes());
        if prev == Some((k.namespace.as_str(), k.set.as_str())) {
            field.push(0x01); // REPEAT: same namespace, set and bins as the row before
            continue;
        }
        prev = Some((k.namespace.as_str(), k.set.as_str()));
        field.push(0x02 | 0x08); // INFO | TTL
        field.extend_from_slice(&[row_info1, 0, 0]);
        field.extend_from_slice(&0u32.to_be_bytes());
        field.extend_from_slice(&2u16.to_be_bytes());
        field.extend_from_slice(&(names.len() as u16).to_be_bytes());
        write_field(&mut field, FieldType::Namespace as u8, k.namespace.as_bytes());
        write_field(&mut field, FieldType::Set as u8, k.set.as_bytes());
        for n in names {
            write_op(&mut field, petrel_proto::wire::OpType::Read as u8, 0, n.as_bytes(), &[]);
        }
    }
    write_field(&mut buf, FieldType::BatchIndex as u8, &field);
    end_frame(&mut buf, start, FrameType::Message as u8);
    buf
}

fn encode_scan(
    namespace: &str,
    set: &str,
    pids: &[u16],
    bins: Bins<'_>,
    max_records: u64,
    base: &BasePolicy,
    filter: Option<&IndexFilter>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let start = begin_frame(&mut buf);
    let (info1_bits, names): (u8, &[&str]) = match bins {
        Bins::All => (info1::READ, &[]),
        Bins::Some(n) => (info1::READ, n),
        Bins::None => (info1::READ | info1::GET_NO_BINS, &[]),
    };
    let exp = base.filter_expression.as_ref();
    let n_fields = 4
        + u16::from(!set.is_empty())
        + u16::from(max_records > 0)
        + filter.map_or(0, IndexFilter::fields_count)
        + u16::from(exp.is_some());
    MsgHeader {
        info1: info1_bits,
        info3: info3::PARTITION_DONE,
        record_ttl: u32::MAX,
        transaction_ttl: timeout_ms(base),
        n_fields,
        n_ops: names.len() as u16,
        ..Default::default()
    }
    .write(&mut buf);
    write_field(&mut buf, FieldType::Namespace as u8, namespace.as_bytes());
    if !set.is_empty() {
        write_field(&mut buf, FieldType::Set as u8, set.as_bytes());
    }
    write_field(&mut buf, FieldType::SocketTimeout as u8, &timeout_ms(base).to_be_bytes());
    let task_id = rand_task_id();
    write_field(&mut buf, FieldType::TaskId as u8, &task_id.to_be_bytes());
    let pid_bytes: Vec<u8> = pids.iter().flat_map(|p| p.to_le_bytes()).collect();
    write_field(&mut buf, FieldType::PidArray as u8, &pid_bytes);
    if max_records > 0 {
        write_field(&mut buf, FieldType::MaxRecords as u8, &max_records.to_be_bytes());
    }
    if let Some(f) = filter {
        f.write_fields(&mut buf);
    }
    if let Some(e) = exp {
        write_field(&mut buf, FieldType::Filter as u8, e.as_bytes());
    }
    for n in names {
        write_op(&mut buf, petrel_proto::wire::OpType::Read as u8, 0, n.as_bytes(), &[]);
    }
    end_frame(&mut buf, start, FrameType::Message as u8);
    buf
}

/// A task id that differs between scans (the server only echoes it).
fn rand_task_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    h.finish() | 1
}
