//! An HLL value in Aerospike's byte layout and what changes it: the header (flags, index
//! bits, min-hash bits, cached count), the packed registers (2^index_bits of them, each
//! `6 + minhash_bits` bits, most significant bit first), adding an element (MurmurHash3
//! x64/128 of its msgpack bytes, seed 0), merging one sketch into another, and intersecting
//! registers. Values built here are byte for byte what an Aerospike server builds.

use petrel_proto::hll::{self as layout, CACHE_OFFSET, HEADER_LEN, HLL_BITS};

/// A sketch whose layout has been checked (see [`layout::layout_ok`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sketch {
    bytes: Vec<u8>,
}

/// A borrowed sketch whose layout has been checked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SketchRef<'a> {
    bytes: &'a [u8],
}

impl<'a> SketchRef<'a> {
    /// The sketch in `bytes`, if they have an HLL value's layout.
    pub(crate) fn new(bytes: &'a [u8]) -> Option<SketchRef<'a>> {
        layout::layout_ok(bytes).then_some(SketchRef { bytes })
    }

    /// A sketch from bytes whose header and length alone were checked (operands of union and
    /// intersect ops may carry index and min-hash bits whose sum is over 64, as in Aerospike).
    pub(crate) fn new_unchecked_sum(bytes: &'a [u8]) -> Option<SketchRef<'a>> {
        match bytes {
            [0, ib, mb, ..]
                if layout::index_bits_ok(*ib as u64)
                    && layout::minhash_bits_ok(*mb as u64)
                    && bytes.len() == layout::value_len(*ib, *mb) =>
            {
                Some(SketchRef { bytes })
            }
            _ => None,
        }
    }

    pub(crate) fn index_bits(self) -> u8 {
        self.bytes[1]
    }

    pub(crate) fn minhash_bits(self) -> u8 {
        self.bytes[2]
    }

    /// The cached count; 0 when none is cached.
    pub(crate) fn cache(self) -> u64 {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.bytes[CACHE_OFFSET..HEADER_LEN]);
        u64::from_le_bytes(c)
    }

    pub(crate) fn registers_count(self) -> usize {
        1 << self.index_bits()
    }

    fn register_bits(self) -> u32 {
        HLL_BITS as u32 + self.minhash_bits() as u32
    }

    /// Register `r` whole: HLL value above, min-hash bits below.
    pub(crate) fn register(self, r: usize) -> u64 {
        read_bits(&self.bytes[HEADER_LEN..], r * self.register_bits() as usize, self.register_bits())
    }

    /// The HLL part of a register value.
    pub(crate) fn hll_value(self, register: u64) -> u8 {
        (register >> self.minhash_bits()) as u8
    }

    /// Whether any register in the first 2^index_bits bytes is set (Aerospike's test for an
    /// empty min-hash sketch, kept as is so estimates match).
    /// The register an element (its msgpack bytes) lands in and the value it brings there.
    pub(crate) fn slot_of(self, element: &[u8]) -> (usize, u64) {
        let (h1, h2) = murmur3_x64_128(element);
        let (ib, mb) = (self.index_bits(), self.minhash_bits());
        let r = (h1 & ((1u64 << ib) - 1)) as usize;
        let minhash = (h1 >> ib) & ((1u64 << mb) - 1);
        // Trailing zeros + 1, held in 6 bits (a zero h2, chance 2^-64, stays in range).
        let hll = (h2.trailing_zeros() as u64 + 1).min((1 << HLL_BITS) - 1);
        (r, (hll << mb) | minhash)
    }

    /// Whether the sketch may hold the element: its register is at least the element's value.
    pub(crate) fn may_contain(self, element: &[u8]) -> bool {
        let (r, value) = self.slot_of(element);
        self.register(r) >= value
    }

    pub(crate) fn has_data(self) -> bool {
        let regs = &self.bytes[HEADER_LEN..];
        regs[..self.registers_count().min(regs.len())].iter().any(|&b| b != 0)
    }

    /// How many registers are not zero.
    pub(crate) fn used_registers(self) -> usize {
        (0..self.registers_count()).filter(|&r| self.register(r) != 0).count()
    }
}

impl Sketch {
    /// An empty sketch; the bit counts must be allowed.
    pub(crate) fn empty(index_bits: u8, minhash_bits: u8) -> Sketch {
        let mut bytes = vec![0u8; layout::value_len(index_bits, minhash_bits)];
        bytes[1] = index_bits;
        bytes[2] = minhash_bits;
        Sketch { bytes }
    }

    /// A copy of a checked sketch.
    pub(crate) fn copy_of(s: SketchRef<'_>) -> Sketch {
        Sketch { bytes: s.bytes.to_vec() }
    }

    pub(crate) fn view(&self) -> SketchRef<'_> {
        SketchRef { bytes: &self.bytes }
    }

