//! The particle codec: how a bin value travels and is stored — a particle type byte and the
//! value's bytes — and how particles map to the msgpack elements of lists, maps and CDT
//! results. One definition for the server, the storage core and the client, so that what one
//! side writes the other reads the same way.
//!
//! Integers are 8 bytes big-endian two's complement (1 to 8 bytes are accepted and
//! sign-extended, as the official clients do); floats 8 bytes IEEE-754 big-endian; bools one
//! byte; strings, blobs and HLLs their bytes; lists and maps their msgpack; GeoJSON a flags
//! byte, a big-endian cell count, 8 bytes per cell, then the JSON text.

use thiserror::Error;

use crate::msgpack::{self, MsgValue};
use crate::ParticleType;

/// Why a particle's bytes are not a value of its type.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum ParticleError {
    #[error("integer must be 1 to 8 bytes")]
    Integer,
    #[error("float must be 8 bytes")]
    Float,
    #[error("bool must be 1 byte")]
    Bool,
    #[error("malformed GeoJSON value")]
    GeoJson,
    #[error("list or map is malformed")]
    Collection,
}

impl ParticleError {
    /// The error's text, for errors that carry a static message.
    pub fn message(self) -> &'static str {
        match self {
            ParticleError::Integer => "integer must be 1 to 8 bytes",
            ParticleError::Float => "float must be 8 bytes",
            ParticleError::Bool => "bool must be 1 byte",
            ParticleError::GeoJson => "malformed GeoJSON value",
            ParticleError::Collection => "list or map is malformed",
        }
    }
}

