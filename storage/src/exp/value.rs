//! The values an expression computes: [`EVal`], borrowing bin bytes from the record image (or
//! literal bytes from the compiled program) until an operation has to make a new one, and its
//! conversions to and from particles and msgpack elements.

use std::borrow::Cow;
use std::cmp::Ordering;

use petrel_proto::msgpack::{self, MsgValue, EXT_SENTINEL, SENTINEL_INF, SENTINEL_WILDCARD};
use petrel_proto::particle;
use petrel_proto::ParticleType;

use crate::value::{Particle, ParticleRef};

/// A value an expression produced. "Unknown" is not a value: evaluation answers `None`.
#[derive(Debug, Clone, PartialEq)]
pub enum EVal<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Cow<'a, [u8]>),
    Blob(Cow<'a, [u8]>),
    /// GeoJSON particle bytes.
    Geo(Cow<'a, [u8]>),
    Hll(Cow<'a, [u8]>),
    /// msgpack bytes.
    List(Cow<'a, [u8]>),
    /// msgpack bytes, in canonical key order.
    Map(Cow<'a, [u8]>),
    /// The infinity sentinel (an open range end in CDT calls).
    Inf,
    /// The wildcard sentinel.
    Wildcard,
}

impl<'a> EVal<'a> {
    /// The value of a stored bin (or any particle), borrowing its bytes; `None` for a malformed
    /// number or an unknown particle type.
    pub fn from_particle(p: ParticleRef<'a>) -> Option<EVal<'a>> {
        EVal::from_parts(p.particle, Cow::Borrowed(p.bytes))
    }

    /// An owned particle (a CDT, bit or HLL result) as a value; its bytes are moved, not
    /// copied.
    pub fn from_owned_particle(p: Particle) -> Option<EVal<'static>> {
        EVal::from_parts(p.particle, Cow::Owned(p.bytes))
    }

    /// The one mapping from particle types to values: numbers decoded, bytes kept as given.
    fn from_parts(particle_type: u8, b: Cow<'a, [u8]>) -> Option<EVal<'a>> {
        Some(match ParticleType::from_u8(particle_type)? {
            ParticleType::Null => EVal::Nil,
            ParticleType::Integer => EVal::Int(particle::decode_int(&b).ok()?),
            ParticleType::Float => EVal::Float(particle::decode_float(&b).ok()?),
            ParticleType::Bool => EVal::Bool(particle::decode_bool(&b).ok()?),
            ParticleType::String => EVal::Str(b),
            ParticleType::Blob => EVal::Blob(b),
            ParticleType::GeoJson => EVal::Geo(b),
            ParticleType::Hll => EVal::Hll(b),
            ParticleType::List => EVal::List(b),
            ParticleType::Map => EVal::Map(b),
            _ => EVal::Blob(b),
        })
    }

    /// A literal msgpack element as a value; lists and maps are re-encoded (maps in
    /// canonical order by the caller).
    pub fn from_msgpack(v: &MsgValue) -> EVal<'static> {
        match v {
            MsgValue::Nil => EVal::Nil,
            MsgValue::Bool(b) => EVal::Bool(*b),
            MsgValue::Int(i) => EVal::Int(*i),
            MsgValue::UInt(u) => EVal::Int(*u as i64),
            MsgValue::Float(f) => EVal::Float(*f),
            MsgValue::Str(s) => EVal::Str(Cow::Owned(s.clone())),
            MsgValue::Blob(t, b) if *t == ParticleType::GeoJson as u8 => EVal::Geo(Cow::Owned(b.clone())),
            MsgValue::Blob(t, b) if *t == ParticleType::Hll as u8 => EVal::Hll(Cow::Owned(b.clone())),
            MsgValue::Blob(_, b) => EVal::Blob(Cow::Owned(b.clone())),
            MsgValue::List(_) => EVal::List(Cow::Owned(msgpack::to_vec(v))),
            MsgValue::Map(_) => EVal::Map(Cow::Owned(msgpack::to_vec(v))),
            v if v.is_inf() => EVal::Inf,
            v if v.is_wildcard() => EVal::Wildcard,
            MsgValue::Ext(_, d) => EVal::Blob(Cow::Owned(d.clone())),
        }
    }

    /// The value as a msgpack element (an argument of a CDT, bit or HLL call).
    pub fn to_msgpack(&self) -> Option<MsgValue> {
        Some(match self {
            EVal::Nil => MsgValue::Nil,
            EVal::Bool(b) => MsgValue::Bool(*b),
            EVal::Int(i) => MsgValue::Int(*i),
            EVal::Float(f) => MsgValue::Float(*f),
            EVal::Str(s) => MsgValue::Str(s.to_vec()),
            EVal::Blob(b) => MsgValue::Blob(ParticleType::Blob as u8, b.to_vec()),
            EVal::Geo(b) => MsgValue::Blob(ParticleType::GeoJson as u8, b.to_vec()),
            EVal::Hll(b) => MsgValue::Blob(ParticleType::Hll as u8, b.to_vec()),
            EVal::List(b) | EVal::Map(b) => msgpack::decode(b).ok()?,
            EVal::Inf => MsgValue::Ext(EXT_SENTINEL, vec![SENTINEL_INF]),
            EVal::Wildcard => MsgValue::Ext(EXT_SENTINEL, vec![SENTINEL_WILDCARD]),
        })
    }

    /// The particle type and bytes a bin holding this value would store; `None` for the
    /// sentinels, which cannot be stored.
    pub fn particle_parts(&self) -> Option<(u8, Cow<'_, [u8]>)> {
        let t = |p: ParticleType| p as u8;
        Some(match self {
            EVal::Nil => (t(ParticleType::Null), Cow::Borrowed(&[][..])),
            EVal::Bool(b) => (t(ParticleType::Bool), Cow::Owned(vec![u8::from(*b)])),
            EVal::Int(i) => (t(ParticleType::Integer), Cow::Owned(i.to_be_bytes().to_vec())),
            EVal::Float(f) => (t(ParticleType::Float), Cow::Owned(f.to_be_bytes().to_vec())),
            EVal::Str(b) => (t(ParticleType::String), Cow::Borrowed(b.as_ref())),
            EVal::Blob(b) => (t(ParticleType::Blob), Cow::Borrowed(b.as_ref())),
            EVal::Geo(b) => (t(ParticleType::GeoJson), Cow::Borrowed(b.as_ref())),
            EVal::Hll(b) => (t(ParticleType::Hll), Cow::Borrowed(b.as_ref())),
            EVal::List(b) => (t(ParticleType::List), Cow::Borrowed(b.as_ref())),
            EVal::Map(b) => (t(ParticleType::Map), Cow::Borrowed(b.as_ref())),
            EVal::Inf | EVal::Wildcard => return None,
        })
    }

    /// The value as an owned particle.
    pub fn to_particle(&self) -> Option<Particle> {
        self.particle_parts().map(|(particle, bytes)| Particle { particle, bytes: bytes.into_owned() })
    }

    /// The value with every borrow copied.
    pub fn into_owned(self) -> EVal<'static> {
        let own = |c: Cow<'_, [u8]>| Cow::Owned(c.into_owned());
        match self {
            EVal::Nil => EVal::Nil,
            EVal::Bool(b) => EVal::Bool(b),
            EVal::Int(i) => EVal::Int(i),
            EVal::Float(f) => EVal::Float(f),
            EVal::Str(c) => EVal::Str(own(c)),
            EVal::Blob(c) => EVal::Blob(own(c)),
            EVal::Geo(c) => EVal::Geo(own(c)),
            EVal::Hll(c) => EVal::Hll(own(c)),
            EVal::List(c) => EVal::List(own(c)),
            EVal::Map(c) => EVal::Map(own(c)),
            EVal::Inf => EVal::Inf,
            EVal::Wildcard => EVal::Wildcard,
        }
    }

    /// A copy that borrows from `self`.
    pub fn reborrow(&self) -> EVal<'_> {
        fn b(c: &[u8]) -> Cow<'_, [u8]> {
            Cow::Borrowed(c)
        }
        match self {
            EVal::Nil => EVal::Nil,
            EVal::Bool(v) => EVal::Bool(*v),
            EVal::Int(v) => EVal::Int(*v),
            EVal::Float(v) => EVal::Float(*v),
            EVal::Str(c) => EVal::Str(b(c)),
            EVal::Blob(c) => EVal::Blob(b(c)),
            EVal::Geo(c) => EVal::Geo(b(c)),
            EVal::Hll(c) => EVal::Hll(b(c)),
            EVal::List(c) => EVal::List(b(c)),
            EVal::Map(c) => EVal::Map(b(c)),
            EVal::Inf => EVal::Inf,
            EVal::Wildcard => EVal::Wildcard,
        }
    }

    /// The expression type code ([`petrel_proto::exp::ty`]) of the value.
    pub fn type_code(&self) -> i64 {
        use petrel_proto::exp::ty;
        match self {
            EVal::Nil | EVal::Inf | EVal::Wildcard => ty::NIL,
            EVal::Bool(_) => ty::BOOL,
            EVal::Int(_) => ty::INT,
            EVal::Float(_) => ty::FLOAT,
            EVal::Str(_) => ty::STRING,
            EVal::Blob(_) => ty::BLOB,
            EVal::Geo(_) => ty::GEO,
            EVal::Hll(_) => ty::HLL,
            EVal::List(_) => ty::LIST,
            EVal::Map(_) => ty::MAP,
        }
    }
}

/// Compares two values of the same type; `None` when the types differ (the comparison is then
/// unknown) or a collection is malformed. Lists and maps compare in the protocol's msgpack
/// order; floats by IEEE order (NaN is unordered, so unknown).
pub fn compare(a: &EVal<'_>, b: &EVal<'_>) -> Option<Ordering> {
    match (a, b) {
        (EVal::Nil, EVal::Nil) => Some(Ordering::Equal),
        (EVal::Bool(x), EVal::Bool(y)) => Some(x.cmp(y)),
        (EVal::Int(x), EVal::Int(y)) => Some(x.cmp(y)),
        (EVal::Float(x), EVal::Float(y)) => x.partial_cmp(y),
        (EVal::Str(x), EVal::Str(y))
        | (EVal::Blob(x), EVal::Blob(y))
        | (EVal::Geo(x), EVal::Geo(y))
        | (EVal::Hll(x), EVal::Hll(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (EVal::List(x), EVal::List(y)) | (EVal::Map(x), EVal::Map(y)) => {
            if x == y {
                return Some(Ordering::Equal);
            }
            let x = msgpack::decode(x).ok()?;
            let y = msgpack::decode(y).ok()?;
            Some(x.canonical_cmp(&y))
        }
        _ => None,
    }
}
