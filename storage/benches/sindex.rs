//! What secondary indexes cost and give, from one run over 1 M records of one set (bins `n`,
//! an integer, and `g`, one of 1000 group numbers):
//! * the build rate of an index over existing records (records/s);
//! * a selective equality query (`g == 7`, 1000 records) from the index against a scan with
//!   the same condition as a filter expression;
//! * write throughput with no index, one and two indexes;
//! * a geospatial query (points within a 200 km circle) over a fifth as many points, from the
//!   S2-cell index against a scan with the same circle as a filter expression.
//!
//! Each figure is one timed pass (the work is large, so one pass is steady), printed as a
//! ratio. Run: `cargo bench -p petrel-storage --bench sindex` (PETREL_BENCH_RECORDS to resize).

use std::sync::Arc;
use std::time::Instant;

use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::{Digest, KeyRef, PARTITIONS_COUNT};
use petrel_storage::clock::ManualClock;
use petrel_storage::exp::Program;
use petrel_storage::namespace::SindexCreated;
use petrel_storage::sindex::{Collection, KeySpec, KeyType, Range, Sindex, SindexDef};
use petrel_storage::value::ParticleRef;
use petrel_storage::*;

const GROUPS: i64 = 1000;

fn namespace() -> Namespace {
    let clock = Arc::new(ManualClock::new(500_000_000_000));
    Namespace::new(NamespaceConfig::new("test"), Engine::Memory(MemoryEngine::new()), clock).expect("ns")
}

fn write_all(ns: &Namespace, records: i64) -> f64 {
    let started = Instant::now();
    for i in 0..records {
        let (n, g) = (Value::Int(i).to_particle(), Value::Int(i % GROUPS).to_particle());
        let ops = [
            Op::Write { bin: b"n", value: ParticleRef { particle: n.particle, bytes: &n.bytes } },
            Op::Write { bin: b"g", value: ParticleRef { particle: g.particle, bytes: &g.bytes } },
        ];
        let d = Digest::compute(b"bench", KeyRef::Int(i));
        ns.operate(&OperateRequest { digest: d, set: b"bench", key: None, policy: WritePolicy::default(), ops: &ops })
            .expect("write");
    }
    records as f64 / started.elapsed().as_secs_f64()
}

fn index(ns: &Namespace, name: &str, bin: &str) -> Arc<Sindex> {
    let def = SindexDef {
        name: name.to_string(),
        set: Some(b"bench".to_vec()),
        spec: KeySpec {
            bin: bin.as_bytes().to_vec(),
            key_type: KeyType::Numeric,
            collection: Collection::Default,
            ctx: vec![],
        },
        ctx_base64: None,
    };
    match ns.create_sindex(def).expect("create") {
        SindexCreated::New(ix) | SindexCreated::Existing(ix) => ix,
    }
}

