//! HLL ops checked against exact counts of small sets (within HyperLogLog's error bounds),
//! the value layout (header, sizes, round trips through ops), the hash, and the result codes
//! of Aerospike's checks.

use petrel_proto::hll::{self as contract, modify, read, write_flags};
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::{ParticleType, ResultCode};
use proptest::prelude::*;

use super::apply;
use super::estimate;
use super::sketch::{murmur3_x64_128, Sketch, SketchRef};
use crate::cdt::{Particle, ParticleRef};
use crate::oparg::build::{int, payload};

fn elements(range: std::ops::Range<u32>) -> MsgValue {
    MsgValue::List(range.map(|i| MsgValue::str(&format!("key{i}"))).collect())
}

fn hll_arg(bytes: &[u8]) -> MsgValue {
    MsgValue::Blob(ParticleType::Hll as u8, bytes.to_vec())
}

fn hll(bytes: &[u8]) -> Option<ParticleRef<'_>> {
    Some(ParticleRef { particle: ParticleType::Hll as u8, bytes })
}

/// Runs a modify op: the new value and the result.
fn run_modify(
    bin: Option<&[u8]>,
    code: i64,
    args: &[MsgValue],
) -> Result<(Option<Vec<u8>>, Option<Particle>), ResultCode> {
    let out = apply(bin.and_then(hll), &payload(code, args), true).map_err(|e| e.result_code())?;
    Ok((out.new_value.map(|p| p.bytes), out.result))
}

fn run_read(bin: &[u8], code: i64, args: &[MsgValue]) -> Result<Particle, ResultCode> {
    let out = apply(hll(bin), &payload(code, args), false).map_err(|e| e.result_code())?;
    Ok(out.result.expect("a read answers"))
}

fn as_int(p: &Particle) -> i64 {
    i64::from_be_bytes(p.bytes.clone().try_into().expect("8 bytes"))
}

/// A sketch of "key{lo}" .. "key{hi}" (an empty one from init: add needs elements).
fn sketch_of(range: std::ops::Range<u32>, ib: i64, mb: i64) -> Vec<u8> {
    let (code, mut args) = if range.is_empty() { (modify::INIT, vec![]) } else { (modify::ADD, vec![elements(range)]) };
    args.extend([int(ib), int(mb)]);
    run_modify(None, code, &args).unwrap().0.unwrap()
}

fn count(bin: &[u8]) -> i64 {
    as_int(&run_read(bin, read::COUNT, &[]).unwrap())
}

fn within(estimate: i64, exact: i64, index_bits: u8) {
    // Three standard errors of HyperLogLog, plus slack for sets small against the register
    // count, whose error is register collisions (about n²/2m of them).
    let m = (1u64 << index_bits) as f64;
    let n = exact as f64;
    let bound = 3.0 * 1.04 / m.sqrt() * n + 3.0 + 2.0 * n * n / m;
    assert!((estimate - exact).abs() as f64 <= bound, "estimate {estimate} for {exact} (index bits {index_bits})");
}

#[test]
fn murmur3_matches_reference_vectors() {
    assert_eq!(murmur3_x64_128(b""), (0, 0));
    assert_eq!(
        murmur3_x64_128(b"The quick brown fox jumps over the lazy dog"),
        (0xe34b_bc7b_bc07_1b6c, 0x7a43_3ca9_c49a_9347)
    );
}

#[test]
fn layout_and_round_trips() {
    for (ib, mb) in [(4u8, 0u8), (8, 0), (16, 0), (4, 51), (16, 48), (10, 12)] {
        let s = Sketch::empty(ib, mb);
        let bytes = s.into_bytes();
        assert_eq!(bytes.len(), contract::value_len(ib, mb));
        assert_eq!(&bytes[..3], &[0, ib, mb]);
        assert!(contract::layout_ok(&bytes));
        let desc = run_read(&bytes, read::DESCRIBE, &[]).unwrap();
        assert_eq!(desc.particle, ParticleType::List as u8);
        let want = MsgValue::List(vec![int(ib as i64), int(mb as i64)]);
        assert_eq!(msgpack::decode(&desc.bytes).unwrap(), want);
    }
    assert_eq!(contract::value_len(4, 0), 11 + 12);
    assert!(!contract::layout_ok(&[1, 4, 0]));
    assert!(!contract::layout_ok(&[0, 17, 0]));
    let mut short = Sketch::empty(8, 0).into_bytes();
    short.pop();
    assert!(!contract::layout_ok(&short));
    // A sketch returned by a union reads back the same through another op.
    let a = sketch_of(0..100, 10, 0);
    let u = run_read(&a, read::UNION, &[MsgValue::List(vec![hll_arg(&a)])]).unwrap();
    assert_eq!(u.particle, ParticleType::Hll as u8);
    assert_eq!(count(&u.bytes), count(&a));
}

