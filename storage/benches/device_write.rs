//! Sustained write throughput of the flash store against the raw sequential write speed of
//! the same file system, in one process: first 1 GiB written in 1 MiB chunks and made
//! durable (`fdatasync`), as `dd conv=fdatasync` does; then records inserted into a device
//! namespace through its write path (index, record image, append to the write block, write
//! through to the file) by one thread per core, and the store flushed. Both in bytes that
//! reach the file per second; the ratio is the store's against the raw write.
//!
//! `cargo bench -p petrel-storage --bench device_write`; settings from the environment:
//! `BENCH_DIR` (default the system's temporary directory), `PETREL_BENCH_RECORDS` (default
//! 1 000 000), `PETREL_BENCH_VALUE_BYTES` (1 000), `PETREL_BENCH_THREADS` (one per core).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use petrel_proto::{Digest, KeyRef};
use petrel_storage::value::{Particle, ParticleRef};
use petrel_storage::*;

const RAW_BYTES: usize = 1 << 30;
const RAW_CHUNK_BYTES: usize = 1 << 20;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Removes the bench's directory however the run ends.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// MB/s of writing `RAW_BYTES` sequentially and making them durable.
fn raw_sequential_mbs(dir: &Path) -> f64 {
    let path = dir.join("raw");
    let chunk = vec![0u8; RAW_CHUNK_BYTES];
    let started = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create the raw file");
    for _ in 0..RAW_BYTES / RAW_CHUNK_BYTES {
        f.write_all(&chunk).expect("raw write");
    }
    f.sync_data().expect("fdatasync");
    let mbs = RAW_BYTES as f64 / started.elapsed().as_secs_f64() / 1e6;
    drop(f);
    let _ = std::fs::remove_file(&path);
    mbs
}

fn main() {
    // `cargo bench` passes `--bench`; a test run (`cargo test --benches`) passes nothing of
    // ours and wants no 1 GiB written.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let records = env_or("PETREL_BENCH_RECORDS", 1_000_000);
    let value_bytes = env_or("PETREL_BENCH_VALUE_BYTES", 1_000) as usize;
    let threads = env_or("PETREL_BENCH_THREADS", std::thread::available_parallelism().map_or(2, |n| n.get() as u64));
    let base = std::env::var_os("BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = Dir(base.join(format!("petrel-device-write-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("bench dir");

    let raw_mbs = raw_sequential_mbs(&dir.0);

    // Room for every record twice over, so that defragmentation never has to run.
    let file_bytes = ((records * (value_bytes as u64 + 200) * 2) >> 20 << 20).max(64 << 20);
    let device = DeviceConfig::one_file(dir.0.join("data"), file_bytes);
    let (ns, _) = Namespace::on_device(NamespaceConfig::new("test"), device).expect("open the store");
    let ns = Arc::new(ns);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (ns, next) = (Arc::clone(&ns), Arc::clone(&next));
            std::thread::spawn(move || {
                let particle = Value::Bytes(vec![0x5a; value_bytes]).to_particle();
                let particle: &Particle = &particle;
                let ops = [Op::Write {
                    bin: b"v",
                    value: ParticleRef { particle: particle.particle, bytes: &particle.bytes },
                }];
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= records {
                        return;
                    }
                    let digest = Digest::compute(b"bench", KeyRef::Int(i as i64));
                    let request =
                        OperateRequest { digest, set: b"bench", key: None, policy: WritePolicy::default(), ops: &ops };
                    ns.operate(&request).expect("insert");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a writer panicked");
    }
    let device = ns.device().expect("a device namespace");
    device.flush().expect("flush");
    let elapsed = started.elapsed().as_secs_f64();
    let stored_bytes = device.used_bytes();
    let store_mbs = stored_bytes as f64 / elapsed / 1e6;
    println!(
        "raw sequential write: {raw_mbs:.0} MB/s; store: {records} records of {value_bytes} bytes by {threads} threads \
         in {elapsed:.2} s = {:.0} records/s, {store_mbs:.0} MB/s on the file; ratio {:.2}x",
        records as f64 / elapsed,
        store_mbs / raw_mbs
    );
}
