//! Petrel's Rust smart client against a real petreld: every operation and every error path.

use std::time::{Duration, Instant};

use petrel_client::operation::{lists, maps};
use petrel_client::policy::BasePolicy;
use petrel_client::*;
use petrel_tests::{petreld_path, stat, Petreld};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn key(set: &str, k: impl Into<Value>) -> Key {
    Key::new("test", set, k).expect("key")
}

#[test]
fn operations_and_error_paths() {
    let server = Petreld::start(&petreld_path!(), &[], &[("PETREL_NAMESPACE__TEST__MAX_RECORD_SIZE", "4096")]);
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new(ClientPolicy::default(), &[&server.seed()]).await.expect("connect");
        assert_eq!(client.node_names().len(), 1);
        let wp = WritePolicy::default();
        let rp = ReadPolicy::default();

        // Put and get of every type.
        let k = key("demo", "k1");
        let bins = vec![
            Bin::new("i", 7),
            Bin::new("f", 1.5),
            Bin::new("s", "hé"),
            Bin::new("b", vec![0u8, 255]),
            Bin::new("t", true),
            Bin::new("l", Value::List(vec![Value::Int(1), "a".into(), Value::List(vec![Value::Int(2)])])),
            Bin::new("m", Value::Map(vec![("a".into(), Value::Int(2)), ("z".into(), Value::Int(1))])),
            Bin::new("g", Value::GeoJson("{\"type\":\"Point\",\"coordinates\":[1,2]}".into())),
        ];
        client.put(&wp, &k, &bins).await.expect("put");
        let rec = client.get(&rp, &k, Bins::All).await.expect("get");
        assert_eq!(rec.generation, 1);
        assert_eq!(rec.ttl_secs(), None, "default TTL never expires");
        for b in &bins {
            assert_eq!(rec.bin(&b.name), Some(&b.value), "bin {}", b.name);
        }
        let rec = client.get(&rp, &k, Bins::Some(&["i", "s", "nope"])).await.expect("select");
        assert_eq!(rec.bins.len(), 2);
        let rec = client.get(&rp, &k, Bins::None).await.expect("header");
        assert!(rec.bins.is_empty() && rec.generation == 1);
        assert!(client.exists(&rp, &k).await.expect("exists"));
        assert!(!client.exists(&rp, &key("demo", "missing")).await.expect("exists"));
        let err = client.get(&rp, &key("demo", "missing"), Bins::All).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");

        // Operate: add, append, list and map operations, reads.
        let ops = [
            Operation::add(&Bin::new("i", 2)),
            Operation::append(&Bin::new("s", "!")),
            lists::append("l", &Value::Int(9)),
            maps::put("m", &"q".into(), &Value::Int(5)),
            Operation::get("i"),
            Operation::get("s"),
            lists::size("l"),
            maps::get_by_key("m", &"q".into(), ReturnType::Value),
        ];
        let rec = client.operate(&wp, &k, &ops).await.expect("operate");
        assert_eq!(rec.bin("i"), Some(&Value::Int(9)));
        assert_eq!(rec.bin("s"), Some(&Value::String("hé!".into())));
        // Modify ops answer too (list append: the new size; map put: the new size), so a bin
        // with two results gets both, in order.
        assert_eq!(rec.bin("l"), Some(&Value::List(vec![Value::Int(4), Value::Int(4)])));
        assert_eq!(rec.bin("m"), Some(&Value::List(vec![Value::Int(3), Value::Int(5)])));
        let rec = client.operate(&wp, &k, &[lists::get_range("l", 1, Some(2)), maps::size("m")]).await.expect("reads");
        assert_eq!(rec.bin("l"), Some(&Value::List(vec!["a".into(), Value::List(vec![Value::Int(2)])])));
        assert_eq!(rec.bin("m"), Some(&Value::Int(3)));

        // Error paths, each with its result code.
        let code = |e: Error| e.result_code();
        assert_eq!(code(client.operate(&wp, &k, &[Operation::add(&Bin::new("s", 1))]).await.unwrap_err()), Some(12));
        assert_eq!(code(client.operate(&wp, &k, &[lists::get("l", 100)]).await.unwrap_err()), Some(26));
        assert_eq!(code(client.operate(&wp, &k, &[lists::append("m", &Value::Int(1))]).await.unwrap_err()), Some(12));
        let gen_eq = WritePolicy { generation: GenerationPolicy::ExpectEqual(99), ..Default::default() };
        assert_eq!(code(client.put(&gen_eq, &k, &[Bin::new("x", 1)]).await.unwrap_err()), Some(3));
        let create = WritePolicy { exists: RecordExistsAction::CreateOnly, ..Default::default() };
        assert_eq!(code(client.put(&create, &k, &[Bin::new("x", 1)]).await.unwrap_err()), Some(5));
        let update_only = WritePolicy { exists: RecordExistsAction::UpdateOnly, ..Default::default() };
        assert_eq!(
            code(client.put(&update_only, &key("demo", "none"), &[Bin::new("x", 1)]).await.unwrap_err()),
            Some(2)
        );
        let long = client.put(&wp, &k, &[Bin::new("sixteen_chars_xx", 1)]).await.unwrap_err();
        assert!(matches!(long, Error::InvalidArgument(_)), "refused before sending: {long}");
        assert_eq!(code(client.put(&wp, &k, &[Bin::new("big", vec![0u8; 5000])]).await.unwrap_err()), Some(13));
        let other_ns = Key::new("nope", "demo", 1).expect("key");
        assert!(matches!(client.put(&wp, &other_ns, &[Bin::new("a", 1)]).await.unwrap_err(), Error::NoNode { .. }));

        // Send-key, touch, TTL, delete.
        let send_key = WritePolicy { send_key: true, ..Default::default() };
        client.put(&send_key, &key("keys", 42), &[Bin::new("a", 1)]).await.expect("put with key");
        let ttl = WritePolicy { expiration: Expiration::Seconds(100), ..Default::default() };
        client.touch(&ttl, &k).await.expect("touch");
        let rec = client.get(&rp, &k, Bins::None).await.expect("header");
        assert!(rec.ttl_secs().is_some_and(|t| (98..=100).contains(&t)));
        let short = WritePolicy { expiration: Expiration::Seconds(1), ..Default::default() };
        let kt = key("demo", "ttl");
        client.put(&short, &kt, &[Bin::new("a", 1)]).await.expect("put ttl");
        let deadline = Instant::now() + Duration::from_secs(5);
        while client.exists(&rp, &kt).await.expect("exists") {
            assert!(Instant::now() < deadline, "a 1 s record outlived 5 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(client.delete(&wp, &k).await.expect("delete"));
        assert!(!client.delete(&wp, &k).await.expect("delete again"));

        // Batch with missing keys.
        let keys: Vec<Key> = (0..50).map(|i| key("batch", i)).collect();
        for k in keys.iter().step_by(2) {
            client.put(&wp, k, &[Bin::new("v", k.user_key.clone().unwrap_or(Value::Nil))]).await.expect("put");
        }
        let got = client.batch_get(&BatchPolicy::default(), &keys, Bins::All).await.expect("batch");
        assert_eq!(got.len(), 50);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.is_some(), i % 2 == 0, "row {i}");
            if let Some(r) = r {
                assert_eq!(r.bin("v"), Some(&Value::Int(i as i64)));
            }
        }

        // Scan a set as a stream; stored keys come back.
        for i in 0..300 {
            client.put(&send_key, &key("scan", i), &[Bin::new("v", i)]).await.expect("put");
        }
        let mut stream = client.scan(&ScanPolicy::default(), "test", "scan", Bins::All).await.expect("scan");
        let mut seen = Vec::new();
        while let Some(r) = stream.next().await {
            let r = r.expect("record");
            seen.push(r.key.and_then(|k| k.user_key).and_then(|v| v.as_int()).expect("key"));
        }
        seen.sort();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        // Info and truncate through the client.
        let answers = client.info(None, &["status", "namespaces", "logs"]).await.expect("info");
        assert_eq!(
            answers,
            vec![
                ("status".to_string(), "ok".to_string()),
                ("namespaces".to_string(), "test".to_string()),
                ("logs".to_string(), "0:stderr".to_string())
            ]
        );
        client.truncate("test", Some("batch"), None).await.expect("truncate");
        assert!(client
            .batch_get(&BatchPolicy::default(), &keys, Bins::None)
            .await
            .expect("batch")
            .iter()
            .all(Option::is_none));
        assert_eq!(client.truncate("nope", None, None).await.unwrap_err().result_code(), Some(20));
        let limited = ScanPolicy { max_records: 10, ..Default::default() };
        let mut stream = client.scan(&limited, "test", "scan", Bins::None).await.expect("scan");
        let mut n = 0;
        while let Some(r) = stream.next().await {
            r.expect("record");
            n += 1;
        }
        assert_eq!(n, 10);
    });
}

