//! The pool: its memory, the lock-free free list, the FIFO waiter queue, and the `Pool` handle.
//!
//! # Protocol
//! Free chunks form a Treiber stack of chunk indices: `next[i]` links chunk `i` to the one below
//! it, and one `AtomicU64`, the *head*, holds the top index, the number of free chunks, two flags
//! and an ABA tag (see [`head`]). Every change of the free list is one compare-and-swap of the
//! head, so "take `n` chunks" is atomic: a request either gets all `n` or none (a multi-chunk pop
//! walks `n` links and swings the head past them in one CAS).
//!
//! - **Fast path** (no lock, no system call): while neither flag is set, `allocate` pops and a
//!   drop pushes with a CAS. Each pop bumps the tag, so a stale CAS fails even if the same chunk
//!   is back on top (ABA). The tag has 22 bits: a stale CAS could still succeed if a thread
//!   stalled between reading the head and its CAS while exactly a multiple of 2^22 (~4.2 M)
//!   pops went by and left the same top and count; the risk accepted by tagged stacks of
//!   this width (a preemption of milliseconds at full speed, on a head that must then match
//!   bit for bit).
//! - **Thread slots**: in front of the shared stack sit a few padded *slots* (see [`OffChunkSet`]), each
//!   holding at most one free run; a thread uses the slot its id maps to. A release parks its
//!   run in an empty slot and the next request of the same size takes it back, one CAS each on
//!   a line no other thread writes, so threads do not bounce the head between cores. A slot is
//!   filled in two steps, `EMPTY -> run|PENDING` (CAS), check the head's flags, then
//!   `-> run` (plain store); whoever enters the slow path sets `SLOW` first and then drains every
//!   slot into the stack, waiting out `PENDING` ones. The two "write, then read the other
//!   side" sequences are ordered by `SeqCst` (a Dekker handshake): either the releaser sees
//!   `SLOW` and takes its run back to the slow path, or the drain finds the run. So while `SLOW`
//!   is set every free chunk is on the stack, and the slots only ever hold chunks nobody waits
//!   for. A releaser touches the pool only while its slot is `PENDING`, which the drain (and so
//!   the final free, see below) waits for.
//! - **Slow path**: under the queue mutex a thread sets the `SLOW` flag. From then on every fast
//!   CAS fails (the head changed) and every newcomer finds the flag and comes to the mutex, so
//!   whoever holds the mutex owns the free list. `SLOW` stays set while any request waits.
//!   Requests that cannot be served join a FIFO queue and sleep on their own condition
//!   variable; a release while `SLOW` is set pushes its chunks under the mutex and then serves
//!   the queue from the front, handing each waiter its whole run before waking it (direct
//!   hand-off: no lost wake-up, no overtaking, nobody holds a partial set while waiting).
//! - **Runs**: a run is one word (first, last, count). Runs whose chunks are consecutive
//!   indices (what a fresh pool hands out, and what parking keeps intact) are marked so, and
//!   their chunks are found without following links.
//! - **Lifetime**: [`Allocation`]s do not count references to the pool (that would cost two
//!   more atomic read-modify-writes per use). The shared state lives until the last [`Pool`]
//!   handle is gone *and* every chunk is back: dropping the last handle sets `CLOSED` under the
//!   mutex, after which every release takes the mutex, and whoever brings the free count back
//!   to the total with `CLOSED` set frees the state after unlocking.

use std::collections::VecDeque;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::Ordering as StdOrdering;
use std::sync::atomic::{AtomicPtr as StdAtomicPtr, AtomicU32 as StdAtomicU32};
use std::time::{Duration, Instant};

use std::ops::Deref;

use crate::allocation::Allocation;
use crate::config::{Geometry, PoolConfig};
use crate::error::{ConfigError, PoolError};
use crate::stats::PoolStats;
use crate::sync::{Arc, AtomicU32, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering, fence};

/// Alignment of every chunk: 4 KiB.
pub(crate) const ALIGN: usize = 4096;

/// The most chunks one pool can hold (2^20 - 1: chunk indices and the free count share the
/// free list's 64-bit head with its ABA tag).
pub const MAX_CHUNKS: usize = (1 << 20) - 1;

