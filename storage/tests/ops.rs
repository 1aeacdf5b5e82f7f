//! Single-record operations, TTL, truncation, scans and statistics of a namespace, through
//! the crate's public API, with time moved by hand.

use std::sync::Arc;

use petrel_proto::wire::OpType;
use petrel_proto::{Digest, KeyRef as WireKey, ResultCode};
use petrel_storage::clock::{Clock, ManualClock};
use petrel_storage::namespace::ScanProgress;
use petrel_storage::ops::OpResult;
use petrel_storage::record::KeyRef;
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

const START_MS: u64 = 500_000_000_000;

fn ns_with(config: NamespaceConfig) -> (Namespace, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(START_MS));
    let ns = Namespace::new(config, Engine::Memory(MemoryEngine::new()), clock.clone()).expect("namespace");
    (ns, clock)
}

fn ns() -> (Namespace, Arc<ManualClock>) {
    ns_with(NamespaceConfig::new("test"))
}

fn key(i: i64) -> Digest {
    Digest::compute(b"demo", WireKey::Int(i))
}

fn put(ns: &Namespace, d: Digest, bins: &[(&str, Value)], policy: WritePolicy) -> Result<RecordMeta, StorageError> {
    let particles: Vec<Particle> = bins.iter().map(|(_, v)| v.to_particle()).collect();
    let ops: Vec<Op<'_>> = bins
        .iter()
        .zip(&particles)
        .map(|((name, _), p)| Op::Write {
            bin: name.as_bytes(),
            value: ParticleRef { particle: p.particle, bytes: &p.bytes },
        })
        .collect();
    ns.operate(&OperateRequest { digest: d, set: b"demo", key: None, policy, ops: &ops }).map(|o| o.meta)
}

fn get(ns: &Namespace, d: Digest) -> Result<Vec<(String, Value)>, StorageError> {
    let mut out = Vec::new();
    ns.read(&d, ReadSelect::All, |b| {
        out.push((String::from_utf8_lossy(b.name).into_owned(), Value::from_particle(b.value).expect("value")))
    })?;
    Ok(out)
}

