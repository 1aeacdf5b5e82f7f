//! HyperLogLog operations on HLL bins (particle type 18), with Aerospike's semantics: the
//! modify ops (init, add, set-union, refresh-count, fold) of op type 16 and the read ops
//! (count, union, union-count, intersect-count, similarity, describe) of op type 15.
//!
//! This module owns parsing a payload, the flag and bit-count checks and what each op does;
//! the value layout and register changes live in `sketch`, the estimates in `estimate`.
//! Every bit count from the network is checked before a sketch is sized from it.

use petrel_proto::hll::{self as contract, modify, read, write_flags, BITS_UNSET};
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::ParticleType;

use crate::cdt::{Particle, ParticleRef};
use crate::oparg::{list_header, split_values, OpArgs};
use crate::ops::BinOutcome;
use crate::StorageError;

mod estimate;
mod sketch;
#[cfg(test)]
mod tests;

use sketch::{Sketch, SketchRef};

/// A parsed HLL op.
#[derive(Debug, Default)]
struct HllOp<'a> {
    code: i64,
    /// `None`: not given (or -1), so kept from the bin or defaulted.
    index_bits: Option<u8>,
    minhash_bits: Option<u8>,
    flags: u64,
    /// Elements to add, as msgpack bytes.
    elements: Vec<&'a [u8]>,
    /// Sketch operands.
    sketches: Vec<SketchRef<'a>>,
}

/// One argument slot of an op's signature.
#[derive(Debug, Clone, Copy)]
enum Slot {
    IndexBits,
    MinhashBits,
    /// Write flags, with the ones this op allows.
    Flags(u64),
    Elements,
    Sketches,
    /// Sketches for intersect and similarity: past two, all share non-zero min-hash bits.
    IntersectSketches,
}

/// The op's signature: its argument slots, and how many are required.
fn signature(code: i64, modify_op: bool) -> Option<(&'static [Slot], usize)> {
    use write_flags::*;
    use Slot::*;
    Some(match (modify_op, code) {
        (true, modify::INIT) => (&[IndexBits, MinhashBits, Flags(CREATE_ONLY | UPDATE_ONLY | NO_FAIL)], 0),
        (true, modify::ADD) => (&[Elements, IndexBits, MinhashBits, Flags(CREATE_ONLY | NO_FAIL)], 1),
        (true, modify::SET_UNION) => (&[Sketches, Flags(CREATE_ONLY | UPDATE_ONLY | ALLOW_FOLD | NO_FAIL)], 1),
        (true, modify::REFRESH_COUNT) | (false, read::COUNT | read::DESCRIBE) => (&[], 0),
        (true, modify::FOLD) => (&[IndexBits], 1),
        (false, read::MAY_CONTAIN) => (&[Elements], 1),
        (false, read::UNION | read::UNION_COUNT) => (&[Sketches], 1),
        (false, read::INTERSECT_COUNT | read::SIMILARITY) => (&[IntersectSketches], 1),
        _ => return None,
    })
}

/// A bit-count argument: -1 for "unset", else within the allowed range.
fn bits_arg(args: &OpArgs<'_>, i: usize, ok: fn(u64) -> bool) -> Result<Option<u8>, StorageError> {
    match args.int(i)? {
        BITS_UNSET => Ok(None),
        v if v >= 0 && ok(v as u64) => Ok(Some(v as u8)),
        _ => Err(StorageError::Parameter("HLL bit count out of range")),
    }
}

/// The msgpack bytes of each element of the list argument `i`; lists and maps are refused.
fn elements<'a>(args: &OpArgs<'a>, i: usize) -> Result<Vec<&'a [u8]>, StorageError> {
    let raw = args.args.get(i).map(|a| a.raw).ok_or(StorageError::Parameter("missing HLL elements"))?;
    let (n, body) = list_header(raw)?;
    let (items, _) = split_values(n, body)?;
    if items.is_empty() {
        return Err(StorageError::Parameter("no HLL elements"));
    }
    if items.iter().any(|a| matches!(a.value, MsgValue::List(_) | MsgValue::Map(_))) {
        return Err(StorageError::Parameter("HLL elements may not be lists or maps"));
    }
    Ok(items.into_iter().map(|a| a.raw).collect())
}

