//! Unit tests of the expression compiler and evaluator, one group per operator family, and a
//! property test of the evaluator against a straightforward reference evaluator on random
//! expressions and records.

use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgMap, MsgValue};
use petrel_proto::Digest;
use proptest::prelude::*;

use super::{Bins, EVal, Program, RecordCtx};
use crate::record::{self, ImageView, KeyRef};
use crate::StorageError;

// ---- building expressions ----

fn enc(v: &MsgValue) -> Vec<u8> {
    msgpack::to_vec(v)
}

fn int(i: i64) -> Vec<u8> {
    enc(&MsgValue::Int(i))
}

fn float(f: f64) -> Vec<u8> {
    enc(&MsgValue::Float(f))
}

fn boolean(b: bool) -> Vec<u8> {
    enc(&MsgValue::Bool(b))
}

/// A string value (particle-prefixed, as clients send values).
fn string(s: &str) -> Vec<u8> {
    enc(&MsgValue::str(s))
}

/// A raw msgpack string (names and regex text).
fn raw(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut out = vec![0xa0 | s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

fn call(code: i64, args: &[Vec<u8>]) -> Vec<u8> {
    op::pack_call(code, args)
}

fn bin(t: i64, name: &str) -> Vec<u8> {
    call(op::BIN, &[int(t), raw(name)])
}

fn list(items: Vec<MsgValue>) -> Vec<u8> {
    call(op::QUOTED, &[enc(&MsgValue::List(items))])
}

// ---- records ----

struct Rec {
    image: Vec<u8>,
    digest: Digest,
}

fn rec(bins: &[(&str, MsgValue)]) -> Rec {
    let parts: Vec<(Vec<u8>, u8, Vec<u8>)> = bins
        .iter()
        .map(|(n, v)| {
            let (t, b) = petrel_proto::particle::from_msgpack(v);
            let b = if t == 19 || t == 20 { crate::cdt::normalize_collection(t, &b).expect("collection") } else { b };
            (n.as_bytes().to_vec(), t, b)
        })
        .collect();
    let mut image = Vec::new();
    let key = Some(KeyRef { particle: 1, bytes: &[0, 0, 0, 0, 0, 0, 0, 7] });
    record::encode(&mut image, key, parts.iter().map(|(n, t, b)| (n.as_slice(), *t, b.as_slice()))).expect("image");
    Rec { image, digest: Digest([3; 20]) }
}

fn eval_on(expr: &[u8], r: &Rec) -> Result<Option<EVal<'static>>, StorageError> {
    let (program, used) = Program::compile_prefix(expr)?;
    assert_eq!(used, expr.len());
    let image = ImageView::parse(&r.image).expect("parse");
    let ctx = RecordCtx {
        digest: &r.digest,
        set_name: b"demo",
        key: image.key,
        void_time: 0,
        lut_ms: 1_000,
        now_ms: 3_500,
        data_size: r.image.len(),
        bins: Bins::Image(image),
    };
    Ok(program.eval(&ctx, 1 << 20).map(EVal::into_owned))
}

fn value(expr: &[u8], r: &Rec) -> Option<EVal<'static>> {
    eval_on(expr, r).expect("compiles")
}

fn sample() -> Rec {
    rec(&[
        ("i", MsgValue::Int(10)),
        ("f", MsgValue::Float(2.5)),
        ("s", MsgValue::str("hello world")),
        ("b", MsgValue::Bool(true)),
        ("l", MsgValue::List(vec![MsgValue::Int(3), MsgValue::Int(1), MsgValue::Int(2)])),
        (
            "m",
            MsgValue::Map(MsgMap {
                flags: 0,
                entries: vec![(MsgValue::str("k"), MsgValue::Int(5)), (MsgValue::str("a"), MsgValue::Int(1))],
            }),
        ),
        ("blob", MsgValue::Blob(4, vec![0xf0, 0x0f])),
    ])
}

// ---- comparisons and logic ----

#[test]
fn comparisons_of_each_type() {
    let r = sample();
    let t = Some(EVal::Bool(true));
    assert_eq!(value(&call(op::EQ, &[bin(op::ty::INT, "i"), int(10)]), &r), t);
    assert_eq!(value(&call(op::GT, &[bin(op::ty::FLOAT, "f"), float(2.0)]), &r), t);
    assert_eq!(value(&call(op::LT, &[bin(op::ty::STRING, "s"), string("zebra")]), &r), t);
    assert_eq!(value(&call(op::EQ, &[bin(op::ty::BOOL, "b"), boolean(true)]), &r), t);
    let l = list(vec![MsgValue::Int(3), MsgValue::Int(1), MsgValue::Int(2)]);
    assert_eq!(value(&call(op::EQ, &[bin(op::ty::LIST, "l"), l]), &r), t);
    assert_eq!(value(&call(op::NE, &[bin(op::ty::INT, "i"), int(10)]), &r), Some(EVal::Bool(false)));
    assert_eq!(value(&call(op::LE, &[int(10), int(10)]), &r), t);
    assert_eq!(value(&call(op::GE, &[int(9), int(10)]), &r), Some(EVal::Bool(false)));
}

