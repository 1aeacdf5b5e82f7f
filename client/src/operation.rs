//! Operations for `operate`: reads and writes of bins, and list and map operations, each
//! encoded as the op the server expects.

use petrel_proto::cdt;
use petrel_proto::msgpack::{self, MsgValue};
use petrel_proto::wire::OpType;
use petrel_proto::ParticleType;

use crate::value::{Bin, Value};

/// One operation on one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    pub(crate) op_type: OpType,
    pub(crate) bin: String,
    pub(crate) particle: u8,
    pub(crate) value: Vec<u8>,
}

impl Operation {
    fn new(op_type: OpType, bin: &str, value: Option<&Value>) -> Operation {
        let (particle, value) = value.map(Value::to_particle).unwrap_or((0, Vec::new()));
        Operation { op_type, bin: bin.to_string(), particle, value }
    }

    /// A list or map operation; it travels as a CDT modify or read as its op code says.
    fn cdt(bin: &str, op_code: i64, args: Vec<MsgValue>) -> Operation {
        let op_type = if cdt::is_modify(op_code) == Some(true) { OpType::CdtModify } else { OpType::CdtRead };
        let mut items = Vec::with_capacity(args.len() + 1);
        items.push(MsgValue::Int(op_code));
        items.extend(args);
        Operation {
            op_type,
            bin: bin.to_string(),
            particle: ParticleType::Blob as u8,
            value: msgpack::to_vec(&MsgValue::List(items)),
        }
    }

    /// Whether the operation changes the record.
    pub fn is_write(&self) -> bool {
        !matches!(self.op_type, OpType::Read | OpType::CdtRead)
    }

    /// Reads one bin.
    pub fn get(bin: &str) -> Operation {
        Operation::new(OpType::Read, bin, None)
    }
    /// Reads every bin.
    pub fn get_all() -> Operation {
        Operation::new(OpType::Read, "", None)
    }
    /// Sets a bin (a `Nil` value removes it).
    pub fn put(bin: &Bin) -> Operation {
        Operation::new(OpType::Write, &bin.name, Some(&bin.value))
    }
    /// Adds an integer or float to a bin.
    pub fn add(bin: &Bin) -> Operation {
        Operation::new(OpType::Incr, &bin.name, Some(&bin.value))
    }
    /// Appends to a string or blob bin.
    pub fn append(bin: &Bin) -> Operation {
        Operation::new(OpType::Append, &bin.name, Some(&bin.value))
    }
    /// Prepends to a string or blob bin.
    pub fn prepend(bin: &Bin) -> Operation {
        Operation::new(OpType::Prepend, &bin.name, Some(&bin.value))
    }
    /// Refreshes generation and expiry.
    pub fn touch() -> Operation {
        Operation::new(OpType::Touch, "", None)
    }
    /// Deletes the record.
    pub fn delete() -> Operation {
        Operation::new(OpType::Delete, "", None)
    }
}

pub use petrel_proto::cdt::ReturnType;

/// List operations.
pub mod lists {
    use petrel_proto::cdt::list::{
        APPEND, APPEND_ITEMS, CLEAR, GET, GET_BY_INDEX, GET_BY_INDEX_RANGE, GET_RANGE, INSERT, POP, REMOVE,
        REMOVE_BY_INDEX, SET, SIZE,
    };

    use super::*;

    pub fn append(bin: &str, value: &Value) -> Operation {
        Operation::cdt(bin, APPEND, vec![value.to_msgpack()])
    }
    pub fn append_items(bin: &str, values: &[Value]) -> Operation {
        Operation::cdt(bin, APPEND_ITEMS, vec![MsgValue::List(values.iter().map(Value::to_msgpack).collect())])
    }
    pub fn insert(bin: &str, index: i64, value: &Value) -> Operation {
        Operation::cdt(bin, INSERT, vec![MsgValue::Int(index), value.to_msgpack()])
    }
    pub fn set(bin: &str, index: i64, value: &Value) -> Operation {
        Operation::cdt(bin, SET, vec![MsgValue::Int(index), value.to_msgpack()])
    }
    pub fn pop(bin: &str, index: i64) -> Operation {
        Operation::cdt(bin, POP, vec![MsgValue::Int(index)])
    }
    pub fn remove(bin: &str, index: i64) -> Operation {
        Operation::cdt(bin, REMOVE, vec![MsgValue::Int(index)])
    }
    pub fn clear(bin: &str) -> Operation {
        Operation::cdt(bin, CLEAR, vec![])
    }
    pub fn size(bin: &str) -> Operation {
        Operation::cdt(bin, SIZE, vec![])
    }
    pub fn get(bin: &str, index: i64) -> Operation {
        Operation::cdt(bin, GET, vec![MsgValue::Int(index)])
    }
    /// `count` elements from `index` (to the end when `None`).
    pub fn get_range(bin: &str, index: i64, count: Option<i64>) -> Operation {
        let mut args = vec![MsgValue::Int(index)];
        args.extend(count.map(MsgValue::Int));
        Operation::cdt(bin, GET_RANGE, args)
    }
    pub fn get_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(bin, GET_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
    }
    pub fn get_by_index_range(bin: &str, index: i64, count: Option<i64>, rt: ReturnType) -> Operation {
        let mut args = vec![MsgValue::Int(rt as i64), MsgValue::Int(index)];
        args.extend(count.map(MsgValue::Int));
        Operation::cdt(bin, GET_BY_INDEX_RANGE, args)
    }
    pub fn remove_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(bin, REMOVE_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
    }
}