/// Packing of the free list's head word.
pub(crate) mod head {
    /// Bits 0..20: index of the top free chunk (meaningless when the count is zero).
    pub(crate) const TOP_MASK: u64 = (1 << 20) - 1;
    /// Bits 20..40: number of free chunks.
    pub(crate) const COUNT_SHIFT: u32 = 20;
    /// Bit 40: the mutex holder owns the free list (requests are waiting, or a slow-path
    /// operation is in progress). Fast paths back off to the mutex.
    pub(crate) const SLOW: u64 = 1 << 40;
    /// Bit 41: the last pool handle is gone; releases take the mutex.
    pub(crate) const CLOSED: u64 = 1 << 41;
    /// Bits 42..64: ABA tag, bumped by every pop (wraps after 2^22 pops).
    pub(crate) const TAG_ONE: u64 = 1 << 42;

    #[inline]
    pub(crate) fn top(h: u64) -> u32 {
        (h & TOP_MASK) as u32
    }

    #[inline]
    pub(crate) fn count(h: u64) -> u32 {
        ((h >> COUNT_SHIFT) & TOP_MASK) as u32
    }

    /// `h` with a new top and count, flags and tag kept.
    #[inline]
    pub(crate) fn with(h: u64, top: u32, count: u32) -> u64 {
        (h & !(TOP_MASK | (TOP_MASK << COUNT_SHIFT)))
            | u64::from(top)
            | (u64::from(count) << COUNT_SHIFT)
    }
}

use head::{CLOSED, SLOW, TAG_ONE};

/// What a waiter finds in its slot: nothing yet, its run, or a failure.
const GRANTED: u64 = 1 << 63;
const FAILED: u64 = 1 << 62;

/// A run of chunks linked through `next`: `first` .. `last`, `count` chunks, packed into one
/// word (`first | last << 20 | count << 40`, plus `CONTIGUOUS`) so that it travels in a
/// register and is parked in a slot as is.
///
/// `CONTIGUOUS` marks a run whose chunks are `first, first + 1, ..., last` (every link is
/// `+1`): its chunks can then be found without following links. Fresh pools hand out such
/// runs, and parking a run in a slot keeps it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run(u64);

impl Run {
    const MASK: u64 = (1 << 20) - 1;
    const CONTIGUOUS: u64 = 1 << 61;

    #[inline]
    pub(crate) fn new(first: u32, last: u32, count: u32) -> Self {
        Self(u64::from(first) | (u64::from(last) << 20) | (u64::from(count) << 40))
    }

    /// A run of `count` chunks `first, first + 1, ...`, linked `+1` (or a single chunk).
    #[inline]
    pub(crate) fn contiguous(first: u32, count: u32) -> Self {
        Self(Self::new(first, first + count - 1, count).0 | Self::CONTIGUOUS)
    }

    /// True when the chunks are `first, first + 1, ..., last`.
    #[inline]
    pub(crate) fn is_contiguous(self) -> bool {
        self.0 & Self::CONTIGUOUS != 0
    }

    /// This run, marked contiguous or not.
    #[inline]
    fn marked(self, contiguous: bool) -> Self {
        if contiguous {
            Self(self.0 | Self::CONTIGUOUS)
        } else {
            self
        }
    }

    #[inline]
    pub(crate) fn first(self) -> u32 {
        (self.0 & Self::MASK) as u32
    }

    #[inline]
    pub(crate) fn last(self) -> u32 {
        ((self.0 >> 20) & Self::MASK) as u32
    }

    #[inline]
    pub(crate) fn count(self) -> u32 {
        ((self.0 >> 40) & Self::MASK) as u32
    }
}

/// Packing of a slot: a [`Run`]'s word, plus `PENDING` while its releaser checks the head's
/// flags. `EMPTY` (zero: no chunks) is no run.
mod slot {
    use super::Run;

    pub(crate) const EMPTY: u64 = 0;
    pub(crate) const PENDING: u64 = 1 << 60;

    #[inline]
    pub(crate) fn pack(run: Run) -> u64 {
        run.0
    }

    #[inline]
    pub(crate) fn count(v: u64) -> u32 {
        Run(v).count()
    }

    #[inline]
    pub(crate) fn unpack(v: u64) -> Run {
        Run(v & !PENDING)
    }
}

use slot::{EMPTY, PENDING};

/// Where a waiting request sleeps and receives its chunks.
#[derive(Debug)]
struct Slot {
    ready: Condvar,
    /// 0 while waiting; `GRANTED |` the run's word, or `FAILED`. Written and read under
    /// the queue mutex.
    grant: AtomicU64,
}

#[derive(Debug)]
struct Waiter {
    count: u32,
    slot: Arc<Slot>,
}

