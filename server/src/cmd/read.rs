//! Reads: bins by name or all of them (copied into the answer straight from the record
//! while it is locked), metadata only ("exists"), and operates that only read.

use petrel_proto::message::write_op;
use petrel_proto::wire::{info1, OpType};
use petrel_proto::ResultCode;
use petrel_storage::ops::{OperateRequest, ReadSelect, WritePolicy};
use petrel_storage::RecordMeta;

use super::answer::{self, CmdError};
use super::request::Single;

/// Bin names a read asks for, inline up to 8.
type BinNames<'a> = smallvec::SmallVec<[&'a [u8]; 8]>;

/// A read of named bins, or of all bins.
pub(crate) fn bins(req: &Single<'_, '_>, out: &mut Vec<u8>, row_index: u32) -> Result<(), CmdError> {
    let names: BinNames<'_> = req.msg.ops().map(|o| o.name).collect();
    let all = req.msg.header.info1 & info1::GET_ALL != 0;
    let select = if all || names.is_empty() || names.iter().any(|n| n.is_empty()) {
        ReadSelect::All
    } else {
        ReadSelect::Bins(&names)
    };
    // The header goes first; the metadata and the op count are set once the bins are in.
    let mark = answer::begin(out, ResultCode::Ok, RecordMeta::default(), row_index);
    let mut n_ops = 0usize;
    let read = req.sns.ns.read_filtered(&req.digest, select, req.filter(), |b| {
        write_op(out, OpType::Read as u8, b.value.particle, b.name, b.value.bytes);
        n_ops += 1;
    });
    match read {
        Ok(meta) => {
            mark.set_generation(out, meta.generation as u32);
            mark.set_record_ttl(out, meta.void_time);
            mark.set_n_ops(out, answer::saturating_u16(n_ops));
            Ok(())
        }
        Err(e) => {
            out.truncate(mark.offset());
            Err(e.into())
        }
    }
}

/// Whether a read names no bins and does not ask for all of them.
pub(crate) fn selects_nothing(req: &Single<'_, '_>) -> bool {
    req.msg.header.info1 & info1::GET_ALL == 0 && req.msg.ops().next().is_none()
}

/// Whether the record exists, with its metadata.
pub(crate) fn exists(req: &Single<'_, '_>, out: &mut Vec<u8>, row_index: u32) -> Result<(), CmdError> {
    let meta = req.sns.ns.exists_filtered(&req.digest, req.filter())?;
    answer::begin(out, ResultCode::Ok, meta, row_index);
    Ok(())
}

/// An operate whose ops only read.
pub(crate) fn operate(req: &Single<'_, '_>, out: &mut Vec<u8>, row_index: u32) -> Result<(), CmdError> {
    let ops = req.ops()?;
    let policy = WritePolicy { respond_all_ops: req.respond_all_ops(), ..Default::default() };
    let request = OperateRequest { digest: req.digest, set: req.set, key: None, policy, ops: &ops };
    let outcome = req.sns.ns.operate_filtered(&request, req.filter())?;
    answer::operate(out, &outcome, row_index);
    Ok(())
}
