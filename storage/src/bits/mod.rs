//! Bitwise operations on bytes (blob) bins, with Aerospike's semantics: the modify ops
//! (resize, insert, remove, set, or, xor, and, not, lshift, rshift, add, subtract, set-int)
//! and the read ops (get, count, lscan, rscan, get-int) of op types 13 and 12.
//!
//! This module owns parsing a payload into a [`BitOp`], the write-flag and range checks and
//! what each op does to the bytes; bit-level access lives in `bitvec`. Offsets are bits
//! from the front (negative: from the end); sizes and offsets from the network are checked
//! against the protocol's bounds, and a result larger than a record may be is refused before
//! anything is allocated.

use petrel_proto::bits::{int_flags, modify, read, resize_flags, write_flags, INT_BITS_MAX};
use petrel_proto::wire::PROTO_SIZE_MAX;
use petrel_proto::ParticleType;

use crate::cdt::{Particle, ParticleRef};
use crate::oparg::OpArgs;
use crate::ops::BinOutcome;
use crate::StorageError;

mod bitvec;
#[cfg(test)]
mod tests;

/// Largest byte offset or byte size an op may name (the protocol's message size).
const BYTES_MAX: u64 = PROTO_SIZE_MAX;
/// Largest bit offset, bit size or shift an op may name.
const BITS_MAX: u64 = PROTO_SIZE_MAX * 8;

/// A parsed bit operation. Offsets and sizes are in bits, whatever unit the wire used.
#[derive(Debug, Clone, Copy)]
struct BitOp<'a> {
    code: i64,
    offset: i64,
    size: u64,
    /// The shift count, the integer operand or the scanned-for bit.
    value: u64,
    buf: &'a [u8],
    /// The bytes operand holds fewer bits than the op's size: refused, but only once the
    /// range is known to fit the bin (a range past the bin's end is refused first, as 26).
    buf_short: bool,
    flags: u64,
    /// Resize flags or integer flags.
    subflags: u64,
}

/// One argument slot of an op's signature.
#[derive(Debug, Clone, Copy)]
enum Slot {
    ByteOffset,
    BitOffset,
    ByteSize,
    ByteSizeOrZero,
    BitSize,
    IntSize,
    Bool,
    Shift,
    IntValue,
    Buf,
    /// Write flags, with the ones this op allows.
    Flags(u64),
    ResizeFlags,
    ArithFlags,
    GetIntFlags,
}

/// The op's signature: its argument slots, and how many of them are required.
fn signature(code: i64, modify_op: bool) -> Option<(&'static [Slot], usize)> {
    use Slot::*;
    const CREATE: u64 = write_flags::CREATE_ONLY | write_flags::UPDATE_ONLY | write_flags::NO_FAIL;
    const UPDATE: u64 = write_flags::UPDATE_ONLY | write_flags::NO_FAIL;
    const PARTIAL: u64 = UPDATE | write_flags::PARTIAL;
    Some(match (modify_op, code) {
        (true, modify::RESIZE) => (&[ByteSizeOrZero, Flags(CREATE), ResizeFlags], 1),
        (true, modify::INSERT) => (&[ByteOffset, Buf, Flags(CREATE)], 2),
        (true, modify::REMOVE) => (&[ByteOffset, ByteSize, Flags(PARTIAL)], 2),
        (true, modify::SET | modify::OR | modify::XOR | modify::AND) => (&[BitOffset, BitSize, Buf, Flags(PARTIAL)], 3),
        (true, modify::NOT) => (&[BitOffset, BitSize, Flags(PARTIAL)], 2),
        (true, modify::LSHIFT | modify::RSHIFT) => (&[BitOffset, BitSize, Shift, Flags(PARTIAL)], 3),
        (true, modify::ADD | modify::SUBTRACT) => (&[BitOffset, IntSize, IntValue, Flags(UPDATE), ArithFlags], 3),
        (true, modify::SET_INT) => (&[BitOffset, IntSize, IntValue, Flags(UPDATE)], 3),
        (false, read::GET | read::COUNT) => (&[BitOffset, BitSize], 2),
        (false, read::LSCAN | read::RSCAN) => (&[BitOffset, BitSize, Bool], 3),
        (false, read::GET_INT) => (&[BitOffset, IntSize, GetIntFlags], 2),
        _ => return None,
    })
}