/// State guarded by the mutex: the waiting requests in arrival order.
#[derive(Debug, Default)]
struct Queue {
    waiters: VecDeque<Waiter>,
}

/// Outcome of trying to take a run while owning the free list.
enum Take {
    Taken(Run),
    Short,
    Failed(PoolError),
}

/// Finds chunk addresses and follows the links of a run; a cheap copy of the pool's layout that
/// loops keep in registers.
#[derive(Clone, Copy)]
pub(crate) struct Locator<'a> {
    /// The only slab's base address, or null when the pool has several slabs.
    base: *mut u8,
    slabs: &'a [StdAtomicPtr<u8>],
    next: &'a [AtomicU32],
    slab_shift: u32,
    stride_shift: u32,
}

// SAFETY: `base` is only an address inside the pool's memory (the same one the slab table
// holds); a `Locator` gives no access by itself, like the shared references it also holds.
unsafe impl Send for Locator<'_> {}
// SAFETY: as above.
unsafe impl Sync for Locator<'_> {}

impl Locator<'_> {
    /// Address of chunk `index` (one that is out of the pool, so its slab exists).
    #[inline]
    pub(crate) fn ptr(&self, index: u32) -> NonNull<u8> {
        let (base, offset) = if self.base.is_null() {
            let base = self.slabs[(index >> self.slab_shift) as usize].load(StdOrdering::Relaxed);
            let in_slab = index & ((1 << self.slab_shift) - 1);
            (base, (in_slab as usize) << self.stride_shift)
        } else {
            (self.base, (index as usize) << self.stride_shift)
        };
        // SAFETY: a chunk index is only handed out once its slab is allocated (the slab
        // address is stored before the chunks are pushed, and the pusher's release / our
        // acquire of `head` orders the two), and `offset` is below the slab's size.
        unsafe { NonNull::new_unchecked(base.add(offset)) }
    }

    /// The chunk after `index` in a run that is out of the pool.
    #[inline]
    pub(crate) fn next_of(&self, index: u32) -> u32 {
        self.next[index as usize].load(Ordering::Relaxed)
    }
}

/// A hot word on a cache line of its own that is never among the first two lines of a 4 KiB
/// page.
///
/// Chunks are 4 KiB-aligned, so the first line of every chunk (where callers write their
/// headers) falls in the same L1 set. A pool word placed at the start of a page shared that
/// set with every chunk a caller touches: with 8 chunks written per use the set overflowed
/// and the pool's own lines were evicted each time (alloc8_t1 measured 29 M ops/s with
/// chunk-start writes against 55 M with writes 320 bytes in). Aligned to 256 bytes with the
/// word at offset 128, it always sits at a page offset of 128 + k * 256, and its 128-byte
/// line pair holds nothing else (as `CachePadded` would).
#[repr(C, align(256))]
pub(crate) struct OffChunkSet<T> {
    _front: [u8; 128],
    value: T,
}

const _: () = {
    assert!(std::mem::size_of::<OffChunkSet<AtomicU64>>() == 256);
    assert!(std::mem::offset_of!(OffChunkSet<AtomicU64>, value) == 128);
};

impl<T> OffChunkSet<T> {
    fn new(value: T) -> Self {
        Self {
            _front: [0; 128],
            value,
        }
    }
}

