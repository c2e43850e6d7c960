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
