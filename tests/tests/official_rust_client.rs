//! The official Aerospike Rust client (`aerospike` 3.0.0 from crates.io, protocol code in
//! `aerospike-core` 3.0.0), unchanged, against a real petreld: connect and cluster discovery,
//! put/get of every common bin type with generations, selected bins, exists, operate (scalar,
//! list and map operations with one result per op), delete, a batch read with missing keys, a
//! whole-namespace query (scan) of one set with stored keys, and the KeyExists and Generation
//! result codes. Every call is bounded by the client's own timeouts and by an outer deadline.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aerospike::operations::{self, lists, maps};
use aerospike::{
    BatchOperation, BatchPolicy, BatchReadPolicy, Bin, Bins, Client, ClientPolicy, GenerationPolicy, Key, ListPolicy,
    MapPolicy, MapReturnType, PartitionFilter, QueryPolicy, ReadPolicy, RecordExistsAction, ResultCode, Statement,
    Value, WritePolicy,
};
use futures::StreamExt;
use petrel_tests::{petreld_path, stat, Petreld};

/// Outer bound on each test's whole client session.
const SESSION_LIMIT: Duration = Duration::from_secs(120);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Runs `session` on a fresh runtime, failing the test if it takes longer than `SESSION_LIMIT`.
fn run<F: Future<Output = ()>>(session: F) {
    runtime().block_on(async {
        tokio::time::timeout(SESSION_LIMIT, session).await.expect("client session exceeded its time limit");
    });
}

fn key(set: &str, k: impl Into<Value>) -> Key {
    Key::new("test", set, k.into()).expect("key")
}

async fn connect(server: &Petreld) -> Client {
    let client = Client::new(&ClientPolicy::default(), &server.seed()).await.expect("official client connects");
    assert!(client.is_connected(), "client reports itself connected");
    assert_eq!(client.node_names().len(), 1, "one node discovered: {:?}", client.node_names());
    client
}

fn objects(server: &Petreld) -> u64 {
    stat(&server.info("namespace/test"), "objects").and_then(|v| v.parse().ok()).expect("objects stat")
}