fn main() {
    let records: i64 = std::env::var("PETREL_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    // Write throughput with 0, 1 and 2 indexes, each on a fresh namespace.
    let plain = namespace();
    let w0 = write_all(&plain, records);
    let one = namespace();
    one.build_sindex(&index(&one, "by_g", "g"));
    let w1 = write_all(&one, records);
    let two = namespace();
    two.build_sindex(&index(&two, "by_g", "g"));
    two.build_sindex(&index(&two, "by_n", "n"));
    let w2 = write_all(&two, records);
    println!("writes/s: no index {w0:.0}, one index {w1:.0} ({:.2}x), two indexes {w2:.0} ({:.2}x)", w1 / w0, w2 / w0);

    // Build rate over existing records.
    let ix = index(&plain, "by_g", "g");
    let started = Instant::now();
    plain.build_sindex(&ix);
    let build_secs = started.elapsed().as_secs_f64();
    println!("index build: {records} records in {build_secs:.2} s = {:.0} records/s", records as f64 / build_secs);

    // A selective equality: the index against a scan filtered by the same condition.
    let int = |i: i64| msgpack::to_vec(&MsgValue::Int(i));
    let bin = op::pack_call(op::BIN, &[int(op::ty::INT), vec![0xa1, b'g']]);
    let filter = Program::compile(&op::pack_call(op::EQ, &[bin, int(7)])).expect("compiles");
    let (found, query_secs, scan_secs) = index_against_scan(&plain, &ix, &Range::Int(7, 7), &filter);
    println!(
        "equality on {found} of {records} records: index {:.2} ms, filtered scan {:.2} ms ({:.0}x faster)",
        query_secs * 1e3,
        scan_secs * 1e3,
        scan_secs / query_secs
    );
    geo(records / 5);
}

/// Points spread over longitude [-180, 180) and latitude [-60, 60) by a fixed sequence; a
/// circle query through the cell index against a filtered scan.
fn geo(points: i64) {
    let ns = namespace();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for i in 0..points {
        let (lng, lat) = (next() * 360.0 - 180.0, next() * 120.0 - 60.0);
        let p = Value::GeoJson(format!(r#"{{"type":"Point","coordinates":[{lng},{lat}]}}"#)).to_particle();
        let ops = [Op::Write { bin: b"p", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
        let d = Digest::compute(b"bench", KeyRef::Int(i));
        ns.operate(&OperateRequest { digest: d, set: b"bench", key: None, policy: WritePolicy::default(), ops: &ops })
            .expect("write");
    }
    let def = SindexDef {
        name: "by_p".into(),
        set: Some(b"bench".to_vec()),
        spec: KeySpec { bin: b"p".to_vec(), key_type: KeyType::Geo, collection: Collection::Default, ctx: vec![] },
        ctx_base64: None,
    };
    let ix = match ns.create_sindex(def).expect("create") {
        SindexCreated::New(ix) | SindexCreated::Existing(ix) => ix,
    };
    ns.build_sindex(&ix);
    let circle = r#"{"type":"AeroCircle","coordinates":[[2.35,48.85],200000]}"#;
    let int = |i: i64| msgpack::to_vec(&MsgValue::Int(i));
    let bin = op::pack_call(op::BIN, &[int(op::ty::GEO), vec![0xa1, b'p']]);
    let literal = msgpack::to_vec(&MsgValue::Blob(23, circle.as_bytes().to_vec()));
    let filter = Program::compile(&op::pack_call(op::GEO, &[bin, literal])).expect("compiles");
    let range = Range::geo(circle.as_bytes().to_vec());
    let (found, query_secs, scan_secs) = index_against_scan(&ns, &ix, &range, &filter);
    println!(
        "points within a 200 km circle, {found} of {points}: cell index {:.2} ms, filtered scan {:.2} ms ({:.0}x faster)",
        query_secs * 1e3,
        scan_secs * 1e3,
        scan_secs / query_secs
    );
}

/// Times one query of every partition through `ix` and one scan filtered by `filter` (which
/// must select the same records): (records found, query seconds, scan seconds).
fn index_against_scan(ns: &Namespace, ix: &Sindex, range: &Range, filter: &Program) -> (u64, f64, f64) {
    let set = ns.set_id(b"bench");
    let started = Instant::now();
    let mut by_index = 0;
    for pid in 0..PARTITIONS_COUNT as u16 {
        ns.query_partition(ix, pid, range, None, set, usize::MAX, None, |_| {
            by_index += 1;
            true
        })
        .expect("query");
    }
    let query_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut by_scan = 0;
    for pid in 0..PARTITIONS_COUNT as u16 {
        ns.scan_partition_filtered(pid, None, set, usize::MAX, Some(filter), |_| {
            by_scan += 1;
            true
        })
        .expect("scan");
    }
    let scan_secs = started.elapsed().as_secs_f64();
    assert_eq!(by_index, by_scan, "the index and the scan disagree");
    (by_index, query_secs, scan_secs)
}
