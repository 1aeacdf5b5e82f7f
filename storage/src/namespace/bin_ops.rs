//! The bin-op engine: what each op of an operate does to a record's bins (read, write, add,
//! append, prepend, touch, delete, list and map, bit and HyperLogLog ops; expression ops in
//! `exp_ops`) and what it answers. It works on a list
//! of [`WorkBin`]s that borrow from the stored image until an op changes them, so ops that
//! change little copy little.

use petrel_proto::particle;
use petrel_proto::ParticleType;

use super::exp_ops;
use crate::exp::RecordCtx;
use crate::ops::{BinOutcome, Op, OpResult};
use crate::record::{self, BinRef};
use crate::value::{prepare_for_store, Particle, ParticleRef};
use crate::StorageError;
use crate::{bits, cdt, hll};

/// Bytes borrowed from the old image or owned after a change.
#[derive(Debug)]
pub(super) enum CowBytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl CowBytes<'_> {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            CowBytes::Borrowed(b) => b,
            CowBytes::Owned(v) => v,
        }
    }
    pub(super) fn len(&self) -> usize {
        self.as_slice().len()
    }
}

/// The bins of a record being worked on; inline up to 8.
pub(super) type WorkBins<'a> = smallvec::SmallVec<[WorkBin<'a>; 8]>;

/// A bin being worked on by an operate.
#[derive(Debug)]
pub(super) struct WorkBin<'a> {
    pub(super) name: &'a [u8],
    pub(super) particle: u8,
    pub(super) value: CowBytes<'a>,
}

impl<'a> WorkBin<'a> {
    /// A stored bin, borrowed until an op changes it.
    pub(super) fn stored(b: BinRef<'a>) -> Self {
        WorkBin { name: b.name, particle: b.value.particle, value: CowBytes::Borrowed(b.value.bytes) }
    }
}

impl WorkBin<'_> {
    fn particle_ref(&self) -> ParticleRef<'_> {
        ParticleRef { particle: self.particle, bytes: self.value.as_slice() }
    }
    fn to_particle(&self) -> Particle {
        Particle { particle: self.particle, bytes: self.value.as_slice().to_vec() }
    }
}

/// The position of bin `name`.
pub(super) fn find_bin(bins: &[WorkBin<'_>], name: &[u8]) -> Option<usize> {
    bins.iter().position(|b| b.name == name)
}

/// Sets bin `name` to a value, adding the bin when it is missing (up to [`record::BINS_MAX`]).
pub(super) fn set_bin<'a>(
    bins: &mut WorkBins<'a>,
    name: &'a [u8],
    particle: u8,
    value: CowBytes<'a>,
) -> Result<(), StorageError> {
    match find_bin(bins, name) {
        Some(i) => {
            bins[i].particle = particle;
            bins[i].value = value;
        }
        None => {
            if bins.len() >= record::BINS_MAX {
                return Err(StorageError::Parameter("too many bins"));
            }
            bins.push(WorkBin { name, particle, value });
        }
    }
    Ok(())
}

