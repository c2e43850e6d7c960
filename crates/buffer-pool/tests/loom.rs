#![cfg(buffer_pool_loom)]
//! loom models of the pool's protocol (the shipped code, through `src/sync.rs`):
//! - the lock-free free list: no chunk handed to two holders, ABA caught by the tag, runs taken
//!   all-or-nothing, and the release/acquire hand-off of chunk contents;
//! - the waiter hand-off: no lost wake-up, strict FIFO order;
//! - the lifetime: the last handle dropped while chunks are out.
//!
//! Run: `RUSTFLAGS="--cfg buffer_pool_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p buffer-pool
//! --release --test loom` (or `cargo xtask loom buffer-pool`).
//!
//! Each chunk gets a `loom::cell::UnsafeCell` standing for its memory: a holder writes its id
//! into it and reads it back. If two holders ever had the same chunk at once, or a new holder
//! were not ordered after the previous one's release, loom would report the data race.

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use buffer_pool::{Allocation, Pool, PoolConfig, PoolError};

/// A pool of `chunks` chunks and one model cell per chunk.
struct Model {
    pool: Pool,
    addresses: Vec<usize>,
    cells: Vec<UnsafeCell<usize>>,
}

impl Model {
    fn new(config: &PoolConfig) -> Arc<Self> {
        let pool = Pool::new(config).unwrap();
        let all = pool.try_allocate(pool.max_chunks()).unwrap();
        let addresses: Vec<usize> = all.chunk_ptrs().map(|p| p.as_ptr() as usize).collect();
        drop(all);
        let cells = addresses.iter().map(|_| UnsafeCell::new(0)).collect();
        Arc::new(Self {
            pool,
            addresses,
            cells,
        })
    }

    /// Writes `id` into every chunk of `allocation`'s model cells, then checks them.
    fn use_chunks(&self, allocation: &Allocation, id: usize) {
        let mut indices: Vec<usize> = allocation
            .chunk_ptrs()
            .map(|p| {
                let at = self
                    .addresses
                    .iter()
                    .position(|&a| a == p.as_ptr() as usize);
                at.expect("a chunk of this pool")
            })
            .collect();
        let cells: Vec<&UnsafeCell<usize>> = indices.iter().map(|&i| &self.cells[i]).collect();
        indices.sort_unstable();
        indices.dedup();
        assert_eq!(
            indices.len(),
            cells.len(),
            "a chunk appears twice in one allocation"
        );
        for cell in &cells {
            // SAFETY: loom checks this access: it races only if the chunk is not ours alone.
            cell.with_mut(|value| unsafe { *value = id });
        }
        for cell in &cells {
            // SAFETY: as above.
            assert_eq!(cell.with(|value| unsafe { *value }), id);
        }
    }
}

/// A fixed pool of small chunks, with or without the per-thread slot in front of the stack
/// (under loom every thread shares one slot).
fn fixed(chunks: usize, slots: bool) -> PoolConfig {
    PoolConfig::fixed(chunks)
        .with_chunk_size(512)
        .with_thread_slots(slots)
}

/// One thread takes all three chunks and gives them back in a different order while another
/// takes one: without the tag, the second thread's stale CAS would succeed (same top, same
/// count) and corrupt the list. Without slots, so every operation goes through the stack.
#[test]
fn free_list_aba_and_no_double_hand_out() {
    loom::model(|| {
        let model = Model::new(&fixed(3, false));
        let other = Arc::clone(&model);
        let t = thread::spawn(move || {
            if let Ok(a) = other.pool.try_allocate(1) {
                other.use_chunks(&a, 1);
            }
        });
        let mut held = Vec::new();
        for _ in 0..3 {
            if let Ok(a) = model.pool.try_allocate(1) {
                model.use_chunks(&a, 2);
                held.push(a);
            }
        }
        // Give back the middle one, then the last, then the first: same top, same count.
        if held.len() == 3 {
            let first = held.remove(0);
            drop(held);
            drop(first);
        } else {
            drop(held);
        }
        t.join().unwrap();
        let all = model
            .pool
            .try_allocate(3)
            .expect("every chunk is back, once");
        model.use_chunks(&all, 3);
    });
}

/// Single-chunk requests and releases racing on the shared slot (taking a whole run, splitting
/// it, parking the rest) never hand a chunk out twice.
#[test]
fn slot_park_and_take_no_double_hand_out() {
    loom::model(|| {
        let model = Model::new(&fixed(3, true));
        let other = Arc::clone(&model);
        let t = thread::spawn(move || {
            for _ in 0..2 {
                if let Ok(a) = other.pool.try_allocate(1) {
                    other.use_chunks(&a, 1);
                }
            }
        });
        let a = model.pool.try_allocate(1);
        let b = model.pool.try_allocate(2);
        for held in [&a, &b].into_iter().flatten() {
            model.use_chunks(held, 2);
        }
        drop(a);
        drop(b);
        t.join().unwrap();
        let all = model
            .pool
            .try_allocate(3)
            .expect("every chunk is back, once");
        model.use_chunks(&all, 3);
    });
}

