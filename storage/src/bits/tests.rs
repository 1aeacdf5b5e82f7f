//! Bit operations checked against a plain bit-vector model (`Vec<bool>`), by example and by
//! property, and the result codes of Aerospike's checks.

use petrel_proto::bits::{int_flags, modify, read, resize_flags, write_flags};
use petrel_proto::msgpack::MsgValue;
use petrel_proto::{ParticleType, ResultCode};
use proptest::prelude::*;

use super::apply;
use crate::cdt::ParticleRef;
use crate::oparg::build::{int, payload};
use crate::ops::BinOutcome;
use crate::StorageError;

const LIMIT: usize = 1 << 20;

fn buf(b: &[u8]) -> MsgValue {
    MsgValue::Blob(ParticleType::Blob as u8, b.to_vec())
}

fn blob(b: &[u8]) -> Option<ParticleRef<'_>> {
    Some(ParticleRef { particle: ParticleType::Blob as u8, bytes: b })
}

/// Runs a modify op; `Ok(None)` when the bin is left as it was.
fn modify_op(bin: Option<&[u8]>, code: i64, args: &[MsgValue]) -> Result<Option<Vec<u8>>, ResultCode> {
    let p = payload(code, args);
    apply(bin.and_then(blob), &p, true, LIMIT).map(|o| o.new_value.map(|v| v.bytes)).map_err(|e| e.result_code())
}

fn read_op(bin: &[u8], code: i64, args: &[MsgValue]) -> Result<Vec<u8>, ResultCode> {
    let p = payload(code, args);
    let out = apply(blob(bin), &p, false, LIMIT).map_err(|e| e.result_code())?;
    Ok(out.result.expect("a read answers").bytes)
}

fn read_int(bin: &[u8], code: i64, args: &[MsgValue]) -> Result<i64, ResultCode> {
    read_op(bin, code, args).map(|b| i64::from_be_bytes(b.try_into().expect("8 bytes")))
}

fn to_bits(b: &[u8]) -> Vec<bool> {
    (0..b.len() * 8).map(|i| b[i / 8] & (0x80 >> (i % 8)) != 0).collect()
}

fn from_bits(bits: &[bool]) -> Vec<u8> {
    let mut out = vec![0u8; bits.len().div_ceil(8)];
    for (i, &b) in bits.iter().enumerate() {
        if b {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

#[test]
fn resize_grows_and_shrinks_at_either_end() {
    let b = [1u8, 2];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &[int(4)]), Ok(Some(vec![1, 2, 0, 0])));
    let front = [int(4), int(0), int(resize_flags::FROM_FRONT as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &front), Ok(Some(vec![0, 0, 1, 2])));
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &[int(1)]), Ok(Some(vec![1])));
    let front = [int(1), int(0), int(resize_flags::FROM_FRONT as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &front), Ok(Some(vec![2])));
    let grow_only = [int(1), int(0), int(resize_flags::GROW_ONLY as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &grow_only), Err(ResultCode::Parameter));
    let shrink_only = [int(3), int(0), int(resize_flags::SHRINK_ONLY as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &shrink_only), Err(ResultCode::Parameter));
    let no_fail = [int(3), int(write_flags::NO_FAIL as i64), int(resize_flags::SHRINK_ONLY as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &no_fail), Ok(None));
    let both = [int(3), int(0), int((resize_flags::SHRINK_ONLY | resize_flags::GROW_ONLY) as i64)];
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &both), Err(ResultCode::Parameter));
    assert_eq!(modify_op(None, modify::RESIZE, &[int(2)]), Ok(Some(vec![0, 0])));
    assert_eq!(modify_op(Some(&b), modify::RESIZE, &[int(2)]), Ok(None));
}

#[test]
fn sizes_past_the_record_limit_are_refused_before_allocation() {
    // 128 MiB is within the protocol's bound, so only the record limit refuses it.
    assert_eq!(modify_op(None, modify::RESIZE, &[int(128 << 20)]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(None, modify::INSERT, &[int(100 << 20), buf(&[1])]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(None, modify::RESIZE, &[int((128 << 20) + 1)]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&[0]), modify::SET, &[int(1 << 40), int(1), buf(&[1])]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&[0]), modify::NOT, &[int(0), int(-1)]), Err(ResultCode::Parameter));
    assert_eq!(read_op(&[0], read::GET, &[int(0), int(1 << 40)]), Err(ResultCode::Parameter));
}

