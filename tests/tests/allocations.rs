//! Heap allocations per request on the server's hot path, counted by a global allocator
//! wrapper around the real command path (`cmd::handle` on an in-memory node): a read of a
//! record allocates nothing; a write allocates twice — the new image is built in one buffer
//! and kept in the engine's own allocation — so a regression that adds allocations per request
//! fails here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use petrel_proto::message::{begin_frame, end_frame, write_field, write_op, MsgHeader};
use petrel_proto::wire::{info1, info2, FieldType};
use petrel_proto::{Digest, KeyRef};
use petrel_server::config::{Config, Overrides};
use petrel_server::node::Node;

struct Counting;
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn body(h: MsgHeader, digest: &Digest, ops: &[(u8, u8, &[u8], &[u8])]) -> Vec<u8> {
    let mut f = Vec::new();
    let start = begin_frame(&mut f);
    MsgHeader { n_fields: 3, n_ops: ops.len() as u16, ..h }.write(&mut f);
    write_field(&mut f, FieldType::Namespace as u8, b"test");
    write_field(&mut f, FieldType::Set as u8, b"demo");
    write_field(&mut f, FieldType::Digest as u8, digest.as_bytes());
    for (op, particle, name, value) in ops {
        write_op(&mut f, *op, *particle, name, value);
    }
    end_frame(&mut f, start, 3);
    f.drain(..8);
    f
}

#[test]
fn reads_allocate_nothing_and_writes_a_bounded_few() {
    let node = Node::new(Config::load(None, &Overrides::default()).expect("config")).expect("node");
    let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let value = [7u8; 100];
    let digests: Vec<Digest> = (0..1000).map(|i| Digest::compute(b"demo", KeyRef::Int(i))).collect();
    let writes: Vec<Vec<u8>> = digests
        .iter()
        .map(|d| body(MsgHeader { info2: info2::WRITE, ..Default::default() }, d, &[(2, 4, b"bin", &value)]))
        .collect();
    let reads: Vec<Vec<u8>> = digests
        .iter()
        .map(|d| body(MsgHeader { info1: info1::READ | info1::GET_ALL, ..Default::default() }, d, &[]))
        .collect();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut sink: Vec<u8> = Vec::new();
    let mut run = |frames: &[Vec<u8>]| -> u64 {
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        rt.block_on(async {
            for f in frames {
                out.clear();
                petrel_server::cmd::handle(&node, f, &mut out, &mut sink, 0).await.expect("handled");
                assert_eq!(out[13], 0, "result code");
            }
        });
        ALLOCATIONS.load(Ordering::Relaxed) - before
    };
    // Warm up: the first writes create the set and grow the index arenas.
    run(&writes);
    // Per request: the difference between running the frames twice and once, so that what a
    // run costs once (the runtime's entry) does not count.
    let per_request = |run: &mut dyn FnMut(&[Vec<u8>]) -> u64, frames: &[Vec<u8>]| -> f64 {
        let twice: Vec<Vec<u8>> = frames.iter().chain(frames).cloned().collect();
        let once = run(frames);
        (run(&twice).saturating_sub(once)) as f64 / frames.len() as f64
    };
    let per_write = per_request(&mut run, &writes);
    let per_read = per_request(&mut run, &reads);
    println!("allocations per write: {per_write:.2}, per read: {per_read:.2}");
    assert!(per_read < 0.01, "a read allocated {per_read:.2} times");
    assert!(per_write <= 2.0, "a write allocated {per_write:.2} times");
}
