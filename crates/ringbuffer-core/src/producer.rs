//! Producer handles: [`SingleProducer`] (no atomic read-modify-write on the claim path) and
//! the cloneable multi-producer [`Producer`].

use std::fmt;
use std::time::{Duration, Instant};

use crate::claim::{Claim, Publisher};
use crate::error::Error;
use crate::ring::{CLOSED_BIT, Core, GateCache};
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::wait::{CPU_NOTE_EVERY, Waited, current_cpu, wait_for};

/// How long a claim may wait.
#[derive(Clone, Copy)]
pub(crate) enum Wait {
    /// Never: fail with [`Error::Full`].
    No,
    /// Until this instant: fail with [`Error::Timeout`].
    Until(Instant),
    /// Forever.
    Forever,
}

impl Wait {
    pub(crate) fn timeout(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Forever, Self::Until)
    }
}

pub(crate) fn check_claim(n: usize, capacity: usize) -> Result<(), Error> {
    if n == 0 {
        return Err(Error::ZeroClaim);
    }
    if n > capacity {
        return Err(Error::ClaimTooLarge {
            requested: n,
            capacity,
        });
    }
    Ok(())
}

/// The single-producer claim logic shared by [`SingleProducer`] and
/// [`crate::BroadcastProducer`].
pub(crate) struct SpInner<T> {
    pub(crate) core: Arc<Core<T>>,
    /// Next sequence to claim (== the published cursor: one claim at a time).
    pub(crate) next: u64,
    /// Claims may end at or below this without looking at the consumers again.
    space_limit: u64,
    /// The single-event path publishes up to here without any check: at most
    /// `space_limit`, at most [`CHECK_EVERY`] events past the last check of `closed` and
    /// `consumers_gone`, and 0 once closed (so the next event takes the checked path).
    fast_limit: u64,
    pub(crate) cache: GateCache,
    closed: bool,
    /// The next claim ending past this notes where this producer runs (see `note_cpu`).
    cpu_note_due: u64,
}

/// Events the single-event path publishes between two looks at whether the ring was closed
/// or its consumers are gone. Those two checks on every event (a flag of the handle and a
/// load of a shared flag, with their branches) cost 1P1C batch 1 about 12%: measured in one
/// process, alternating builds, 4 x 5 runs of 4M events on the Xeon of session 6: 272-324
/// -> 332-376 M/s with the checks folded into the limit. A consumer that goes away is
/// noticed within this many events (claims still check every time); a close is seen by the
/// next event, since `close` zeroes the limit.
#[cfg(not(ringbuffer_loom))]
const CHECK_EVERY: u64 = 64;

/// Under loom the rings have 2-4 slots, so a window of 64 would always be cut by the space
/// limit: a window of 2, so the models go through the check that does not wait and publish
/// events on the strength of an earlier check (a 4-slot model, `tests/loom.rs`).
#[cfg(ringbuffer_loom)]
const CHECK_EVERY: u64 = 2;

/// How many cache lines ahead of itself the single-event path fetches slots for writing.
///
/// Why: each new line of slots was read by the consumer on the previous lap, so the
/// producer's first store to it waits for the consumer's copy to be invalidated; with three
/// stores per event (slot, cursor, own sequence) the store buffer likely covers only two or
/// three lines of such waits. Fetching the line four lines ahead (once per line's worth of
/// events, and only if the consumers have released it) starts those waits early. 1P1C
/// batch 1 in the `ring` suite, 4 alternating runs of each build: ours 230-408 M/s
/// without, 420-431 with 4 lines ahead, 411-429 with 8. Claims do not fetch past themselves:
/// fetching the next claim's lines made 1P1C batch 64 slower (504-767 against 443-1128 M/s),
/// since the stores of a batch already stream (`Claim::for_each_mut` fetches within the
/// claim for slots of a line or more, `claim::FETCH_AHEAD_FROM_SIZE`).
const PREFETCH_LINES: u64 = 4;

/// Slots of `T` per 64-byte cache line (at least 1): the single-event path fetches one
/// line per this many events. The slot array is aligned for `T` only, so lines and slots
/// need not line up; this only spaces the fetches.
#[inline(always)]
const fn slots_per_line<T>() -> u64 {
    let size = std::mem::size_of::<T>();
    if size == 0 || size >= 64 {
        1
    } else {
        (64 / size) as u64
    }
}

