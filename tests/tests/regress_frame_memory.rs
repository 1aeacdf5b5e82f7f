//! Regression: memory taken by declaring frames. A client frame's whole declared body (up to
//! 32 MiB) was allocated and zero-filled before any of it arrived, so 40 connections that
//! each sent a header declaring 32 MiB and then stalled took the node from 6 MiB to 955 MiB
//! resident. Bodies now grow as their bytes arrive, under a node-wide budget.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use petrel_proto::message::{
    begin_frame, end_frame, write_field, write_op, Message, MessageLimits, MsgHeader, ProtoHeader,
};
use petrel_proto::wire::{info1, info2, FieldType, FrameType};
use petrel_tests::{petreld_path, stat, Petreld};

const STALLED_CONNECTIONS: usize = 1000;
const DECLARED_BODY_BYTES: u64 = 32 << 20;
const RSS_GROWTH_MAX_BYTES: u64 = 64 << 20;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s
}

/// A put of `value` into bin `n` of the record with digest `[i; 20]`, or a get of it.
fn request(i: u8, value: Option<i64>) -> Vec<u8> {
    let mut f = Vec::new();
    let start = begin_frame(&mut f);
    let header = match value {
        Some(_) => MsgHeader { info2: info2::WRITE, n_fields: 2, n_ops: 1, ..Default::default() },
        None => MsgHeader { info1: info1::READ | info1::GET_ALL, n_fields: 2, ..Default::default() },
    };
    header.write(&mut f);
    write_field(&mut f, FieldType::Namespace as u8, b"test");
    write_field(&mut f, FieldType::Digest as u8, &[i; 20]);
    if let Some(v) = value {
        write_op(&mut f, 2, 1, b"n", &v.to_be_bytes());
    }
    end_frame(&mut f, start, FrameType::Message as u8);
    f
}

/// Sends `frame` and reads the answer: its result code and first op's value.
fn exchange(s: &mut TcpStream, frame: &[u8]) -> (u8, Option<Vec<u8>>) {
    s.write_all(frame).expect("send");
    let mut h = [0u8; 8];
    s.read_exact(&mut h).expect("answer header");
    let h = ProtoHeader::parse(h, 1 << 20).expect("header");
    let mut body = vec![0u8; h.size as usize];
    s.read_exact(&mut body).expect("answer body");
    let (m, _) = Message::parse(&body, MessageLimits::default()).expect("answer");
    let value = m.ops().next().map(|o| o.value.to_vec());
    (m.header.result_code, value)
}

/// Waits (at most 20 s) until statistic `key` is at least `at_least`.
fn wait_for_stat(server: &Petreld, key: &str, at_least: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value: u64 = stat(&server.info("statistics"), key).and_then(|v| v.parse().ok()).expect("statistic");
        if value >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{key} stayed at {value}, below {at_least}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stalled_frame_declarations_hold_almost_no_memory() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let addr = server.addr;
    let mut client = connect(addr);
    assert_eq!(exchange(&mut client, &request(1, Some(7))).0, 0);
    let before = rss_bytes(server.pid());

    let declaration = ProtoHeader::encode(FrameType::Message as u8, DECLARED_BODY_BYTES);
    let mut stalled = Vec::with_capacity(STALLED_CONNECTIONS);
    for i in 0..STALLED_CONNECTIONS {
        let mut s = connect(addr);
        s.write_all(&declaration).expect("declare");
        // A few send the start of their body too, and then stall.
        if i % 10 == 0 {
            s.write_all(&[0u8; 1000]).expect("some body");
        }
        stalled.push(s);
    }
    // Bounded wait until the node has taken every connection in.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = server.info("statistics");
        let open: usize = stat(&stats, "client_connections").and_then(|v| v.parse().ok()).expect("client_connections");
        if open > STALLED_CONNECTIONS {
            break;
        }
        assert!(Instant::now() < deadline, "the node took only {open} connections in");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Bounded wait until every connection's task has begun its body, seen as resident
    // memory that stops growing over three samples in a row.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut steady) = (rss_bytes(server.pid()), 0);
    while steady < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = rss_bytes(server.pid());
        steady = if now == last { steady + 1 } else { 0 };
        last = now;
    }

    // Other clients are served meanwhile.
    let mut other = connect(addr);
    assert_eq!(exchange(&mut other, &request(2, Some(9))).0, 0);
    let (code, value) = exchange(&mut other, &request(1, None));
    assert_eq!((code, value), (0, Some(7i64.to_be_bytes().to_vec())));

    let during = rss_bytes(server.pid());
    let grown = during.saturating_sub(before);
    let stats = server.info("statistics");
    let held: u64 = stat(&stats, "incomplete_request_bytes").and_then(|v| v.parse().ok()).expect("held bytes");
    eprintln!(
        "{STALLED_CONNECTIONS} stalled 32 MiB declarations: resident {} MiB -> {} MiB (+{} KiB), budget held {} KiB",
        before >> 20,
        during >> 20,
        grown >> 10,
        held >> 10
    );
    assert!(grown <= RSS_GROWTH_MAX_BYTES, "resident memory grew by {} MiB", grown >> 20);
    assert_eq!(held, 0, "stalled connections hold nothing of the budget beyond their first 16 KiB");
}

