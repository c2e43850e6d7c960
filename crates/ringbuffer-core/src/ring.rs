//! The shared heart of every ring: slots, the producer cursor, publication marks, close
//! state, gating structures and the two notifiers.
//!
//! # Sequences
//!
//! Every entry ever written gets a `u64` sequence number, starting at 0; entry `s` lives in
//! slot `s & mask`. Sequences never wrap in practice: positions are kept below 2^62 (the top
//! bits of some words carry flags), and at a billion entries per second 2^62 entries take
//! about 146 years. Comparisons are therefore plain `<` / `>=`, never modular.
//!
//! # Who may touch a slot
//!
//! A producer writes slot `s & mask` only while it holds a claim covering `s`, and it only
//! obtains that claim once every consumer that gates it has released `s - capacity` (the
//! slot's previous occupant). A consumer reads slot `s & mask` only after observing `s` as
//! published (an acquire load of the cursor or of the mark of the claim that covers it, kept at
//! the claim's first slot) and before it releases
//! `s` (a release store). Those two happens-before edges are the whole memory-safety
//! argument for the `unsafe` blocks in [`crate::claim`] and [`crate::batch`].

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::error::Error;
use crate::sync::{Arc, AtomicBool, AtomicU64, AtomicUsize, Mutex, Ordering, UnsafeCell, fence};
use crate::wait::{Notifier, WaitStrategy};

/// Multi-producer cursor flag: set by close; a claim that sees it is refused.
pub(crate) const CLOSED_BIT: u64 = 1 << 63;
/// Highest usable position (positions stay below 2^62).
pub(crate) const POS_MASK: u64 = (1 << 62) - 1;
/// `close_seq` value while the ring is open.
pub(crate) const OPEN: u64 = u64::MAX;

/// Broadcast subscriber word flag: the subscriber is reading a batch; it must not be evicted.
pub(crate) const ACTIVE: u64 = 1 << 62;
/// Broadcast subscriber word flag: evicted (or gone); the producer ignores it.
pub(crate) const LAGGED: u64 = 1 << 63;
/// Broadcast subscriber word of a subscriber that left (has [`LAGGED`] set, so it is ignored).
pub(crate) const LEFT: u64 = u64::MAX;

/// What a broadcast producer does when a subscriber is a whole ring behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum LagPolicy {
    /// Wait for it (the default): the slowest subscriber gates the producer. The owner can
    /// spot it with `BroadcastProducer::laggards` (e.g. after `try_claim` returned `Full` or
    /// `claim_timeout` timed out) and drop it with `BroadcastProducer::evict_laggards`.
    #[default]
    Block,
    /// Evict it: when a claim would have to wait for a subscriber that is between batches,
    /// the producer marks it lagged and stops waiting for it; its next read returns
    /// [`Error::Lagged`]. For a claim of `n` slots that is any subscriber more than
    /// `capacity - n` entries behind (a whole ring behind for one slot), so large claims
    /// evict sooner. (`laggards` / `evict_laggards` look for subscribers a whole ring behind:
    /// those that block even a one-slot claim.)
    Evict,
}

/// One broadcast subscriber's shared state.
pub(crate) struct Sub {
    pub(crate) id: u64,
    /// Position (next sequence to read) plus the [`ACTIVE`] / [`LAGGED`] flags.
    pub(crate) word: CachePadded<AtomicU64>,
}

/// The set of broadcast subscribers.
pub(crate) struct Registry {
    pub(crate) subs: Mutex<Vec<Arc<Sub>>>,
    /// Bumped (SeqCst) on every join and leave, so a producer knows its snapshot is stale.
    pub(crate) version: CachePadded<AtomicU64>,
    pub(crate) next_id: AtomicU64,
    pub(crate) policy: LagPolicy,
}

/// Work-sharing consumers' shared state.
pub(crate) struct Workers {
    /// Per worker: every sequence below this one that the worker took is done. `u64::MAX`
    /// once the worker is gone.
    pub(crate) done: Box<[CachePadded<AtomicU64>]>,
    /// Next sequence nobody has taken yet.
    pub(crate) next: CachePadded<AtomicU64>,
    pub(crate) alive: AtomicUsize,
    pub(crate) max_batch: usize,
}

