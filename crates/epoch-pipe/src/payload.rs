//! What a write carries: anything that can lend its bytes as `IoSlice`s until it is written.

use std::io::IoSlice;

/// Bytes handed to the pipe. The pipe owns the payload until its data is written, then drops it
/// (returning pooled chunks to their pool).
pub trait Payload: Send + 'static {
    /// Total bytes.
    fn len(&self) -> usize;

    /// True when there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the payload's buffers, in order, to `out`.
    fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>);
}

impl Payload for Vec<u8> {
    fn len(&self) -> usize {
        self.len()
    }
    fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.push(IoSlice::new(self));
    }
}

impl Payload for Box<[u8]> {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.push(IoSlice::new(self));
    }
}

impl Payload for &'static [u8] {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        out.push(IoSlice::new(self));
    }
}

/// Chunks of a [`buffer_pool::Pool`] holding `len` bytes: the zero-copy way to hand staged
/// bytes to the pipe. The chunks go back to their pool once written (backpressure for
/// whoever fills them), and, being 4 KiB-aligned, suit `O_DIRECT`.
///
/// ```
/// use buffer_pool::Pool;
/// use epoch_pipe::{Pipe, PipeConfig, PooledPayload, SimDisk};
///
/// let pool = Pool::fixed(4096, 8)?;
/// let mut chunks = pool.allocate(2)?;
/// chunks.fill(&[7u8; 5000]);
/// let pipe = Pipe::new(SimDisk::new(), PipeConfig::default())?;
/// let epoch = pipe.write(PooledPayload::new(chunks, 5000), 0)?;
/// pipe.wait_durable(epoch)?;
/// assert_eq!(pool.stats().free_chunks, 8, "written chunks went back to the pool");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct PooledPayload {
    allocation: buffer_pool::Allocation,
    len: usize,
}

impl PooledPayload {
    /// The first `len` bytes of `allocation` (capped at its capacity).
    pub fn new(allocation: buffer_pool::Allocation, len: usize) -> PooledPayload {
        let len = len.min(allocation.capacity());
        PooledPayload { allocation, len }
    }
}

impl Payload for PooledPayload {
    fn len(&self) -> usize {
        self.len
    }
    fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
        self.allocation.extend_io_slices(self.len, out);
    }
}
