//! Secondary indexes through the crate's public API: after any sequence of writes, deletes,
//! expiries, replica copies and dropped partitions, an index holds exactly the keys a full
//! scan of the records yields, and a query answers exactly the records a filtered scan does
//! (geospatial queries included, whose candidates come from S2 cells).

use std::collections::BTreeSet;
use std::sync::Arc;

use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::{Digest, KeyRef as WireKey, PARTITIONS_COUNT};
use petrel_storage::clock::ManualClock;
use petrel_storage::namespace::{RecordCopy, SindexCreated};
use petrel_storage::record::ImageView;
use petrel_storage::sindex::{Collection, Key, KeySpec, KeyType, Keys, Range, Sindex, SindexDef};
use petrel_storage::value::ParticleRef;
use petrel_storage::*;
use proptest::prelude::*;

const START_MS: u64 = 500_000_000_000;

fn ns() -> (Namespace, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let ns = Namespace::new(NamespaceConfig::new("test"), Engine::Memory(MemoryEngine::new()), clock.clone())
        .expect("namespace");
    (ns, clock)
}

fn key(i: u32) -> Digest {
    Digest::compute(b"demo", WireKey::Int(i as i64))
}

fn def(name: &str, bin: &str, key_type: KeyType, collection: Collection) -> SindexDef {
    SindexDef {
        name: name.to_string(),
        set: Some(b"demo".to_vec()),
        spec: KeySpec { bin: bin.as_bytes().to_vec(), key_type, collection, ctx: Vec::new() },
        ctx_base64: None,
    }
}

fn create(ns: &Namespace, d: SindexDef) -> Arc<Sindex> {
    match ns.create_sindex(d).expect("create") {
        SindexCreated::New(ix) => {
            ns.build_sindex(&ix);
            ix
        }
        SindexCreated::Existing(ix) => ix,
    }
}

/// A bin value the generator writes.
#[derive(Debug, Clone)]
enum BinValue {
    Int(i64),
    Str(String),
    IntList(Vec<i64>),
}

impl BinValue {
    fn value(&self) -> Value {
        match self {
            BinValue::Int(v) => Value::Int(*v),
            BinValue::Str(s) => Value::String(s.clone()),
            BinValue::IntList(items) => Value::list(items.iter().map(|v| MsgValue::Int(*v)).collect()),
        }
    }
}

