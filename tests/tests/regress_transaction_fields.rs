//! Regression: transactions applied silently. `build` answers 8.0.0.0, so clients may send
//! multi-record-transaction fields; they were ignored and the writes applied at once, so an
//! aborted transaction stayed applied. A command that carries transaction fields or bits is
//! now refused with UNSUPPORTED_FEATURE (16), as a namespace without transaction support
//! answers, and changes nothing. `features` claims only what works.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use petrel_proto::batch::encode_row;
use petrel_proto::message::{
    begin_frame, end_frame, write_field, write_op, Message, MessageLimits, MsgHeader, ProtoHeader,
};
use petrel_proto::wire::{info1, info2, info4, FieldType, FrameType, ResultCode};
use petrel_proto::Digest;
use petrel_tests::{petreld_path, Petreld};

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s
}

/// Sends `frame`; returns every answer message's (result code, transaction-ttl slot) until
/// the one marked last, or the one answer of a single command.
fn exchange(s: &mut TcpStream, frame: &[u8], stream: bool) -> Vec<(u8, u32)> {
    s.write_all(frame).expect("send");
    let mut answers = Vec::new();
    loop {
        let mut h = [0u8; 8];
        s.read_exact(&mut h).expect("answer header");
        let h = ProtoHeader::parse(h, 1 << 20).expect("header");
        let mut body = vec![0u8; h.size as usize];
        s.read_exact(&mut body).expect("answer body");
        let mut at = 0;
        while at < body.len() {
            let (m, used) = Message::parse(&body[at..], MessageLimits::default()).expect("answer");
            at += used;
            answers.push((m.header.result_code, m.header.transaction_ttl));
            if !stream || m.header.info3 & 1 != 0 {
                return answers;
            }
        }
    }
}

/// A single-record message: `fields` after namespace and digest, one write op when `write`.
fn message(buf: &mut Vec<u8>, digest: &Digest, header: MsgHeader, txn_fields: &[(FieldType, &[u8])], write: bool) {
    let n_fields = 2 + txn_fields.len() as u16;
    MsgHeader { n_fields, n_ops: write as u16, ..header }.write(buf);
    write_field(buf, FieldType::Namespace as u8, b"test");
    write_field(buf, FieldType::Digest as u8, digest.as_bytes());
    for (t, data) in txn_fields {
        write_field(buf, *t as u8, data);
    }
    if write {
        write_op(buf, 2, 1, b"n", &1i64.to_be_bytes());
    }
}

fn frame(digest: &Digest, header: MsgHeader, txn_fields: &[(FieldType, &[u8])], write: bool) -> Vec<u8> {
    let mut f = Vec::new();
    let start = begin_frame(&mut f);
    message(&mut f, digest, header, txn_fields, write);
    end_frame(&mut f, start, FrameType::Message as u8);
    f
}

const WRITE: MsgHeader = MsgHeader {
    info1: 0,
    info2: info2::WRITE,
    info3: 0,
    info4: 0,
    result_code: 0,
    generation: 0,
    record_ttl: 0,
    transaction_ttl: 0,
    n_fields: 0,
    n_ops: 0,
};
const READ: MsgHeader = MsgHeader { info1: info1::READ | info1::GET_ALL, info2: 0, ..WRITE };

