//! Faults under the device store: torn writes (part of the bytes land), short writes (none
//! do), failing syncs and a full device, injected on a countdown by a failing medium. Random
//! operations run against a `BTreeMap` model; at every restart each record is what the model
//! says, or, for a write whose call failed, what that write would have left: a damaged record
//! is never served and nothing acknowledged is lost. After a failed sync the store takes no
//! writes until it is opened again.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use petrel_proto::{Digest, KeyRef as WireKey};
use petrel_storage::clock::{Clock, ManualClock};
use petrel_storage::device::medium::Medium;
use petrel_storage::value::ParticleRef;
use petrel_storage::*;

const FILE_BYTES: u64 = 4 << 20;
const BLOCK_BYTES: usize = 128 << 10;

/// The kinds of fault injected, in turn.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Half of the bytes land, then an error.
    Torn,
    /// Nothing lands; an error.
    Short,
    /// A sync fails.
    Sync,
    /// No space left on the device: nothing lands.
    Full,
}

/// A medium in memory (it survives "restarts": the engine is dropped and opened again on it)
/// that fails one write or sync each time a countdown runs out.
#[derive(Debug)]
struct FailingMedium {
    bytes: Arc<Mutex<Vec<u8>>>,
    countdown: Arc<AtomicU64>,
    faults: Arc<AtomicU64>,
    injected: Arc<AtomicU64>,
}

impl FailingMedium {
    fn fault_now(&self) -> Option<Fault> {
        let left = self.countdown.fetch_sub(1, Ordering::Relaxed);
        if left != 1 {
            return None;
        }
        let n = self.faults.fetch_add(1, Ordering::Relaxed);
        // The next fault comes after a varying number of operations.
        self.countdown.store(17 + (n * 37) % 101, Ordering::Relaxed);
        self.injected.fetch_add(1, Ordering::Relaxed);
        Some([Fault::Torn, Fault::Short, Fault::Sync, Fault::Full][(n % 4) as usize])
    }
}

impl Medium for FailingMedium {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.bytes.lock().expect("bytes");
        let (from, to) = (offset as usize, offset as usize + buf.len());
        if to > b.len() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"));
        }
        buf.copy_from_slice(&b[from..to]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let fault = self.fault_now();
        let mut b = self.bytes.lock().expect("bytes");
        let from = offset as usize;
        let land = match fault {
            None | Some(Fault::Sync) => buf.len(),
            Some(Fault::Torn) => buf.len() / 2,
            Some(Fault::Short) | Some(Fault::Full) => 0,
        };
        b[from..from + land].copy_from_slice(&buf[..land]);
        match fault {
            None | Some(Fault::Sync) => Ok(()),
            Some(Fault::Full) => Err(io::Error::new(io::ErrorKind::StorageFull, "no space left on device")),
            Some(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "write cut short")),
        }
    }

    fn sync(&self) -> io::Result<()> {
        match self.fault_now() {
            Some(_) => Err(io::Error::other("sync failed")),
            None => Ok(()),
        }
    }
}

fn key(i: u64) -> Digest {
    Digest::compute(b"faults", WireKey::Int(i as i64))
}

