//! [`Claim`]: slots a producer reserved, filled in place, then published.

use std::fmt;

use crate::ring::Core;
#[cfg(not(ringbuffer_loom))]
use crate::ring::prefetch_line_for_write;
use crate::sync::Ordering;

/// Slots of at least this many bytes are filled by [`Claim::for_each_mut`] with their lines
/// asked for ahead (PREFETCHW on x86-64).
///
/// Why: each slot is then a line or more that the consumer read on the previous lap, and
/// the producer's first store to it waits for that copy to be given up: 1P1C with 64-byte
/// entries in batches of 64 is bound by those waits for every ring (profiled: the consumers
/// of ours and rtrb mostly wait for data, the producers stall on the first store of each
/// slot). Asking [`FETCH_AHEAD_BYTES`] ahead overlaps them. `ring` suite, alternating A/B
/// of the bench binary, rounds where the host ran both threads apart, medians in M
/// events/s: this form, 253 without and 262 with (rtrb ~255), within the host's noise; an
/// earlier form (the first line of the slot 8 slots ahead), 245 without and 279 with (rtrb
/// ~250); 16 slots ahead no better. Smaller slots share lines, and for them fetching within
/// or past a claim measured slower at batch 64 (the stores of a batch of `u64` stream).
#[cfg(not(ringbuffer_loom))]
const FETCH_AHEAD_FROM_SIZE: usize = 64;

/// How far ahead of the slot being filled [`Claim::for_each_mut`] asks for lines.
#[cfg(not(ringbuffer_loom))]
const FETCH_AHEAD_BYTES: usize = 512;

/// How a claim becomes visible.
pub(crate) enum Publisher<'a> {
    /// Single producer: store the new end into the cursor and advance the producer's
    /// private `next`.
    Single(&'a mut u64),
    /// Multi producer: set the claim's publication mark (at its first slot).
    Multi,
}

/// A run of claimed slots, exclusively owned by one producer until [`Claim::publish`].
///
/// Slots are pre-allocated and hold whatever the previous lap left there (or the factory's
/// value): overwrite each one with [`Claim::get_mut`], [`Claim::iter_mut`],
/// [`Claim::write`] or [`Claim::as_mut_slices`].
///
/// **Dropping a claim without publishing it** (an early return or a panic while filling)
/// resets every claimed slot to a fresh factory value (`T::default()` for rings built with
/// `RingBuilder::new`) and publishes it, so consumers never wait on a hole; they see those
/// default values. Payload types that must tell them apart can carry an `Option` or a tag.
/// If the factory itself panics during that reset, the claim is published all the same,
/// with the slots not yet reset as the filling left them (unless the claim was being dropped
/// because `fill` panicked: a second panic while unwinding aborts the process).
#[must_use = "a claim is published by `publish()`; dropping it publishes default values"]
pub struct Claim<'a, T> {
    core: &'a Core<T>,
    start: u64,
    end: u64,
    publisher: Publisher<'a>,
    done: bool,
}

impl<'a, T> Claim<'a, T> {
    pub(crate) fn new(core: &'a Core<T>, start: u64, end: u64, publisher: Publisher<'a>) -> Self {
        Self {
            core,
            start,
            end,
            publisher,
            done: false,
        }
    }

    /// Number of claimed slots.
    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Always false: claims cover at least one slot.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Sequence number of the first claimed slot.
    #[inline]
    pub fn first_sequence(&self) -> u64 {
        self.start
    }