impl<T> Deref for OffChunkSet<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The shared state of a pool.
pub(crate) struct Inner {
    /// The free list's head word (see [`head`]).
    head: OffChunkSet<AtomicU64>,
    /// Per-thread slots in front of the stack (see [`slot`]); a power of two of them.
    slots: Box<[OffChunkSet<AtomicU64>]>,
    /// `next[i]`: the chunk below `i` on the free list, or the next chunk of a run.
    next: Box<[AtomicU32]>,
    pub(crate) geometry: Geometry,
    /// Base address of each slab (null until allocated). Published to other threads by the
    /// release/acquire hand-off of the slab's chunks through `head`.
    slabs: Box<[StdAtomicPtr<u8>]>,
    /// The base address of a pool that is one slab allocated up front (every fixed pool), so
    /// that finding a chunk takes no table look-up; null otherwise.
    single_base: *mut u8,
    /// Chunks in allocated slabs. Written under the mutex.
    total: StdAtomicU32,
    /// Most chunks in use at once.
    high_water: StdAtomicU32,
    /// Requests waiting (mirror of the queue's length, for `stats`; written under the mutex
    /// after `SLOW` is set, so a thread that sees a waiter here also sees `SLOW`).
    waiting: AtomicUsize,
    /// Live `Pool` handles.
    handles: AtomicUsize,
    queue: Mutex<Queue>,
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("geometry", &self.geometry)
            .field("head", &self.head.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn new(config: &PoolConfig) -> Result<Self, ConfigError> {
        let geometry = config.geometry()?;
        let mut inner = Self {
            head: OffChunkSet::new(AtomicU64::new(0)),
            slots: (0..geometry.slots)
                .map(|_| OffChunkSet::new(AtomicU64::new(EMPTY)))
                .collect(),
            next: (0..geometry.max_chunks)
                .map(|_| AtomicU32::new(0))
                .collect(),
            geometry,
            slabs: (0..geometry.slabs)
                .map(|_| StdAtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            total: StdAtomicU32::new(0),
            high_water: StdAtomicU32::new(0),
            waiting: AtomicUsize::new(0),
            handles: AtomicUsize::new(1),
            queue: Mutex::new(Queue::default()),
            single_base: std::ptr::null_mut(),
        };
        for _ in 0..geometry.initial_slabs {
            // Nobody else can see the pool yet: no need for the mutex.
            inner
                .grow()
                .map_err(|bytes| ConfigError::OutOfMemory { bytes })?;
        }
        if geometry.slabs == 1 && geometry.initial_slabs == 1 {
            inner.single_base = inner.slabs[0].load(StdOrdering::Relaxed);
        }
        Ok(inner)
    }

    /// Address of chunk `index`.
    #[inline]
    pub(crate) fn chunk_ptr(&self, index: u32) -> NonNull<u8> {
        self.locator().ptr(index)
    }

    /// What it takes to find chunks and follow runs, copied out once per iteration.
    #[inline]
    pub(crate) fn locator(&self) -> Locator<'_> {
        let g = &self.geometry;
        Locator {
            base: self.single_base,
            slabs: &self.slabs,
            next: &self.next,
            slab_shift: g.slab_shift,
            stride_shift: g.stride_shift,
        }
    }

    /// The chunk after `index` in a run (or below it on the free list).
    #[inline]
    pub(crate) fn next_of(&self, index: u32) -> u32 {
        self.next[index as usize].load(Ordering::Relaxed)
    }

    /// Walks `n` links down from the top of `h`: the run's first and last chunk and the new top.
    #[inline]
    fn walk(&self, h: u64, n: u32) -> (Run, u32) {
        let first = head::top(h);
        let mut last = first;
        let mut contiguous = true;
        for _ in 1..n {
            let next = self.next_of(last);
            contiguous &= next == last.wrapping_add(1);
            last = next;
        }
        let rest = if head::count(h) > n {
            self.next_of(last)
        } else {
            0
        };
        (Run::new(first, last, n).marked(contiguous), rest)
    }

    /// This thread's slot, if the pool has slots.
    #[inline]
    fn slot(&self) -> Option<&AtomicU64> {
        let mask = self.slots.len().wrapping_sub(1);
        self.slots
            .get(crate::sync::thread_slot() & mask)
            .map(|s| &**s)
    }

    /// Free chunks parked in slots (a racy sum, for `stats`).
    fn cached_chunks(&self) -> usize {
        self.slots
            .iter()
            .map(|s| slot::count(s.load(Ordering::Relaxed)) as usize)
            .sum()
    }

    /// The fast path: takes `n` chunks from this thread's slot or the stack, unless the free
    /// list is owned by the mutex holder or neither has `n` chunks at hand.
    ///
    /// The slot needs no look at the head's flags first: once a slow path has set `SLOW` and
    /// drained the slots, no run is parked in them again until it is cleared.
    #[inline]
    pub(crate) fn allocate_fast(&self, n: u32) -> Option<Run> {
        let Some(slot) = self.slot() else {
            return self.pop_fast(self.head.load(Ordering::Acquire), n);
        };
        let v = slot.load(Ordering::Relaxed);
        if v & PENDING == 0
            && slot::count(v) >= n
            && slot
                .compare_exchange(v, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            let run = slot::unpack(v);
            if run.count() == n {
                return Some(run);
            }
            // Keep `n`, give the rest back (we own the whole run, so its links are stable).
            let (mine, rest) = if run.is_contiguous() {
                (
                    Run::contiguous(run.first(), n),
                    Run::contiguous(run.first() + n, run.count() - n),
                )
            } else {
                let mut last = run.first();
                for _ in 1..n {
                    last = self.next_of(last);
                }
                (
                    Run::new(run.first(), last, n),
                    Run::new(self.next_of(last), run.last(), run.count() - n),
                )
            };
            // SAFETY: we own `rest`; the caller's pool handle keeps the state alive.
            unsafe { release(NonNull::from(self), rest) };
            return Some(mine);
        }
        self.pop_fast(self.head.load(Ordering::Acquire), n)
    }

    /// Pops `n` chunks off the stack, starting from the head value `h`.
    #[inline]
    fn pop_fast(&self, mut h: u64, n: u32) -> Option<Run> {
        loop {
            if h & (SLOW | CLOSED) != 0 || head::count(h) < n {
                return None;
            }
            let (run, rest) = self.walk(h, n);
            let new = head::with(h, rest, head::count(h) - n).wrapping_add(TAG_ONE);
            match self
                .head
                .compare_exchange_weak(h, new, Ordering::Acquire, Ordering::Acquire)
            {
                Ok(_) => {
                    self.note_in_use(head::count(new));
                    return Some(run);
                }
                Err(current) => h = current,
            }
        }
    }

    /// Raises the high-water mark if `free` free chunks is a new peak of use.
    #[inline]
    fn note_in_use(&self, free: u32) {
        let used = self.total.load(StdOrdering::Relaxed).saturating_sub(free);
        if used > self.high_water.load(StdOrdering::Relaxed) {
            self.high_water.fetch_max(used, StdOrdering::Relaxed);
        }
    }

    /// Pops `n` chunks while owning the free list (mutex held, `SLOW` set).
    fn pop_locked(&self, n: u32) -> Option<Run> {
        let mut h = self.head.load(Ordering::Acquire);
        loop {
            if head::count(h) < n {
                return None;
            }
            let (run, rest) = self.walk(h, n);
            let new = head::with(h, rest, head::count(h) - n).wrapping_add(TAG_ONE);
            match self
                .head
                .compare_exchange(h, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.note_in_use(head::count(new));
                    return Some(run);
                }
                Err(current) => h = current,
            }
        }
    }

