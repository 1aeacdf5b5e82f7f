//! The HTTP endpoint of a real `petreld`: `/health` answers, `/ready` is ready at once for a
//! node on its own and only after the first plan for a clustered one, and `/metrics` carries
//! the namespace's figures under the Aerospike exporter's names.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use petrel_tests::{free_port, petreld_path, Petreld};

/// GET `path`; returns the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: petrel\r\nConnection: close\r\n\r\n").expect("request");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("answer");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    (status, body)
}

fn wait_for(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "HTTP endpoint never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn health_ready_and_metrics_of_a_single_node() {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let node = Petreld::start(&petreld_path!(), &["--http", &http.to_string()], &[]);
    wait_for(http);
    assert_eq!(get(http, "/health"), (200, "ok\n".to_string()));
    assert_eq!(get(http, "/ready").0, 200);
    assert_eq!(get(http, "/nothing").0, 404);
    let info = petrel_tests::info(node.addr, "namespace/test");
    assert!(!info.is_empty());
    let (status, body) = get(http, "/metrics");
    assert_eq!(status, 200);
    let line = body.lines().find(|l| l.starts_with("aerospike_namespace_objects{")).expect("objects metric");
    assert!(line.contains("ns=\"test\"") && line.ends_with(" 0"), "{line}");
    assert!(body.lines().any(|l| l.starts_with("aerospike_node_stats_uptime{")), "node statistics");
    assert!(body.contains("aerospike_latencies_read_ms_bucket{"), "latency histograms");
    assert!(body.lines().any(
        |l| l == "aerospike_node_ready{cluster_name=\"\",service=\"".to_string() + &node.addr.to_string() + "\"} 1"
    ));
}

#[test]
fn a_clustered_node_is_ready_only_once_its_first_plan_is_installed() {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let (hb, fabric) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    // Its seed is itself: it forms a cluster of its own after one membership quantum.
    let _node = Petreld::start(
        &petreld_path!(),
        &["--http", &http.to_string(), "--heartbeat", &hb, "--fabric", &fabric, "--seed", &hb],
        &[],
    );
    wait_for(http);
    assert_eq!(get(http, "/health").0, 200);
    let started = Instant::now();
    let mut seen_unready = false;
    loop {
        match get(http, "/ready").0 {
            503 => seen_unready = true,
            200 => break,
            other => panic!("/ready answered {other}"),
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen_unready, "ready before any plan was installed");
}