#[test]
fn insert_and_remove() {
    let b = [1u8, 2, 3];
    assert_eq!(modify_op(Some(&b), modify::INSERT, &[int(1), buf(&[9, 9])]), Ok(Some(vec![1, 9, 9, 2, 3])));
    assert_eq!(modify_op(Some(&b), modify::INSERT, &[int(5), buf(&[9])]), Ok(Some(vec![1, 2, 3, 0, 0, 9])));
    assert_eq!(modify_op(None, modify::INSERT, &[int(1), buf(&[9])]), Ok(Some(vec![0, 9])));
    assert_eq!(modify_op(Some(&b), modify::INSERT, &[int(-1), buf(&[9])]), Ok(Some(vec![1, 2, 9, 3])));
    assert_eq!(modify_op(None, modify::INSERT, &[int(-1), buf(&[9])]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&b), modify::INSERT, &[int(0), buf(&[])]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&b), modify::REMOVE, &[int(1), int(1)]), Ok(Some(vec![1, 3])));
    assert_eq!(modify_op(Some(&b), modify::REMOVE, &[int(1), int(5)]), Err(ResultCode::Parameter));
    let partial = [int(1), int(5), int(write_flags::PARTIAL as i64)];
    assert_eq!(modify_op(Some(&b), modify::REMOVE, &partial), Ok(Some(vec![1])));
    assert_eq!(modify_op(Some(&b), modify::REMOVE, &[int(3), int(1)]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&b), modify::REMOVE, &[int(0), int(0)]), Err(ResultCode::Parameter));
}

#[test]
fn write_flags_and_bin_state() {
    let create = int(write_flags::CREATE_ONLY as i64);
    assert_eq!(modify_op(Some(&[1]), modify::INSERT, &[int(0), buf(&[2]), create.clone()]), Err(ResultCode::BinExists));
    let quiet = int((write_flags::CREATE_ONLY | write_flags::NO_FAIL) as i64);
    assert_eq!(modify_op(Some(&[1]), modify::INSERT, &[int(0), buf(&[2]), quiet]), Ok(None));
    let update = int(write_flags::UPDATE_ONLY as i64);
    assert_eq!(modify_op(None, modify::INSERT, &[int(0), buf(&[2]), update]), Err(ResultCode::BinNotFound));
    assert_eq!(modify_op(None, modify::SET, &[int(0), int(8), buf(&[2])]), Err(ResultCode::BinNotFound));
    // Create-only is not a flag set-like ops take.
    assert_eq!(modify_op(Some(&[1]), modify::SET, &[int(0), int(8), buf(&[2]), create]), Err(ResultCode::Parameter));
    let both = int((write_flags::CREATE_ONLY | write_flags::UPDATE_ONLY) as i64);
    assert_eq!(modify_op(Some(&[1]), modify::RESIZE, &[int(2), both]), Err(ResultCode::Parameter));
    let string = ParticleRef { particle: ParticleType::String as u8, bytes: b"ab" };
    let p = payload(modify::NOT, &[int(0), int(1)]);
    assert_eq!(apply(Some(string), &p, true, LIMIT), Err(StorageError::IncompatibleType));
    let p = payload(read::COUNT, &[int(0), int(1)]);
    assert_eq!(apply(Some(string), &p, false, LIMIT), Err(StorageError::IncompatibleType));
    assert_eq!(apply(None, &p, false, LIMIT), Ok(BinOutcome::default()));
    // A read op sent as a modify, and the reverse, are parameter errors.
    assert_eq!(apply(blob(&[1]), &p, true, LIMIT).map_err(|e| e.result_code()), Err(ResultCode::Parameter));
    let p = payload(modify::NOT, &[int(0), int(1)]);
    assert_eq!(apply(blob(&[1]), &p, false, LIMIT).map_err(|e| e.result_code()), Err(ResultCode::Parameter));
}

