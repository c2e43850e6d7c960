//! [`Batch`]: everything a consumer may read at once, released in one store.

use std::fmt;

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
        }
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