/// Who gates the producers.
pub(crate) enum Gating {
    /// One consumer; its released position.
    Single(CachePadded<AtomicU64>),
    /// Broadcast subscribers.
    Broadcast(Registry),
    /// Work-sharing consumers.
    Work(Workers),
}

/// A producer's private view of the gating consumers.
pub(crate) struct GateCache {
    version: u64,
    subs: Vec<Arc<Sub>>,
}

impl GateCache {
    pub(crate) fn new() -> Self {
        Self {
            version: u64::MAX,
            subs: Vec::new(),
        }
    }
}

impl fmt::Debug for GateCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateCache")
            .field("subscribers", &self.subs.len())
            .finish()
    }
}

/// Publication of one multi-producer claim, kept at the slot of its first sequence: once
/// `start` is published, `seq == start + 1` and `len` is the claim's length. The consumer
/// walks from claim to claim (its position is always the start of one), so a batch of `n`
/// costs one mark store and one mark load instead of `n` of each. Marks of other slots keep
/// whatever an older lap left; the consumer never looks at them, and an older lap's value
/// cannot match the current sequence.
#[derive(Default)]
struct ClaimMark {
    seq: AtomicU64,
    len: AtomicU64,
}

/// The shared ring.
pub(crate) struct Core<T> {
    /// Single producer: end of the published prefix. Multi producer: next unclaimed
    /// sequence, with [`CLOSED_BIT`] once closed.
    pub(crate) cursor: CachePadded<AtomicU64>,
    /// Set by consumers when the last of them is gone: producers get [`Error::Closed`].
    pub(crate) consumers_gone: CachePadded<AtomicBool>,
    /// [`OPEN`], or the end of everything that was or will be published.
    pub(crate) close_seq: CachePadded<AtomicU64>,
    /// Live multi-producer handles (unused for single-producer rings).
    pub(crate) producers: AtomicUsize,
    /// Multi producer only: the publication mark of the claim that starts at each slot.
    marks: Box<[ClaimMark]>,
    slots: Box<[UnsafeCell<T>]>,
    mask: u64,
    pub(crate) gating: Gating,
    /// Consumers waiting for data.
    pub(crate) data: Notifier,
    /// Producers waiting for space.
    pub(crate) space: Notifier,
    pub(crate) strategy: WaitStrategy,
    factory: Box<dyn Fn() -> T + Send + Sync>,
}

// SAFETY: the slots are only reached through the claim/publish/release protocol described
// in the module docs, which gives each slot either one writer or any number of readers at a
// time, with happens-before between them. Values move between threads (T: Send) and
// broadcast subscribers read the same value from several threads (T: Sync).
unsafe impl<T: Send + Sync> Sync for Core<T> {}
// SAFETY: as above; owning the ring owns its values.
unsafe impl<T: Send + Sync> Send for Core<T> {}

impl<T> fmt::Debug for Core<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.capacity())
            .field("cursor", &self.cursor.load(Ordering::Relaxed))
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

