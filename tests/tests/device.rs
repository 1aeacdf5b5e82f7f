//! The flash store through a real `petreld`: started with only `--data-dir`, namespace `test`
//! lives on a file there; records written, updated and deleted through the client come back
//! exactly after the process is SIGKILLed and started again on the same directory (a cold
//! restart), and again after a SIGTERM and a start from the state it saved (a fast restart).

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
    let mut node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    check_all(&rt, addr, "a cold restart");
    // A clean shutdown saves the state; the next start loads it, once.
    let saved = dir.0.join("test.dat.snapshot");
    assert!(!saved.exists());
    node.terminate(std::time::Duration::from_secs(20)).expect("a clean exit");
    assert!(saved.exists(), "SIGTERM saved no state");
    let node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    assert!(!saved.exists(), "the saved state was not used up");
    check_all(&rt, addr, "a fast restart");
    drop(node);
}

/// Every record as `expected` says, and the counts, on the node at `addr`.
fn check_all(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr, after: &str) {
    let ns = info(addr, "namespace/test");
    let number =
        |k: &str| -> u64 { stat(&ns, k).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{k} in {ns}")) };
    assert_eq!(number("objects"), RECORDS - RECORDS / 10, "after {after}");
    assert_eq!(number("tombstones"), RECORDS / 10, "every delete left a tombstone, after {after}");
    assert!(number("device_used_bytes") > 0);
    // Both counts are reported (`number` parses them); defragmentation may still be writing,
    // so write_q need not be 0 here (the storage tests check it at rest).
    assert!(number("write_q") < 1 << 20);
    assert!(number("defrag_q") <= number("device_total_bytes"));
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
    assert!(wrong.is_empty(), "{} records wrong after {after}, e.g. {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
}

mod crash {
    //! SIGKILL in the middle of a write and delete load, ten times over, on a small file where
    //! defragmentation keeps running: after each restart every key holds its last
    //! acknowledged value (or the one whose answer the kill cut off), deleted keys stay
    //! deleted, and no damaged record is served.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use petrel_client::policy::BasePolicy;
    use petrel_client::*;
    use petrel_tests::{free_port, info, petreld_path, stat, Petreld};

    const KEYS: u64 = 400;
    const WRITERS: u64 = 8;
    const KILLS: usize = 10;

    /// What a key may hold after a restart: its last acknowledged state, or (when the kill
    /// cut an answer off) the state that write would have left.
    #[derive(Debug, Clone, Default)]
    struct KeyState {
        acked: Option<i64>,
        in_doubt: Option<Option<i64>>,
    }

    fn key(i: u64) -> Key {
        Key::new("test", "crash", format!("k{i}")).expect("key")
    }

    async fn writer(
        c: Arc<Client>,
        w: u64,
        stop: Arc<AtomicBool>,
        states: Arc<Mutex<HashMap<u64, KeyState>>>,
        round: i64,
    ) {
        let policy = WritePolicy {
            base: BasePolicy { total_timeout: Duration::from_secs(2), max_retries: 0, ..BasePolicy::default() },
            ..WritePolicy::default()
        };
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let k = w + WRITERS * ((n * 7919 + round as u64) % (KEYS / WRITERS));
            let next = if n.is_multiple_of(10) { None } else { Some(round * 1_000_000 + n as i64) };
            let r = match next {
                Some(v) => c.put(&policy, &key(k), &[Bin::new("v", Value::Blob(payload(v)))]).await.map(|_| ()),
                None => c.delete(&policy, &key(k)).await.map(|_| ()),
            };
            let mut st = states.lock().expect("states");
            let s = st.entry(k).or_default();
            match r {
                Ok(()) => s.acked = next,
                // The node is gone: this write may or may not have been applied.
                Err(_) => {
                    s.in_doubt = Some(next);
                    return;
                }
            }
        }
    }

    /// A value of a few KB, so that blocks fill and defragmentation has work.
    fn payload(v: i64) -> Vec<u8> {
        let mut b = v.to_be_bytes().to_vec();
        b.resize(1500 + (v % 1000) as usize, (v % 251) as u8);
        b
    }

    fn decode(b: &[u8]) -> i64 {
        assert!(b.len() >= 8 && b[8..].iter().all(|&x| x == b[8]), "a damaged value was served");
        i64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
    }

    #[test]
    fn every_acknowledged_write_and_delete_survives_ten_kills_mid_load() {
        let dir = std::env::temp_dir().join(format!("petrel-crash-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let data_dir = dir.to_str().expect("utf-8").to_string();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let env = [
            ("PETREL_NAMESPACE__TEST__COMMIT_TO_DEVICE", "true"),
            ("PETREL_NAMESPACE__TEST__FILE_SIZE", "8388608"),
            ("PETREL_NAMESPACE__TEST__WRITE_BLOCK_SIZE", "131072"),
        ];
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        let states: Arc<Mutex<HashMap<u64, KeyState>>> = Arc::default();
        let mut defrag_freed = 0u64;
        for round in 0..KILLS {
            let mut node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &env);
            // Every key as it should be after the previous kill.
            rt.block_on(async {
                let c = Client::new(ClientPolicy::default(), &[addr.to_string().as_str()]).await.expect("connect");
                let mut st = states.lock().expect("states").clone();
                for (k, s) in st.iter_mut() {
                    let got = match c.get(&ReadPolicy::default(), &key(*k), Bins::All).await {
                        Ok(r) => match r.bin("v") {
                            Some(Value::Blob(b)) => Some(decode(b)),
                            other => panic!("k{k}: {other:?}"),
                        },
                        Err(e) if e.is_not_found() => None,
                        Err(e) => panic!("read k{k} after kill {round}: {e}"),
                    };
                    let allowed = got == s.acked || s.in_doubt.is_some_and(|d| d == got);
                    assert!(
                        allowed,
                        "after kill {round}, k{k} holds {got:?}; acknowledged {:?}, in doubt {:?}",
                        s.acked, s.in_doubt
                    );
                    *s = KeyState { acked: got, in_doubt: None };
                }
                *states.lock().expect("states") = st;
            });
            let ns = info(addr, "namespace/test");
            assert_eq!(stat(&ns, "storage-engine").as_deref(), Some("device"));
            defrag_freed += stat(&ns, "defrag_blocks_freed").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            // Load, then a kill at a moment that differs from round to round.
            let stop = Arc::new(AtomicBool::new(false));
            let c = Arc::new(
                rt.block_on(Client::new(ClientPolicy::default(), &[addr.to_string().as_str()])).expect("connect"),
            );
            let tasks: Vec<_> = (0..WRITERS)
                .map(|w| rt.spawn(writer(Arc::clone(&c), w, Arc::clone(&stop), Arc::clone(&states), round as i64 + 1)))
                .collect();
            std::thread::sleep(Duration::from_millis(700 + 170 * round as u64));
            node.kill9();
            stop.store(true, Ordering::Relaxed);
            for t in tasks {
                rt.block_on(t).expect("writer");
            }
        }
        assert!(defrag_freed > 0, "defragmentation never ran during the load");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

mod cluster {
    //! Device namespaces in a 3-node cluster (replication factor 2): the whole cluster
    //! SIGKILLed and started again keeps every acknowledged write and delete; one node killed,
    //! with deletes and updates while it is down, comes back without bringing back what it
    //! held, and receives only what changed meanwhile.

    use std::sync::Arc;
    use std::time::Duration;

    use futures::StreamExt;
    use petrel_client::*;
    use petrel_tests::cluster::TestCluster;
    use petrel_tests::petreld_path;

    const RECORDS: u64 = 4_000;

    fn key(i: u64) -> Key {
        Key::new("test", "crash", format!("c{i}")).expect("key")
    }

    async fn connect(cluster: &TestCluster) -> Arc<Client> {
        let seeds = cluster.seeds();
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
        Arc::new(Client::new(policy, &seeds).await.expect("connect"))
    }

    fn patient() -> WritePolicy {
        let base = policy::BasePolicy {
            total_timeout: Duration::from_secs(10),
            max_retries: 20,
            sleep_between_retries: Duration::from_millis(100),
            ..policy::BasePolicy::default()
        };
        WritePolicy { base, ..WritePolicy::default() }
    }

    async fn put_all(c: &Arc<Client>, keys: Vec<u64>, round: i64) {
        futures::stream::iter(keys)
            .map(|i| {
                let c = Arc::clone(c);
                async move { c.put(&patient(), &key(i), &[Bin::new("v", round * 1_000_000 + i as i64)]).await.expect("put") }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }

    async fn delete_all(c: &Arc<Client>, keys: Vec<u64>) {
        for i in keys {
            c.delete(&patient(), &key(i)).await.expect("delete");
        }
    }

    /// Keys whose value is not `expect(i)` (None: absent).
    async fn wrong(c: &Arc<Client>, expect: impl Fn(u64) -> Option<i64>) -> Vec<u64> {
        let read = ReadPolicy { base: patient().base };
        let got: Vec<(u64, Option<i64>)> = futures::stream::iter(0..RECORDS)
            .map(|i| {
                let (c, read) = (Arc::clone(c), read.clone());
                async move {
                    match c.get(&read, &key(i), Bins::All).await {
                        Ok(r) => (i, r.bin("v").and_then(Value::as_int)),
                        Err(e) if e.is_not_found() => (i, None),
                        Err(e) => panic!("read c{i}: {e}"),
                    }
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        got.into_iter().filter(|(i, v)| *v != expect(*i)).map(|(i, _)| i).collect()
    }

    #[test]
    fn a_cluster_killed_whole_or_one_node_at_a_time_keeps_every_acknowledged_write_and_delete() {
        let root = std::env::temp_dir().join(format!("petrel-device-cluster-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut cluster = TestCluster::start_with_data(&petreld_path!(), 3, 2, &[], Some(root.clone()));
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(async {
            let c = connect(&cluster).await;
            put_all(&c, (0..RECORDS).collect(), 0).await;
            delete_all(&c, (0..RECORDS).filter(|i| i % 10 == 0).collect()).await;
        });
        // The whole cluster dies at once, then comes back on its data.
        for i in 0..3 {
            cluster.kill9(i);
        }
        for i in 0..3 {
            cluster.restart(i);
        }
        cluster.wait_settled(3, Duration::from_secs(60));
        let after_whole = |i: u64| (!i.is_multiple_of(10)).then_some(i as i64);
        let bad = rt.block_on(async { wrong(&connect(&cluster).await, after_whole).await });
        assert!(
            bad.is_empty(),
            "{} records wrong after a whole-cluster restart, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * (RECORDS - RECORDS / 10));

        // One node down while records are deleted and updated; it comes back on stale data.
        cluster.kill9(1);
        cluster.wait_settled(2, Duration::from_secs(60));
        rt.block_on(async {
            let c = connect(&cluster).await;
            delete_all(&c, (0..RECORDS).filter(|i| i % 10 == 1).collect()).await;
            put_all(&c, (0..RECORDS).filter(|i| i % 10 == 2).collect(), 1).await;
        });
        cluster.restart(1);
        cluster.wait_settled(3, Duration::from_secs(60));
        let after_one = |i: u64| match i % 10 {
            0 | 1 => None,
            2 => Some(1_000_000 + i as i64),
            _ => Some(i as i64),
        };
        let bad = rt.block_on(async { wrong(&connect(&cluster).await, after_one).await });
        assert!(
            bad.is_empty(),
            "{} records wrong after one node's restart, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * (RECORDS - 2 * RECORDS / 10));
        assert_eq!(cluster.sum_ns_stat("test", "non_replica_objects"), 0);
        // The restarted node owns about two thirds of the partitions again. Of their records
        // only the updated ones (about 270 of the 800 changed) are sent to it; the deleted
        // ones go from its copy, the unchanged ones (about 1 900) stay.
        let (received, kept, dropped) = (
            cluster.node_stats("migrate_records_received")[1],
            cluster.node_stats("migrate_records_skipped")[1],
            cluster.node_stats("migrate_stale_records_dropped")[1],
        );
        eprintln!("rejoin: {received} records received, {kept} kept, {dropped} stale dropped");
        assert!(received <= RECORDS / 5, "the rejoining node received {received} records; only 800 changed");
        assert!(kept >= RECORDS / 4, "the rejoining node kept only {kept} of its records");
        assert!(dropped >= RECORDS / 20, "the rejoining node dropped only {dropped} stale records");
        drop(cluster);
        let _ = std::fs::remove_dir_all(&root);
    }
}
