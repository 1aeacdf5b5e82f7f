//! Real multi-node clusters on loopback: node loss, joins, rolling restarts, routing. Each
//! test starts its own `petreld` processes (127.0.0.10, .11, ... on free ports) and stops
//! them by pid; the tests take turns, since each cluster wants both cores.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use petrel_client::policy::BasePolicy;
use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::{info, petreld_path};

static SERIAL: Mutex<()> = Mutex::new(());
static ERRORS_SHOWN: AtomicU64 = AtomicU64::new(0);
static READ_ERRORS_SHOWN: AtomicU64 = AtomicU64::new(0);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn key(i: u64) -> Key {
    Key::new("test", "c", format!("k{i}")).expect("key")
}

/// A patient policy: failover takes a node timeout and a quantum (about 3.5 s).
fn patient() -> BasePolicy {
    BasePolicy {
        total_timeout: Duration::from_secs(8),
        socket_timeout: Duration::from_secs(2),
        max_retries: 40,
        sleep_between_retries: Duration::from_millis(100),
        ..BasePolicy::default()
    }
}

async fn connect(cluster: &TestCluster, nodes: usize) -> Arc<Client> {
    let seeds = cluster.seeds();
    let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
    let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
    let client = Client::new(policy, &seeds[..1]).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.node_names().len() < nodes {
        assert!(Instant::now() < deadline, "client found {} of {nodes} nodes", client.node_names().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Arc::new(client)
}

/// Writes keys `range` (bin `v` = the key number) with `in_flight` requests at once; returns
/// the acknowledged keys and the number of errors.
async fn write_keys(client: &Arc<Client>, range: std::ops::Range<u64>, in_flight: usize) -> (Vec<u64>, u64) {
    let policy = WritePolicy { base: patient(), ..WritePolicy::default() };
    let results: Vec<(u64, bool)> = futures::stream::iter(range)
        .map(|i| {
            let (client, policy) = (Arc::clone(client), policy.clone());
            async move {
                let r = client.put(&policy, &key(i), &[Bin::new("v", i as i64)]).await;
                if let Err(e) = &r {
                    // The first few, so a failure says what went wrong without flooding.
                    if ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < 10 {
                        eprintln!("write k{i}: {e}");
                    }
                }
                (i, r.is_ok())
            }
        })
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let acked: Vec<u64> = results.iter().filter(|(_, ok)| *ok).map(|(i, _)| *i).collect();
    let errors = (results.len() - acked.len()) as u64;
    (acked, errors)
}

/// Reads every key in `keys`; returns those missing or wrong.
async fn missing(client: &Arc<Client>, keys: &[u64], in_flight: usize) -> Vec<u64> {
    let policy = ReadPolicy { base: patient() };
    futures::stream::iter(keys.to_vec())
        .map(|i| {
            let (client, policy) = (Arc::clone(client), policy.clone());
            async move {
                match client.get(&policy, &key(i), Bins::All).await {
                    Ok(r) if r.bin("v").and_then(Value::as_int) == Some(i as i64) => None,
                    other => {
                        // The first few, so a failure says whether the record is gone or
                        // was only unreachable.
                        if READ_ERRORS_SHOWN.fetch_add(1, Ordering::Relaxed) < 10 {
                            eprintln!("read k{i}: {:?}", other.map(|r| r.bin("v").cloned()));
                        }
                        Some(i)
                    }
                }
            }
        })
        .buffer_unordered(in_flight)
        .filter_map(|m| async move { m })
        .collect()
        .await
}

#[test]
fn a_killed_node_loses_no_acknowledged_write_and_copies_are_restored() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&cluster, 3).await;
        const RECORDS: u64 = 100_000;
        let (acked, errors) = write_keys(&client, 0..RECORDS, 64).await;
        assert_eq!(errors, 0, "writes failed on a healthy cluster");
        assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * RECORDS);
        assert_eq!(cluster.node_stats("proxied_requests").iter().sum::<u64>(), 0, "the client routes to masters");

        cluster.kill9(1);
        let killed = Instant::now();
        // Every acknowledged record is readable through the client while the cluster heals.
        let lost = missing(&client, &acked, 64).await;
        assert!(
            lost.is_empty(),
            "{} acknowledged records unreadable, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!("all {} records read back {:?} after the kill", acked.len(), killed.elapsed());
        let settled = cluster.wait_settled(2, Duration::from_secs(60));
        eprintln!("two-node cluster settled {:?} after the kill", settled);
        // Two copies of every record again, and nothing left behind.
        assert_two_copies_on_owners(&cluster, RECORDS);
        let lost = missing(&client, &acked, 64).await;
        assert!(lost.is_empty(), "{} records lost after migrations", lost.len());
    });
}

