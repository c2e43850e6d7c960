//! io_uring submission of writes and data syncs, used by [`super::FileStorage`] where the
//! kernel allows it (probed at open: a ring is created and a no-op round-trips).

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use io_uring::{IoUring, opcode, squeue, types};

/// Entries per ring: each operation uses one at a time.
const RING_ENTRIES: u32 = 8;

/// A free list of rings: each operation takes one, so the flusher and the sync workers submit
/// concurrently without sharing a ring.
#[derive(Default)]
pub(crate) struct Rings {
    free: Mutex<Vec<IoUring>>,
}

impl std::fmt::Debug for Rings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rings")
    }
}

impl Rings {
    /// Rings if this kernel (and its seccomp policy and `io_uring_disabled` sysctl) allows them.
    pub(crate) fn probe() -> io::Result<Rings> {
        let rings = Rings::default();
        let mut ring = IoUring::new(RING_ENTRIES)?;
        let result = Rings::submit(&mut ring, opcode::Nop::new().build())?;
        if result < 0 {
            return Err(io::Error::from_raw_os_error(-result));
        }
        rings.give_back(ring);
        Ok(rings)
    }

    fn give_back(&self, ring: IoUring) {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ring);
    }

    /// Submits `entry` on a free ring and waits for its completion; returns the CQE result
    /// (a negative one as the error it stands for), or `None` when no ring is free and a new
    /// one cannot be made (locked-memory limit, file descriptors): not an I/O failure, so the
    /// caller uses the plain system call instead.
    fn run(&self, entry: squeue::Entry) -> Option<io::Result<u32>> {
        let taken = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut ring = match taken {
            Some(ring) => ring,
            None => IoUring::new(RING_ENTRIES).ok()?,
        };
        // A ring whose submission failed is dropped, not reused.
        let result = Rings::submit(&mut ring, entry);
        if result.is_ok() {
            self.give_back(ring);
        }
        Some(result.and_then(|result| {
            u32::try_from(result).map_err(|_| io::Error::from_raw_os_error(-result))
        }))
    }

    fn submit(ring: &mut IoUring, entry: squeue::Entry) -> io::Result<i32> {
        // SAFETY: the entry's buffers (if any) are owned by the caller of `write_vectored` and
        // outlive this call, which does not return before the operation's completion is reaped
        // (or before the kernel refused the submission, in which case it never started).
        unsafe { ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        let mut failure = None;
        loop {
            match ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
                    ) => {}
                // The kernel never took the entry: it never started, nothing borrows the
                // caller's buffers, the error can be returned.
                Err(error) if !ring.submission().is_empty() => return Err(error),
                // The entry was taken: its buffers stay borrowed until it completes, so keep
                // waiting for its completion, then report the error.
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
            if let Some(completion) = ring.completion().next() {
                return match failure {
                    Some(error) => Err(error),
                    None => Ok(completion.result()),
                };
            }
        }
    }

    /// `pwritev` through the ring (`None`: no ring to be had, see [`Rings::run`]).
    pub(crate) fn write_vectored(
        &self,
        fd: RawFd,
        offset: u64,
        buffers: &[io::IoSlice<'_>],
    ) -> Option<io::Result<usize>> {
        let count = u32::try_from(buffers.len()).unwrap_or(u32::MAX);
        // `IoSlice` is ABI-compatible with `iovec` on Unix (std guarantees it).
        let entry = opcode::Writev::new(types::Fd(fd), buffers.as_ptr().cast(), count)
            .offset(offset)
            .build();
        self.run(entry)
            .map(|result| result.map(|written| written as usize))
    }

    /// `fdatasync` through the ring (`None`: no ring to be had, see [`Rings::run`]).
    pub(crate) fn sync_data(&self, fd: RawFd) -> Option<io::Result<()>> {
        let entry = opcode::Fsync::new(types::Fd(fd))
            .flags(types::FsyncFlags::DATASYNC)
            .build();
        self.run(entry).map(|result| result.map(drop))
    }
}