#[test]
fn integers_add_subtract_and_overflow() {
    let b = [0x00u8, 0xff];
    let add = |bin: &[u8], off: i64, size: i64, v: i64, flags: u64| {
        modify_op(Some(bin), modify::ADD, &[int(off), int(size), int(v), int(0), int(flags as i64)])
    };
    assert_eq!(add(&b, 0, 8, 5, 0), Ok(Some(vec![5, 0xff])));
    assert_eq!(add(&b, 8, 8, 1, 0), Err(ResultCode::OpNotApplicable));
    assert_eq!(add(&b, 8, 8, 1, int_flags::WRAP), Ok(Some(vec![0, 0])));
    assert_eq!(add(&b, 8, 8, 1, int_flags::SATURATE), Ok(Some(vec![0, 0xff])));
    // 0x7f + 1 overflows signed 8 bits.
    assert_eq!(add(&[0x7f], 0, 8, 1, int_flags::SIGNED), Err(ResultCode::OpNotApplicable));
    assert_eq!(add(&[0x7f], 0, 8, 1, int_flags::SIGNED | int_flags::SATURATE), Ok(Some(vec![0x7f])));
    let sub = |bin: &[u8], v: i64, flags: u64| {
        modify_op(Some(bin), modify::SUBTRACT, &[int(0), int(8), int(v), int(0), int(flags as i64)])
    };
    assert_eq!(sub(&[0x80], 1, int_flags::SIGNED), Err(ResultCode::OpNotApplicable));
    assert_eq!(sub(&[0x80], 1, int_flags::SIGNED | int_flags::SATURATE), Ok(Some(vec![0x80])));
    assert_eq!(sub(&[0x00], 1, 0), Err(ResultCode::OpNotApplicable));
    assert_eq!(sub(&[0x00], 1, int_flags::SATURATE), Ok(Some(vec![0x00])));
    assert_eq!(sub(&[0x00], 1, int_flags::WRAP), Ok(Some(vec![0xff])));
    // -128 + -128 overflows signed 8 bits: the exact sum is -256, whose low byte is 0.
    assert_eq!(add(&[0x80], 0, 8, 0x80, int_flags::SIGNED), Err(ResultCode::OpNotApplicable));
    assert_eq!(add(&[0x80], 0, 8, 0x80, int_flags::SIGNED | int_flags::SATURATE), Ok(Some(vec![0x80])));
    // 0 - (-128) = 128 overflows as well.
    assert_eq!(sub(&[0x00], 0x80, int_flags::SIGNED), Err(ResultCode::OpNotApplicable));
    assert_eq!(sub(&[0x00], 0x80, int_flags::SIGNED | int_flags::SATURATE), Ok(Some(vec![0x7f])));
    let bad = int((int_flags::WRAP | int_flags::SATURATE) as i64);
    assert_eq!(modify_op(Some(&b), modify::ADD, &[int(0), int(8), int(1), int(0), bad]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&b), modify::ADD, &[int(0), int(65), int(1)]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&b), modify::SET_INT, &[int(4), int(8), int(0xab)]), Ok(Some(vec![0x0a, 0xbf])));
    assert_eq!(read_int(&[0xf0], read::GET_INT, &[int(0), int(4)]), Ok(15));
    assert_eq!(read_int(&[0xf0], read::GET_INT, &[int(0), int(4), int(1)]), Ok(-1));
    assert_eq!(read_int(&[0xff; 8], read::GET_INT, &[int(0), int(64)]), Ok(-1));
    assert_eq!(read_int(&[0xf0], read::GET_INT, &[int(0), int(4), int(2)]), Err(ResultCode::Parameter));
}

#[test]
fn reads_past_the_end_are_not_applicable() {
    assert_eq!(read_op(&[0xff], read::GET, &[int(4), int(5)]), Err(ResultCode::OpNotApplicable));
    assert_eq!(read_op(&[0xff], read::GET, &[int(-9), int(1)]), Err(ResultCode::Parameter));
    assert_eq!(read_op(&[0xff], read::GET, &[int(-8), int(3)]), Ok(vec![0xe0]));
    assert_eq!(modify_op(Some(&[0xff]), modify::NOT, &[int(8), int(1)]), Err(ResultCode::OpNotApplicable));
    assert_eq!(modify_op(Some(&[0xff]), modify::NOT, &[int(4), int(8)]), Err(ResultCode::OpNotApplicable));
    let partial = int(write_flags::PARTIAL as i64);
    assert_eq!(modify_op(Some(&[0xff]), modify::NOT, &[int(4), int(8), partial]), Ok(Some(vec![0xf0])));
}

