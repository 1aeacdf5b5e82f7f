//! A record UDF request (fields UDF_PACKAGE_NAME, UDF_FUNCTION, UDF_ARGLIST): the record is
//! read (it must pass the request's filter), the module's function runs on it in Lua, and
//! what the function asked for — bins set or removed, the record created, updated or removed,
//! a new TTL — is applied through the ordinary write path (replicated like any write), on
//! the condition that the record's generation is still the one the function saw; when
//! another write came between, the function runs again (a few times at most). The answer
//! carries the function's return value in a `SUCCESS` bin, or result code 100 with the error
//! in a `FAILURE` bin.

use petrel_proto::message::{write_field, write_key_field, write_op, MsgHeader};
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::particle;
use petrel_proto::wire::{info2, info3, FieldType, OpType};
use petrel_proto::ResultCode;
use petrel_storage::namespace::RecordMeta;
use petrel_storage::ops::ReadSelect;
use petrel_storage::StorageError;

use super::answer::{self, CmdError};
use super::request::Single;
use crate::node::Node;
use crate::udf::lua::{self, RecordIn, RecordOp};

/// Runs of the function for one request when concurrent writes keep changing the record.
const ATTEMPTS_MAX: usize = 5;
/// Record TTL value meaning "leave the expiry as it is".
const TTL_DONT_UPDATE: u32 = 0xFFFF_FFFE;

pub(crate) async fn apply(
    node: &Node,
    single: &Single<'_, '_>,
    out: &mut Vec<u8>,
    row_index: u32,
) -> Result<(), CmdError> {
    let field = |t: FieldType| single.msg.field(t).map(|b| String::from_utf8_lossy(b).into_owned());
    let (Some(package), Some(function)) = (field(FieldType::UdfPackageName), field(FieldType::UdfFunction)) else {
        return Err(StorageError::Parameter("a UDF needs a package and a function").into());
    };
    let args = match single.msg.field(FieldType::UdfArgList) {
        None | Some([]) => Vec::new(),
        Some(raw) => match msgpack::decode(raw) {
            Ok(MsgValue::List(items)) => items,
            _ => return Err(StorageError::Parameter("UDF arguments must be a msgpack list").into()),
        },
    };
    let Some(module) = node.udfs.get(&package) else {
        failure(out, &format!("UDF module not found: {package}"), row_index);
        return Ok(());
    };
    for _ in 0..ATTEMPTS_MAX {
        let (rec, meta) = read(single)?;
        let outcome = match lua::call(&module.name, &module.source, &function, &rec, &args) {
            Ok(o) => o,
            Err(message) => {
                failure(out, &message, row_index);
                return Ok(());
            }
        };
        let code = match outcome.op {
            RecordOp::Write if !outcome.changes.is_empty() || outcome.new_ttl.is_some() => {
                let body = write_message(single, &rec, meta, &outcome.changes, outcome.new_ttl);
                Box::pin(super::single::run_local(node, &body, single.digest)).await
            }
            RecordOp::Remove if rec.exists => {
                let body = delete_message(single, meta);
                Box::pin(super::single::run_local(node, &body, single.digest)).await
            }
            _ => ResultCode::Ok,
        };
        match code {
            ResultCode::Ok => {
                let (p, bytes) = particle::from_msgpack(&outcome.result);
                let mark = answer::begin(out, ResultCode::Ok, RecordMeta::default(), row_index);
                write_op(out, OpType::Read as u8, p, b"SUCCESS", &bytes);
                mark.set_n_ops(out, 1);
                return Ok(());
            }
            // The record changed (or appeared) since it was read: run the function again.
            ResultCode::Generation | ResultCode::RecordExists | ResultCode::NotFound => continue,
            other => {
                answer::code(out, other, row_index);
                return Ok(());
            }
        }
    }
    answer::code(out, ResultCode::KeyBusy, row_index);
    Ok(())
}