#[test]
fn a_request_waits_for_the_budget_and_is_served_when_it_frees() {
    // A budget of two frames: two connections that start 1 MiB frames and stall hold it all;
    // a third frame waits until one of them completes its request.
    let server = Petreld::start(
        &petreld_path!(),
        &[],
        &[("PETREL_SERVICE__FRAME_SIZE_MAX", "1048576"), ("PETREL_SERVICE__INCOMPLETE_REQUESTS_BYTES_MAX", "2097152")],
    );
    let addr = server.addr;
    let big = {
        let mut f = Vec::new();
        let start = begin_frame(&mut f);
        MsgHeader { info2: info2::WRITE, n_fields: 2, n_ops: 1, ..Default::default() }.write(&mut f);
        write_field(&mut f, FieldType::Namespace as u8, b"test");
        write_field(&mut f, FieldType::Digest as u8, &[3; 20]);
        write_op(&mut f, 2, 4, b"blob", &vec![0xab; 1_000_000]);
        end_frame(&mut f, start, FrameType::Message as u8);
        f
    };
    let cut = big.len() - 10;
    let mut holders: Vec<TcpStream> = (0..2).map(|_| connect(addr)).collect();
    for h in &mut holders {
        h.write_all(&big[..cut]).expect("most of a frame");
    }
    // Bounded wait until the two holders have the whole budget but their first 16 KiB each.
    let body_bytes = (big.len() - 8) as u64;
    wait_for_stat(&server, "incomplete_request_bytes", 2 * (body_bytes - 16 * 1024));
    let mut waiter = connect(addr);
    waiter.write_all(&big[..cut]).expect("most of a frame");
    // The third frame waits for the budget (bounded: fails after 20 s).
    wait_for_stat(&server, "request_budget_waits", 1);
    // Small requests do not wait behind large ones.
    let mut small = connect(addr);
    assert_eq!(exchange(&mut small, &request(4, Some(1))).0, 0);
    // One holder completes: its request is served, and the waiter gets the budget.
    let (code, _) = exchange(&mut holders[0], &big[cut..]);
    assert_eq!(code, 0);
    let (code, _) = exchange(&mut waiter, &big[cut..]);
    assert_eq!(code, 0);
    // Closed connections give their part of the budget back.
    drop(holders);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held: u64 =
            stat(&server.info("statistics"), "incomplete_request_bytes").and_then(|v| v.parse().ok()).expect("held");
        if held == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{held} bytes still held after the connections closed");
        std::thread::sleep(Duration::from_millis(100));
    }
}