#[test]
fn counts_are_within_error_bounds() {
    for ib in [4u8, 8, 12, 14] {
        for n in [0u32, 1, 10, 100, 1000, 5000] {
            let s = sketch_of(0..n, ib as i64, 0);
            within(count(&s), n as i64, ib);
            let mh = sketch_of(0..n, ib as i64, 8);
            within(count(&mh), n as i64, ib);
        }
    }
}

#[test]
fn add_answers_registers_changed_and_refresh_caches() {
    let (s, r) = run_modify(None, modify::ADD, &[elements(0..3), int(8)]).unwrap();
    assert_eq!(as_int(&r.unwrap()), 3);
    let s = s.unwrap();
    let (s2, r) = run_modify(Some(&s), modify::ADD, &[elements(0..3)]).unwrap();
    assert_eq!(as_int(&r.unwrap()), 0);
    assert_eq!(s2.unwrap(), s);
    let (cached, r) = run_modify(Some(&s), modify::REFRESH_COUNT, &[]).unwrap();
    let cached = cached.unwrap();
    assert_eq!(as_int(&r.unwrap()), 3);
    assert_eq!(SketchRef::new(&cached).unwrap().cache(), 3);
    // Adding resets the cache only when a register changes.
    let (s3, _) = run_modify(Some(&cached), modify::ADD, &[elements(3..4)]).unwrap();
    assert_eq!(SketchRef::new(&s3.unwrap()).unwrap().cache(), 0);
}

#[test]
fn init_flags_and_bit_checks() {
    let (s, r) = run_modify(None, modify::INIT, &[int(10), int(-1)]).unwrap();
    assert!(r.is_none());
    let s = s.unwrap();
    assert_eq!(&s[..3], &[0, 10, 0]);
    assert_eq!(run_modify(None, modify::INIT, &[]), Err(ResultCode::OpNotApplicable));
    assert_eq!(run_modify(None, modify::INIT, &[int(3)]), Err(ResultCode::Parameter));
    assert_eq!(run_modify(None, modify::INIT, &[int(17)]), Err(ResultCode::Parameter));
    assert_eq!(run_modify(None, modify::INIT, &[int(8), int(3)]), Err(ResultCode::Parameter));
    assert_eq!(run_modify(None, modify::INIT, &[int(16), int(49)]), Err(ResultCode::Parameter));
    let (reset, _) = run_modify(Some(&sketch_of(0..10, 10, 0)), modify::INIT, &[int(-1), int(-1)]).unwrap();
    assert_eq!(reset.unwrap(), Sketch::empty(10, 0).into_bytes());
    let create = int(write_flags::CREATE_ONLY as i64);
    assert_eq!(run_modify(Some(&s), modify::INIT, &[int(8), int(0), create]), Err(ResultCode::BinExists));
    let quiet = int((write_flags::CREATE_ONLY | write_flags::NO_FAIL) as i64);
    assert_eq!(run_modify(Some(&s), modify::INIT, &[int(8), int(0), quiet]), Ok((None, None)));
    let update = int(write_flags::UPDATE_ONLY as i64);
    assert_eq!(run_modify(None, modify::INIT, &[int(8), int(0), update.clone()]), Err(ResultCode::BinNotFound));
    // Add takes no update-only flag.
    assert_eq!(run_modify(None, modify::ADD, &[elements(0..1), int(8), int(0), update]), Err(ResultCode::Parameter));
    let fold = int(write_flags::ALLOW_FOLD as i64);
    assert_eq!(run_modify(None, modify::INIT, &[int(8), int(0), fold]), Err(ResultCode::Parameter));
    assert_eq!(run_modify(None, modify::ADD, &[MsgValue::List(vec![])]), Err(ResultCode::Parameter));
    let nested = MsgValue::List(vec![MsgValue::List(vec![])]);
    assert_eq!(run_modify(None, modify::ADD, &[nested, int(8)]), Err(ResultCode::Parameter));
    assert_eq!(run_modify(None, modify::ADD, &[elements(0..1)]), Err(ResultCode::OpNotApplicable));
    let blob = ParticleRef { particle: ParticleType::Blob as u8, bytes: &s };
    let err = apply(Some(blob), &payload(read::COUNT, &[]), false).map_err(|e| e.result_code());
    assert_eq!(err, Err(ResultCode::IncompatibleType));
    assert_eq!(run_modify(None, modify::REFRESH_COUNT, &[]), Err(ResultCode::BinNotFound));
    assert_eq!(run_modify(None, modify::FOLD, &[int(4)]), Err(ResultCode::BinNotFound));
}

