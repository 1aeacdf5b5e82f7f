//! Operations for `operate`: reads and writes of bins, and list and map operations, each
//! encoded as the op the server expects.

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

    fn cdt(op_type: OpType, bin: &str, op_code: i64, args: Vec<MsgValue>) -> Operation {
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

/// What a list or map operation returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnType {
    None = 0,
    Index = 1,
    ReverseIndex = 2,
    Rank = 3,
    ReverseRank = 4,
    Count = 5,
    Key = 6,
    Value = 7,
    KeyValue = 8,
    Exists = 13,
}

/// List operations.
pub mod lists {
    use super::*;

    const APPEND: i64 = 1;
    const APPEND_ITEMS: i64 = 2;
    const INSERT: i64 = 3;
    const POP: i64 = 5;
    const REMOVE: i64 = 7;
    const SET: i64 = 9;
    const CLEAR: i64 = 11;
    const SIZE: i64 = 16;
    const GET: i64 = 17;
    const GET_RANGE: i64 = 18;
    const GET_BY_INDEX: i64 = 19;
    const GET_BY_INDEX_RANGE: i64 = 24;
    const REMOVE_BY_INDEX: i64 = 32;

    pub fn append(bin: &str, value: &Value) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, APPEND, vec![value.to_msgpack()])
    }
    pub fn append_items(bin: &str, values: &[Value]) -> Operation {
        Operation::cdt(
            OpType::CdtModify,
            bin,
            APPEND_ITEMS,
            vec![MsgValue::List(values.iter().map(Value::to_msgpack).collect())],
        )
    }
    pub fn insert(bin: &str, index: i64, value: &Value) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, INSERT, vec![MsgValue::Int(index), value.to_msgpack()])
    }
    pub fn set(bin: &str, index: i64, value: &Value) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, SET, vec![MsgValue::Int(index), value.to_msgpack()])
    }
    pub fn pop(bin: &str, index: i64) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, POP, vec![MsgValue::Int(index)])
    }
    pub fn remove(bin: &str, index: i64) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, REMOVE, vec![MsgValue::Int(index)])
    }
    pub fn clear(bin: &str) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, CLEAR, vec![])
    }
    pub fn size(bin: &str) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, SIZE, vec![])
    }
    pub fn get(bin: &str, index: i64) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, GET, vec![MsgValue::Int(index)])
    }
    /// `count` elements from `index` (to the end when `None`).
    pub fn get_range(bin: &str, index: i64, count: Option<i64>) -> Operation {
        let mut args = vec![MsgValue::Int(index)];
        args.extend(count.map(MsgValue::Int));
        Operation::cdt(OpType::CdtRead, bin, GET_RANGE, args)
    }
    pub fn get_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, GET_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
    }
    pub fn get_by_index_range(bin: &str, index: i64, count: Option<i64>, rt: ReturnType) -> Operation {
        let mut args = vec![MsgValue::Int(rt as i64), MsgValue::Int(index)];
        args.extend(count.map(MsgValue::Int));
        Operation::cdt(OpType::CdtRead, bin, GET_BY_INDEX_RANGE, args)
    }
    pub fn remove_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, REMOVE_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
    }
}

/// Map operations (unordered maps; Petrel keeps every map in key order).
pub mod maps {
    use super::*;

    const PUT: i64 = 67;
    const PUT_ITEMS: i64 = 68;
    const INCREMENT: i64 = 73;
    const CLEAR: i64 = 75;
    const REMOVE_BY_KEY: i64 = 76;
    const SIZE: i64 = 96;
    const GET_BY_KEY: i64 = 97;
    const GET_BY_INDEX: i64 = 98;
    const GET_BY_KEY_LIST: i64 = 107;

    pub fn put(bin: &str, key: &Value, value: &Value) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, PUT, vec![key.to_msgpack(), value.to_msgpack(), MsgValue::Int(0)])
    }
    pub fn put_items(bin: &str, items: &[(Value, Value)]) -> Operation {
        let map = Value::Map(items.to_vec()).to_msgpack();
        Operation::cdt(OpType::CdtModify, bin, PUT_ITEMS, vec![map, MsgValue::Int(0)])
    }
    pub fn increment(bin: &str, key: &Value, by: &Value) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, INCREMENT, vec![key.to_msgpack(), by.to_msgpack(), MsgValue::Int(0)])
    }
    pub fn clear(bin: &str) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, CLEAR, vec![])
    }
    pub fn remove_by_key(bin: &str, key: &Value, rt: ReturnType) -> Operation {
        Operation::cdt(OpType::CdtModify, bin, REMOVE_BY_KEY, vec![MsgValue::Int(rt as i64), key.to_msgpack()])
    }
    pub fn size(bin: &str) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, SIZE, vec![])
    }
    pub fn get_by_key(bin: &str, key: &Value, rt: ReturnType) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, GET_BY_KEY, vec![MsgValue::Int(rt as i64), key.to_msgpack()])
    }
    pub fn get_by_key_list(bin: &str, keys: &[Value], rt: ReturnType) -> Operation {
        let list = MsgValue::List(keys.iter().map(Value::to_msgpack).collect());
        Operation::cdt(OpType::CdtRead, bin, GET_BY_KEY_LIST, vec![MsgValue::Int(rt as i64), list])
    }
    pub fn get_by_index(bin: &str, index: i64, rt: ReturnType) -> Operation {
        Operation::cdt(OpType::CdtRead, bin, GET_BY_INDEX, vec![MsgValue::Int(rt as i64), MsgValue::Int(index)])
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
}
