//! Bin values: the typed [`Value`] that callers build and read, and the checks every value
//! passes before it is stored.
//!
//! Stored values keep their wire form (particle type + bytes), so a read answers with a copy
//! of stored bytes and no conversion. Lists and maps stay msgpack, maps in canonical key order.

use std::borrow::Cow;

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
        let (particle, bytes) = match self {
            Value::Nil => (ParticleType::Null as u8, Vec::new()),
            Value::Int(i) => (ParticleType::Integer as u8, i.to_be_bytes().to_vec()),
            Value::Float(f) => (ParticleType::Float as u8, f.to_be_bytes().to_vec()),
            Value::Bool(b) => (ParticleType::Bool as u8, vec![u8::from(*b)]),
            Value::String(s) => (ParticleType::String as u8, s.as_bytes().to_vec()),
            Value::Bytes(b) => (ParticleType::Blob as u8, b.clone()),
            Value::List(b) => (ParticleType::List as u8, b.clone()),
            Value::Map(b) => (ParticleType::Map as u8, b.clone()),
            Value::GeoJson(s) => {
                // Flags 0 and no cells, then the JSON text, as the clients send it.
                let mut v = vec![0, 0, 0];
                v.extend_from_slice(s.as_bytes());
                (ParticleType::GeoJson as u8, v)
            }
            Value::Hll(b) => (ParticleType::Hll as u8, b.clone()),
            Value::Blob(t, b) => (*t, b.clone()),
        };
        Particle { particle, bytes }
    }

    /// Reads a stored or wire value.
    pub fn from_particle(p: ParticleRef<'_>) -> Result<Value, StorageError> {
        let t = ParticleType::from_u8(p.particle).ok_or(StorageError::Parameter("unknown particle type"))?;
        Ok(match t {
            ParticleType::Null => Value::Nil,
            ParticleType::Integer => Value::Int(int_from_wire(p.bytes)?),
            ParticleType::Float => Value::Float(f64::from_be_bytes(
                p.bytes.try_into().map_err(|_| StorageError::Parameter("float must be 8 bytes"))?,
            )),
            ParticleType::Bool => match p.bytes {
                [b] => Value::Bool(*b != 0),
                _ => return Err(StorageError::Parameter("bool must be 1 byte")),
            },
            ParticleType::String => Value::String(String::from_utf8_lossy(p.bytes).into_owned()),
            ParticleType::Blob => Value::Bytes(p.bytes.to_vec()),
            ParticleType::List => Value::List(p.bytes.to_vec()),
            ParticleType::Map => Value::Map(p.bytes.to_vec()),
            ParticleType::GeoJson => {
                let text = geojson_text(p.bytes)?;
                Value::GeoJson(String::from_utf8_lossy(text).into_owned())
            }
            ParticleType::Hll => Value::Hll(p.bytes.to_vec()),
            other => Value::Blob(other as u8, p.bytes.to_vec()),
        })
    }

    /// Shorthand for a list value built from msgpack values.
    pub fn list(items: Vec<petrel_proto::msgpack::MsgValue>) -> Value {
        Value::List(petrel_proto::msgpack::to_vec(&petrel_proto::msgpack::MsgValue::List(items)))
    }
}

/// Decodes an integer particle: 1 to 8 bytes, big-endian two's complement, sign-extended.
pub(crate) fn int_from_wire(bytes: &[u8]) -> Result<i64, StorageError> {
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(StorageError::Parameter("integer must be 1 to 8 bytes"));
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 8];
    be[8 - bytes.len()..].copy_from_slice(bytes);
    Ok(i64::from_be_bytes(be))
}

/// The JSON text of a GeoJSON particle (after its flags byte, cell count and cells).
fn geojson_text(bytes: &[u8]) -> Result<&[u8], StorageError> {
    let bad = StorageError::Parameter("malformed GeoJSON value");
    let cells = u16::from_be_bytes([*bytes.get(1).ok_or(bad.clone())?, *bytes.get(2).ok_or(bad.clone())?]);
    let start = 3 + 8 * cells as usize;
    bytes.get(start..).ok_or(bad)
}

/// Checks a value a client writes and returns the bytes to store: integers widened to 8
/// bytes, lists and maps validated and maps put in canonical order.
pub(crate) fn prepare_for_store(p: ParticleRef<'_>) -> Result<Cow<'_, [u8]>, StorageError> {
    let t = ParticleType::from_u8(p.particle).ok_or(StorageError::Parameter("unknown particle type"))?;
    match t {
        ParticleType::Integer => Ok(if p.bytes.len() == 8 {
            Cow::Borrowed(p.bytes)
        } else {
            Cow::Owned(int_from_wire(p.bytes)?.to_be_bytes().to_vec())
        }),
        ParticleType::Float if p.bytes.len() != 8 => Err(StorageError::Parameter("float must be 8 bytes")),
        ParticleType::Bool if p.bytes.len() != 1 => Err(StorageError::Parameter("bool must be 1 byte")),
        ParticleType::GeoJson => geojson_text(p.bytes).map(|_| Cow::Borrowed(p.bytes)),
        ParticleType::List | ParticleType::Map => Ok(Cow::Owned(cdt::normalize_collection(p.particle, p.bytes)?)),
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
    fn short_integers_are_sign_extended() {
        assert_eq!(int_from_wire(&[0xff]).expect("int"), -1);
        assert_eq!(int_from_wire(&[0x01, 0x00]).expect("int"), 256);
        assert!(int_from_wire(&[]).is_err());
        assert!(int_from_wire(&[0; 9]).is_err());
    }

    #[test]
    fn bin_names_are_bounded() {
        assert!(check_bin_name(b"a").is_ok());
        assert!(check_bin_name(&[b'x'; 15]).is_ok());
        assert_eq!(check_bin_name(&[b'x'; 16]).unwrap_err().result_code(), petrel_proto::ResultCode::BinName);
        assert!(check_bin_name(b"").is_err());
    }
}
