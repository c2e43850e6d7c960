//! [`Batch`]: everything a consumer may read at once, released in one store; [`BatchMut`]:
//! the same for the one consumer of an MPSC/SPSC ring, which may also modify or move out
//! the entries.

use std::fmt;
use std::ops::Deref;

use crate::ring::Core;
use crate::sync::{AtomicU64, Ordering};

/// Published entries handed to a consumer: everything published since its previous batch
/// (for a work-sharing consumer, the run it took). Read them with [`Batch::iter`],
/// [`Batch::get`], [`Batch::for_each`] (which flags the end of the batch) or
/// [`Batch::as_slices`]; dropping the batch (or [`Batch::release`]) hands all its slots back
/// to the producers with a single store.
#[must_use = "a batch is released when dropped"]
pub struct Batch<'a, T> {
    core: &'a Core<T>,
    start: u64,
    end: u64,
    release_to: &'a AtomicU64,
    pos: &'a mut u64,
    /// The one consumer of an MPSC/SPSC ring flags that it holds a batch, so a producer
    /// waiting for space spins through it rather than yield its core away.
    sole_consumer: bool,
}

impl<'a, T> Batch<'a, T> {
    pub(crate) fn new(
        core: &'a Core<T>,
        start: u64,
        end: u64,
        release_to: &'a AtomicU64,
        pos: &'a mut u64,
    ) -> Self {
        Self {
            core,
            start,
            end,
            release_to,
            pos,
            sole_consumer: false,
        }
    }

    /// A batch of the one consumer of an MPSC/SPSC ring (see `sole_consumer`).
    pub(crate) fn sole(mut self) -> Self {
        self.sole_consumer = true;
        self.core.data.set_busy(true);
        self
    }

    /// Number of entries (at least 1).
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Always false: a batch holds at least one entry.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Sequence number of the first entry.
    #[inline]
    pub fn first_sequence(&self) -> u64 {
        self.start
    }

    /// Sequence number one past the last entry (where the next batch starts).
    #[inline]
    pub fn end_sequence(&self) -> u64 {
        self.end
    }

    /// The `index`-th entry, or `None` past the end.
    #[inline]
    pub fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len() {
            return None;
        }
        let ptr = self.core.slot_ptr(self.start + index as u64);
        // SAFETY: the entry was observed published (acquire) and is not released before this
        // batch is dropped; the borrow is tied to `&self`.
        Some(unsafe { &*ptr })
    }

    /// The entries in sequence order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &T> + '_ {
        let (core, start) = (self.core, self.start);
        (0..self.len()).map(move |i| {
            let ptr = core.slot_ptr(start + i as u64);
            // SAFETY: as in `get`: published, not yet released, borrowed from `&self`.
            unsafe { &*ptr }
        })
    }

    /// Calls `f(sequence, entry, end_of_batch)` for every entry; `end_of_batch` is true for
    /// the last one (the moment to flush whatever the consumer accumulates).
    pub fn for_each(&self, mut f: impl FnMut(u64, &T, bool)) {
        for (seq, entry) in (self.start..self.end).zip(self.iter()) {
            f(seq, entry, seq + 1 == self.end);
        }
    }

    /// The entries as (at most) two slices in sequence order; the second is empty unless
    /// the batch wraps around the end of the ring.
    #[cfg(not(ringbuffer_loom))]
    pub fn as_slices(&self) -> (&[T], &[T]) {
        let ((a, alen), (b, blen)) = self.core.runs(self.start, self.end);
        // SAFETY: the runs lie inside the slot array and cover exactly this batch's entries,
        // which are published and not released while `&self` lives.
        unsafe {
            (
                std::slice::from_raw_parts(a, alen),
                std::slice::from_raw_parts(b, blen),
            )
        }
    }

    /// Releases the batch now (same as dropping it).
    #[inline]
    pub fn release(self) {}
}

impl<T> Drop for Batch<'_, T> {
    #[inline]
    fn drop(&mut self) {
        *self.pos = self.end;
        self.release_to.store(self.end, Ordering::Release);
        if self.sole_consumer {
            self.core.data.set_busy(false);
        }
        self.core.space.notify();
    }
}

impl<T> fmt::Debug for Batch<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batch")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

/// A [`Batch`] read by the only consumer of an MPSC or SPSC ring (from
/// [`Consumer::read_mut`](crate::Consumer::read_mut)): nobody else can see these slots until
/// the batch is released, so the consumer may modify the entries or move them out
/// ([`take_each`](Self::take_each)) instead of cloning them. Everything a [`Batch`] offers
/// is available through `Deref`.
///
/// ```
/// use ringbuffer_core::RingBuilder;
///
/// // Owned payloads travel through the ring without a clone: the consumer takes them out.
/// let (producer, mut consumer) = RingBuilder::<Option<String>>::new(8).mpsc()?;
/// producer.push(Some("opened".to_string()))?;
/// producer.push(Some("deposited".to_string()))?;
/// let mut taken = Vec::new();
/// consumer.read_mut()?.take_each(|value| taken.extend(value));
/// assert_eq!(taken, ["opened", "deposited"]);
/// # Ok::<(), ringbuffer_core::Error>(())
/// ```
#[must_use = "a batch is released when dropped"]
pub struct BatchMut<'a, T> {
    batch: Batch<'a, T>,
}

impl<'a, T> BatchMut<'a, T> {
    /// Wraps a batch of a single-consumer ring.
    ///
    /// # Safety
    /// `batch` must come from the one consumer of an MPSC or SPSC ring: then no producer can
    /// claim its slots before it is released, and no other reader exists.
    pub(crate) unsafe fn new(batch: Batch<'a, T>) -> Self {
        Self { batch }
    }

    /// The entries in sequence order, mutably.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = &mut T> + '_ {
        let (core, start) = (self.batch.core, self.batch.start);
        (0..self.batch.len()).map(move |i| {
            let ptr = core.slot_mut_ptr(start + i as u64);
            // SAFETY: `BatchMut::new`'s contract: the single consumer owns these published,
            // unreleased slots exclusively; each index is visited once and the borrows end
            // with `&mut self`.
            unsafe { &mut *ptr }
        })
    }

    /// Moves every entry out in sequence order, leaving `T::default()` in its slot (for
    /// example `Option::take`), and hands it to `f`.
    pub fn take_each(mut self, mut f: impl FnMut(T))
    where
        T: Default,
    {
        for slot in self.iter_mut() {
            f(std::mem::take(slot));
        }
    }

    /// Releases the batch now (same as dropping it).
    #[inline]
    pub fn release(self) {}
}

impl<'a, T> Deref for BatchMut<'a, T> {
    type Target = Batch<'a, T>;

    fn deref(&self) -> &Self::Target {
        &self.batch
    }
}

impl<T> fmt::Debug for BatchMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchMut")
            .field("start", &self.batch.start)
            .field("end", &self.batch.end)
            .finish()
    }
}
