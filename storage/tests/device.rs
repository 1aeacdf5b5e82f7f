//! A namespace on a device store, through the crate's public API on real files: records come
//! back after a restart (cold restart), deletes stay deleted (tombstones), expired records do
//! not return, defragmentation frees sparse blocks without losing or resurrecting anything,
//! all checked against a `BTreeMap` model over random operations and restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use petrel_proto::{Digest, KeyRef as WireKey};
use petrel_storage::clock::{Clock, ManualClock};
use petrel_storage::namespace::RestoreSummary;
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

const START_MS: u64 = 500_000_000_000;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("petrel-ns-device-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("dir");
        Dir(p)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn device(dir: &Dir, files: usize) -> DeviceConfig {
    let mut c = DeviceConfig::one_file(dir.0.join("f0.dat"), 4 << 20);
    c.files =
        (0..files).map(|i| DeviceFileConfig { path: dir.0.join(format!("f{i}.dat")), size_bytes: 4 << 20 }).collect();
    c.write_block_bytes = 128 << 10;
    c
}

fn open(dir: &Dir, files: usize, clock: &Arc<ManualClock>) -> (Namespace, RestoreSummary) {
    let clock: Arc<dyn Clock> = clock.clone();
    Namespace::on_device_with_clock(NamespaceConfig::new("test"), device(dir, files), clock).expect("open")
}

fn key(i: u64) -> Digest {
    Digest::compute(b"demo", WireKey::Int(i as i64))
}

fn put(ns: &Namespace, d: Digest, value: &[u8], ttl: Ttl) -> Result<RecordMeta, StorageError> {
    let p = Value::Bytes(value.to_vec()).to_particle();
    let p: &Particle = &p;
    let ops = [Op::Write { bin: b"v", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    let policy = WritePolicy { ttl, ..WritePolicy::default() };
    ns.operate(&OperateRequest { digest: d, set: b"demo", key: None, policy, ops: &ops }).map(|o| o.meta)
}

fn get(ns: &Namespace, d: Digest) -> Option<(Vec<u8>, u16)> {
    let mut v = None;
    let meta = ns.read(&d, ReadSelect::All, |b| v = Value::from_particle(b.value).ok()).ok()?;
    match v {
        Some(Value::Bytes(b)) => Some((b, meta.generation)),
        other => panic!("bin v is {other:?}"),
    }
}

#[test]
fn records_updates_deletes_and_expiry_survive_a_restart() {
    let dir = Dir::new("restart");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let (ns, summary) = open(&dir, 2, &clock);
        assert_eq!(summary.records, 0);
        for i in 0..500 {
            put(&ns, key(i), &vec![i as u8; 100 + i as usize], Ttl::NamespaceDefault).expect("put");
        }
        for i in 0..100 {
            put(&ns, key(i), b"updated", Ttl::NamespaceDefault).expect("update");
        }
        for i in 100..150 {
            ns.delete(&key(i), GenerationPolicy::None).expect("delete");
        }
        put(&ns, key(1000), b"short-lived", Ttl::Secs(10)).expect("ttl");
        assert_eq!(ns.stats().objects, 451);
    }
    clock.advance_ms(20_000);
    let (ns, summary) = open(&dir, 2, &clock);
    assert_eq!(summary.records, 450, "{summary:?}");
    assert_eq!(summary.tombstones, 50);
    assert_eq!(summary.scan.damaged, 0);
    for i in 0..100 {
        assert_eq!(get(&ns, key(i)), Some((b"updated".to_vec(), 2)), "record {i}");
    }
    for i in 100..150 {
        assert_eq!(get(&ns, key(i)), None, "deleted record {i} came back");
        // Remembered, so that a copy another node still holds is not taken again.
        assert!(ns.delete_mark(&key(i)).is_some(), "record {i}'s delete forgotten");
    }
    for i in 150..500 {
        assert_eq!(get(&ns, key(i)), Some((vec![i as u8; 100 + i as usize], 1)), "record {i}");
    }
    assert_eq!(get(&ns, key(1000)), None, "an expired record came back");
    // Writes go on after the restart, and survive the next one.
    put(&ns, key(100), b"again", Ttl::NamespaceDefault).expect("re-create");
    drop(ns);
    let (ns, _) = open(&dir, 2, &clock);
    assert_eq!(get(&ns, key(100)), Some((b"again".to_vec(), 1)));
}

#[test]
fn defragmentation_frees_sparse_blocks_and_keeps_every_current_record_and_delete() {
    let dir = Dir::new("defrag");
    let clock = Arc::new(ManualClock::new(START_MS));
    let (ns, _) = open(&dir, 1, &clock);
    let value = |i: u64, round: u64| vec![(i + round) as u8; 900];
    // Fill, then overwrite most records twice: the early blocks end up mostly dead.
    for round in 0..3 {
        for i in 0..600 {
            if round == 0 || i % 10 != 0 {
                put(&ns, key(i), &value(i, round), Ttl::NamespaceDefault).expect("put");
            }
        }
    }
    for i in (5..600).step_by(10) {
        ns.delete(&key(i), GenerationPolicy::None).expect("delete");
    }
    let device = ns.device().expect("device");
    let before = device.available_pct();
    let queued = device.defrag_queue_len();
    assert!(queued > 0, "no block waits for defragmentation");
    assert_eq!(device.write_queue_len(), 0, "no write in flight");
    let mut freed = 0;
    for _ in 0..10 {
        freed += ns.defrag(64).expect("defrag");
    }
    assert!(freed > 0, "nothing freed");
    assert!(device.defrag_queue_len() < queued, "defrag_q {} after, {queued} before", device.defrag_queue_len());
    assert!(device.available_pct() > before, "{before}% before, {}% after", device.available_pct());
    assert!(device.counters.defrag_records_moved.load(std::sync::atomic::Ordering::Relaxed) > 0);
    let expect = |i: u64| -> Option<Vec<u8>> {
        match i {
            i if i % 10 == 5 => None,
            i if i % 10 == 0 => Some(value(i, 0)),
            i => Some(value(i, 2)),
        }
    };
    for i in 0..600 {
        assert_eq!(get(&ns, key(i)).map(|v| v.0), expect(i), "record {i} after defragmentation");
    }
    drop(ns);
    let (ns, summary) = open(&dir, 1, &clock);
    assert_eq!(summary.scan.damaged, 0);
    for i in 0..600 {
        assert_eq!(get(&ns, key(i)).map(|v| v.0), expect(i), "record {i} after defragmentation and a restart");
    }
}

#[test]
fn random_operations_and_restarts_match_a_model() {
    let dir = Dir::new("model");
    let clock = Arc::new(ManualClock::new(START_MS));
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for restart in 0..6 {
        let (ns, summary) = open(&dir, 2, &clock);
        assert_eq!(summary.records as usize, model.len(), "after restart {restart}");
        assert_eq!(summary.fast, restart % 2 == 1, "restart {restart} fast or cold as its shutdown");
        for (k, v) in &model {
            assert_eq!(get(&ns, key(*k)).map(|g| g.0).as_ref(), Some(v), "key {k} after restart {restart}");
        }
        for _ in 0..1500 {
            let k = next() % 300;
            match next() % 10 {
                0..=5 => {
                    let v = vec![(next() % 251) as u8; (next() % 3000) as usize + 1];
                    put(&ns, key(k), &v, Ttl::NamespaceDefault).expect("put");
                    model.insert(k, v);
                }
                6..=7 => {
                    let r = ns.delete(&key(k), GenerationPolicy::None);
                    assert_eq!(r.is_ok(), model.remove(&k).is_some(), "delete {k}");
                }
                _ => {
                    ns.defrag(4).expect("defrag");
                }
            }
        }
        for k in 0..300 {
            assert_eq!(get(&ns, key(k)).map(|g| g.0), model.get(&k).cloned(), "key {k} before restart {restart}");
        }
        // Every other restart is a fast one, from the state saved at a clean shutdown.
        if restart % 2 == 0 {
            ns.save_snapshot().expect("state saved");
        }
    }
}

#[test]
fn a_fast_restart_loads_the_saved_state_once_and_matches_a_cold_one() {
    let dir = Dir::new("fast");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let (ns, _) = open(&dir, 2, &clock);
        for i in 0..400 {
            put(&ns, key(i), &vec![i as u8; 200 + i as usize], Ttl::NamespaceDefault).expect("put");
        }
        for i in 0..50 {
            ns.delete(&key(i), GenerationPolicy::None).expect("delete");
        }
        put(&ns, key(1000), b"short-lived", Ttl::Secs(10)).expect("ttl");
        ns.truncate(Some(b"demo"), Some(START_MS - 1)).expect("truncate");
        let saved = ns.save_snapshot().expect("saved");
        assert_eq!(saved.records, 351);
        // Closed for writes once saved: nothing can make the saved state stale.
        assert!(put(&ns, key(5000), b"late", Ttl::NamespaceDefault).is_err());
    }
    clock.advance_ms(20_000);
    let check = |ns: &Namespace| {
        for i in 0..50 {
            assert_eq!(get(ns, key(i)), None, "deleted record {i} came back");
        }
        for i in 50..400 {
            assert_eq!(get(ns, key(i)), Some((vec![i as u8; 200 + i as usize], 1)), "record {i}");
        }
        assert_eq!(get(ns, key(1000)), None, "an expired record came back");
    };
    let (ns, summary) = open(&dir, 2, &clock);
    assert!(summary.fast, "{summary:?}");
    assert_eq!(summary.records, 350);
    check(&ns);
    assert_eq!(ns.stats().delete_marks, 50, "the saved state keeps the deletes' marks");
    // Writes and defragmentation go on; the next (cold) restart finds them all.
    put(&ns, key(7000), b"after", Ttl::NamespaceDefault).expect("put after a fast restart");
    ns.defrag(64).expect("defrag");
    drop(ns);
    let (ns, summary) = open(&dir, 2, &clock);
    assert!(!summary.fast, "the saved state is used once");
    assert_eq!(summary.records, 351);
    check(&ns);
    assert_eq!(get(&ns, key(7000)), Some((b"after".to_vec(), 1)));
}

#[test]
fn a_stale_or_damaged_saved_state_is_not_used() {
    let dir = Dir::new("stale");
    let clock = Arc::new(ManualClock::new(START_MS));
    let saved_path = dir.0.join("f0.dat.snapshot");
    {
        let (ns, _) = open(&dir, 1, &clock);
        for i in 0..100 {
            put(&ns, key(i), &[1u8; 500], Ttl::NamespaceDefault).expect("put");
        }
        ns.save_snapshot().expect("saved");
    }
    let old_state = std::fs::read(&saved_path).expect("the saved state");
    {
        let (ns, summary) = open(&dir, 1, &clock);
        assert!(summary.fast);
        for i in 100..200 {
            put(&ns, key(i), &[2u8; 500], Ttl::NamespaceDefault).expect("put");
        }
    }
    // The old state put back after the store changed: not used, nothing lost.
    std::fs::write(&saved_path, &old_state).expect("put back");
    let (ns, summary) = open(&dir, 1, &clock);
    assert!(!summary.fast, "a stale state was loaded");
    assert_eq!(summary.records, 200);
    assert!(!saved_path.exists());
    ns.save_snapshot().expect("saved");
    drop(ns);
    // A damaged state: not used either.
    let mut bytes = std::fs::read(&saved_path).expect("the saved state");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&saved_path, &bytes).expect("damage");
    let (ns, summary) = open(&dir, 1, &clock);
    assert!(!summary.fast, "a damaged state was loaded");
    assert_eq!(summary.records, 200);
    assert_eq!(get(&ns, key(150)), Some((vec![2u8; 500], 1)));
    drop(ns);
    // A file far larger than any state of this store: not read, not used.
    std::fs::write(&saved_path, vec![0u8; 64 << 20]).expect("an oversized state");
    let (ns, summary) = open(&dir, 1, &clock);
    assert!(!summary.fast && !saved_path.exists(), "an oversized state was taken");
    assert_eq!(get(&ns, key(150)), Some((vec![2u8; 500], 1)));
}