/// A particle decoded as far as its type says, borrowing its bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParticleValue<'a> {
    Nil,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// UTF-8 text, not checked.
    String(&'a [u8]),
    /// A plain blob (particle type 4).
    Blob(&'a [u8]),
    /// msgpack bytes, not decoded.
    List(&'a [u8]),
    /// msgpack bytes, not decoded.
    Map(&'a [u8]),
    /// The JSON text (the cells before it are the server's index and are not kept).
    GeoJson(&'a [u8]),
    Hll(&'a [u8]),
    /// Any other type (language blobs, digests, vectors, types this crate does not know),
    /// kept opaque with its type byte.
    Other(u8, &'a [u8]),
}

impl<'a> ParticleValue<'a> {
    /// Decodes the bytes of a particle of type `particle`.
    pub fn decode(particle: u8, bytes: &'a [u8]) -> Result<ParticleValue<'a>, ParticleError> {
        let Some(t) = ParticleType::from_u8(particle) else {
            return Ok(ParticleValue::Other(particle, bytes));
        };
        Ok(match t {
            ParticleType::Null => ParticleValue::Nil,
            ParticleType::Integer => ParticleValue::Int(decode_int(bytes)?),
            ParticleType::Float => ParticleValue::Float(decode_float(bytes)?),
            ParticleType::Bool => ParticleValue::Bool(decode_bool(bytes)?),
            ParticleType::String => ParticleValue::String(bytes),
            ParticleType::Blob => ParticleValue::Blob(bytes),
            ParticleType::List => ParticleValue::List(bytes),
            ParticleType::Map => ParticleValue::Map(bytes),
            ParticleType::GeoJson => ParticleValue::GeoJson(geojson_text(bytes)?),
            ParticleType::Hll => ParticleValue::Hll(bytes),
            other => ParticleValue::Other(other as u8, bytes),
        })
    }

    /// The particle type byte.
    pub fn particle_type(&self) -> u8 {
        match self {
            ParticleValue::Nil => ParticleType::Null as u8,
            ParticleValue::Int(_) => ParticleType::Integer as u8,
            ParticleValue::Float(_) => ParticleType::Float as u8,
            ParticleValue::Bool(_) => ParticleType::Bool as u8,
            ParticleValue::String(_) => ParticleType::String as u8,
            ParticleValue::Blob(_) => ParticleType::Blob as u8,
            ParticleValue::List(_) => ParticleType::List as u8,
            ParticleValue::Map(_) => ParticleType::Map as u8,
            ParticleValue::GeoJson(_) => ParticleType::GeoJson as u8,
            ParticleValue::Hll(_) => ParticleType::Hll as u8,
            ParticleValue::Other(t, _) => *t,
        }
    }

    /// The particle's bytes, as they travel (integers always 8 bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            ParticleValue::Nil => Vec::new(),
            ParticleValue::Int(i) => i.to_be_bytes().to_vec(),
            ParticleValue::Float(f) => f.to_be_bytes().to_vec(),
            ParticleValue::Bool(b) => vec![u8::from(*b)],
            ParticleValue::GeoJson(text) => {
                // Flags 0 and no cells, then the JSON text, as the clients send it.
                let mut v = Vec::with_capacity(GEOJSON_HEADER_LEN + text.len());
                v.extend_from_slice(&[0; GEOJSON_HEADER_LEN]);
                v.extend_from_slice(text);
                v
            }
            ParticleValue::String(b)
            | ParticleValue::Blob(b)
            | ParticleValue::List(b)
            | ParticleValue::Map(b)
            | ParticleValue::Hll(b)
            | ParticleValue::Other(_, b) => b.to_vec(),
        }
    }
}

/// Bytes before a GeoJSON particle's cells: a flags byte and a big-endian cell count.
const GEOJSON_HEADER_LEN: usize = 3;
/// Bytes of one GeoJSON cell id.
const GEOJSON_CELL_LEN: usize = 8;

/// Decodes an integer particle: 1 to 8 bytes, big-endian two's complement, sign-extended.
pub fn decode_int(bytes: &[u8]) -> Result<i64, ParticleError> {
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(ParticleError::Integer);
    }
    let fill = if bytes[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 8];
    be[8 - bytes.len()..].copy_from_slice(bytes);
    Ok(i64::from_be_bytes(be))
}

/// Decodes a float particle: 8 bytes, big-endian.
pub fn decode_float(bytes: &[u8]) -> Result<f64, ParticleError> {
    bytes.try_into().map(f64::from_be_bytes).map_err(|_| ParticleError::Float)
}

/// Decodes a bool particle: one byte, anything but 0 is true.
pub fn decode_bool(bytes: &[u8]) -> Result<bool, ParticleError> {
    match bytes {
        [b] => Ok(*b != 0),
        _ => Err(ParticleError::Bool),
    }
}

/// The JSON text of a GeoJSON particle (after its flags byte, cell count and cells).
pub fn geojson_text(bytes: &[u8]) -> Result<&[u8], ParticleError> {
    let count = bytes.get(1..GEOJSON_HEADER_LEN).ok_or(ParticleError::GeoJson)?;
    let cells = u16::from_be_bytes([count[0], count[1]]) as usize;
    bytes.get(GEOJSON_HEADER_LEN + GEOJSON_CELL_LEN * cells..).ok_or(ParticleError::GeoJson)
}

/// The particle form of a msgpack element, as CDT results answer it: Int → 1 (an unsigned
/// integer above `i64::MAX` wraps, as the server's does), Float → 2, Str → 3, Blob(t, b) →
/// t, Bool → 17, List → 20 and Map → 19 as msgpack bytes, Nil → 0 with no bytes; a stray ext
/// value comes back as a blob of its data.
pub fn from_msgpack(v: &MsgValue) -> (u8, Vec<u8>) {
    match v {
        MsgValue::Nil => (ParticleType::Null as u8, Vec::new()),
        MsgValue::Bool(b) => (ParticleType::Bool as u8, vec![u8::from(*b)]),
        MsgValue::Int(i) => (ParticleType::Integer as u8, i.to_be_bytes().to_vec()),
        MsgValue::UInt(u) => (ParticleType::Integer as u8, u.to_be_bytes().to_vec()),
        MsgValue::Float(f) => (ParticleType::Float as u8, f.to_be_bytes().to_vec()),
        MsgValue::Str(s) => (ParticleType::String as u8, s.clone()),
        MsgValue::Blob(t, b) => (*t, b.clone()),
        MsgValue::List(_) => (ParticleType::List as u8, msgpack::to_vec(v)),
        MsgValue::Map(_) => (ParticleType::Map as u8, msgpack::to_vec(v)),
        MsgValue::Ext(_, data) => (ParticleType::Blob as u8, data.clone()),
    }
}

/// The msgpack element for a particle, the inverse of [`from_msgpack`]: lists and maps are
/// decoded (and must be what their type says); any type without its own msgpack form
/// becomes a blob element of that type, its bytes as they are.
pub fn to_msgpack(particle: u8, bytes: &[u8]) -> Result<MsgValue, ParticleError> {
    Ok(match ParticleType::from_u8(particle) {
        Some(ParticleType::Null) => MsgValue::Nil,
        Some(ParticleType::Integer) => MsgValue::Int(decode_int(bytes)?),
        Some(ParticleType::Float) => MsgValue::Float(decode_float(bytes)?),
        Some(ParticleType::Bool) => MsgValue::Bool(decode_bool(bytes)?),
        Some(ParticleType::String) => MsgValue::Str(bytes.to_vec()),
        Some(ParticleType::List) | Some(ParticleType::Map) => decode_collection(particle, bytes)?,
        _ => MsgValue::Blob(particle, bytes.to_vec()),
    })
}

/// Decodes a list (particle 20) or map (particle 19), checking it is what its type says.
pub fn decode_collection(particle: u8, bytes: &[u8]) -> Result<MsgValue, ParticleError> {
    let v = msgpack::decode(bytes).map_err(|_| ParticleError::Collection)?;
    let list = ParticleType::List as u8;
    let map = ParticleType::Map as u8;
    match (&v, particle) {
        (MsgValue::List(_), t) if t == list => Ok(v),
        (MsgValue::Map(_), t) if t == map => Ok(v),
        _ => Err(ParticleError::Collection),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack::MsgMap;

    #[test]
    fn values_round_trip_through_bytes() {
        let geo = b"{\"type\":\"Point\",\"coordinates\":[1,2]}";
        let values = [
            ParticleValue::Nil,
            ParticleValue::Int(-7),
            ParticleValue::Float(1.5),
            ParticleValue::Bool(true),
            ParticleValue::String(b"hi"),
            ParticleValue::Blob(&[0, 255]),
            ParticleValue::List(&[0x91, 0x01]),
            ParticleValue::Map(&[0x80]),
            ParticleValue::GeoJson(geo),
            ParticleValue::Hll(&[1, 2, 3]),
            ParticleValue::Other(9, &[1]),
            ParticleValue::Other(200, &[2]),
        ];
        for v in values {
            let bytes = v.to_bytes();
            assert_eq!(ParticleValue::decode(v.particle_type(), &bytes), Ok(v));
        }
    }

    #[test]
    fn short_integers_are_sign_extended() {
        assert_eq!(decode_int(&[0xff]), Ok(-1));
        assert_eq!(decode_int(&[0x01, 0x00]), Ok(256));
        assert_eq!(decode_int(&[]), Err(ParticleError::Integer));
        assert_eq!(decode_int(&[0; 9]), Err(ParticleError::Integer));
    }

    #[test]
    fn malformed_scalars_are_errors() {
        assert_eq!(ParticleValue::decode(2, &[0; 4]), Err(ParticleError::Float));
        assert_eq!(ParticleValue::decode(17, &[]), Err(ParticleError::Bool));
        assert_eq!(ParticleValue::decode(23, &[0, 0]), Err(ParticleError::GeoJson));
        // One cell announced, none sent.
        assert_eq!(ParticleValue::decode(23, &[0, 0, 1, b'{']), Err(ParticleError::GeoJson));
        assert_eq!(geojson_text(&[0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']), Ok(&b"{}"[..]));
    }

    #[test]
    fn msgpack_elements_round_trip() {
        let values = [
            MsgValue::Nil,
            MsgValue::Bool(true),
            MsgValue::Int(-5),
            MsgValue::Float(2.5),
            MsgValue::str("hi"),
            MsgValue::Blob(4, vec![1, 2]),
            MsgValue::List(vec![MsgValue::Int(1)]),
            MsgValue::Map(MsgMap { flags: 0, entries: vec![(MsgValue::Int(1), MsgValue::Int(2))] }),
        ];
        let particles = [0u8, 17, 1, 2, 3, 4, 20, 19];
        for (v, want) in values.iter().zip(particles) {
            let (p, bytes) = from_msgpack(v);
            assert_eq!(p, want);
            assert_eq!(to_msgpack(p, &bytes).as_ref(), Ok(v));
        }
        assert_eq!(to_msgpack(1, &[0xff]), Ok(MsgValue::Int(-1)));
        assert_eq!(to_msgpack(20, &[0x80]), Err(ParticleError::Collection));
        assert_eq!(to_msgpack(19, &[0x93, 0x01]), Err(ParticleError::Collection));
    }
}
