//! Bin values: the typed [`Value`] that callers build and read, and the checks every value
//! passes before it is stored.
//!
//! Stored values keep their wire form (particle type + bytes), so a read answers with a copy
//! of stored bytes and no conversion. Lists and maps stay msgpack, maps in canonical key order.
//! The bytes of each type are the protocol's ([`petrel_proto::particle`]); this module only
//! maps them to and from [`Value`].

use std::borrow::Cow;

use petrel_proto::particle::{self, ParticleValue};
use petrel_proto::wire::BIN_NAME_LEN_MAX;
use petrel_proto::ParticleType;

use crate::cdt;
pub use crate::cdt::{Particle, ParticleRef};
use crate::StorageError;

/// A typed bin value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Bytes(Vec<u8>),
    /// A list, as msgpack.
    List(Vec<u8>),
    /// A map, as msgpack in canonical key order.
    Map(Vec<u8>),
    /// GeoJSON text.
    GeoJson(String),
    /// HyperLogLog bytes, opaque.
    Hll(Vec<u8>),
    /// A blob of another particle type (legacy language blobs), kept opaque.
    Blob(u8, Vec<u8>),
}

impl Value {
    /// The value's wire form.
    pub fn to_particle(&self) -> Particle {
        let wire = match self {
            Value::Nil => ParticleValue::Nil,
            Value::Int(i) => ParticleValue::Int(*i),
            Value::Float(f) => ParticleValue::Float(*f),
            Value::Bool(b) => ParticleValue::Bool(*b),
            Value::String(s) => ParticleValue::String(s.as_bytes()),
            Value::Bytes(b) => ParticleValue::Blob(b),
            Value::List(b) => ParticleValue::List(b),
            Value::Map(b) => ParticleValue::Map(b),
            Value::GeoJson(s) => ParticleValue::GeoJson(s.as_bytes()),
            Value::Hll(b) => ParticleValue::Hll(b),
            Value::Blob(t, b) => ParticleValue::Other(*t, b),
        };
        Particle { particle: wire.particle_type(), bytes: wire.to_bytes() }
    }

    /// Reads a stored or wire value.
    pub fn from_particle(p: ParticleRef<'_>) -> Result<Value, StorageError> {
        if ParticleType::from_u8(p.particle).is_none() {
            return Err(StorageError::Parameter("unknown particle type"));
        }
        Ok(match ParticleValue::decode(p.particle, p.bytes)? {
            ParticleValue::Nil => Value::Nil,
            ParticleValue::Int(i) => Value::Int(i),
            ParticleValue::Float(f) => Value::Float(f),
            ParticleValue::Bool(b) => Value::Bool(b),
            ParticleValue::String(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
            ParticleValue::Blob(b) => Value::Bytes(b.to_vec()),
            ParticleValue::List(b) => Value::List(b.to_vec()),
            ParticleValue::Map(b) => Value::Map(b.to_vec()),
            ParticleValue::GeoJson(text) => Value::GeoJson(String::from_utf8_lossy(text).into_owned()),
            ParticleValue::Hll(b) => Value::Hll(b.to_vec()),
            ParticleValue::Other(t, b) => Value::Blob(t, b.to_vec()),
        })
    }

    /// Shorthand for a list value built from msgpack values.
    pub fn list(items: Vec<petrel_proto::msgpack::MsgValue>) -> Value {
        Value::List(petrel_proto::msgpack::to_vec(&petrel_proto::msgpack::MsgValue::List(items)))
    }
}

/// Checks a value a client writes and returns the bytes to store: integers widened to 8
/// bytes, lists and maps validated and maps put in canonical order.
pub(crate) fn prepare_for_store(p: ParticleRef<'_>) -> Result<Cow<'_, [u8]>, StorageError> {
    let t = ParticleType::from_u8(p.particle).ok_or(StorageError::Parameter("unknown particle type"))?;
    match t {
        ParticleType::Integer => Ok(if p.bytes.len() == 8 {
            Cow::Borrowed(p.bytes)
        } else {
            Cow::Owned(particle::decode_int(p.bytes)?.to_be_bytes().to_vec())
        }),
        ParticleType::Float => particle::decode_float(p.bytes).map(|_| Cow::Borrowed(p.bytes)).map_err(Into::into),
        ParticleType::Bool => particle::decode_bool(p.bytes).map(|_| Cow::Borrowed(p.bytes)).map_err(Into::into),
        ParticleType::GeoJson => particle::geojson_text(p.bytes).map(|_| Cow::Borrowed(p.bytes)).map_err(Into::into),
        ParticleType::List | ParticleType::Map => Ok(Cow::Owned(cdt::normalize_collection(p.particle, p.bytes)?)),
        // An HLL is only ever stored in the layout every server reads.
        ParticleType::Hll if !petrel_proto::hll::layout_ok(p.bytes) => {
            Err(StorageError::Parameter("HLL value has a bad header or length"))
        }
        _ => Ok(Cow::Borrowed(p.bytes)),
    }
}

/// Checks a bin name that is to be written: 1 to 15 bytes.
pub fn check_bin_name(name: &[u8]) -> Result<(), StorageError> {
    if name.is_empty() {
        return Err(StorageError::BinName("bin name is empty"));
    }
    if name.len() > BIN_NAME_LEN_MAX {
        return Err(StorageError::BinName("bin name is longer than 15 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_particles() {
        let values = [
            Value::Nil,
            Value::Int(-7),
            Value::Float(1.5),
            Value::Bool(true),
            Value::String("hi".into()),
            Value::Bytes(vec![0, 255]),
            Value::GeoJson("{\"type\":\"Point\",\"coordinates\":[1,2]}".into()),
            Value::Hll(vec![1, 2, 3]),
            Value::Blob(9, vec![1]),
        ];
        for v in values {
            let p = v.to_particle();
            let back = Value::from_particle(ParticleRef { particle: p.particle, bytes: &p.bytes }).expect("decodes");
            assert_eq!(back, v);
        }
    }

    #[test]
    fn short_integers_are_widened_for_storage() {
        let stored = prepare_for_store(ParticleRef { particle: 1, bytes: &[0xff] }).expect("int");
        assert_eq!(stored.as_ref(), (-1i64).to_be_bytes());
        assert!(prepare_for_store(ParticleRef { particle: 1, bytes: &[] }).is_err());
        assert!(prepare_for_store(ParticleRef { particle: 2, bytes: &[0; 4] }).is_err());
        assert!(prepare_for_store(ParticleRef { particle: 255, bytes: &[] }).is_err());
    }

    #[test]
    fn bin_names_are_bounded() {
        assert!(check_bin_name(b"a").is_ok());
        assert!(check_bin_name(&[b'x'; 15]).is_ok());
        assert_eq!(check_bin_name(&[b'x'; 16]).unwrap_err().result_code(), petrel_proto::ResultCode::BinName);
        assert!(check_bin_name(b"").is_err());
    }
}
