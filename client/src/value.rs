//! Values a client writes and reads, and their wire forms: particles (whose bytes are the
//! protocol's, [`petrel_proto::particle`]) and msgpack.

use petrel_proto::msgpack::{self, MsgMap, MsgValue};
use petrel_proto::particle::ParticleValue;
use petrel_proto::ParticleType;

use crate::Error;

/// A bin value, or an element of a list or map.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Nil,
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
    Blob(Vec<u8>),
    List(Vec<Value>),
    /// Map entries, in the order the server keeps them (canonical key order).
    Map(Vec<(Value, Value)>),
    GeoJson(String),
    Hll(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}
impl From<Vec<Value>> for Value {
    fn from(v: Vec<Value>) -> Self {
        Value::List(v)
    }
}

impl Value {
    /// The particle type and bytes this value travels as in a bin.
    pub(crate) fn to_particle(&self) -> (u8, Vec<u8>) {
        // Lists and maps are encoded here; every other type's bytes are the protocol's.
        let collection;
        let wire = match self {
            Value::Nil => ParticleValue::Nil,
            Value::Int(i) => ParticleValue::Int(*i),
            Value::Float(f) => ParticleValue::Float(*f),
            Value::Bool(b) => ParticleValue::Bool(*b),
            Value::String(s) => ParticleValue::String(s.as_bytes()),
            Value::Blob(b) => ParticleValue::Blob(b),
            Value::List(_) => {
                collection = msgpack::to_vec(&self.to_msgpack());
                ParticleValue::List(&collection)
            }
            Value::Map(_) => {
                collection = msgpack::to_vec(&self.to_msgpack());
                ParticleValue::Map(&collection)
            }
            Value::GeoJson(s) => ParticleValue::GeoJson(s.as_bytes()),
            Value::Hll(b) => ParticleValue::Hll(b),
        };
        (wire.particle_type(), wire.to_bytes())
    }

    /// Reads a bin value from its particle type and bytes; a type without a variant of its
    /// own (a language blob, say) reads as a blob.
    pub(crate) fn from_particle(particle: u8, bytes: &[u8]) -> Result<Value, Error> {
        let wire = ParticleValue::decode(particle, bytes).map_err(|e| Error::Protocol(e.to_string()))?;
        Ok(match wire {
            ParticleValue::Nil => Value::Nil,
            ParticleValue::Int(i) => Value::Int(i),
            ParticleValue::Float(f) => Value::Float(f),
            ParticleValue::Bool(b) => Value::Bool(b),
            ParticleValue::String(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
            ParticleValue::List(b) | ParticleValue::Map(b) => {
                Value::from_msgpack(msgpack::decode(b).map_err(|e| Error::Protocol(e.to_string()))?)
            }
            ParticleValue::GeoJson(text) => Value::GeoJson(String::from_utf8_lossy(text).into_owned()),
            ParticleValue::Hll(b) => Value::Hll(b.to_vec()),
            ParticleValue::Blob(b) | ParticleValue::Other(_, b) => Value::Blob(b.to_vec()),
        })
    }

    /// The msgpack form, for list and map elements and CDT operation arguments.
    pub(crate) fn to_msgpack(&self) -> MsgValue {
        match self {
            Value::Nil => MsgValue::Nil,
            Value::Int(i) => MsgValue::Int(*i),
            Value::Float(f) => MsgValue::Float(*f),
            Value::Bool(b) => MsgValue::Bool(*b),
            Value::String(s) => MsgValue::Str(s.as_bytes().to_vec()),
            Value::Blob(b) => MsgValue::Blob(ParticleType::Blob as u8, b.clone()),
            Value::List(items) => MsgValue::List(items.iter().map(Value::to_msgpack).collect()),
            Value::Map(entries) => MsgValue::Map(MsgMap {
                flags: 0,
                entries: entries.iter().map(|(k, v)| (k.to_msgpack(), v.to_msgpack())).collect(),
            }),
            Value::GeoJson(s) => MsgValue::Blob(ParticleType::GeoJson as u8, s.as_bytes().to_vec()),
            Value::Hll(b) => MsgValue::Blob(ParticleType::Hll as u8, b.clone()),
        }
    }

    pub(crate) fn from_msgpack(v: MsgValue) -> Value {
        match v {
            MsgValue::Nil => Value::Nil,
            MsgValue::Bool(b) => Value::Bool(b),
            MsgValue::Int(i) => Value::Int(i),
            MsgValue::UInt(u) => Value::Int(u as i64),
            MsgValue::Float(f) => Value::Float(f),
            MsgValue::Str(s) => Value::String(String::from_utf8_lossy(&s).into_owned()),
            MsgValue::Blob(t, b) if t == ParticleType::GeoJson as u8 => {
                Value::GeoJson(String::from_utf8_lossy(&b).into_owned())
            }
            MsgValue::Blob(t, b) if t == ParticleType::Hll as u8 => Value::Hll(b),
            MsgValue::Blob(_, b) => Value::Blob(b),
            MsgValue::List(items) => Value::List(items.into_iter().map(Value::from_msgpack).collect()),
            MsgValue::Map(m) => Value::Map(
                m.entries.into_iter().map(|(k, v)| (Value::from_msgpack(k), Value::from_msgpack(v))).collect(),
            ),
            MsgValue::Ext(_, b) => Value::Blob(b),
        }
    }

    /// The value as an integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A named bin value.
#[derive(Debug, Clone, PartialEq)]
pub struct Bin {
    pub name: String,
    pub value: Value,
}

impl Bin {
    pub fn new(name: impl Into<String>, value: impl Into<Value>) -> Bin {
        Bin { name: name.into(), value: value.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particles_round_trip() {
        let values = vec![
            Value::Nil,
            Value::Int(-3),
            Value::Float(2.5),
            Value::Bool(true),
            Value::String("hé".into()),
            Value::Blob(vec![0, 1]),
            Value::List(vec![Value::Int(1), Value::String("a".into()), Value::List(vec![])]),
            Value::Map(vec![(Value::String("k".into()), Value::Float(1.0))]),
            Value::GeoJson("{}".into()),
            Value::Hll(vec![9]),
        ];
        for v in values {
            let (p, bytes) = v.to_particle();
            assert_eq!(Value::from_particle(p, &bytes).expect("decodes"), v);
        }
    }
}
