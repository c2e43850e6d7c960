//! How a pool is shaped: chunk size, memory bound, and how it grows.

use crate::error::ConfigError;
use crate::pool::{ALIGN, MAX_CHUNKS};

/// The smallest chunk size accepted.
pub const MIN_CHUNK_SIZE: usize = 512;
/// The largest chunk size accepted (1 GiB).
pub const MAX_CHUNK_SIZE: usize = 1 << 30;
/// The default chunk size: one 4 KiB page, the usual `O_DIRECT` block.
pub const DEFAULT_CHUNK_SIZE: usize = 4096;

/// The shape of a [`Pool`](crate::Pool).
///
/// Build one with [`PoolConfig::fixed`] (all memory allocated up front: the chunk count is a
/// hard bound) or [`PoolConfig::growable`] (starts with `initial` chunks and grows one slab at a
/// time, never past `max`), then adjust it with the `with_*` methods.
///
/// Every chunk starts on a 4 KiB boundary. A chunk smaller than 4 KiB (512, 1024 or 2048 bytes)
/// still occupies a 4 KiB stride so that it stays 4 KiB-aligned: small chunks trade memory for
/// alignment, and [`PoolStats::reserved_bytes`](crate::PoolStats::reserved_bytes) shows what
/// they cost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Bytes per chunk: a power of two in `512..=1 GiB` (default 4096).
    pub chunk_size: usize,
    /// The most chunks the pool ever holds (`1..=MAX_CHUNKS`).
    pub max_chunks: usize,
    /// Chunks allocated when the pool is built (equal to `max_chunks` for a fixed pool); a
    /// growable pool rounds it up to whole slabs.
    pub initial_chunks: usize,
    /// Chunks per growth step of a growable pool (rounded up to a power of two, at most the
    /// pool's size). Default (and 0): as many as fill 256 KiB.
    pub slab_chunks: usize,
    /// Keep a few per-thread slots, each parking one freed run for the next request of the
    /// same thread (default `true`). They spare threads from contending on the shared free
    /// list; the slow path drains them, so they never hide chunks from a waiting request. The
    /// high-water mark counts parked chunks as in use.
    pub thread_slots: bool,
}

impl PoolConfig {
    /// A fixed pool of `chunks` chunks of 4 KiB, all allocated up front.
    pub fn fixed(chunks: usize) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_chunks: chunks,
            initial_chunks: chunks,
            slab_chunks: 0,
            thread_slots: true,
        }
    }

    /// A growable pool of 4 KiB chunks: `initial` chunks up front, growing up to `max`.
    pub fn growable(initial: usize, max: usize) -> Self {
        Self {
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_chunks: max,
            initial_chunks: initial,
            slab_chunks: 0,
            thread_slots: true,
        }
    }

    /// Sets the chunk size (a power of two, at least 512).
    #[must_use]
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets the growth step of a growable pool, in chunks.
    #[must_use]
    pub fn with_slab_chunks(mut self, slab_chunks: usize) -> Self {
        self.slab_chunks = slab_chunks;
        self
    }

    /// Turns the per-thread slots on or off (see [`PoolConfig::thread_slots`]).
    #[must_use]
    pub fn with_thread_slots(mut self, on: bool) -> Self {
        self.thread_slots = on;
        self
    }

    /// True when all the memory is allocated up front.
    pub fn is_fixed(&self) -> bool {
        self.initial_chunks >= self.max_chunks
    }

    /// Checks the configuration and derives the pool's geometry.
    pub(crate) fn geometry(&self) -> Result<Geometry, ConfigError> {
        let chunk_size = self.chunk_size;
        if !chunk_size.is_power_of_two() || !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size)
        {
            return Err(ConfigError::ChunkSize { chunk_size });
        }
        if self.max_chunks == 0 || self.max_chunks > MAX_CHUNKS {
            return Err(ConfigError::ChunkCount {
                chunks: self.max_chunks,
            });
        }
        if self.initial_chunks > self.max_chunks {
            return Err(ConfigError::InitialAboveMax {
                initial: self.initial_chunks,
                max: self.max_chunks,
            });
        }
        let stride = chunk_size.max(ALIGN);
        let max_bytes = stride.saturating_mul(self.max_chunks);
        if max_bytes > isize::MAX as usize - ALIGN {
            return Err(ConfigError::OutOfMemory { bytes: max_bytes });
        }
        let max_pow2 = self.max_chunks.next_power_of_two();
        let slab_chunks = if self.is_fixed() {
            max_pow2
        } else {
            let wanted = match self.slab_chunks {
                0 => ((256 * 1024) / stride).max(1),
                n => n,
            };
            // Capped first: a power of two above `usize::MAX / 2` does not exist.
            wanted.min(max_pow2).next_power_of_two()
        };
        let slab_shift = slab_chunks.trailing_zeros();
        let slabs = self.max_chunks.div_ceil(slab_chunks);
        let initial_slabs = self.initial_chunks.div_ceil(slab_chunks);
        Ok(Geometry {
            chunk_size,
            stride_shift: stride.trailing_zeros(),
            slab_shift,
            max_chunks: self.max_chunks as u32,
            slabs,
            initial_slabs,
            slots: if self.thread_slots {
                crate::sync::slot_count()
            } else {
                0
            },
        })
    }
}

impl Default for PoolConfig {
    /// A fixed pool of 1024 chunks of 4 KiB (4 MiB).
    fn default() -> Self {
        Self::fixed(1024)
    }
}

/// The derived, validated shape of a pool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) chunk_size: usize,
    /// log2 of the distance between chunk starts (`max(chunk_size, 4096)`).
    pub(crate) stride_shift: u32,
    /// log2 of the chunks per slab.
    pub(crate) slab_shift: u32,
    pub(crate) max_chunks: u32,
    /// Slabs the pool can hold.
    pub(crate) slabs: usize,
    /// Slabs allocated up front.
    pub(crate) initial_slabs: usize,
    /// Per-thread slots: zero or a power of two.
    pub(crate) slots: usize,
}

impl Geometry {
    pub(crate) fn stride(&self) -> usize {
        1 << self.stride_shift
    }

    pub(crate) fn slab_chunks(&self) -> u32 {
        1 << self.slab_shift
    }

    /// Chunks in slab `slab` (the last one may be short).
    pub(crate) fn chunks_in_slab(&self, slab: usize) -> u32 {
        let start = (slab as u32) << self.slab_shift;
        self.slab_chunks().min(self.max_chunks - start)
    }
}
