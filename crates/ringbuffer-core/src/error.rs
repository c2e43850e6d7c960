//! The one error type of the crate.

use std::fmt;

/// Everything that can go wrong when building or using a ring. No operation of this crate
/// panics or hangs on bad input: it returns one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The requested capacity is zero.
    ZeroCapacity,
    /// The requested capacity is not a power of two (slot lookup is a mask).
    CapacityNotPowerOfTwo {
        /// The capacity asked for.
        capacity: usize,
    },
    /// The requested capacity does not fit the sequence space (2^61 slots or more), or its
    /// slots could not be allocated (more bytes than the address space holds, or the
    /// allocator refused them).
    CapacityTooLarge {
        /// The capacity asked for.
        capacity: usize,
    },
    /// A claim (or a work-sharing batch limit) of zero slots.
    ZeroClaim,
    /// A work-sharing ring asked for zero consumers.
    ZeroConsumers,
    /// More consumer handles asked for than can be allocated.
    TooManyConsumers {
        /// The number asked for.
        requested: usize,
    },
    /// A claim (or a batch limit) larger than the ring.
    ClaimTooLarge {
        /// Slots asked for.
        requested: usize,
        /// Slots in the ring.
        capacity: usize,
    },
    /// The ring is closed: for a producer, nobody will read what it writes (or it closed
    /// itself); for a consumer, everything published before the close has been read.
    Closed,
    /// `try_claim`: not enough free slots right now.
    Full,
    /// `try_read`: nothing published since the last read.
    Empty,
    /// A `*_timeout` call gave up.
    Timeout,
    /// A broadcast consumer fell a whole ring behind and was evicted so it no longer gates
    /// the producer. Entries from `missed_from` on are no longer available from the ring;
    /// call `resubscribe` to follow live entries again (and fetch the gap elsewhere).
    Lagged {
        /// First sequence this consumer did not read.
        missed_from: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroCapacity => f.write_str("ring capacity must not be zero"),
            Self::CapacityNotPowerOfTwo { capacity } => {
                write!(f, "ring capacity {capacity} is not a power of two")
            }
            Self::CapacityTooLarge { capacity } => {
                write!(
                    f,
                    "ring capacity {capacity} is too large (2^61 slots or more, or its slots could not be allocated)"
                )
            }
            Self::ZeroClaim => f.write_str("a claim must cover at least one slot"),
            Self::ZeroConsumers => f.write_str("a work-sharing ring needs at least one consumer"),
            Self::TooManyConsumers { requested } => {
                write!(f, "{requested} consumer handles cannot be allocated")
            }
            Self::ClaimTooLarge {
                requested,
                capacity,
            } => {
                write!(
                    f,
                    "claim of {requested} slots exceeds the ring capacity {capacity}"
                )
            }
            Self::Closed => f.write_str("the ring is closed"),
            Self::Full => f.write_str("the ring has no room for the claim right now"),
            Self::Empty => f.write_str("nothing new has been published"),
            Self::Timeout => f.write_str("timed out"),
            Self::Lagged { missed_from } => {
                write!(
                    f,
                    "consumer fell a whole ring behind; entries from sequence {missed_from} were missed"
                )
            }
        }
    }
}

impl std::error::Error for Error {}