#[test]
fn dead_node_gives_errors_not_hangs() {
    let rt = runtime();
    rt.block_on(async {
        let port = petrel_tests::free_port();
        let policy = ClientPolicy { connect_timeout: Duration::from_millis(300), ..Default::default() };
        let started = Instant::now();
        let err = Client::new(policy, &[&format!("127.0.0.1:{port}")]).await.unwrap_err();
        assert!(matches!(err, Error::Io(_) | Error::Connect(_) | Error::Timeout), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    });

    // A server that goes away mid-life: calls fail within their budget.
    let mut server = Petreld::start(&petreld_path!(), &[], &[]);
    let runtime = runtime();
    runtime.block_on(async {
        let client = Client::new(ClientPolicy::default(), &[&server.seed()]).await.expect("connect");
        let k = key("demo", 1);
        client.put(&WritePolicy::default(), &k, &[Bin::new("a", 1)]).await.expect("put");
        assert_eq!(server.terminate(Duration::from_secs(10)).map(|s| s.success()), Some(true), "clean exit on SIGTERM");
        let rp = ReadPolicy { base: BasePolicy { total_timeout: Duration::from_millis(500), ..Default::default() } };
        let started = Instant::now();
        assert!(client.get(&rp, &k, Bins::All).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn concurrent_clients_leak_no_connections() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let before: u64 =
        stat(&server.info("statistics"), "client_connections").and_then(|v| v.parse().ok()).expect("stat");
    let rt = runtime();
    let seconds: u64 = std::env::var("PETREL_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let errors = rt.block_on(async {
        let mut tasks = Vec::new();
        for c in 0..32u32 {
            let seed = server.seed();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::new(ClientPolicy::default(), &[&seed]).await.expect("connect");
                let wp = WritePolicy::default();
                let rp = ReadPolicy::default();
                let end = Instant::now() + Duration::from_secs(seconds);
                let mut errors = 0u64;
                let mut i = 0i64;
                while Instant::now() < end {
                    let k = key("soak", (c as i64) * 1_000_000 + (i % 1000));
                    if client.put(&wp, &k, &[Bin::new("v", i)]).await.is_err() {
                        errors += 1;
                    }
                    match client.get(&rp, &k, Bins::All).await {
                        Ok(r) if r.bin("v") == Some(&Value::Int(i)) => {}
                        _ => errors += 1,
                    }
                    i += 1;
                }
                client.close();
                errors
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        total
    });
    assert_eq!(errors, 0);
    // Connections close asynchronously; wait (bounded) for the count to come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now: u64 =
            stat(&server.info("statistics"), "client_connections").and_then(|v| v.parse().ok()).expect("stat");
        // The info connection used to ask is itself counted.
        if now <= before {
            break;
        }
        assert!(Instant::now() < deadline, "client_connections stayed at {now}, started at {before}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn filter_expressions_on_reads_writes_batches_and_scans() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let rt = runtime();
    rt.block_on(async {
        let client = Client::new(ClientPolicy::default(), &[&server.seed()]).await.expect("connect");
        for i in 0..20i64 {
            client.put(&WritePolicy::default(), &key("exp", i), &[Bin::new("n", i)]).await.expect("put");
        }
        let at_least_10 = FilterExp::ge(FilterExp::int_bin("n"), FilterExp::int(10));
        let base = BasePolicy { filter_expression: Some(at_least_10.clone()), ..BasePolicy::default() };
        let filtered_out = |r: Result<Record, Error>| matches!(r, Err(Error::Server { code: 27 }));

        let rp = ReadPolicy { base: base.clone() };
        assert!(filtered_out(client.get(&rp, &key("exp", 5), Bins::All).await));
        let rec = client.get(&rp, &key("exp", 15), Bins::All).await.expect("passes");
        assert_eq!(rec.bins.get("n"), Some(&Value::Int(15)));

        // A write to a record that does not pass changes nothing.
        let wp = WritePolicy { base: base.clone(), ..WritePolicy::default() };
        let put = client.put(&wp, &key("exp", 3), &[Bin::new("n", 100)]).await;
        assert!(matches!(put, Err(Error::Server { code: 27 })), "{put:?}");
        let rec = client.get(&ReadPolicy::default(), &key("exp", 3), Bins::All).await.expect("get");
        assert_eq!(rec.bins.get("n"), Some(&Value::Int(3)));

        let keys: Vec<Key> = (0..20i64).map(|i| key("exp", i)).collect();
        let rows = client.batch_get(&BatchPolicy { base: base.clone() }, &keys, Bins::All).await.expect("batch");
        let passed: Vec<usize> = rows.iter().enumerate().filter(|(_, r)| r.is_some()).map(|(i, _)| i).collect();
        assert_eq!(passed, (10..20).collect::<Vec<_>>());

        let sp = ScanPolicy {
            base: BasePolicy { filter_expression: Some(!at_least_10), ..BasePolicy::default() },
            ..ScanPolicy::default()
        };
        let mut stream = client.scan(&sp, "test", "exp", Bins::All).await.expect("scan");
        let mut seen = Vec::new();
        while let Some(rec) = stream.next().await {
            match rec.expect("record").bins.get("n") {
                Some(Value::Int(n)) => seen.push(*n),
                other => panic!("bin n: {other:?}"),
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>(), "not (n >= 10)");
    });
}
