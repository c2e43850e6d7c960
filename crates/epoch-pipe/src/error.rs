use std::fmt;
use std::io;

/// The operation an I/O error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Writing data at an offset.
    Write,
    /// `fdatasync` (or its simulation).
    Sync,
    /// Growing the file (`fallocate`).
    Allocate,
    /// Reading back.
    Read,
}

/// Why a pipe operation failed.
///
/// After any write, sync or allocate error the pipe is *failed* for good: every epoch that was
/// not acknowledged before the error returns it, and so does every later write. The error is
/// `Clone` so that every waiter receives the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PipeError {
    /// An I/O error from the storage.
    Io {
        /// What the pipe was doing.
        operation: Operation,
        /// Byte offset of the write or read (0 for a sync).
        offset: u64,
        /// The error's kind.
        kind: io::ErrorKind,
        /// The OS error code, when there is one.
        os_code: Option<i32>,
        /// The error's text.
        message: String,
    },
    /// The file system is full (`ENOSPC`, `EDQUOT`).
    NoSpace {
        /// What the pipe was doing.
        operation: Operation,
        /// Byte offset of the write or allocation.
        offset: u64,
        /// Bytes it tried to write or allocate.
        len: u64,
    },
    /// The storage stopped taking data: a write call wrote nothing (or claimed more than it
    /// was given) and gave no error. A call that writes part of what it was given is no
    /// error: the pipe writes the rest with further calls.
    ShortWrite {
        /// Byte offset of the write.
        offset: u64,
        /// Bytes asked for.
        expected: u64,
        /// Bytes written.
        written: u64,
    },
    /// A write larger than the pipe accepts, or one that would overflow the file offset.
    TooLarge {
        /// Bytes in the write.
        len: u64,
        /// The most one write may hold.
        max: u64,
    },
    /// An empty write or transaction.
    Empty,
    /// The epoch was never handed out by this pipe.
    UnknownEpoch {
        /// The epoch asked about.
        epoch: u64,
        /// The newest epoch handed out.
        newest: u64,
    },
    /// The pipe was closed before the write was staged.
    Closed,
    /// A thread of the pipe panicked (in a `Storage` or `Payload` implementation, or a task's
    /// waker): the pipe is failed, as after an I/O error, so blocked waiters get this instead
    /// of waiting forever.
    Panicked {
        /// Which thread: `"flusher"`, `"sync worker"` or `"publisher"`.
        thread: &'static str,
    },
}

impl PipeError {
    pub(crate) fn from_io(operation: Operation, offset: u64, len: u64, error: &io::Error) -> Self {
        let os_code = error.raw_os_error();
        if is_no_space(error) {
            return PipeError::NoSpace {
                operation,
                offset,
                len,
            };
        }
        PipeError::Io {
            operation,
            offset,
            kind: error.kind(),
            os_code,
            message: error.to_string(),
        }
    }
}

impl fmt::Display for PipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipeError::Io {
                operation,
                offset,
                message,
                ..
            } => {
                write!(f, "{operation:?} at offset {offset} failed: {message}")
            }
            PipeError::NoSpace {
                operation,
                offset,
                len,
            } => {
                write!(
                    f,
                    "{operation:?} of {len} bytes at offset {offset}: no space left on device"
                )
            }
            PipeError::ShortWrite {
                offset,
                expected,
                written,
            } => {
                write!(
                    f,
                    "short write at offset {offset}: {written} of {expected} bytes written"
                )
            }
            PipeError::TooLarge { len, max } => {
                write!(
                    f,
                    "write of {len} bytes is larger than the {max} bytes allowed"
                )
            }
            PipeError::Empty => f.write_str("empty write or transaction"),
            PipeError::UnknownEpoch { epoch, newest } => {
                write!(f, "epoch {epoch} was never handed out (newest is {newest})")
            }
            PipeError::Closed => f.write_str("the pipe is closed"),
            PipeError::Panicked { thread } => {
                write!(f, "the pipe's {thread} thread panicked; the pipe is failed")
            }
        }
    }
}

impl std::error::Error for PipeError {}

/// Whether `error` says the storage is out of room (`ENOSPC`, a quota's `EDQUOT`).
pub(crate) fn is_no_space(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOSPC) | Some(libc::EDQUOT)
    ) || error.kind() == io::ErrorKind::StorageFull
}
