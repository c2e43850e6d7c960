//! What the pool's memory is doing: [`PoolStats`].

/// A snapshot of a pool's use, from [`Pool::stats`](crate::Pool::stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Bytes per chunk.
    pub chunk_size: usize,
    /// Distance between chunk starts: `max(chunk_size, 4096)`, so every chunk is 4 KiB-aligned.
    pub chunk_stride: usize,
    /// Chunks the pool holds now (allocated slabs).
    pub total_chunks: usize,
    /// Chunks free now.
    pub free_chunks: usize,
    /// The most chunks the pool may ever hold (the memory budget).
    pub max_chunks: usize,
    /// Requests waiting for chunks.
    pub waiters: usize,
    /// The most chunks that were in use at once.
    pub high_water_chunks: usize,
}

impl PoolStats {
    /// Chunks handed out now.
    pub fn in_use_chunks(&self) -> usize {
        self.total_chunks.saturating_sub(self.free_chunks)
    }

    /// Usable bytes of all chunks the pool holds.
    pub fn total_bytes(&self) -> usize {
        self.total_chunks * self.chunk_size
    }

    /// Usable bytes of the free chunks.
    pub fn free_bytes(&self) -> usize {
        self.free_chunks * self.chunk_size
    }

    /// Usable bytes handed out now.
    pub fn in_use_bytes(&self) -> usize {
        self.in_use_chunks() * self.chunk_size
    }

    /// Usable bytes at the high-water mark.
    pub fn high_water_bytes(&self) -> usize {
        self.high_water_chunks * self.chunk_size
    }

    /// The memory budget in usable bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_chunks * self.chunk_size
    }

    /// Memory the pool has taken from the allocator (chunks times stride).
    pub fn reserved_bytes(&self) -> usize {
        self.total_chunks * self.chunk_stride
    }
}
