//! Regression: a kill right after a reused block's header was written brought back the
//! records of that block's previous use. Opening a block wrote only its header; the records
//! of the block's earlier use still followed it on the file, so a cold restart read them as
//! the newest copies (the block had the highest sequence) and older values replaced
//! acknowledged ones (seen once in the real-process crash test: nine acknowledged updates of
//! one key lost at once).
//!
//! The test records every write a workload of updates, deletes and defragmentation makes,
//! then "kills" the store after each block-header write and after every 5th other write:
//! the image holds exactly the writes before that point. A cold restart of each image must
//! hold every acknowledged value, or the value of the one operation the kill cut off.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use petrel_proto::{Digest, KeyRef as WireKey};
use petrel_storage::clock::{Clock, ManualClock};
use petrel_storage::device::medium::Medium;
use petrel_storage::value::ParticleRef;
use petrel_storage::*;

const FILE_BYTES: u64 = 2 << 20;
const BLOCK_BYTES: usize = 128 << 10;
const KEYS: u64 = 40;
const OPERATIONS: usize = 1_500;

/// Every write made, in order.
type WriteLog = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// An in-memory file that logs each write.
#[derive(Debug)]
struct LoggingMedium {
    bytes: Arc<Mutex<Vec<u8>>>,
    log: Option<WriteLog>,
}

impl Medium for LoggingMedium {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let b = self.bytes.lock().expect("bytes");
        let from = offset as usize;
        let to = from.checked_add(buf.len()).filter(|&to| to <= b.len());
        let to = to.ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
        buf.copy_from_slice(&b[from..to]);
        Ok(())
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.bytes.lock().expect("bytes")[offset as usize..offset as usize + buf.len()].copy_from_slice(buf);
        if let Some(log) = &self.log {
            log.lock().expect("log").push((offset, buf.to_vec()));
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        Ok(())
    }
}

fn config() -> DeviceConfig {
    let mut config = DeviceConfig::one_file("crash.dat".into(), FILE_BYTES);
    config.write_block_bytes = BLOCK_BYTES;
    config.commit_to_device = true;
    config
}

fn open(bytes: Vec<u8>, log: Option<WriteLog>, clock: &Arc<dyn Clock>) -> Namespace {
    let media: Vec<Box<dyn Medium>> = vec![Box::new(LoggingMedium { bytes: Arc::new(Mutex::new(bytes)), log })];
    Namespace::on_media(NamespaceConfig::new("test"), config(), media, Arc::clone(clock)).expect("the store opens").0
}

fn key(i: u64) -> Digest {
    Digest::compute(b"crash", WireKey::Int(i as i64))
}

fn put(ns: &Namespace, d: Digest, value: &[u8]) -> Result<RecordMeta, StorageError> {
    let p = Value::Bytes(value.to_vec()).to_particle();
    let ops = [Op::Write { bin: b"v", value: ParticleRef { particle: p.particle, bytes: &p.bytes } }];
    ns.operate(&OperateRequest { digest: d, set: b"crash", key: None, policy: WritePolicy::default(), ops: &ops })
        .map(|o| o.meta)
}

fn get(ns: &Namespace, d: Digest) -> Option<Vec<u8>> {
    let mut v = None;
    match ns.read(&d, ReadSelect::All, |b| v = Value::from_particle(b.value).ok()) {
        Ok(_) => match v {
            Some(Value::Bytes(b)) => Some(b),
            other => panic!("bin v is {other:?}"),
        },
        Err(StorageError::NotFound) => None,
        Err(e) => panic!("read: {e}"),
    }
}

/// One acknowledged operation: the writes made before it began and when it returned, and
/// what it left the key holding.
struct Acked {
    writes_before: usize,
    writes_after: usize,
    key: u64,
    value: Option<Vec<u8>>,
}

#[test]
fn a_kill_after_a_reused_block_header_brings_back_nothing_older() {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(500_000_000_000));
    let log: WriteLog = Arc::default();
    let ns = open(vec![0u8; FILE_BYTES as usize], Some(Arc::clone(&log)), &clock);
    let writes = || log.lock().expect("log").len();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut acked = Vec::with_capacity(OPERATIONS);
    for n in 0..OPERATIONS {
        let k = next() % KEYS;
        let writes_before = writes();
        let value = if next() % 6 == 0 {
            match ns.delete(&key(k), GenerationPolicy::None) {
                Ok(()) | Err(StorageError::NotFound) => None,
                Err(e) => panic!("delete: {e}"),
            }
        } else {
            // Distinct values, a few KB each, so that blocks fill and get reused.
            let mut v = (n as u64).to_be_bytes().to_vec();
            v.resize(2_000 + (next() % 3_000) as usize, (n % 251) as u8);
            put(&ns, key(k), &v).expect("put");
            Some(v)
        };
        acked.push(Acked { writes_before, writes_after: writes(), key: k, value });
        if n % 8 == 0 {
            ns.defrag(4).expect("defrag");
        }
    }
    assert!(ns.device().expect("device").counters.defrag_blocks_freed.load(std::sync::atomic::Ordering::Relaxed) > 4);
    drop(ns);
    let log = log.lock().expect("log").clone();
    // Kill points: after each block header (a write at a block's start) and every 5th write.
    let kills: Vec<usize> = (1..=log.len())
        .filter(|&c| {
            let (offset, _) = &log[c - 1];
            *offset % BLOCK_BYTES as u64 == 0 || c % 5 == 0
        })
        .collect();
    let reused_headers = log.iter().filter(|(o, _)| o % BLOCK_BYTES as u64 == 0 && *o != 0).count();
    assert!(reused_headers > 15, "blocks were opened again and again ({reused_headers})");
    let mut image = vec![0u8; FILE_BYTES as usize];
    let mut applied = 0;
    let mut model: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
    let mut done = 0;
    for kill in kills {
        for (offset, bytes) in &log[applied..kill] {
            image[*offset as usize..*offset as usize + bytes.len()].copy_from_slice(bytes);
        }
        applied = kill;
        while done < acked.len() && acked[done].writes_after <= kill {
            model.insert(acked[done].key, acked[done].value.clone());
            done += 1;
        }
        // The operation the kill cut off, if any.
        let cut = acked.get(done).filter(|a| a.writes_before < kill);
        let ns = open(image.clone(), None, &clock);
        for k in 0..KEYS {
            let got = get(&ns, key(k));
            let expected = model.get(&k).cloned().flatten();
            let in_doubt = cut.is_some_and(|a| a.key == k && a.value == got);
            assert!(
                got == expected || in_doubt,
                "killed after write {kill} of {}: key {k} holds {:?}, acknowledged {:?}",
                log.len(),
                got.as_ref().map(|v| u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))),
                expected.as_ref().map(|v| u64::from_be_bytes(v[..8].try_into().expect("8 bytes"))),
            );
        }
    }
}
