//! SPMC broadcast: every subscriber sees every entry, the producer is gated by the slowest.
//!
//! # Join and leave
//!
//! Subscribers live in a registry (a mutex-protected list plus a `version` counter bumped on
//! every change). The producer keeps a private snapshot and refreshes it only when the
//! version moved, so the claim path takes no lock.
//!
//! A joining subscriber registers itself at a provisional position (the cursor it read
//! first), bumps the version (SeqCst), then re-reads the cursor (SeqCst) and starts there.
//! The producer, before computing its gate, executes a SeqCst fence and loads the version.
//! Either the producer's load sees the bump (then its snapshot includes the newcomer, whose
//! position is never above where it starts reading), or the load comes first in the SeqCst
//! order, and then the newcomer's re-read sees every cursor store the producer made before
//! its fence: the gate the producer computes from the stale snapshot is at most that
//! cursor, so it never overwrites an entry the newcomer will read. A leaving subscriber
//! marks its word [`LEFT`] and bumps the version; stale snapshots skip it.
//!
//! # Laggards
//!
//! A subscriber's word holds its position and two flags. It sets [`ACTIVE`] with a
//! `fetch_or` when it takes a batch and clears it with the release store. Eviction is a
//! compare-and-swap from a word *without* `ACTIVE` to the same word with [`LAGGED`], so a
//! subscriber is never evicted in the middle of a batch: either its `fetch_or` sees
//! `LAGGED` (and it reads nothing), or the eviction fails. Evicted subscribers are skipped
//! by the gate and get [`Error::Lagged`] on their next read.

use std::fmt;
use std::time::Duration;

use crossbeam_utils::CachePadded;

use crate::batch::Batch;
use crate::claim::Claim;
use crate::consumer::{ReadWait, wait_read};
use crate::error::Error;
use crate::producer::{SpInner, sp_claim_methods};
use crate::ring::{ACTIVE, Core, Gating, LAGGED, LEFT, POS_MASK, Registry, Sub};
use crate::sync::{Arc, AtomicU64, Ordering};

/// A subscriber that was a whole ring behind the producer, as reported by
/// [`BroadcastProducer::laggards`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Laggard {
    /// The subscriber's [`BroadcastConsumer::id`].
    pub id: u64,
    /// Next sequence it would read.
    pub position: u64,
}

fn registry<T>(core: &Core<T>) -> &Registry {
    match &core.gating {
        Gating::Broadcast(registry) => registry,
        _ => unreachable!("broadcast handles are only built for broadcast rings"),
    }
}

/// Registers a new subscriber that starts at the current cursor (see the module docs).
pub(crate) fn join<T>(core: &Arc<Core<T>>) -> BroadcastConsumer<T> {
    let registry = registry(core);
    loop {
        let provisional = core.cursor.load(Ordering::SeqCst);
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        let sub = Arc::new(Sub {
            id,
            word: CachePadded::new(AtomicU64::new(provisional)),
        });
        {
            let mut subs = registry
                .subs
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            subs.push(Arc::clone(&sub));
            registry.version.fetch_add(1, Ordering::SeqCst);
        }
        let start = core.cursor.load(Ordering::SeqCst);
        // Only an eviction (of a subscriber that had no batch yet) can change the word
        // meanwhile; then register afresh.
        if sub
            .word
            .compare_exchange(provisional, start, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            // The producer may have seen the provisional position and parked for space (with
            // `LagPolicy::Block`): the word just moved up, which frees that space, so wake it
            // as a batch release would. Otherwise this subscriber, finding nothing new, parks
            // too, and both sleep for good (found by review).
            if start != provisional {
                core.space.notify();
            }
            return BroadcastConsumer {
                core: Arc::clone(core),
                sub,
                pos: start,
            };
        }
        leave(core, &sub);
    }
}

fn leave<T>(core: &Core<T>, sub: &Arc<Sub>) {
    let registry = registry(core);
    sub.word.store(LEFT, Ordering::Release);
    {
        let mut subs = registry
            .subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        subs.retain(|s| !Arc::ptr_eq(s, sub));
        registry.version.fetch_add(1, Ordering::SeqCst);
    }
    core.space.wake_all();
}

/// The producer of a broadcast ring. Subscribers join with [`subscribe`](Self::subscribe)
/// (or [`BroadcastConsumer::subscribe`] from any thread) and see everything published after
/// they joined. With no subscribers, published entries are simply dropped from view.
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct BroadcastProducer<T> {
    pub(crate) inner: SpInner<T>,
}