/// How many slots, starting with the one at its address, a 64-byte line can hold parts of.
#[inline(always)]
const fn slots_touched_by_line<T>() -> u64 {
    let size = std::mem::size_of::<T>();
    if size == 0 {
        1
    } else {
        64u64.div_ceil(size as u64)
    }
}

impl<T> SpInner<T> {
    pub(crate) fn new(core: Arc<Core<T>>) -> Self {
        let space_limit = core.capacity() as u64;
        Self {
            core,
            next: 0,
            space_limit,
            // The first event takes the checked path.
            fast_limit: 0,
            cache: GateCache::new(),
            closed: false,
            cpu_note_due: 0,
        }
    }

    pub(crate) fn claim(&mut self, n: usize, wait: Wait) -> Result<Claim<'_, T>, Error> {
        check_claim(n, self.core.capacity())?;
        if self.closed || self.core.consumers_gone.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let end = self.next + n as u64;
        if end > self.space_limit {
            self.wait_for_space(end, wait)?;
        }
        self.note_cpu_if_due(end);
        let start = self.next;
        Ok(Claim::new(
            &self.core,
            start,
            end,
            Publisher::Single(&mut self.next),
        ))
    }

    #[cold]
    fn wait_for_space(&mut self, end: u64, wait: Wait) -> Result<(), Error> {
        let core = &*self.core;
        let cap = core.capacity() as u64;
        let needed = end - cap;
        let (next, cache) = (self.next, &mut self.cache);
        let mut ready = || match core.gate(cache, next, needed) {
            Ok(gate) if gate >= needed => Some(Ok(gate)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        let outcome = match wait {
            Wait::No => ready().ok_or(Error::Full)?,
            Wait::Until(deadline) => {
                match wait_for(
                    core.strategy,
                    &core.space,
                    &core.data,
                    Some(deadline),
                    ready,
                ) {
                    Waited::Ready(r) => r,
                    Waited::TimedOut => Err(Error::Timeout),
                }
            }
            Wait::Forever => match wait_for(core.strategy, &core.space, &core.data, None, ready) {
                Waited::Ready(r) => r,
                Waited::TimedOut => Err(Error::Timeout),
            },
        };
        self.space_limit = outcome? + cap;
        // A wait often moves the thread: say where it runs at the next claim or check.
        self.cpu_note_due = 0;
        debug_assert!(self.space_limit >= end);
        Ok(())
    }

    /// Claims, fills and publishes one slot without building a [`Claim`]: the single-event
    /// path, which a batch-1 producer runs per event. A panicking `fill` publishes nothing
    /// (the cursor has not moved) and the next claim reuses the slot.
    #[inline]
    pub(crate) fn publish_one(&mut self, fill: impl FnOnce(&mut T)) -> Result<u64, Error> {
        let seq = self.next;
        let end = seq + 1;
        if end > self.fast_limit {
            self.check_and_wait(end)?;
        }
        debug_assert!(end <= self.space_limit && !self.closed);
        // Everything the publication needs is looked up before `fill` writes through a raw
        // pointer the compiler cannot tell apart from `self`.
        let core = &*self.core;
        let ptr = core.slot_mut_ptr(seq);
        // A zero-sized `T` has no line to fetch.
        if std::mem::size_of::<T>() != 0 {
            let per_line = slots_per_line::<T>();
            if seq.is_multiple_of(per_line) {
                let ahead = seq + PREFETCH_LINES * per_line;
                // Only lines the consumers are done with (the line holding slot `ahead` may
                // hold parts of the slots after it too, see `slots_touched_by_line`):
                // fetching one they still read would take it from under them.
                if ahead + slots_touched_by_line::<T>() <= self.space_limit {
                    core.prefetch_for_write(ahead);
                }
            }
        }
        // SAFETY: `seq` is below the limit the consumers allow and not yet published, so the
        // slot belongs to this (single) producer alone until the cursor store below.
        fill(unsafe { &mut *ptr });
        core.cursor.store(end, Ordering::Release);
        self.next = end;
        core.data.notify();
        Ok(seq)
    }

    /// The single-event path's checks, every [`CHECK_EVERY`] events or when the ring is
    /// full: refuses after close or once the consumers are gone, waits for space, and sets
    /// how far the next events may go unchecked.
    #[cold]
    fn check_and_wait(&mut self, end: u64) -> Result<(), Error> {
        if self.closed || self.core.consumers_gone.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        if end > self.space_limit {
            self.wait_for_space(end, Wait::Forever)?;
        }
        self.note_cpu_if_due(end);
        self.fast_limit = self.space_limit.min(self.next + CHECK_EVERY);
        debug_assert!(self.fast_limit >= end);
        Ok(())
    }

    /// Keeps the consumers' idea of where this producer runs fresh (see `Whereabouts`), every
    /// [`CPU_NOTE_EVERY`] events: when a claim or check ending at `end` passes the last note's
    /// window.
    #[inline]
    fn note_cpu_if_due(&mut self, end: u64) {
        if end > self.cpu_note_due {
            self.note_cpu();
        }
    }

    #[cold]
    fn note_cpu(&mut self) {
        self.core.space.note_cpu(current_cpu());
        self.cpu_note_due = self.next + CPU_NOTE_EVERY;
    }

    pub(crate) fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.fast_limit = 0;
            self.core.close_single(self.next);
        }
    }
}

