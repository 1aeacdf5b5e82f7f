//! The msgpack flavour of the Aerospike protocol: list and map bin values and the payloads of
//! CDT operations.
//!
//! Aerospike conventions on top of standard msgpack: strings, blobs, GeoJSON and HLL values are
//! encoded with the msgpack *str* family whose first content byte is the particle type; an
//! ordered map carries one extra leading pair whose key is an ext value holding the map-order
//! flags and whose value is nil. The decoder also accepts the msgpack *bin* family as blobs.
//!
//! Decoding is bounded: nesting depth is capped at [`DEPTH_MAX`] and no container allocates
//! room for more elements than the remaining input could hold, so hostile input cannot make the
//! decoder recurse without bound or allocate more than a small multiple of its length.

use std::cmp::Ordering;

use thiserror::Error;

use crate::ParticleType;

/// Deepest nesting of lists and maps the decoder accepts.
pub const DEPTH_MAX: usize = 32;

/// Ext type of the comparison sentinels; its one data byte says which.
pub const EXT_SENTINEL: i8 = -1; // 0xff
/// Data byte of the "wildcard" sentinel (matches anything).
pub const SENTINEL_WILDCARD: u8 = 0x00;
/// Data byte of the "infinity" sentinel (above everything; an open interval end).
pub const SENTINEL_INF: u8 = 0x01;

/// Why a msgpack payload could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MsgpackError {
    #[error("msgpack input ends early")]
    Truncated,
    #[error("msgpack nesting deeper than {DEPTH_MAX}")]
    TooDeep,
    #[error("msgpack type byte {0:#04x} is not supported")]
    UnsupportedType(u8),
    #[error("trailing bytes after msgpack value")]
    Trailing,
}

/// A map's entries and its order flags (0 = unordered; 1 = key ordered; 3 = key-value ordered).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MsgMap {
    pub flags: u8,
    pub entries: Vec<(MsgValue, MsgValue)>,
}

/// A decoded msgpack value.
#[derive(Debug, Clone, PartialEq)]
pub enum MsgValue {
    Nil,
    Bool(bool),
    /// Any integer that fits an `i64`.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    Float(f64),
    /// A string (particle type 3), without its particle-type prefix.
    Str(Vec<u8>),
    /// Any other prefixed str-family value (blob 4, GeoJSON 23, HLL 18, ...) or a msgpack bin
    /// (reported as blob 4).
    Blob(u8, Vec<u8>),
    List(Vec<MsgValue>),
    Map(MsgMap),
    /// An ext value other than the map-order marker: comparison sentinels (wildcard, infinity).
    Ext(i8, Vec<u8>),
}

impl MsgValue {
    /// Shorthand for a string value.
    pub fn str(s: &str) -> MsgValue {
        MsgValue::Str(s.as_bytes().to_vec())
    }

    /// True for the infinity sentinel used as an open interval end.
    pub fn is_inf(&self) -> bool {
        matches!(self, MsgValue::Ext(t, d) if *t == EXT_SENTINEL && d.as_slice() == [SENTINEL_INF])
    }

    /// True for the wildcard sentinel.
    pub fn is_wildcard(&self) -> bool {
        matches!(self, MsgValue::Ext(t, d) if *t == EXT_SENTINEL && d.as_slice() == [SENTINEL_WILDCARD])
    }

    /// The value as an `i64`, if it is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            MsgValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// Rank of the value's type in Aerospike's cross-type ordering.
    fn type_rank(&self) -> u8 {
        match self {
            MsgValue::Nil => 1,
            MsgValue::Bool(_) => 2,
            MsgValue::Int(_) | MsgValue::UInt(_) => 3,
            MsgValue::Str(_) => 4,
            MsgValue::List(_) => 5,
            MsgValue::Map(_) => 6,
            MsgValue::Blob(t, _) if *t == ParticleType::GeoJson as u8 => 9,
            MsgValue::Blob(_, _) => 7,
            MsgValue::Float(_) => 8,
            v if v.is_wildcard() => 11,
            v if v.is_inf() => 12,
            MsgValue::Ext(_, _) => 10,
        }
    }

