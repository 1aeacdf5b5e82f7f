//! Primary index benchmarks: insert, lookup and delete with 1 M and 10 M records already in
//! the index, against `BTreeMap` and `HashMap` over the same digests in the same run; and the
//! bytes each structure spends per record, counted by a global allocator wrapper.
//!
//! Run: `cargo bench -p petrel-storage --bench index` (set `PETREL_BENCH_SIZES=1000000` to
//! run one size only).

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use petrel_proto::{Digest, KeyRef, PARTITIONS_COUNT};
use petrel_storage::index::PartitionIndex;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Counts live heap bytes, so memory per record can be measured for every structure alike.
struct CountingAlloc;
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE_BYTES.fetch_add(new_size, Ordering::Relaxed);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

const SPRIGS: usize = 16;
const BATCH: usize = 1000;

struct PetrelIndex {
    partitions: Box<[PartitionIndex<NonZeroU64>]>,
}

impl PetrelIndex {
    fn new() -> Self {
        PetrelIndex { partitions: (0..PARTITIONS_COUNT).map(|_| PartitionIndex::new(SPRIGS)).collect() }
    }
    #[inline]
    fn insert(&self, d: &Digest, v: u64) {
        let mut tree = self.partitions[d.partition_id() as usize].lock(d);
        let (h, _) = tree.find_or_insert(d);
        tree.entry_mut(h).generation = 1;
        tree.entry_mut(h).lut_ms = v;
    }
    #[inline]
    fn get(&self, d: &Digest) -> Option<u64> {
        let tree = self.partitions[d.partition_id() as usize].lock(d);
        tree.find(d).map(|h| tree.entry(h).lut_ms)
    }
    #[inline]
    fn remove(&self, d: &Digest) -> bool {
        self.partitions[d.partition_id() as usize].lock(d).remove(d).is_some()
    }
}

fn digests(from: u64, n: usize) -> Vec<Digest> {
    (from..from + n as u64).map(|i| Digest::compute(b"bench", KeyRef::Int(i as i64))).collect()
}

fn sizes() -> Vec<usize> {
    std::env::var("PETREL_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000_000, 10_000_000])
}

fn measure<T>(build: impl FnOnce() -> T) -> (T, usize) {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let t = build();
    (t, LIVE_BYTES.load(Ordering::Relaxed) - before)
}

fn bench_index(c: &mut Criterion) {
    for n in sizes() {
        let keys = digests(0, n);
        let fresh = digests(n as u64, BATCH);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut probe: Vec<Digest> = keys.choose_multiple(&mut rng, BATCH).copied().collect();
        probe.shuffle(&mut rng);

        let (petrel, petrel_bytes) = measure(|| {
            let idx = PetrelIndex::new();
            for (i, d) in keys.iter().enumerate() {
                idx.insert(d, i as u64);
            }
            idx
        });
        // Built by single inserts in key-hash order, as an index is, not bulk-loaded from a
        // sorted run (which packs every node full).
        let (btree, btree_bytes) = measure(|| {
            let mut m = BTreeMap::new();
            for (i, d) in keys.iter().enumerate() {
                m.insert(*d, i as u64);
            }
            m
        });
        let (mut hash, hash_bytes) = measure(|| {
            let mut m = HashMap::with_capacity(0);
            for (i, d) in keys.iter().enumerate() {
                m.insert(*d, i as u64);
            }
            m
        });
        let mut btree = btree;
        let reported: usize = petrel.partitions.iter().map(|p| p.memory_bytes()).sum();
        println!(
            "memory at {n} records: petrel index {:.1} B/record (self-reported {:.1}), BTreeMap<Digest,u64> {:.1} B/record, HashMap<Digest,u64> {:.1} B/record",
            petrel_bytes as f64 / n as f64,
            reported as f64 / n as f64,
            btree_bytes as f64 / n as f64,
            hash_bytes as f64 / n as f64,
        );

        let mut group = c.benchmark_group(format!("index/{n}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.sample_size(20);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(4));

        group.bench_function(BenchmarkId::new("lookup", "petrel"), |b| {
            b.iter(|| probe.iter().map(|d| petrel.get(black_box(d)).unwrap_or(0)).sum::<u64>())
        });
        group.bench_function(BenchmarkId::new("lookup", "btreemap"), |b| {
            b.iter(|| probe.iter().map(|d| btree.get(black_box(d)).copied().unwrap_or(0)).sum::<u64>())
        });
        group.bench_function(BenchmarkId::new("lookup", "hashmap"), |b| {
            b.iter(|| probe.iter().map(|d| hash.get(black_box(d)).copied().unwrap_or(0)).sum::<u64>())
        });

        // Inserts and deletes of BATCH fresh keys into the loaded index; only the measured half
        // of each insert/delete pair is timed, the other half restores the starting state.
        group.bench_function(BenchmarkId::new("insert", "petrel"), |b| {
            b.iter_custom(|iters| {
                timed_pairs(
                    iters,
                    || fresh.iter().for_each(|d| petrel.insert(d, 1)),
                    || {
                        fresh.iter().for_each(|d| {
                            petrel.remove(d);
                        })
                    },
                )
            })
        });
        group.bench_function(BenchmarkId::new("delete", "petrel"), |b| {
            b.iter_custom(|iters| {
                fresh.iter().for_each(|d| petrel.insert(d, 1));
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    fresh.iter().for_each(|d| {
                        black_box(petrel.remove(d));
                    });
                    total += t.elapsed();
                    fresh.iter().for_each(|d| petrel.insert(d, 1));
                }
                fresh.iter().for_each(|d| {
                    petrel.remove(d);
                });
                total
            })
        });
        group.bench_function(BenchmarkId::new("insert", "btreemap"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    fresh.iter().for_each(|d| {
                        btree.insert(*d, 1);
                    });
                    total += t.elapsed();
                    fresh.iter().for_each(|d| {
                        btree.remove(d);
                    });
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("delete", "btreemap"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fresh.iter().for_each(|d| {
                        btree.insert(*d, 1);
                    });
                    let t = Instant::now();
                    fresh.iter().for_each(|d| {
                        black_box(btree.remove(d));
                    });
                    total += t.elapsed();
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("insert", "hashmap"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    fresh.iter().for_each(|d| {
                        hash.insert(*d, 1);
                    });
                    total += t.elapsed();
                    fresh.iter().for_each(|d| {
                        hash.remove(d);
                    });
                }
                total
            })
        });
        group.bench_function(BenchmarkId::new("delete", "hashmap"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    fresh.iter().for_each(|d| {
                        hash.insert(*d, 1);
                    });
                    let t = Instant::now();
                    fresh.iter().for_each(|d| {
                        black_box(hash.remove(d));
                    });
                    total += t.elapsed();
                }
                total
            })
        });
        group.finish();
    }
}

fn timed_pairs(iters: u64, mut timed: impl FnMut(), mut untimed: impl FnMut()) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = Instant::now();
        timed();
        total += t.elapsed();
        untimed();
    }
    total
}

criterion_group!(benches, bench_index);
criterion_main!(benches);
