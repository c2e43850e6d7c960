//! Interop with [`bytes`]: freeze filled chunks into [`Bytes`] without copying.

use bytes::Bytes;

use crate::Allocation;

/// A single-chunk allocation seen as its first `len` bytes: the owner behind a frozen `Bytes`.
struct Frozen {
    chunk: Allocation,
    len: usize,
}

impl AsRef<[u8]> for Frozen {
    fn as_ref(&self) -> &[u8] {
        &self.chunk.chunk(0)[..self.len]
    }
}

impl Allocation {
    /// Freezes the first `len` bytes of a single-chunk allocation into [`Bytes`], without
    /// copying. The chunk goes back to the pool when the last clone of the `Bytes` is dropped.
    ///
    /// # Panics
    /// If the allocation has more than one chunk (see [`Allocation::freeze`]), or if `len` is
    /// above the chunk size.
    #[track_caller]
    pub fn into_bytes(self, len: usize) -> Bytes {
        assert!(
            self.chunk_count() == 1,
            "into_bytes needs a single-chunk allocation, this one has {} (use freeze)",
            self.chunk_count()
        );
        assert!(
            len <= self.chunk_size(),
            "length {len} is above the chunk size {}",
            self.chunk_size()
        );
        Bytes::from_owner(Frozen { chunk: self, len })
    }

    /// Freezes the first `len` bytes into one [`Bytes`] per chunk they touch (the last one
    /// possibly short), without copying. Each chunk goes back to the pool when the last clone
    /// of its `Bytes` is dropped; chunks past `len` go back at once.
    ///
    /// # Panics
    /// If `len` is above [`Allocation::capacity`].
    #[track_caller]
    pub fn freeze(self, len: usize) -> Vec<Bytes> {
        assert!(
            len <= self.capacity(),
            "length {len} is above the allocation's capacity {}",
            self.capacity()
        );
        let chunk_size = self.chunk_size();
        let mut left = len;
        let mut out = Vec::with_capacity(len.div_ceil(chunk_size));
        for chunk in self.split() {
            if left == 0 {
                break;
            }
            let take = left.min(chunk_size);
            left -= take;
            out.push(Bytes::from_owner(Frozen { chunk, len: take }));
        }
        out
    }
}
