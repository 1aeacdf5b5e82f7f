//! The CDT (list and map operation) contract: op codes and which of them modify, return
//! types, order, write and sort flags, and context types — every number the server and the
//! clients must agree on for the msgpack payload `[op, args...]` (or the context wrapper
//! `[0xff, [ctx...], [op, args...]]`) of a CDT read (op type 3) or modify (op type 4).
//!
//! Numbers here are the protocol's, not ours: each is written out explicitly.

/// Op code of the context wrapper `[0xff, [ctx...], [op, args...]]`.
pub const OP_CONTEXT_EVAL: i64 = 0xff;
/// Op code of the server-side select/apply operation (path expressions).
pub const OP_SELECT: i64 = 0xfe;

/// List op codes (0–40).
pub mod list {
    pub const SET_TYPE: i64 = 0;
    pub const APPEND: i64 = 1;
    pub const APPEND_ITEMS: i64 = 2;
    pub const INSERT: i64 = 3;
    pub const INSERT_ITEMS: i64 = 4;
    pub const POP: i64 = 5;
    pub const POP_RANGE: i64 = 6;
    pub const REMOVE: i64 = 7;
    pub const REMOVE_RANGE: i64 = 8;
    pub const SET: i64 = 9;
    pub const TRIM: i64 = 10;
    pub const CLEAR: i64 = 11;
    pub const INCREMENT: i64 = 12;
    pub const SORT: i64 = 13;
    pub const SIZE: i64 = 16;
    pub const GET: i64 = 17;
    pub const GET_RANGE: i64 = 18;
    pub const GET_BY_INDEX: i64 = 19;
    pub const GET_BY_VALUE: i64 = 20;
    pub const GET_BY_RANK: i64 = 21;
    pub const GET_ALL_BY_VALUE: i64 = 22;
    pub const GET_BY_VALUE_LIST: i64 = 23;
    pub const GET_BY_INDEX_RANGE: i64 = 24;
    pub const GET_BY_VALUE_INTERVAL: i64 = 25;
    pub const GET_BY_RANK_RANGE: i64 = 26;
    pub const GET_BY_VALUE_REL_RANK_RANGE: i64 = 27;
    pub const REMOVE_BY_INDEX: i64 = 32;
    pub const REMOVE_BY_VALUE: i64 = 33;
    pub const REMOVE_BY_RANK: i64 = 34;
    pub const REMOVE_ALL_BY_VALUE: i64 = 35;
    pub const REMOVE_BY_VALUE_LIST: i64 = 36;
    pub const REMOVE_BY_INDEX_RANGE: i64 = 37;
    pub const REMOVE_BY_VALUE_INTERVAL: i64 = 38;
    pub const REMOVE_BY_RANK_RANGE: i64 = 39;
    pub const REMOVE_BY_VALUE_REL_RANK_RANGE: i64 = 40;

    /// Whether `code` is a list modify op (`Some(true)`), a list read op (`Some(false)`), or
    /// not a list op at all.
    pub fn is_modify(code: i64) -> Option<bool> {
        match code {
            SET_TYPE..=SORT | REMOVE_BY_INDEX..=REMOVE_BY_VALUE_REL_RANK_RANGE => Some(true),
            SIZE..=GET_BY_VALUE_REL_RANK_RANGE => Some(false),
            _ => None,
        }
    }
}

