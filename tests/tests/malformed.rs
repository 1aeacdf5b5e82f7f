//! Bad input over raw sockets: malformed frames get an error result or a closed connection,
//! never a crash or a hang, and the server keeps serving; connection caps and idle timeouts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use petrel_proto::message::{
    begin_frame, end_frame, write_field, write_op, Message, MessageLimits, MsgHeader, ProtoHeader,
};
use petrel_proto::wire::{info2, FieldType};
use petrel_tests::{petreld_path, stat, Petreld};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s
}

/// Reads one frame; `None` when the server closed the connection.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 8];
    match s.read_exact(&mut h) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) => {
            return None
        }
        Err(e) => panic!("read failed (not a close): {e}"),
    }
    let h = ProtoHeader::parse(h, 1 << 24).expect("server header");
    let mut body = vec![0u8; h.size as usize];
    s.read_exact(&mut body).expect("body");
    Some((h.frame_type, body))
}

fn result_code(body: &[u8]) -> u8 {
    Message::parse(body, MessageLimits::default()).expect("answer parses").0.header.result_code
}

fn still_serves(addr: SocketAddr) {
    assert_eq!(petrel_tests::info(addr, "status"), "ok");
}

fn write_frame(digest: [u8; 20], bin: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let start = begin_frame(&mut f);
    MsgHeader { info2: info2::WRITE, n_fields: 2, n_ops: 1, ..Default::default() }.write(&mut f);
    write_field(&mut f, FieldType::Namespace as u8, b"test");
    write_field(&mut f, FieldType::Digest as u8, &digest);
    write_op(&mut f, 2, 1, bin, &1i64.to_be_bytes());
    end_frame(&mut f, start, 3);
    f
}

#[test]
fn malformed_frames_are_refused_and_the_server_lives_on() {
    let server = Petreld::start(&petreld_path!(), &[], &[("PETREL_SERVICE__FRAME_SIZE_MAX", "65536")]);
    let addr = server.addr;

    // Wrong version: the connection is closed.
    let mut s = connect(addr);
    s.write_all(&[9, 3, 0, 0, 0, 0, 0, 0]).expect("send");
    assert!(read_frame(&mut s).is_none());
    // A frame over the size limit: closed before any body is read.
    let mut s = connect(addr);
    s.write_all(&ProtoHeader::encode(3, 1 << 20)).expect("send");
    assert!(read_frame(&mut s).is_none());
    // An unknown frame type: closed.
    let mut s = connect(addr);
    s.write_all(&ProtoHeader::encode(9, 0)).expect("send");
    assert!(read_frame(&mut s).is_none());
    still_serves(addr);

    // A message that claims a field it does not carry: PARAMETER, connection stays usable.
    let mut s = connect(addr);
    let mut body = Vec::new();
    MsgHeader { n_fields: 1, ..Default::default() }.write(&mut body);
    let mut frame = ProtoHeader::encode(3, body.len() as u64).to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).expect("send");
    let (t, answer) = read_frame(&mut s).expect("an answer, not a close");
    assert_eq!((t, result_code(&answer)), (3, 4));
    // Same connection: a 16-byte bin name gets BIN_NAME; a good write succeeds.
    s.write_all(&write_frame([7; 20], b"sixteen_chars_xx")).expect("send");
    assert_eq!(result_code(&read_frame(&mut s).expect("answer").1), 21);
    s.write_all(&write_frame([7; 20], b"ok")).expect("send");
    assert_eq!(result_code(&read_frame(&mut s).expect("answer").1), 0);
    // No namespace: PARAMETER; unknown namespace: NAMESPACE.
    let mut f = Vec::new();
    let start = begin_frame(&mut f);
    MsgHeader { info1: 1, n_fields: 1, ..Default::default() }.write(&mut f);
    write_field(&mut f, FieldType::Namespace as u8, b"nope");
    end_frame(&mut f, start, 3);
    s.write_all(&f).expect("send");
    assert_eq!(result_code(&read_frame(&mut s).expect("answer").1), 20);

    // Garbage: bounded rounds of random frames on fresh connections.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0..300 {
        assert!(Instant::now() < deadline, "garbage rounds took too long");
        let len = (next() % 200) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && body.len() >= 22 {
            body[0] = 22; // a plausible message header over garbage
        }
        let frame_type = [1u8, 2, 3, 4][(next() % 4) as usize];
        let mut frame = ProtoHeader::encode(frame_type, body.len() as u64).to_vec();
        frame.extend_from_slice(&body);
        let mut s = connect(addr);
        s.write_all(&frame).expect("send");
        // Either an answer or a close; a hang would trip the read timeout and panic.
        let _ = read_frame(&mut s);
    }
    still_serves(addr);
    let stats = server.info("statistics");
    assert!(stat(&stats, "malformed_requests").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n > 0));
}

