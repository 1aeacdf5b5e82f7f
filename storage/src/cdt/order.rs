//! How values compare: the protocol's canonical total order for sorting ([`cmp_total`]), the
//! matching order in which a wildcard equals anything ([`cmp_values`]), intervals, and
//! [`ValueSet`] for matching against a list of patterns.

use std::cmp::Ordering;

use petrel_proto::msgpack::MsgValue;

/// Whether a wildcard appears anywhere in `v`.
fn contains_wildcard(v: &MsgValue) -> bool {
    match v {
        MsgValue::List(items) => items.iter().any(contains_wildcard),
        MsgValue::Map(m) => m.entries.iter().any(|(k, v)| contains_wildcard(k) || contains_wildcard(v)),
        other => other.is_wildcard(),
    }
}

/// The order used to match and search values: [`cmp_total`], except that a wildcard compares
/// equal to anything (ending the comparison), as on the server. Not transitive with
/// wildcards, so never used to sort.
pub(crate) fn cmp_values(a: &MsgValue, b: &MsgValue) -> Ordering {
    if a.is_wildcard() || b.is_wildcard() {
        return Ordering::Equal;
    }
    match (a, b) {
        (MsgValue::List(x), MsgValue::List(y)) => {
            for (p, q) in x.iter().zip(y) {
                if p.is_wildcard() || q.is_wildcard() {
                    return Ordering::Equal;
                }
                let o = cmp_values(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (MsgValue::Map(x), MsgValue::Map(y)) => {
            let o = x.entries.len().cmp(&y.entries.len());
            if o != Ordering::Equal {
                return o;
            }
            for ((ka, va), (kb, vb)) in x.entries.iter().zip(&y.entries) {
                if ka.is_wildcard() || kb.is_wildcard() || va.is_wildcard() || vb.is_wildcard() {
                    return Ordering::Equal;
                }
                let o = cmp_values(ka, kb).then_with(|| cmp_values(va, vb));
                if o != Ordering::Equal {
                    return o;
                }
            }
            Ordering::Equal
        }
        _ => cmp_total(a, b),
    }
}

/// A strict total order over values, safe for sorting whatever the data: the protocol's
/// canonical order (nil < bool < integer < string < list < map < blob < float < GeoJSON < ext
/// < wildcard < infinity; within a type, natural order), with the sentinels as ordinary values.
pub(crate) fn cmp_total(a: &MsgValue, b: &MsgValue) -> Ordering {
    a.canonical_cmp(b)
}

/// Finds values equal to any of a list of patterns, sorting the plain patterns once.
pub(crate) struct ValueSet<'a> {
    /// Plain patterns with their positions, sorted by value then position.
    plain: Vec<(usize, &'a MsgValue)>,
    wild: Vec<(usize, &'a MsgValue)>,
}

impl<'a> ValueSet<'a> {
    pub(crate) fn new(patterns: &'a [MsgValue]) -> ValueSet<'a> {
        let (wild, mut plain): (Vec<_>, Vec<_>) = patterns.iter().enumerate().partition(|p| contains_wildcard(p.1));
        plain.sort_by(|a, b| cmp_total(a.1, b.1).then(a.0.cmp(&b.0)));
        ValueSet { plain, wild }
    }

    pub(crate) fn contains(&self, v: &MsgValue) -> bool {
        self.position(v).is_some()
    }

    /// Where the first pattern equal to `v` stands in the patterns, if any does.
    pub(crate) fn position(&self, v: &MsgValue) -> Option<usize> {
        let first = self.plain.partition_point(|p| cmp_values(p.1, v) == Ordering::Less);
        let plain = self.plain.get(first).filter(|p| cmp_values(p.1, v) == Ordering::Equal).map(|p| p.0);
        let wild = self.wild.iter().find(|p| cmp_values(v, p.1) == Ordering::Equal).map(|p| p.0);
        match (plain, wild) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// True when `start <= x < end` (no `end`: no upper bound).
pub(crate) fn in_interval(x: &MsgValue, start: &MsgValue, end: Option<&MsgValue>) -> bool {
    cmp_values(x, start) != Ordering::Less && end.is_none_or(|e| cmp_values(x, e) == Ordering::Less)
}