#[test]
fn missing_bins_and_wrong_types_are_unknown() {
    let r = sample();
    assert_eq!(value(&call(op::EQ, &[bin(op::ty::INT, "nope"), int(1)]), &r), None);
    // "s" holds a string, read as an integer.
    assert_eq!(value(&call(op::EQ, &[bin(op::ty::INT, "s"), int(1)]), &r), None);
    // Unknown is not false: not(unknown) is unknown, and(false, unknown) is false.
    let unk = call(op::UNKNOWN, &[]);
    assert_eq!(value(&call(op::NOT, std::slice::from_ref(&unk)), &r), None);
    assert_eq!(value(&call(op::AND, &[boolean(false), unk.clone()]), &r), Some(EVal::Bool(false)));
    assert_eq!(value(&call(op::AND, &[boolean(true), unk.clone()]), &r), None);
    assert_eq!(value(&call(op::OR, &[unk.clone(), boolean(true)]), &r), Some(EVal::Bool(true)));
    assert_eq!(value(&call(op::OR, &[unk, boolean(false)]), &r), None);
}

#[test]
fn static_type_errors_are_parameter_errors() {
    let r = sample();
    for bad in [
        call(op::EQ, &[bin(op::ty::INT, "i"), string("x")]),
        call(op::ADD, &[bin(op::ty::INT, "i"), float(1.0)]),
        call(op::AND, &[int(1), boolean(true)]),
        call(op::POW, &[int(2), int(3)]),
        call(op::INT_NOT, &[float(1.0)]),
    ] {
        assert!(matches!(eval_on(&bad, &r), Err(StorageError::Parameter(_))), "{bad:?}");
    }
    assert!(Program::compile(&call(op::ADD, &[int(1), int(2)])).is_err(), "a filter must be a boolean");
}

#[test]
fn logic_exclusive_and_regex() {
    let r = sample();
    let excl = call(op::EXCLUSIVE, &[boolean(true), boolean(false), boolean(false)]);
    assert_eq!(value(&excl, &r), Some(EVal::Bool(true)));
    let excl2 = call(op::EXCLUSIVE, &[boolean(true), boolean(true)]);
    assert_eq!(value(&excl2, &r), Some(EVal::Bool(false)));
    let re = call(op::REGEX, &[int(op::regex_flags::ICASE), raw("^HELLO"), bin(op::ty::STRING, "s")]);
    assert_eq!(value(&re, &r), Some(EVal::Bool(true)));
    let re2 = call(op::REGEX, &[int(0), raw("^HELLO"), bin(op::ty::STRING, "s")]);
    assert_eq!(value(&re2, &r), Some(EVal::Bool(false)));
}

