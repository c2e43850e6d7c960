//! Typed failures: [`ConfigError`] when building a pool, [`PoolError`] when asking it for chunks.

use std::fmt;
use std::time::Duration;

/// Why a [`PoolConfig`](crate::PoolConfig) was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The chunk size is not a power of two in `512..=1 GiB`.
    ChunkSize {
        /// The size asked for.
        chunk_size: usize,
    },
    /// The chunk count is zero or above [`MAX_CHUNKS`](crate::MAX_CHUNKS).
    ChunkCount {
        /// The count asked for.
        chunks: usize,
    },
    /// A growable pool's initial size is above its maximum.
    InitialAboveMax {
        /// Chunks to allocate up front.
        initial: usize,
        /// The pool's upper bound.
        max: usize,
    },
    /// The pool's memory does not fit the address space or the allocator refused it.
    OutOfMemory {
        /// Bytes asked of the allocator.
        bytes: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ChunkSize { chunk_size } => write!(
                f,
                "chunk size {chunk_size} is not a power of two between 512 bytes and 1 GiB"
            ),
            Self::ChunkCount { chunks } => write!(
                f,
                "chunk count {chunks} is not between 1 and {}",
                crate::MAX_CHUNKS
            ),
            Self::InitialAboveMax { initial, max } => write!(
                f,
                "initial chunk count {initial} is above the maximum {max}"
            ),
            Self::OutOfMemory { bytes } => {
                write!(f, "could not allocate {bytes} bytes for the pool")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Why a request for chunks failed. The pool is unchanged by a failed request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// A request for zero chunks.
    ZeroChunks,
    /// More chunks than the pool can ever hold: waiting would never end.
    TooLarge {
        /// Chunks asked for.
        requested: usize,
        /// The pool's upper bound in chunks.
        max_chunks: usize,
    },
    /// [`try_allocate`](crate::Pool::try_allocate) only: the chunks are not free right now
    /// (or earlier requests are waiting, which a newcomer never overtakes).
    WouldBlock {
        /// Chunks asked for.
        requested: usize,
        /// Chunks free when the request was refused.
        free: usize,
    },
    /// [`allocate_timeout`](crate::Pool::allocate_timeout) only: the chunks did not become
    /// available in time.
    TimedOut {
        /// Chunks asked for.
        requested: usize,
        /// The timeout given.
        timeout: Duration,
    },
    /// A growable pool needed another slab and the allocator refused it.
    OutOfMemory {
        /// Bytes asked of the allocator.
        bytes: usize,
    },
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroChunks => write!(f, "a request for zero chunks"),
            Self::TooLarge {
                requested,
                max_chunks,
            } => write!(
                f,
                "{requested} chunks requested but the pool never holds more than {max_chunks}"
            ),
            Self::WouldBlock { requested, free } => write!(
                f,
                "{requested} chunks requested, {free} free (or earlier requests waiting)"
            ),
            Self::TimedOut { requested, timeout } => {
                write!(f, "{requested} chunks not available within {timeout:?}")
            }
            Self::OutOfMemory { bytes } => {
                write!(f, "could not grow the pool by {bytes} bytes")
            }
        }
    }
}

impl std::error::Error for PoolError {}