#[test]
fn records_and_operate() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    run(async {
        let client = connect(&server).await;
        let wp = WritePolicy::default();
        let rp = ReadPolicy::default();

        // 2. Put and get back several bin types.
        let k = key("official", "k1");
        let list = Value::List(vec![Value::Int(1), Value::from("a"), Value::List(vec![Value::Int(2)])]);
        let map = Value::HashMap(HashMap::from([(Value::from("a"), Value::Int(2)), (Value::from("z"), Value::Int(1))]));
        let bins = vec![
            Bin::new("i", Value::Int(7)),
            Bin::new("s", Value::from("hé")),
            Bin::new("f", Value::from(1.5f64)),
            Bin::new("b", Value::Blob(vec![0, 1, 255])),
            Bin::new("l", list.clone()),
            Bin::new("m", map.clone()),
        ];
        client.put(&wp, &k, &bins).await.expect("put");
        let rec = client.get(&rp, &k, Bins::All).await.expect("get all bins");
        assert_eq!(rec.generation, 1, "first write is generation 1");
        assert_eq!(rec.time_to_live(), None, "namespace default TTL never expires");
        assert_eq!(rec.bins.len(), bins.len(), "bins: {:?}", rec.bins);
        for b in &bins {
            assert_eq!(rec.bins.get(&b.name), Some(&b.value), "bin {}", b.name);
        }
        client.put(&wp, &k, &[Bin::new("i", Value::Int(7))]).await.expect("rewrite");
        let rec = client.get(&rp, &k, Bins::None).await.expect("header only");
        assert!(rec.bins.is_empty(), "header read returns no bins: {:?}", rec.bins);
        assert_eq!(rec.generation, 2, "second write bumps the generation");

        // 3. Selected bins; exists.
        let rec = client.get(&rp, &k, ["i", "s", "nope"]).await.expect("get selected bins");
        assert_eq!(rec.bins.len(), 2, "only existing selected bins: {:?}", rec.bins);
        assert_eq!(rec.bins.get("i"), Some(&Value::Int(7)));
        assert_eq!(rec.bins.get("s"), Some(&Value::from("hé")));
        assert!(client.exists(&rp, &k).await.expect("exists"), "written key exists");
        let missing = key("official", "missing");
        assert!(!client.exists(&rp, &missing).await.expect("exists missing"), "missing key does not exist");
        let err = client.get(&rp, &missing, Bins::All).await.expect_err("get of a missing key fails");
        assert_eq!(err.server_result_code(), Some(ResultCode::KeyNotFoundError), "{err}");

        // 4. Operate: scalar add + append + get, a list and a map operation each way. The client
        // sets RESPOND_ALL_OPS because the call writes, so every op has one positional result.
        let ops = [
            operations::add(&Bin::new("i", Value::Int(2))),
            operations::append(&Bin::new("s", Value::from("!"))),
            operations::get_bin("i"),
            operations::get_bin("s"),
            lists::append(&ListPolicy::default(), "l", Value::Int(9)),
            lists::size("l"),
            maps::put(&MapPolicy::default(), "m", Value::from("q"), Value::Int(5)),
            maps::get_by_key("m", Value::from("q"), MapReturnType::VALUE),
        ];
        let rec = client.operate(&wp, &k, &ops).await.expect("operate");
        assert_eq!(rec.generation, 3, "operate with writes bumps the generation");
        let expected = vec![
            Value::Nil,         // add
            Value::Nil,         // append
            Value::Int(9),      // get i
            Value::from("hé!"), // get s
            Value::Int(4),      // list append: new size
            Value::Int(4),      // list size
            Value::Int(3),      // map put: new size
            Value::Int(5),      // map get by key: value
        ];
        assert_eq!(rec.results.as_ref(), Some(&expected), "positional operate results");
        assert_eq!(rec.bins.get("i"), Some(&Value::MultiResult(vec![Value::Nil, Value::Int(9)])));
        assert_eq!(rec.bins.get("s"), Some(&Value::MultiResult(vec![Value::Nil, Value::from("hé!")])));
        assert_eq!(rec.bins.get("l"), Some(&Value::MultiResult(vec![Value::Int(4), Value::Int(4)])));
        assert_eq!(rec.bins.get("m"), Some(&Value::MultiResult(vec![Value::Int(3), Value::Int(5)])));

        // Read-only operate (no RESPOND_ALL_OPS needed for list reads; map reads still set it).
        let ops = [lists::get_range("l", 1, 2), lists::get("l", -1), maps::size("m"), operations::get_bin("f")];
        let rec = client.operate(&wp, &k, &ops).await.expect("read-only operate");
        assert_eq!(rec.generation, 3, "reads do not bump the generation");
        assert_eq!(
            rec.bins.get("l"),
            Some(&Value::MultiResult(vec![
                Value::List(vec![Value::from("a"), Value::List(vec![Value::Int(2)])]),
                Value::Int(9),
            ]))
        );
        assert_eq!(rec.bins.get("m"), Some(&Value::Int(3)));
        assert_eq!(rec.bins.get("f"), Some(&Value::from(1.5f64)));
        let rec = client.get(&rp, &k, ["m"]).await.expect("get map");
        let mut want = HashMap::from([(Value::from("a"), Value::Int(2)), (Value::from("z"), Value::Int(1))]);
        want.insert(Value::from("q"), Value::Int(5));
        assert_eq!(rec.bins.get("m"), Some(&Value::HashMap(want)), "map after put");

        // 5. Delete: true, then false for the now missing key.
        assert_eq!(objects(&server), 1);
        assert!(client.delete(&wp, &k).await.expect("delete"), "delete of an existing key reports true");
        assert!(!client.delete(&wp, &k).await.expect("delete again"), "delete of a missing key reports false");
        assert!(!client.exists(&rp, &k).await.expect("exists after delete"));
        assert_eq!(objects(&server), 0);

        client.close().await.expect("close");
    });
}