#[test]
fn overwriting_three_times_the_capacity_stays_writable_with_used_space_bounded() {
    let dir = Dir::new("overwrite");
    let clock = Arc::new(ManualClock::new(START_MS));
    let (ns, _) = open(&dir, 1, &clock);
    let device = ns.device().expect("device");
    let capacity = device.total_bytes();
    let value = vec![3u8; 4000];
    let mut written = 0u64;
    let mut round = 0u64;
    while written < 3 * capacity {
        for k in 0..100 {
            put(&ns, key(k), &value, Ttl::NamespaceDefault).unwrap_or_else(|e| panic!("after {written} bytes: {e:?}"));
            written += value.len() as u64;
        }
        ns.defrag(4).expect("defrag");
        round += 1;
        // 100 records of ~4 KB are live at any time; the rest is garbage defragmentation
        // gives back.
        assert!(device.used_bytes() < capacity / 4, "round {round}: {} bytes used", device.used_bytes());
    }
    assert!(device.available_pct() > 50, "{}% free", device.available_pct());
}

#[test]
fn a_truncation_survives_restarts_and_defragmentation() {
    let dir = Dir::new("truncate");
    let clock = Arc::new(ManualClock::new(START_MS));
    {
        let (ns, _) = open(&dir, 1, &clock);
        for i in 0..300 {
            put(&ns, key(i), &[i as u8; 500], Ttl::NamespaceDefault).expect("put");
        }
        clock.advance_ms(10);
        ns.truncate(Some(b"demo"), None).expect("truncate");
        clock.advance_ms(10);
        for i in 0..50 {
            put(&ns, key(i), b"after", Ttl::NamespaceDefault).expect("put after");
        }
    }
    let expect = |i: u64| (i < 50).then(|| b"after".to_vec());
    for round in 0..2 {
        let (ns, _) = open(&dir, 1, &clock);
        for i in 0..300 {
            assert_eq!(get(&ns, key(i)).map(|g| g.0), expect(i), "record {i}, round {round}");
        }
        // Churn so that defragmentation moves the truncation marker too.
        for _ in 0..20 {
            for i in 0..50 {
                put(&ns, key(i), b"after", Ttl::NamespaceDefault).expect("rewrite");
            }
            ns.defrag(8).expect("defrag");
        }
    }
}