/// The record as the function sees it, and its metadata (generation 0: it does not exist).
fn read(single: &Single<'_, '_>) -> Result<(RecordIn, RecordMeta), CmdError> {
    let ns = &single.sns.ns;
    let mut bins = Vec::new();
    let mut bad = false;
    let read = ns.read_filtered(&single.digest, ReadSelect::All, single.filter(), |b| {
        match particle::to_msgpack(b.value.particle, b.value.bytes) {
            Ok(v) => bins.push((String::from_utf8_lossy(b.name).into_owned(), v)),
            Err(_) => bad = true,
        }
    });
    let meta = match read {
        Ok(meta) => meta,
        Err(StorageError::NotFound) => RecordMeta::default(),
        Err(e) => return Err(e.into()),
    };
    if bad {
        return Err(StorageError::Internal("a stored bin could not be decoded").into());
    }
    let exists = meta.generation != 0;
    let ttl = ttl_left(ns, meta);
    let key = single.key().and_then(|k| particle::to_msgpack(k.particle, k.bytes).ok());
    let rec = RecordIn {
        exists,
        bins,
        generation: meta.generation,
        ttl,
        set: String::from_utf8_lossy(single.set).into_owned(),
        key,
        digest: single.digest.0,
        lut_ms: meta.lut_ms,
    };
    Ok((rec, meta))
}

/// Seconds a record has left to live, as a UDF sees it; -1 when it never expires.
pub(crate) fn ttl_left(ns: &petrel_storage::Namespace, meta: RecordMeta) -> i64 {
    match meta.void_time {
        0 => -1,
        v => (v as i64 - (ns.clock().now_ms() / 1000) as i64).max(0),
    }
}

pub(crate) fn header_fields(single: &Single<'_, '_>, buf: &mut Vec<u8>) {
    write_field(buf, FieldType::Namespace as u8, single.sns.ns.name().as_bytes());
    if !single.set.is_empty() {
        write_field(buf, FieldType::Set as u8, single.set);
    }
    write_field(buf, FieldType::Digest as u8, single.digest.as_bytes());
    if let Some(k) = single.key() {
        write_key_field(buf, k.particle, k.bytes);
    }
}

pub(crate) fn n_fields(single: &Single<'_, '_>) -> u16 {
    2 + u16::from(!single.set.is_empty()) + u16::from(single.key().is_some())
}

/// The write of the function's changes, on condition of the generation it saw (or of the
/// record still not existing).
fn write_message(
    single: &Single<'_, '_>,
    rec: &RecordIn,
    meta: RecordMeta,
    changes: &[(String, Option<MsgValue>)],
    new_ttl: Option<i64>,
) -> Vec<u8> {
    let mut h = MsgHeader {
        info2: info2::WRITE,
        record_ttl: match new_ttl {
            Some(-2) => TTL_DONT_UPDATE,
            Some(t) if t < 0 => u32::MAX,
            Some(t) => t.min(u32::MAX as i64 - 2) as u32,
            None if rec.exists && single.msg.header.record_ttl == 0 => TTL_DONT_UPDATE,
            None => single.msg.header.record_ttl,
        },
        n_fields: n_fields(single),
        n_ops: changes.len().max(1) as u16,
        ..Default::default()
    };
    if rec.exists {
        h.info2 |= info2::GENERATION;
        h.generation = meta.generation as u32;
    } else {
        h.info2 |= info2::CREATE_ONLY;
    }
    h.info3 |= single.msg.header.info3 & info3::COMMIT_MASTER;
    let mut buf = Vec::new();
    h.write(&mut buf);
    header_fields(single, &mut buf);
    if changes.is_empty() {
        // Only the TTL changes.
        write_op(&mut buf, OpType::Touch as u8, 0, b"", &[]);
    }
    for (name, value) in changes {
        match value {
            Some(v) => {
                let (p, bytes) = particle::from_msgpack(v);
                write_op(&mut buf, OpType::Write as u8, p, name.as_bytes(), &bytes);
            }
            // Writing nil removes the bin.
            None => write_op(&mut buf, OpType::Write as u8, 0, name.as_bytes(), &[]),
        }
    }
    buf
}

fn delete_message(single: &Single<'_, '_>, meta: RecordMeta) -> Vec<u8> {
    let h = MsgHeader {
        info2: info2::WRITE | info2::DELETE | info2::GENERATION,
        generation: meta.generation as u32,
        n_fields: n_fields(single),
        ..Default::default()
    };
    let mut buf = Vec::new();
    h.write(&mut buf);
    header_fields(single, &mut buf);
    buf
}

/// Result code 100 with the message in a `FAILURE` bin.
fn failure(out: &mut Vec<u8>, message: &str, row_index: u32) {
    let mark = answer::begin(out, ResultCode::UdfExecution, RecordMeta::default(), row_index);
    write_op(out, OpType::Read as u8, 3, b"FAILURE", message.as_bytes());
    mark.set_n_ops(out, 1);
}