    /// Pushes a run while owning the free list (mutex held, `SLOW` set); returns the new head.
    fn push_locked(&self, run: Run) -> u64 {
        let mut h = self.head.load(Ordering::Relaxed);
        loop {
            self.next[run.last() as usize].store(head::top(h), Ordering::Relaxed);
            let new = head::with(h, run.first(), head::count(h) + run.count());
            match self
                .head
                .compare_exchange(h, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return new,
                Err(current) => h = current,
            }
        }
    }

    /// Takes the free list for the mutex holder: sets `SLOW`, then moves every run parked in a
    /// slot onto the stack (waiting out slots whose releaser is still checking the flags).
    fn enter_slow(&self) {
        self.head.fetch_or(SLOW, Ordering::SeqCst);
        crate::sync::dekker_fence();
        for slot in self.slots.iter() {
            let mut spins = 0u32;
            loop {
                let v = slot.load(Ordering::SeqCst);
                if v == EMPTY {
                    break;
                }
                if v & PENDING != 0 {
                    // The releaser will either store its run or take it back in a moment.
                    crate::sync::backoff(&mut spins);
                    continue;
                }
                if slot
                    .compare_exchange(v, EMPTY, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.push_locked(slot::unpack(v));
                    break;
                }
            }
        }
    }

    /// Gives the free list back to the fast paths unless requests still wait; returns the head.
    fn leave_slow(&self, queue: &Queue) -> u64 {
        if queue.waiters.is_empty() {
            self.head.fetch_and(!SLOW, Ordering::AcqRel) & !SLOW
        } else {
            self.head.load(Ordering::Acquire)
        }
    }

    /// Adds the next slab (mutex held or pool not yet shared). `Err` carries the bytes the
    /// allocator refused.
    fn grow(&self) -> Result<(), usize> {
        let g = &self.geometry;
        let total = self.total.load(StdOrdering::Relaxed);
        let slab = (total >> g.slab_shift) as usize;
        let count = g.chunks_in_slab(slab);
        let bytes = (count as usize) << g.stride_shift;
        // `bytes` is a non-zero multiple of 4 KiB: count >= 1, stride >= 4096.
        let base = crate::slab::allocate_zeroed(bytes).ok_or(bytes)?;
        self.slabs[slab].store(base.as_ptr(), StdOrdering::Relaxed);
        let first = total;
        let last = total + count - 1;
        for index in first..last {
            self.next[index as usize].store(index + 1, Ordering::Relaxed);
        }
        self.total.store(total + count, StdOrdering::Relaxed);
        self.push_locked(Run::new(first, last, count));
        Ok(())
    }