/// Parses a payload; a read op sent as a modify (or the reverse) is a parameter error, as in
/// Aerospike.
fn parse<'a>(args: &'a OpArgs<'a>, modify_op: bool) -> Result<BitOp<'a>, StorageError> {
    let param = StorageError::Parameter;
    let (slots, required) = signature(args.code, modify_op).ok_or(param("unknown bit op code for this op type"))?;
    args.count(required, slots.len())?;
    let mut op =
        BitOp { code: args.code, offset: 0, size: 0, value: 0, buf: &[], buf_short: false, flags: 0, subflags: 0 };
    for (i, slot) in slots.iter().enumerate().take(args.args.len()) {
        match *slot {
            Slot::ByteOffset => {
                let v = args.int(i)?;
                if v.unsigned_abs() > BYTES_MAX {
                    return Err(param("byte offset out of range"));
                }
                op.offset = v * 8;
            }
            Slot::BitOffset => {
                let v = args.int(i)?;
                if v.unsigned_abs() > BITS_MAX {
                    return Err(param("bit offset out of range"));
                }
                op.offset = v;
            }
            Slot::ByteSize | Slot::ByteSizeOrZero => {
                let v = args.uint(i)?;
                if (v == 0 && matches!(slot, Slot::ByteSize)) || v > BYTES_MAX {
                    return Err(param("byte size out of range"));
                }
                op.size = v * 8;
            }
            Slot::BitSize => {
                let v = args.uint(i)?;
                if v == 0 || v > BITS_MAX {
                    return Err(param("bit size out of range"));
                }
                op.size = v;
            }
            Slot::IntSize => {
                let v = args.uint(i)?;
                if v == 0 || v > INT_BITS_MAX {
                    return Err(param("integer size must be 1 to 64 bits"));
                }
                op.size = v;
            }
            Slot::Bool => op.value = args.bool(i)? as u64,
            Slot::Shift => {
                op.value = args.uint(i)?;
                if op.value > BITS_MAX {
                    return Err(param("shift out of range"));
                }
            }
            Slot::IntValue => op.value = args.uint(i)?,
            Slot::Buf => {
                op.buf = args.bytes(i)?;
                let bits = op.buf.len() as u64 * 8;
                if op.buf.is_empty() {
                    return Err(param("bytes operand is empty"));
                }
                op.buf_short = op.size != 0 && bits < op.size;
                if op.size == 0 {
                    op.size = bits;
                }
            }
            Slot::Flags(allowed) => {
                op.flags = args.flag_set(i, allowed, write_flags::CREATE_ONLY | write_flags::UPDATE_ONLY)?
            }
            Slot::ResizeFlags => {
                let all = resize_flags::FROM_FRONT | resize_flags::GROW_ONLY | resize_flags::SHRINK_ONLY;
                op.subflags = args.flag_set(i, all, resize_flags::GROW_ONLY | resize_flags::SHRINK_ONLY)?;
            }
            Slot::ArithFlags => {
                let all = int_flags::SIGNED | int_flags::SATURATE | int_flags::WRAP;
                op.subflags = args.flag_set(i, all, int_flags::SATURATE | int_flags::WRAP)?;
            }
            Slot::GetIntFlags => op.subflags = args.flag_set(i, int_flags::SIGNED, 0)?,
        }
    }
    Ok(op)
}

/// A refusal that the no-fail flag turns into "skip this op".
fn refuse(op: &BitOp<'_>, err: StorageError) -> Result<BinOutcome, StorageError> {
    if op.flags & write_flags::NO_FAIL != 0 {
        Ok(BinOutcome::default())
    } else {
        Err(err)
    }
}

/// Applies a bit read (`modify == false`) or modify op to a bin (`existing`, `None` when the
/// bin is missing). `size_limit_bytes` bounds the bytes a modify may leave in the bin.
pub fn apply(
    existing: Option<ParticleRef<'_>>,
    payload: &[u8],
    modify_op: bool,
    size_limit_bytes: usize,
) -> Result<BinOutcome, StorageError> {
    let args = OpArgs::parse(payload)?;
    let mut op = parse(&args, modify_op)?;
    let blob = ParticleType::Blob as u8;
    if !modify_op {
        return match existing {
            // A read of a missing bin answers nothing, as any read of a missing bin does.
            None => Ok(BinOutcome::default()),
            Some(p) if p.particle != blob => Err(StorageError::IncompatibleType),
            Some(p) => read_op(&mut op, p.bytes),
        };
    }
    let old: &[u8] = match existing {
        Some(_) if op.flags & write_flags::CREATE_ONLY != 0 => return refuse(&op, StorageError::BinExists),
        Some(p) if p.particle != blob => return Err(StorageError::IncompatibleType),
        Some(p) => p.bytes,
        None => {
            let creates = matches!(op.code, modify::INSERT | modify::RESIZE);
            if !creates || op.flags & write_flags::UPDATE_ONLY != 0 {
                return refuse(&op, StorageError::BinNotFound);
            }
            if op.offset < 0 {
                return Err(StorageError::Parameter("negative offset on a missing bin"));
            }
            &[]
        }
    };
    normalize_offset(&mut op, old.len())?;
    modify(&mut op, old, size_limit_bytes)
}

