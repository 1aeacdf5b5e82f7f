//! What a filter expression costs: a read of 100 keys (as a batch serves them) and a scan of
//! every partition, each without a filter and with one every record passes (`bin "n" >= 0`,
//! so the same records come back and only the evaluation differs). The goal is at most 1.2x.
//!
//! Run: `cargo bench -p petrel-storage --bench filters`.

use std::sync::Arc;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::{Digest, KeyRef, PARTITIONS_COUNT};
use petrel_storage::clock::ManualClock;
use petrel_storage::exp::Program;
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

const RECORDS: i64 = 100_000;

fn namespace() -> Namespace {
    let clock = Arc::new(ManualClock::new(500_000_000_000));
    let ns = Namespace::new(NamespaceConfig::new("test"), Engine::Memory(MemoryEngine::new()), clock).expect("ns");
    for i in 0..RECORDS {
        let (n, s): (Particle, Particle) = (Value::Int(i).to_particle(), Value::String(format!("v{i}")).to_particle());
        let ops = [
            Op::Write { bin: b"n", value: ParticleRef { particle: n.particle, bytes: &n.bytes } },
            Op::Write { bin: b"s", value: ParticleRef { particle: s.particle, bytes: &s.bytes } },
        ];
        let d = Digest::compute(b"bench", KeyRef::Int(i));
        ns.operate(&OperateRequest { digest: d, set: b"bench", key: None, policy: WritePolicy::default(), ops: &ops })
            .expect("write");
    }
    ns
}

/// `bin "n" >= 0`: every record passes.
fn passes_all() -> Program {
    let int = |i: i64| msgpack::to_vec(&MsgValue::Int(i));
    let bin = op::pack_call(op::BIN, &[int(op::ty::INT), vec![0xa1, b'n']]);
    Program::compile(&op::pack_call(op::GE, &[bin, int(0)])).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let ns = namespace();
    let filter = passes_all();
    let keys: Vec<Digest> = (0..100).map(|i| Digest::compute(b"bench", KeyRef::Int(i * 997))).collect();
    let mut g = c.benchmark_group("filter");
    for (name, f) in [("unfiltered", None), ("filtered", Some(&filter))] {
        g.bench_function(format!("read 100 keys, {name}"), |b| {
            b.iter(|| {
                let mut bins = 0;
                for d in &keys {
                    ns.read_filtered(d, ReadSelect::All, f, |_| bins += 1).expect("read");
                }
                black_box(bins)
            })
        });
    }
    g.sample_size(10);
    for (name, f) in [("unfiltered", None), ("filtered", Some(&filter))] {
        g.bench_function(format!("scan 100 000 records, {name}"), |b| {
            b.iter(|| {
                let mut seen = 0u64;
                for pid in 0..PARTITIONS_COUNT as u16 {
                    ns.scan_partition_filtered(pid, None, None, usize::MAX, f, |_| {
                        seen += 1;
                        true
                    })
                    .expect("scan");
                }
                assert_eq!(seen, RECORDS as u64);
                black_box(seen)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