    /// Takes `n` chunks while owning the free list, growing the pool if it must and may.
    fn take_locked(&self, n: u32) -> Take {
        loop {
            if let Some(run) = self.pop_locked(n) {
                return Take::Taken(run);
            }
            if self.total.load(StdOrdering::Relaxed) >= self.geometry.max_chunks {
                return Take::Short;
            }
            if let Err(bytes) = self.grow() {
                return Take::Failed(PoolError::OutOfMemory { bytes });
            }
        }
    }

    /// Hands runs to waiting requests, front first, while the front one can be served.
    fn serve(&self, queue: &mut Queue) {
        while let Some(front) = queue.waiters.front() {
            let grant = match self.take_locked(front.count) {
                Take::Short => break,
                Take::Taken(run) => GRANTED | run.0,
                Take::Failed(_) => FAILED,
            };
            if let Some(waiter) = queue.waiters.pop_front() {
                waiter.slot.grant.store(grant, Ordering::Release);
                waiter.slot.ready.notify_one();
            }
        }
        self.waiting.store(queue.waiters.len(), Ordering::Release);
    }

    /// The slow path of a request: `deadline` is `None` for `try_allocate`, `Some(None)` to
    /// wait without limit.
    #[cold]
    #[inline(never)]
    fn allocate_slow(&self, n: u32, deadline: Option<Option<Instant>>) -> Result<Run, PoolError> {
        let mut queue = self.queue.lock();
        self.enter_slow();
        if queue.waiters.is_empty() {
            match self.take_locked(n) {
                Take::Taken(run) => {
                    self.leave_slow(&queue);
                    return Ok(run);
                }
                Take::Failed(error) => {
                    self.leave_slow(&queue);
                    return Err(error);
                }
                Take::Short => {}
            }
        }
        let Some(deadline) = deadline else {
            let h = self.leave_slow(&queue);
            return Err(PoolError::WouldBlock {
                requested: n as usize,
                free: head::count(h) as usize,
            });
        };
        let slot = Arc::new(Slot {
            ready: Condvar::new(),
            grant: AtomicU64::new(0),
        });
        queue.waiters.push_back(Waiter {
            count: n,
            slot: Arc::clone(&slot),
        });
        self.waiting.store(queue.waiters.len(), Ordering::Release);
        // `SLOW` stays set while the queue is not empty: every release comes here and serves.
        loop {
            let timed_out = slot.ready.wait(&mut queue, deadline);
            let grant = slot.grant.load(Ordering::Acquire);
            if grant & GRANTED != 0 {
                let run = Run(grant & !GRANTED);
                debug_assert_eq!(run.count(), n);
                return Ok(run);
            }
            if grant & FAILED != 0 {
                let bytes = (self.geometry.slab_chunks() as usize) << self.geometry.stride_shift;
                return Err(PoolError::OutOfMemory { bytes });
            }
            if timed_out {
                queue.waiters.retain(|w| !Arc::ptr_eq(&w.slot, &slot));
                // The request may have blocked the ones behind it.
                self.serve(&mut queue);
                self.leave_slow(&queue);
                return Err(PoolError::TimedOut {
                    requested: n as usize,
                    timeout: Duration::ZERO,
                });
            }
        }
    }

    /// The slow path of a release (the head is flagged): pushes under the mutex and serves the
    /// queue. True when the caller must free the state (the pool is closed and this was the
    /// last chunk out).
    fn release_locked(&self, run: Run, queue: &mut Queue) -> bool {
        self.enter_slow();
        self.push_locked(run);
        self.serve(queue);
        let h = self.leave_slow(queue);
        h & CLOSED != 0 && head::count(h) == self.total.load(StdOrdering::Relaxed)
    }

