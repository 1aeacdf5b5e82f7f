//! Bit-level access to a byte string, most significant bit first (bit 0 is the top bit of
//! byte 0, as in Aerospike): single bits, ranges copied out left-aligned, and unsigned
//! integers of 1 to 64 bits at any bit offset. Callers check ranges first; every function
//! here assumes `offset + size` lies within the bytes.

/// Bit `i`.
pub(super) fn get(bytes: &[u8], i: usize) -> bool {
    bytes[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Sets bit `i` to `v`.
pub(super) fn set(bytes: &mut [u8], i: usize, v: bool) {
    let mask = 0x80 >> (i % 8);
    if v {
        bytes[i / 8] |= mask;
    } else {
        bytes[i / 8] &= !mask;
    }
}

/// The `size` bits from `offset`, left-aligned in `ceil(size / 8)` bytes, unused tail bits 0.
pub(super) fn extract(bytes: &[u8], offset: usize, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; size.div_ceil(8)];
    if offset.is_multiple_of(8) {
        // Whole bytes: copy, then clear the bits past `size` in the last byte.
        let (start, n) = (offset / 8, out.len());
        out.copy_from_slice(&bytes[start..start + n]);
        if !size.is_multiple_of(8) {
            if let Some(last) = out.last_mut() {
                *last &= 0xff << (8 - size % 8);
            }
        }
        return out;
    }
    for i in 0..size {
        if get(bytes, offset + i) {
            set(&mut out, i, true);
        }
    }
    out
}

/// Writes the first `size` bits of `src` (left-aligned) over the bits from `offset`.
pub(super) fn overwrite(bytes: &mut [u8], offset: usize, size: usize, src: &[u8]) {
    for i in 0..size {
        set(bytes, offset + i, get(src, i));
    }
}

/// Combines the bits from `offset` with the first `size` bits of `src` by `f`.
pub(super) fn combine(bytes: &mut [u8], offset: usize, size: usize, src: &[u8], f: impl Fn(bool, bool) -> bool) {
    for i in 0..size {
        let v = f(get(bytes, offset + i), get(src, i));
        set(bytes, offset + i, v);
    }
}

/// Inverts the `size` bits from `offset`.
pub(super) fn invert(bytes: &mut [u8], offset: usize, size: usize) {
    for i in offset..offset + size {
        bytes[i / 8] ^= 0x80 >> (i % 8);
    }
}

/// Shifts the `size` bits from `offset` left by `n` within the range, filling with zeros.
pub(super) fn shift_left(bytes: &mut [u8], offset: usize, size: usize, n: u64) {
    let old = extract(bytes, offset, size);
    for i in 0..size {
        let from = (i as u64).checked_add(n).filter(|&f| f < size as u64);
        set(bytes, offset + i, from.is_some_and(|f| get(&old, f as usize)));
    }
}

/// Shifts the `size` bits from `offset` right by `n` within the range, filling with zeros.
pub(super) fn shift_right(bytes: &mut [u8], offset: usize, size: usize, n: u64) {
    let old = extract(bytes, offset, size);
    for i in 0..size {
        let v = (i as u64) >= n && get(&old, (i as u64 - n) as usize);
        set(bytes, offset + i, v);
    }
}

/// The `size`-bit (1 ..= 64) unsigned integer at `offset`.
pub(super) fn load(bytes: &[u8], offset: usize, size: usize) -> u64 {
    (0..size).fold(0u64, |acc, i| (acc << 1) | get(bytes, offset + i) as u64)
}

/// Stores the low `size` bits (1 ..= 64) of `value` at `offset`.
pub(super) fn store(bytes: &mut [u8], offset: usize, size: usize, value: u64) {
    for i in 0..size {
        set(bytes, offset + i, (value >> (size - 1 - i)) & 1 == 1);
    }
}

/// All ones in the low `size` bits (1 ..= 64).
pub(super) fn mask(size: usize) -> u64 {
    u64::MAX >> (64 - size)
}

/// `v`'s low `size` bits read as a two's-complement signed integer.
pub(super) fn sign_extend(v: u64, size: usize) -> i64 {
    let lead = 64 - size as u32;
    ((v << lead) as i64) >> lead
}

/// How many of the `size` bits from `offset` are set.
pub(super) fn count_ones(bytes: &[u8], offset: usize, size: usize) -> u64 {
    extract(bytes, offset, size).iter().map(|b| b.count_ones() as u64).sum()
}

/// The index (from `offset`) of the first bit equal to `v`, or -1.
pub(super) fn scan_left(bytes: &[u8], offset: usize, size: usize, v: bool) -> i64 {
    (0..size).find(|&i| get(bytes, offset + i) == v).map_or(-1, |i| i as i64)
}

/// The index (from `offset`) of the last bit equal to `v`, or -1.
pub(super) fn scan_right(bytes: &[u8], offset: usize, size: usize, v: bool) -> i64 {
    (0..size).rev().find(|&i| get(bytes, offset + i) == v).map_or(-1, |i| i as i64)
}