/// Applies one op to the bins, pushing its answer (if any) onto `results`; with
/// `respond_all`, writes answer too. `size_limit_bytes` (the record size limit) bounds what a
/// bit op may grow a bin to before anything is allocated for it.
pub(super) fn apply_op<'a>(
    op: &Op<'a>,
    bins: &mut WorkBins<'a>,
    results: &mut Vec<OpResult>,
    respond_all: bool,
    size_limit_bytes: usize,
    rec: &RecordCtx<'_>,
) -> Result<(), StorageError> {
    let op_type = op.op_type();
    let write_ack = |results: &mut Vec<OpResult>, bin: &[u8]| {
        if respond_all {
            results.push(OpResult { op_type, bin: bin.to_vec(), value: None });
        }
    };
    match *op {
        Op::Read { bin } => {
            if bin.is_empty() {
                for b in bins.iter() {
                    results.push(OpResult { op_type, bin: b.name.to_vec(), value: Some(b.to_particle()) });
                }
            } else {
                match find_bin(bins, bin) {
                    Some(i) => {
                        results.push(OpResult { op_type, bin: bin.to_vec(), value: Some(bins[i].to_particle()) })
                    }
                    None if respond_all => results.push(OpResult { op_type, bin: bin.to_vec(), value: None }),
                    None => {}
                }
            }
        }
        Op::Write { bin, value } => {
            if value.particle == ParticleType::Null as u8 {
                bins.retain(|b| b.name != bin);
            } else {
                store_operand(bins, bin, value)?;
            }
            write_ack(results, bin);
        }
        // Like Aerospike, an add, append or prepend onto a missing bin stores its operand,
        // whatever its type; a nil operand is refused.
        Op::Add { value, .. } | Op::Append { value, .. } | Op::Prepend { value, .. }
            if value.particle == ParticleType::Null as u8 =>
        {
            return Err(StorageError::Parameter("nil operand"));
        }
        Op::Add { bin, value } | Op::Append { bin, value } | Op::Prepend { bin, value }
            if find_bin(bins, bin).is_none() =>
        {
            store_operand(bins, bin, value)?;
            write_ack(results, bin);
        }
        Op::Add { bin, value } => {
            let current = find_bin(bins, bin).map(|i| bins[i].particle_ref());
            let (particle, bytes) = add_values(current, value)?;
            set_bin(bins, bin, particle, CowBytes::Owned(bytes))?;
            write_ack(results, bin);
        }
        Op::Append { bin, value } | Op::Prepend { bin, value } => {
            let t = value.particle;
            if t != ParticleType::String as u8 && t != ParticleType::Blob as u8 {
                return Err(StorageError::IncompatibleType);
            }
            match find_bin(bins, bin) {
                Some(i) => {
                    if bins[i].particle != t {
                        return Err(StorageError::IncompatibleType);
                    }
                    let old = bins[i].value.as_slice();
                    let mut joined = Vec::with_capacity(old.len() + value.bytes.len());
                    if matches!(op, Op::Append { .. }) {
                        joined.extend_from_slice(old);
                        joined.extend_from_slice(value.bytes);
                    } else {
                        joined.extend_from_slice(value.bytes);
                        joined.extend_from_slice(old);
                    }
                    bins[i].value = CowBytes::Owned(joined);
                }
                None => set_bin(bins, bin, t, CowBytes::Borrowed(value.bytes))?,
            }
            write_ack(results, bin);
        }
        // Touch answers nothing, even when every op is to be answered.
        Op::Touch => {}
        Op::DeleteRecord => {
            bins.clear();
            write_ack(results, b"");
        }
        Op::CdtRead { bin, payload } | Op::CdtModify { bin, payload } => {
            let modify = matches!(op, Op::CdtModify { .. });
            let idx = find_bin(bins, bin);
            let outcome = cdt::apply(idx.map(|i| bins[i].particle_ref()), payload, modify)?;
            match outcome.new_value {
                None => {}
                Some(None) => bins.retain(|b| b.name != bin),
                Some(Some(p)) => set_bin(bins, bin, p.particle, CowBytes::Owned(p.bytes))?,
            }
            match outcome.result {
                Some(p) => results.push(OpResult { op_type, bin: bin.to_vec(), value: Some(p) }),
                None if respond_all => results.push(OpResult { op_type, bin: bin.to_vec(), value: None }),
                None => {}
            }
        }
        Op::BitRead { bin, payload } | Op::BitModify { bin, payload } => {
            let current = find_bin(bins, bin).map(|i| bins[i].particle_ref());
            let modify = matches!(op, Op::BitModify { .. });
            let outcome = bits::apply(current, payload, modify, size_limit_bytes)?;
            apply_outcome(bins, results, respond_all, op_type, bin, outcome)?;
        }
        Op::HllRead { bin, payload } | Op::HllModify { bin, payload } => {
            let current = find_bin(bins, bin).map(|i| bins[i].particle_ref());
            let outcome = hll::apply(current, payload, matches!(op, Op::HllModify { .. }))?;
            apply_outcome(bins, results, respond_all, op_type, bin, outcome)?;
        }
        Op::ExpRead { bin, payload } => exp_ops::read(bin, payload, bins, rec, results, size_limit_bytes)?,
        Op::ExpModify { bin, payload } => {
            exp_ops::modify(bin, payload, bins, rec, results, respond_all, size_limit_bytes)?
        }
    }
    Ok(())
}

/// Stores a value sent by the client as bin `bin`, in the form records keep it.
fn store_operand<'a>(bins: &mut WorkBins<'a>, bin: &'a [u8], value: ParticleRef<'a>) -> Result<(), StorageError> {
    let stored = match prepare_for_store(value)? {
        std::borrow::Cow::Borrowed(b) => CowBytes::Borrowed(b),
        std::borrow::Cow::Owned(v) => CowBytes::Owned(v),
    };
    set_bin(bins, bin, value.particle, stored)
}

/// Stores a bit or HLL op's new value and answers it like a CDT op: its result, or nil when
/// every op is to be answered.
fn apply_outcome<'a>(
    bins: &mut WorkBins<'a>,
    results: &mut Vec<OpResult>,
    respond_all: bool,
    op_type: petrel_proto::wire::OpType,
    bin: &'a [u8],
    outcome: BinOutcome,
) -> Result<(), StorageError> {
    if let Some(p) = outcome.new_value {
        set_bin(bins, bin, p.particle, CowBytes::Owned(p.bytes))?;
    }
    if outcome.result.is_some() || respond_all {
        results.push(OpResult { op_type, bin: bin.to_vec(), value: outcome.result });
    }
    Ok(())
}

/// Integer add wraps on overflow, as in Aerospike; float add is IEEE. The bin is created with
/// the operand when missing.
fn add_values(current: Option<ParticleRef<'_>>, operand: ParticleRef<'_>) -> Result<(u8, Vec<u8>), StorageError> {
    let int = ParticleType::Integer as u8;
    let float = ParticleType::Float as u8;
    if operand.particle == int {
        let add = particle::decode_int(operand.bytes)?;
        let base = match current {
            None => 0,
            Some(c) if c.particle == int => particle::decode_int(c.bytes)?,
            Some(_) => return Err(StorageError::IncompatibleType),
        };
        Ok((int, base.wrapping_add(add).to_be_bytes().to_vec()))
    } else if operand.particle == float {
        let add = particle::decode_float(operand.bytes)?;
        let base = match current {
            None => 0.0,
            Some(c) if c.particle == float => {
                particle::decode_float(c.bytes).map_err(|_| StorageError::Internal("stored float is not 8 bytes"))?
            }
            Some(_) => return Err(StorageError::IncompatibleType),
        };
        Ok((float, (base + add).to_be_bytes().to_vec()))
    } else {
        Err(StorageError::IncompatibleType)
    }
}
