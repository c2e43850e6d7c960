//! The synchronisation primitives the pool's protocol uses: `std`'s atomics and `parking_lot`'s
//! mutex and condition variable, or loom's under `cfg(buffer_pool_loom)`, so that the loom models
//! in `tests/loom.rs` check the very code that ships.
//!
//! Only the protocol goes through this shim (the free-list head and links, the handle count, the
//! waiter queue's mutex and condition variables). Counters that only feed [`crate::PoolStats`] and
//! the table of slab addresses use `std` atomics directly: they carry no synchronisation of their
//! own (a slab's address is published by the release/acquire hand-off of its chunks through the
//! free-list head, which loom does check).

#[cfg(not(buffer_pool_loom))]
pub(crate) use std::sync::{
    Arc,
    atomic::{AtomicU32, AtomicU64, AtomicUsize, fence},
};

#[cfg(buffer_pool_loom)]
pub(crate) use loom::sync::{
    Arc,
    atomic::{AtomicU32, AtomicU64, AtomicUsize, fence},
};

#[cfg(not(buffer_pool_loom))]
pub(crate) use parking_lot::MutexGuard;

pub(crate) use std::sync::atomic::Ordering;

/// A mutex with a guard-returning `lock` (no poisoning), over `parking_lot` or loom.
#[derive(Debug)]
pub(crate) struct Mutex<T> {
    #[cfg(not(buffer_pool_loom))]
    inner: parking_lot::Mutex<T>,
    #[cfg(buffer_pool_loom)]
    inner: loom::sync::Mutex<T>,
}

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        Self {
            #[cfg(not(buffer_pool_loom))]
            inner: parking_lot::Mutex::new(value),
            #[cfg(buffer_pool_loom)]
            inner: loom::sync::Mutex::new(value),
        }
    }

    #[cfg(not(buffer_pool_loom))]
    #[inline]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        self.inner.lock()
    }

    #[cfg(buffer_pool_loom)]
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        MutexGuard {
            inner: Some(
                self.inner
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
        }
    }
}

/// loom's guard, wrapped so that [`Condvar::wait`] can take it by `&mut` like `parking_lot`'s.
#[cfg(buffer_pool_loom)]
#[derive(Debug)]
pub(crate) struct MutexGuard<'a, T> {
    inner: Option<loom::sync::MutexGuard<'a, T>>,
}

#[cfg(buffer_pool_loom)]
impl<T> std::ops::Deref for MutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match &self.inner {
            Some(guard) => guard,
            None => unreachable!("a guard is only empty inside Condvar::wait"),
        }
    }
}

#[cfg(buffer_pool_loom)]
impl<T> std::ops::DerefMut for MutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.inner {
            Some(guard) => guard,
            None => unreachable!("a guard is only empty inside Condvar::wait"),
        }
    }
}

/// A condition variable used with [`Mutex`].
#[derive(Debug)]
pub(crate) struct Condvar {
    #[cfg(not(buffer_pool_loom))]
    inner: parking_lot::Condvar,
    #[cfg(buffer_pool_loom)]
    inner: loom::sync::Condvar,
}

impl Condvar {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(buffer_pool_loom))]
            inner: parking_lot::Condvar::new(),
            #[cfg(buffer_pool_loom)]
            inner: loom::sync::Condvar::new(),
        }
    }

    /// Waits for a notification (or a spurious wake-up) until `deadline`, if any. Returns true
    /// when the deadline has passed. Under loom time is not modelled: the wait is untimed.
    #[cfg(not(buffer_pool_loom))]
    pub(crate) fn wait<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        match deadline {
            None => {
                self.inner.wait(guard);
                false
            }
            Some(deadline) => self.inner.wait_until(guard, deadline).timed_out(),
        }
    }

    /// Waits for a notification (or a spurious wake-up); loom does not model time, so the
    /// deadline is ignored and the wait never times out.
    #[cfg(buffer_pool_loom)]
    pub(crate) fn wait<T>(
        &self,
        guard: &mut MutexGuard<'_, T>,
        _deadline: Option<std::time::Instant>,
    ) -> bool {
        if let Some(inner) = guard.inner.take() {
            guard.inner = Some(
                self.inner
                    .wait(inner)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        }
        false
    }

    pub(crate) fn notify_one(&self) {
        self.inner.notify_one();
    }
}

/// Number of per-thread slots a pool keeps in front of its shared free list: a power of two,
/// about twice the machine's parallelism (one under loom, so the models make every thread share
/// the slot and explore the races on it).
#[cfg(not(buffer_pool_loom))]
pub(crate) fn slot_count() -> usize {
    // Asked once per process: the answer reads cgroup files, and pools are made often (a
    // store makes one each time it is opened).
    static SLOTS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SLOTS.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(4, std::num::NonZeroUsize::get);
        (threads * 2).next_power_of_two().clamp(4, 64)
    })
}

#[cfg(buffer_pool_loom)]
pub(crate) fn slot_count() -> usize {
    1
}

/// A small number that differs between threads (handed out in order of first use), used to
/// pick a slot.
#[cfg(not(buffer_pool_loom))]
#[inline]
pub(crate) fn thread_slot() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::AtomicUsize as StdAtomicUsize;

    static NEXT: StdAtomicUsize = StdAtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|slot| match slot.get() {
        usize::MAX => {
            let id = NEXT.fetch_add(1, Ordering::Relaxed) & (usize::MAX >> 1);
            slot.set(id);
            id
        }
        id => id,
    })
}

#[cfg(buffer_pool_loom)]
pub(crate) fn thread_slot() -> usize {
    0
}

/// Orders a preceding `SeqCst` read-modify-write before a following `SeqCst` load of another
/// location (the Dekker handshake between a slot's releaser and the slow path).
///
/// With `std` the `SeqCst` orderings of the two accesses already do this (they are part of
/// the single total order), so this is nothing. loom models `SeqCst` accesses as `AcqRel` only
/// (it would report false lost wake-ups) but does model `SeqCst` fences, so under loom this is
/// `fence(SeqCst)`.
#[inline(always)]
pub(crate) fn dekker_fence() {
    #[cfg(buffer_pool_loom)]
    fence(Ordering::SeqCst);
}

/// Waits a little before re-reading a slot another thread is about to change: spins, then
/// yields the processor (that thread may have been preempted).
#[inline]
pub(crate) fn backoff(spins: &mut u32) {
    *spins += 1;
    #[cfg(not(buffer_pool_loom))]
    if *spins < 64 {
        std::hint::spin_loop();
        return;
    }
    #[cfg(not(buffer_pool_loom))]
    std::thread::yield_now();
    #[cfg(buffer_pool_loom)]
    loom::thread::yield_now();
}
