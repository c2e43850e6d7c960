//! [`Allocation`]: an RAII set of chunks, and its views (slices, iovecs, raw pointers).

use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::iter::FusedIterator;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

use crate::pool::{Inner, Locator, Run, release};

/// Chunks taken from a [`Pool`](crate::Pool); they go back to the pool when this is dropped.
///
/// Each chunk is [`chunk_size`](Allocation::chunk_size) bytes and starts on a 4 KiB boundary.
/// Chunks are not contiguous with each other: write them one by one
/// ([`chunks_mut`](Allocation::chunks_mut), [`fill`](Allocation::fill)) and hand them to the
/// kernel as iovecs ([`io_slices`](Allocation::io_slices)) or raw pointers
/// ([`chunk_ptrs`](Allocation::chunk_ptrs)). A chunk holds whatever its previous holder wrote
/// (zeroes when fresh).
///
/// Walking the chunks in order costs O(1) per chunk; [`chunk`](Allocation::chunk)`(i)` walks
/// `i` links.
///
/// The allocation is `Send + Sync + 'static`, and does not borrow the [`Pool`](crate::Pool):
/// it keeps the pool's memory alive on its own, even after the last pool handle is dropped.
pub struct Allocation {
    inner: NonNull<Inner>,
    run: Run,
}

// SAFETY: the allocation owns its chunks exclusively; the shared state is `Sync`.
unsafe impl Send for Allocation {}
// SAFETY: `&Allocation` only gives shared views of the chunks.
unsafe impl Sync for Allocation {}

impl Allocation {
    /// Wraps a run taken from the pool behind `inner`.
    ///
    /// # Safety
    /// `run` was taken from that pool and is owned by nobody else.
    #[inline]
    pub(crate) unsafe fn new(inner: NonNull<Inner>, run: Run) -> Self {
        Self { inner, run }
    }

    #[inline]
    fn state(&self) -> &Inner {
        // SAFETY: the pool's state lives while any of its chunks is out, and we hold some.
        unsafe { self.inner.as_ref() }
    }

    /// Number of chunks.
    #[inline]
    pub fn chunk_count(&self) -> usize {
        self.run.count() as usize
    }

    /// Bytes per chunk.
    #[inline]
    pub fn chunk_size(&self) -> usize {
        self.state().geometry.chunk_size
    }