fn put(ns: &Namespace, d: Digest, bin: &[u8], v: &BinValue, ttl: Ttl) {
    let p = v.value().to_particle();
    let ops = [Op::Write { bin, value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    let policy = WritePolicy { ttl, ..WritePolicy::default() };
    ns.operate(&OperateRequest { digest: d, set: b"demo", key: None, policy, ops: &ops }).expect("put");
}

/// The index entries a full scan of the namespace's live records yields.
fn scanned_entries(ns: &Namespace, ix: &Sindex) -> BTreeSet<(Key, Digest)> {
    let mut want = BTreeSet::new();
    let mut keys = Keys::new();
    for pid in 0..PARTITIONS_COUNT as u16 {
        ns.scan_partition(pid, None, None, usize::MAX, |r| {
            ix.def.spec.keys_of(&r.image, &mut keys);
            want.extend(keys.iter().map(|k| (k.clone(), r.digest)));
            true
        })
        .expect("scan");
    }
    want
}

fn index_entries(ix: &Sindex) -> BTreeSet<(Key, Digest)> {
    (0..PARTITIONS_COUNT as u16).flat_map(|pid| ix.partition_entries(pid)).collect()
}

fn query(ns: &Namespace, ix: &Sindex, range: &Range) -> BTreeSet<Digest> {
    let mut got = BTreeSet::new();
    for pid in 0..PARTITIONS_COUNT as u16 {
        let p = ns
            .query_partition(ix, pid, range, None, None, usize::MAX, None, |r| {
                assert!(got.insert(r.digest), "a record answered twice");
                true
            })
            .expect("query");
        assert!(p.complete);
    }
    got
}

#[derive(Debug, Clone)]
enum Step {
    Put(u32, BinValue),
    PutExpiring(u32, BinValue),
    PutOtherBin(u32),
    Delete(u32),
    Replica(u32, BinValue),
    ReplicaDelete(u32),
    DropPartitionOf(u32),
    Expire,
}

fn bin_value() -> impl Strategy<Value = BinValue> {
    prop_oneof![
        (-5i64..5).prop_map(BinValue::Int),
        "[ab]{0,2}".prop_map(BinValue::Str),
        proptest::collection::vec(-5i64..5, 0..4).prop_map(BinValue::IntList),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let k = 0u32..40;
    prop_oneof![
        4 => (k.clone(), bin_value()).prop_map(|(k, v)| Step::Put(k, v)),
        1 => (k.clone(), bin_value()).prop_map(|(k, v)| Step::PutExpiring(k, v)),
        1 => k.clone().prop_map(Step::PutOtherBin),
        2 => k.clone().prop_map(Step::Delete),
        1 => (k.clone(), bin_value()).prop_map(|(k, v)| Step::Replica(k, v)),
        1 => k.clone().prop_map(Step::ReplicaDelete),
        1 => k.prop_map(Step::DropPartitionOf),
        1 => Just(Step::Expire),
    ]
}

/// An image holding bin `a` = `v`, as a replica copy carries it.
fn image_of(ns: &Namespace, v: &BinValue) -> Vec<u8> {
    // Written on a scratch namespace and read back raw: the copy carries the stored image.
    let d = key(u32::MAX);
    put(ns, d, b"a", v, Ttl::Never);
    let mut raw = Vec::new();
    ns.scan_partition(d.partition_id(), None, None, usize::MAX, |r| {
        if r.digest == d {
            raw = r.raw.to_vec();
        }
        true
    })
    .expect("scan");
    raw
}

fn run(ns: &Namespace, clock: &ManualClock, scratch: &Namespace, s: &Step, lut_ms: &mut u64) {
    match s {
        Step::Put(k, v) => put(ns, key(*k), b"a", v, Ttl::Never),
        Step::PutExpiring(k, v) => put(ns, key(*k), b"a", v, Ttl::Secs(1)),
        Step::PutOtherBin(k) => put(ns, key(*k), b"b", &BinValue::Int(1), Ttl::Never),
        Step::Delete(k) => {
            let _ = ns.delete(&key(*k), GenerationPolicy::None);
        }
        Step::Replica(k, v) => {
            let image = image_of(scratch, v);
            *lut_ms += 1_000_000;
            let copy = RecordCopy {
                digest: key(*k),
                set: b"demo",
                meta: RecordMeta { generation: 7, void_time: 0, lut_ms: *lut_ms },
                image: &image,
            };
            ns.apply_replica(&copy).expect("replica");
        }
        Step::ReplicaDelete(k) => {
            ns.apply_delete(&key(*k), 0).expect("replica delete");
        }
        Step::DropPartitionOf(k) => {
            ns.drop_partition(key(*k).partition_id());
        }
        Step::Expire => clock.advance_ms(2_000),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn indexes_hold_what_a_scan_finds(steps in proptest::collection::vec(step(), 1..60), early in 0usize..60) {
        let (ns, clock) = ns();
        let (scratch, _) = self::ns();
        let mut lut_ms = START_MS * 10;
        let mut indexes = Vec::new();
        for (i, s) in steps.iter().enumerate() {
            // Indexes are created part-way through, so some are built over existing records.
            if i == early.min(steps.len() - 1) {
                indexes.push(create(&ns, def("by_int", "a", KeyType::Numeric, Collection::Default)));
                indexes.push(create(&ns, def("by_str", "a", KeyType::String, Collection::Default)));
                indexes.push(create(&ns, def("by_elem", "a", KeyType::Numeric, Collection::List)));
            }
            run(&ns, &clock, &scratch, s, &mut lut_ms);
        }
        // Queries never answer expired records, whether or not they are reclaimed yet.
        for ix in &indexes {
            let range = match ix.def.spec.key_type {
                KeyType::String => Range::Bytes(b"a".to_vec()),
                _ => Range::Int(-2, 2),
            };
            let want: BTreeSet<Digest> = scanned_entries(&ns, ix)
                .into_iter()
                .filter(|(k, _)| range.matches(k))
                .map(|(_, d)| d)
                .collect();
            prop_assert_eq!(query(&ns, ix, &range), want);
        }
        ns.reclaim_dead();
        for ix in &indexes {
            prop_assert_eq!(index_entries(ix), scanned_entries(&ns, ix), "index {}", ix.def.name);
        }
    }
}

#[test]
fn creating_is_idempotent_and_names_are_checked() {
    let (ns, _) = ns();
    let first = create(&ns, def("i", "a", KeyType::Numeric, Collection::Default));
    let again = create(&ns, def("i", "a", KeyType::Numeric, Collection::Default));
    assert!(Arc::ptr_eq(&first, &again));
    let other = ns.create_sindex(def("i", "b", KeyType::Numeric, Collection::Default));
    assert!(matches!(other, Err(StorageError::IndexFound(_))), "{other:?}");
    let long = ns.create_sindex(def(&"x".repeat(64), "a", KeyType::Numeric, Collection::Default));
    assert!(matches!(long, Err(StorageError::IndexName(_))), "{long:?}");
    assert!(ns.delete_sindex("i"));
    assert!(!ns.delete_sindex("i"));
    assert!(ns.sindexes().is_empty());
}

#[test]
fn a_query_waits_for_the_build() {
    let (ns, _) = ns();
    put(&ns, key(1), b"a", &BinValue::Int(3), Ttl::Never);
    let SindexCreated::New(ix) =
        ns.create_sindex(def("i", "a", KeyType::Numeric, Collection::Default)).expect("create")
    else {
        panic!("new index expected")
    };
    let early = ns.query_partition(&ix, key(1).partition_id(), &Range::Int(3, 3), None, None, 10, None, |_| true);
    assert_eq!(early, Err(StorageError::IndexNotReadable));
    ns.build_sindex(&ix);
    assert_eq!(query(&ns, &ix, &Range::Int(3, 3)), BTreeSet::from([key(1)]));
    assert_eq!(ix.stats().load_pct, 100);
    assert_eq!(ix.stats().entries, 1);
}

#[test]
fn map_keys_values_and_contexts_are_indexed() {
    let (ns, _) = ns();
    let map = MsgValue::Map(msgpack::MsgMap {
        flags: 0,
        entries: vec![
            (MsgValue::str("k1"), MsgValue::Int(10)),
            (MsgValue::str("k2"), MsgValue::List(vec![MsgValue::Int(20), MsgValue::Int(21)])),
        ],
    });
    let p = Value::Map(msgpack::to_vec(&map)).to_particle();
    let ops = [Op::Write { bin: b"m", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    ns.operate(&OperateRequest { digest: key(1), set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops })
        .expect("put");
    let keys = create(&ns, def("keys", "m", KeyType::String, Collection::MapKeys));
    let values = create(&ns, def("values", "m", KeyType::Numeric, Collection::MapValues));
    let mut nested = def("nested", "m", KeyType::Numeric, Collection::List);
    // Context: map key "k2" (type 0x22 = map by key).
    nested.spec.ctx = vec![MsgValue::Int(0x22), MsgValue::str("k2")];
    let nested = create(&ns, nested);
    assert_eq!(query(&ns, &keys, &Range::Bytes(b"k2".to_vec())), BTreeSet::from([key(1)]));
    assert_eq!(query(&ns, &values, &Range::Int(10, 10)), BTreeSet::from([key(1)]));
    assert!(query(&ns, &values, &Range::Int(20, 21)).is_empty(), "a list value is not an integer value");
    assert_eq!(query(&ns, &nested, &Range::Int(21, 30)), BTreeSet::from([key(1)]));
    let mut out = Keys::new();
    let raw = image_of(&ns, &BinValue::Int(1));
    nested.def.spec.keys_of(&ImageView::parse(&raw).expect("image"), &mut out);
    assert!(out.is_empty(), "a record without the bin has no keys");
}

/// A GeoJSON value the geospatial property writes or asks about.
fn geo_value() -> impl Strategy<Value = String> {
    let point =
        (-20.0f64..20.0, -20.0f64..20.0).prop_map(|(x, y)| format!(r#"{{"type":"Point","coordinates":[{x},{y}]}}"#));
    let square = (-20.0f64..20.0, -20.0f64..20.0, 0.01f64..15.0).prop_map(|(x, y, w)| {
        let (x1, y1) = (x + w, y + w);
        format!(r#"{{"type":"Polygon","coordinates":[[[{x},{y}],[{x1},{y}],[{x1},{y1}],[{x},{y1}],[{x},{y}]]]}}"#)
    });
    let circle = (-20.0f64..20.0, -20.0f64..20.0, 1.0f64..2_000_000.0)
        .prop_map(|(x, y, r)| format!(r#"{{"type":"AeroCircle","coordinates":[[{x},{y}],{r}]}}"#));
    prop_oneof![3 => point, 1 => square, 1 => circle]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A geospatial query through the S2 cells answers exactly what testing every stored value
    /// against the query finds: points within a region, regions containing a point.
    #[test]
    fn geo_queries_answer_what_a_scan_finds(
        stored in proptest::collection::vec(geo_value(), 1..80),
        asked in proptest::collection::vec(geo_value(), 1..6),
    ) {
        let (ns, _) = ns();
        for (i, json) in stored.iter().enumerate() {
            let p = Value::GeoJson(json.clone()).to_particle();
            let ops = [Op::Write { bin: b"g", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
            ns.operate(&OperateRequest { digest: key(i as u32), set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops })
                .expect("put");
        }
        let ix = create(&ns, def("geo", "g", KeyType::Geo, Collection::Default));
        for q in &asked {
            let range = Range::geo(q.clone().into_bytes());
            let mut want = BTreeSet::new();
            let mut values = Keys::new();
            for pid in 0..PARTITIONS_COUNT as u16 {
                ns.scan_partition(pid, None, None, usize::MAX, |r| {
                    ix.def.spec.values_of(&r.image, &mut values);
                    if values.iter().any(|v| range.matches(v)) {
                        want.insert(r.digest);
                    }
                    true
                })
                .expect("scan");
            }
            prop_assert_eq!(query(&ns, &ix, &range), want, "query {}", q);
        }
    }
}
