//! Expression operations inside an operate: an expression read (op type 7) answers what an
//! expression computes over the bins as the earlier ops left them; an expression modify (op
//! type 8) stores it in a bin, with the create-only, update-only, allow-delete, policy-no-fail
//! and eval-no-fail flags.

use petrel_proto::exp::write_flags as wf;
use petrel_proto::msgpack;

use crate::exp::{Bins, EVal, Program, RecordCtx};
use crate::namespace::bin_ops::{find_bin, set_bin, CowBytes, WorkBins};
use crate::ops::OpResult;
use crate::value::{prepare_for_store, ParticleRef};
use crate::StorageError;

/// An operation's payload, `[expression, flags]`, compiled.
fn parse(payload: &[u8]) -> Result<(Program, i64), StorageError> {
    let bad = StorageError::Parameter("malformed expression operation");
    let body = match payload.split_first() {
        Some((0x92, rest)) => rest,
        _ => return Err(bad),
    };
    let (program, used) = Program::compile_prefix(body)?;
    let flags = match msgpack::decode(&body[used..]) {
        Ok(msgpack::MsgValue::Int(f)) => f,
        _ => return Err(bad),
    };
    Ok((program, flags))
}

/// Evaluates the operation's expression over the current bins; the value, owned.
fn evaluate(program: &Program, bins: &WorkBins<'_>, rec: &RecordCtx<'_>, size_limit: usize) -> Option<EVal<'static>> {
    let pairs: smallvec::SmallVec<[(&[u8], ParticleRef<'_>); 8]> =
        bins.iter().map(|b| (b.name, ParticleRef { particle: b.particle, bytes: b.value.as_slice() })).collect();
    let ctx = RecordCtx { bins: Bins::Pairs(&pairs), ..*rec };
    program.eval(&ctx, size_limit).map(EVal::into_owned)
}

/// An expression read: answers the value under `name`.
pub(super) fn read(
    name: &[u8],
    payload: &[u8],
    bins: &WorkBins<'_>,
    rec: &RecordCtx<'_>,
    results: &mut Vec<OpResult>,
    size_limit: usize,
) -> Result<(), StorageError> {
    let (program, flags) = parse(payload)?;
    let op_type = petrel_proto::wire::OpType::ExpRead;
    let value = match evaluate(&program, bins, rec, size_limit) {
        Some(v) => Some(v.to_particle().ok_or(StorageError::OpNotApplicable("expression value cannot be answered"))?),
        None if flags & wf::EVAL_NO_FAIL != 0 => None,
        None => return Err(StorageError::OpNotApplicable("expression evaluated to unknown")),
    };
    results.push(OpResult { op_type, bin: name.to_vec(), value });
    Ok(())
}

/// An expression modify: stores the value in bin `name`.
pub(super) fn modify<'a>(
    name: &'a [u8],
    payload: &[u8],
    bins: &mut WorkBins<'a>,
    rec: &RecordCtx<'_>,
    results: &mut Vec<OpResult>,
    respond_all: bool,
    size_limit: usize,
) -> Result<(), StorageError> {
    let (program, flags) = parse(payload)?;
    let policy_ok = |e: StorageError| if flags & wf::POLICY_NO_FAIL != 0 { Ok(()) } else { Err(e) };
    let ack = |results: &mut Vec<OpResult>| {
        if respond_all {
            results.push(OpResult { op_type: petrel_proto::wire::OpType::ExpModify, bin: name.to_vec(), value: None });
        }
    };
    // The bin's existence is checked before the expression is evaluated.
    let exists = find_bin(bins, name).is_some();
    if exists && flags & wf::CREATE_ONLY != 0 {
        ack(results);
        return policy_ok(StorageError::BinExists);
    }
    if !exists && flags & wf::UPDATE_ONLY != 0 {
        ack(results);
        return policy_ok(StorageError::BinNotFound);
    }
    let value = match evaluate(&program, bins, rec, size_limit) {
        Some(v) => v,
        None if flags & wf::EVAL_NO_FAIL != 0 => {
            ack(results);
            return Ok(());
        }
        None => return Err(StorageError::OpNotApplicable("expression evaluated to unknown")),
    };
    if matches!(value, EVal::Nil) {
        if flags & wf::ALLOW_DELETE == 0 {
            ack(results);
            return policy_ok(StorageError::OpNotApplicable("expression would delete the bin"));
        }
        bins.retain(|b| b.name != name);
        ack(results);
        return Ok(());
    }
    crate::value::check_bin_name(name)?;
    let p = value.to_particle().ok_or(StorageError::OpNotApplicable("expression value cannot be stored"))?;
    let stored = prepare_for_store(ParticleRef { particle: p.particle, bytes: &p.bytes })?.into_owned();
    set_bin(bins, name, p.particle, CowBytes::Owned(stored))?;
    ack(results);
    Ok(())
}