impl<T> Drop for SpInner<T> {
    fn drop(&mut self) {
        self.close();
    }
}

/// Fills the one slot of `claim` and publishes it; returns its sequence.
#[inline]
pub(crate) fn publish_claimed<T>(
    mut claim: Claim<'_, T>,
    fill: impl FnOnce(&mut T),
) -> Result<u64, Error> {
    let seq = claim.first_sequence();
    if let Some(slot) = claim.get_mut(0) {
        fill(slot);
    }
    claim.publish();
    Ok(seq)
}

/// Shared doc of the claim methods.
macro_rules! sp_claim_methods {
    () => {
        /// Claims `n` consecutive slots, waiting for space per the ring's
        /// [`WaitStrategy`](crate::WaitStrategy). Fill them, then [`Claim::publish`].
        ///
        /// Errors: [`Error::ZeroClaim`], [`Error::ClaimTooLarge`], [`Error::Closed`] (closed, or,
        /// on a single-consumer or work-sharing ring, every consumer is gone; a broadcast ring
        /// without subscribers just publishes).
        #[inline]
        pub fn claim(&mut self, n: usize) -> Result<Claim<'_, T>, Error> {
            self.inner.claim(n, crate::producer::Wait::Forever)
        }

        /// Like [`claim`](Self::claim) but never waits: [`Error::Full`] if the slots are not free.
        #[inline]
        pub fn try_claim(&mut self, n: usize) -> Result<Claim<'_, T>, Error> {
            self.inner.claim(n, crate::producer::Wait::No)
        }

        /// Like [`claim`](Self::claim) but gives up with [`Error::Timeout`] after `timeout`.
        #[inline]
        pub fn claim_timeout(
            &mut self,
            n: usize,
            timeout: std::time::Duration,
        ) -> Result<Claim<'_, T>, Error> {
            self.inner.claim(n, crate::producer::Wait::timeout(timeout))
        }

        /// Claims one slot, lets `fill` write it, publishes it; returns its sequence.
        ///
        /// Errors: [`Error::Closed`] for every event after [`close`](Self::close), or, on a
        /// single-consumer or work-sharing ring, once every consumer is gone. This path looks
        /// at the consumers every 64 events rather than on each (the close flag and a shared
        /// load, with their branches, on every event cost batch-1 streams ~12%), so up to 64
        /// events published just after the last consumer went away are accepted and dropped
        /// with the ring; claims look every time.
        #[inline]
        pub fn publish_with(&mut self, fill: impl FnOnce(&mut T)) -> Result<u64, Error> {
            self.inner.publish_one(fill)
        }

        /// Publishes one value (moved into its slot); returns its sequence.
        #[inline]
        pub fn push(&mut self, value: T) -> Result<u64, Error> {
            self.publish_with(|slot| *slot = value)
        }

        /// Like [`publish_with`](Self::publish_with) but never waits: [`Error::Full`] if no
        /// slot is free now, and then `fill` is not called (what it would write stays with
        /// the caller).
        #[inline]
        pub fn try_publish_with(&mut self, fill: impl FnOnce(&mut T)) -> Result<u64, Error> {
            crate::producer::publish_claimed(self.try_claim(1)?, fill)
        }

        /// Like [`publish_with`](Self::publish_with), giving up with [`Error::Timeout`] (and
        /// not calling `fill`) after `timeout`.
        #[inline]
        pub fn publish_with_timeout(
            &mut self,
            fill: impl FnOnce(&mut T),
            timeout: std::time::Duration,
        ) -> Result<u64, Error> {
            crate::producer::publish_claimed(self.claim_timeout(1, timeout)?, fill)
        }

        /// Closes the ring: consumers read everything published so far, then get
        /// [`Error::Closed`]; later claims get [`Error::Closed`]. Dropping the producer does
        /// the same.
        pub fn close(&mut self) {
            self.inner.close();
        }

        /// Sequence the next claim will start at (= entries published so far).
        #[inline]
        pub fn next_sequence(&self) -> u64 {
            self.inner.next
        }

        /// Number of slots in the ring.
        #[inline]
        pub fn capacity(&self) -> usize {
            self.inner.core.capacity()
        }
    };
}
pub(crate) use sp_claim_methods;

