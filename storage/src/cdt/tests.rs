//! The shared CDT machinery's tests: golden payloads, contexts, normalisation, particle
//! conversions, comparison, index arithmetic, and properties over random operations.

use std::cmp::Ordering;

use petrel_proto::msgpack::{self, MsgMap, MsgValue};
use petrel_proto::ResultCode;
use proptest::prelude::*;

use super::order::{cmp_total, cmp_values};
use super::select::{range_index, rel_index, single_index};
use super::*;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

// Shorthands shared with the list and map tests.

pub(super) fn i(v: i64) -> MsgValue {
    MsgValue::Int(v)
}

pub(super) fn s(v: &str) -> MsgValue {
    MsgValue::str(v)
}

pub(super) fn l(items: Vec<MsgValue>) -> MsgValue {
    MsgValue::List(items)
}

/// The payload of op `code` with `args`, without a context.
pub(super) fn op(code: i64, args: Vec<MsgValue>) -> Vec<u8> {
    let mut items = vec![i(code)];
    items.extend(args);
    msgpack::to_vec(&l(items))
}

fn m(entries: Vec<(MsgValue, MsgValue)>) -> MsgValue {
    MsgValue::Map(MsgMap { flags: 0, entries })
}

fn int_p(v: i64) -> Particle {
    Particle { particle: 1, bytes: v.to_be_bytes().to_vec() }
}

fn ctx_op(ctx: Vec<MsgValue>, code: i64, args: Vec<MsgValue>) -> Vec<u8> {
    let mut inner = vec![i(code)];
    inner.extend(args);
    msgpack::to_vec(&l(vec![i(0xff), l(ctx), l(inner)]))
}

fn apply_to(v: &MsgValue, payload: &[u8]) -> Result<CdtOutcome, CdtError> {
    let particle = if matches!(v, MsgValue::Map(_)) { 19 } else { 20 };
    let bytes = msgpack::to_vec(v);
    apply(Some(ParticleRef { particle, bytes: &bytes }), payload, true)
}

fn new_value(out: &CdtOutcome) -> Option<MsgValue> {
    out.new_value.as_ref().map(|p| msgpack::decode(&p.as_ref().expect("bin stays").bytes).expect("valid"))
}

#[test]
fn golden_list_append_then_size() {
    let list = hex("9301a203619102");
    let out = apply(Some(ParticleRef { particle: 20, bytes: &list }), &hex("920109"), true).expect("append");
    assert_eq!(out.result, Some(int_p(4)));
    let stored = Particle { particle: 20, bytes: hex("9401a20361910209") };
    assert_eq!(out.new_value, Some(Some(stored.clone())));
    let size = apply(Some(ParticleRef { particle: 20, bytes: &stored.bytes }), &hex("9110"), false).expect("size");
    assert_eq!(size, CdtOutcome { new_value: None, result: Some(int_p(4)) });
}

#[test]
fn golden_map_put_then_get_by_key() {
    let map = hex("82a2036102a2037a01");
    let out = apply(Some(ParticleRef { particle: 19, bytes: &map }), &hex("9443a203710500"), true).expect("put");
    assert_eq!(out.result, Some(int_p(3)));
    let stored = hex("83a2036102a2037105a2037a01");
    assert_eq!(out.new_value, Some(Some(Particle { particle: 19, bytes: stored.clone() })));
    let get = apply(Some(ParticleRef { particle: 19, bytes: &stored }), &hex("936107a20371"), false).expect("get");
    assert_eq!(get, CdtOutcome { new_value: None, result: Some(int_p(5)) });
}

#[test]
fn result_codes() {
    assert_eq!(CdtError::Parameter("x").result_code(), ResultCode::Parameter);
    assert_eq!(CdtError::IncompatibleType.result_code(), ResultCode::IncompatibleType);
    assert_eq!(CdtError::NotApplicable("x").result_code(), ResultCode::OpNotApplicable);
    assert_eq!(CdtError::ElementNotFound.result_code(), ResultCode::ElementNotFound);
    assert_eq!(CdtError::ElementExists.result_code(), ResultCode::ElementExists);
    assert_eq!(CdtError::Unsupported(254).result_code(), ResultCode::UnsupportedFeature);
}