    /// Marks the pool closed (last handle gone). True when every chunk is already back.
    fn close_locked(&self, queue: &Queue) -> bool {
        self.head.fetch_or(CLOSED, Ordering::SeqCst);
        self.enter_slow();
        let h = self.leave_slow(queue);
        head::count(h) == self.total.load(StdOrdering::Relaxed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let g = self.geometry;
        for (slab, base) in self.slabs.iter().enumerate() {
            let Some(base) = NonNull::new(base.load(StdOrdering::Relaxed)) else {
                continue;
            };
            let bytes = (g.chunks_in_slab(slab) as usize) << g.stride_shift;
            // SAFETY: `base` came from `slab::allocate_zeroed` with these very bytes in
            // `grow` (same slab, same geometry), and every chunk is back: nothing points into
            // it any more.
            unsafe { crate::slab::free(base, bytes) };
        }
    }
}

/// Returns a run to the pool behind `inner`, freeing the pool's state if this was the last
/// thing keeping it alive.
///
/// # Safety
/// The caller owns `run` (it came from this pool and is not used afterwards); that ownership
/// is what keeps `inner` alive until the run is pushed.
#[inline]
pub(crate) unsafe fn release(inner: NonNull<Inner>, run: Run) {
    // SAFETY: the caller holds `run`, and the state is only freed once every chunk is back.
    let state = unsafe { inner.as_ref() };
    if let Some(slot) = state.slot()
        && slot.load(Ordering::Relaxed) == EMPTY
        && slot
            .compare_exchange(
                EMPTY,
                slot::pack(run) | PENDING,
                Ordering::SeqCst,
                Ordering::Relaxed,
            )
            .is_ok()
    {
        crate::sync::dekker_fence();
        if state.head.load(Ordering::SeqCst) & (SLOW | CLOSED) == 0 {
            // Any slow path starting from here on drains the slot and finds the run.
            // From this store on the state may be freed by another thread: touch nothing.
            slot.store(slot::pack(run), Ordering::Release);
            return;
        }
        // A slow path started: it waits for this slot while it is pending, so take the run
        // back and hand it over under the mutex.
        slot.store(EMPTY, Ordering::Relaxed);
        // SAFETY: forwarded from our caller; we own `run` again.
        return unsafe { release_slow(inner, run) };
    }
    let mut h = state.head.load(Ordering::Relaxed);
    while h & (SLOW | CLOSED) == 0 {
        state.next[run.last() as usize].store(head::top(h), Ordering::Relaxed);
        let new = head::with(h, run.first(), head::count(h) + run.count());
        match state
            .head
            .compare_exchange_weak(h, new, Ordering::Release, Ordering::Relaxed)
        {
            // From here on the state may be freed by another thread: touch nothing.
            Ok(_) => return,
            Err(current) => h = current,
        }
    }
    // SAFETY: forwarded from our caller.
    unsafe { release_slow(inner, run) };
}

/// The slow path of [`release`]: the free list is flagged (requests wait, or the pool is
/// closed), so the run goes back under the mutex and the queue is served.
///
/// # Safety
/// As for [`release`].
#[cold]
#[inline(never)]
unsafe fn release_slow(inner: NonNull<Inner>, run: Run) {
    // SAFETY: the caller still holds `run`, which keeps the state alive.
    let state = unsafe { inner.as_ref() };
    let mut queue = state.queue.lock();
    let free_state = state.release_locked(run, &mut queue);
    drop(queue);
    if free_state {
        // SAFETY: the pool is closed and every chunk is back: no handle, allocation or waiter
        // can reach the state any more, and we were the only one to see the transition.
        unsafe { free(inner) };
    }
}

/// Frees the shared state.
///
/// # Safety
/// `inner` came from `Box::into_raw` in [`Pool::new`] and nothing will use it again.
unsafe fn free(inner: NonNull<Inner>) {
    // SAFETY: see the function's contract.
    drop(unsafe { Box::from_raw(inner.as_ptr()) });
}

/// A pool of fixed-size, 4 KiB-aligned chunks; a cheap handle (clone it to share the pool).
///
/// See the [crate documentation](crate) for the guarantees and an example.
pub struct Pool {
    inner: NonNull<Inner>,
}

// SAFETY: `Inner` is shared only through atomics and its mutex; the handle is a reference count.
unsafe impl Send for Pool {}
// SAFETY: as above: every method takes `&self` and synchronises through the shared state.
unsafe impl Sync for Pool {}

impl Pool {
    /// Builds a pool from `config`.
    pub fn new(config: &PoolConfig) -> Result<Self, ConfigError> {
        let inner = Box::new(Inner::new(config)?);
        Ok(Self {
            inner: NonNull::from(Box::leak(inner)),
        })
    }

    /// A fixed pool of `chunks` chunks of `chunk_size` bytes, all allocated now.
    pub fn fixed(chunk_size: usize, chunks: usize) -> Result<Self, ConfigError> {
        Self::new(&PoolConfig::fixed(chunks).with_chunk_size(chunk_size))
    }