/// The only producer of an SPSC or work-sharing ring. Claims need no atomic
/// read-modify-write: the producer keeps its cursor privately and publishes with one
/// release store per claim.
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct SingleProducer<T> {
    pub(crate) inner: SpInner<T>,
}

impl<T> SingleProducer<T> {
    sp_claim_methods!();
}

impl<T> fmt::Debug for SingleProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleProducer")
            .field("next", &self.inner.next)
            .finish_non_exhaustive()
    }
}

/// How long a blocking MPSC claim may be refused before it reserves its sequences (see
/// `Producer::take_waiting`): far past the spin and yield phases, so a claim that waits the
/// usual few microseconds never holds a hole. (Counting refusals instead reserved too soon:
/// a producer spinning while the consumer holds a batch retries every few nanoseconds, and
/// 2P1C batch 64 fell from ~365 to ~245 M/s in a third of the runs.)
#[cfg(not(ringbuffer_loom))]
const RESERVE_AFTER: Duration = Duration::from_millis(1);
/// Under loom (no clocks): refused attempts before reserving, few so the models reach it.
#[cfg(ringbuffer_loom)]
const RESERVE_AFTER_REFUSALS: u32 = 2;

/// One of the producers of an MPSC ring; clone it for each producing thread.
///
/// A claim checks for space, then takes its sequences with a compare-and-swap of the shared
/// cursor (lock-free; a producer waiting for space holds no sequences, unless it was refused
/// for a whole millisecond and reserved them to wait in line), and publishes by setting the
/// claim's publication mark, so the consumer sees the contiguous published prefix even when
/// producers finish out of order. The ring closes when [`Producer::close`] is called or the
/// last producer is dropped.
///
/// Every method takes `&self`: a `Producer` is `Sync`, so one handle can be shared by many
/// threads (behind an `Arc` or inside a shared struct) as well as cloned per thread. Each
/// claim is independent; one thread may even hold several at once, as long as together they
/// fit in the ring: a thread that holds unpublished claims and asks for more slots than the
/// ring has left beyond them waits for itself, for good.
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct Producer<T> {
    core: Arc<Core<T>>,
    /// Claims may end at or below this without reloading the consumer's position. A cache
    /// shared by every thread using this handle: it only grows, and any value it held was a
    /// true bound when stored, so a stale read is merely conservative. It is raised with
    /// release and read with acquire: a thread that trusts a limit another thread computed
    /// must also see the consumer's release of those slots (and its last accesses to them),
    /// which that thread acquired. (loom found the race with relaxed ordering here.)
    limit: AtomicU64,
}

impl<T> Producer<T> {
    pub(crate) fn new(core: Arc<Core<T>>) -> Self {
        let limit = AtomicU64::new(core.capacity() as u64);
        Self { core, limit }
    }

