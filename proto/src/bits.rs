//! The bitwise-operation contract: op codes, write flags, resize flags and integer flags of
//! the msgpack payload `[op_code, args...]` of a bit read (op type 12) or bit modify (op type
//! 13) on a bytes (blob) bin. Every number the server and the clients must agree on.
//!
//! Numbers here are the protocol's, not ours: each is written out explicitly.

/// Modify op codes (0–12), sent as op type `BitModify`.
pub mod modify {
    /// `[0, byte_size, flags?, resize_flags?]`
    pub const RESIZE: i64 = 0;
    /// `[1, byte_offset, bytes, flags?]`
    pub const INSERT: i64 = 1;
    /// `[2, byte_offset, byte_size, flags?]`
    pub const REMOVE: i64 = 2;
    /// `[3, bit_offset, bit_size, bytes, flags?]`
    pub const SET: i64 = 3;
    pub const OR: i64 = 4;
    pub const XOR: i64 = 5;
    pub const AND: i64 = 6;
    /// `[7, bit_offset, bit_size, flags?]`
    pub const NOT: i64 = 7;
    /// `[8, bit_offset, bit_size, shift, flags?]`
    pub const LSHIFT: i64 = 8;
    pub const RSHIFT: i64 = 9;
    /// `[10, bit_offset, bit_size, value, flags?, int_flags?]`
    pub const ADD: i64 = 10;
    pub const SUBTRACT: i64 = 11;
    /// `[12, bit_offset, bit_size, value, flags?]`
    pub const SET_INT: i64 = 12;
}

/// Read op codes (50–54), sent as op type `BitRead`.
pub mod read {
    /// `[50, bit_offset, bit_size]`: the bits, left-aligned in whole bytes.
    pub const GET: i64 = 50;
    /// `[51, bit_offset, bit_size]`: how many bits are set.
    pub const COUNT: i64 = 51;
    /// `[52, bit_offset, bit_size, bool]`: index of the first bit equal to the value, or -1.
    pub const LSCAN: i64 = 52;
    /// `[53, bit_offset, bit_size, bool]`: index of the last bit equal to the value, or -1.
    pub const RSCAN: i64 = 53;
    /// `[54, bit_offset, bit_size, int_flags?]`: the bits as an integer.
    pub const GET_INT: i64 = 54;
}

/// Write flags (the bit policy), a bit set.
pub mod write_flags {
    /// The bin must not exist.
    pub const CREATE_ONLY: u64 = 1;
    /// The bin must exist.
    pub const UPDATE_ONLY: u64 = 2;
    /// A refused op is skipped instead of failing the command.
    pub const NO_FAIL: u64 = 4;
    /// An op running past the end of the bin applies to the part inside it.
    pub const PARTIAL: u64 = 8;
}

/// Resize flags, a bit set.
pub mod resize_flags {
    /// Add or remove bytes at the front instead of the end.
    pub const FROM_FRONT: u64 = 1;
    /// Refuse to shrink.
    pub const GROW_ONLY: u64 = 2;
    /// Refuse to grow.
    pub const SHRINK_ONLY: u64 = 4;
}

/// Integer flags of add, subtract and get-int: sign and overflow action.
pub mod int_flags {
    /// The integer is two's-complement signed.
    pub const SIGNED: u64 = 1;
    /// On overflow, clamp to the extreme value.
    pub const SATURATE: u64 = 2;
    /// On overflow, wrap around.
    pub const WRAP: u64 = 4;
}

/// Most bits an integer op reads or writes.
pub const INT_BITS_MAX: u64 = 64;