/// The sketches of the list argument `i`.
fn sketches<'a>(args: &'a OpArgs<'a>, i: usize) -> Result<Vec<SketchRef<'a>>, StorageError> {
    let Some(MsgValue::List(items)) = args.args.get(i).map(|a| &a.value) else {
        return Err(StorageError::Parameter("HLL operands are not a list"));
    };
    if items.is_empty() {
        return Err(StorageError::Parameter("no HLL operands"));
    }
    items
        .iter()
        .map(|v| match v {
            MsgValue::Blob(_, b) | MsgValue::Str(b) => SketchRef::new_unchecked_sum(b),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(StorageError::Parameter("HLL operand is not a valid HLL value"))
}

fn parse<'a>(args: &'a OpArgs<'a>, modify_op: bool) -> Result<HllOp<'a>, StorageError> {
    let (slots, required) =
        signature(args.code, modify_op).ok_or(StorageError::Parameter("unknown HLL op code for this op type"))?;
    args.count(required, slots.len())?;
    let mut op = HllOp { code: args.code, ..HllOp::default() };
    for (i, slot) in slots.iter().enumerate().take(args.args.len()) {
        match *slot {
            Slot::IndexBits => op.index_bits = bits_arg(args, i, contract::index_bits_ok)?,
            Slot::MinhashBits => {
                op.minhash_bits = bits_arg(args, i, contract::minhash_bits_ok)?;
                if let (Some(ib), Some(mb)) = (op.index_bits, op.minhash_bits) {
                    if !contract::bits_ok(ib as u64, mb as u64) {
                        return Err(StorageError::Parameter("index and min-hash bits over 64 together"));
                    }
                }
            }
            Slot::Flags(allowed) => {
                op.flags = args.flag_set(i, allowed, write_flags::CREATE_ONLY | write_flags::UPDATE_ONLY)?
            }
            Slot::Elements => op.elements = elements(args, i)?,
            Slot::Sketches | Slot::IntersectSketches => {
                op.sketches = sketches(args, i)?;
                if matches!(slot, Slot::IntersectSketches) && op.sketches.len() > 2 {
                    let mb = op.sketches[0].minhash_bits();
                    if mb == 0 || op.sketches.iter().any(|s| s.minhash_bits() != mb) {
                        return Err(StorageError::Parameter(
                            "more than two HLLs to intersect need the same non-zero min-hash bits",
                        ));
                    }
                }
            }
        }
    }
    Ok(op)
}

fn int_particle(v: u64) -> Particle {
    Particle { particle: ParticleType::Integer as u8, bytes: (v as i64).to_be_bytes().to_vec() }
}

fn hll_particle(s: Sketch) -> Particle {
    Particle { particle: ParticleType::Hll as u8, bytes: s.into_bytes() }
}

/// Applies an HLL read (`modify == false`) or modify op to a bin (`existing`, `None` when the
/// bin is missing).
pub fn apply(existing: Option<ParticleRef<'_>>, payload: &[u8], modify_op: bool) -> Result<BinOutcome, StorageError> {
    let current = match existing {
        None => None,
        Some(p) if p.particle != ParticleType::Hll as u8 => return Err(StorageError::IncompatibleType),
        Some(p) => Some(SketchRef::new(p.bytes).ok_or(StorageError::Internal("stored HLL value is malformed"))?),
    };
    let args = OpArgs::parse(payload)?;
    let op = parse(&args, modify_op)?;
    if !modify_op {
        // A read of a missing bin answers nothing, as any read of a missing bin does.
        return Ok(match current {
            None => BinOutcome::default(),
            Some(s) => BinOutcome { new_value: None, result: Some(read_op(&op, s)?) },
        });
    }
    let skip = op.flags & write_flags::NO_FAIL != 0;
    match current {
        Some(_) if op.flags & write_flags::CREATE_ONLY != 0 => {
            return if skip { Ok(BinOutcome::default()) } else { Err(StorageError::BinExists) };
        }
        None if op.flags & write_flags::UPDATE_ONLY != 0 => {
            return if skip { Ok(BinOutcome::default()) } else { Err(StorageError::BinNotFound) };
        }
        _ => {}
    }
    let (sketch, result) = modify(&op, current)?;
    Ok(BinOutcome { new_value: Some(hll_particle(sketch)), result })
}

/// The bit counts a new sketch gets: the op's, or the bin's when the op leaves them unset.
fn init_bits(op: &HllOp<'_>, current: Option<SketchRef<'_>>) -> Result<(u8, u8), StorageError> {
    let not_applicable = StorageError::OpNotApplicable;
    match current {
        None => {
            Ok((op.index_bits.ok_or(not_applicable("creating an HLL needs index bits"))?, op.minhash_bits.unwrap_or(0)))
        }
        Some(s) => {
            let ib = op.index_bits.unwrap_or(s.index_bits());
            let mb = op.minhash_bits.unwrap_or(s.minhash_bits());
            if !contract::bits_ok(ib as u64, mb as u64) {
                return Err(not_applicable("index and min-hash bits over 64 together"));
            }
            Ok((ib, mb))
        }
    }
}

fn modify(op: &HllOp<'_>, current: Option<SketchRef<'_>>) -> Result<(Sketch, Option<Particle>), StorageError> {
    let not_applicable = StorageError::OpNotApplicable;
    match op.code {
        modify::INIT => {
            let (ib, mb) = init_bits(op, current)?;
            Ok((Sketch::empty(ib, mb), None))
        }
        modify::ADD => {
            let mut s = match current {
                Some(s) => Sketch::copy_of(s),
                None => {
                    let (ib, mb) = init_bits(op, None)?;
                    Sketch::empty(ib, mb)
                }
            };
            let added = op.elements.iter().filter(|e| s.add(e)).count();
            Ok((s, Some(int_particle(added as u64))))
        }
        modify::SET_UNION => {
            let (min_ib, min_mb) = estimate::template(&op.sketches);
            if let Some(s) = current {
                if op.flags & write_flags::ALLOW_FOLD == 0 {
                    if s.index_bits() > min_ib {
                        return Err(not_applicable("union would lower the bin's index bits"));
                    }
                    if s.minhash_bits() != 0 && s.minhash_bits() != min_mb {
                        return Err(not_applicable("union would drop the bin's min-hash bits"));
                    }
                }
            }
            let mut all = op.sketches.clone();
            all.extend(current);
            let union = estimate::union(&all);
            // Operands may carry index and min-hash bits over 64 together (as in Aerospike),
            // but a stored value may not: every later op would refuse the bin.
            if !union.is_storable() {
                return Err(not_applicable("union's index and min-hash bits exceed 64"));
            }
            Ok((union, None))
        }
        modify::REFRESH_COUNT => {
            let s = current.ok_or(StorageError::BinNotFound)?;
            let count = estimate::cardinality(s);
            let mut copy = Sketch::copy_of(s);
            copy.set_cache(count);
            Ok((copy, Some(int_particle(count))))
        }
        _ => {
            let s = current.ok_or(StorageError::BinNotFound)?;
            if s.minhash_bits() > 0 {
                return Err(not_applicable("cannot fold an HLL with min-hash bits"));
            }
            let target = op.index_bits.ok_or(not_applicable("fold needs index bits"))?;
            if s.index_bits() < target {
                return Err(not_applicable("fold cannot raise index bits"));
            }
            if s.index_bits() == target {
                return Ok((Sketch::copy_of(s), None));
            }
            let mut folded = Sketch::empty(target, 0);
            folded.union(s);
            Ok((folded, None))
        }
    }
}

fn read_op(op: &HllOp<'_>, current: SketchRef<'_>) -> Result<Particle, StorageError> {
    // The bin's sketch comes last, as Aerospike orders them (it matters to estimates).
    let mut all = op.sketches.clone();
    all.push(current);
    Ok(match op.code {
        read::COUNT => int_particle(estimate::cardinality(current)),
        read::MAY_CONTAIN => int_particle(u64::from(op.elements.iter().all(|e| current.may_contain(e)))),
        read::UNION => hll_particle(estimate::union(&all)),
        read::UNION_COUNT => int_particle(estimate::union_cardinality(&all)),
        read::INTERSECT_COUNT | read::SIMILARITY => {
            let mb = op.sketches[0].minhash_bits();
            if op.sketches.len() > 2 && (current.minhash_bits() == 0 || current.minhash_bits() != mb) {
                return Err(StorageError::OpNotApplicable(
                    "more than two HLLs to intersect need the bin's min-hash bits",
                ));
            }
            if op.code == read::SIMILARITY {
                let j = estimate::similarity(&all);
                Particle { particle: ParticleType::Float as u8, bytes: j.to_be_bytes().to_vec() }
            } else {
                int_particle(estimate::intersect_cardinality(&all))
            }
        }
        _ => {
            let desc = MsgValue::List(vec![
                MsgValue::Int(current.index_bits() as i64),
                MsgValue::Int(current.minhash_bits() as i64),
            ]);
            Particle { particle: ParticleType::List as u8, bytes: msgpack::to_vec(&desc) }
        }
    })
}