    /// Bytes in all chunks together.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.chunk_count() * self.chunk_size()
    }

    #[inline]
    fn indices(&self) -> Indices<'_> {
        Indices {
            locator: self.state().locator(),
            current: self.run.first(),
            left: self.run.count(),
            contiguous: self.run.is_contiguous(),
        }
    }

    /// Address of chunk `i`, if there is one.
    fn ptr_of(&self, i: usize) -> Option<NonNull<u8>> {
        let mut indices = self.indices();
        let locator = indices.locator;
        Some(locator.ptr(indices.nth(i)?))
    }

    /// Chunk `i` (`None` past the last chunk).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let ptr = self.ptr_of(i)?;
        // SAFETY: the chunk is `chunk_size` initialised bytes (slabs are zeroed when
        // allocated) owned by this allocation, and `&self` forbids writes through it.
        Some(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.chunk_size()) })
    }

    /// Chunk `i`, writable (`None` past the last chunk).
    pub fn get_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let ptr = self.ptr_of(i)?;
        // SAFETY: as in `get`, and `&mut self` makes this the only view of the chunk.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.chunk_size()) })
    }

    /// Chunk `i`.
    ///
    /// # Panics
    /// If `i >= chunk_count()`.
    #[track_caller]
    pub fn chunk(&self, i: usize) -> &[u8] {
        let count = self.chunk_count();
        match self.get(i) {
            Some(chunk) => chunk,
            None => panic!("chunk {i} of an allocation of {count}"),
        }
    }

    /// Chunk `i`, writable.
    ///
    /// # Panics
    /// If `i >= chunk_count()`.
    #[track_caller]
    pub fn chunk_mut(&mut self, i: usize) -> &mut [u8] {
        let count = self.chunk_count();
        match self.get_mut(i) {
            Some(chunk) => chunk,
            None => panic!("chunk {i} of an allocation of {count}"),
        }
    }

    /// The chunks in order.
    pub fn chunks(&self) -> Chunks<'_> {
        Chunks {
            indices: self.indices(),
            chunk_size: self.chunk_size(),
        }
    }

    /// The chunks in order, writable (all at once: they never overlap).
    pub fn chunks_mut(&mut self) -> ChunksMut<'_> {
        ChunksMut {
            indices: self.indices(),
            chunk_size: self.chunk_size(),
            _borrow: PhantomData,
        }
    }

    /// The start address of each chunk, in order, e.g. for io_uring submissions. Each pointer is
    /// valid for `chunk_size()` bytes while this allocation lives; writing through one needs
    /// the same care as any raw pointer (no live `&` view of that chunk at the time).
    pub fn chunk_ptrs(&self) -> ChunkPtrs<'_> {
        ChunkPtrs {
            indices: self.indices(),
        }
    }

    /// One `IoSlice` per chunk, in order: the whole allocation as an iovec array for `pwritev`.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.chunk_count());
        self.extend_io_slices(self.capacity(), &mut out);
        out
    }

    /// Appends `IoSlice`s covering the first `len` bytes (capped at the capacity) to `out`,
    /// one per chunk touched, the last one possibly short.
    pub fn extend_io_slices<'a>(&'a self, len: usize, out: &mut Vec<IoSlice<'a>>) {
        let mut left = len.min(self.capacity());
        for chunk in self.chunks() {
            if left == 0 {
                break;
            }
            let take = left.min(chunk.len());
            out.push(IoSlice::new(&chunk[..take]));
            left -= take;
        }
    }

    /// One `IoSliceMut` per chunk, in order, e.g. for `preadv` into the allocation.
    pub fn io_slices_mut(&mut self) -> Vec<IoSliceMut<'_>> {
        self.chunks_mut().map(IoSliceMut::new).collect()
    }

    /// Copies `data` into the chunks from the start, spilling from one chunk into the next;
    /// returns the bytes copied (`data.len()` capped at the capacity).
    pub fn fill(&mut self, data: &[u8]) -> usize {
        let mut rest = data;
        for chunk in self.chunks_mut() {
            if rest.is_empty() {
                break;
            }
            let take = rest.len().min(chunk.len());
            chunk[..take].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        data.len() - rest.len()
    }

    /// Splits into single-chunk allocations, in order, each returned to the pool on its own.
    pub fn split(self) -> Split {
        let this = ManuallyDrop::new(self);
        Split {
            inner: this.inner,
            current: this.run.first(),
            last: this.run.last(),
            left: this.run.count(),
            contiguous: this.run.is_contiguous(),
        }
    }
}

impl Drop for Allocation {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: we own the run and never touch it again.
        unsafe { release(self.inner, self.run) };
    }
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocation")
            .field("chunk_count", &self.chunk_count())
            .field("chunk_size", &self.chunk_size())
            .field("first_chunk", &self.state().chunk_ptr(self.run.first()))
            .finish()
    }
}

/// Chunk indices of a run, in order.
#[derive(Clone)]
struct Indices<'a> {
    locator: Locator<'a>,
    current: u32,
    left: u32,
    /// The run is `first, first + 1, ...`: no links to follow.
    contiguous: bool,
}

impl Iterator for Indices<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        let index = self.current;
        self.left -= 1;
        if self.left > 0 {
            // The links inside a run are fixed while it is held.
            self.current = if self.contiguous {
                index + 1
            } else {
                self.locator.next_of(index)
            };
        }
        Some(index)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

/// Iterator over an allocation's chunks, from [`Allocation::chunks`].
#[derive(Clone)]
pub struct Chunks<'a> {
    indices: Indices<'a>,
    chunk_size: usize,
}