#[test]
fn a_reused_block_never_brings_back_the_records_of_its_previous_use() {
    // Regression: a block freed and written again held its earlier records past the new ones,
    // and a restart read them as current (a delete and an update undone after SIGKILL).
    let dir = Dir::new("reuse");
    let clock = Arc::new(ManualClock::new(START_MS));
    let value = |round: u8| vec![round; 30_000];
    {
        let (ns, _) = open(&dir, 1, &clock);
        // Four records fill the first block; then each is updated (later blocks).
        for round in 1..=2 {
            for i in 0..4 {
                put(&ns, key(i), &value(round), Ttl::NamespaceDefault).expect("put");
            }
        }
        ns.delete(&key(3), GenerationPolicy::None).expect("delete");
    }
    {
        // The first block holds nothing current: it is free again, and written first, with a
        // record as long as the first one it held.
        let (ns, _) = open(&dir, 1, &clock);
        put(&ns, key(99), &value(9), Ttl::NamespaceDefault).expect("put");
    }
    let (ns, _) = open(&dir, 1, &clock);
    // (first byte, length) of each value, to keep a failure readable.
    let seen = |i: u64| get(&ns, key(i)).map(|g| (g.0[0], g.0.len()));
    for i in 0..3 {
        assert_eq!(seen(i), Some((2, 30_000)), "record {i}");
    }
    assert_eq!(seen(3), None, "a deleted record came back");
    assert_eq!(seen(99), Some((9, 30_000)));
}