/// What a case sends: its name, its header and its transaction fields.
type Case<'a> = (&'static str, MsgHeader, Vec<(FieldType, &'a [u8])>);

#[test]
fn transaction_tagged_commands_are_refused_and_leave_no_trace() {
    let server = Petreld::start(&petreld_path!(), &[], &[]);
    let mut s = connect(server.addr);
    let unsupported = ResultCode::UnsupportedFeature.code();
    let txn_id = 0x1234_5678_9abc_def0u64.to_le_bytes();
    let deadline = 10u32.to_le_bytes();
    let version = [0u8; 7];
    let cases: [Case<'_>; 5] = [
        ("transaction id", WRITE, vec![(FieldType::TxnId, &txn_id)]),
        ("id and deadline", WRITE, vec![(FieldType::TxnId, &txn_id), (FieldType::TxnDeadline, &deadline)]),
        ("record version", WRITE, vec![(FieldType::RecordVersion, &version)]),
        ("roll-forward bit", MsgHeader { info4: info4::TXN_ROLL_FORWARD, ..WRITE }, vec![]),
        ("verify-read bit", MsgHeader { info4: info4::TXN_VERIFY_READ, ..READ }, vec![]),
    ];
    for (i, (what, header, fields)) in cases.iter().enumerate() {
        let d = Digest::from_slice(&[i as u8 + 1; 20]).expect("digest");
        let write = header.info2 & info2::WRITE != 0;
        assert_eq!(exchange(&mut s, &frame(&d, *header, fields, write), false), vec![(unsupported, 0)], "{what}");
        // Nothing was written.
        let read = exchange(&mut s, &frame(&d, READ, &[], false), false);
        assert_eq!(read, vec![(ResultCode::NotFound.code(), 0)], "{what}: the write left a trace");
    }
    // A delete in a transaction deletes nothing.
    let d = Digest::from_slice(&[40; 20]).expect("digest");
    assert_eq!(exchange(&mut s, &frame(&d, WRITE, &[], true), false), vec![(0, 0)]);
    let delete = MsgHeader { info2: info2::WRITE | info2::DELETE, ..WRITE };
    assert_eq!(
        exchange(&mut s, &frame(&d, delete, &[(FieldType::TxnId, &txn_id)], false), false),
        vec![(unsupported, 0)]
    );
    assert_eq!(exchange(&mut s, &frame(&d, READ, &[], false), false)[0].0, 0, "the record is still there");

    // In a batch, the transaction rows are refused and the others served.
    let plain = Digest::from_slice(&[50; 20]).expect("digest");
    let tagged = Digest::from_slice(&[51; 20]).expect("digest");
    let mut row_plain = Vec::new();
    message(&mut row_plain, &plain, WRITE, &[], true);
    let mut row_tagged = Vec::new();
    message(&mut row_tagged, &tagged, WRITE, &[(FieldType::TxnId, &txn_id)], true);
    let mut batch_field = 2u32.to_be_bytes().to_vec();
    batch_field.push(0x08);
    for (index, (d, row)) in [(plain, &row_plain), (tagged, &row_tagged)].into_iter().enumerate() {
        // A row's own message without the digest field, which the row carries itself.
        let (m, _) = Message::parse(row, MessageLimits::default()).expect("row");
        let mut fields = Vec::new();
        for f in m.fields().filter(|f| f.field_type != FieldType::Digest as u8) {
            write_field(&mut fields, f.field_type, f.data);
        }
        let header = MsgHeader { n_fields: m.header.n_fields - 1, ..m.header };
        let row_message = Message::from_regions(header, &fields, m.ops_bytes(), MessageLimits::default()).expect("row");
        encode_row(&mut batch_field, index as u32, &d, Some(&row_message));
    }
    let mut batch = Vec::new();
    let start = begin_frame(&mut batch);
    MsgHeader { info1: info1::BATCH, n_fields: 1, ..Default::default() }.write(&mut batch);
    write_field(&mut batch, FieldType::BatchIndex as u8, &batch_field);
    end_frame(&mut batch, start, FrameType::Message as u8);
    let answers = exchange(&mut s, &batch, true);
    assert_eq!(&answers[..2], &[(0, 0), (unsupported, 1)]);
    assert_eq!(exchange(&mut s, &frame(&plain, READ, &[], false), false)[0].0, 0);
    assert_eq!(exchange(&mut s, &frame(&tagged, READ, &[], false), false)[0].0, ResultCode::NotFound.code());

    // `features` claims nothing that does not work: no strong consistency.
    let features = server.info("features");
    assert!(!features.split(';').any(|f| f == "relaxed-sc"), "features claims relaxed-sc: {features}");
    // Bit operations on blobs, geospatial queries, job listings and UDFs work, and say so.
    for present in ["blob-bits", "geo", "query-show", "udf"] {
        assert!(features.split(';').any(|f| f == present), "{present} missing: {features}");
    }
}
