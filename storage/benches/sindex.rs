//! What secondary indexes cost and give, from one run over 1 M records of one set (bins `n`,
//! an integer, and `g`, one of 1000 group numbers):
//! * the build rate of an index over existing records (records/s);
//! * a selective equality query (`g == 7`, 1000 records) from the index against a scan with
//!   the same condition as a filter expression;
//! * write throughput with no index, one and two indexes.
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
use petrel_storage::sindex::{Collection, KeySpec, KeyType, Range, SindexDef};
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

fn index(ns: &Namespace, name: &str, bin: &str) -> Arc<petrel_storage::sindex::Sindex> {
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
    let set = plain.set_id(b"bench");
    let started = Instant::now();
    let mut by_index = 0;
    for pid in 0..PARTITIONS_COUNT as u16 {
        plain
            .query_partition(&ix, pid, &Range::Int(7, 7), None, set, usize::MAX, None, |_| {
                by_index += 1;
                true
            })
            .expect("query");
    }
    let query_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let mut by_scan = 0;
    for pid in 0..PARTITIONS_COUNT as u16 {
        plain
            .scan_partition_filtered(pid, None, set, usize::MAX, Some(&filter), |_| {
                by_scan += 1;
                true
            })
            .expect("scan");
    }
    let scan_secs = started.elapsed().as_secs_f64();
    assert_eq!(by_index, by_scan);
    println!(
        "equality on {by_index} of {records} records: index {:.2} ms, filtered scan {:.2} ms ({:.0}x faster)",
        query_secs * 1e3,
        scan_secs * 1e3,
        scan_secs / query_secs
    );
}