    /// Mutable access to the `index`-th claimed slot, or `None` past the end.
    #[inline]
    pub fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        if index >= self.len() {
            return None;
        }
        let ptr = self.core.slot_mut_ptr(self.start + index as u64);
        // SAFETY: the slot is inside this claim, which is exclusive until published, and the
        // returned borrow is tied to `&mut self`, so no two of them alias.
        Some(unsafe { &mut *ptr })
    }

    /// Overwrites the `index`-th claimed slot (ignored past the end, which `len` rules out).
    #[inline]
    pub fn write(&mut self, index: usize, value: T) {
        if let Some(slot) = self.get_mut(index) {
            *slot = value;
        }
    }

    /// Iterates over the claimed slots in sequence order.
    pub fn iter_mut(&mut self) -> impl ExactSizeIterator<Item = &mut T> + '_ {
        let (core, start) = (self.core, self.start);
        (0..self.len()).map(move |i| {
            let ptr = core.slot_mut_ptr(start + i as u64);
            // SAFETY: each sequence of the claim is visited once, the claim is exclusive
            // and the borrows live no longer than `&mut self`.
            unsafe { &mut *ptr }
        })
    }

    /// Calls `fill` on every claimed slot in sequence order: a loop per contiguous run, which
    /// the compiler can unroll and vectorise (a `for` over [`Claim::iter_mut`] or over two
    /// chained slices branches per slot; at batch 64 this measured 1.8x faster). Slots of a
    /// cache line or more have their lines fetched for writing a few slots ahead (x86-64).
    ///
    /// ```
    /// use ringbuffer_core::RingBuilder;
    ///
    /// let (mut producer, mut consumer) = RingBuilder::<u64>::new(8).spsc()?;
    /// let mut next = 10;
    /// let mut claim = producer.claim(3)?;
    /// claim.for_each_mut(|slot| {
    ///     *slot = next;
    ///     next += 1;
    /// });
    /// claim.publish();
    /// assert_eq!(consumer.read()?.iter().copied().collect::<Vec<_>>(), [10, 11, 12]);
    /// # Ok::<(), ringbuffer_core::Error>(())
    /// ```
    #[inline]
    pub fn for_each_mut(&mut self, mut fill: impl FnMut(&mut T)) {
        #[cfg(not(ringbuffer_loom))]
        {
            if std::mem::size_of::<T>() >= FETCH_AHEAD_FROM_SIZE {
                self.fill_fetching_ahead(fill);
                return;
            }
            let (a, b) = self.as_mut_slices();
            a.iter_mut().for_each(&mut fill);
            b.iter_mut().for_each(fill);
        }
        #[cfg(ringbuffer_loom)]
        self.iter_mut().for_each(&mut fill);
    }

    /// [`for_each_mut`](Self::for_each_mut) for slots of a cache line or more: asks for the
    /// lines of the slot [`FETCH_AHEAD_BYTES`] ahead (within the claim) before filling each
    /// slot, so their transfers overlap the filling (see [`FETCH_AHEAD_FROM_SIZE`]).
    #[cfg(not(ringbuffer_loom))]
    fn fill_fetching_ahead(&mut self, mut fill: impl FnMut(&mut T)) {
        let size = std::mem::size_of::<T>();
        let ahead = (FETCH_AHEAD_BYTES / size).max(1);
        let (core, start, len) = (self.core, self.start, self.len());
        let fetch = |index: usize| {
            if index < len {
                // Every line the slot touches: it need not start on a line.
                let slot = core.slot_ptr(start + index as u64).cast::<u8>();
                let first_line = slot.addr() & !63;
                let last_line = (slot.addr() + size - 1) & !63;
                for line in (first_line..=last_line).step_by(64) {
                    prefetch_line_for_write(slot.with_addr(line));
                }
            }
        };
        (0..ahead).for_each(fetch);
        let (a, b) = self.as_mut_slices();
        let head = a.len();
        for (index, slot) in a.iter_mut().enumerate() {
            fetch(index + ahead);
            fill(slot);
        }
        for (index, slot) in b.iter_mut().enumerate() {
            fetch(head + index + ahead);
            fill(slot);
        }
    }

    /// The claimed slots as (at most) two slices, in sequence order (the second is empty
    /// unless the claim wraps around the end of the ring).
    #[cfg(not(ringbuffer_loom))]
    pub fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let ((a, alen), (b, blen)) = self.core.runs(self.start, self.end);
        // SAFETY: the two runs are disjoint, inside the slot array, cover exactly this claim's
        // slots (exclusive until published) and are borrowed no longer than `&mut self`.
        unsafe {
            (
                std::slice::from_raw_parts_mut(a, alen),
                std::slice::from_raw_parts_mut(b, blen),
            )
        }
    }

    /// Makes the claimed slots visible to consumers.
    #[inline]
    pub fn publish(mut self) {
        self.do_publish();
    }

    #[inline]
    fn do_publish(&mut self) {
        self.done = true;
        match &mut self.publisher {
            Publisher::Single(next) => {
                self.core.cursor.store(self.end, Ordering::Release);
                **next = self.end;
            }
            Publisher::Multi => self.core.mark_published(self.start, self.end),
        }
        self.core.data.notify();
    }
}

impl<T> Drop for Claim<'_, T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        /// Publishes the claim when dropped, so a factory that panics while the slots are
        /// reset still leaves no hole (a multi-producer claim's sequences are taken: a hole
        /// would stall every consumer, and then every producer, for good).
        struct PublishOnDrop<'c, 'a, T>(&'c mut Claim<'a, T>);
        impl<T> Drop for PublishOnDrop<'_, '_, T> {
            fn drop(&mut self) {
                self.0.do_publish();
            }
        }
        let claim = PublishOnDrop(self);
        for seq in claim.0.start..claim.0.end {
            // SAFETY: the claim is unpublished (`done` is false until `do_publish`) and
            // covers `seq`.
            unsafe { claim.0.core.reset_slot(seq) };
        }
    }
}

impl<T> fmt::Debug for Claim<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claim")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}
