//! Delete marks: a deleted record's older copies, arriving from other nodes by migration or
//! merge, are not stored again; a record created again after its delete is newer than the
//! delete; other nodes' marks delete older local copies; marks are bounded, reaped by age
//! and go with their partition.

use std::sync::Arc;

use petrel_proto::{Digest, KeyRef};
use petrel_storage::clock::ManualClock;
use petrel_storage::namespace::{ConflictResolution, RecordCopy};
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

const START_MS: u64 = 500_000_000_000;

fn ns_with(config: NamespaceConfig) -> (Namespace, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let ns = Namespace::new(config, Engine::Memory(MemoryEngine::new()), clock.clone()).expect("namespace");
    (ns, clock)
}

fn key(i: i64) -> Digest {
    Digest::compute(b"demo", KeyRef::Int(i))
}

fn put(ns: &Namespace, d: Digest, v: i64) -> RecordMeta {
    let p: Particle = Value::Int(v).to_particle();
    let ops = [Op::Write { bin: b"a", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    ns.operate(&OperateRequest { digest: d, set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops })
        .expect("put")
        .meta
}

/// A copy of `d` as another node would send it, last updated at `lut_ms`.
fn copy_image(ns: &Namespace, d: Digest) -> (RecordMeta, Vec<u8>) {
    let now = ns.current_image(&d).expect("read").expect("live");
    (now.meta, now.image)
}

#[test]
fn an_older_copy_of_a_deleted_record_is_not_stored_again() {
    let (ns, clock) = ns_with(NamespaceConfig::new("test"));
    let d = key(1);
    put(&ns, d, 1);
    let (meta, image) = copy_image(&ns, d);
    clock.advance_ms(10);
    ns.delete(&d, GenerationPolicy::None).expect("delete");
    let deleted = ns.delete_mark(&d).expect("a mark");
    assert!(deleted > meta.lut_ms);
    assert_eq!(ns.stats().delete_marks, 1);
    // The copy the delete removed, from the other side of a split: refused, whatever wins.
    let old = RecordCopy { digest: d, set: b"demo", meta, image: &image };
    for resolution in [ConflictResolution::LastUpdateTime, ConflictResolution::Generation] {
        assert!(!ns.apply_copy(&old, resolution).expect("apply"));
        assert!(ns.exists(&d).is_err(), "the deleted record came back");
    }
    // A copy written after the delete is a new record: stored.
    let newer = RecordCopy { meta: RecordMeta { lut_ms: deleted + 1, ..meta }, ..old };
    assert!(ns.apply_copy(&newer, ConflictResolution::LastUpdateTime).expect("apply"));
    assert!(ns.exists(&d).is_ok());
}

#[test]
fn a_record_created_again_within_the_millisecond_of_its_delete_is_newer_than_the_delete() {
    let (ns, _clock) = ns_with(NamespaceConfig::new("test"));
    let d = key(2);
    put(&ns, d, 1);
    ns.delete(&d, GenerationPolicy::None).expect("delete");
    let deleted = ns.delete_mark(&d).expect("a mark");
    // The clock has not moved: the delete took the record's time + 1.
    let again = put(&ns, d, 2);
    assert!(again.lut_ms > deleted, "created at {} after a delete at {deleted}", again.lut_ms);
}

#[test]
fn marks_from_other_nodes_and_masters_delete_older_copies_only() {
    let (ns, clock) = ns_with(NamespaceConfig::new("test"));
    let (older, newer, missing) = (key(3), key(4), key(5));
    let m_older = put(&ns, older, 1);
    clock.advance_ms(100);
    let m_newer = put(&ns, newer, 1);
    // Deletes made elsewhere between the two writes.
    let at = m_older.lut_ms + 50;
    assert!(ns.apply_delete_mark(&older, at).expect("mark"));
    assert!(!ns.apply_delete_mark(&newer, at).expect("mark"));
    assert!(ns.exists(&older).is_err());
    assert_eq!(ns.exists(&newer).expect("kept"), m_newer);
    // A master's delete of a record this node never had is remembered with the master's
    // time, so the copy that arrives later is not stored.
    assert!(!ns.apply_delete(&missing, at).expect("delete"));
    assert_eq!(ns.delete_mark(&missing), Some(at));
    let image = ns.current_image(&newer).expect("read").expect("live").image;
    let late =
        RecordCopy { digest: missing, set: b"demo", meta: RecordMeta { lut_ms: at - 1, ..m_older }, image: &image };
    assert!(!ns.apply_copy(&late, ConflictResolution::LastUpdateTime).expect("apply"));
    let pid = missing.partition_id();
    assert!(ns.delete_marks_of(pid).contains(&(missing, at)));
    // The partition moves away: its marks go with it.
    ns.drop_partition(pid);
    assert_eq!(ns.delete_mark(&missing), None);
}

#[test]
fn marks_are_reaped_after_the_eligible_age_and_can_be_turned_off() {
    let config = NamespaceConfig { tomb_raider_eligible_age_secs: 60, ..NamespaceConfig::new("test") };
    let (ns, clock) = ns_with(config);
    put(&ns, key(6), 1);
    ns.delete(&key(6), GenerationPolicy::None).expect("delete");
    ns.supervise();
    assert_eq!(ns.stats().delete_marks, 1, "kept while younger than the age");
    clock.advance_ms(61_000);
    ns.supervise();
    assert_eq!(ns.stats().delete_marks, 0);
    let (off, _) = ns_with(NamespaceConfig { delete_marks_max: 0, ..NamespaceConfig::new("test") });
    put(&off, key(7), 1);
    off.delete(&key(7), GenerationPolicy::None).expect("delete");
    assert_eq!((off.stats().delete_marks, off.delete_mark(&key(7))), (0, None));
    let too_many = NamespaceConfig { delete_marks_max: (1 << 28) + 1, ..NamespaceConfig::new("test") };
    assert!(too_many.validate().is_err());
}