/// Asks the CPU to fetch the cache line holding `address` for writing: PREFETCHW on x86-64,
/// nothing elsewhere. A hint, never an access: any address will do.
#[cfg(not(ringbuffer_loom))]
#[inline(always)]
pub(crate) fn prefetch_line_for_write(address: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW is a hint: it never faults, writes no memory and changes no register
    // or flag, whatever the address (the asm options say so to the compiler).
    unsafe {
        std::arch::asm!(
            "prefetchw [{line}]",
            line = in(reg) address,
            options(nostack, preserves_flags, readonly)
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

/// Checks a requested capacity.
pub(crate) fn check_capacity(capacity: usize) -> Result<(), Error> {
    if capacity == 0 {
        return Err(Error::ZeroCapacity);
    }
    if !capacity.is_power_of_two() {
        return Err(Error::CapacityNotPowerOfTwo { capacity });
    }
    if capacity as u64 > POS_MASK / 2 {
        return Err(Error::CapacityTooLarge { capacity });
    }
    Ok(())
}

/// `capacity` values from `make`, or [`Error::CapacityTooLarge`] if the allocator cannot hold
/// them (a capacity within the sequence space can still need more bytes than exist).
fn allocate<V>(capacity: usize, make: impl FnMut() -> V) -> Result<Box<[V]>, Error> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(capacity)
        .map_err(|_| Error::CapacityTooLarge { capacity })?;
    values.extend(std::iter::repeat_with(make).take(capacity));
    Ok(values.into_boxed_slice())
}

impl<T> Core<T> {
    pub(crate) fn new(
        capacity: usize,
        multi: bool,
        gating: Gating,
        strategy: WaitStrategy,
        factory: Box<dyn Fn() -> T + Send + Sync>,
    ) -> Result<Self, Error> {
        check_capacity(capacity)?;
        crate::sync::init_barriers();
        let slots = allocate(capacity, || UnsafeCell::new(factory()))?;
        let marks = if multi {
            allocate(capacity, ClaimMark::default)?
        } else {
            Box::default()
        };
        Ok(Self {
            cursor: CachePadded::new(AtomicU64::new(0)),
            consumers_gone: CachePadded::new(AtomicBool::new(false)),
            close_seq: CachePadded::new(AtomicU64::new(OPEN)),
            producers: AtomicUsize::new(1),
            marks,
            slots,
            mask: capacity as u64 - 1,
            data: Notifier::new(matches!(gating, Gating::Single(_))),
            space: Notifier::new(!multi),
            gating,
            strategy,
            factory,
        })
    }

    /// Number of slots.
    #[inline]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    fn is_multi(&self) -> bool {
        !self.marks.is_empty()
    }

    #[inline]
    fn cell(&self, seq: u64) -> &UnsafeCell<T> {
        let index = (seq & self.mask) as usize;
        debug_assert!(index < self.slots.len());
        // SAFETY: `index` is masked by `capacity - 1` and `slots.len() == capacity`.
        unsafe { self.slots.get_unchecked(index) }
    }

    /// Pointer for reading the slot of `seq` (dereference only under the protocol).
    #[inline]
    pub(crate) fn slot_ptr(&self, seq: u64) -> *const T {
        self.cell(seq).with(|p| p)
    }

    /// Pointer for writing the slot of `seq` (dereference only under a claim).
    #[inline]
    pub(crate) fn slot_mut_ptr(&self, seq: u64) -> *mut T {
        self.cell(seq).with_mut(|p| p)
    }

    /// Asks the CPU to fetch the cache line holding the slot of `seq` for writing.
    #[inline(always)]
    pub(crate) fn prefetch_for_write(&self, seq: u64) {
        #[cfg(not(ringbuffer_loom))]
        prefetch_line_for_write(self.slot_ptr(seq).cast());
        #[cfg(ringbuffer_loom)]
        let _ = seq;
    }

    /// `[start, end)` as at most two contiguous runs of slots (`end - start <= capacity`).
    #[cfg(not(ringbuffer_loom))]
    #[inline]
    pub(crate) fn runs(&self, start: u64, end: u64) -> ((*mut T, usize), (*mut T, usize)) {
        let len = (end - start) as usize;
        let first = (start & self.mask) as usize;
        let head = len.min(self.capacity() - first);
        // `UnsafeCell` is `repr(transparent)` in normal builds, so the slot array is an array
        // of `T`.
        let base = self.slots.as_ptr() as *mut T;
        // SAFETY: `first < capacity`, so the offset stays inside the slot array.
        let first_ptr = unsafe { base.add(first) };
        ((first_ptr, head), (base, len - head))
    }

    /// Replaces the value in the slot of `seq` with a fresh one from the factory.
    ///
    /// # Safety
    /// The caller holds an unpublished claim covering `seq`.
    pub(crate) unsafe fn reset_slot(&self, seq: u64) {
        let fresh = (self.factory)();
        // SAFETY: the caller's claim gives exclusive access to this slot.
        unsafe { *self.slot_mut_ptr(seq) = fresh };
    }

    /// Marks the claim `[start, end)` published (multi-producer rings).
    #[inline]
    pub(crate) fn mark_published(&self, start: u64, end: u64) {
        debug_assert!(start < end && end - start <= self.capacity() as u64);
        let mark = &self.marks[(start & self.mask) as usize];
        // The length first: the release store of `seq` publishes it with the slots.
        mark.len.store(end - start, Ordering::Relaxed);
        mark.seq.store(start + 1, Ordering::Release);
    }

    /// End of the contiguous published prefix, looking from `from` (a position the caller
    /// has not read yet, always the start of a claim). `scanned` is the caller's memo of how
    /// far it already verified (also the start of a claim).
    #[inline]
    pub(crate) fn published_end(&self, from: u64, scanned: &mut u64) -> u64 {
        if !self.is_multi() {
            return self.cursor.load(Ordering::Acquire);
        }
        // The marks alone tell what is published (a claim's mark holds `start + 1` only once
        // it was published), so the scan never reads the claim cursor: every producer's claim
        // is a read-modify-write of that line, and a consumer polling it while it waits would
        // pull the line away from them once per poll.
        let mut seq = from.max(*scanned);
        let limit = from + self.capacity() as u64;
        while seq < limit {
            let mark = &self.marks[(seq & self.mask) as usize];
            if mark.seq.load(Ordering::Acquire) != seq + 1 {
                break;
            }
            let len = mark.len.load(Ordering::Relaxed);
            // A claim ends at most a ring past the consumer's position (producers are gated).
            debug_assert!(len >= 1 && seq + len <= limit, "claim of {len} at {seq}");
            seq += len;
        }
        *scanned = seq;
        seq
    }

    /// Lowest position any gating consumer still needs (producers may write up to
    /// `gate + capacity`). `published` is the producer's cursor (single producer only; the
    /// answer when nobody gates), `needed` the gate the caller wants (for eviction).
    pub(crate) fn gate(
        &self,
        cache: &mut GateCache,
        published: u64,
        needed: u64,
    ) -> Result<u64, Error> {
        match &self.gating {
            Gating::Single(released) => {
                if self.consumers_gone.load(Ordering::Acquire) {
                    return Err(Error::Closed);
                }
                Ok(released.load(Ordering::Acquire))
            }
            Gating::Work(workers) => {
                let mut min = u64::MAX;
                for done in workers.done.iter() {
                    min = min.min(done.load(Ordering::Acquire));
                }
                if min == u64::MAX {
                    return Err(Error::Closed);
                }
                Ok(min)
            }
            Gating::Broadcast(registry) => {
                // Orders this producer's earlier cursor stores before the version load, so a
                // subscriber that joins after this load reads a cursor at least as new (see
                // `broadcast::join`).
                fence(Ordering::SeqCst);
                let version = registry.version.load(Ordering::SeqCst);
                if version != cache.version {
                    let subs = registry
                        .subs
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    cache.subs.clone_from(&subs);
                    cache.version = version;
                }
                let mut min = published;
                for sub in &cache.subs {
                    let word = sub.word.load(Ordering::Acquire);
                    if word & LAGGED != 0 {
                        continue;
                    }
                    let pos = word & POS_MASK;
                    if registry.policy == LagPolicy::Evict
                        && pos < needed
                        && word & ACTIVE == 0
                        && sub
                            .word
                            .compare_exchange(
                                word,
                                word | LAGGED,
                                Ordering::AcqRel,
                                Ordering::Acquire,
                            )
                            .is_ok()
                    {
                        continue;
                    }
                    min = min.min(pos);
                }
                Ok(min)
            }
        }
    }

    /// Closes a single-producer ring at `end` (the producer's published cursor).
    pub(crate) fn close_single(&self, end: u64) {
        if self.close_seq.load(Ordering::Acquire) == OPEN {
            self.close_seq.store(end, Ordering::Release);
        }
        self.data.wake_all();
    }

    /// Closes a multi-producer ring: claims already granted still get published and read;
    /// later claims are refused. Idempotent.
    pub(crate) fn close_multi(&self) {
        let before = self.cursor.fetch_or(CLOSED_BIT, Ordering::AcqRel);
        if before & CLOSED_BIT == 0 {
            self.close_seq.store(before, Ordering::Release);
        }
        self.data.wake_all();
        self.space.wake_all();
    }

    /// True once the ring was closed and `pos` has reached its end.
    #[inline]
    pub(crate) fn drained(&self, pos: u64) -> bool {
        let end = self.close_seq.load(Ordering::Acquire);
        end != OPEN && pos >= end
    }
}