#[test]
fn batch_and_scan() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    run(async {
        let client = connect(&server).await;
        let wp = WritePolicy::default();

        // 6. Batch read of 20 keys, the even 10 of which exist.
        let keys: Vec<Key> = (0..20i64).map(|i| key("batch", i)).collect();
        for (i, k) in keys.iter().enumerate().step_by(2) {
            client.put(&wp, k, &[Bin::new("v", Value::Int(i as i64))]).await.expect("batch put");
        }
        let brp = BatchReadPolicy::default();
        let mut ops: Vec<BatchOperation> =
            keys.iter().map(|k| BatchOperation::read(&brp, k.clone(), Bins::All)).collect();
        client.batch(&BatchPolicy::default(), &mut ops).await.expect("batch read");
        for (i, op) in ops.iter().enumerate() {
            if i % 2 == 0 {
                assert_eq!(op.result_code(), Some(ResultCode::Ok), "row {i}");
                let rec = op.record().unwrap_or_else(|| panic!("row {i} found"));
                assert_eq!(rec.bins.get("v"), Some(&Value::Int(i as i64)), "row {i}");
                assert_eq!(rec.generation, 1, "row {i}");
            } else {
                assert_eq!(op.result_code(), Some(ResultCode::KeyNotFoundError), "row {i}");
                assert!(op.record().is_none(), "row {i} not found");
            }
        }

        // 7. Query the whole namespace (all partitions) for one set of 100 records written with
        // send-key: all 100 come back, with their user keys, and nothing from other sets.
        let send_key = WritePolicy { send_key: true, ..WritePolicy::default() };
        for i in 0..100i64 {
            client.put(&send_key, &key("scan", i), &[Bin::new("v", Value::Int(i * 10))]).await.expect("scan put");
        }
        let mut qp = QueryPolicy::default();
        qp.base_policy.total_timeout = 10_000;
        let recordset = client
            .query(&qp, PartitionFilter::all(), Statement::new("test", "scan", Bins::All))
            .await
            .expect("start query");
        let mut stream = recordset.into_stream();
        let mut seen = Vec::new();
        while let Some(r) = stream.next().await {
            let rec = r.expect("query record");
            let k = rec.key.as_ref().expect("query returns the key");
            assert_eq!(k.set_name(), "scan");
            let Some(&Value::Int(i)) = k.user_key() else { panic!("stored user key missing: {k:?}") };
            assert_eq!(rec.bins.get("v"), Some(&Value::Int(i * 10)), "record {i}");
            seen.push(i);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>(), "every record of the set, once");

        client.close().await.expect("close");
    });
}

#[test]
fn result_codes() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    run(async {
        let client = connect(&server).await;
        let k = key("official", "codes");
        client.put(&WritePolicy::default(), &k, &[Bin::new("a", Value::Int(1))]).await.expect("put");

        // 8. Create-only on an existing key: KeyExists.
        let create_only =
            WritePolicy { record_exists_action: RecordExistsAction::CreateOnly, ..WritePolicy::default() };
        let err = client.put(&create_only, &k, &[Bin::new("a", Value::Int(2))]).await.expect_err("create-only");
        assert_eq!(err.server_result_code(), Some(ResultCode::KeyExistsError), "{err}");
        client
            .put(&create_only, &key("official", "fresh"), &[Bin::new("a", Value::Int(1))])
            .await
            .expect("create-only on a new key");

        // Generation mismatch: Generation; the right generation succeeds.
        let gen = |generation| WritePolicy {
            generation_policy: GenerationPolicy::ExpectGenEqual,
            generation,
            ..WritePolicy::default()
        };
        let err = client.put(&gen(99), &k, &[Bin::new("a", Value::Int(3))]).await.expect_err("generation 99");
        assert_eq!(err.server_result_code(), Some(ResultCode::GenerationError), "{err}");
        client.put(&gen(1), &k, &[Bin::new("a", Value::Int(4))]).await.expect("expected generation 1");
        let rec = client.get(&ReadPolicy::default(), &k, Bins::All).await.expect("get");
        assert_eq!((rec.generation, rec.bins.get("a")), (2, Some(&Value::Int(4))), "neither failed write applied");

        client.close().await.expect("close");
    });
}
