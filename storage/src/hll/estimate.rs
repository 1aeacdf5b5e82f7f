//! The estimates an HLL op answers, computed as Aerospike computes them so counts agree with
//! a real server: cardinality by Ertl's improved estimator ("New cardinality estimation
//! algorithms for HyperLogLog sketches", 2017, algorithm 6, with the register range taken as
//! 64 and the classic alpha constants), union by merging into the compatible template,
//! intersection by inclusion-exclusion (plain sketches, at most three) or by HyperMinHash
//! similarity times union (Yu and Weber, 2017), with its expected-collision correction for
//! two sketches.

use petrel_proto::hll::HLL_BITS;

use crate::hll::sketch::{Sketch, SketchRef};

/// Upper end of the register histogram.
const Q: usize = 1 << HLL_BITS;

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let (mut y, mut z) = (1.0, 1.0 - x);
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == prev {
            return z / 3.0;
        }
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let (mut y, mut z) = (1.0, x);
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if z == prev {
            return z;
        }
    }
}

fn alpha(index_bits: u8) -> f64 {
    match index_bits {
        4 => 0.673,
        5 => 0.697,
        6 => 0.709,
        _ => 0.7213 / (1.0 + 1.079 / (1u64 << index_bits) as f64),
    }
}

/// The sketch's count: its cached count when it has one.
pub(crate) fn cardinality(s: SketchRef<'_>) -> u64 {
    if s.cache() != 0 {
        return s.cache();
    }
    let m = s.registers_count();
    let mut c = [0u64; Q + 1];
    for r in 0..m {
        c[(s.hll_value(s.register(r)) as usize).min(Q)] += 1;
    }
    let mf = m as f64;
    let mut z = mf * tau(c[Q] as f64 / mf);
    for k in (1..=Q).rev() {
        z = 0.5 * (z + c[k] as f64);
    }
    z += mf * sigma(c[0] as f64 / mf);
    // An empty sketch gives an infinite z, so 0.
    (alpha(s.index_bits()) * mf * mf / z).round() as u64
}

/// The bit counts every operand can be merged into: the fewest index bits, and the shared
/// min-hash bits (0 when they differ).
pub(crate) fn template(sketches: &[SketchRef<'_>]) -> (u8, u8) {
    let mut ib = sketches[0].index_bits();
    let mut mb = sketches[0].minhash_bits();
    for s in &sketches[1..] {
        ib = ib.min(s.index_bits());
        if mb != s.minhash_bits() {
            mb = 0;
        }
    }
    (ib, mb)
}

/// The merge of every sketch (non-empty slice).
pub(crate) fn union(sketches: &[SketchRef<'_>]) -> Sketch {
    let (ib, mb) = template(sketches);
    let mut u = Sketch::empty(ib, mb);
    for s in sketches {
        u.union(*s);
    }
    u
}

pub(crate) fn union_cardinality(sketches: &[SketchRef<'_>]) -> u64 {
    cardinality(union(sketches).view())
}

/// The estimated size of the intersection (non-empty slice).
pub(crate) fn intersect_cardinality(sketches: &[SketchRef<'_>]) -> u64 {
    if template(sketches).1 == 0 {
        return plain_intersect(sketches);
    }
    let j = similarity(sketches);
    if j.is_nan() {
        return 0;
    }
    (union_cardinality(sketches) as f64 * j).round() as u64
}

/// Inclusion-exclusion over two or three plain sketches (the op parser refuses more).
fn plain_intersect(sketches: &[SketchRef<'_>]) -> u64 {
    let cu = union_cardinality(sketches);
    let sum = sketches.iter().fold(0u64, |acc, s| acc.saturating_add(cardinality(*s)));
    match sketches {
        [a, b, c] => {
            let pairs = intersect_cardinality(&[*a, *b])
                .saturating_add(intersect_cardinality(&[*b, *c]))
                .saturating_add(intersect_cardinality(&[*a, *c]));
            let result = cu as i128 - (sum as i128 - pairs as i128);
            result.max(0) as u64
        }
        _ => sum.saturating_sub(cu),
    }
}

/// The estimated Jaccard similarity (non-empty slice); NaN when every sketch is empty.
pub(crate) fn similarity(sketches: &[SketchRef<'_>]) -> f64 {
    let (ib, mb) = template(sketches);
    if mb == 0 {
        return intersect_cardinality(sketches) as f64 / union_cardinality(sketches) as f64;
    }
    let with_data = sketches.iter().filter(|s| s.has_data()).count();
    if with_data < sketches.len() {
        return if with_data > 0 { 0.0 } else { f64::NAN };
    }
    let n_union = union(sketches).view().used_registers();
    let mut agg = Sketch::empty(ib, mb);
    agg.union(sketches[0]);
    for s in &sketches[1..] {
        agg.intersect(*s);
    }
    let n_intersect = agg.view().used_registers();
    let collisions = match sketches {
        [a, b] => expected_collisions(ib, mb, cardinality(*a), cardinality(*b)),
        _ => 0.0,
    };
    ((n_intersect as f64 - collisions) / n_union as f64).max(0.0)
}

/// Expected registers two unrelated sets of these sizes share by chance.
fn expected_collisions(index_bits: u8, minhash_bits: u8, card0: u64, card1: u64) -> f64 {
    let m = (1u64 << index_bits) as f64;
    let mut cp = 0.0;
    for i in 1..=Q as i32 {
        let b1 = if i as usize != Q { 2f64.powi(-i) } else { 0.0 } / m;
        let b2 = 2f64.powi(-i + 1) / m;
        let pr_x = (1.0 - b1).powf(card0 as f64) - (1.0 - b2).powf(card0 as f64);
        let pr_y = (1.0 - b1).powf(card1 as f64) - (1.0 - b2).powf(card1 as f64);
        cp += pr_x * pr_y;
    }
    cp * m / 2f64.powi(minhash_bits as i32)
}
