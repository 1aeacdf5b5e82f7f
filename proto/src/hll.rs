//! The HyperLogLog contract: op codes and write flags of the msgpack payload
//! `[op_code, args...]` of an HLL read (op type 15) or modify (op type 16), the limits on index
//! and min-hash bit counts, and the byte layout of an HLL value (particle type 18), which is
//! the same on every server so values move freely between them.
//!
//! Numbers here are the protocol's, not ours: each is written out explicitly.

/// Modify op codes (0–4), sent as op type `HllModify`.
pub mod modify {
    /// `[0, index_bits?, minhash_bits?, flags?]`: create or reset.
    pub const INIT: i64 = 0;
    /// `[1, [values...], index_bits?, minhash_bits?, flags?]`: answers how many registers grew.
    pub const ADD: i64 = 1;
    /// `[2, [hlls...], flags?]`
    pub const SET_UNION: i64 = 2;
    /// `[3]`: stores and answers the count.
    pub const REFRESH_COUNT: i64 = 3;
    /// `[4, index_bits]`
    pub const FOLD: i64 = 4;
}

/// Read op codes (50–55), sent as op type `HllRead`.
pub mod read {
    /// `[50]`
    pub const COUNT: i64 = 50;
    /// `[51, [hlls...]]`
    pub const UNION: i64 = 51;
    /// `[52, [hlls...]]`
    pub const UNION_COUNT: i64 = 52;
    /// `[53, [hlls...]]`
    pub const INTERSECT_COUNT: i64 = 53;
    /// `[54, [hlls...]]`
    pub const SIMILARITY: i64 = 54;
    /// `[55]`: `[index_bits, minhash_bits]`.
    pub const DESCRIBE: i64 = 55;
    /// `[56, elements]`: 1 when the sketch may hold every element, else 0 (expressions only).
    pub const MAY_CONTAIN: i64 = 56;
}

/// Write flags (the HLL policy), a bit set.
pub mod write_flags {
    /// The bin must not exist.
    pub const CREATE_ONLY: u64 = 1;
    /// The bin must exist.
    pub const UPDATE_ONLY: u64 = 2;
    /// A refused op is skipped instead of failing the command.
    pub const NO_FAIL: u64 = 4;
    /// A union may lower the bin's index bits to those of the smallest operand.
    pub const ALLOW_FOLD: u64 = 8;
}

/// Fewest index bits (16 registers).
pub const INDEX_BITS_MIN: u8 = 4;
/// Most index bits (65 536 registers).
pub const INDEX_BITS_MAX: u8 = 16;
/// Bits of a register's HyperLogLog part.
pub const HLL_BITS: u8 = 6;
/// Fewest min-hash bits, when there are any.
pub const MINHASH_BITS_MIN: u8 = 4;
/// Most min-hash bits.
pub const MINHASH_BITS_MAX: u8 = 64 - HLL_BITS - 7;
/// Most index and min-hash bits together.
pub const COMBINED_BITS_MAX: u8 = 64;
/// An op argument of -1 means "unset: keep or default".
pub const BITS_UNSET: i64 = -1;

/// Bytes of an HLL value's header: flags (always 0), index bits, min-hash bits, and an
/// 8-byte cached count (little-endian; 0 when not known).
pub const HEADER_LEN: usize = 11;
/// Offset of the cached count in the header.
pub const CACHE_OFFSET: usize = 3;

/// Whether the index bit count is allowed.
pub fn index_bits_ok(n: u64) -> bool {
    (INDEX_BITS_MIN as u64..=INDEX_BITS_MAX as u64).contains(&n)
}

/// Whether the min-hash bit count is allowed (0, or 4 ..= 51).
pub fn minhash_bits_ok(n: u64) -> bool {
    n == 0 || (MINHASH_BITS_MIN as u64..=MINHASH_BITS_MAX as u64).contains(&n)
}

/// Whether the pair is allowed together.
pub fn bits_ok(index_bits: u64, minhash_bits: u64) -> bool {
    index_bits_ok(index_bits) && minhash_bits_ok(minhash_bits) && index_bits + minhash_bits <= COMBINED_BITS_MAX as u64
}

/// Bytes of the registers: 2^index_bits registers of (6 + minhash_bits) bits, packed.
pub fn registers_len(index_bits: u8, minhash_bits: u8) -> usize {
    ((HLL_BITS as usize + minhash_bits as usize) << index_bits).div_ceil(8)
}

/// Bytes of a whole HLL value.
pub fn value_len(index_bits: u8, minhash_bits: u8) -> usize {
    HEADER_LEN + registers_len(index_bits, minhash_bits)
}

/// Whether `bytes` has the layout of an HLL value: zero flags, allowed bit counts, and the
/// length they imply.
pub fn layout_ok(bytes: &[u8]) -> bool {
    match bytes {
        [0, ib, mb, ..] => bits_ok(*ib as u64, *mb as u64) && bytes.len() == value_len(*ib, *mb),
        _ => false,
    }
}
