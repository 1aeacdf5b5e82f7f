//! Secondary-index definitions across real processes: an index created through one node
//! reaches every member, a node that joins later, and a node that was down while indexes
//! were created and deleted (which must not bring a deleted index back); with a data
//! directory, definitions survive a SIGKILL and the index is rebuilt over the restored
//! records.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use petrel_client::*;
use petrel_tests::cluster::TestCluster;
use petrel_tests::{free_port, info, petreld_path, stat, Petreld};

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("petrel-sindex-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    Dir(d)
}

/// Waits (at most 20 s) until `check` holds for the answer of `command` on `addr`.
fn wait_for(addr: std::net::SocketAddr, command: &str, check: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        let answer = info(addr, command);
        if check(&answer) {
            return answer;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{addr} {command}: {answer}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const LIST: &str = "sindex-list:ns=test";

#[test]
fn definitions_reach_every_member_joiners_and_returning_nodes() {
    let root = temp_dir("catalog");
    let mut cluster = TestCluster::start_with_data(&petreld_path!(), 2, 2, &[], Some(root.0.clone()));
    let addr = |c: &TestCluster, i: usize| c.specs[i].service;
    let create_a = "sindex-create:ns=test;set=s;indexname=a;indexdata=n,NUMERIC";
    assert_eq!(info(addr(&cluster, 0), create_a), "ok");
    for i in 0..2 {
        wait_for(addr(&cluster, i), LIST, |l| l.contains("indexname=a:"));
    }
    // A node that joins afterwards takes the definition from its peers.
    let joiner = cluster.add_node();
    cluster.wait_settled(3, Duration::from_secs(30));
    wait_for(addr(&cluster, joiner), LIST, |l| l.contains("indexname=a:set=s:bin=n:type=numeric"));

    // Node 1 is away while `a` is deleted and `b` created.
    cluster.stop(1);
    cluster.wait_settled(2, Duration::from_secs(30));
    assert_eq!(info(addr(&cluster, 0), "sindex-delete:ns=test;indexname=a"), "ok");
    assert_eq!(info(addr(&cluster, 0), "sindex-create:ns=test;set=s;indexname=b;indexdata=s,STRING"), "ok");
    cluster.restart(1);
    cluster.wait_settled(3, Duration::from_secs(30));
    // It comes back holding `a` from its saved catalog, then learns of both changes.
    wait_for(addr(&cluster, 1), LIST, |l| l.contains("indexname=b:") && !l.contains("indexname=a:"));
    // Pulls run every second: give them a few rounds to (wrongly) spread `a` back.
    std::thread::sleep(Duration::from_secs(3));
    for i in 0..3 {
        let list = info(addr(&cluster, i), LIST);
        assert!(list.contains("indexname=b:") && !list.contains("indexname=a:"), "node {i}: {list}");
    }
}

#[test]
fn an_index_is_rebuilt_over_restored_records_after_sigkill() {
    let dir = temp_dir("restart");
    let data_dir = dir.0.to_str().expect("utf-8").to_string();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let c = Client::new(ClientPolicy::default(), &[addr.to_string().as_str()]).await.expect("connect");
        let w = WritePolicy::default();
        for i in 0..1000i64 {
            let key = Key::new("test", "s", i).expect("key");
            c.put(&w, &key, &[Bin::new("n", i % 10)]).await.expect("put");
        }
    });
    assert_eq!(info(addr, "sindex-create:ns=test;set=s;indexname=by_n;indexdata=n,NUMERIC"), "ok");
    let built = wait_for(addr, "sindex/test/by_n", |s| s.contains("load_pct=100"));
    assert_eq!(stat(&built, "entries").as_deref(), Some("1000"), "{built}");
    node.kill9();
    let _node = Petreld::start_at(&petreld_path!(), addr, &["--data-dir", &data_dir], &[]);
    assert!(info(addr, LIST).contains("indexname=by_n:set=s:bin=n"));
    let rebuilt = wait_for(addr, "sindex/test/by_n", |s| s.contains("load_pct=100"));
    assert_eq!(stat(&rebuilt, "entries").as_deref(), Some("1000"), "{rebuilt}");
}

#[test]
fn the_rust_client_queries_every_master_of_a_cluster() {
    use std::collections::BTreeSet;

    let cluster = TestCluster::start(&petreld_path!(), 3, 2, &[]);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let seeds = cluster.seeds();
        let seeds: Vec<&str> = seeds.iter().map(String::as_str).collect();
        let c = Client::new(ClientPolicy::default(), &seeds).await.expect("connect");
        let w = WritePolicy::default();
        for i in 0..2000i64 {
            let key = Key::new("test", "q", i).expect("key");
            let tags = Value::List(vec![Value::Int(i % 7), Value::Int(100 + i % 3)]);
            c.put(&w, &key, &[Bin::new("n", i), Bin::new("tags", tags), Bin::new("s", format!("g{}", i % 10))])
                .await
                .expect("put");
        }
        let t = Duration::from_secs(20);
        c.create_index("test", "q", "q_n", "n", IndexType::Numeric, CollectionType::Default, t).await.expect("index n");
        c.create_index("test", "q", "q_s", "s", IndexType::String, CollectionType::Default, t).await.expect("index s");
        c.create_index("test", "q", "q_tags", "tags", IndexType::Numeric, CollectionType::List, t)
            .await
            .expect("index tags");
        let run = |filter: IndexFilter| {
            let c = &c;
            async move {
                let mut stream = c.query(&ScanPolicy::default(), "test", "q", Bins::All, &filter).await.expect("query");
                let mut seen = BTreeSet::new();
                while let Some(r) = stream.next().await {
                    let r = r.expect("record");
                    let Some(Value::Int(n)) = r.bin("n") else { panic!("no n: {r:?}") };
                    assert!(seen.insert(*n), "record {n} answered twice");
                }
                seen
            }
        };
        assert_eq!(run(IndexFilter::range("n", 100, 149)).await, (100..150).collect());
        assert_eq!(run(IndexFilter::equal_str("s", "g3")).await, (0..2000).filter(|i| i % 10 == 3).collect());
        let tagged = run(IndexFilter::equal_int("tags", 102).in_collection(CollectionType::List)).await;
        assert_eq!(tagged, (0..2000).filter(|i| i % 3 == 2).collect());
        // No index on `s` as a number: the server answers 201 and nothing is returned as found.
        let mut none = c
            .query(&ScanPolicy::default(), "test", "q", Bins::All, &IndexFilter::equal_int("s", 1))
            .await
            .expect("query");
        let first = none.next().await.expect("an answer");
        assert!(matches!(first, Err(Error::Server { code: 201 })), "{first:?}");
        c.drop_index("test", "q_n").await.expect("drop");
    });
}