    /// Total order used for sorted lists, key-ordered maps, ranks and value intervals:
    /// nil < bool < integer < string < list < map < blob < float < GeoJSON < ext < wildcard <
    /// infinity; within a type, natural order (strings and blobs bytewise).
    pub fn canonical_cmp(&self, other: &MsgValue) -> Ordering {
        use MsgValue::*;
        // Type rank first, so the order stays transitive across blob subtypes.
        let by_rank = self.type_rank().cmp(&other.type_rank());
        if by_rank != Ordering::Equal {
            return by_rank;
        }
        match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (UInt(a), UInt(b)) => a.cmp(b),
            (Int(_), UInt(_)) => Ordering::Less,
            (UInt(_), Int(_)) => Ordering::Greater,
            (Float(a), Float(b)) => a.total_cmp(b),
            (Str(a), Str(b)) => a.cmp(b),
            (Blob(ta, a), Blob(tb, b)) => ta.cmp(tb).then_with(|| a.cmp(b)),
            (List(a), List(b)) => cmp_seq(a.iter(), b.iter(), a.len(), b.len()),
            (Map(a), Map(b)) => a.entries.len().cmp(&b.entries.len()).then_with(|| {
                for ((ka, va), (kb, vb)) in a.entries.iter().zip(&b.entries) {
                    let o = ka.canonical_cmp(kb).then_with(|| va.canonical_cmp(vb));
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                Ordering::Equal
            }),
            (Ext(ta, a), Ext(tb, b)) => ta.cmp(tb).then_with(|| a.cmp(b)),
            _ => self.type_rank().cmp(&other.type_rank()),
        }
    }
}

fn cmp_seq<'a>(
    a: impl Iterator<Item = &'a MsgValue>,
    b: impl Iterator<Item = &'a MsgValue>,
    len_a: usize,
    len_b: usize,
) -> Ordering {
    for (x, y) in a.zip(b) {
        let o = x.canonical_cmp(y);
        if o != Ordering::Equal {
            return o;
        }
    }
    len_a.cmp(&len_b)
}

/// Decodes exactly one value spanning all of `input`.
pub fn decode(input: &[u8]) -> Result<MsgValue, MsgpackError> {
    let mut reader = Reader { buf: input, pos: 0 };
    let v = reader.value(0)?;
    if reader.pos != input.len() {
        return Err(MsgpackError::Trailing);
    }
    Ok(v)
}