/// Map op codes (64–110).
pub mod map {
    pub const SET_TYPE: i64 = 64;
    pub const ADD: i64 = 65;
    pub const ADD_ITEMS: i64 = 66;
    pub const PUT: i64 = 67;
    pub const PUT_ITEMS: i64 = 68;
    pub const REPLACE: i64 = 69;
    pub const REPLACE_ITEMS: i64 = 70;
    pub const INCREMENT: i64 = 73;
    pub const DECREMENT: i64 = 74;
    pub const CLEAR: i64 = 75;
    pub const REMOVE_BY_KEY: i64 = 76;
    pub const REMOVE_BY_INDEX: i64 = 77;
    pub const REMOVE_BY_VALUE: i64 = 78;
    pub const REMOVE_BY_RANK: i64 = 79;
    pub const REMOVE_BY_KEY_LIST: i64 = 81;
    pub const REMOVE_ALL_BY_VALUE: i64 = 82;
    pub const REMOVE_BY_VALUE_LIST: i64 = 83;
    pub const REMOVE_BY_KEY_INTERVAL: i64 = 84;
    pub const REMOVE_BY_INDEX_RANGE: i64 = 85;
    pub const REMOVE_BY_VALUE_INTERVAL: i64 = 86;
    pub const REMOVE_BY_RANK_RANGE: i64 = 87;
    pub const REMOVE_BY_KEY_REL_INDEX_RANGE: i64 = 88;
    pub const REMOVE_BY_VALUE_REL_RANK_RANGE: i64 = 89;
    pub const SIZE: i64 = 96;
    pub const GET_BY_KEY: i64 = 97;
    pub const GET_BY_INDEX: i64 = 98;
    pub const GET_BY_VALUE: i64 = 99;
    pub const GET_BY_RANK: i64 = 100;
    pub const GET_ALL_BY_VALUE: i64 = 102;
    pub const GET_BY_KEY_INTERVAL: i64 = 103;
    pub const GET_BY_INDEX_RANGE: i64 = 104;
    pub const GET_BY_VALUE_INTERVAL: i64 = 105;
    pub const GET_BY_RANK_RANGE: i64 = 106;
    pub const GET_BY_KEY_LIST: i64 = 107;
    pub const GET_BY_VALUE_LIST: i64 = 108;
    pub const GET_BY_KEY_REL_INDEX_RANGE: i64 = 109;
    pub const GET_BY_VALUE_REL_RANK_RANGE: i64 = 110;

    /// Whether `code` is a map modify op (`Some(true)`), a map read op (`Some(false)`), or not
    /// a map op at all (the gaps at 71, 72, 80 and 101 are codes no map op has).
    pub fn is_modify(code: i64) -> Option<bool> {
        match code {
            SET_TYPE..=REPLACE_ITEMS
            | INCREMENT..=REMOVE_BY_RANK
            | REMOVE_BY_KEY_LIST..=REMOVE_BY_VALUE_REL_RANK_RANGE => Some(true),
            SIZE..=GET_BY_RANK | GET_ALL_BY_VALUE..=GET_BY_VALUE_REL_RANK_RANGE => Some(false),
            _ => None,
        }
    }
}

/// Whether `code` is a CDT modify op (`Some(true)`), a read op (`Some(false)`), or no list or
/// map op at all; a modify op travels as op type `CdtModify`, a read as `CdtRead`.
pub fn is_modify(code: i64) -> Option<bool> {
    list::is_modify(code).or_else(|| map::is_modify(code))
}

/// What a selecting list or map operation returns (the low 16 bits of its return-type
/// argument; [`RETURN_INVERTED`] may be or-ed in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReturnType {
    None = 0,
    Index = 1,
    ReverseIndex = 2,
    Rank = 3,
    ReverseRank = 4,
    Count = 5,
    /// Maps only.
    Key = 6,
    Value = 7,
    /// Maps only.
    KeyValue = 8,
    Exists = 13,
    /// Maps only: the selected entries as a map.
    UnorderedMap = 16,
    /// Maps only: the selected entries as a key-ordered map.
    OrderedMap = 17,
}

/// Return-type bit: select everything but what the op names.
pub const RETURN_INVERTED: u64 = 0x1_0000;

impl ReturnType {
    /// The return type in the low 16 bits of a return-type argument, if it is one.
    pub fn from_code(code: u64) -> Option<ReturnType> {
        use ReturnType::*;
        Some(match code & 0xffff {
            0 => None,
            1 => Index,
            2 => ReverseIndex,
            3 => Rank,
            4 => ReverseRank,
            5 => Count,
            6 => Key,
            7 => Value,
            8 => KeyValue,
            13 => Exists,
            16 => UnorderedMap,
            17 => OrderedMap,
            _ => return Option::None,
        })
    }

    /// Whether only map operations may return this.
    pub fn is_map_only(self) -> bool {
        matches!(self, ReturnType::Key | ReturnType::KeyValue | ReturnType::UnorderedMap | ReturnType::OrderedMap)
    }
}

/// List order flags (`set_type`, the create flags of `append`/`increment`, and the ext
/// element that leads a stored ordered list).
pub mod list_order {
    pub const UNORDERED: u8 = 0;
    pub const ORDERED: u8 = 1;
}