/// Refuses a bin size past the record size limit, before anything that size is allocated.
fn check_size(new_len: usize, size_limit_bytes: usize) -> Result<(), StorageError> {
    if new_len > size_limit_bytes {
        return Err(StorageError::Parameter("bit operation would grow the bin past the record size limit"));
    }
    Ok(())
}

/// Turns a negative offset into one from the front; past the front is a parameter error.
fn normalize_offset(op: &mut BitOp<'_>, len_bytes: usize) -> Result<(), StorageError> {
    if op.offset < 0 {
        let len_bits = len_bytes as i64 * 8;
        if -op.offset > len_bits {
            return Err(StorageError::Parameter("negative offset reaches before the front"));
        }
        op.offset += len_bits;
    }
    Ok(())
}

/// Checks the op's bits lie inside `len` bytes, truncating them to the end with the partial
/// flag when `partial_ok`. `None` means the op is refused (`refuse` decides how).
fn fit(op: &mut BitOp<'_>, len_bytes: usize, partial_ok: bool) -> Option<()> {
    let len_bits = len_bytes as u64 * 8;
    let offset = op.offset as u64;
    if offset / 8 >= len_bytes as u64 {
        return None;
    }
    // The op covers whole bytes from its first to its last bit.
    let end_bytes = (offset + op.size).div_ceil(8);
    if end_bytes > len_bytes as u64 {
        if !partial_ok || op.flags & write_flags::PARTIAL == 0 {
            return None;
        }
        op.size = len_bits - offset;
    }
    Some(())
}

fn int_particle(v: i64) -> Particle {
    Particle { particle: ParticleType::Integer as u8, bytes: v.to_be_bytes().to_vec() }
}

fn read_op(op: &mut BitOp<'_>, bytes: &[u8]) -> Result<BinOutcome, StorageError> {
    normalize_offset(op, bytes.len())?;
    if fit(op, bytes.len(), false).is_none() {
        return Err(StorageError::OpNotApplicable("bit read reaches past the end of the bin"));
    }
    let (offset, size) = (op.offset as usize, op.size as usize);
    let result = match op.code {
        read::GET => Particle { particle: ParticleType::Blob as u8, bytes: bitvec::extract(bytes, offset, size) },
        read::COUNT => int_particle(bitvec::count_ones(bytes, offset, size) as i64),
        read::LSCAN => int_particle(bitvec::scan_left(bytes, offset, size, op.value == 1)),
        read::RSCAN => int_particle(bitvec::scan_right(bytes, offset, size, op.value == 1)),
        _ => {
            let v = bitvec::load(bytes, offset, size);
            let signed = op.subflags & int_flags::SIGNED != 0;
            int_particle(if signed { bitvec::sign_extend(v, size) } else { v as i64 })
        }
    };
    Ok(BinOutcome { new_value: None, result: Some(result) })
}

fn changed(bytes: Vec<u8>) -> Result<BinOutcome, StorageError> {
    Ok(BinOutcome { new_value: Some(Particle { particle: ParticleType::Blob as u8, bytes }), result: None })
}

