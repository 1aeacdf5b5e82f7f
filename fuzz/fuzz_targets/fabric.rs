//! Fuzzes the decoding of fabric messages (replica writes, migration batches, exchanges,
//! proxied requests, info commands) as a node reads them off a peer's connection: nothing may
//! panic, and whatever decodes encodes back to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_proto::cluster::FabricMessage;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = FabricMessage::decode(data) {
        let again = m.encode_to_vec();
        let back = FabricMessage::decode(&again[..]).expect("what decoded re-encodes and decodes");
        assert_eq!(m, back);
    }
});
