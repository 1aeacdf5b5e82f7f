//! Regression: after a record was updated more than 65 535 times its generation wrapped;
//! replica copies were judged older and dropped while the replica still acknowledged them;
//! when the master died, the survivor served the value from before the wrap.
//!
//! A two-node cluster (replication factor 2) takes 70 000 acknowledged increments of one
//! record, from several connections at once; then the node that masters the record's
//! partition is killed, and the survivor must serve exactly 70 000.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use petrel_client::policy::BasePolicy;
use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::{info, petreld_path};

/// Past 65 535, so that the generation wraps once, with a margin of a few thousand writes.
const INCREMENTS: u64 = 70_000;
/// Increments in flight at once: enough to keep both nodes busy in a debug build.
const IN_FLIGHT: usize = 32;
/// How long the survivor may take to serve the record after the kill: a node timeout and a
/// quantum, with room for a slow machine.
const TAKEOVER_MAX: Duration = Duration::from_secs(30);

/// Whether the node at `addr` publishes itself as master of partition `pid` of `test`.
fn masters(addr: std::net::SocketAddr, pid: u16) -> bool {
    let answer = info(addr, "replicas-master");
    let b64 = answer.split(':').nth(1).expect("test:bitmap");
    let bits = base64::engine::general_purpose::STANDARD.decode(b64.trim()).expect("base64");
    bits[pid as usize >> 3] & (0x80 >> (pid & 7)) != 0
}

#[test]
fn a_record_past_65535_generations_survives_its_master() {
    let started = Instant::now();
    let mut cluster = TestCluster::start(&petreld_path!(), 2, 2, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let key = Key::new("test", "wrap", "counter").expect("key");
    rt.block_on(async {
        let seeds = cluster.seeds();
        let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
        let client = Arc::new(Client::new(policy, &[seeds[0].as_str()]).await.expect("connect"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while client.node_names().len() < 2 {
            assert!(Instant::now() < deadline, "client found {:?}", client.node_names());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // No retries: a retried increment could count twice, and every write must be
        // acknowledged exactly once for the count to mean anything.
        let write = WritePolicy {
            base: BasePolicy { total_timeout: Duration::from_secs(10), max_retries: 0, ..BasePolicy::default() },
            ..WritePolicy::default()
        };
        let failures: Vec<String> = futures::stream::iter(0..INCREMENTS)
            .map(|_| {
                let (client, write, key) = (Arc::clone(&client), write.clone(), key.clone());
                async move { client.operate(&write, &key, &[Operation::add(&Bin::new("n", 1i64))]).await.err() }
            })
            .buffer_unordered(IN_FLIGHT)
            .filter_map(|e| async move { e.map(|e| e.to_string()) })
            .collect()
            .await;
        assert!(failures.is_empty(), "{} increments failed, e.g. {:?}", failures.len(), failures.first());
        eprintln!("{INCREMENTS} increments acknowledged after {:?}", started.elapsed());
    });

    let pid = key.partition_id();
    let master = (0..2).find(|&i| cluster.nodes[i].as_ref().is_some_and(|p| masters(p.addr, pid)));
    let master = master.expect("one node masters the record's partition");
    cluster.kill9(master);
    let killed = Instant::now();

    // The survivor serves reads from its copy at once; wait until it also masters the
    // partition, as it will once the cluster is down to it.
    let took_over = cluster.wait_settled(1, TAKEOVER_MAX);
    let survivor = cluster.seeds().pop().expect("a survivor");
    let value = rt.block_on(async {
        let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
        let client = Client::new(policy, &[survivor.as_str()]).await.expect("connect to the survivor");
        let read = ReadPolicy { base: BasePolicy { max_retries: 0, ..BasePolicy::default() } };
        // Bounded: the survivor takes the partition over within a node timeout and a quantum.
        loop {
            match client.get(&read, &key, Bins::All).await {
                Ok(r) => break r.bin("n").and_then(Value::as_int),
                Err(e) => {
                    assert!(killed.elapsed() < TAKEOVER_MAX, "the survivor did not serve the record: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    eprintln!(
        "the survivor took over after {took_over:?}, served the record {:?} after the kill; test took {:?}",
        killed.elapsed(),
        started.elapsed()
    );
    assert_eq!(value, Some(INCREMENTS as i64), "the survivor lost increments");
}
