//! Fuzzes the heartbeat: the input is cut into pulses (a length byte, then that many bytes),
//! each decoded as a `Pulse` and fed to one node's membership at increasing times, with a
//! tick after each. Nothing may panic; the node keeps at most one peer per pulse it took, and
//! its view either is empty or names it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use petrel_cluster::{Membership, MembershipConfig};
use petrel_proto::cluster::Pulse;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let me = 0xB0;
    let mut m = Membership::new(me, MembershipConfig::new("fuzz"), vec!["127.0.0.1:3002".into()], 0, 7);
    let (mut now, mut taken, mut rest) = (0u64, 0usize, data);
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        let (pulse, tail) = tail.split_at(len);
        rest = tail;
        now += 37;
        if let Ok(p) = Pulse::decode(pulse) {
            if m.on_pulse(now, &p).is_ok() {
                taken += 1;
            }
        }
        let _ = m.tick(now);
        let view = m.view();
        assert!(view.members.is_empty() || view.members.contains(&me));
        assert!(m.alive_peers(now).len() <= taken);
        let _ = m.pulse(now).encoded_len();
    }
});