fn put(ns: &Namespace, d: Digest, value: &[u8]) -> Result<RecordMeta, StorageError> {
    let p = Value::Bytes(value.to_vec()).to_particle();
    let ops = [Op::Write { bin: b"v", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    ns.operate(&OperateRequest { digest: d, set: b"faults", key: None, policy: WritePolicy::default(), ops: &ops })
        .map(|o| o.meta)
}

fn get(ns: &Namespace, d: Digest) -> Result<Option<Vec<u8>>, StorageError> {
    let mut v = None;
    match ns.read(&d, ReadSelect::All, |b| v = Value::from_particle(b.value).ok()) {
        Ok(_) => match v {
            Some(Value::Bytes(b)) => Ok(Some(b)),
            other => panic!("bin v is {other:?}"),
        },
        Err(StorageError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

#[test]
fn injected_faults_lose_nothing_acknowledged_and_serve_nothing_damaged() {
    let bytes = Arc::new(Mutex::new(vec![0u8; FILE_BYTES as usize]));
    let countdown = Arc::new(AtomicU64::new(40));
    let (faults, injected) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(500_000_000_000));
    let mut config = DeviceConfig::one_file("faulty.dat".into(), FILE_BYTES);
    config.write_block_bytes = BLOCK_BYTES;
    config.commit_to_device = true;
    let open = || {
        let medium = FailingMedium {
            bytes: Arc::clone(&bytes),
            countdown: Arc::clone(&countdown),
            faults: Arc::clone(&faults),
            injected: Arc::clone(&injected),
        };
        // Opening itself may meet a fault: try again, as an operator restarting would.
        (0..10)
            .find_map(|_| {
                let media: Vec<Box<dyn Medium>> = vec![Box::new(FailingMedium {
                    bytes: Arc::clone(&medium.bytes),
                    countdown: Arc::clone(&medium.countdown),
                    faults: Arc::clone(&medium.faults),
                    injected: Arc::clone(&medium.injected),
                })];
                Namespace::on_media(NamespaceConfig::new("test"), config.clone(), media, Arc::clone(&clock)).ok()
            })
            .expect("the store opens")
            .0
    };
    let mut model: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    // Per key, what failed calls may have left instead of the model's value: every failed
    // call since the key's last acknowledged one (after a failed sync the store takes no
    // writes, so several calls on one key can fail in a row, each leaving its own outcome
    // possible).
    let mut in_doubt: BTreeMap<u64, Vec<Option<Vec<u8>>>> = BTreeMap::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut failed = 0;
    // Enough restarts for many faults: after a failed sync a store takes no writes (and
    // meets no more faults) until it is opened again.
    for restart in 0..24 {
        let ns = open();
        for k in 0..200u64 {
            let got = get(&ns, key(k)).expect("a restored record reads back");
            let ok = got.as_ref() == model.get(&k) || in_doubt.get(&k).is_some_and(|d| d.contains(&got));
            assert!(ok, "restart {restart}, key {k}: {got:?} is neither {:?} nor the failed write's", model.get(&k));
            match got {
                Some(v) => model.insert(k, v),
                None => model.remove(&k),
            };
        }
        in_doubt.clear();
        for _ in 0..400 {
            let k = next() % 200;
            if next() % 4 == 0 {
                match ns.delete(&key(k), GenerationPolicy::None) {
                    Ok(()) => {
                        model.remove(&k);
                        in_doubt.remove(&k);
                    }
                    Err(StorageError::NotFound) => assert!(!model.contains_key(&k)),
                    Err(_) => {
                        failed += 1;
                        in_doubt.entry(k).or_default().push(None);
                    }
                }
            } else {
                let v = vec![(next() % 250) as u8 + 1; (next() % 2000) as usize + 1];
                match put(&ns, key(k), &v) {
                    Ok(_) => {
                        model.insert(k, v);
                        in_doubt.remove(&k);
                    }
                    Err(_) => {
                        failed += 1;
                        in_doubt.entry(k).or_default().push(Some(v));
                    }
                }
            }
            if next() % 8 == 0 {
                let _ = ns.defrag(2);
            }
            // Reads in between: the model's value, an in-doubt one, or an error, never
            // anything else.
            let r = next() % 200;
            // A read may fail while the medium fails; it must never serve a wrong value.
            if let Ok(got) = get(&ns, key(r)) {
                assert!(
                    got.as_ref() == model.get(&r) || in_doubt.get(&r).is_some_and(|d| d.contains(&got)),
                    "key {r} read {got:?}"
                );
            }
        }
    }
    assert!(injected.load(Ordering::Relaxed) > 20, "faults were injected");
    assert!(failed > 0, "some calls failed");
}