impl<T> BroadcastProducer<T> {
    sp_claim_methods!();

    /// A new subscriber that sees every entry published from now on.
    pub fn subscribe(&self) -> BroadcastConsumer<T> {
        join(&self.inner.core)
    }

    /// A handle that lets any thread add subscribers without holding the producer or a
    /// subscriber (for example the owner of a ring whose producer lives on another thread).
    pub fn subscribe_handle(&self) -> SubscribeHandle<T> {
        SubscribeHandle {
            core: Arc::clone(&self.inner.core),
        }
    }

    /// Number of live subscribers (evicted ones included until they resubscribe or drop).
    pub fn subscriber_count(&self) -> usize {
        registry(&self.inner.core)
            .subs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Subscribers at least a whole ring behind the producer (they gate its next claim
    /// under [`LagPolicy::Block`](crate::LagPolicy::Block)). Evicted ones are not listed.
    pub fn laggards(&self) -> Vec<Laggard> {
        laggards(&self.inner.core, self.inner.next)
    }

    /// Evicts every subscriber that is a whole ring behind and between batches: the
    /// producer stops waiting for it and its next read returns [`Error::Lagged`]. Returns how
    /// many were evicted.
    pub fn evict_laggards(&mut self) -> usize {
        evict_laggards(&self.inner.core, self.inner.next)
    }
}

/// The subscribers of `core` at least a whole ring behind `next` (not evicted).
fn laggards<T>(core: &Core<T>, next: u64) -> Vec<Laggard> {
    let cap = core.capacity() as u64;
    let subs = registry(core)
        .subs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    subs.iter()
        .filter_map(|sub| {
            let word = sub.word.load(Ordering::Acquire);
            let position = word & POS_MASK;
            (word & LAGGED == 0 && position + cap <= next).then_some(Laggard {
                id: sub.id,
                position,
            })
        })
        .collect()
}

/// Evicts the subscribers of `core` a whole ring behind `next` and between batches (a
/// compare-and-swap from a word without `ACTIVE`, as the gate does); returns how many.
fn evict_laggards<T>(core: &Core<T>, next: u64) -> usize {
    let cap = core.capacity() as u64;
    let subs = registry(core)
        .subs
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut evicted = 0;
    for sub in subs.iter() {
        let word = sub.word.load(Ordering::Acquire);
        let position = word & POS_MASK;
        if word & (LAGGED | ACTIVE) == 0
            && position + cap <= next
            && sub
                .word
                .compare_exchange(word, word | LAGGED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            evicted += 1;
        }
    }
    evicted
}

impl<T> fmt::Debug for BroadcastProducer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastProducer")
            .field("next", &self.inner.next)
            .finish_non_exhaustive()
    }
}

/// Adds subscribers to a broadcast ring from any thread (see
/// [`BroadcastProducer::subscribe_handle`]). It does not gate the producer and is cheap to
/// clone. Once the producer is gone, new subscribers read [`Error::Closed`].
///
/// ```
/// use ringbuffer_core::RingBuilder;
///
/// let (mut producer, _initial) = RingBuilder::<u64>::new(16).broadcast(0)?;
/// let handle = producer.subscribe_handle();
/// let mut late = std::thread::spawn(move || handle.subscribe()).join().expect("thread");
/// producer.push(7)?;
/// assert_eq!(late.read()?.iter().copied().collect::<Vec<_>>(), [7]);
/// # Ok::<(), ringbuffer_core::Error>(())
/// ```
pub struct SubscribeHandle<T> {
    core: Arc<Core<T>>,
}

impl<T> SubscribeHandle<T> {
    /// A new subscriber that sees every entry published from now on.
    pub fn subscribe(&self) -> BroadcastConsumer<T> {
        join(&self.core)
    }

    /// Like [`BroadcastProducer::laggards`], from any thread: the subscribers a whole ring
    /// behind what the producer has published. With [`LagPolicy::Block`](crate::LagPolicy::Block)
    /// they hold back its next claim, which may be blocked right now.
    pub fn laggards(&self) -> Vec<Laggard> {
        laggards(&self.core, self.core.cursor.load(Ordering::Acquire))
    }

