//! The flash store through a real `petreld`: started with only `--data-dir`, namespace `test`
//! lives on a file there; records written, updated and deleted through the client come back
//! exactly after the process is SIGKILLed and started again on the same directory.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use petrel_client::*;
use petrel_tests::{free_port, info, petreld_path, stat, Petreld};

const RECORDS: u64 = 20_000;

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn key(i: u64) -> Key {
    Key::new("test", "disk", format!("k{i}")).expect("key")
}

fn value(i: u64, round: u64) -> String {
    format!("{i}-{round}-{}", "x".repeat((i % 300) as usize))
}

async fn client(addr: std::net::SocketAddr) -> Client {
    Client::new(ClientPolicy::default(), &[addr.to_string().as_str()]).await.expect("connect")
}

/// What every record should hold: the value, or None when deleted.
fn expected(i: u64) -> Option<String> {
    match i % 10 {
        0 => None,
        1 | 2 => Some(value(i, 1)),
        _ => Some(value(i, 0)),
    }
}

#[test]
fn records_updates_and_deletes_survive_sigkill_and_restart() {
    let dir = Dir(std::env::temp_dir().join(format!("petrel-device-test-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    let data_dir = dir.0.to_str().expect("utf-8 path").to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    let ns = info(addr, "namespace/test");
    assert_eq!(stat(&ns, "storage-engine").as_deref(), Some("device"), "{ns}");
    assert!(dir.0.join("test.dat").exists());

    rt.block_on(async {
        let c = Arc::new(client(addr).await);
        let w = WritePolicy::default();
        let puts = |round: u64, keys: Vec<u64>| {
            let (c, w) = (Arc::clone(&c), w.clone());
            futures::stream::iter(keys)
                .map(move |i| {
                    let (c, w) = (Arc::clone(&c), w.clone());
                    async move { c.put(&w, &key(i), &[Bin::new("v", value(i, round))]).await.expect("put") }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
        };
        puts(0, (0..RECORDS).collect()).await;
        puts(1, (0..RECORDS).filter(|i| matches!(i % 10, 1 | 2)).collect()).await;
        for i in (0..RECORDS).filter(|i| i % 10 == 0) {
            assert!(c.delete(&w, &key(i)).await.expect("delete"));
        }
    });

    // No clean shutdown: the process dies with whatever it had in memory.
    node.kill9();
    let node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    let objects: u64 = stat(&info(addr, "namespace/test"), "objects").and_then(|v| v.parse().ok()).expect("objects");
    assert_eq!(objects, RECORDS - RECORDS / 10);
    let wrong: Vec<u64> = rt.block_on(async {
        let c = Arc::new(client(addr).await);
        futures::stream::iter(0..RECORDS)
            .map(|i| {
                let c = Arc::clone(&c);
                async move {
                    let got = match c.get(&ReadPolicy::default(), &key(i), Bins::All).await {
                        Ok(r) => r.bin("v").and_then(|v| v.as_str().map(str::to_string)),
                        Err(e) if e.is_not_found() => None,
                        Err(e) => panic!("read k{i}: {e}"),
                    };
                    (got != expected(i)).then_some(i)
                }
            })
            .buffer_unordered(32)
            .filter_map(|w| async move { w })
            .collect()
            .await
    });
    assert!(
        wrong.is_empty(),
        "{} records wrong after the restart, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    drop(node);
}
