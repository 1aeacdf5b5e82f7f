//! Filter expressions on the wire: the op codes of the expression language, the value type
//! codes a bin read or a call declares, the modules a call reaches, and the flags of the
//! expression read and modify operations (op types 7 and 8).
//!
//! An expression is msgpack: a call is an array `[op_code, args...]`; a bare value (integer,
//! float, bool, nil, prefixed string or blob, map) is a literal; a literal list is quoted as
//! `[QUOTED, list]`. See docs/design.md, "Filter expressions".

/// Evaluates to "unknown" (used to fail an expression on purpose).
pub const UNKNOWN: i64 = 0;
pub const EQ: i64 = 1;
pub const NE: i64 = 2;
pub const GT: i64 = 3;
pub const GE: i64 = 4;
pub const LT: i64 = 5;
pub const LE: i64 = 6;
/// `[REGEX, flags, regex, string_exp]`.
pub const REGEX: i64 = 7;
/// Geospatial comparison: a point within a region, or a region containing a point.
pub const GEO: i64 = 8;
pub const AND: i64 = 16;
pub const OR: i64 = 17;
pub const NOT: i64 = 18;
pub const EXCLUSIVE: i64 = 19;
pub const ADD: i64 = 20;
pub const SUB: i64 = 21;
pub const MUL: i64 = 22;
pub const DIV: i64 = 23;
pub const POW: i64 = 24;
pub const LOG: i64 = 25;
pub const MOD: i64 = 26;
pub const ABS: i64 = 27;
pub const FLOOR: i64 = 28;
pub const CEIL: i64 = 29;
pub const TO_INT: i64 = 30;
pub const TO_FLOAT: i64 = 31;
pub const INT_AND: i64 = 32;
pub const INT_OR: i64 = 33;
pub const INT_XOR: i64 = 34;
pub const INT_NOT: i64 = 35;
pub const INT_LSHIFT: i64 = 36;
pub const INT_RSHIFT: i64 = 37;
pub const INT_ARSHIFT: i64 = 38;
pub const INT_COUNT: i64 = 39;
pub const INT_LSCAN: i64 = 40;
pub const INT_RSCAN: i64 = 41;
pub const MIN: i64 = 50;
pub const MAX: i64 = 51;
/// `[DIGEST_MODULO, modulus]`.
pub const DIGEST_MODULO: i64 = 64;
pub const DEVICE_SIZE: i64 = 65;
/// Last update, nanoseconds since 1970.
pub const LAST_UPDATE: i64 = 66;
/// Milliseconds since the last update.
pub const SINCE_UPDATE: i64 = 67;
/// Expiry, nanoseconds since 1970.
pub const VOID_TIME: i64 = 68;
/// Seconds left to live.
pub const TTL: i64 = 69;
pub const SET_NAME: i64 = 70;
pub const KEY_EXISTS: i64 = 71;
pub const IS_TOMBSTONE: i64 = 72;
pub const MEMORY_SIZE: i64 = 73;
pub const RECORD_SIZE: i64 = 74;
/// `[KEY, type]`: the stored user key.
pub const KEY: i64 = 80;
/// `[BIN, type, name]`: a bin of the declared type.
pub const BIN: i64 = 81;
/// `[BIN_TYPE, name]`: the bin's particle type, 0 when missing.
pub const BIN_TYPE: i64 = 82;
/// `[COND, bool1, exp1, bool2, exp2, ..., default]`.
pub const COND: i64 = 123;
/// `[VAR, name]`.
pub const VAR: i64 = 124;
/// `[LET, name1, exp1, ..., scope]`.
pub const LET: i64 = 125;
/// `[QUOTED, list]`: a literal list.
pub const QUOTED: i64 = 126;
/// `[CALL, return_type, module, [op, args...], bin_exp]`.
pub const CALL: i64 = 127;

/// Bit of a call's module: the call returns the modified bin rather than the op's result.
pub const MODULE_MODIFY: i64 = 0x40;
/// Call modules.
pub const MODULE_CDT: i64 = 0;
pub const MODULE_BITS: i64 = 1;
pub const MODULE_HLL: i64 = 2;

/// Value types a bin read, key read or call declares.
pub mod ty {
    pub const NIL: i64 = 0;
    pub const BOOL: i64 = 1;
    pub const INT: i64 = 2;
    pub const STRING: i64 = 3;
    pub const LIST: i64 = 4;
    pub const MAP: i64 = 5;
    pub const BLOB: i64 = 6;
    pub const FLOAT: i64 = 7;
    pub const GEO: i64 = 8;
    pub const HLL: i64 = 9;
}

/// Flags of the POSIX regex comparison.
pub mod regex_flags {
    pub const EXTENDED: i64 = 1;
    pub const ICASE: i64 = 2;
    pub const NOSUB: i64 = 4;
    pub const NEWLINE: i64 = 8;
}

/// Flags of the expression modify operation (op type 8); read (7) knows only `EVAL_NO_FAIL`.
pub mod write_flags {
    pub const CREATE_ONLY: i64 = 1;
    pub const UPDATE_ONLY: i64 = 2;
    pub const ALLOW_DELETE: i64 = 4;
    pub const POLICY_NO_FAIL: i64 = 8;
    pub const EVAL_NO_FAIL: i64 = 16;
}

/// Packs a call `[code, args...]` from arguments already packed (what a client building an
/// expression does).
pub fn pack_call(code: i64, args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + args.iter().map(Vec::len).sum::<usize>());
    crate::msgpack::encode_list_header(args.len() + 1, &mut out);
    crate::msgpack::encode_int(code, &mut out);
    for a in args {
        out.extend_from_slice(a);
    }
    out
}
