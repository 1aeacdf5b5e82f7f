//! Read-touch (Aerospike's `read_touch_ttl_percent`, server 7.1+): a read whose request TTL
//! field holds a percentage from 1 to 100 resets the record's TTL when the record is within
//! that percentage of its last write's TTL from its end of life, as a cache of recently read
//! records wants. The touch is an ordinary write (replicated, on the generation the read saw,
//! so a write in between wins) run after the read is answered; a read that a replica served,
//! or a touch that lost to another write, leaves the TTL as it is. 0 would take the
//! namespace's `default-read-touch-ttl-pct`, which Petrel has at 0 (off); -1 never touches.

use petrel_proto::message::{write_op, MsgHeader};
use petrel_proto::wire::{info2, OpType};
use petrel_storage::RecordMeta;

use super::request::Single;
use super::udf::{header_fields, n_fields};
use crate::node::Node;

/// The percentage a read asks for, when it asks for a touch.
pub(crate) fn percent(single: &Single<'_, '_>) -> Option<u64> {
    match single.msg.header.record_ttl {
        pct @ 1..=100 => Some(pct as u64),
        _ => None,
    }
}

/// The TTL (seconds) to give the record again, when a read at `now_ms` should touch it: its
/// remaining life is under `pct` % of the TTL its last write gave it.
pub(crate) fn touch_ttl_secs(meta: RecordMeta, now_ms: u64, pct: u64) -> Option<u32> {
    if meta.void_time == 0 || meta.generation == 0 {
        return None;
    }
    let end_ms = meta.void_time as u64 * 1000;
    let ttl_ms = end_ms.checked_sub(meta.lut_ms)?;
    let remaining_ms = end_ms.saturating_sub(now_ms);
    if remaining_ms * 100 >= ttl_ms * pct {
        return None;
    }
    // The TTL the last write asked for: its void time less the second it was written in.
    let ttl_secs = meta.void_time.checked_sub((meta.lut_ms / 1000) as u32)?;
    (ttl_secs > 0).then_some(ttl_secs)
}

/// Touches the record a read just answered, if the read asked for it and it is due.
pub(crate) async fn after_read(node: &Node, single: &Single<'_, '_>) {
    let Some(pct) = percent(single) else { return };
    let ns = &single.sns.ns;
    let Ok(meta) = ns.exists_filtered(&single.digest, None) else { return };
    let Some(ttl_secs) = touch_ttl_secs(meta, ns.clock().now_ms(), pct) else { return };
    let h = MsgHeader {
        info2: info2::WRITE | info2::GENERATION,
        generation: meta.generation as u32,
        record_ttl: ttl_secs,
        n_fields: n_fields(single),
        n_ops: 1,
        ..Default::default()
    };
    let mut body = Vec::with_capacity(128);
    h.write(&mut body);
    header_fields(single, &mut body);
    write_op(&mut body, OpType::Touch as u8, 0, b"", &[]);
    let code = Box::pin(super::single::run_local(node, &body, single.digest)).await;
    tracing::trace!(?code, ttl_secs, "read-touch");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_touches_only_within_the_percentage_of_the_end() {
        // Written at 1 000.5 s with a TTL of 10 s: ends at 1 010 s.
        let meta = RecordMeta { generation: 1, void_time: 1010, lut_ms: 1_000_500 };
        assert_eq!(touch_ttl_secs(meta, 1_002_000, 50), None, "8 s of 9.5 s left");
        assert_eq!(touch_ttl_secs(meta, 1_006_000, 50), Some(10), "4 s left, under half");
        assert_eq!(touch_ttl_secs(meta, 1_006_000, 30), None, "4 s left, not under 30 %");
        assert_eq!(touch_ttl_secs(meta, 1_000_600, 100), Some(10), "any read within 100 %");
        let forever = RecordMeta { void_time: 0, ..meta };
        assert_eq!(touch_ttl_secs(forever, 1_009_000, 100), None, "a record that never expires");
    }
}
