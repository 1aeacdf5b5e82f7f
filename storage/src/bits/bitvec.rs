//! Bit-level access to a byte string, most significant bit first (bit 0 is the top bit of
//! byte 0, as in Aerospike): ranges copied out left-aligned and written back, whole bytes
//! at a time where the range allows, and unsigned integers of 1 to 64 bits at any bit
//! offset. Callers check ranges first; every function here assumes `offset + size` lies
//! within the bytes.

/// Bit `i`.
fn get(bytes: &[u8], i: usize) -> bool {
    bytes[i / 8] & (0x80 >> (i % 8)) != 0
}

/// Sets bit `i` to `v`.
fn set(bytes: &mut [u8], i: usize, v: bool) {
    let mask = 0x80 >> (i % 8);
    if v {
        bytes[i / 8] |= mask;
    } else {
        bytes[i / 8] &= !mask;
    }
}

/// The `size` bits from `offset`, left-aligned in `ceil(size / 8)` bytes, unused tail bits 0.
pub(super) fn extract(bytes: &[u8], offset: usize, size: usize) -> Vec<u8> {
    let (start, r) = (offset / 8, (offset % 8) as u32);
    let n = size.div_ceil(8);
    let mut out = if r == 0 {
        bytes[start..start + n].to_vec()
    } else {
        // Each output byte is the tail of one input byte and the head of the next; past the
        // last input byte there are only bits outside the range.
        (0..n).map(|j| (bytes[start + j] << r) | bytes.get(start + j + 1).map_or(0, |b| b >> (8 - r))).collect()
    };
    if !size.is_multiple_of(8) {
        if let Some(last) = out.last_mut() {
            *last &= 0xff << (8 - size % 8);
        }
    }
    out
}

/// Writes the first `size` bits of `src` (left-aligned) over the bits from `offset`.
pub(super) fn overwrite(bytes: &mut [u8], offset: usize, size: usize, src: &[u8]) {
    let (start, r) = (offset / 8, (offset % 8) as u32);
    let full = size / 8;
    if r == 0 {
        bytes[start..start + full].copy_from_slice(&src[..full]);
    } else {
        // A whole source byte straddles two bytes here; the range covers both.
        for (j, &s) in src[..full].iter().enumerate() {
            bytes[start + j] = (bytes[start + j] & !(0xff >> r)) | (s >> r);
            bytes[start + j + 1] = (bytes[start + j + 1] & !(0xff << (8 - r))) | (s << (8 - r));
        }
    }
    for i in full * 8..size {
        set(bytes, offset + i, get(src, i));
    }
}

/// Combines the bits from `offset` with the first `size` bits of `src`, byte by byte, by `f`.
pub(super) fn combine(bytes: &mut [u8], offset: usize, size: usize, src: &[u8], f: impl Fn(u8, u8) -> u8) {
    let mut cur = extract(bytes, offset, size);
    for (c, &s) in cur.iter_mut().zip(src) {
        *c = f(*c, s);
    }
    overwrite(bytes, offset, size, &cur);
}

/// Inverts the `size` bits from `offset`.
pub(super) fn invert(bytes: &mut [u8], offset: usize, size: usize) {
    let cur: Vec<u8> = extract(bytes, offset, size).iter().map(|b| !b).collect();
    overwrite(bytes, offset, size, &cur);
}

/// Clears the `size` bits from `offset`.
fn clear(bytes: &mut [u8], offset: usize, size: usize) {
    overwrite(bytes, offset, size, &vec![0; size.div_ceil(8)]);
}

/// Shifts the `size` bits from `offset` left by `n` within the range, filling with zeros.
pub(super) fn shift_left(bytes: &mut [u8], offset: usize, size: usize, n: u64) {
    if n >= size as u64 {
        return clear(bytes, offset, size);
    }
    let (n, kept) = (n as usize, size - n as usize);
    let moved = extract(bytes, offset + n, kept);
    overwrite(bytes, offset, kept, &moved);
    clear(bytes, offset + kept, n);
}

/// Shifts the `size` bits from `offset` right by `n` within the range, filling with zeros.
pub(super) fn shift_right(bytes: &mut [u8], offset: usize, size: usize, n: u64) {
    if n >= size as u64 {
        return clear(bytes, offset, size);
    }
    let (n, kept) = (n as usize, size - n as usize);
    let moved = extract(bytes, offset, kept);
    overwrite(bytes, offset + n, kept, &moved);
    clear(bytes, offset, n);
}

/// The `size`-bit (1 ..= 64) unsigned integer at `offset`.
pub(super) fn load(bytes: &[u8], offset: usize, size: usize) -> u64 {
    extract(bytes, offset, size).iter().fold(0u128, |acc, &b| (acc << 8) | b as u128) as u64 >> ((8 - size % 8) % 8)
}

/// Stores the low `size` bits (1 ..= 64) of `value` at `offset`.
pub(super) fn store(bytes: &mut [u8], offset: usize, size: usize, value: u64) {
    // Left-align the value in 8 bytes: its first `size` bits are the integer.
    let aligned = (value << (64 - size)).to_be_bytes();
    overwrite(bytes, offset, size, &aligned);
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

/// The range's bytes with the bits equal to `v` as ones (tail bits past `size` zero).
fn matches(bytes: &[u8], offset: usize, size: usize, v: bool) -> Vec<u8> {
    let mut m = extract(bytes, offset, size);
    if !v {
        let n = m.len();
        for b in m.iter_mut() {
            *b = !*b;
        }
        if !size.is_multiple_of(8) {
            m[n - 1] &= 0xff << (8 - size % 8);
        }
    }
    m
}

/// The index (from `offset`) of the first bit equal to `v`, or -1.
pub(super) fn scan_left(bytes: &[u8], offset: usize, size: usize, v: bool) -> i64 {
    let m = matches(bytes, offset, size, v);
    m.iter().position(|&b| b != 0).map_or(-1, |j| (j * 8) as i64 + m[j].leading_zeros() as i64)
}

/// The index (from `offset`) of the last bit equal to `v`, or -1.
pub(super) fn scan_right(bytes: &[u8], offset: usize, size: usize, v: bool) -> i64 {
    let m = matches(bytes, offset, size, v);
    m.iter().rposition(|&b| b != 0).map_or(-1, |j| (j * 8 + 7) as i64 - m[j].trailing_zeros() as i64)
}