/// Two concurrent multi-chunk requests: each gets its whole run or nothing.
#[test]
fn runs_are_taken_all_or_nothing() {
    for slots in [false, true] {
        loom::model(move || {
            let model = Model::new(&fixed(3, slots));
            let other = Arc::clone(&model);
            let t = thread::spawn(move || match other.pool.try_allocate(2) {
                Ok(a) => {
                    assert_eq!(a.chunk_count(), 2);
                    other.use_chunks(&a, 1);
                    true
                }
                Err(PoolError::WouldBlock { .. }) => false,
                Err(e) => panic!("{e}"),
            });
            let mine = match model.pool.try_allocate(2) {
                Ok(a) => {
                    model.use_chunks(&a, 2);
                    drop(a);
                    true
                }
                Err(PoolError::WouldBlock { .. }) => false,
                Err(e) => panic!("{e}"),
            };
            let theirs = t.join().unwrap();
            assert!(
                mine || theirs,
                "with 3 chunks at least one request of 2 succeeds"
            );
            assert_eq!(model.pool.stats().free_chunks, 3);
        });
    }
}

/// A blocked request is woken by a release racing with its arrival (no lost wake-up); loom
/// reports a deadlock if the waiter could sleep forever.
#[test]
fn waiter_hand_off_has_no_lost_wake_up() {
    for slots in [false, true] {
        loom::model(move || {
            let model = Model::new(&fixed(2, slots));
            let held = model.pool.try_allocate(2).unwrap();
            model.use_chunks(&held, 1);
            let other = Arc::clone(&model);
            let t = thread::spawn(move || {
                let a = other.pool.allocate(2).unwrap();
                other.use_chunks(&a, 2);
            });
            // Release chunk by chunk: the waiter needs both and must take them at once.
            let mut pieces = held.split();
            drop(pieces.next());
            drop(pieces);
            t.join().unwrap();
            assert_eq!(model.pool.stats().free_chunks, 2);
        });
    }
}

/// A request waiting for two chunks is not overtaken by a later request for one, even though a
/// chunk is free when the later one arrives; each is woken when its run is complete.
#[test]
fn waiters_are_served_in_fifo_order() {
    for slots in [false, true] {
        loom::model(move || {
            let model = Model::new(&fixed(2, slots));
            let held = model.pool.try_allocate(2).unwrap();
            let order = Arc::new(AtomicUsize::new(0));

            let (m, o) = (Arc::clone(&model), Arc::clone(&order));
            let big = thread::spawn(move || {
                let a = m.pool.allocate(2).unwrap();
                let place = o.fetch_add(1, Ordering::SeqCst);
                m.use_chunks(&a, 1);
                place
            });
            while model.pool.stats().waiters < 1 {
                thread::yield_now();
            }
            let mut pieces = held.split();
            drop(pieces.next()); // one chunk free, but the big request needs two
            let (m, o) = (Arc::clone(&model), Arc::clone(&order));
            let small = thread::spawn(move || {
                let a = m.pool.allocate(1).unwrap();
                let place = o.fetch_add(1, Ordering::SeqCst);
                m.use_chunks(&a, 2);
                place
            });
            // Wait until the small request queues (or, were it wrongly served, is done).
            while model.pool.stats().waiters < 2 && order.load(Ordering::SeqCst) == 0 {
                thread::yield_now();
            }
            drop(pieces);
            assert_eq!(
                big.join().unwrap(),
                0,
                "the earlier, larger request goes first"
            );
            assert_eq!(small.join().unwrap(), 1);
        });
    }
}

/// The last pool handle is dropped while another thread still holds (and then releases)
/// chunks, and a third releases through the slow path: the state must outlive every holder.
#[test]
fn last_handle_dropped_while_chunks_are_out() {
    loom::model(|| {
        let pool = Pool::new(&fixed(2, true)).unwrap();
        let a = pool.try_allocate(1).unwrap();
        let b = pool.try_allocate(1).unwrap();
        let t = thread::spawn(move || {
            assert_eq!(a.chunk(0).len(), 512);
            drop(a);
        });
        let clone = pool.clone();
        let u = thread::spawn(move || drop(clone));
        drop(pool);
        drop(b);
        t.join().unwrap();
        u.join().unwrap();
    });
}

/// A growable pool grows under the mutex while a fast-path release races with it.
#[test]
fn growth_races_with_release() {
    loom::model(|| {
        let config = PoolConfig::growable(1, 2)
            .with_chunk_size(512)
            .with_slab_chunks(1);
        let pool = Arc::new(Pool::new(&config).unwrap());
        let a = pool.try_allocate(1).unwrap();
        let t = thread::spawn(move || drop(a));
        let b = pool.allocate(2);
        t.join().unwrap();
        assert_eq!(b.unwrap().chunk_count(), 2);
        assert_eq!(pool.stats().total_chunks, 2);
    });
}