#[test]
fn malformed_payloads() {
    let list = msgpack::to_vec(&l(vec![i(1)]));
    let p = Some(ParticleRef { particle: 20, bytes: &list });
    for payload in [&[][..], &[0x91], &[0x01], &[0x90], &[0x91, 0xa1, 0x03], &[0x92, 0x01, 0x01, 0x00]] {
        assert!(matches!(apply(p, payload, true), Err(CdtError::Parameter(_))), "{payload:?}");
    }
    assert!(matches!(apply(p, &[0x91, 0xcc, 200], true), Err(CdtError::Parameter(_))));
    let select = msgpack::to_vec(&l(vec![i(0xfe), l(vec![]), i(0)]));
    assert_eq!(apply(p, &select, true), Err(CdtError::Unsupported(0xfe)));
    let garbage = ParticleRef { particle: 20, bytes: &[0x93, 0x01] };
    assert!(matches!(apply(Some(garbage), &[0x91, 0x10], false), Err(CdtError::Parameter(_))));
}

#[test]
fn contexts_reach_nested_elements() {
    let nested = l(vec![l(vec![i(1), i(2)]), l(vec![i(3)])]);
    let out = apply_to(&nested, &ctx_op(vec![i(0x10), i(0)], 1, vec![i(9)])).expect("append");
    assert_eq!(out.result, Some(int_p(3)));
    assert_eq!(new_value(&out), Some(l(vec![l(vec![i(1), i(2), i(9)]), l(vec![i(3)])])));
    let out = apply_to(&nested, &ctx_op(vec![i(0x10), i(-1)], 16, vec![])).expect("size");
    assert_eq!((out.new_value, out.result), (None, Some(int_p(1))));
    // By rank (the [3] list ranks above [1, 2]) and by value.
    let out = apply_to(&nested, &ctx_op(vec![i(0x11), i(-1)], 17, vec![i(0)])).expect("rank");
    assert_eq!(out.result, Some(int_p(3)));
    let out = apply_to(&nested, &ctx_op(vec![i(0x13), l(vec![i(3)])], 16, vec![])).expect("value");
    assert_eq!(out.result, Some(int_p(1)));
    assert!(matches!(apply_to(&nested, &ctx_op(vec![i(0x10), i(5)], 16, vec![])), Err(CdtError::NotApplicable(_))));
    assert!(matches!(apply_to(&nested, &ctx_op(vec![i(0x22), s("a")], 96, vec![])), Err(CdtError::NotApplicable(_))));
    assert_eq!(apply_to(&nested, &ctx_op(vec![i(0x10), i(0)], 96, vec![])), Err(CdtError::IncompatibleType));

    let map = m(vec![(s("a"), m(vec![(s("x"), i(1))])), (s("b"), l(vec![i(7)]))]);
    let out = apply_to(&map, &ctx_op(vec![i(0x22), s("a")], 67, vec![s("y"), i(2)])).expect("put");
    assert_eq!(
        new_value(&out),
        Some(m(vec![(s("a"), m(vec![(s("x"), i(1)), (s("y"), i(2))])), (s("b"), l(vec![i(7)]))]))
    );
    let out = apply_to(&map, &ctx_op(vec![i(0x20), i(1)], 17, vec![i(0)])).expect("index");
    assert_eq!(out.result, Some(int_p(7)));
    let out = apply_to(&map, &ctx_op(vec![i(0x21), i(-1)], 96, vec![])).expect("rank");
    assert_eq!(out.result, Some(int_p(1)));
    let out = apply_to(&map, &ctx_op(vec![i(0x23), l(vec![i(7)])], 16, vec![])).expect("value");
    assert_eq!(out.result, Some(int_p(1)));
    // A missing key is created only when the context says so.
    assert!(matches!(apply_to(&map, &ctx_op(vec![i(0x22), s("c")], 1, vec![i(5)])), Err(CdtError::NotApplicable(_))));
    let out = apply_to(&map, &ctx_op(vec![i(0x22 | 0x40), s("c")], 1, vec![i(5)])).expect("create");
    let Some(MsgValue::Map(created)) = new_value(&out) else {
        panic!("map expected");
    };
    assert_eq!(created.entries.last(), Some(&(s("c"), l(vec![i(5)]))));
    // A removal through a creating context changes nothing.
    let out = apply_to(&map, &ctx_op(vec![i(0x22 | 0x40), s("c")], 7, vec![i(0)])).expect("no-op");
    assert_eq!(out.new_value, None);
    // A list index past the end is created with an unbounded create flag, padding nils.
    let out = apply_to(&nested, &ctx_op(vec![i(0x10 | 0x80), i(3)], 1, vec![i(4)])).expect("pad");
    assert_eq!(new_value(&out), Some(l(vec![l(vec![i(1), i(2)]), l(vec![i(3)]), MsgValue::Nil, l(vec![i(4)])])));
}