/// Map order flags (`set_type`, the attributes of `put`/`add`/`increment`, a stored map's
/// flags).
pub mod map_order {
    pub const UNORDERED: u8 = 0;
    pub const KEY_ORDERED: u8 = 1;
    pub const KEY_VALUE_ORDERED: u8 = 3;
    /// Marks a result map whose entries keep the order they were selected in (the answer to a
    /// key-value return type); never stored.
    pub const PRESERVE_ORDER: u8 = 8;
}

/// `set_type` bit asking for a persisted index; accepted, and meaningless in memory.
pub const PERSIST_INDEX: u64 = 0x10;

/// List write flags.
pub mod list_write {
    /// Refuse values the list already holds.
    pub const ADD_UNIQUE: u64 = 1;
    /// Refuse inserts beyond the end.
    pub const INSERT_BOUNDED: u64 = 2;
    /// A refused write is not an error.
    pub const NO_FAIL: u64 = 4;
    /// With `NO_FAIL`, write the items that are not refused.
    pub const PARTIAL: u64 = 8;
}

/// List sort flags.
pub mod list_sort {
    pub const DESCENDING: u64 = 1;
    pub const DROP_DUPLICATES: u64 = 2;
}

/// Map write flags.
pub mod map_write {
    /// Refuse keys the map already holds.
    pub const CREATE_ONLY: u64 = 1;
    /// Refuse keys the map does not hold.
    pub const UPDATE_ONLY: u64 = 2;
    /// A refused write is not an error.
    pub const NO_FAIL: u64 = 4;
    /// With `NO_FAIL`, write the entries that are not refused.
    pub const PARTIAL: u64 = 8;
}

/// Context entry types: a base (how the element is found) or-ed with the kind of collection
/// expected there and, for modify ops, how a missing level is created.
pub mod ctx {
    /// Base: by index.
    pub const INDEX: u64 = 0x00;
    /// Base: by rank.
    pub const RANK: u64 = 0x01;
    /// Base: by key (maps only).
    pub const KEY: u64 = 0x02;
    /// Base: by value.
    pub const VALUE: u64 = 0x03;
    /// The bits of the base.
    pub const BASE_MASK: u64 = 0x0f;
    /// The element is in a list.
    pub const LIST: u64 = 0x10;
    /// The element is in a map.
    pub const MAP: u64 = 0x20;
    /// The bits of the create flags.
    pub const CREATE_MASK: u64 = 0x1c0;
    /// Create a missing level (an unordered list, or a map as the flags say).
    pub const CREATE: u64 = 0x40;
    /// Create a missing level as an unbounded list (padding with nils) or key-ordered map.
    pub const CREATE_UNBOUND: u64 = 0x80;
    /// Create a missing level as an ordered list or key-value-ordered map.
    pub const CREATE_ORDERED: u64 = 0xc0;
    /// Create with a persisted index; accepted, and meaningless in memory.
    pub const CREATE_PERSIST: u64 = 0x100;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_families_split_the_codes() {
        for code in -1..=300 {
            let l = list::is_modify(code);
            let m = map::is_modify(code);
            assert!(l.is_none() || m.is_none(), "{code}");
            assert_eq!(is_modify(code), l.or(m));
        }
        assert_eq!(list::is_modify(list::SORT), Some(true));
        assert_eq!(list::is_modify(14), None);
        assert_eq!(list::is_modify(list::GET_BY_VALUE_REL_RANK_RANGE), Some(false));
        assert_eq!(list::is_modify(28), None);
        assert_eq!(map::is_modify(71), None);
        assert_eq!(map::is_modify(80), None);
        assert_eq!(map::is_modify(101), None);
        assert_eq!(map::is_modify(map::GET_BY_VALUE_REL_RANK_RANGE), Some(false));
        assert_eq!(map::is_modify(map::REMOVE_BY_VALUE_REL_RANK_RANGE), Some(true));
    }

    #[test]
    fn return_types_round_trip() {
        for code in 0..=0x2_0000u64 {
            if let Some(rt) = ReturnType::from_code(code) {
                assert_eq!(rt as u64, code & 0xffff);
            }
        }
        assert_eq!(ReturnType::from_code(RETURN_INVERTED | 7), Some(ReturnType::Value));
        assert_eq!(ReturnType::from_code(9), None);
    }
}
