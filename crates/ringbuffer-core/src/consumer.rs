//! [`Consumer`]: the one consumer of an MPSC or SPSC ring.

use std::fmt;
use std::time::{Duration, Instant};

use crate::batch::{Batch, BatchMut};
use crate::error::Error;
use crate::ring::{Core, Gating};
use crate::sync::{Arc, AtomicU64, Ordering};
use crate::wait::{Waited, min_batch, top_up, wait_for};

/// How long a read may wait.
#[derive(Clone, Copy)]
pub(crate) enum ReadWait {
    No,
    Until(Instant),
    Forever,
}

impl ReadWait {
    pub(crate) fn timeout(timeout: Duration) -> Self {
        Instant::now()
            .checked_add(timeout)
            .map_or(Self::Forever, Self::Until)
    }
}

/// Waits until `check` yields, translating the wait mode into `Empty` / `Timeout`.
#[inline]
pub(crate) fn wait_read<T, R>(
    core: &Core<T>,
    wait: ReadWait,
    mut check: impl FnMut() -> Option<Result<R, Error>>,
) -> Result<R, Error> {
    match wait {
        ReadWait::No => check().unwrap_or(Err(Error::Empty)),
        ReadWait::Until(deadline) => {
            match wait_for(
                core.strategy,
                &core.data,
                &core.space,
                Some(deadline),
                check,
            ) {
                Waited::Ready(r) => r,
                Waited::TimedOut => Err(Error::Timeout),
            }
        }
        ReadWait::Forever => match wait_for(core.strategy, &core.data, &core.space, None, check) {
            Waited::Ready(r) => r,
            Waited::TimedOut => Err(Error::Timeout),
        },
    }
}

/// The consumer of an MPSC or SPSC ring.
///
/// [`read`](Self::read) returns a [`Batch`] of everything published since the previous
/// batch; dropping the batch releases its slots to the producers in one store. After the
/// ring is closed, reads drain what was published and then return [`Error::Closed`].
/// Dropping the consumer makes every producer's next claim fail with [`Error::Closed`].
// Aligned to two cache lines (the prefetcher pulls pairs) so the handle's private cursor
// state never shares a line with data another thread writes (checked at compile time in lib.rs).
#[repr(align(128))]
pub struct Consumer<T> {
    core: Arc<Core<T>>,
    pos: u64,
    scanned: u64,
    /// The last read found data without waiting.
    streaming: bool,
}

impl<T> Consumer<T> {
    pub(crate) fn new(core: Arc<Core<T>>) -> Self {
        Self {
            core,
            pos: 0,
            scanned: 0,
            streaming: false,
        }
    }

    /// Waits for at least one entry and returns everything published so far.
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
        let scanned = &mut self.scanned;
        let mut checks = 0u32;
        let mut end = wait_read(core, wait, || {
            checks += 1;
            let end = core.published_end(pos, scanned);
            if end > pos {
                Some(Ok(end))
            } else if core.drained(pos) {
                Some(Err(Error::Closed))
            } else {
                None
            }
        })?;
        // A stream (this read and the one before found data at once) that delivers little per
        // read is a consumer catching up with its producer: let it get ahead (see `top_up`).
        let streaming = std::mem::replace(&mut self.streaming, checks == 1);
        if streaming && checks == 1 && !matches!(wait, ReadWait::No) {
            let want = pos + min_batch::<T>(core.capacity());
            if end < want {
                end = top_up(|| core.published_end(pos, scanned), want);
            }
        }
        let Gating::Single(released) = &core.gating else {
            unreachable!("a Consumer is only built for single-consumer rings")
        };
        let released: &AtomicU64 = released;
        Ok(Batch::new(core, pos, end, released, &mut self.pos).sole())
    }

    /// Like [`read`](Self::read), with mutable access to the entries: this is the ring's only
    /// consumer, so it may modify them or move them out ([`BatchMut::take_each`]).
    #[inline]
    pub fn read_mut(&mut self) -> Result<BatchMut<'_, T>, Error> {
        let batch = self.read_inner(ReadWait::Forever)?;
        // SAFETY: a `Consumer` is the one consumer of an MPSC/SPSC ring.
        Ok(unsafe { BatchMut::new(batch) })
    }

    /// Like [`read_mut`](Self::read_mut) but never waits: [`Error::Empty`] if nothing is new.
    #[inline]
    pub fn try_read_mut(&mut self) -> Result<BatchMut<'_, T>, Error> {
        let batch = self.read_inner(ReadWait::No)?;
        // SAFETY: a `Consumer` is the one consumer of an MPSC/SPSC ring.
        Ok(unsafe { BatchMut::new(batch) })
    }

    /// Like [`read_mut`](Self::read_mut), giving up with [`Error::Timeout`] after `timeout`.
    #[inline]
    pub fn read_mut_timeout(&mut self, timeout: Duration) -> Result<BatchMut<'_, T>, Error> {
        let batch = self.read_inner(ReadWait::timeout(timeout))?;
        // SAFETY: a `Consumer` is the one consumer of an MPSC/SPSC ring.
        Ok(unsafe { BatchMut::new(batch) })
    }

    /// Sequence of the next entry this consumer will read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Number of slots in the ring.
    pub fn capacity(&self) -> usize {
        self.core.capacity()
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.core.consumers_gone.store(true, Ordering::Release);
        self.core.space.wake_all();
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("position", &self.pos)
            .finish_non_exhaustive()
    }
}