    /// Whether the value may be stored: its index and min-hash bits are allowed together.
    pub(crate) fn is_storable(&self) -> bool {
        layout::layout_ok(&self.bytes)
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    pub(crate) fn set_cache(&mut self, count: u64) {
        self.bytes[CACHE_OFFSET..HEADER_LEN].copy_from_slice(&count.to_le_bytes());
    }

    fn set_register(&mut self, r: usize, value: u64) {
        let n = self.view().register_bits();
        write_bits(&mut self.bytes[HEADER_LEN..], r * n as usize, n, value);
    }

    /// Adds an element given as its msgpack bytes; true when a register grew.
    pub(crate) fn add(&mut self, element: &[u8]) -> bool {
        let (r, value) = self.view().slot_of(element);
        if self.view().register(r) < value {
            self.set_register(r, value);
            self.set_cache(0);
            true
        } else {
            false
        }
    }

    /// Merges `other` in; `other` has at least as many index bits as `self`, and the same
    /// min-hash bits unless `self` has none.
    pub(crate) fn union(&mut self, other: SketchRef<'_>) {
        let this = self.view();
        let mask = this.registers_count() - 1;
        let plain = this.minhash_bits() == 0;
        for r in 0..other.registers_count() {
            let (ur, reg) = (r & mask, other.register(r));
            let incoming = if plain { other.hll_value(reg) as u64 } else { reg };
            let current = self.view().register(ur);
            let current = if plain { self.view().hll_value(current) as u64 } else { current };
            if current < incoming {
                self.set_register(ur, incoming);
            }
        }
        if !plain {
            self.set_cache(0);
        }
    }

    /// Keeps each register only where `other`'s register (folded onto it) is equal.
    pub(crate) fn intersect(&mut self, other: SketchRef<'_>) {
        let mask = self.view().registers_count() - 1;
        for r in 0..other.registers_count() {
            let small = r & mask;
            let v0 = self.view().register(small);
            self.set_register(small, if v0 == other.register(r) { v0 } else { 0 });
        }
    }
}

/// The `n` (≤ 57) bits at bit `offset` of `bytes`, which hold them.
fn read_bits(bytes: &[u8], offset: usize, n: u32) -> u64 {
    let (start, shift) = (offset / 8, (offset % 8) as u32);
    let mut w = [0u8; 8];
    let end = (start + 8).min(bytes.len());
    w[..end - start].copy_from_slice(&bytes[start..end]);
    (u64::from_be_bytes(w) << shift) >> (64 - n)
}

/// Writes the low `n` (≤ 57) bits of `value` at bit `offset` of `bytes`, which hold them.
fn write_bits(bytes: &mut [u8], offset: usize, n: u32, value: u64) {
    let (start, shift) = (offset / 8, (offset % 8) as u32);
    let end = (start + 8).min(bytes.len());
    let mut w = [0u8; 8];
    w[..end - start].copy_from_slice(&bytes[start..end]);
    let mask = (u64::MAX >> (64 - n)) << (64 - n - shift);
    let v = (u64::from_be_bytes(w) & !mask) | ((value << (64 - n - shift)) & mask);
    bytes[start..end].copy_from_slice(&v.to_be_bytes()[..end - start]);
}

/// MurmurHash3 x64/128 with seed 0: the two 64-bit halves.
pub(crate) fn murmur3_x64_128(data: &[u8]) -> (u64, u64) {
    const C1: u64 = 0x87c3_7b91_1142_53d5;
    const C2: u64 = 0x4cf5_ad43_2745_937f;
    let mix_k1 = |k: u64| k.wrapping_mul(C1).rotate_left(31).wrapping_mul(C2);
    let mix_k2 = |k: u64| k.wrapping_mul(C2).rotate_left(33).wrapping_mul(C1);
    let (mut h1, mut h2) = (0u64, 0u64);
    let mut blocks = data.chunks_exact(16);
    for b in &mut blocks {
        let k1 = u64::from_le_bytes(b[..8].try_into().unwrap_or_default());
        let k2 = u64::from_le_bytes(b[8..].try_into().unwrap_or_default());
        h1 ^= mix_k1(k1);
        h1 = h1.rotate_left(27).wrapping_add(h2).wrapping_mul(5).wrapping_add(0x52dc_e729);
        h2 ^= mix_k2(k2);
        h2 = h2.rotate_left(31).wrapping_add(h1).wrapping_mul(5).wrapping_add(0x3849_5ab5);
    }
    let tail = blocks.remainder();
    let word = |bytes: &[u8]| bytes.iter().rev().fold(0u64, |acc, &b| (acc << 8) | b as u64);
    if tail.len() > 8 {
        h2 ^= mix_k2(word(&tail[8..]));
    }
    if !tail.is_empty() {
        h1 ^= mix_k1(word(&tail[..tail.len().min(8)]));
    }
    let len = data.len() as u64;
    h1 ^= len;
    h2 ^= len;
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    h1 = fmix64(h1);
    h2 = fmix64(h2);
    h1 = h1.wrapping_add(h2);
    h2 = h2.wrapping_add(h1);
    (h1, h2)
}

fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}
