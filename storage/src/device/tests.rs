//! Device store tests on real files: records written, read back from memory and from the
//! file, found again by a restore scan in the order written, damage recognised.

use super::*;
use petrel_proto::Digest;
use std::os::unix::fs::FileExt;

fn dir() -> tempdir::TempDir {
    tempdir::TempDir::new()
}

mod tempdir {
    /// A directory under the system's temporary directory, removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl TempDir {
        pub fn new() -> TempDir {
            static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = std::env::temp_dir().join(format!("petrel-device-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&p).expect("temp dir");
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn config(d: &tempdir::TempDir) -> DeviceConfig {
    let mut c = DeviceConfig::one_file(d.0.join("test.dat"), 16 << 17);
    c.write_block_bytes = 128 << 10;
    c
}

fn meta(d: &Digest, generation: u16) -> ImageMeta<'_> {
    ImageMeta { digest: d, generation, void_time: 0, lut_ms: 1_000 + generation as u64, set: b"s", tombstone: false }
}

#[test]
fn records_read_back_before_and_after_their_block_is_written_and_after_a_reopen() {
    let d = dir();
    let digests: Vec<Digest> =
        (0..300u32).map(|i| Digest::compute(b"s", petrel_proto::KeyRef::Int(i as i64))).collect();
    let image = |i: usize| vec![i as u8; 700 + i];
    let mut locs = Vec::new();
    {
        let e = DeviceEngine::open("test", config(&d)).expect("open");
        e.scan(|_| panic!("a new store is empty")).expect("scan");
        e.start().expect("start");
        for (i, dg) in digests.iter().enumerate() {
            locs.push(e.write(&meta(dg, 1), &image(i)).expect("write"));
        }
        // From the open block and the recent ones in memory.
        let mut scratch = Vec::new();
        for (i, l) in locs.iter().enumerate() {
            assert_eq!(e.read(l, &mut scratch).expect("read"), &image(i)[..]);
        }
        // A newer copy of the first record, and a delete of the second.
        e.write(&meta(&digests[0], 2), b"newer").expect("write");
        e.remove(&meta(&digests[1], 2)).expect("tombstone");
    }
    let e = DeviceEngine::open("test", config(&d)).expect("reopen");
    let mut seen: Vec<(Digest, u16, bool, Vec<u8>)> = Vec::new();
    let summary = e
        .scan(|r| {
            let h = r.view.header;
            seen.push((h.digest, h.generation, h.flags & format::FLAG_TOMBSTONE != 0, r.view.image.to_vec()));
        })
        .expect("scan");
    assert_eq!(summary.damaged, 0);
    assert_eq!(seen.len(), 302);
    // In the order written: the newer copy and the tombstone come after the originals.
    assert_eq!(seen[300], (digests[0], 2, false, b"newer".to_vec()));
    assert_eq!((seen[301].0, seen[301].2), (digests[1], true));
    for (i, s) in seen[..300].iter().enumerate() {
        assert_eq!((s.0, s.3.as_slice()), (digests[i], &image(i)[..]));
    }
}

#[test]
fn another_namespace_or_block_size_is_refused() {
    let d = dir();
    drop(DeviceEngine::open("test", config(&d)).expect("open"));
    assert!(DeviceEngine::open("other", config(&d)).unwrap_err().contains("namespace"));
    let mut c = config(&d);
    c.write_block_bytes = 256 << 10;
    assert!(DeviceEngine::open("test", c).is_err());
    let mut c = config(&d);
    c.write_block_bytes = 1000;
    assert!(c.validate().is_err());
}

#[test]
fn a_damaged_record_ends_its_block_on_restore_and_is_never_served() {
    let d = dir();
    let a = Digest([1; 20]);
    let b = Digest([2; 20]);
    let (la, lb);
    {
        let e = DeviceEngine::open("test", config(&d)).expect("open");
        e.scan(|_| {}).expect("scan");
        e.start().expect("start");
        la = e.write(&meta(&a, 1), b"first").expect("write");
        lb = e.write(&meta(&b, 1), b"second").expect("write");
    }
    // Flip a byte of the second record's image on the file.
    let addr = lb.device_addr().expect("device");
    let f = OpenOptions::new().write(true).read(true).open(d.0.join("test.dat")).expect("file");
    let at = addr.offset + format::RECORD_HEADER_LEN as u64 + 1 + 2;
    f.write_all_at(b"X", at).expect("corrupt");
    let e = DeviceEngine::open("test", config(&d)).expect("reopen");
    let mut found = Vec::new();
    let s = e.scan(|r| found.push(r.view.header.digest)).expect("scan");
    assert_eq!((found, s.damaged), (vec![a], 1));
    let mut scratch = Vec::new();
    assert_eq!(e.read(&la, &mut scratch).expect("intact"), b"first");
    assert!(e.read(&lb, &mut scratch).is_err(), "a corrupt record is refused, not served");
}

#[test]
fn writes_stop_at_the_free_space_mark_while_deletes_go_on() {
    let d = dir();
    let mut c = config(&d);
    c.min_avail_pct = 25;
    let e = DeviceEngine::open("test", c).expect("open");
    e.scan(|_| {}).expect("scan");
    e.start().expect("start");
    let big = vec![7u8; 60 << 10];
    let mut wrote = 0;
    let err = loop {
        let dg = Digest::compute(b"s", petrel_proto::KeyRef::Int(wrote));
        match e.write(&meta(&dg, 1), &big) {
            Ok(_) => wrote += 1,
            Err(e) => break e,
        }
        assert!(wrote < 1000, "never refused");
    };
    assert_eq!(err, StorageError::OutOfSpace);
    assert!(e.available_pct() >= 20, "stopped at the mark: {}%", e.available_pct());
    e.remove(&meta(&Digest([9; 20]), 1)).expect("a delete still goes through");
}

/// A real file whose syncs fail while `fail_syncs` holds.
#[derive(Debug)]
struct SyncFailing {
    file: std::fs::File,
    fail_syncs: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl medium::Medium for SyncFailing {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn sync(&self) -> std::io::Result<()> {
        if self.fail_syncs.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(std::io::Error::other("injected sync failure"));
        }
        self.file.sync_data()
    }
}

#[test]
fn a_failed_sync_stops_writes_until_the_store_is_opened_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let d = dir();
    let c = config(&d);
    let fail_syncs = std::sync::Arc::new(AtomicBool::new(false));
    let open = || {
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&c.files[0].path);
        let file = file.expect("open the file");
        file.set_len(c.files[0].size_bytes).expect("size the file");
        let media: Vec<Box<dyn medium::Medium>> =
            vec![Box::new(SyncFailing { file, fail_syncs: std::sync::Arc::clone(&fail_syncs) })];
        let e = DeviceEngine::open_on("test", c.clone(), media).expect("open");
        e.scan(|_| {}).expect("scan");
        e.start().expect("start");
        e
    };
    let digest = |i: i64| Digest::compute(b"s", petrel_proto::KeyRef::Int(i));
    let e = open();
    let (d0, d1, d2) = (digest(0), digest(1), digest(2));
    e.write(&meta(&d0, 1), b"before").expect("a write before the failure");
    fail_syncs.store(true, Ordering::Relaxed);
    assert!(e.flush().is_err(), "the sync fails");
    assert!(e.sync_failed());
    // Even once syncs work again, nothing written since the last good one is known durable.
    fail_syncs.store(false, Ordering::Relaxed);
    assert!(matches!(e.write(&meta(&d1, 1), b"after"), Err(StorageError::Device(_))), "writes stop");
    assert!(e.sync_failed());
    let mut scratch = Vec::new();
    assert!(e.write(&meta(&d0, 2), b"x").is_err(), "updates stop too");
    drop(e);
    // Opened again (the node restarted): what the file holds is read back, and writes go on.
    let e = open();
    assert!(!e.sync_failed());
    let loc = e.write(&meta(&d2, 1), b"again").expect("writes after a restart");
    assert_eq!(e.read(&loc, &mut scratch).expect("read"), b"again");
}