    /// Like [`BroadcastProducer::evict_laggards`], from any thread, for a producer that is
    /// blocked in a claim (or busy elsewhere): evicts the subscribers a whole ring behind what
    /// it has published and between batches, and wakes it if it waits for space. Returns how
    /// many were evicted.
    ///
    /// ```
    /// use ringbuffer_core::{Error, RingBuilder};
    ///
    /// let (mut producer, mut subs) = RingBuilder::<u64>::new(2).broadcast(1)?;
    /// let handle = producer.subscribe_handle();
    /// producer.push(1)?;
    /// producer.push(2)?; // the ring is full: the subscriber never reads
    /// let blocked = std::thread::spawn(move || producer.push(3)); // waits for space
    /// while handle.laggards().is_empty() {
    ///     std::thread::yield_now();
    /// }
    /// assert_eq!(handle.evict_laggards(), 1);
    /// assert_eq!(blocked.join().expect("producer")?, 2);
    /// assert!(matches!(subs[0].read(), Err(Error::Lagged { .. })));
    /// # Ok::<(), ringbuffer_core::Error>(())
    /// ```
    pub fn evict_laggards(&self) -> usize {
        let evicted = evict_laggards(&self.core, self.core.cursor.load(Ordering::Acquire));
        if evicted > 0 {
            self.core.space.wake_all();
        }
        evicted
    }
}

impl<T> Clone for SubscribeHandle<T> {
    fn clone(&self) -> Self {
        Self {
            core: Arc::clone(&self.core),
        }
    }
}

impl<T> fmt::Debug for SubscribeHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscribeHandle").finish_non_exhaustive()
    }
}

/// A subscriber of a broadcast ring: reads every entry published after it joined, in order.
/// Dropping it stops it gating the producer.
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct BroadcastConsumer<T> {
    core: Arc<Core<T>>,
    sub: Arc<Sub>,
    pos: u64,
}

impl<T> BroadcastConsumer<T> {
    /// Waits for at least one entry and returns everything published since the last batch.
    /// [`Error::Closed`] once the producer closed and everything was read;
    /// [`Error::Lagged`] if this subscriber was evicted.
    #[inline]
    pub fn read(&mut self) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::Forever)
    }

    /// Like [`read`](Self::read) but never waits: [`Error::Empty`] if nothing is new.
    #[inline]
    pub fn try_read(&mut self) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::No)
    }

    /// Like [`read`](Self::read), giving up with [`Error::Timeout`] after `timeout`.
    #[inline]
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::timeout(timeout))
    }

    #[inline]
    fn read_inner(&mut self, wait: ReadWait) -> Result<Batch<'_, T>, Error> {
        let core = &*self.core;
        let pos = self.pos;
        let word = &self.sub.word;
        let end = wait_read(core, wait, || {
            let end = core.cursor.load(Ordering::Acquire);
            if end > pos {
                Some(Ok(end))
            } else if word.load(Ordering::Relaxed) & LAGGED != 0 {
                Some(Err(Error::Lagged { missed_from: pos }))
            } else if core.drained(pos) {
                Some(Err(Error::Closed))
            } else {
                None
            }
        })?;
        // Announce the batch; an eviction that won the race shows up here instead.
        if word.fetch_or(ACTIVE, Ordering::AcqRel) & LAGGED != 0 {
            return Err(Error::Lagged { missed_from: pos });
        }
        Ok(Batch::new(core, pos, end, word, &mut self.pos))
    }

    /// A new subscriber on the same ring, starting at the current end (not at this one's
    /// position). Callable from any thread.
    pub fn subscribe(&self) -> Self {
        join(&self.core)
    }

    /// After [`Error::Lagged`] (or any time): leaves and joins again at the current end of the
    /// ring; returns the first sequence it will now read. Entries between the old position
    /// and this one are not delivered.
    pub fn resubscribe(&mut self) -> u64 {
        let fresh = join(&self.core);
        let start = fresh.pos;
        // The old registration leaves when `old` drops.
        let old = std::mem::replace(self, fresh);
        drop(old);
        start
    }

    /// Stable identifier of this subscription (as listed by [`BroadcastProducer::laggards`]).
    pub fn id(&self) -> u64 {
        self.sub.id
    }

    /// Sequence of the next entry this subscriber will read.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

impl<T> Drop for BroadcastConsumer<T> {
    fn drop(&mut self) {
        leave(&self.core, &self.sub);
    }
}

impl<T> fmt::Debug for BroadcastConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastConsumer")
            .field("id", &self.sub.id)
            .field("position", &self.pos)
            .finish_non_exhaustive()
    }
}
