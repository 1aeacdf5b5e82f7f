//! Filter expressions through the namespace's public API: a read, exists, operate, delete or
//! scan of a record that does not match answers FILTERED_OUT (or skips it) and changes
//! nothing; expression operations inside an operate.

use std::sync::Arc;

use petrel_proto::exp as op;
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::{Digest, KeyRef as WireKey, ResultCode};
use petrel_storage::clock::ManualClock;
use petrel_storage::exp::Program;
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

fn ns() -> Namespace {
    let clock = Arc::new(ManualClock::new(500_000_000_000));
    Namespace::new(NamespaceConfig::new("test"), Engine::Memory(MemoryEngine::new()), clock).expect("namespace")
}

fn key(i: i64) -> Digest {
    Digest::compute(b"demo", WireKey::Int(i))
}

fn call(code: i64, args: &[Vec<u8>]) -> Vec<u8> {
    op::pack_call(code, args)
}

fn int(i: i64) -> Vec<u8> {
    msgpack::to_vec(&MsgValue::Int(i))
}

/// `bin "n" (an integer) == v`.
fn n_is(v: i64) -> Program {
    let bin = call(op::BIN, &[int(op::ty::INT), vec![0xa1, b'n']]);
    Program::compile(&call(op::EQ, &[bin, int(v)])).expect("compiles")
}

fn write_n(ns: &Namespace, d: Digest, v: i64, filter: Option<&Program>) -> Result<(), StorageError> {
    let p: Particle = Value::Int(v).to_particle();
    let ops = [Op::Write { bin: b"n", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    let req = OperateRequest { digest: d, set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops };
    ns.operate_filtered(&req, filter).map(|_| ())
}

fn read_n(ns: &Namespace, d: Digest) -> Option<i64> {
    let mut n = None;
    ns.read(&d, ReadSelect::All, |b| {
        if let Ok(Value::Int(v)) = Value::from_particle(b.value) {
            n = Some(v);
        }
    })
    .ok()?;
    n
}

#[test]
fn filtered_out_records_are_answered_27_and_left_unchanged() {
    let ns = ns();
    let d = key(1);
    write_n(&ns, d, 5, None).expect("write");
    let gen = ns.exists(&d).expect("exists").generation;
    let miss = n_is(6);
    let hit = n_is(5);
    let filtered = |r: Result<(), StorageError>| r.map_err(|e| e.result_code());
    assert_eq!(
        filtered(ns.read_filtered(&d, ReadSelect::All, Some(&miss), |_| {}).map(|_| ())),
        Err(ResultCode::FilteredOut)
    );
    assert_eq!(filtered(ns.exists_filtered(&d, Some(&miss)).map(|_| ())), Err(ResultCode::FilteredOut));
    assert_eq!(filtered(write_n(&ns, d, 9, Some(&miss))), Err(ResultCode::FilteredOut));
    assert_eq!(filtered(ns.delete_filtered(&d, GenerationPolicy::None, Some(&miss))), Err(ResultCode::FilteredOut));
    assert_eq!(read_n(&ns, d), Some(5));
    assert_eq!(ns.exists(&d).expect("exists").generation, gen);
    assert!(ns.exists_filtered(&d, Some(&hit)).is_ok());
    write_n(&ns, d, 9, Some(&hit)).expect("matching write");
    assert_eq!(read_n(&ns, d), Some(9));
    ns.delete_filtered(&d, GenerationPolicy::None, Some(&n_is(9))).expect("matching delete");
    assert!(ns.exists(&d).is_err());
    // A write that creates the record is not filtered.
    write_n(&ns, d, 1, Some(&miss)).expect("create");
    assert_eq!(read_n(&ns, d), Some(1));
}

#[test]
fn scans_hand_over_only_matching_records() {
    let ns = ns();
    for i in 0..50 {
        write_n(&ns, key(i), i % 5, None).expect("write");
    }
    let filter = n_is(3);
    let mut seen = 0;
    for pid in 0..petrel_proto::PARTITIONS_COUNT as u16 {
        ns.scan_partition_filtered(pid, None, None, usize::MAX, Some(&filter), |r| {
            let n = r.image.bin(b"n").expect("image").expect("bin");
            assert_eq!(Value::from_particle(n.value).expect("value"), Value::Int(3));
            seen += 1;
            true
        })
        .expect("scan");
    }
    assert_eq!(seen, 10);
}

#[test]
fn expression_operations_see_earlier_ops() {
    let ns = ns();
    let d = key(7);
    write_n(&ns, d, 4, None).expect("write");
    let bin = call(op::BIN, &[int(op::ty::INT), vec![0xa1, b'n']]);
    let double = call(op::MUL, &[bin, int(2)]);
    let mut payload = vec![0x92];
    payload.extend_from_slice(&double);
    payload.extend_from_slice(&int(0));
    let p = Value::Int(10).to_particle();
    let ops = [
        Op::Write { bin: b"n", value: ParticleRef { particle: p.particle, bytes: &p.bytes } },
        Op::ExpModify { bin: b"d", payload: &payload },
        Op::ExpRead { bin: b"r", payload: &payload },
    ];
    let req = OperateRequest { digest: d, set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops };
    let out = ns.operate(&req).expect("operate");
    assert_eq!(out.results.len(), 1);
    assert_eq!(out.results[0].value, Some(Value::Int(20).to_particle()));
    let mut d_bin = None;
    ns.read(&d, ReadSelect::All, |b| {
        if b.name == b"d" {
            d_bin = Value::from_particle(b.value).ok();
        }
    })
    .expect("read");
    assert_eq!(d_bin, Some(Value::Int(20)));
}

/// `resize(literal blob, bytes) != literal blob`, as a filter: a bit modify call inside an
/// expression, whose result is charged to the evaluation's byte budget.
fn resized_differs(bytes: i64) -> Program {
    let blob = vec![0xa2, 0x04, 0x01];
    let resize = op::pack_call(petrel_proto::bits::modify::RESIZE, &[int(bytes)]);
    let resized = call(op::CALL, &[int(op::ty::BLOB), int(op::MODULE_BITS | op::MODULE_MODIFY), resize, blob.clone()]);
    Program::compile(&call(op::NE, &[resized, blob])).expect("compiles")
}

#[test]
fn a_filter_cannot_grow_values_past_the_record_size() {
    //! Guards a filter whose call resized a literal to 128 MiB for every record it looked at:
    //! the calls of one evaluation may produce at most the namespace's record size.
    let ns = ns();
    let d = key(7);
    write_n(&ns, d, 1, None).expect("write");
    assert!(ns.exists_filtered(&d, Some(&resized_differs(16))).is_ok(), "a small resize is evaluated");
    let limit = NamespaceConfig::new("test").max_record_size_bytes as i64;
    let huge = resized_differs(128 << 20);
    assert_eq!(
        ns.exists_filtered(&d, Some(&huge)).map(|_| ()).map_err(|e| e.result_code()),
        Err(ResultCode::FilteredOut)
    );
    assert_eq!(
        ns.exists_filtered(&d, Some(&resized_differs(limit + 1))).map(|_| ()).map_err(|e| e.result_code()),
        Err(ResultCode::FilteredOut),
        "past the record size the call is unknown"
    );
}