#[test]
fn geospatial_comparison() {
    let r = rec(&[("p", MsgValue::Blob(23, b"\0\0\0{\"type\":\"Point\",\"coordinates\":[-122.0,37.5]}".to_vec()))]);
    let geo = |s: &str| enc(&MsgValue::Blob(23, s.as_bytes().to_vec()));
    let circle = geo(r#"{"type":"AeroCircle","coordinates":[[-122.0,37.5005],100]}"#);
    let far = geo(r#"{"type":"AeroCircle","coordinates":[[-121.0,37.5],100]}"#);
    let square = geo(r#"{"type":"Polygon","coordinates":[[[-123,37],[-121,37],[-121,38],[-123,38],[-123,37]]]}"#);
    let t = Some(EVal::Bool(true));
    assert_eq!(value(&call(op::GEO, &[bin(op::ty::GEO, "p"), circle]), &r), t);
    assert_eq!(value(&call(op::GEO, &[bin(op::ty::GEO, "p"), far]), &r), Some(EVal::Bool(false)));
    assert_eq!(value(&call(op::GEO, &[square, bin(op::ty::GEO, "p")]), &r), t, "a region contains the point");
    assert!(eval_on(&call(op::GEO, &[bin(op::ty::INT, "p"), bin(op::ty::GEO, "p")]), &r).is_err());
}

// ---- metadata ----

#[test]
fn metadata_reads() {
    let r = sample();
    assert_eq!(value(&call(op::SET_NAME, &[]), &r), Some(EVal::Str(b"demo".to_vec().into())));
    assert_eq!(value(&call(op::SINCE_UPDATE, &[]), &r), Some(EVal::Int(2_500)));
    assert_eq!(value(&call(op::TTL, &[]), &r), Some(EVal::Int(-1)));
    assert_eq!(value(&call(op::VOID_TIME, &[]), &r), Some(EVal::Int(-1)));
    assert_eq!(value(&call(op::LAST_UPDATE, &[]), &r), Some(EVal::Int((1_262_304_000_000 + 1_000) * 1_000_000)));
    assert_eq!(value(&call(op::KEY_EXISTS, &[]), &r), Some(EVal::Bool(true)));
    assert_eq!(value(&call(op::IS_TOMBSTONE, &[]), &r), Some(EVal::Bool(false)));
    assert_eq!(value(&call(op::KEY, &[int(op::ty::INT)]), &r), Some(EVal::Int(7)));
    assert_eq!(value(&call(op::KEY, &[int(op::ty::STRING)]), &r), None);
    assert_eq!(value(&call(op::RECORD_SIZE, &[]), &r), Some(EVal::Int(r.image.len() as i64)));
    assert_eq!(value(&call(op::DEVICE_SIZE, &[]), &r), Some(EVal::Int(0)));
    let d = u32::from_le_bytes([3; 4]) as i64;
    assert_eq!(value(&call(op::DIGEST_MODULO, &[int(7)]), &r), Some(EVal::Int(d % 7)));
    assert_eq!(value(&call(op::BIN_TYPE, &[raw("l")]), &r), Some(EVal::Int(20)));
    assert_eq!(value(&call(op::BIN_TYPE, &[raw("zz")]), &r), Some(EVal::Int(0)));
}

// ---- arithmetic ----

#[test]
fn arithmetic_operators() {
    let r = sample();
    let i = |v: i64| Some(EVal::Int(v));
    let f = |v: f64| Some(EVal::Float(v));
    assert_eq!(value(&call(op::ADD, &[bin(op::ty::INT, "i"), int(5), int(1)]), &r), i(16));
    assert_eq!(value(&call(op::SUB, &[int(5)]), &r), i(-5));
    assert_eq!(value(&call(op::SUB, &[int(5), int(7)]), &r), i(-2));
    assert_eq!(value(&call(op::MUL, &[int(i64::MAX), int(2)]), &r), i(-2), "integers wrap");
    assert_eq!(value(&call(op::DIV, &[int(7), int(2)]), &r), i(3));
    assert_eq!(value(&call(op::DIV, &[int(7), int(0)]), &r), None);
    assert_eq!(value(&call(op::DIV, &[float(1.0), float(4.0)]), &r), f(0.25));
    assert_eq!(value(&call(op::POW, &[float(2.0), float(3.0)]), &r), f(8.0));
    assert_eq!(value(&call(op::LOG, &[float(8.0), float(2.0)]), &r), f(3.0));
    assert_eq!(value(&call(op::MOD, &[int(-7), int(3)]), &r), i(-1));
    assert_eq!(value(&call(op::MOD, &[int(7), int(0)]), &r), None);
    assert_eq!(value(&call(op::ABS, &[int(-3)]), &r), i(3));
    assert_eq!(value(&call(op::FLOOR, &[float(2.7)]), &r), f(2.0));
    assert_eq!(value(&call(op::CEIL, &[float(2.1)]), &r), f(3.0));
    assert_eq!(value(&call(op::TO_INT, &[bin(op::ty::FLOAT, "f")]), &r), i(2));
    assert_eq!(value(&call(op::TO_FLOAT, &[int(3)]), &r), f(3.0));
    assert_eq!(value(&call(op::MIN, &[int(3), int(-1), int(2)]), &r), i(-1));
    assert_eq!(value(&call(op::MAX, &[float(3.0), float(4.5)]), &r), f(4.5));
}

#[test]
fn integer_bit_operators() {
    let r = sample();
    let i = |v: i64| Some(EVal::Int(v));
    assert_eq!(value(&call(op::INT_AND, &[int(0b1100), int(0b1010)]), &r), i(0b1000));
    assert_eq!(value(&call(op::INT_OR, &[int(0b1100), int(0b1010)]), &r), i(0b1110));
    assert_eq!(value(&call(op::INT_XOR, &[int(0b1100), int(0b1010)]), &r), i(0b0110));
    assert_eq!(value(&call(op::INT_NOT, &[int(0)]), &r), i(-1));
    assert_eq!(value(&call(op::INT_LSHIFT, &[int(1), int(4)]), &r), i(16));
    assert_eq!(value(&call(op::INT_RSHIFT, &[int(-1), int(60)]), &r), i(15));
    assert_eq!(value(&call(op::INT_ARSHIFT, &[int(-16), int(2)]), &r), i(-4));
    assert_eq!(value(&call(op::INT_COUNT, &[int(0xff)]), &r), i(8));
    assert_eq!(value(&call(op::INT_LSCAN, &[int(1), boolean(true)]), &r), i(63));
    assert_eq!(value(&call(op::INT_RSCAN, &[int(6), boolean(true)]), &r), i(62));
    assert_eq!(value(&call(op::INT_LSCAN, &[int(0), boolean(true)]), &r), i(-1));
}

// ---- cond, let, var ----

#[test]
fn cond_let_and_var() {
    let r = sample();
    let x = call(op::VAR, &[raw("x")]);
    let body = call(op::COND, &[call(op::GT, &[x.clone(), int(5)]), call(op::MUL, &[x, int(2)]), int(-1)]);
    let mut e = Vec::new();
    msgpack::encode_list_header(4, &mut e);
    msgpack::encode_int(op::LET, &mut e);
    e.extend(raw("x"));
    e.extend(bin(op::ty::INT, "i"));
    e.extend(body);
    assert_eq!(value(&e, &r), Some(EVal::Int(20)));
    let undefined = call(op::VAR, &[raw("y")]);
    assert!(eval_on(&undefined, &r).is_err());
}

// ---- calls ----

#[test]
fn list_map_bit_and_hll_calls() {
    let r = sample();
    // List get-by-index 0, return type VALUE (7).
    let payload = call(petrel_proto::cdt::list::GET_BY_INDEX, &[int(7), int(0)]);
    let e = call(op::CALL, &[int(op::ty::INT), int(op::MODULE_CDT), payload, bin(op::ty::LIST, "l")]);
    assert_eq!(value(&e, &r), Some(EVal::Int(3)));
    // Map size.
    let size = call(petrel_proto::cdt::map::SIZE, &[]);
    let e = call(op::CALL, &[int(op::ty::INT), int(op::MODULE_CDT), size, bin(op::ty::MAP, "m")]);
    assert_eq!(value(&e, &r), Some(EVal::Int(2)));
    // List append as a modify call answers the changed list and leaves the bin.
    let append = call(petrel_proto::cdt::list::APPEND, &[int(9)]);
    let e =
        call(op::CALL, &[int(op::ty::LIST), int(op::MODULE_CDT | op::MODULE_MODIFY), append, bin(op::ty::LIST, "l")]);
    let want = crate::cdt::normalize_collection(
        20,
        &enc(&MsgValue::List(vec![3, 1, 2, 9].into_iter().map(MsgValue::Int).collect())),
    );
    assert_eq!(value(&e, &r), Some(EVal::List(want.expect("list").into())));
    // Bit count of the blob's 16 bits.
    let count = call(petrel_proto::bits::read::COUNT, &[int(0), int(16)]);
    let e = call(op::CALL, &[int(op::ty::INT), int(op::MODULE_BITS), count, bin(op::ty::BLOB, "blob")]);
    assert_eq!(value(&e, &r), Some(EVal::Int(8)));
    // An argument computed from the record: index from a bin.
    let payload =
        call(petrel_proto::cdt::list::GET_BY_INDEX, &[int(7), call(op::SUB, &[bin(op::ty::INT, "i"), int(9)])]);
    let e = call(op::CALL, &[int(op::ty::INT), int(op::MODULE_CDT), payload, bin(op::ty::LIST, "l")]);
    assert_eq!(value(&e, &r), Some(EVal::Int(1)));
    // A call on a missing bin is unknown.
    let size = call(petrel_proto::cdt::list::SIZE, &[]);
    let e = call(op::CALL, &[int(op::ty::INT), int(op::MODULE_CDT), size, bin(op::ty::LIST, "none")]);
    assert_eq!(value(&e, &r), None);
}

// ---- bounds ----

#[test]
fn hostile_expressions_are_parameter_errors() {
    let r = sample();
    let mut deep = boolean(true);
    for _ in 0..super::DEPTH_MAX + 2 {
        deep = call(op::NOT, &[deep]);
    }
    assert!(matches!(eval_on(&deep, &r), Err(StorageError::Parameter(_))));
    // A count larger than the bytes that follow.
    assert!(Program::compile(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err());
    assert!(Program::compile(&[]).is_err());
    assert!(Program::compile(&[0x90]).is_err());
    // Many nodes.
    let many: Vec<Vec<u8>> = (0..super::NODES_MAX + 10).map(|_| boolean(true)).collect();
    let mut e = Vec::new();
    msgpack::encode_list_header(many.len() + 1, &mut e);
    msgpack::encode_int(op::AND, &mut e);
    for m in many {
        e.extend(m);
    }
    assert!(Program::compile(&e).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok((p, _)) = Program::compile_prefix(&bytes) {
            let r = sample();
            let image = ImageView::parse(&r.image).expect("parse");
            let ctx = RecordCtx {
                digest: &r.digest, set_name: b"", key: None, void_time: 0, lut_ms: 0, now_ms: 0,
                data_size: 0, bins: Bins::Image(image),
            };
            let _ = p.eval(&ctx, 1 << 16);
        }
    }
}

mod reference;
