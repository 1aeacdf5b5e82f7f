//! Encoding requests and decoding answers of single-record, batch and scan commands.

use petrel_proto::message::{
    begin_frame, end_frame, write_field, write_key_field, write_op, Message, MessageLimits, MsgHeader,
};
use petrel_proto::wire::{info1, info2, info3, FieldType, FrameType, OpType};
use petrel_proto::{Digest, ResultCode};

use crate::key::Key;
use crate::operation::Operation;
use crate::policy::{BasePolicy, GenerationPolicy, RecordExistsAction, WritePolicy};
use crate::record::Record;
use crate::value::Value;
use crate::Error;

/// Limits applied to answers (the server may legitimately send many ops).
pub(crate) const ANSWER_LIMITS: MessageLimits = MessageLimits { fields_max: 64, ops_max: u16::MAX };

/// Header bits of a write.
pub(crate) fn write_header(policy: &WritePolicy) -> MsgHeader {
    let mut h = MsgHeader { info2: info2::WRITE, record_ttl: policy.expiration.wire(), ..Default::default() };
    match policy.exists {
        RecordExistsAction::Update => {}
        RecordExistsAction::UpdateOnly => h.info3 |= info3::UPDATE_ONLY,
        RecordExistsAction::Replace => h.info3 |= info3::CREATE_OR_REPLACE,
        RecordExistsAction::ReplaceOnly => h.info3 |= info3::REPLACE_ONLY,
        RecordExistsAction::CreateOnly => h.info2 |= info2::CREATE_ONLY,
    }
    match policy.generation {
        GenerationPolicy::None => {}
        GenerationPolicy::ExpectEqual(g) => {
            h.info2 |= info2::GENERATION;
            h.generation = g;
        }
        GenerationPolicy::ExpectGreater(g) => {
            h.info2 |= info2::GENERATION_GT;
            h.generation = g;
        }
    }
    if policy.commit_master {
        h.info3 |= info3::COMMIT_MASTER;
    }
    if policy.durable_delete {
        h.info2 |= info2::DURABLE_DELETE;
    }
    h
}

/// Encodes a single-record command into `buf` (cleared first).
pub(crate) fn encode_single(
    buf: &mut Vec<u8>,
    mut h: MsgHeader,
    key: &Key,
    send_key: bool,
    ops: &[Operation],
    base: &BasePolicy,
) {
    buf.clear();
    let start = begin_frame(buf);
    let set = !key.set.is_empty();
    let user_key = if send_key { key.user_key.as_ref() } else { None };
    let filter = base.filter_expression.as_ref();
    h.n_fields = 2 + u16::from(set) + u16::from(user_key.is_some()) + u16::from(filter.is_some());
    h.n_ops = ops.len() as u16;
    h.transaction_ttl = crate::client::timeout_ms(base);
    h.write(buf);
    write_field(buf, FieldType::Namespace as u8, key.namespace.as_bytes());
    if set {
        write_field(buf, FieldType::Set as u8, key.set.as_bytes());
    }
    write_field(buf, FieldType::Digest as u8, key.digest.as_bytes());
    if let Some(k) = user_key {
        let (particle, bytes) = k.to_particle();
        write_key_field(buf, particle, &bytes);
    }
    if let Some(f) = filter {
        write_field(buf, FieldType::Filter as u8, f.as_bytes());
    }
    for op in ops {
        write_op(buf, op.op_type as u8, op.particle, op.bin.as_bytes(), &op.value);
    }
    end_frame(buf, start, FrameType::Message as u8);
}

/// Reads a message's bins into a record (results with no value are skipped).
pub(crate) fn record_of(msg: &Message<'_>) -> Result<Record, Error> {
    let mut rec = Record { generation: msg.header.generation, void_time: msg.header.record_ttl, ..Default::default() };
    for op in msg.ops() {
        if op.particle == 0 && op.value.is_empty() {
            continue;
        }
        let name = String::from_utf8_lossy(op.name).into_owned();
        rec.push_bin(name, Value::from_particle(op.particle, op.value)?);
    }
    Ok(rec)
}

/// Parses a single-record answer body: the record, or the server's refusal.
pub(crate) fn parse_single(body: &[u8]) -> Result<Record, Error> {
    let (msg, _) = Message::parse(body, ANSWER_LIMITS).map_err(|e| Error::Protocol(e.to_string()))?;
    if msg.header.result_code != ResultCode::Ok.code() {
        return Err(Error::Server { code: msg.header.result_code });
    }
    record_of(&msg)
}

/// Header bits of a read that names `bins` (all bins when `None`).
pub(crate) fn read_header(bins: Option<&[&str]>) -> (MsgHeader, Vec<Operation>) {
    match bins {
        None => (MsgHeader { info1: info1::READ | info1::GET_ALL, ..Default::default() }, Vec::new()),
        Some(names) => {
            (MsgHeader { info1: info1::READ, ..Default::default() }, names.iter().map(|n| Operation::get(n)).collect())
        }
    }
}

/// Header bits of an operate.
pub(crate) fn operate_header(policy: &WritePolicy, ops: &[Operation]) -> MsgHeader {
    let writes = ops.iter().any(Operation::is_write);
    let mut h = if writes { write_header(policy) } else { MsgHeader::default() };
    if ops.iter().any(|o| !o.is_write()) {
        h.info1 |= info1::READ;
        if ops.iter().any(|o| o.op_type == OpType::Read && o.bin.is_empty()) {
            h.info1 |= info1::GET_ALL;
        }
    }
    h
}

/// A scanned record, or the end of a partition, or the end of the stream.
pub(crate) enum StreamItem {
    Record(Record),
    PartitionDone { partition: u16, result_code: u8 },
    Last { result_code: u8 },
}

/// Walks every message of one answer frame body.
pub(crate) fn stream_items(body: &[u8], namespace: &str, mut f: impl FnMut(StreamItem)) -> Result<(), Error> {
    let mut pos = 0;
    while pos < body.len() {
        let (msg, used) = Message::parse(&body[pos..], ANSWER_LIMITS).map_err(|e| Error::Protocol(e.to_string()))?;
        pos += used;
        let h = msg.header;
        if h.info3 & info3::LAST != 0 {
            f(StreamItem::Last { result_code: h.result_code });
            return Ok(());
        }
        if h.info3 & info3::PARTITION_DONE != 0 {
            f(StreamItem::PartitionDone { partition: h.generation as u16, result_code: h.result_code });
            continue;
        }
        if h.result_code != 0 {
            f(StreamItem::Last { result_code: h.result_code });
            return Ok(());
        }
        let mut rec = record_of(&msg)?;
        let digest = msg.field(FieldType::Digest).and_then(Digest::from_slice).unwrap_or_default();
        let set = msg.field(FieldType::Set).map(|s| String::from_utf8_lossy(s).into_owned()).unwrap_or_default();
        let mut key = Key::from_digest(namespace, set, digest);
        if let Some(k) = msg.field(FieldType::Key) {
            if let Some((&t, bytes)) = k.split_first() {
                key.user_key = Value::from_particle(t, bytes).ok();
            }
        }
        rec.key = Some(key);
        f(StreamItem::Record(rec));
    }
    Ok(())
}