#[test]
fn a_range_past_the_end_is_refused_before_a_short_operand() {
    // As on Aerospike: 48 bits of a 5-byte bin do not fit (26) whatever the operand holds;
    // 16 bits that fit with a 1-byte operand are a parameter error (4).
    let five = [0u8; 5];
    assert_eq!(
        modify_op(Some(&five), modify::SET, &[int(0), int(48), buf(&[0xff; 5])]),
        Err(ResultCode::OpNotApplicable)
    );
    assert_eq!(modify_op(Some(&five), modify::AND, &[int(0), int(48), buf(&[0; 5])]), Err(ResultCode::OpNotApplicable));
    assert_eq!(modify_op(Some(&five), modify::SET, &[int(0), int(16), buf(&[0xff])]), Err(ResultCode::Parameter));
    assert_eq!(modify_op(Some(&five), modify::OR, &[int(0), int(8), buf(&[])]), Err(ResultCode::Parameter));
}

/// What a range op leaves, by the model: `Err` for a refusal (no-fail handled by the caller).
fn model_range(
    bits: &[bool],
    code: i64,
    offset: i64,
    size: usize,
    src: &[bool],
    n: u64,
    partial: bool,
) -> Result<Vec<bool>, ResultCode> {
    let len = bits.len() as i64;
    if offset < -len {
        return Err(ResultCode::Parameter);
    }
    let offset = if offset < 0 { offset + len } else { offset } as usize;
    if offset / 8 >= bits.len() / 8 {
        return Err(ResultCode::OpNotApplicable);
    }
    let mut size = size;
    if (offset + size).div_ceil(8) * 8 > bits.len() {
        if !partial {
            return Err(ResultCode::OpNotApplicable);
        }
        size = bits.len() - offset;
    }
    let mut out = bits.to_vec();
    let range: Vec<bool> = bits[offset..offset + size].to_vec();
    for i in 0..size {
        out[offset + i] = match code {
            modify::SET => src[i],
            modify::OR => range[i] | src[i],
            modify::XOR => range[i] ^ src[i],
            modify::AND => range[i] & src[i],
            modify::NOT => !range[i],
            modify::LSHIFT => (i as u64 + n) < size as u64 && range[(i as u64 + n) as usize],
            _ => i as u64 >= n && range[(i as u64 - n) as usize],
        };
    }
    Ok(out)
}