#[test]
fn contexts_on_missing_bins() {
    let payload = ctx_op(vec![i(0x22 | 0x40), s("k"), i(0x10), i(0)], 67, vec![s("x"), i(1)]);
    let out = apply(None, &payload, true).expect("creates");
    assert_eq!(new_value(&out), Some(m(vec![(s("k"), l(vec![m(vec![(s("x"), i(1))])]))])));
    assert!(matches!(
        apply(None, &ctx_op(vec![i(0x22), s("k")], 67, vec![s("x"), i(1)]), true),
        Err(CdtError::NotApplicable(_))
    ));
    assert_eq!(apply(None, &ctx_op(vec![i(0x22), s("k")], 96, vec![]), false), Ok(nothing()));
    let int = ParticleRef { particle: 1, bytes: &[0; 8] };
    assert_eq!(apply(Some(int), &ctx_op(vec![i(0x10), i(0)], 16, vec![]), false), Err(CdtError::IncompatibleType));
    assert!(matches!(
        apply(None, &ctx_op(vec![i(0x22 | 0x40)], 67, vec![s("x"), i(1)]), true),
        Err(CdtError::Parameter(_))
    ));
}

#[test]
fn normalizes_written_collections() {
    let unsorted =
        m(vec![(s("z"), i(1)), (i(3), i(2)), (s("z"), i(9)), (s("a"), l(vec![m(vec![(i(2), i(0)), (i(1), i(0))])]))]);
    let out = normalize_collection(19, &msgpack::to_vec(&unsorted)).expect("map");
    let expect = m(vec![(i(3), i(2)), (s("a"), l(vec![m(vec![(i(1), i(0)), (i(2), i(0))])])), (s("z"), i(9))]);
    assert_eq!(out, msgpack::to_vec(&expect));
    let ordered = l(vec![MsgValue::Ext(1, vec![]), i(3), i(1), i(2)]);
    assert_eq!(
        normalize_collection(20, &msgpack::to_vec(&ordered)).expect("list"),
        msgpack::to_vec(&l(vec![MsgValue::Ext(1, vec![]), i(1), i(2), i(3)]))
    );
    let golden = hex("9301a203619102");
    assert_eq!(normalize_collection(20, &golden).expect("list"), golden);
    assert!(matches!(normalize_collection(20, &hex("82a2036102a2037a01")), Err(CdtError::Parameter(_))));
    assert!(matches!(normalize_collection(19, &[0x93, 0x01]), Err(CdtError::Parameter(_))));
    assert!(matches!(normalize_collection(3, &[0x90]), Err(CdtError::Parameter(_))));
    let sentinel = l(vec![MsgValue::Ext(-1, vec![0])]);
    assert!(matches!(normalize_collection(20, &msgpack::to_vec(&sentinel)), Err(CdtError::Parameter(_))));
}