#[test]
fn fold_and_union() {
    let big = sketch_of(0..1000, 12, 0);
    let (folded, _) = run_modify(Some(&big), modify::FOLD, &[int(8)]).unwrap();
    let folded = folded.unwrap();
    assert_eq!(&folded[..3], &[0, 8, 0]);
    within(count(&folded), 1000, 8);
    assert_eq!(run_modify(Some(&folded), modify::FOLD, &[int(10)]), Err(ResultCode::OpNotApplicable));
    let mh = sketch_of(0..10, 8, 4);
    assert_eq!(run_modify(Some(&mh), modify::FOLD, &[int(4)]), Err(ResultCode::OpNotApplicable));

    let a = sketch_of(0..600, 12, 0);
    let b = sketch_of(400..1000, 10, 0);
    // Without allow-fold, a union may not lower the bin's index bits.
    assert_eq!(
        run_modify(Some(&a), modify::SET_UNION, &[MsgValue::List(vec![hll_arg(&b)])]),
        Err(ResultCode::OpNotApplicable)
    );
    let fold = int(write_flags::ALLOW_FOLD as i64);
    let (u, _) = run_modify(Some(&a), modify::SET_UNION, &[MsgValue::List(vec![hll_arg(&b)]), fold]).unwrap();
    let u = u.unwrap();
    assert_eq!(u[1], 10);
    within(count(&u), 1000, 10);
    let (u2, _) = run_modify(Some(&b), modify::SET_UNION, &[MsgValue::List(vec![hll_arg(&a)])]).unwrap();
    assert_eq!(u2.unwrap(), u);
    let (created, _) = run_modify(None, modify::SET_UNION, &[MsgValue::List(vec![hll_arg(&a), hll_arg(&b)])]).unwrap();
    assert_eq!(created.unwrap(), u);
    let bad = MsgValue::List(vec![hll_arg(&a[..20])]);
    assert_eq!(run_modify(None, modify::SET_UNION, &[bad]), Err(ResultCode::Parameter));
    // An operand may carry index and min-hash bits over 64 together, but a union that would
    // store such a value is refused (every later op would reject the bin).
    let mut wide = vec![0u8; contract::value_len(16, 51)];
    (wide[1], wide[2]) = (16, 51);
    let wide = MsgValue::List(vec![hll_arg(&wide)]);
    assert_eq!(run_modify(None, modify::SET_UNION, &[wide]), Err(ResultCode::OpNotApplicable));
}

