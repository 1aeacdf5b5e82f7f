//! Regression: lost acknowledged writes on a hot key. Once a record had been written more
//! than 65 535 times its generation wrapped to 1, and a replica judged every later copy from
//! the master "older" than the one it held (generation 65 535), dropped it, and still
//! acknowledged it. Replica copies now apply in the master's sequence, and conflict
//! resolution orders generations as a wrapping sequence.

use std::cmp::Ordering;

use petrel_proto::{Digest, KeyRef as WireKey};
use petrel_storage::namespace::{generation_cmp, ConflictResolution, RecordCopy, ReplicaApplied};
use petrel_storage::*;

fn image(value: i64) -> Vec<u8> {
    let mut bytes = Vec::new();
    let p = Value::Int(value).to_particle();
    petrel_storage::record::encode(&mut bytes, None, [(&b"n"[..], p.particle, &p.bytes[..])].into_iter())
        .expect("encode");
    bytes
}

fn count(ns: &Namespace, d: &Digest) -> Value {
    let mut got = None;
    ns.read(d, ReadSelect::All, |b| got = Some(Value::from_particle(b.value).expect("value"))).expect("read");
    got.expect("bin n")
}

#[test]
fn generations_order_as_a_wrapping_sequence() {
    assert_eq!(generation_cmp(5, 5), Ordering::Equal);
    assert_eq!(generation_cmp(6, 5), Ordering::Greater);
    assert_eq!(generation_cmp(5, 6), Ordering::Less);
    // 65535 is followed by 1.
    assert_eq!(generation_cmp(1, u16::MAX), Ordering::Greater);
    assert_eq!(generation_cmp(u16::MAX, 1), Ordering::Less);
    assert_eq!(generation_cmp(3, u16::MAX - 2), Ordering::Greater);
    // Far apart in plain numbers, close in the sequence.
    assert_eq!(generation_cmp(100, 65_000), Ordering::Greater);
    // Generation 0 (no record) comes before everything.
    assert_eq!(generation_cmp(0, 1), Ordering::Less);
    assert_eq!(generation_cmp(1, 0), Ordering::Greater);
    // Antisymmetric over the whole range.
    for a in (1..=u16::MAX).step_by(97) {
        for b in (1..=u16::MAX).step_by(89) {
            assert_eq!(generation_cmp(a, b), generation_cmp(b, a).reverse(), "{a} vs {b}");
        }
    }
}

#[test]
fn replica_keeps_applying_the_masters_copies_across_the_wrap() {
    let replica = Namespace::in_memory(NamespaceConfig::new("test")).expect("namespace");
    let d = Digest::compute(b"hot", WireKey::Int(1));
    let mut generation: u16 = u16::MAX - 3;
    for n in 0..10i64 {
        let img = image(n);
        let meta = RecordMeta { generation, void_time: 0, lut_ms: 1_000 + n as u64 };
        let copy = RecordCopy { digest: d, set: b"", meta, image: &img };
        assert_eq!(replica.apply_replica(&copy).expect("apply"), ReplicaApplied::Stored, "copy {n} gen {generation}");
        assert_eq!(count(&replica, &d), Value::Int(n));
        generation = if generation == u16::MAX { 1 } else { generation + 1 };
    }
    // A copy overtaken in flight (an earlier generation arriving late) changes nothing.
    let img = image(-1);
    let stale = RecordCopy {
        digest: d,
        set: b"",
        meta: RecordMeta { generation: u16::MAX, void_time: 0, lut_ms: 1 },
        image: &img,
    };
    assert_eq!(replica.apply_replica(&stale).expect("apply"), ReplicaApplied::AlreadyLater);
    assert_eq!(count(&replica, &d), Value::Int(9));
    // Migration and merges resolve the same way: the copy from after the wrap wins.
    let newer = RecordCopy { meta: RecordMeta { generation: 7, void_time: 0, lut_ms: 5_000 }, ..stale };
    let img_new = image(42);
    let newer = RecordCopy { image: &img_new, ..newer };
    assert!(replica.apply_copy(&newer, ConflictResolution::Generation).expect("apply"));
    assert!(!replica.apply_copy(&stale, ConflictResolution::Generation).expect("apply"));
    assert_eq!(count(&replica, &d), Value::Int(42));
}

#[test]
fn a_record_created_anew_replaces_a_stale_copy_with_a_higher_generation() {
    // The replica kept generation 5 of a record whose delete never reached it; the master
    // then created the record anew (generation 1, a later update time). The new copy must
    // win: ordering by generation alone would keep the stale one and lose the write.
    let replica = Namespace::in_memory(NamespaceConfig::new("test")).expect("namespace");
    let d = Digest::compute(b"again", WireKey::Int(1));
    let stale_img = image(5);
    let stale = RecordCopy {
        digest: d,
        set: b"",
        meta: RecordMeta { generation: 5, void_time: 0, lut_ms: 1_000 },
        image: &stale_img,
    };
    assert_eq!(replica.apply_replica(&stale).expect("apply"), ReplicaApplied::Stored);
    let new_img = image(1);
    let created =
        RecordCopy { meta: RecordMeta { generation: 1, void_time: 0, lut_ms: 2_000 }, image: &new_img, ..stale };
    assert_eq!(replica.apply_replica(&created).expect("apply"), ReplicaApplied::Stored);
    assert_eq!(count(&replica, &d), Value::Int(1));
    // The stale copy arriving again (overtaken in flight) changes nothing.
    assert_eq!(replica.apply_replica(&stale).expect("apply"), ReplicaApplied::AlreadyLater);
    assert_eq!(count(&replica, &d), Value::Int(1));
}
