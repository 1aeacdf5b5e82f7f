//! Graceful leave on loopback: two of four nodes (replication factor 2) get SIGTERM at the
//! same moment, as a scale-down does, while a client keeps writing. Each hands its
//! partitions to the members that stay before it exits, so no record is lost, although
//! about a sixth of the partitions had both their copies on the two leaving nodes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petrel_client::policy::BasePolicy;
use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::{info, petreld_path, stat};

fn key(i: u64) -> Key {
    Key::new("test", "leave", format!("k{i}")).expect("key")
}

fn policy() -> BasePolicy {
    BasePolicy {
        total_timeout: Duration::from_secs(10),
        socket_timeout: Duration::from_secs(2),
        max_retries: 40,
        sleep_between_retries: Duration::from_millis(100),
        ..BasePolicy::default()
    }
}

#[test]
fn two_nodes_leaving_at_once_lose_no_record() {
    let mut cluster = TestCluster::start(&petreld_path!(), 4, 2, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let seeds = cluster.seeds();
    let client = rt.block_on(async {
        let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        Arc::new(Client::new(policy, &seeds[..1]).await.expect("connect"))
    });
    let write = WritePolicy { base: policy(), ..WritePolicy::default() };
    const PRELOADED: u64 = 3000;
    rt.block_on(async {
        for chunk in (0..PRELOADED).collect::<Vec<_>>().chunks(100) {
            let puts = chunk.iter().map(|&i| {
                let (client, write) = (&client, &write);
                async move { client.put(write, &key(i), &[Bin::new("v", i as i64)]).await }
            });
            for r in futures::future::join_all(puts).await {
                r.expect("preload write");
            }
        }
    });
    // A writer that keeps going through the leave; what it was told is written must stay.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (client, stop, acked, write) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&acked), write.clone());
        rt.spawn(async move {
            let mut i = PRELOADED;
            let mut errors = 0u64;
            while !stop.load(Ordering::Relaxed) {
                match client.put(&write, &key(i), &[Bin::new("v", i as i64)]).await {
                    Ok(()) => acked.lock().expect("acked").push(i),
                    Err(_) => errors += 1,
                }
                i += 1;
            }
            errors
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let codes = cluster.stop_together(&[2, 3], Duration::from_secs(40));
    eprintln!("two nodes left in {:?} (exit codes {codes:?})", started.elapsed());
    assert_eq!(codes, [Some(0), Some(0)], "both leaving nodes exit cleanly");
    cluster.wait_settled(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let write_errors = rt.block_on(writer).expect("writer");
    let mut expected: Vec<u64> = (0..PRELOADED).collect();
    expected.extend(acked.lock().expect("acked").iter().copied());
    eprintln!("{} writes during the leave, {write_errors} errors", expected.len() as u64 - PRELOADED);
    let read = ReadPolicy { base: policy() };
    let lost: Vec<u64> = rt.block_on(async {
        let mut lost = Vec::new();
        for chunk in expected.chunks(200) {
            let gets = chunk.iter().map(|&i| {
                let (client, read) = (&client, &read);
                async move { client.get(read, &key(i), Bins::All).await }
            });
            for (&i, r) in chunk.iter().zip(futures::future::join_all(gets).await) {
                let ok = r.is_ok_and(|rec| rec.bins.get("v") == Some(&Value::Int(i as i64)));
                if !ok {
                    lost.push(i);
                }
            }
        }
        lost
    });
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost, first {:?}",
        lost.len(),
        expected.len(),
        &lost[..lost.len().min(10)]
    );
    // Both copies of every record sit on the two nodes that stayed.
    let objects: u64 = cluster
        .running()
        .map(|p| stat(&info(p.addr, "namespace/test"), "objects").and_then(|v| v.parse().ok()).unwrap_or(0))
        .sum();
    assert_eq!(objects, 2 * expected.len() as u64, "two copies of each record");
}
