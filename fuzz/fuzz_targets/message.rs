//! Fuzzes the two-step frame decoding: proto header, then message, fields, ops and the
//! msgpack of any op value. None of it may panic, and what parses must stay in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_proto::message::{Message, MessageLimits, ProtoHeader};
use petrel_proto::msgpack;

fuzz_target!(|data: &[u8]| {
    if data.len() >= 8 {
        let mut h = [0u8; 8];
        h.copy_from_slice(&data[..8]);
        let _ = ProtoHeader::parse(h, 1 << 20);
    }
    let mut pos = 0;
    while pos < data.len() {
        let Ok((msg, used)) = Message::parse(&data[pos..], MessageLimits::default()) else { break };
        assert!(used > 0 && pos + used <= data.len());
        assert_eq!(msg.fields().count(), msg.header.n_fields as usize);
        for op in msg.ops() {
            let _ = msgpack::decode(op.value);
        }
        pos += used;
    }
});
