//! A device namespace on a raw block device (a loop device over a sparse file, set up with
//! `losetup`, which needs root): `petreld` sizes the store by the device, records written,
//! updated and deleted come back after SIGKILL and a cold restart, and after SIGTERM and a
//! fast restart from the state kept in the data directory. Skipped, saying so, where loop
//! devices cannot be set up (not root, or no `losetup`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use futures::StreamExt;
use petrel_client::*;
use petrel_tests::{free_port, info, petreld_path, stat, Petreld};

const RECORDS: u64 = 5_000;
const DEVICE_BYTES: u64 = 256 << 20;

/// A loop device over a sparse file; detached and removed on drop.
struct LoopDevice {
    device: PathBuf,
    backing: PathBuf,
}

impl LoopDevice {
    fn attach(backing: &Path) -> Result<LoopDevice, String> {
        let file = std::fs::File::create(backing).map_err(|e| e.to_string())?;
        file.set_len(DEVICE_BYTES).map_err(|e| e.to_string())?;
        drop(file);
        let out = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(backing)
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_file(backing);
            return Err(format!("losetup: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let device = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        Ok(LoopDevice { device, backing: backing.to_path_buf() })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.device).status();
        let _ = std::fs::remove_file(&self.backing);
    }
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(i: u64) -> Key {
    Key::new("test", "raw", format!("k{i}")).expect("key")
}

fn value(i: u64, round: u64) -> String {
    format!("{i}-{round}-{}", "r".repeat((i % 500) as usize))
}

/// What every record should hold: the value, or None when deleted.
fn expected(i: u64) -> Option<String> {
    match i % 10 {
        0 => None,
        1 => Some(value(i, 1)),
        _ => Some(value(i, 0)),
    }
}

#[test]
fn a_namespace_on_a_raw_block_device_survives_cold_and_fast_restarts() {
    let dir = Dir(std::env::temp_dir().join(format!("petrel-raw-device-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(dir.0.join("data")).expect("dir");
    let device = match LoopDevice::attach(&dir.0.join("backing")) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no loop device can be set up here ({e})");
            return;
        }
    };
    let devices = format!("[\"{}\"]", device.device.display());
    let data_dir = dir.0.join("data").to_str().expect("utf-8").to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let env = [("PETREL_NAMESPACE__TEST__DEVICES", devices.as_str())];
    let args = ["--data-dir", data_dir.as_str()];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");

    let mut node = Petreld::start_at(&petreld_path!(), addr, &args, &env);
    let ns = info(addr, "namespace/test");
    assert_eq!(stat(&ns, "storage-engine").as_deref(), Some("device"), "{ns}");
    // Sized by the device; block 0 holds the file header.
    assert_eq!(stat(&ns, "storage-engine.filesize").and_then(|v| v.parse::<u64>().ok()), Some(DEVICE_BYTES), "{ns}");
    let blocks_bytes = DEVICE_BYTES - (1 << 20);
    assert_eq!(stat(&ns, "device_total_bytes").and_then(|v| v.parse::<u64>().ok()), Some(blocks_bytes), "{ns}");
    assert!(!dir.0.join("data").join("test.dat").exists(), "no file is made beside the device");
    rt.block_on(async {
        let c = Arc::new(Client::new(ClientPolicy::default(), &[addr.to_string().as_str()]).await.expect("connect"));
        let w = WritePolicy::default();
        for round in 0..2u64 {
            let keys: Vec<u64> = (0..RECORDS).filter(|i| round == 0 || i % 10 == 1).collect();
            futures::stream::iter(keys)
                .map(|i| {
                    let (c, w) = (Arc::clone(&c), w.clone());
                    async move { c.put(&w, &key(i), &[Bin::new("v", value(i, round))]).await.expect("put") }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
                .await;
        }
        for i in (0..RECORDS).filter(|i| i % 10 == 0) {
            assert!(c.delete(&w, &key(i)).await.expect("delete"));
        }
    });

    node.kill9();
    let mut node = Petreld::start_at(&petreld_path!(), addr, &args, &env);
    check_all(&rt, addr, "a cold restart");
    let saved = dir.0.join("data").join("test.snapshot");
    node.terminate(std::time::Duration::from_secs(20)).expect("a clean exit");
    assert!(saved.exists(), "SIGTERM saved no state in the data directory");
    let node = Petreld::start_at(&petreld_path!(), addr, &args, &env);
    assert!(!saved.exists(), "the saved state was not used");
    check_all(&rt, addr, "a fast restart");
    drop(node);
}

fn check_all(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, after: &str) {
    let ns = info(addr, "namespace/test");
    assert_eq!(stat(&ns, "objects").and_then(|v| v.parse::<u64>().ok()), Some(RECORDS - RECORDS / 10), "after {after}");
    // One read after another: a few thousand on loopback take a second or two.
    let wrong: Vec<u64> = rt.block_on(async {
        let c = Client::new(ClientPolicy::default(), &[addr.to_string().as_str()]).await.expect("connect");
        let mut wrong = Vec::new();
        for i in 0..RECORDS {
            let got = match c.get(&ReadPolicy::default(), &key(i), Bins::All).await {
                Ok(r) => r.bin("v").and_then(|v| v.as_str().map(str::to_string)),
                Err(e) if e.is_not_found() => None,
                Err(e) => panic!("read k{i} after {after}: {e}"),
            };
            if got != expected(i) {
                wrong.push(i);
            }
        }
        wrong
    });
    assert!(wrong.is_empty(), "{} records wrong after {after}, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
}
