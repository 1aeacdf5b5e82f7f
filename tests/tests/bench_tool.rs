//! A short `petrel-bench` run against a real petreld: a linear insert, then a mixed
//! workload, both with zero errors, and a JSON summary that adds up; the query workload.

use std::process::Command;

use petrel_tests::{petreld_path, stat, Petreld};

fn bench(args: &[&str]) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("petrel-bench-test-{}-{}", std::process::id(), args.join("_").len()));
    std::fs::create_dir_all(&dir).expect("dir");
    let json = dir.join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_petrel-bench-test"))
        .args(args)
        .arg("--output-json")
        .arg(&json)
        .arg("--hdr-hist")
        .arg(&dir)
        .output()
        .expect("run petrel-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "petrel-bench failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("Summary:"), "{stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    let _ = std::fs::remove_dir_all(&dir);
    summary
}

#[test]
fn insert_then_mixed_load_with_zero_errors() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let seed = server.seed();
    let s = bench(&["-h", &seed, "-w", "I", "-k", "5000", "-o", "I,S20", "-z", "8"]);
    let w = &s["ops"]["write"];
    assert_eq!(w["count"], 5000);
    assert_eq!(w["errors"], 0);
    assert_eq!(stat(&server.info("namespace/test"), "objects").as_deref(), Some("5000"));

    let s = bench(&[
        "-h",
        &seed,
        "-w",
        "RU,50",
        "-k",
        "5000",
        "-o",
        "I,S20",
        "-t",
        "2",
        "-z",
        "8",
        "--percentiles",
        "50,99",
    ]);
    for op in ["read", "write"] {
        let o = &s["ops"][op];
        assert!(o["count"].as_u64().is_some_and(|n| n > 100), "{op}: {o}");
        assert_eq!(o["errors"], 0, "{op}");
        assert_eq!(o["timeouts"], 0, "{op}");
        let p50 = o["latency_us"]["50"].as_u64().expect("p50");
        let p99 = o["latency_us"]["99"].as_u64().expect("p99");
        assert!(p50 > 0 && p50 <= p99 && p99 <= o["latency_us_max"].as_u64().expect("max"));
    }
    assert_eq!(s["ops"]["read"]["misses"], 0, "every key was inserted");

    // Open loop at a target rate: about that many operations.
    let s = bench(&["-h", &seed, "-w", "RU,100", "-k", "5000", "-t", "2", "-z", "4", "-g", "500"]);
    let n = s["ops"]["read"]["count"].as_u64().expect("count");
    assert!((700..=1100).contains(&n), "about 1000 reads at 500/s for 2 s, got {n}");
}

#[test]
fn the_query_workload_creates_its_index_and_every_query_finds_records() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let seed = server.seed();
    bench(&["-h", &seed, "-w", "I", "-k", "3000", "-o", "I", "-z", "8"]);
    let s = bench(&["-h", &seed, "-w", "Q,5", "-k", "2995", "-t", "2", "-z", "2"]);
    let q = &s["ops"]["query"];
    assert!(q["count"].as_u64().is_some_and(|n| n > 10), "{q}");
    assert_eq!(q["errors"], 0);
    assert_eq!(q["misses"], 0, "each query's range holds inserted key numbers");
    assert!(server.info("sindex-list:ns=test").contains("indexname=petrel_bench_testbin"));
}

#[test]
fn the_scan_workload_and_filters_reach_the_server() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let seed = server.seed();
    bench(&["-h", &seed, "-w", "I", "-k", "500", "-o", "I", "-z", "8"]);
    // Every record passes: each scan finds records.
    let all = bench(&["-h", &seed, "-w", "S", "-t", "1", "-z", "1", "--filter", "testbin>=0"]);
    let s = &all["ops"]["scan"];
    assert!(s["count"].as_u64().is_some_and(|n| n > 0), "{s}");
    assert_eq!((s["errors"].as_u64(), s["misses"].as_u64()), (Some(0), Some(0)), "{s}");
    // No record passes: each scan comes back empty, and so does each batch read.
    let none = bench(&["-h", &seed, "-w", "S", "-t", "1", "-z", "1", "--filter", "testbin>=1000000"]);
    let s = &none["ops"]["scan"];
    assert!(s["count"].as_u64().is_some_and(|n| n > 0) && s["misses"] == s["count"], "{s}");
    let batches =
        bench(&["-h", &seed, "-w", "RU,100", "-k", "500", "-t", "1", "--batch-size", "10", "--filter", "testbin<0"]);
    let r = &batches["ops"]["read"];
    assert!(r["count"].as_u64().is_some_and(|n| n > 0) && r["misses"] == r["count"], "{r}");
    assert_eq!(r["errors"], 0);
}