    #[inline]
    fn raise_limit(&self, limit: u64) {
        self.limit.fetch_max(limit, Ordering::AcqRel);
    }

    /// Claims `n` slots, waiting for space if needed. Ends with [`Error::Closed`] if the ring
    /// is closed or the consumer is gone (also while waiting). Claims granted before a close
    /// are still published and read. A claim takes its sequences only once their slots are
    /// free; one that keeps being refused (other producers keep taking the freed slots)
    /// reserves them after a while and waits in line.
    #[inline]
    pub fn claim(&self, n: usize) -> Result<Claim<'_, T>, Error> {
        check_claim(n, self.core.capacity())?;
        self.take(n, None)
    }

    /// Takes `n` sequences (checked by the caller) once their slots are free, waiting until
    /// `deadline` (`None`: as long as it takes).
    ///
    /// Space is checked before the sequences are taken (a compare-and-swap of the cursor), not
    /// after (a `fetch_add`, then a wait): a producer that took sequences beyond the free
    /// space holds a hole the consumer cannot read past until that producer runs again, and
    /// with more threads than cores it often does not run for a while. Measured in one
    /// process on 2 vCPUs (4 runs each, M events/s): 4P1C batch 1 10-12 -> 24-32, 2P1C batch
    /// 1 12-34 -> 26-35, 2P1C batch 64 211-231 -> 346-375.
    #[inline]
    fn take(&self, n: usize, deadline: Option<Instant>) -> Result<Claim<'_, T>, Error> {
        let start = match self.try_take_checked(n) {
            Err(Error::Full) => self.take_waiting(n, deadline)?,
            other => other?,
        };
        Ok(self.claim_at(start, n))
    }

    #[inline]
    fn claim_at(&self, start: u64, n: usize) -> Claim<'_, T> {
        Claim::new(&self.core, start, start + n as u64, Publisher::Multi)
    }

    /// Waits (until `deadline`, if any) for room for `n` slots and takes them.
    ///
    /// A compare-and-swap only wins when all `n` slots are free at that moment, so under
    /// steady load from other producers a large claim could be refused for as long as the
    /// load lasts. A claim without a deadline that was refused for [`RESERVE_AFTER`]
    /// therefore reserves its sequences ([`Producer::reserve`]) and waits for them in line;
    /// a claim with a deadline keeps retrying until the deadline (a reservation cannot be
    /// given back).
    #[cold]
    fn take_waiting(&self, n: usize, deadline: Option<Instant>) -> Result<u64, Error> {
        let core = &*self.core;
        #[cfg(not(ringbuffer_loom))]
        let since = Instant::now();
        #[cfg(ringbuffer_loom)]
        let mut refusals = 0;
        let mut reserve = false;
        let ready = || match self.try_take_checked(n) {
            Err(Error::Full) => {
                #[cfg(not(ringbuffer_loom))]
                let refused_long = since.elapsed() >= RESERVE_AFTER;
                #[cfg(ringbuffer_loom)]
                let refused_long = {
                    refusals += 1;
                    refusals >= RESERVE_AFTER_REFUSALS
                };
                reserve = deadline.is_none() && refused_long;
                reserve.then_some(Err(Error::Full))
            }
            other => Some(other),
        };
        match wait_for(core.strategy, &core.space, &core.data, deadline, ready) {
            Waited::Ready(Err(Error::Full)) if reserve => self.reserve(n),
            Waited::Ready(taken) => taken,
            Waited::TimedOut => Err(Error::Timeout),
        }
    }

    /// Takes `n` sequences with a `fetch_add`, free or not, then waits until every consumer
    /// has released their slots. It cannot be refused, but until it is published the claim is
    /// a hole the consumer waits behind: only for claims refused many times.
    #[cold]
    fn reserve(&self, n: usize) -> Result<u64, Error> {
        let core = &*self.core;
        let before = core.cursor.fetch_add(n as u64, Ordering::AcqRel);
        if before & CLOSED_BIT != 0 {
            return Err(Error::Closed);
        }
        let end = before + n as u64;
        if end <= self.limit.load(Ordering::Acquire) {
            return Ok(before);
        }
        let cap = core.capacity() as u64;
        let needed = end - cap;
        let mut cache = GateCache::new();
        let ready = || match core.gate(&mut cache, 0, needed) {
            Ok(gate) if gate >= needed => Some(Ok(gate)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        match wait_for(core.strategy, &core.space, &core.data, None, ready) {
            Waited::Ready(Ok(gate)) => {
                self.raise_limit(gate + cap);
                Ok(before)
            }
            Waited::Ready(Err(e)) => Err(e),
            Waited::TimedOut => Err(Error::Timeout),
        }
    }

    /// Claims `n` slots only if they are free right now ([`Error::Full`] otherwise). Takes
    /// the sequences with a compare-and-swap after checking for space, so a refused claim
    /// leaves nothing behind.
    pub fn try_claim(&self, n: usize) -> Result<Claim<'_, T>, Error> {
        check_claim(n, self.core.capacity())?;
        let start = self.try_take_checked(n)?;
        Ok(self.claim_at(start, n))
    }

    /// Like [`try_claim`](Self::try_claim), waiting up to `timeout` for space. It holds no
    /// sequences while it waits, so under steady load from other producers a large claim
    /// may only find room when the load eases, or time out.
    pub fn claim_timeout(&self, n: usize, timeout: Duration) -> Result<Claim<'_, T>, Error> {
        check_claim(n, self.core.capacity())?;
        // `None` (a timeout too long to represent) waits as long as it takes.
        self.take(n, Instant::now().checked_add(timeout))
    }

    /// Takes `n` sequences (`n` checked by the caller) if their slots are free now.
    #[inline]
    fn try_take_checked(&self, n: usize) -> Result<u64, Error> {
        let core = &*self.core;
        if core.consumers_gone.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let cap = core.capacity() as u64;
        let mut current = core.cursor.load(Ordering::Acquire);
        loop {
            if current & CLOSED_BIT != 0 {
                return Err(Error::Closed);
            }
            let end = current + n as u64;
            if end > self.limit.load(Ordering::Acquire) {
                let gate = core.gate(&mut GateCache::new(), 0, end - cap)?;
                self.raise_limit(gate + cap);
                if end > gate + cap {
                    return Err(Error::Full);
                }
            }
            match core.cursor.compare_exchange_weak(
                current,
                end,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(current),
                Err(now) => current = now,
            }
        }
    }

    /// Claims one slot, lets `fill` write it, publishes it; returns its sequence.
    ///
    /// The single-event path: no claim-size check and no separate close check (the cursor's
    /// closed bit shows in the take). A panicking `fill` publishes the slot's fresh factory
    /// value, as a dropped claim does.
    #[inline]
    pub fn publish_with(&self, fill: impl FnOnce(&mut T)) -> Result<u64, Error> {
        publish_claimed(self.take(1, None)?, fill)
    }

    /// Publishes one value; returns its sequence.
    #[inline]
    pub fn push(&self, value: T) -> Result<u64, Error> {
        self.publish_with(|slot| *slot = value)
    }

    /// Like [`publish_with`](Self::publish_with) but never waits: [`Error::Full`] if no slot
    /// is free now, and then `fill` is not called.
    #[inline]
    pub fn try_publish_with(&self, fill: impl FnOnce(&mut T)) -> Result<u64, Error> {
        publish_claimed(self.try_claim(1)?, fill)
    }

    /// Like [`publish_with`](Self::publish_with), giving up with [`Error::Timeout`] (and not
    /// calling `fill`) after `timeout`.
    #[inline]
    pub fn publish_with_timeout(
        &self,
        fill: impl FnOnce(&mut T),
        timeout: Duration,
    ) -> Result<u64, Error> {
        publish_claimed(self.claim_timeout(1, timeout)?, fill)
    }

    /// Closes the ring for every producer: claims already granted are still published and
    /// read; the consumer then gets [`Error::Closed`]. Idempotent.
    pub fn close(&self) {
        self.core.close_multi();
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> usize {
        self.core.capacity()
    }
}

impl<T> Clone for Producer<T> {
    fn clone(&self) -> Self {
        self.core.producers.fetch_add(1, Ordering::Relaxed);
        Self::new(Arc::clone(&self.core))
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        if self.core.producers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.core.close_multi();
        }
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("ring", &*self.core)
            .finish_non_exhaustive()
    }
}