/// Every record has two copies, and every copy sits on an owner of its partition.
fn assert_two_copies_on_owners(cluster: &TestCluster, records: u64) {
    assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * records, "two copies of each record");
    assert_eq!(cluster.sum_ns_stat("test", "non_replica_objects"), 0, "copies left on non-owners");
}

/// Master partitions per node, from each node's `replicas-master` bitmap.
fn master_counts(cluster: &TestCluster) -> Vec<u32> {
    cluster
        .running()
        .map(|p| {
            let a = info(p.addr, "replicas-master");
            let b64 = a.split(':').nth(1).expect("test:bitmap");
            let bits = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
            bits.iter().map(|b| b.count_ones()).sum()
        })
        .collect()
}

#[test]
fn a_fourth_node_joins_from_one_seed_and_the_masters_balance() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = connect(&cluster, 3).await;
        const RECORDS: u64 = 20_000;
        let (acked, errors) = write_keys(&client, 0..RECORDS, 32).await;
        assert_eq!(errors, 0);
        cluster.add_node();
        let took = cluster.wait_settled(4, Duration::from_secs(60));
        eprintln!("fourth node joined and migrations finished in {took:?}");
        let masters = master_counts(&cluster);
        assert_eq!(masters.iter().sum::<u32>(), 4096, "one master per partition: {masters:?}");
        let (min, max) = (*masters.iter().min().expect("nodes"), *masters.iter().max().expect("nodes"));
        let mean = 4096.0 / masters.len() as f64;
        assert!(f64::from(max - min) <= 0.10 * mean, "masters per node not within 10 %: {masters:?}");
        assert_two_copies_on_owners(&cluster, RECORDS);
        assert!(missing(&client, &acked, 32).await.is_empty());
    });
}

#[test]
fn a_rolling_restart_under_load_loses_no_acknowledged_write() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = runtime();
    let client = rt.block_on(connect(&cluster, 3));
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    // When each chunk of 256 keys was done, to place a lost key in the nodes' logs.
    let chunks: Arc<Mutex<Vec<(u64, std::time::SystemTime)>>> = Arc::default();
    // A steady writer: new keys, 16 at a time, each write acknowledged or counted as an error.
    let writer = {
        let (client, stop, errors, acked, chunks) =
            (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&errors), Arc::clone(&acked), Arc::clone(&chunks));
        rt.spawn(async move {
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (ok, failed) = write_keys(&client, next..next + 256, 16).await;
                chunks.lock().expect("chunks").push((next, std::time::SystemTime::now()));
                next += 256;
                errors.fetch_add(failed, Ordering::Relaxed);
                acked.lock().expect("acked").extend(ok);
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    for i in 0..3 {
        cluster.stop(i);
        cluster.wait_settled(2, Duration::from_secs(60));
        cluster.restart(i);
        cluster.wait_settled(3, Duration::from_secs(60));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    rt.block_on(writer).expect("writer");
    let acked = acked.lock().expect("acked").clone();
    let errors = errors.load(Ordering::Relaxed);
    eprintln!("rolling restart: {} writes acknowledged, {errors} client errors", acked.len());
    assert!(acked.len() > 1000, "the load kept running: {} writes", acked.len());
    let unique: HashSet<u64> = acked.iter().copied().collect();
    assert_eq!(unique.len(), acked.len());
    let lost = rt.block_on(missing(&client, &acked, 32));
    for k in lost.iter().take(5) {
        let chunk = chunks.lock().expect("chunks").iter().find(|(start, _)| k - k % 256 == *start).map(|c| c.1);
        eprintln!("lost k{k}: its chunk of 256 was done at {chunk:?}");
    }
    assert!(lost.is_empty(), "{} acknowledged writes lost, e.g. {:?}", lost.len(), &lost[..lost.len().min(5)]);
    assert_eq!(cluster.sum_ns_stat("test", "non_replica_objects"), 0);
}