#[test]
fn particle_conversions() {
    let values = [
        MsgValue::Nil,
        MsgValue::Bool(true),
        i(-5),
        MsgValue::Float(2.5),
        s("hi"),
        MsgValue::Blob(4, vec![1, 2]),
        l(vec![i(1)]),
        m(vec![(i(1), i(2))]),
    ];
    let particles = [0u8, 17, 1, 2, 3, 4, 20, 19];
    for (v, want) in values.iter().zip(particles) {
        let p = particle_from_msgpack(v);
        assert_eq!(p.particle, want);
        let back = msgpack_from_particle(ParticleRef { particle: p.particle, bytes: &p.bytes }).expect("back");
        assert_eq!(&back, v);
    }
    assert_eq!(particle_from_msgpack(&MsgValue::Nil).bytes, Vec::<u8>::new());
    assert_eq!(particle_from_msgpack(&s("hi")).bytes, b"hi".to_vec());
    assert_eq!(msgpack_from_particle(ParticleRef { particle: 1, bytes: &[0xff] }), Ok(i(-1)));
    assert!(msgpack_from_particle(ParticleRef { particle: 1, bytes: &[] }).is_err());
    assert!(msgpack_from_particle(ParticleRef { particle: 2, bytes: &[0; 4] }).is_err());
    assert!(msgpack_from_particle(ParticleRef { particle: 17, bytes: &[] }).is_err());
}

#[test]
fn wildcard_and_infinity_compare() {
    let wild = MsgValue::Ext(-1, vec![0]);
    let inf = MsgValue::Ext(-1, vec![1]);
    assert_eq!(cmp_values(&l(vec![i(1), wild.clone()]), &l(vec![i(1), i(2), i(3)])), Ordering::Equal);
    assert_eq!(cmp_values(&l(vec![i(2), wild]), &l(vec![i(1), i(2)])), Ordering::Greater);
    assert_eq!(cmp_values(&inf, &MsgValue::Float(1e300)), Ordering::Greater);
    let list = l(vec![l(vec![s("a"), i(1)]), l(vec![s("b"), i(2)]), l(vec![s("a"), i(3)])]);
    let get = msgpack::to_vec(&l(vec![i(22), i(5), l(vec![s("a"), MsgValue::Ext(-1, vec![0])])]));
    assert_eq!(apply_to(&list, &get).expect("get").result, Some(int_p(2)));
    let range = msgpack::to_vec(&l(vec![i(25), i(5), l(vec![s("b")]), MsgValue::Ext(-1, vec![1])]));
    assert_eq!(apply_to(&list, &range).expect("range").result, Some(int_p(1)));
}

#[test]
fn index_arithmetic() {
    assert_eq!(single_index(-1, 3), Some(2));
    assert_eq!(single_index(3, 3), None);
    assert_eq!(single_index(i64::MIN, 3), None);
    assert_eq!(range_index(-5, 4, 3), (0, 2));
    assert_eq!(range_index(-5, 2, 3), (0, 0));
    assert_eq!(range_index(1, u64::MAX, 3), (1, 2));
    assert_eq!(range_index(i64::MAX, 1, 3), (3, 0));
    assert_eq!(range_index(i64::MIN, u64::MAX, 3), (0, 3));
    assert_eq!(rel_index(-2, 3, 1), (0, 2));
    assert_eq!(rel_index(i64::MAX, 3, 9), (i64::MAX, 3));
}