impl<'a> Iterator for Chunks<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        let index = self.indices.next()?;
        let ptr = self.indices.locator.ptr(index);
        // SAFETY: an initialised chunk owned by the allocation borrowed for 'a (shared).
        Some(unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.chunk_size) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for Chunks<'_> {}
impl FusedIterator for Chunks<'_> {}

impl fmt::Debug for Chunks<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chunks")
            .field("left", &self.indices.left)
            .finish()
    }
}

/// Iterator over an allocation's chunks, writable, from [`Allocation::chunks_mut`].
pub struct ChunksMut<'a> {
    indices: Indices<'a>,
    chunk_size: usize,
    _borrow: PhantomData<&'a mut [u8]>,
}

impl<'a> Iterator for ChunksMut<'a> {
    type Item = &'a mut [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a mut [u8]> {
        let index = self.indices.next()?;
        let ptr = self.indices.locator.ptr(index);
        // SAFETY: an initialised chunk owned by the allocation borrowed mutably for 'a; each
        // index comes up once and chunks never overlap, so the slices are disjoint.
        Some(unsafe { std::slice::from_raw_parts_mut(ptr.as_ptr(), self.chunk_size) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for ChunksMut<'_> {}
impl FusedIterator for ChunksMut<'_> {}

impl fmt::Debug for ChunksMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunksMut")
            .field("left", &self.indices.left)
            .finish()
    }
}

/// Iterator over an allocation's chunk addresses, from [`Allocation::chunk_ptrs`].
#[derive(Clone)]
pub struct ChunkPtrs<'a> {
    indices: Indices<'a>,
}

impl Iterator for ChunkPtrs<'_> {
    type Item = NonNull<u8>;

    #[inline]
    fn next(&mut self) -> Option<NonNull<u8>> {
        let index = self.indices.next()?;
        Some(self.indices.locator.ptr(index))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

impl ExactSizeIterator for ChunkPtrs<'_> {}
impl FusedIterator for ChunkPtrs<'_> {}

impl fmt::Debug for ChunkPtrs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkPtrs")
            .field("left", &self.indices.left)
            .finish()
    }
}

/// Single-chunk allocations split off an allocation, from [`Allocation::split`]. Chunks not
/// yet taken go back to the pool when this is dropped.
pub struct Split {
    inner: NonNull<Inner>,
    current: u32,
    last: u32,
    left: u32,
    contiguous: bool,
}

// SAFETY: owns the chunks not yet handed out, like an `Allocation`.
unsafe impl Send for Split {}
// SAFETY: `&Split` gives no access to anything.
unsafe impl Sync for Split {}

impl Iterator for Split {
    type Item = Allocation;

    fn next(&mut self) -> Option<Allocation> {
        if self.left == 0 {
            return None;
        }
        let index = self.current;
        self.left -= 1;
        if self.left > 0 {
            // Read the link before the chunk is handed out (its holder may release it).
            self.current = if self.contiguous {
                index + 1
            } else {
                // SAFETY: the pool's state lives while we hold chunks, and we hold `index`.
                unsafe { self.inner.as_ref() }.next_of(index)
            };
        }
        let run = Run::contiguous(index, 1);
        // SAFETY: `index` belonged to the split allocation and is handed out exactly once.
        Some(unsafe { Allocation::new(self.inner, run) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left as usize, Some(self.left as usize))
    }
}

impl ExactSizeIterator for Split {}
impl FusedIterator for Split {}

impl Drop for Split {
    fn drop(&mut self) {
        if self.left > 0 {
            let rest = if self.contiguous {
                Run::contiguous(self.current, self.left)
            } else {
                Run::new(self.current, self.last, self.left)
            };
            // SAFETY: the chunks not handed out are still ours, linked from `current` to `last`.
            unsafe { release(self.inner, rest) };
        }
    }
}

impl fmt::Debug for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Split").field("left", &self.left).finish()
    }
}