#[test]
fn union_intersect_and_similarity_estimates() {
    for mb in [0i64, 12] {
        let a = sketch_of(0..1000, 12, mb);
        let b = sketch_of(500..1500, 12, mb);
        let others = MsgValue::List(vec![hll_arg(&b)]);
        within(as_int(&run_read(&a, read::UNION_COUNT, std::slice::from_ref(&others)).unwrap()), 1500, 12);
        let i = as_int(&run_read(&a, read::INTERSECT_COUNT, std::slice::from_ref(&others)).unwrap());
        assert!((i - 500).abs() <= 150, "intersect {i} (min-hash bits {mb})");
        let sim = run_read(&a, read::SIMILARITY, &[others]).unwrap();
        assert_eq!(sim.particle, ParticleType::Float as u8);
        let j = f64::from_be_bytes(sim.bytes.try_into().unwrap());
        assert!((j - 1.0 / 3.0).abs() < 0.1, "similarity {j} (min-hash bits {mb})");
    }
    // Three or more operands need shared, non-zero min-hash bits.
    let plain = sketch_of(0..10, 8, 0);
    let three = MsgValue::List(vec![hll_arg(&plain), hll_arg(&plain), hll_arg(&plain)]);
    assert_eq!(run_read(&plain, read::INTERSECT_COUNT, &[three]), Err(ResultCode::Parameter));
    let mh = sketch_of(0..100, 8, 8);
    let three = MsgValue::List(vec![hll_arg(&mh), hll_arg(&mh), hll_arg(&mh)]);
    assert_eq!(run_read(&plain, read::SIMILARITY, std::slice::from_ref(&three)), Err(ResultCode::OpNotApplicable));
    within(as_int(&run_read(&mh, read::INTERSECT_COUNT, &[three]).unwrap()), 100, 8);
    // Two plain operands and the bin: inclusion-exclusion.
    let a = sketch_of(0..300, 12, 0);
    let two = MsgValue::List(vec![hll_arg(&sketch_of(0..200, 12, 0)), hll_arg(&sketch_of(100..300, 12, 0))]);
    let i = as_int(&run_read(&a, read::INTERSECT_COUNT, &[two]).unwrap());
    assert!((i - 100).abs() <= 60, "three-way intersect {i}");
    // Similarity of empty sketches is not a number; of an empty and a full one, 0.
    let empty = Sketch::empty(8, 8).into_bytes();
    let j = run_read(&empty, read::SIMILARITY, &[MsgValue::List(vec![hll_arg(&empty)])]).unwrap();
    assert!(f64::from_be_bytes(j.bytes.try_into().unwrap()).is_nan());
    let j = run_read(&mh, read::SIMILARITY, &[MsgValue::List(vec![hll_arg(&empty)])]).unwrap();
    assert_eq!(f64::from_be_bytes(j.bytes.try_into().unwrap()), 0.0);
}

#[test]
fn template_takes_fewest_index_bits_and_shared_minhash() {
    let a = Sketch::empty(10, 8);
    let b = Sketch::empty(12, 8);
    let c = Sketch::empty(8, 0);
    assert_eq!(estimate::template(&[a.view(), b.view()]), (10, 8));
    assert_eq!(estimate::template(&[a.view(), b.view(), c.view()]), (8, 0));
}

proptest! {
    #[test]
    fn no_payload_panics(payload in proptest::collection::vec(any::<u8>(), 0..40), modify in any::<bool>()) {
        let s = Sketch::empty(4, 4).into_bytes();
        let _ = apply(hll(&s), &payload, modify);
        let _ = apply(None, &payload, modify);
    }

    #[test]
    fn structured_ops_never_panic(
        code in prop_oneof![0i64..5, 50i64..56],
        args in proptest::collection::vec(prop_oneof![
            (-2i64..70).prop_map(MsgValue::Int),
            (0u64..16).prop_map(|f| MsgValue::Int(f as i64)),
            Just(elements(0..3)),
            Just(MsgValue::List(vec![hll_arg(&Sketch::empty(5, 0).into_bytes())])),
            Just(MsgValue::List(vec![hll_arg(&Sketch::empty(4, 51).into_bytes()), hll_arg(&Sketch::empty(16, 0).into_bytes())])),
        ], 0..5),
        bin_bits in prop_oneof![Just(None), Just(Some((4u8, 0u8))), Just(Some((6, 8))), Just(Some((16, 48)))],
        modify in any::<bool>(),
    ) {
        let bin = bin_bits.map(|(ib, mb)| Sketch::empty(ib, mb).into_bytes());
        let _ = apply(bin.as_deref().and_then(hll), &payload(code, &args), modify);
    }

    #[test]
    fn counts_of_random_sets_are_close(n in 0u32..3000, ib in 6u8..=14) {
        let s = sketch_of(0..n, ib as i64, 0);
        within(count(&s), n as i64, ib);
    }
}
