//! Suite `pool`: the buffer pool against a fresh 4 KiB-aligned `std::alloc` allocation per use
//! (peer `std-alloc`) and a `Mutex<Vec<..>>` free list of pre-allocated aligned chunks (peer
//! `mutex-freelist`).
//!
//! One op is: take a chunk (or 8 for `alloc8_*`), write one byte into each chunk, give it back.
//! `alloc1_t{N}`: N threads doing ops in a loop on one shared pool (wall time of the whole
//! batch, so the figure is ops per second across all threads). The pools are large enough that
//! nobody ever waits: this measures the fast paths.

use std::alloc::{Layout, alloc, dealloc};
use std::hint::black_box;
use std::ptr::NonNull;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use buffer_pool::Pool;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eventstore_benches::scale;

const CHUNK: usize = 4096;
/// Chunks in each pool: more than all threads can hold at once.
const CHUNKS: usize = 256;

/// Something that hands out `n` aligned chunks, lets us write them, and takes them back.
trait Contender: Sync {
    /// One op on `n` chunks.
    fn op(&self, n: usize);
}

#[inline(always)]
fn touch(ptr: *mut u8) {
    // SAFETY: `ptr` points into a chunk the caller holds.
    unsafe { ptr.write_volatile(black_box(1)) };
}

struct Ours(Pool);

impl Contender for Ours {
    #[inline]
    fn op(&self, n: usize) {
        let allocation = self.0.allocate(n).expect("the pool never runs dry here");
        for chunk in allocation.chunk_ptrs() {
            touch(chunk.as_ptr());
        }
        drop(black_box(allocation));
    }
}

/// A fresh aligned allocation per use (one allocation of `n` chunks).
struct StdAlloc;

impl Contender for StdAlloc {
    #[inline]
    fn op(&self, n: usize) {
        let layout = Layout::from_size_align(n * CHUNK, CHUNK).expect("layout");
        // SAFETY: `layout` has a non-zero size.
        let base = unsafe { alloc(layout) };
        assert!(!base.is_null(), "allocation failed");
        for i in 0..n {
            // SAFETY: within the allocation.
            touch(unsafe { base.add(i * CHUNK) });
        }
        // SAFETY: allocated above with the same layout.
        unsafe { dealloc(black_box(base), layout) };
    }
}

/// Pre-allocated aligned chunks on a `Mutex<Vec<..>>` free list.
struct MutexFreeList {
    free: Mutex<Vec<usize>>,
    slab: NonNull<u8>,
    layout: Layout,
}

// SAFETY: the slab is only reached through the addresses on the mutex-guarded list.
unsafe impl Sync for MutexFreeList {}

impl MutexFreeList {
    fn new(chunks: usize) -> Self {
        let layout = Layout::from_size_align(chunks * CHUNK, CHUNK).expect("layout");
        // SAFETY: non-zero size.
        let slab = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) }).expect("slab");
        let free = (0..chunks)
            .map(|i| slab.as_ptr() as usize + i * CHUNK)
            .collect();
        Self {
            free: Mutex::new(free),
            slab,
            layout,
        }
    }
}

impl Drop for MutexFreeList {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; no chunk is out any more.
        unsafe { dealloc(self.slab.as_ptr(), self.layout) };
    }
}

impl Contender for MutexFreeList {
    #[inline]
    fn op(&self, n: usize) {
        let mut taken = [0usize; 8];
        {
            let mut free = self.free.lock().expect("lock");
            for slot in &mut taken[..n] {
                *slot = free.pop().expect("the list never runs dry here");
            }
        }
        for &chunk in &taken[..n] {
            touch(chunk as *mut u8);
        }
        let mut free = self.free.lock().expect("lock");
        free.extend_from_slice(black_box(&taken[..n]));
    }
}

/// Runs `ops_per_thread` ops of `n` chunks on each of `threads` threads, all started together;
/// returns the wall time until the last one finishes.
fn run_threads(
    contender: &dyn Contender,
    threads: usize,
    ops_per_thread: u64,
    n: usize,
) -> Duration {
    let barrier = Barrier::new(threads + 1);
    let mut start = Instant::now();
    thread::scope(|s| {
        for _ in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for _ in 0..ops_per_thread {
                    contender.op(n);
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    start.elapsed()
}

fn contenders() -> Vec<(&'static str, Box<dyn Contender>)> {
    vec![
        (
            "ours",
            Box::new(Ours(Pool::fixed(CHUNK, CHUNKS).expect("pool"))),
        ),
        ("std-alloc", Box::new(StdAlloc)),
        ("mutex-freelist", Box::new(MutexFreeList::new(CHUNKS))),
    ]
}

fn uncontended(c: &mut Criterion, case: &str, n: usize) {
    let ops = scale(10_000, 100) as u64;
    let mut group = c.benchmark_group(format!("pool/{case}"));
    group.throughput(Throughput::Elements(ops));
    for (name, contender) in contenders() {
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..ops {
                    contender.op(n);
                }
            })
        });
    }
    group.finish();
}

fn contended(c: &mut Criterion, threads: usize) {
    let ops = scale(20_000, 200) as u64;
    let per_thread = ops / threads as u64;
    let mut group = c.benchmark_group(format!("pool/alloc1_t{threads}"));
    group.throughput(Throughput::Elements(per_thread * threads as u64));
    for (name, contender) in contenders() {
        group.bench_function(name, |b| {
            b.iter_custom(|iters| run_threads(&*contender, threads, iters * per_thread, 1))
        });
    }
    group.finish();
}

fn alloc1_t1(c: &mut Criterion) {
    uncontended(c, "alloc1_t1", 1);
}

fn alloc1_t2(c: &mut Criterion) {
    contended(c, 2);
}

fn alloc1_t4(c: &mut Criterion) {
    contended(c, 4);
}

fn alloc8_t1(c: &mut Criterion) {
    uncontended(c, "alloc8_t1", 8);
}

criterion_group!(pool, alloc1_t1, alloc1_t2, alloc1_t4, alloc8_t1);
criterion_main!(pool);
