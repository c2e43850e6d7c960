//! The storage seam: the pipe writes through [`Storage`], so a real file ([`FileStorage`]) and a
//! simulated disk with crashes and injected faults ([`SimDisk`]) are interchangeable.

mod file;
mod sim;
mod uring;

use std::io;
use std::sync::Arc;

pub use file::{Backend, FileOptions, FileStorage, sync_parent_dir};
pub use sim::{CrashMode, Fault, SimDisk};

/// Positioned writes, a data sync, growth and reads: all the pipe needs from a file.
///
/// Implementations are shared between the flusher and the sync workers, hence `Sync`.
pub trait Storage: Send + Sync + 'static {
    /// Writes `buffers`, one after the other, starting at byte `offset`. Returns the bytes
    /// written; fewer than the total is a short write, which the pipe treats as a failure.
    fn write_vectored_at(&self, offset: u64, buffers: &[io::IoSlice<'_>]) -> io::Result<usize>;

    /// Makes every write that returned before this call durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;

    /// Makes sure the file is at least `len` bytes long with its blocks reserved, so later
    /// writes below `len` need no metadata update to be durable.
    fn allocate(&self, len: u64) -> io::Result<()>;

    /// Reads into `buffer` from byte `offset`; returns the bytes read (0 at the end).
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize>;

    /// The current length of the file in bytes.
    fn len(&self) -> io::Result<u64>;

    /// True when the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// Implements [`Storage`] for a pointer type by forwarding to what it points to.
macro_rules! forward_storage {
    ($(#[$doc:meta])* $pointer:ident) => {
        $(#[$doc])*
        impl<S: Storage + ?Sized> Storage for $pointer<S> {
            fn write_vectored_at(
                &self,
                offset: u64,
                buffers: &[io::IoSlice<'_>],
            ) -> io::Result<usize> {
                (**self).write_vectored_at(offset, buffers)
            }
            fn sync_data(&self) -> io::Result<()> {
                (**self).sync_data()
            }
            fn allocate(&self, len: u64) -> io::Result<()> {
                (**self).allocate(len)
            }
            fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
                (**self).read_at(offset, buffer)
            }
            fn len(&self) -> io::Result<u64> {
                (**self).len()
            }
        }
    };
}

forward_storage!(
    /// A boxed storage is a storage: lets a pipe write through a wrapper chosen at run time
    /// (the store's tests put a power-loss simulator in front of the real file this way).
    Box
);
forward_storage!(
    /// A shared storage is a storage: the pipe and its owner (reads, tests) can hold one.
    Arc
);