/// Decodes one value from the front of `input`, returning it and the bytes consumed.
pub fn decode_prefix(input: &[u8]) -> Result<(MsgValue, usize), MsgpackError> {
    let mut reader = Reader { buf: input, pos: 0 };
    let v = reader.value(0)?;
    Ok((v, reader.pos))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgpackError> {
        let end = self.pos.checked_add(n).ok_or(MsgpackError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(MsgpackError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, MsgpackError> {
        Ok(self.take(1)?[0])
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], MsgpackError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn str_body(&mut self, len: usize) -> Result<MsgValue, MsgpackError> {
        let body = self.take(len)?;
        Ok(match body.split_first() {
            None => MsgValue::Str(Vec::new()),
            Some((&t, rest)) if t == ParticleType::String as u8 => MsgValue::Str(rest.to_vec()),
            Some((&t, rest)) => MsgValue::Blob(t, rest.to_vec()),
        })
    }

    fn list(&mut self, n: usize, depth: usize) -> Result<MsgValue, MsgpackError> {
        let mut items = Vec::with_capacity(n.min(self.remaining()));
        for _ in 0..n {
            items.push(self.value(depth + 1)?);
        }
        Ok(MsgValue::List(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<MsgValue, MsgpackError> {
        let mut map = MsgMap { flags: 0, entries: Vec::with_capacity(n.min(self.remaining() / 2)) };
        for i in 0..n {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            // The leading ext-keyed pair carries the map-order flags; it is not an entry.
            if i == 0 {
                if let MsgValue::Ext(t, ref data) = k {
                    if data.is_empty() && t >= 0 {
                        map.flags = t as u8;
                        continue;
                    }
                }
            }
            map.entries.push((k, v));
        }
        Ok(MsgValue::Map(map))
    }

    fn ext(&mut self, len: usize) -> Result<MsgValue, MsgpackError> {
        let t = self.u8()? as i8;
        let data = self.take(len)?.to_vec();
        Ok(MsgValue::Ext(t, data))
    }

    fn value(&mut self, depth: usize) -> Result<MsgValue, MsgpackError> {
        if depth > DEPTH_MAX {
            return Err(MsgpackError::TooDeep);
        }
        let b = self.u8()?;
        Ok(match b {
            0x00..=0x7f => MsgValue::Int(b as i64),
            0x80..=0x8f => return self.map((b & 0x0f) as usize, depth),
            0x90..=0x9f => return self.list((b & 0x0f) as usize, depth),
            0xa0..=0xbf => return self.str_body((b & 0x1f) as usize),
            0xc0 => MsgValue::Nil,
            0xc2 => MsgValue::Bool(false),
            0xc3 => MsgValue::Bool(true),
            0xc4 => {
                let n = self.u8()? as usize;
                MsgValue::Blob(ParticleType::Blob as u8, self.take(n)?.to_vec())
            }
            0xc5 => {
                let n = u16::from_be_bytes(self.be()?) as usize;
                MsgValue::Blob(ParticleType::Blob as u8, self.take(n)?.to_vec())
            }
            0xc6 => {
                let n = u32::from_be_bytes(self.be()?) as usize;
                MsgValue::Blob(ParticleType::Blob as u8, self.take(n)?.to_vec())
            }
            0xc7 => {
                let n = self.u8()? as usize;
                return self.ext(n);
            }
            0xc8 => {
                let n = u16::from_be_bytes(self.be()?) as usize;
                return self.ext(n);
            }
            0xc9 => {
                let n = u32::from_be_bytes(self.be()?) as usize;
                return self.ext(n);
            }
            0xca => MsgValue::Float(f32::from_be_bytes(self.be()?) as f64),
            0xcb => MsgValue::Float(f64::from_be_bytes(self.be()?)),
            0xcc => MsgValue::Int(self.u8()? as i64),
            0xcd => MsgValue::Int(u16::from_be_bytes(self.be()?) as i64),
            0xce => MsgValue::Int(u32::from_be_bytes(self.be()?) as i64),
            0xcf => {
                let v = u64::from_be_bytes(self.be()?);
                match i64::try_from(v) {
                    Ok(i) => MsgValue::Int(i),
                    Err(_) => MsgValue::UInt(v),
                }
            }
            0xd0 => MsgValue::Int(self.u8()? as i8 as i64),
            0xd1 => MsgValue::Int(i16::from_be_bytes(self.be()?) as i64),
            0xd2 => MsgValue::Int(i32::from_be_bytes(self.be()?) as i64),
            0xd3 => MsgValue::Int(i64::from_be_bytes(self.be()?)),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = self.u8()? as usize;
                return self.str_body(n);
            }
            0xda => {
                let n = u16::from_be_bytes(self.be()?) as usize;
                return self.str_body(n);
            }
            0xdb => {
                let n = u32::from_be_bytes(self.be()?) as usize;
                return self.str_body(n);
            }
            0xdc => {
                let n = u16::from_be_bytes(self.be()?) as usize;
                return self.list(n, depth);
            }
            0xdd => {
                let n = u32::from_be_bytes(self.be()?) as usize;
                return self.list(n, depth);
            }
            0xde => {
                let n = u16::from_be_bytes(self.be()?) as usize;
                return self.map(n, depth);
            }
            0xdf => {
                let n = u32::from_be_bytes(self.be()?) as usize;
                return self.map(n, depth);
            }
            0xe0..=0xff => MsgValue::Int(b as i8 as i64),
            other => return Err(MsgpackError::UnsupportedType(other)),
        })
    }
}

/// Encodes `v` onto the end of `out` in the canonical (smallest) form.
pub fn encode(v: &MsgValue, out: &mut Vec<u8>) {
    match v {
        MsgValue::Nil => out.push(0xc0),
        MsgValue::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        MsgValue::Int(i) => encode_int(*i, out),
        MsgValue::UInt(u) => {
            out.push(0xcf);
            out.extend_from_slice(&u.to_be_bytes());
        }
        MsgValue::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_be_bytes());
        }
        MsgValue::Str(s) => encode_prefixed(ParticleType::String as u8, s, out),
        MsgValue::Blob(t, b) => encode_prefixed(*t, b, out),
        MsgValue::List(items) => {
            encode_list_header(items.len(), out);
            for item in items {
                encode(item, out);
            }
        }
        MsgValue::Map(m) => {
            let extra = usize::from(m.flags != 0);
            encode_map_header(m.entries.len() + extra, out);
            if m.flags != 0 {
                out.extend_from_slice(&[0xc7, 0x00, m.flags, 0xc0]);
            }
            for (k, v) in &m.entries {
                encode(k, out);
                encode(v, out);
            }
        }
        MsgValue::Ext(t, data) => {
            match data.len() {
                1 => out.push(0xd4),
                2 => out.push(0xd5),
                4 => out.push(0xd6),
                8 => out.push(0xd7),
                16 => out.push(0xd8),
                n if n <= u8::MAX as usize => out.extend_from_slice(&[0xc7, n as u8]),
                n if n <= u16::MAX as usize => {
                    out.push(0xc8);
                    out.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    out.push(0xc9);
                    out.extend_from_slice(&(n as u32).to_be_bytes());
                }
            }
            out.push(*t as u8);
            out.extend_from_slice(data);
        }
    }
}

/// Encodes `v` into a fresh buffer.
pub fn to_vec(v: &MsgValue) -> Vec<u8> {
    let mut out = Vec::new();
    encode(v, &mut out);
    out
}

/// Encodes an integer in the smallest msgpack form.
pub fn encode_int(i: i64, out: &mut Vec<u8>) {
    if (0..=0x7f).contains(&i) {
        out.push(i as u8);
    } else if (-32..0).contains(&i) {
        out.push(i as i8 as u8);
    } else if i >= 0 {
        if i <= u8::MAX as i64 {
            out.extend_from_slice(&[0xcc, i as u8]);
        } else if i <= u16::MAX as i64 {
            out.push(0xcd);
            out.extend_from_slice(&(i as u16).to_be_bytes());
        } else if i <= u32::MAX as i64 {
            out.push(0xce);
            out.extend_from_slice(&(i as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(i as u64).to_be_bytes());
        }
    } else if i >= i8::MIN as i64 {
        out.extend_from_slice(&[0xd0, i as i8 as u8]);
    } else if i >= i16::MIN as i64 {
        out.push(0xd1);
        out.extend_from_slice(&(i as i16).to_be_bytes());
    } else if i >= i32::MIN as i64 {
        out.push(0xd2);
        out.extend_from_slice(&(i as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn encode_prefixed(particle: u8, body: &[u8], out: &mut Vec<u8>) {
    encode_str_header(body.len() + 1, out);
    out.push(particle);
    out.extend_from_slice(body);
}

/// Writes a str header for `n` bytes (a plain string follows, e.g. a bin name in an
/// expression; values carry a particle-type byte first, see [`encode`]).
pub fn encode_str_header(n: usize, out: &mut Vec<u8>) {
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= u8::MAX as usize {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= u16::MAX as usize {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Writes a list header for `n` elements.
pub fn encode_list_header(n: usize, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(0x90 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xdc);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdd);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Writes a map header for `n` pairs.
pub fn encode_map_header(n: usize, out: &mut Vec<u8>) {
    if n < 16 {
        out.push(0x80 | n as u8);
    } else if n <= u16::MAX as usize {
        out.push(0xde);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdf);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_golden_list_and_map_bins() {
        // [1, "a", [2]] and {"a": 2, "z": 1} as the official Python client sends them.
        let list = decode(&[0x93, 0x01, 0xa2, 0x03, 0x61, 0x91, 0x02]).expect("list");
        assert_eq!(
            list,
            MsgValue::List(vec![MsgValue::Int(1), MsgValue::str("a"), MsgValue::List(vec![MsgValue::Int(2)])])
        );
        let bytes = [0x82, 0xa2, 0x03, 0x61, 0x02, 0xa2, 0x03, 0x7a, 0x01];
        let map = decode(&bytes).expect("map");
        assert_eq!(to_vec(&map), bytes);
    }

    #[test]
    fn ordered_map_marker_round_trips() {
        let bytes = [0x82, 0xc7, 0x00, 0x01, 0xc0, 0xa2, 0x03, 0x61, 0x02];
        let v = decode(&bytes).expect("ordered map");
        match &v {
            MsgValue::Map(m) => {
                assert_eq!(m.flags, 1);
                assert_eq!(m.entries.len(), 1);
            }
            other => panic!("not a map: {other:?}"),
        }
        assert_eq!(to_vec(&v), bytes);
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        // A list header claiming 4 billion elements, with no elements behind it.
        assert_eq!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Err(MsgpackError::Truncated));
        let deep = vec![0x91u8; 1000];
        assert_eq!(decode(&deep), Err(MsgpackError::TooDeep));
        assert_eq!(decode(&[0x01, 0x02]), Err(MsgpackError::Trailing));
        assert_eq!(decode(&[0xc1]), Err(MsgpackError::UnsupportedType(0xc1)));
    }

    fn arb_value() -> impl Strategy<Value = MsgValue> {
        let leaf = prop_oneof![
            Just(MsgValue::Nil),
            any::<bool>().prop_map(MsgValue::Bool),
            any::<i64>().prop_map(MsgValue::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(MsgValue::UInt),
            any::<f64>().prop_filter("NaN never equals itself", |f| !f.is_nan()).prop_map(MsgValue::Float),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(MsgValue::Str),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| MsgValue::Blob(ParticleType::Blob as u8, b)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(MsgValue::List),
                proptest::collection::vec((inner.clone(), inner), 0..20)
                    .prop_map(|entries| MsgValue::Map(MsgMap { flags: 0, entries })),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(v in arb_value()) {
            let bytes = to_vec(&v);
            prop_assert_eq!(decode(&bytes).expect("decodes"), v);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn canonical_order_is_total(a in arb_value(), b in arb_value()) {
            prop_assert_eq!(a.canonical_cmp(&b), b.canonical_cmp(&a).reverse());
            prop_assert_eq!(a.canonical_cmp(&a), Ordering::Equal);
        }
    }
}