fn arb_value() -> impl Strategy<Value = MsgValue> {
    let leaf = prop_oneof![
        Just(MsgValue::Nil),
        any::<bool>().prop_map(MsgValue::Bool),
        (-20i64..20).prop_map(MsgValue::Int),
        any::<i64>().prop_map(MsgValue::Int),
        any::<u64>().prop_map(|u| if u > i64::MAX as u64 { MsgValue::UInt(u) } else { MsgValue::Int(u as i64) }),
        any::<f64>().prop_map(MsgValue::Float),
        "[a-d]{0,3}".prop_map(|s| MsgValue::Str(s.into_bytes())),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| MsgValue::Blob(4, b)),
        Just(MsgValue::Ext(-1, vec![0])),
        Just(MsgValue::Ext(-1, vec![1])),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(MsgValue::List),
            (proptest::collection::vec(inner.clone(), 0..6), 0u8..2).prop_map(|(mut items, ordered)| {
                items.insert(0, MsgValue::Ext(ordered as i8, Vec::new()));
                MsgValue::List(items)
            }),
            (proptest::collection::vec((inner.clone(), inner), 0..6), prop_oneof![Just(0u8), Just(1), Just(3)])
                .prop_map(|(entries, flags)| MsgValue::Map(MsgMap { flags, entries })),
        ]
    })
}

fn arb_plain() -> impl Strategy<Value = MsgValue> {
    let leaf = prop_oneof![
        Just(MsgValue::Nil),
        any::<bool>().prop_map(MsgValue::Bool),
        (-3i64..3).prop_map(MsgValue::Int),
        Just(MsgValue::UInt(u64::MAX)),
        prop_oneof![Just(-0.0f64), Just(0.0), Just(1.5), Just(f64::NAN)].prop_map(MsgValue::Float),
        "[ab]{0,2}".prop_map(|s| MsgValue::Str(s.into_bytes())),
        (prop_oneof![Just(4u8), Just(9), Just(23)], proptest::collection::vec(0u8..2, 0..2))
            .prop_map(|(t, b)| MsgValue::Blob(t, b)),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(MsgValue::List),
            proptest::collection::vec((inner.clone(), inner), 0..3)
                .prop_map(|entries| MsgValue::Map(MsgMap { flags: 0, entries })),
        ]
    })
}

#[test]
fn sorting_odd_values_does_not_panic() {
    let mut items = Vec::new();
    for k in 0..60i64 {
        items.push(match k % 6 {
            0 => MsgValue::Ext(-1, vec![0]),
            1 => MsgValue::Float(k as f64),
            2 => MsgValue::Blob(23, vec![k as u8]),
            3 => MsgValue::Blob(30, vec![k as u8]),
            4 => MsgValue::Ext(0, vec![1]),
            _ => l(vec![i(k), MsgValue::Ext(-1, vec![0])]),
        });
    }
    let list = l(items.clone());
    for payload in [
        msgpack::to_vec(&l(vec![i(13), i(3)])),
        msgpack::to_vec(&l(vec![i(0), i(1)])),
        msgpack::to_vec(&l(vec![i(26), i(3), i(0), i(30)])),
    ] {
        let _ = apply_to(&list, &payload);
    }
    let map = m(items.into_iter().enumerate().map(|(k, v)| (v, i(k as i64))).collect());
    let _ = apply_to(&map, &msgpack::to_vec(&l(vec![i(106), i(17), i(0)])));
}

fn arb_collection() -> impl Strategy<Value = MsgValue> {
    arb_value().prop_filter_map("a collection", |v| match v {
        MsgValue::List(_) | MsgValue::Map(_) => Some(v),
        other => Some(MsgValue::List(vec![other])),
    })
}

fn arb_existing() -> impl Strategy<Value = Option<(u8, Vec<u8>)>> {
    prop_oneof![
        Just(None),
        arb_collection().prop_map(|v| {
            let particle = if matches!(v, MsgValue::Map(_)) { 19 } else { 20 };
            Some((particle, msgpack::to_vec(&v)))
        }),
        (prop_oneof![Just(19u8), Just(20), Just(1), Just(3)], proptest::collection::vec(any::<u8>(), 0..24))
            .prop_map(Some),
    ]
}

fn arb_code() -> impl Strategy<Value = i64> {
    prop_oneof![0i64..=41, 63i64..=111, Just(0xfe), Just(0xff), any::<i64>()]
}