/// Map operations (unordered maps; Petrel keeps every map in key order).
pub mod maps {
    use petrel_proto::cdt::map::{
        CLEAR, GET_BY_INDEX, GET_BY_KEY, GET_BY_KEY_LIST, INCREMENT, PUT, PUT_ITEMS, REMOVE_BY_KEY, SIZE,
    };
    use petrel_proto::cdt::map_order;

    use super::*;

    /// The map attributes every write sends: an unordered map (Petrel keeps every map in key
    /// order whatever it is told).
    const ATTRIBUTES: MsgValue = MsgValue::Int(map_order::UNORDERED as i64);

    pub fn put(bin: &str, key: &Value, value: &Value) -> Operation {
        Operation::cdt(bin, PUT, vec![key.to_msgpack(), value.to_msgpack(), ATTRIBUTES])
    }
    pub fn put_items(bin: &str, items: &[(Value, Value)]) -> Operation {
        let map = Value::Map(items.to_vec()).to_msgpack();
        Operation::cdt(bin, PUT_ITEMS, vec![map, ATTRIBUTES])
    }
    pub fn increment(bin: &str, key: &Value, by: &Value) -> Operation {
        Operation::cdt(bin, INCREMENT, vec![key.to_msgpack(), by.to_msgpack(), ATTRIBUTES])
    }
    pub fn clear(bin: &str) -> Operation {
        Operation::cdt(bin, CLEAR, vec![])
    }
    pub fn remove_by_key(bin: &str, key: &Value, rt: ReturnType) -> Operation {
        Operation::cdt(bin, REMOVE_BY_KEY, vec![MsgValue::Int(rt as i64), key.to_msgpack()])
    }
    pub fn size(bin: &str) -> Operation {
        Operation::cdt(bin, SIZE, vec![])
    }
    pub fn get_by_key(bin: &str, key: &Value, rt: ReturnType) -> Operation {
        Operation::cdt(bin, GET_BY_KEY, vec![MsgValue::Int(rt as i64), key.to_msgpack()])
    }
    pub fn get_by_key_list(bin: &str, keys: &[Value], rt: ReturnType) -> Operation {
        let list = MsgValue::List(keys.iter().map(Value::to_msgpack).collect());
        Operation::cdt(bin, GET_BY_KEY_LIST, vec![MsgValue::Int(rt as i64), list])
    }
    pub fn get_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(bin, GET_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_match_the_official_client() {
        // From the golden Python trace: list append 9, list size, map put q=5, map get q.
        assert_eq!(lists::append("l", &Value::Int(9)).value, [0x92, 0x01, 0x09]);
        assert_eq!(lists::size("l").value, [0x91, 0x10]);
        assert_eq!(maps::put("m", &"q".into(), &Value::Int(5)).value, [0x94, 0x43, 0xa2, 0x03, 0x71, 0x05, 0x00]);
        assert_eq!(maps::get_by_key("m", &"q".into(), ReturnType::Value).value, [0x93, 0x61, 0x07, 0xa2, 0x03, 0x71]);
    }

    #[test]
    fn writes_travel_as_cdt_modify_and_reads_as_cdt_read() {
        let v = Value::Int(1);
        let writes = [
            lists::append("l", &v),
            lists::insert("l", 0, &v),
            lists::pop("l", 0),
            lists::clear("l"),
            lists::remove_by_index("l", 0, ReturnType::None),
            maps::put("m", &v, &v),
            maps::increment("m", &v, &v),
            maps::remove_by_key("m", &v, ReturnType::None),
        ];
        for op in writes {
            assert_eq!(op.op_type, OpType::CdtModify, "{op:?}");
        }
        let reads = [
            lists::size("l"),
            lists::get_range("l", 0, None),
            lists::get_by_index_range("l", 0, Some(2), ReturnType::Value),
            maps::size("m"),
            maps::get_by_key_list("m", std::slice::from_ref(&v), ReturnType::Value),
            maps::get_by_index("m", 0, ReturnType::KeyValue),
        ];
        for op in reads {
            assert_eq!(op.op_type, OpType::CdtRead, "{op:?}");
        }
    }
}
