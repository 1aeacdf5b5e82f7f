//! `petrel-admin` against a real 2-node cluster, found from one seed: the summary (text and
//! JSON), the node table, statistics filtered by name, and a clear refusal of an unknown view.

use std::time::Duration;

use petrel_tests::cluster::TestCluster;
use petrel_tests::petreld_path;

fn petrel_admin(args: &[&str]) -> (i32, String, String) {
    petrel_tests::run_tool(env!("CARGO_BIN_EXE_petrel-admin-test"), args)
}

#[test]
fn shows_the_whole_cluster_from_one_seed() {
    let cluster = TestCluster::start(&petreld_path!(), 2, 2, &[]);
    cluster.wait_settled(2, Duration::from_secs(30));
    let seed = cluster.seeds()[0].clone();

    let (code, out, err) = petrel_admin(&["-h", &seed, "-e", "summary", "-j"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["cluster_size"], 2);
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2), "{out}");
    assert_eq!(v["nodes_reachable"], 2);
    assert_eq!(v["namespaces"][0]["Namespace"], "test");
    assert_eq!(v["namespaces"][0]["Repl Factor"], "2");

    let (code, out, _) = petrel_admin(&["-h", &seed, "-e", "summary"]);
    assert_eq!(code, 0);
    assert!(out.contains("Cluster Size:        2"), "{out}");
    let (code, out, _) = petrel_admin(&["-h", &seed, "-e", "info"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().filter(|l| l.starts_with("127.0.0.")).count(), 2, "a row per node: {out}");
    let (code, out, _) = petrel_admin(&["-h", &seed, "-e", "show stat like cluster_size"]);
    assert_eq!(code, 0);
    assert!(out.lines().any(|l| l.starts_with("cluster_size") && l.matches(" 2").count() == 2), "{out}");
    assert!(!out.contains("uptime"), "filtered by name: {out}");

    let (code, _, err) = petrel_admin(&["-h", &seed, "-e", "drop everything"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command"), "{err}");
}