fn arb_arg() -> impl Strategy<Value = MsgValue> {
    prop_oneof![
        4 => (-8i64..8).prop_map(MsgValue::Int),
        1 => prop_oneof![Just(0x10000i64), Just(0x10007), Just(i64::MAX), Just(i64::MIN), Just(0xffff)].prop_map(MsgValue::Int),
        3 => arb_value(),
    ]
}

fn arb_ctx() -> impl Strategy<Value = Vec<MsgValue>> {
    let t = prop_oneof![
        Just(0x10i64),
        Just(0x11),
        Just(0x13),
        Just(0x20),
        Just(0x21),
        Just(0x22),
        Just(0x23),
        Just(0x50),
        Just(0x90),
        Just(0xd0),
        Just(0x62),
        Just(0xa2),
        Just(0xe2),
        Just(0x04),
        any::<i64>()
    ];
    proptest::collection::vec((t.prop_map(MsgValue::Int), arb_arg()), 1..4)
        .prop_map(|pairs| pairs.into_iter().flat_map(|(t, v)| [t, v]).collect())
}

fn run_any(existing: &Option<(u8, Vec<u8>)>, payload: &[u8], modify: bool) -> Result<CdtOutcome, CdtError> {
    let existing = existing.as_ref().map(|(particle, bytes)| ParticleRef { particle: *particle, bytes });
    apply(existing, payload, modify)
}

proptest! {
    #[test]
    fn total_order_agrees_with_canonical_order(a in arb_plain(), b in arb_plain(), c in arb_plain()) {
        prop_assert_eq!(cmp_total(&a, &b), a.canonical_cmp(&b));
        if cmp_total(&a, &b) != Ordering::Greater && cmp_total(&b, &c) != Ordering::Greater {
            prop_assert_ne!(cmp_total(&a, &c), Ordering::Greater);
        }
    }

    #[test]
    fn apply_never_panics_on_random_bytes(
        existing in arb_existing(),
        payload in proptest::collection::vec(any::<u8>(), 0..48),
        modify in any::<bool>(),
    ) {
        let _ = run_any(&existing, &payload, modify);
    }

    #[test]
    fn apply_never_panics_on_plausible_ops(
        existing in arb_existing(),
        code in arb_code(),
        args in proptest::collection::vec(arb_arg(), 0..5),
        ctx in proptest::option::of(arb_ctx()),
        modify in any::<bool>(),
    ) {
        let mut inner = vec![MsgValue::Int(code)];
        inner.extend(args);
        let payload = match ctx {
            Some(ctx) => msgpack::to_vec(&l(vec![i(0xff), l(ctx), l(inner)])),
            None => msgpack::to_vec(&l(inner)),
        };
        if let Ok(out) = run_any(&existing, &payload, modify) {
            if let Some(Some(p)) = &out.new_value {
                prop_assert!(p.particle == 19 || p.particle == 20);
                prop_assert!(msgpack::decode(&p.bytes).is_ok());
            }
        }
    }

    #[test]
    fn stored_values_stay_normalized(
        start in arb_collection(),
        code in prop_oneof![0i64..=40, 64i64..=89],
        args in proptest::collection::vec(arb_arg(), 0..5),
    ) {
        let particle = if matches!(start, MsgValue::Map(_)) { 19 } else { 20 };
        let Ok(bytes) = normalize_collection(particle, &msgpack::to_vec(&start)) else {
            return Ok(());
        };
        let mut inner = vec![MsgValue::Int(code)];
        inner.extend(args);
        let payload = msgpack::to_vec(&l(inner));
        if let Ok(CdtOutcome { new_value: Some(Some(p)), .. }) =
            apply(Some(ParticleRef { particle, bytes: &bytes }), &payload, true)
        {
            prop_assert_eq!(normalize_collection(p.particle, &p.bytes), Ok(p.bytes.clone()));
        }
    }
}