proptest! {
    #[test]
    fn range_ops_match_the_model(
        bin in proptest::collection::vec(any::<u8>(), 1..10),
        code in prop_oneof![Just(modify::SET), Just(modify::OR), Just(modify::XOR), Just(modify::AND),
            Just(modify::NOT), Just(modify::LSHIFT), Just(modify::RSHIFT)],
        offset in -90i64..90,
        size in 1usize..90,
        src in proptest::collection::vec(any::<u8>(), 12),
        n in 0u64..100,
        partial in any::<bool>(),
        no_fail in any::<bool>(),
    ) {
        let flags = if partial { write_flags::PARTIAL } else { 0 } | if no_fail { write_flags::NO_FAIL } else { 0 };
        let mut args = vec![int(offset), int(size as i64)];
        match code {
            modify::NOT => {}
            modify::LSHIFT | modify::RSHIFT => args.push(int(n as i64)),
            _ => args.push(buf(&src)),
        }
        args.push(int(flags as i64));
        let got = modify_op(Some(&bin), code, &args);
        let want = model_range(&to_bits(&bin), code, offset, size, &to_bits(&src), n, partial);
        match want {
            Ok(bits) => prop_assert_eq!(got, Ok(Some(from_bits(&bits)))),
            Err(ResultCode::OpNotApplicable) if no_fail => prop_assert_eq!(got, Ok(None)),
            Err(code) => prop_assert_eq!(got, Err(code)),
        }
    }

    #[test]
    fn reads_match_the_model(
        bin in proptest::collection::vec(any::<u8>(), 1..10),
        offset in 0usize..80,
        size in 1usize..80,
        value in any::<bool>(),
    ) {
        let bits = to_bits(&bin);
        let args = [int(offset as i64), int(size as i64)];
        if (offset + size).div_ceil(8) > bin.len() {
            prop_assert_eq!(read_op(&bin, read::COUNT, &args), Err(ResultCode::OpNotApplicable));
            return Ok(());
        }
        let range = &bits[offset..offset + size];
        prop_assert_eq!(read_op(&bin, read::GET, &args), Ok(from_bits(range)));
        prop_assert_eq!(read_int(&bin, read::COUNT, &args), Ok(range.iter().filter(|&&b| b).count() as i64));
        let scan = [int(offset as i64), int(size as i64), MsgValue::Bool(value)];
        let first = range.iter().position(|&b| b == value).map_or(-1, |i| i as i64);
        let last = range.iter().rposition(|&b| b == value).map_or(-1, |i| i as i64);
        prop_assert_eq!(read_int(&bin, read::LSCAN, &scan), Ok(first));
        prop_assert_eq!(read_int(&bin, read::RSCAN, &scan), Ok(last));
        if size <= 64 {
            let v = range.iter().fold(0u64, |acc, &b| (acc << 1) | b as u64);
            prop_assert_eq!(read_int(&bin, read::GET_INT, &args), Ok(v as i64));
        }
    }

    #[test]
    fn unsigned_and_wrapping_arithmetic_match_exact_integers(
        bin in proptest::collection::vec(any::<u8>(), 9),
        offset in 0usize..8,
        size in 1usize..=64,
        value in any::<u64>(),
        add in any::<bool>(),
        action in 0u64..3,
    ) {
        let flags = [0, int_flags::SATURATE, int_flags::WRAP][action as usize];
        let code = if add { modify::ADD } else { modify::SUBTRACT };
        let args = [int(offset as i64), int(size as i64), MsgValue::UInt(value), int(0), int(flags as i64)];
        let args = if value > i64::MAX as u64 { args } else {
            [int(offset as i64), int(size as i64), int(value as i64), int(0), int(flags as i64)]
        };
        let bits = to_bits(&bin);
        let load = bits[offset..offset + size].iter().fold(0u128, |acc, &b| (acc << 1) | b as u128);
        let max = (1u128 << size) - 1;
        let v = value as u128 & max;
        let exact: i128 = if add { (load + v) as i128 } else { load as i128 - v as i128 };
        let want = if (0..=max as i128).contains(&exact) || flags == int_flags::WRAP {
            Some(exact.rem_euclid(max as i128 + 1) as u128)
        } else if flags == int_flags::SATURATE {
            Some(if add { max } else { 0 })
        } else {
            None
        };
        let got = modify_op(Some(&bin), code, &args);
        match want {
            None => prop_assert_eq!(got, Err(ResultCode::OpNotApplicable)),
            Some(r) => {
                let mut out = bits.clone();
                for i in 0..size {
                    out[offset + i] = (r >> (size - 1 - i)) & 1 == 1;
                }
                prop_assert_eq!(got, Ok(Some(from_bits(&out))));
            }
        }
    }

    #[test]
    fn no_payload_panics(payload in proptest::collection::vec(any::<u8>(), 0..40), bin in proptest::collection::vec(any::<u8>(), 0..6), modify in any::<bool>()) {
        let _ = apply(blob(&bin), &payload, modify, LIMIT);
        let _ = apply(None, &payload, modify, LIMIT);
    }

    #[test]
    fn structured_ops_never_panic(
        code in prop_oneof![0i64..13, 50i64..55],
        args in proptest::collection::vec(prop_oneof![
            (-70i64..70).prop_map(MsgValue::Int),
            any::<i64>().prop_map(MsgValue::Int),
            any::<bool>().prop_map(MsgValue::Bool),
            proptest::collection::vec(any::<u8>(), 0..5).prop_map(|b| buf(&b)),
        ], 0..6),
        bin in proptest::collection::vec(any::<u8>(), 0..6),
        modify in any::<bool>(),
    ) {
        let p = payload(code, &args);
        let _ = apply(blob(&bin), &p, modify, LIMIT);
        let _ = apply(None, &p, modify, LIMIT);
    }
}
