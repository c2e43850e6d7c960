//! SPMC work-sharing: each entry goes to exactly one of several consumers.
//!
//! # Protocol
//!
//! The consumers share `next`, the first sequence nobody has taken. Each consumer also has
//! its own `done` word: every sequence below it that this consumer took is finished. To take
//! work a consumer loads `next`, stores that value into its `done` word if it grew (announcing
//! "I may read from here on", and waking a producer parked for space, since this raises the
//! gate), checks the producer's cursor, and takes `[next, next + k)` with a
//! compare-and-swap on `next`. After reading it releases with one store of the run's end
//! into `done`. The producer is gated by the minimum over all `done` words.
//!
//! No `done` word ever runs ahead of what its consumer may still read: announcements only
//! grow (`next` only grows), and a consumer raises its word past a run only after it
//! finished reading that run (release store, acquired by the producer's gate load). A stale
//! value seen by the producer is lower, hence only more cautious. A consumer that leaves
//! stores `u64::MAX`, which the minimum ignores; when all have left, claims fail with
//! [`Error::Closed`].

use std::fmt;
use std::time::Duration;

use crate::batch::Batch;
use crate::consumer::{ReadWait, wait_read};
use crate::error::Error;
use crate::ring::{Core, Gating, Workers};
use crate::sync::{Arc, Ordering};

fn workers<T>(core: &Core<T>) -> &Workers {
    match &core.gating {
        Gating::Work(workers) => workers,
        _ => unreachable!("work consumers are only built for work-sharing rings"),
    }
}

/// One consumer of a work-sharing ring. Each batch it reads is taken by it alone.
///
/// Every live handle gates the producer at the end of the last batch it took, also while it
/// does other work between reads: a worker that stops reading for a while holds the
/// producer back by at most the ring's capacity (drop the handle to let go for good).
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct WorkConsumer<T> {
    core: Arc<Core<T>>,
    index: usize,
    /// Scratch for the batch's position bookkeeping (the shared `next` is authoritative).
    pos: u64,
    /// Last value this consumer announced in its `done` word.
    announced: u64,
}

impl<T> WorkConsumer<T> {
    pub(crate) fn new(core: Arc<Core<T>>, index: usize) -> Self {
        Self {
            core,
            index,
            pos: 0,
            announced: 0,
        }
    }

    /// Waits for unclaimed entries and takes a run of them (at most the ring's work batch
    /// size). [`Error::Closed`] once the producer closed and every entry was taken.
    #[inline]
    pub fn read(&mut self) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::Forever)
    }

    /// Like [`read`](Self::read) but never waits: [`Error::Empty`] if nothing is available.
    #[inline]
    pub fn try_read(&mut self) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::No)
    }

    /// Like [`read`](Self::read), giving up with [`Error::Timeout`] after `timeout`.
    #[inline]
    pub fn read_timeout(&mut self, timeout: Duration) -> Result<Batch<'_, T>, Error> {
        self.read_inner(ReadWait::timeout(timeout))
    }

    fn read_inner(&mut self, wait: ReadWait) -> Result<Batch<'_, T>, Error> {
        let core = &*self.core;
        let workers = workers(core);
        let done = &workers.done[self.index];
        let max = workers.max_batch as u64;
        let announced = &mut self.announced;
        let (start, end) = wait_read(core, wait, || {
            loop {
                let start = workers.next.load(Ordering::Acquire);
                if start != *announced {
                    // Raising `done` frees space: a producer may be parked waiting for it.
                    *announced = start;
                    done.store(start, Ordering::Release);
                    core.space.notify();
                }
                let published = core.cursor.load(Ordering::Acquire);
                if published <= start {
                    return if core.drained(start) {
                        Some(Err(Error::Closed))
                    } else {
                        None
                    };
                }
                let end = published.min(start + max);
                if workers
                    .next
                    .compare_exchange(start, end, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    return Some(Ok((start, end)));
                }
                crate::sync::spin_loop();
            }
        })?;
        self.pos = start;
        self.announced = end;
        Ok(Batch::new(core, start, end, done, &mut self.pos))
    }
}

impl<T> Drop for WorkConsumer<T> {
    fn drop(&mut self) {
        let workers = workers(&self.core);
        workers.done[self.index].store(u64::MAX, Ordering::Release);
        if workers.alive.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.core.consumers_gone.store(true, Ordering::Release);
        }
        self.core.space.wake_all();
    }
}

impl<T> fmt::Debug for WorkConsumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkConsumer")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}