fn modify(op: &mut BitOp<'_>, old: &[u8], size_limit_bytes: usize) -> Result<BinOutcome, StorageError> {
    let len = old.len();
    let byte_offset = (op.offset / 8) as usize;
    match op.code {
        modify::RESIZE => resize(op, old, size_limit_bytes),
        modify::INSERT => {
            // Inserting past the end pads the gap with zeros.
            let new_len = len.max(byte_offset) + op.buf.len();
            check_size(new_len, size_limit_bytes)?;
            let mut v = Vec::with_capacity(new_len);
            v.extend_from_slice(&old[..byte_offset.min(len)]);
            v.resize(byte_offset, 0);
            v.extend_from_slice(op.buf);
            v.extend_from_slice(&old[byte_offset.min(len)..]);
            changed(v)
        }
        modify::REMOVE => {
            if byte_offset >= len {
                return refuse(op, StorageError::Parameter("remove starts past the end of the bin"));
            }
            let mut n = (op.size / 8) as usize;
            if byte_offset + n > len {
                if op.flags & write_flags::PARTIAL == 0 {
                    return refuse(op, StorageError::Parameter("remove reaches past the end of the bin"));
                }
                n = len - byte_offset;
            }
            let mut v = old.to_vec();
            v.drain(byte_offset..byte_offset + n);
            changed(v)
        }
        modify::ADD | modify::SUBTRACT | modify::SET_INT => {
            if fit(op, len, false).is_none() {
                return refuse(op, StorageError::OpNotApplicable("integer reaches past the end of the bin"));
            }
            let (offset, size) = (op.offset as usize, op.size as usize);
            let Some(value) = arithmetic(op, bitvec::load(old, offset, size)) else {
                return refuse(op, StorageError::OpNotApplicable("integer overflow"));
            };
            let mut v = old.to_vec();
            bitvec::store(&mut v, offset, size, value);
            changed(v)
        }
        _ => {
            if fit(op, len, true).is_none() {
                return refuse(op, StorageError::OpNotApplicable("bit range reaches past the end of the bin"));
            }
            if op.buf_short {
                return Err(StorageError::Parameter("bytes operand is shorter than the bit size"));
            }
            let (offset, size) = (op.offset as usize, op.size as usize);
            let mut v = old.to_vec();
            match op.code {
                modify::SET => bitvec::overwrite(&mut v, offset, size, op.buf),
                modify::OR => bitvec::combine(&mut v, offset, size, op.buf, |a, b| a | b),
                modify::XOR => bitvec::combine(&mut v, offset, size, op.buf, |a, b| a ^ b),
                modify::AND => bitvec::combine(&mut v, offset, size, op.buf, |a, b| a & b),
                modify::NOT => bitvec::invert(&mut v, offset, size),
                modify::LSHIFT => bitvec::shift_left(&mut v, offset, size, op.value),
                _ => bitvec::shift_right(&mut v, offset, size, op.value),
            }
            changed(v)
        }
    }
}

fn resize(op: &BitOp<'_>, old: &[u8], size_limit_bytes: usize) -> Result<BinOutcome, StorageError> {
    let target = (op.size / 8) as usize;
    let from_front = op.subflags & resize_flags::FROM_FRONT != 0;
    let len = old.len();
    if target == len {
        return Ok(BinOutcome::default());
    }
    if target < len {
        if op.subflags & resize_flags::GROW_ONLY != 0 {
            return refuse(op, StorageError::Parameter("resize would shrink with grow-only"));
        }
        let kept = if from_front { &old[len - target..] } else { &old[..target] };
        return changed(kept.to_vec());
    }
    if op.subflags & resize_flags::SHRINK_ONLY != 0 {
        return refuse(op, StorageError::Parameter("resize would grow with shrink-only"));
    }
    check_size(target, size_limit_bytes)?;
    let mut v = Vec::with_capacity(target);
    if from_front {
        v.resize(target - len, 0);
        v.extend_from_slice(old);
    } else {
        v.extend_from_slice(old);
        v.resize(target, 0);
    }
    changed(v)
}

/// The integer an add, subtract or set-int leaves, or `None` on an overflow the op's flags
/// make a failure.
fn arithmetic(op: &BitOp<'_>, load: u64) -> Option<u64> {
    let size = op.size as usize;
    let mask = bitvec::mask(size);
    let value = op.value & mask;
    if op.code == modify::SET_INT {
        return Some(value);
    }
    let signed = op.subflags & int_flags::SIGNED != 0;
    let wrap = op.subflags & int_flags::WRAP != 0;
    let saturate = op.subflags & int_flags::SATURATE != 0;
    let add = op.code == modify::ADD;
    let result = if add { load.wrapping_add(value) } else { load.wrapping_sub(value) } & mask;
    if wrap {
        return Some(result);
    }
    if signed {
        // The true result, in a type that cannot overflow, against the field's range.
        let l = i128::from(bitvec::sign_extend(load, size));
        let v = i128::from(bitvec::sign_extend(value, size));
        let exact = if add { l + v } else { l - v };
        let (min, max) = (-(1i128 << (size - 1)), (1i128 << (size - 1)) - 1);
        if exact < min {
            return saturate.then_some((mask >> (size - 1)) << (size - 1));
        }
        if exact > max {
            return saturate.then_some(mask >> 1);
        }
        return Some(result);
    }
    let overflow = if add { result < load } else { result > load };
    if !overflow {
        Some(result)
    } else if saturate {
        Some(if add { mask } else { 0 })
    } else {
        None
    }
}