fn operate(ns: &Namespace, d: Digest, ops: &[Op<'_>], respond_all: bool) -> Result<Vec<OpResult>, StorageError> {
    let policy = WritePolicy { respond_all_ops: respond_all, ..Default::default() };
    ns.operate(&OperateRequest { digest: d, set: b"demo", key: None, policy, ops }).map(|o| o.results)
}

fn int(i: i64) -> [u8; 8] {
    i.to_be_bytes()
}

#[test]
fn every_bin_type_round_trips() {
    let (ns, _) = ns();
    let bins = vec![
        ("i", Value::Int(7)),
        ("f", Value::Float(1.5)),
        ("s", Value::String("hi".into())),
        ("b", Value::Bytes(vec![0, 255])),
        ("l", Value::List(vec![0x93, 0x01, 0xa2, 0x03, 0x61, 0x91, 0x02])),
        ("m", Value::Map(vec![0x82, 0xa2, 0x03, 0x61, 0x02, 0xa2, 0x03, 0x7a, 0x01])),
        ("t", Value::Bool(true)),
        ("g", Value::GeoJson("{\"type\":\"Point\",\"coordinates\":[1,2]}".into())),
        // An empty sketch of 16 registers: header (flags, index bits, min-hash bits, cached
        // count), then 12 bytes of registers; other HLL bytes are refused.
        ("h", Value::Hll([&[0, 4, 0][..], &[0; 8], &[0; 12]].concat())),
        ("n", Value::Nil),
    ];
    let meta = put(&ns, key(1), &bins, WritePolicy::default()).expect("put");
    assert_eq!(meta.generation, 1);
    assert_eq!(meta.void_time, 0, "default TTL 0 never expires");
    let got = get(&ns, key(1)).expect("get");
    let want: Vec<_> = bins.iter().filter(|(_, v)| *v != Value::Nil).map(|(n, v)| (n.to_string(), v.clone())).collect();
    assert_eq!(got, want);
    assert_eq!(ns.objects(), 1);
}

#[test]
fn select_bins_and_exists() {
    let (ns, _) = ns();
    put(&ns, key(1), &[("a", Value::Int(1)), ("b", Value::Int(2)), ("c", Value::Int(3))], WritePolicy::default())
        .expect("put");
    let mut names = Vec::new();
    let wanted: [&[u8]; 3] = [b"a", b"c", b"zz"];
    ns.read(&key(1), ReadSelect::Bins(&wanted), |b| names.push(b.name.to_vec())).expect("read");
    assert_eq!(names, vec![b"a".to_vec(), b"c".to_vec()]);
    assert_eq!(ns.exists(&key(1)).expect("exists").generation, 1);
    assert_eq!(ns.exists(&key(2)), Err(StorageError::NotFound));
    assert_eq!(get(&ns, key(2)).unwrap_err().result_code(), ResultCode::NotFound);
}

#[test]
fn exists_actions_and_generation_checks() {
    let (ns, _) = ns();
    let one = [("a", Value::Int(1))];
    let only = |exists| WritePolicy { exists, ..Default::default() };
    assert_eq!(put(&ns, key(1), &one, only(ExistsAction::UpdateOnly)), Err(StorageError::NotFound));
    assert_eq!(put(&ns, key(1), &one, only(ExistsAction::ReplaceOnly)), Err(StorageError::NotFound));
    put(&ns, key(1), &one, only(ExistsAction::CreateOnly)).expect("create");
    assert_eq!(
        put(&ns, key(1), &one, only(ExistsAction::CreateOnly)).unwrap_err().result_code(),
        ResultCode::RecordExists
    );
    put(&ns, key(1), &[("b", Value::Int(2))], only(ExistsAction::UpdateOnly)).expect("update");
    assert_eq!(get(&ns, key(1)).expect("get").len(), 2, "update merges bins");
    put(&ns, key(1), &[("c", Value::Int(3))], only(ExistsAction::ReplaceOnly)).expect("replace");
    assert_eq!(get(&ns, key(1)).expect("get"), vec![("c".into(), Value::Int(3))], "replace drops old bins");
    put(&ns, key(1), &[("d", Value::Int(4))], only(ExistsAction::Replace)).expect("replace");
    assert_eq!(get(&ns, key(1)).expect("get"), vec![("d".into(), Value::Int(4))]);

    let gen = ns.exists(&key(1)).expect("exists").generation;
    assert_eq!(gen, 4);
    let eq = |g| WritePolicy { generation: GenerationPolicy::ExpectEqual(g), ..Default::default() };
    let gt = |g| WritePolicy { generation: GenerationPolicy::ExpectGreater(g), ..Default::default() };
    assert_eq!(put(&ns, key(1), &one, eq(99)), Err(StorageError::Generation { actual: 4 }));
    assert_eq!(put(&ns, key(1), &one, eq(4)).expect("gen eq").generation, 5);
    assert_eq!(put(&ns, key(1), &one, gt(5)).unwrap_err().result_code(), ResultCode::Generation);
    assert_eq!(put(&ns, key(1), &one, gt(6)).expect("gen gt").generation, 6);
    assert_eq!(ns.delete(&key(1), GenerationPolicy::ExpectEqual(1)).unwrap_err().result_code(), ResultCode::Generation);
    ns.delete(&key(1), GenerationPolicy::ExpectEqual(6)).expect("delete");
    assert_eq!(ns.delete(&key(1), GenerationPolicy::None), Err(StorageError::NotFound));
    assert_eq!(ns.objects(), 0);
}

#[test]
fn nil_bins_remove_and_last_bin_removes_record() {
    let (ns, _) = ns();
    put(&ns, key(1), &[("a", Value::Int(1)), ("b", Value::Int(2))], WritePolicy::default()).expect("put");
    put(&ns, key(1), &[("a", Value::Nil)], WritePolicy::default()).expect("remove bin a");
    assert_eq!(get(&ns, key(1)).expect("get"), vec![("b".into(), Value::Int(2))]);
    let meta = put(&ns, key(1), &[("b", Value::Nil)], WritePolicy::default()).expect("remove last bin");
    assert_eq!(meta, RecordMeta::default(), "a deleted record answers generation 0, void time 0");
    assert_eq!(get(&ns, key(1)), Err(StorageError::NotFound));
    assert_eq!(ns.objects(), 0);
    // Only bin deletes on a missing record create nothing.
    assert_eq!(put(&ns, key(2), &[("b", Value::Nil)], WritePolicy::default()), Err(StorageError::NotFound));
}

#[test]
fn add_append_prepend_touch_and_operate_reads() {
    let (ns, clock) = ns();
    put(
        &ns,
        key(1),
        &[("i", Value::Int(i64::MAX)), ("s", Value::String("hi".into())), ("f", Value::Float(1.0))],
        WritePolicy::default(),
    )
    .expect("put");
    let one = int(1);
    let bang = b"!";
    let ops = [
        Op::Add { bin: b"i", value: ParticleRef { particle: 1, bytes: &one } },
        Op::Append { bin: b"s", value: ParticleRef { particle: 3, bytes: bang } },
        Op::Prepend { bin: b"s", value: ParticleRef { particle: 3, bytes: b">" } },
        Op::Add { bin: b"f", value: ParticleRef { particle: 2, bytes: &0.5f64.to_be_bytes() } },
        Op::Read { bin: b"i" },
        Op::Read { bin: b"s" },
        Op::Read { bin: b"f" },
        Op::Read { bin: b"missing" },
    ];
    let results = operate(&ns, key(1), &ops, false).expect("operate");
    assert_eq!(results.len(), 3, "missing bins are omitted without respond-all-ops");
    assert_eq!(results[0].value.as_ref().map(|p| p.bytes.clone()), Some(int(i64::MIN).to_vec()), "add wraps");
    assert_eq!(results[1].value.as_ref().map(|p| p.bytes.clone()), Some(b">hi!".to_vec()));
    assert_eq!(results[2].value.as_ref().map(|p| p.bytes.clone()), Some(1.5f64.to_be_bytes().to_vec()));

    let all = operate(&ns, key(1), &ops, true).expect("operate respond all");
    assert_eq!(all.len(), ops.len());
    assert!(all[0].value.is_none() && all[0].op_type == OpType::Incr);
    assert!(all[7].value.is_none() && all[7].bin == b"missing");

    // Type errors leave the record untouched.
    let before = get(&ns, key(1)).expect("get");
    let gen = ns.exists(&key(1)).expect("exists").generation;
    let bad = [Op::Add { bin: b"s", value: ParticleRef { particle: 1, bytes: &one } }];
    assert_eq!(operate(&ns, key(1), &bad, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    let bad = [Op::Append { bin: b"i", value: ParticleRef { particle: 3, bytes: bang } }];
    assert_eq!(operate(&ns, key(1), &bad, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    let bad = [Op::Append { bin: b"s", value: ParticleRef { particle: 1, bytes: &one } }];
    assert_eq!(operate(&ns, key(1), &bad, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    assert_eq!(get(&ns, key(1)).expect("get"), before);
    assert_eq!(ns.exists(&key(1)).expect("exists").generation, gen);

    // Touch bumps the generation and resets the expiry.
    let touch = [Op::Touch];
    let policy = WritePolicy { ttl: Ttl::Secs(100), ..Default::default() };
    let out =
        ns.operate(&OperateRequest { digest: key(1), set: b"demo", key: None, policy, ops: &touch }).expect("touch");
    assert_eq!(out.meta.generation, gen + 1);
    assert_eq!(out.meta.void_time, clock.now_secs() + 100);
    assert!(out.results.is_empty());
    let missing = ns.operate(&OperateRequest { digest: key(9), set: b"demo", key: None, policy, ops: &touch });
    assert_eq!(missing.unwrap_err(), StorageError::NotFound);

    // Delete inside operate, then a write: the record is recreated.
    let d = [Op::DeleteRecord, Op::Write { bin: b"z", value: ParticleRef { particle: 1, bytes: &one } }];
    operate(&ns, key(1), &d, false).expect("delete+write");
    assert_eq!(get(&ns, key(1)).expect("get"), vec![("z".into(), Value::Int(1))]);
    let d = [Op::DeleteRecord];
    assert_eq!(
        ns.operate(&OperateRequest {
            digest: key(1),
            set: b"demo",
            key: None,
            policy: WritePolicy::default(),
            ops: &d
        })
        .expect("delete")
        .meta,
        RecordMeta::default()
    );
    assert_eq!(ns.objects(), 0);
}

#[test]
fn add_append_prepend_onto_a_missing_bin_store_the_operand() {
    let (ns, _) = ns();
    let four = int(4);
    let ops = [
        Op::Prepend { bin: b"p", value: ParticleRef { particle: 1, bytes: &four } },
        Op::Add { bin: b"a", value: ParticleRef { particle: 3, bytes: b"text" } },
        Op::Append { bin: b"s", value: ParticleRef { particle: 3, bytes: b"x" } },
    ];
    operate(&ns, key(1), &ops, false).expect("new record");
    let mut bins = get(&ns, key(1)).expect("get");
    bins.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        bins,
        vec![
            ("a".into(), Value::String("text".into())),
            ("p".into(), Value::Int(4)),
            ("s".into(), Value::String("x".into()))
        ]
    );
    // Onto a bin of another type the ops are still refused, and a nil operand is a bad request.
    let bad = [Op::Append { bin: b"p", value: ParticleRef { particle: 3, bytes: b"x" } }];
    assert_eq!(operate(&ns, key(1), &bad, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    let nil = [Op::Prepend { bin: b"p", value: ParticleRef { particle: 0, bytes: &[] } }];
    assert_eq!(operate(&ns, key(1), &nil, false).unwrap_err().result_code(), ResultCode::Parameter);
}

#[test]
fn bad_input_gets_typed_errors() {
    let (ns, _) = ns_with(NamespaceConfig { max_record_size_bytes: 1024, ..NamespaceConfig::new("test") });
    let long_bin = "x".repeat(16);
    assert_eq!(
        put(&ns, key(1), &[(long_bin.as_str(), Value::Int(1))], WritePolicy::default()).unwrap_err().result_code(),
        ResultCode::BinName
    );
    assert_eq!(
        put(&ns, key(1), &[("", Value::Int(1))], WritePolicy::default()).unwrap_err().result_code(),
        ResultCode::BinName
    );
    let long_set = vec![b's'; 64];
    let one = int(1);
    let ops = [Op::Write { bin: b"a", value: ParticleRef { particle: 1, bytes: &one } }];
    let r = ns.operate(&OperateRequest {
        digest: key(1),
        set: &long_set,
        key: None,
        policy: WritePolicy::default(),
        ops: &ops,
    });
    assert_eq!(r.unwrap_err().result_code(), ResultCode::Parameter);
    let big = [("a", Value::Bytes(vec![0; 2000]))];
    assert_eq!(put(&ns, key(1), &big, WritePolicy::default()).unwrap_err().result_code(), ResultCode::RecordTooBig);
    let bad_int = [Op::Write { bin: b"a", value: ParticleRef { particle: 1, bytes: &[0; 9] } }];
    assert_eq!(operate(&ns, key(1), &bad_int, false).unwrap_err().result_code(), ResultCode::Parameter);
    let bad_particle = [Op::Write { bin: b"a", value: ParticleRef { particle: 99, bytes: &[0] } }];
    assert_eq!(operate(&ns, key(1), &bad_particle, false).unwrap_err().result_code(), ResultCode::Parameter);
    assert_eq!(Ttl::from_wire(400_000_000).unwrap_err().result_code(), ResultCode::Parameter);
    assert_eq!(ns.objects(), 0, "nothing was created by failed writes");
}

#[test]
fn stored_key_is_kept_and_checked() {
    let (ns, _) = ns();
    let one = int(1);
    let ops = [Op::Write { bin: b"a", value: ParticleRef { particle: 1, bytes: &one } }];
    let k = KeyRef { particle: 1, bytes: &int(42) };
    ns.operate(&OperateRequest {
        digest: key(1),
        set: b"demo",
        key: Some(k),
        policy: WritePolicy::default(),
        ops: &ops,
    })
    .expect("put with key");
    ns.operate(&OperateRequest { digest: key(1), set: b"demo", key: None, policy: WritePolicy::default(), ops: &ops })
        .expect("put without key");
    let other = KeyRef { particle: 1, bytes: &int(43) };
    let r = ns.operate(&OperateRequest {
        digest: key(1),
        set: b"demo",
        key: Some(other),
        policy: WritePolicy::default(),
        ops: &ops,
    });
    assert_eq!(r.unwrap_err().result_code(), ResultCode::KeyMismatch);
    let mut seen = None;
    ns.scan_partition(key(1).partition_id(), None, None, 10, |r| {
        seen = r.image.key.map(|k| k.bytes.to_vec());
        true
    })
    .expect("scan");
    assert_eq!(seen, Some(int(42).to_vec()));
}

#[test]
fn ttl_expiry_is_immediate_and_reclaimed() {
    let (ns, clock) = ns_with(NamespaceConfig { default_ttl_secs: 50, ..NamespaceConfig::new("test") });
    let now = clock.now_secs();
    let ttl = |t| WritePolicy { ttl: t, ..Default::default() };
    let a = [("a", Value::Int(1))];
    assert_eq!(put(&ns, key(1), &a, ttl(Ttl::Secs(1))).expect("put").void_time, now + 1);
    assert_eq!(put(&ns, key(2), &a, ttl(Ttl::NamespaceDefault)).expect("put").void_time, now + 50);
    assert_eq!(put(&ns, key(3), &a, ttl(Ttl::Never)).expect("put").void_time, 0);
    assert_eq!(
        put(&ns, key(4), &a, ttl(Ttl::KeepExisting)).expect("put").void_time,
        now + 50,
        "keep on create = default"
    );
    assert_eq!(put(&ns, key(4), &a, ttl(Ttl::Secs(1000))).expect("put").void_time, now + 1000);
    assert_eq!(put(&ns, key(4), &a, ttl(Ttl::KeepExisting)).expect("put").void_time, now + 1000, "keep");

    clock.advance_ms(1000);
    assert!(get(&ns, key(1)).is_ok(), "a record lives through its last second");
    clock.advance_ms(1000);
    assert_eq!(get(&ns, key(1)), Err(StorageError::NotFound), "expired records are never returned");
    // A write over an expired record is a fresh create.
    assert_eq!(put(&ns, key(1), &a, ttl(Ttl::Secs(1))).expect("recreate").generation, 1);
    clock.advance_ms(100_000);
    assert_eq!(ns.objects(), 4, "nothing reclaimed yet");
    assert_eq!(ns.reclaim_dead(), 2);
    assert_eq!(ns.objects(), 2);
    let stats = ns.stats();
    assert_eq!(stats.expired_objects, 3);
    assert!(get(&ns, key(3)).is_ok() && get(&ns, key(4)).is_ok());
}

#[test]
fn truncate_namespace_and_set_with_cutoff() {
    let (ns, clock) = ns();
    let a = [("a", Value::Int(1))];
    for i in 0..10 {
        put(&ns, key(i), &a, WritePolicy::default()).expect("put");
    }
    let one = int(1);
    let ops = [Op::Write { bin: b"a", value: ParticleRef { particle: 1, bytes: &one } }];
    let other = Digest::compute(b"other", WireKey::Int(1));
    ns.operate(&OperateRequest { digest: other, set: b"other", key: None, policy: WritePolicy::default(), ops: &ops })
        .expect("put other");
    let cutoff = clock.now_ms();
    clock.advance_ms(10);
    put(&ns, key(100), &a, WritePolicy::default()).expect("later put");
    ns.truncate(Some(b"demo"), Some(cutoff)).expect("truncate set");
    assert_eq!(get(&ns, key(0)), Err(StorageError::NotFound));
    assert!(get(&ns, key(100)).is_ok(), "written after the cutoff");
    assert!(ns.exists(&other).is_ok(), "other set untouched");
    assert_eq!(ns.truncate(Some(b"nosuchset"), None).unwrap_err().result_code(), ResultCode::Parameter);
    // key(0) was already reclaimed by the read that found it truncated.
    assert_eq!(ns.reclaim_dead(), 9);
    let stats = ns.stats();
    assert_eq!(stats.truncated_objects, 10);
    assert_eq!(stats.sets.iter().find(|s| s.name == "demo").map(|s| s.objects), Some(1));
    clock.advance_ms(10);
    ns.truncate(None, None).expect("truncate namespace");
    assert_eq!(ns.exists(&other), Err(StorageError::NotFound));
    ns.reclaim_dead();
    assert_eq!(ns.objects(), 0);
    // Within the same millisecond as the truncate.
    put(&ns, key(1), &a, WritePolicy::default()).expect("writes after truncate live");
    assert!(get(&ns, key(1)).is_ok());
}

/// Writes `count` records whose keys fall in partition `target`; their digests, as found.
fn put_in_partition(ns: &Namespace, target: u16, count: usize) -> Vec<Digest> {
    let mut digests = Vec::new();
    let mut i = 0;
    while digests.len() < count && i < 5_000_000 {
        let d = key(i);
        if d.partition_id() == target {
            put(ns, d, &[("a", Value::Int(i))], WritePolicy::default()).expect("put");
            digests.push(d);
        }
        i += 1;
    }
    assert_eq!(digests.len(), count);
    digests
}

#[test]
fn scan_walks_partitions_in_digest_order_with_cursor_and_limit() {
    let (ns, _) = ns_with(NamespaceConfig { sprigs_per_partition: 4, ..NamespaceConfig::new("test") });
    let target = key(0).partition_id();
    let mut digests = put_in_partition(&ns, target, 300);
    digests.sort();
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let progress: ScanProgress = ns
            .scan_partition(target, after, Some(ns.set_id(b"demo").expect("set")), 70, |r| {
                seen.push(r.digest);
                true
            })
            .expect("scan");
        after = progress.last;
        if progress.complete {
            break;
        }
        assert_eq!(progress.returned, 70);
    }
    assert_eq!(seen, digests);
    let mut n = 0;
    let stopped = ns
        .scan_partition(target, None, None, 1000, |_| {
            n += 1;
            n < 5
        })
        .expect("scan");
    assert_eq!(stopped.returned, 5);
    assert!(!stopped.complete);
    assert_eq!(stopped.last, Some(digests[4]));
    let none = ns.scan_partition(target, None, Some(4000), 1000, |_| true).expect("scan");
    assert_eq!(none.returned, 0);
}

#[test]
fn stamps_walk_a_digest_range_and_stale_copies_go_only_unchanged() {
    let (ns, _) = ns_with(NamespaceConfig { sprigs_per_partition: 4, ..NamespaceConfig::new("test") });
    let target = key(0).partition_id();
    let mut digests = put_in_partition(&ns, target, 200);
    digests.sort();
    // Whole partition, 70 at a time, across sprigs.
    let (mut seen, mut after) = (Vec::new(), None);
    loop {
        let (stamps, progress) = ns.partition_stamps(target, after, None, 70);
        seen.extend(stamps.iter().map(|(d, _)| *d));
        after = progress.last;
        if progress.complete {
            break;
        }
        assert_eq!(stamps.len(), 70);
    }
    assert_eq!(seen, digests);
    // A bounded range: (d[9], d[119]] and nothing past it.
    let (stamps, progress) = ns.partition_stamps(target, Some(digests[9]), Some(digests[119]), 1000);
    assert!(progress.complete);
    assert_eq!(stamps.iter().map(|(d, _)| *d).collect::<Vec<_>>(), digests[10..120].to_vec());
    let (d, meta) = stamps[0];
    assert_eq!(ns.exists(&d).expect("exists"), meta);
    // Deleted only with the metadata it has.
    let other = RecordMeta { generation: meta.generation + 1, ..meta };
    assert!(!ns.delete_if_unchanged(&d, other).expect("delete"));
    assert!(ns.exists(&d).is_ok());
    assert!(ns.delete_if_unchanged(&d, meta).expect("delete"));
    assert!(ns.exists(&d).is_err());
    assert!(!ns.delete_if_unchanged(&d, meta).expect("delete"), "gone already");
    assert_eq!(ns.stats().objects, 199);
}

#[test]
fn stop_writes_and_eviction_follow_memory_marks() {
    let config = NamespaceConfig {
        memory_size_bytes: 64 << 20,
        evict_used_pct: 50,
        stop_writes_used_pct: 80,
        sprigs_per_partition: 1,
        ..NamespaceConfig::new("test")
    };
    let (ns, _) = ns_with(config);
    assert!(ns.memory_used_bytes() < (64 << 20) / 100 * 50, "an empty namespace starts below the marks");
    let value = vec![7u8; 1000];
    let mut written = 0i64;
    // Fill until stop-writes refuses; half the records never expire.
    loop {
        let ttl = if written % 2 == 0 { Ttl::Never } else { Ttl::Secs(1000 + written as u32) };
        match put(&ns, key(written), &[("v", Value::Bytes(value.clone()))], WritePolicy { ttl, ..Default::default() }) {
            Ok(_) => written += 1,
            Err(e) => {
                assert_eq!(e.result_code(), ResultCode::OutOfSpace);
                break;
            }
        }
        assert!(written < 100_000, "stop-writes never engaged");
    }
    assert!(ns.memory_used_bytes() >= (64 << 20) / 100 * 80);
    assert!(get(&ns, key(0)).is_ok(), "reads go on during stop-writes");
    ns.delete(&key(0), GenerationPolicy::None).expect("deletes go on during stop-writes");
    ns.supervise();
    let stats = ns.stats();
    assert!(stats.evicted_objects > 0);
    assert!(ns.memory_used_bytes() <= (64 << 20) / 100 * 50, "evicted below the mark");
    assert!(!stats.stop_writes);
    assert!(get(&ns, key(2)).is_ok(), "records that never expire are not evicted");
    // The records evicted are those nearest to expiry.
    assert_eq!(get(&ns, key(1)), Err(StorageError::NotFound));
    // The expiring record written last expires latest: eviction stops before it.
    let latest_expiring = if (written - 1) % 2 == 1 { written - 1 } else { written - 2 };
    assert!(get(&ns, key(latest_expiring)).is_ok(), "the record farthest from expiry survives");
    put(&ns, key(0), &[("v", Value::Int(1))], WritePolicy::default()).expect("writes resume");
}

#[test]
fn stats_count_objects_memory_and_sets() {
    let (ns, _) = ns();
    let before = ns.stats();
    for i in 0..1000 {
        put(&ns, key(i), &[("a", Value::Int(i))], WritePolicy::default()).expect("put");
    }
    let s = ns.stats();
    assert_eq!(s.objects, 1000);
    assert!(s.index_bytes > before.index_bytes);
    assert!(s.data_bytes > 1000 * 8);
    assert_eq!(s.sets.len(), 1);
    assert_eq!(s.sets[0].objects, 1000);
    for i in 0..1000 {
        ns.delete(&key(i), GenerationPolicy::None).expect("delete");
    }
    let s = ns.stats();
    assert_eq!(s.objects, 0);
    assert_eq!(s.data_bytes, 0);
    assert_eq!(s.index_bytes, before.index_bytes, "emptied sprigs give their arenas back");
}

#[test]
fn concurrent_adds_on_overlapping_keys_are_exact() {
    let ns = Arc::new(
        Namespace::in_memory(NamespaceConfig { sprigs_per_partition: 1, ..NamespaceConfig::new("test") }).expect("ns"),
    );
    const THREADS: i64 = 4;
    const ROUNDS: i64 = 5_000;
    const KEYS: i64 = 8;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let ns = Arc::clone(&ns);
            std::thread::spawn(move || {
                let one = 1i64.to_be_bytes();
                for r in 0..ROUNDS {
                    let k = (r + t) % KEYS;
                    let ops = [
                        Op::Add { bin: b"n", value: ParticleRef { particle: 1, bytes: &one } },
                        Op::Append { bin: b"s", value: ParticleRef { particle: 3, bytes: b"x" } },
                        Op::Read { bin: b"n" },
                    ];
                    ns.operate(&OperateRequest {
                        digest: key(k),
                        set: b"",
                        key: None,
                        policy: WritePolicy::default(),
                        ops: &ops,
                    })
                    .expect("operate");
                }
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    for h in handles {
        assert!(std::time::Instant::now() < deadline, "threads did not finish in time");
        h.join().expect("thread");
    }
    let mut total = 0;
    let mut total_len = 0;
    for k in 0..KEYS {
        for (name, v) in get(&ns, key(k)).expect("get") {
            match (name.as_str(), v) {
                ("n", Value::Int(n)) => total += n,
                ("s", Value::String(s)) => total_len += s.len() as i64,
                other => panic!("unexpected bin {other:?}"),
            }
        }
        assert_eq!(ns.exists(&key(k)).expect("exists").generation as i64, THREADS * ROUNDS / KEYS);
    }
    assert_eq!(total, THREADS * ROUNDS);
    assert_eq!(total_len, THREADS * ROUNDS);
}

#[test]
fn list_and_map_operations_match_the_golden_exchange() {
    let (ns, _) = ns();
    let list = Value::List(vec![0x93, 0x01, 0xa2, 0x03, 0x61, 0x91, 0x02]);
    let map = Value::Map(vec![0x82, 0xa2, 0x03, 0x61, 0x02, 0xa2, 0x03, 0x7a, 0x01]);
    put(&ns, key(1), &[("l", list), ("m", map)], WritePolicy::default()).expect("put");
    // List append 9, list size, map put q=5, map get by key q (as the Python client sends them).
    let ops = [
        Op::CdtModify { bin: b"l", payload: &[0x92, 0x01, 0x09] },
        Op::CdtRead { bin: b"l", payload: &[0x91, 0x10] },
        Op::CdtModify { bin: b"m", payload: &[0x94, 0x43, 0xa2, 0x03, 0x71, 0x05, 0x00] },
        Op::CdtRead { bin: b"m", payload: &[0x93, 0x61, 0x07, 0xa2, 0x03, 0x71] },
    ];
    let results = operate(&ns, key(1), &ops, true).expect("operate");
    let ints: Vec<i64> = results
        .iter()
        .map(|r| {
            let p = r.value.as_ref().expect("value");
            assert_eq!(p.particle, 1);
            i64::from_be_bytes(p.bytes.clone().try_into().expect("8 bytes"))
        })
        .collect();
    assert_eq!(ints, vec![4, 4, 3, 5]);
    let bins = get(&ns, key(1)).expect("get");
    assert_eq!(bins[0].1, Value::List(vec![0x94, 0x01, 0xa2, 0x03, 0x61, 0x91, 0x02, 0x09]));
    assert_eq!(
        bins[1].1,
        Value::Map(vec![0x83, 0xa2, 0x03, 0x61, 0x02, 0xa2, 0x03, 0x71, 0x05, 0xa2, 0x03, 0x7a, 0x01])
    );

    // Get by index 10 of a 4-element list: a typed error, and nothing changes.
    let out_of_range = [Op::CdtRead { bin: b"l", payload: &[0x93, 0x13, 0x07, 0x0a] }];
    assert_eq!(operate(&ns, key(1), &out_of_range, false).unwrap_err().result_code(), ResultCode::OpNotApplicable);
    // A list operation on a map bin.
    let wrong_type = [Op::CdtModify { bin: b"m", payload: &[0x92, 0x01, 0x09] }];
    assert_eq!(operate(&ns, key(1), &wrong_type, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    // A malformed payload.
    let malformed = [Op::CdtModify { bin: b"l", payload: &[0x92, 0x01] }];
    assert_eq!(operate(&ns, key(1), &malformed, false).unwrap_err().result_code(), ResultCode::Parameter);
    assert_eq!(get(&ns, key(1)).expect("get"), bins);
}

#[test]
fn bit_and_hll_operations_are_atomic_and_answer_like_cdt_ops() {
    let (ns, _) = ns();
    put(&ns, key(1), &[("b", Value::Bytes(vec![0x0f, 0xf0]))], WritePolicy::default()).expect("put");
    // Bit not of the whole blob, bit count, HLL add of "a" and "b" (8 index bits), HLL count:
    // payloads as the official clients pack them.
    let ops = [
        Op::BitModify { bin: b"b", payload: &[0x94, 0x07, 0x00, 0x10, 0x00] },
        Op::BitRead { bin: b"b", payload: &[0x93, 0x33, 0x00, 0x04] },
        Op::HllModify { bin: b"h", payload: &[0x95, 0x01, 0x92, 0xa2, 0x03, 0x61, 0xa2, 0x03, 0x62, 0x08, 0xff, 0x00] },
        Op::HllRead { bin: b"h", payload: &[0x91, 0x32] },
    ];
    let results = operate(&ns, key(1), &ops, true).expect("operate");
    let values: Vec<Option<Particle>> = results.into_iter().map(|r| r.value).collect();
    let int = |v: i64| Some(Particle { particle: 1, bytes: v.to_be_bytes().to_vec() });
    // The modify answers nil when every op is answered; HLL add answers registers changed.
    assert_eq!(values, vec![None, int(4), int(2), int(2)]);
    let bins = get(&ns, key(1)).expect("get");
    assert_eq!(bins[0].1, Value::Bytes(vec![0xf0, 0x0f]));
    let Value::Hll(h) = &bins[1].1 else { panic!("an HLL bin") };
    assert_eq!(&h[..3], &[0, 8, 0]);

    // A later op's failure leaves nothing of the earlier ones: not, then set past the end.
    let failing = [
        Op::BitModify { bin: b"b", payload: &[0x94, 0x07, 0x00, 0x10, 0x00] },
        Op::BitModify { bin: b"b", payload: &[0x94, 0x03, 0x10, 0x08, 0xa2, 0x04, 0xff] },
    ];
    assert_eq!(operate(&ns, key(1), &failing, false).unwrap_err().result_code(), ResultCode::OpNotApplicable);
    // An HLL op on the bytes bin, and a bit op on the HLL bin.
    let on_bytes = [Op::HllRead { bin: b"b", payload: &[0x91, 0x32] }];
    assert_eq!(operate(&ns, key(1), &on_bytes, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    let on_hll = [Op::BitRead { bin: b"h", payload: &[0x93, 0x33, 0x00, 0x04] }];
    assert_eq!(operate(&ns, key(1), &on_hll, false).unwrap_err().result_code(), ResultCode::IncompatibleType);
    assert_eq!(get(&ns, key(1)).expect("get"), bins);
}

#[test]
fn copies_from_other_nodes_resolve_conflicts_and_partitions_drop() {
    use petrel_storage::namespace::{ConflictResolution, RecordCopy};
    let (src, _) = ns();
    let (dst, _) = ns();
    put(&src, key(1), &[("a", Value::Int(1))], WritePolicy::default()).expect("put");
    put(&src, key(1), &[("a", Value::Int(2))], WritePolicy::default()).expect("put");
    let pid = key(1).partition_id();
    // Take the copy the way migration does: metadata and image from a scan of the partition.
    let mut taken = None;
    src.scan_partition(pid, None, None, 10, |r| {
        let mut bytes = Vec::new();
        let bins: Vec<_> = r.image.bins().map(|b| b.expect("bin")).collect();
        petrel_storage::record::encode(
            &mut bytes,
            None,
            bins.iter().map(|b| (b.name, b.value.particle, b.value.bytes)),
        )
        .expect("encode");
        taken = Some((r.meta, bytes));
        true
    })
    .expect("scan");
    let (meta, image) = taken.expect("the record");
    assert_eq!(meta.generation, 2);
    let copy = RecordCopy { digest: key(1), set: b"demo", meta, image: &image };
    assert!(dst.apply_copy(&copy, ConflictResolution::Generation).expect("apply"));
    assert_eq!(get(&dst, key(1)).expect("get"), vec![("a".into(), Value::Int(2))]);
    assert_eq!(dst.exists(&key(1)).expect("exists"), meta, "metadata travels with the copy");
    assert!(!dst.apply_copy(&copy, ConflictResolution::Generation).expect("apply"), "the same copy again does not win");
    // A local copy with a higher generation beats an incoming older one.
    for _ in 0..3 {
        put(&dst, key(1), &[("a", Value::Int(9))], WritePolicy::default()).expect("put");
    }
    assert!(!dst.apply_copy(&copy, ConflictResolution::Generation).expect("apply"));
    assert_eq!(get(&dst, key(1)).expect("get"), vec![("a".into(), Value::Int(9))]);
    // Under last-update-time resolution, a later copy wins whatever its generation.
    let late = RecordCopy { meta: RecordMeta { lut_ms: u64::MAX / 2, ..meta }, ..copy };
    assert!(dst.apply_copy(&late, ConflictResolution::LastUpdateTime).expect("apply"));
    // A malformed image is refused.
    let bad = RecordCopy { image: &[1, 2, 3], ..copy };
    assert!(dst.apply_copy(&bad, ConflictResolution::Generation).is_err());
    // Dropping the partition gives everything back.
    let before = dst.stats();
    assert_eq!(dst.drop_partition(pid), 1);
    let after = dst.stats();
    assert_eq!(after.objects, 0);
    assert_eq!(after.data_bytes, 0);
    assert!(after.index_bytes < before.index_bytes);
    assert_eq!(after.sets.iter().map(|s| s.objects).sum::<u64>(), 0);
    assert!(!dst.apply_delete(&key(1), 0).expect("delete"));
}
