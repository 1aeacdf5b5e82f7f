//! The stored form of lists and maps: decoding a stored collection, the leading ext element
//! that carries a list's order flags, and normalisation (maps sorted by key without
//! duplicates, ordered lists sorted, at every depth) that every stored value passes.

use std::cmp::Ordering;

use petrel_proto::cdt::list_order;
use petrel_proto::msgpack::{MsgMap, MsgValue, EXT_SENTINEL};
use petrel_proto::particle;

use crate::cdt::order::cmp_total;
use crate::cdt::{CdtError, ParticleRef};

/// Decodes a stored list (particle 20) or map (particle 19), checking it is what its particle
/// type says.
pub(crate) fn decode_stored(p: ParticleRef<'_>) -> Result<MsgValue, CdtError> {
    particle::decode_collection(p.particle, p.bytes).map_err(|_| CdtError::Parameter("stored collection is malformed"))
}

/// True for the leading ext element that carries a list's (or map's) order flags.
pub(crate) fn is_flags_marker(v: &MsgValue) -> bool {
    matches!(v, MsgValue::Ext(t, data) if *t >= 0 && data.is_empty())
}

/// Whether a decoded list's flags marker says it is ordered.
pub(crate) fn is_ordered_list(items: &[MsgValue]) -> bool {
    matches!(items.first(), Some(MsgValue::Ext(t, d)) if *t >= 0 && d.is_empty() && *t as u8 & list_order::ORDERED != 0)
}

/// A list's elements without its flags marker.
pub(crate) fn strip_list_marker(items: &[MsgValue]) -> &[MsgValue] {
    match items.first() {
        Some(first) if is_flags_marker(first) => items.get(1..).unwrap_or(&[]),
        _ => items,
    }
}

/// Splits a decoded list into its order flags and its elements.
pub(crate) fn split_list_marker(mut items: Vec<MsgValue>) -> (u8, Vec<MsgValue>) {
    match items.first() {
        Some(MsgValue::Ext(t, data)) if *t >= 0 && data.is_empty() => {
            let flags = *t as u8;
            items.remove(0);
            (flags, items)
        }
        _ => (0, items),
    }
}

/// Rebuilds a decoded list from its flags and elements.
pub(crate) fn join_list_marker(flags: u8, mut items: Vec<MsgValue>) -> Vec<MsgValue> {
    if flags != 0 {
        items.insert(0, MsgValue::Ext((flags & 0x7f) as i8, Vec::new()));
    }
    items
}

/// Puts a value in its stored form: maps sorted by key without duplicates (last wins),
/// ordered lists sorted, at every depth. The wildcard/infinity sentinels cannot be stored.
pub(crate) fn normalize_value(v: &mut MsgValue) -> Result<(), CdtError> {
    match v {
        MsgValue::Ext(t, _) if *t == EXT_SENTINEL => Err(CdtError::Parameter("comparison sentinel cannot be stored")),
        MsgValue::List(items) => {
            let ordered = is_ordered_list(items);
            let start = usize::from(items.first().is_some_and(is_flags_marker));
            let body = items.get_mut(start..).unwrap_or(&mut []);
            for item in body.iter_mut() {
                normalize_value(item)?;
            }
            if ordered {
                body.sort_by(cmp_total);
            }
            Ok(())
        }
        MsgValue::Map(m) => {
            for (k, val) in m.entries.iter_mut() {
                normalize_value(k)?;
                normalize_value(val)?;
            }
            sort_map(m);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Sorts a map's entries by key and drops duplicate keys, keeping the last of each.
pub(crate) fn sort_map(m: &mut MsgMap) {
    let sorted = m.entries.windows(2).all(|w| matches!(w, [a, b] if cmp_total(&a.0, &b.0) == Ordering::Less));
    if sorted {
        return;
    }
    m.entries.sort_by(|a, b| cmp_total(&a.0, &b.0));
    let mut out: Vec<(MsgValue, MsgValue)> = Vec::with_capacity(m.entries.len());
    for e in m.entries.drain(..) {
        match out.last_mut() {
            Some(last) if cmp_total(&last.0, &e.0) == Ordering::Equal => *last = e,
            _ => out.push(e),
        }
    }
    m.entries = out;
}

/// How deeply lists and maps nest in `v` (a scalar is 0 deep).
pub(super) fn depth(v: &MsgValue) -> usize {
    match v {
        MsgValue::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        MsgValue::Map(m) => 1 + m.entries.iter().map(|(k, v)| depth(k).max(depth(v))).max().unwrap_or(0),
        _ => 0,
    }
}