#[test]
fn compressed_requests_admin_frames_and_latencies() {
    use std::io::Write as _;
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let addr = server.addr;
    let mut s = connect(addr);

    // A write wrapped in a type-4 frame: u64 length of the inner frame, then zlib data.
    let inner = write_frame([9; 20], b"z");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(&inner).expect("compress");
    let zbytes = z.finish().expect("compress");
    let mut body = (inner.len() as u64).to_be_bytes().to_vec();
    body.extend_from_slice(&zbytes);
    let mut frame = ProtoHeader::encode(4, body.len() as u64).to_vec();
    frame.extend_from_slice(&body);
    s.write_all(&frame).expect("send");
    let (t, answer) = read_frame(&mut s).expect("answer");
    assert_eq!((t, result_code(&answer)), (3, 0));
    let ns = server.info("namespace/test");
    assert_eq!(stat(&ns, "objects").as_deref(), Some("1"), "the compressed write landed");

    // A compressed frame whose stated length lies: the connection is closed.
    let mut bad = (inner.len() as u64 + 5).to_be_bytes().to_vec();
    bad.extend_from_slice(&zbytes);
    let mut frame = ProtoHeader::encode(4, bad.len() as u64).to_vec();
    frame.extend_from_slice(&bad);
    let mut s2 = connect(addr);
    s2.write_all(&frame).expect("send");
    assert!(read_frame(&mut s2).is_none());

    // Admin (security) frames: "security not enabled" (52), which clients take as success.
    let mut admin = ProtoHeader::encode(2, 16).to_vec();
    admin.extend_from_slice(&[0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.write_all(&admin).expect("send");
    let (t, answer) = read_frame(&mut s).expect("answer");
    assert_eq!((t, answer.len(), answer[1]), (2, 16, 52));

    // The write shows in the latency histograms, in Aerospike's format.
    let lat = server.info("latencies:");
    let write = lat.split(';').find(|h| h.starts_with("{test}-write:")).expect("write histogram");
    let cols: Vec<&str> = write.trim_start_matches("{test}-write:").split(',').collect();
    assert_eq!(cols[0], "msec");
    assert_eq!(cols.len(), 19, "{write}");
}

#[test]
fn connection_cap_and_idle_timeout() {
    let server = Petreld::start(
        &petreld_path!(),
        &[],
        &[("PETREL_SERVICE__PROTO_FD_MAX", "3"), ("PETREL_SERVICE__PROTO_FD_IDLE_MS", "1000")],
    );
    let addr = server.addr;
    // Each connection is used at once, so none can idle out before all three are open.
    let status_frame = {
        let body = b"status\n";
        let mut f = ProtoHeader::encode(1, body.len() as u64).to_vec();
        f.extend_from_slice(body);
        f
    };
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..3 {
        let mut s = connect(addr);
        s.write_all(&status_frame).expect("send");
        assert!(read_frame(&mut s).is_some());
        held.push(s);
    }
    let mut extra = connect(addr);
    let _ = extra.write_all(&ProtoHeader::encode(1, 0));
    assert!(read_frame(&mut extra).is_none(), "a fourth connection is refused");
    // Idle connections are closed after 1 s, which frees room for new ones.
    let deadline = Instant::now() + Duration::from_secs(5);
    for s in &mut held {
        assert!(read_frame(s).is_none(), "idle connection closed");
    }
    assert!(Instant::now() < deadline);
    let stats = server.info("statistics");
    assert_eq!(stat(&stats, "client_connections_refused").as_deref(), Some("1"));
    assert!(stat(&stats, "client_connections_idle_closed").and_then(|v| v.parse::<u64>().ok()).is_some_and(|n| n >= 3));
}

#[test]
fn invalid_configuration_stops_startup_naming_the_setting() {
    let out = std::process::Command::new(petreld_path!())
        .env("PETREL_NAMESPACE__TEST__PARTITION_TREE_SPRIGS", "3")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", petrel_tests::free_port()))
        .output()
        .expect("run petreld");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("namespace.test") && err.contains("sprigs"), "{err}");
}