    /// A growable pool of `chunk_size`-byte chunks: `initial` now, at most `max` ever.
    pub fn growable(chunk_size: usize, initial: usize, max: usize) -> Result<Self, ConfigError> {
        Self::new(&PoolConfig::growable(initial, max).with_chunk_size(chunk_size))
    }

    #[inline]
    fn inner(&self) -> &Inner {
        // SAFETY: a live handle keeps the state alive.
        unsafe { self.inner.as_ref() }
    }

    /// Bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.inner().geometry.chunk_size
    }

    /// The most chunks this pool ever holds.
    pub fn max_chunks(&self) -> usize {
        self.inner().geometry.max_chunks as usize
    }

    /// Checks a request's size.
    #[inline]
    fn check(&self, n: usize) -> Result<u32, PoolError> {
        let max = self.inner().geometry.max_chunks;
        match n {
            0 => Err(PoolError::ZeroChunks),
            n if n > max as usize => Err(PoolError::TooLarge {
                requested: n,
                max_chunks: max as usize,
            }),
            n => Ok(n as u32),
        }
    }

    #[inline]
    fn wrap(&self, run: Run) -> Allocation {
        // SAFETY: `run` was just taken from this pool.
        unsafe { Allocation::new(self.inner, run) }
    }

    /// Takes `n` chunks, waiting (behind earlier waiting requests) until all `n` are free.
    ///
    /// Fails at once, without waiting, for `n == 0` or `n` above [`Pool::max_chunks`]. Waiting
    /// for chunks while holding others of the same pool can wait forever if the pool is too
    /// small for both; use [`Pool::allocate_timeout`] where that can happen.
    #[inline]
    pub fn allocate(&self, n: usize) -> Result<Allocation, PoolError> {
        let n = self.check(n)?;
        if let Some(run) = self.inner().allocate_fast(n) {
            return Ok(self.wrap(run));
        }
        self.inner()
            .allocate_slow(n, Some(None))
            .map(|run| self.wrap(run))
    }

    /// Takes `n` chunks if they are free now and no earlier request is waiting; never waits
    /// for chunks to come back. Off the fast path it still takes the pool's lock (held only
    /// for bookkeeping, never across a wait), waits out a release already in progress (a few
    /// instructions of another thread) and may allocate a slab of a growable pool.
    #[inline]
    pub fn try_allocate(&self, n: usize) -> Result<Allocation, PoolError> {
        let n = self.check(n)?;
        if let Some(run) = self.inner().allocate_fast(n) {
            return Ok(self.wrap(run));
        }
        self.inner()
            .allocate_slow(n, None)
            .map(|run| self.wrap(run))
    }

    /// Like [`Pool::allocate`], giving up after `timeout` with [`PoolError::TimedOut`].
    #[inline]
    pub fn allocate_timeout(&self, n: usize, timeout: Duration) -> Result<Allocation, PoolError> {
        let n = self.check(n)?;
        if let Some(run) = self.inner().allocate_fast(n) {
            return Ok(self.wrap(run));
        }
        let deadline = Instant::now().checked_add(timeout);
        self.inner()
            .allocate_slow(n, Some(deadline))
            .map(|run| self.wrap(run))
            .map_err(|error| match error {
                PoolError::TimedOut { requested, .. } => PoolError::TimedOut { requested, timeout },
                other => other,
            })
    }

    /// A snapshot of the pool's use. Fields are read one by one, so under concurrent use they
    /// need not add up exactly.
    pub fn stats(&self) -> PoolStats {
        let inner = self.inner();
        let g = inner.geometry;
        let h = inner.head.load(Ordering::Acquire);
        PoolStats {
            chunk_size: g.chunk_size,
            chunk_stride: g.stride(),
            total_chunks: inner.total.load(StdOrdering::Relaxed) as usize,
            free_chunks: head::count(h) as usize + inner.cached_chunks(),
            max_chunks: g.max_chunks as usize,
            waiters: inner.waiting.load(Ordering::Acquire),
            high_water_chunks: inner.high_water.load(StdOrdering::Relaxed) as usize,
        }
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        self.inner().handles.fetch_add(1, Ordering::Relaxed);
        Self { inner: self.inner }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // SAFETY: this handle keeps the state alive until the decrement below.
        let state = unsafe { self.inner.as_ref() };
        if state.handles.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let queue = state.queue.lock();
        let free_state = state.close_locked(&queue);
        drop(queue);
        if free_state {
            // SAFETY: no handle is left and every chunk is back: nothing can reach the state.
            unsafe { free(self.inner) };
        }
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}
