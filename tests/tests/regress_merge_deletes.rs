//! Guards against deletes undone by a merge: a node stalled past the node timeout keeps its
//! copies, and records the rest of the cluster deleted meanwhile came back when the node
//! resumed and its copies were merged (the merge took them for records the other copies
//! lacked). Deletes now leave marks that travel with their partitions, so the older copies
//! are not stored again, and the stalled node's own copies of them are deleted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::{info, petreld_path};

const RECORDS: u64 = 2_000;

fn key(i: u64) -> Key {
    Key::new("test", "merge", format!("m{i}")).expect("key")
}

fn patient() -> policy::BasePolicy {
    policy::BasePolicy {
        total_timeout: Duration::from_secs(10),
        max_retries: 40,
        sleep_between_retries: Duration::from_millis(100),
        ..policy::BasePolicy::default()
    }
}

async fn connect(seed: &str) -> Arc<Client> {
    let policy = ClientPolicy { tend_interval: Duration::from_millis(200), ..ClientPolicy::default() };
    Arc::new(Client::new(policy, &[seed]).await.expect("connect"))
}

/// Waits (bounded) until the nodes at `addrs` report a settled cluster of `size`.
fn settled(addrs: &[std::net::SocketAddr], size: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answers: Vec<String> = addrs.iter().map(|a| info(*a, &format!("cluster-stable:size={size}"))).collect();
        if answers.iter().all(|a| !a.starts_with("ERROR")) && answers.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        assert!(Instant::now() < deadline, "not settled at size {size}: {answers:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn records_deleted_while_a_node_stalled_stay_deleted_after_its_copies_merge() {
    let mut cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let seed = cluster.seeds()[0].clone();
    let write = WritePolicy { base: patient(), ..WritePolicy::default() };
    rt.block_on(async {
        let c = connect(&seed).await;
        futures::stream::iter(0..RECORDS)
            .map(|i| {
                let (c, write) = (Arc::clone(&c), write.clone());
                async move { c.put(&write, &key(i), &[Bin::new("v", i as i64)]).await.expect("put") }
            })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    });
    // Node 2 stalls past the node timeout: the other two take its partitions over.
    let majority = [cluster.specs[0].service, cluster.specs[1].service];
    cluster.pause(2);
    settled(&majority, 2);
    let deleted: Vec<u64> = (0..RECORDS).filter(|i| i % 4 == 0).collect();
    rt.block_on(async {
        let c = connect(&seed).await;
        for &i in &deleted {
            c.delete(&write, &key(i)).await.expect("delete");
        }
    });
    cluster.resume(2);
    cluster.wait_settled(3, Duration::from_secs(60));
    let read = ReadPolicy { base: patient() };
    let back: Vec<u64> = rt.block_on(async {
        let c = connect(&seed).await;
        futures::stream::iter(deleted.clone())
            .map(|i| {
                let (c, read) = (Arc::clone(&c), read.clone());
                async move {
                    match c.get(&read, &key(i), Bins::All).await {
                        Err(e) if e.is_not_found() => None,
                        Ok(_) => Some(i),
                        Err(e) => panic!("read m{i}: {e}"),
                    }
                }
            })
            .buffer_unordered(16)
            .filter_map(|m| async move { m })
            .collect()
            .await
    });
    assert!(
        back.is_empty(),
        "{} of {} deleted records came back, e.g. {:?}",
        back.len(),
        deleted.len(),
        &back[..back.len().min(5)]
    );
    let kept = RECORDS - deleted.len() as u64;
    assert_eq!(cluster.sum_ns_stat("test", "objects"), 2 * kept, "copies of deleted records left on some node");
    cluster.stop_together(&[0, 1, 2], Duration::from_secs(20));
}
