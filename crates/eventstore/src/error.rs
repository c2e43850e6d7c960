use std::io;
use std::path::PathBuf;

use epoch_pipe::PipeError;
use packed_ascii::PackError;

use crate::Expected;

/// Which name was bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A domain name (1 to 10 characters).
    Domain,
    /// An aggregate type name (1 to 21 characters).
    AggregateType,
    /// An event type name (1 to 21 characters).
    EventType,
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptKind {
    /// The record runs past the end of the data.
    #[error("record cut short")]
    Truncated,
    /// The length word is impossible.
    #[error("impossible record length {len}")]
    BadLength {
        /// The length read.
        len: usize,
    },
    /// The header magic is wrong.
    #[error("bad record magic")]
    BadMagic,
    /// The CRC32C does not match.
    #[error("checksum mismatch")]
    BadChecksum,
    /// An unknown record kind.
    #[error("unknown record kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// Unknown flag bits.
    #[error("unknown record flags {flags:#04x}")]
    UnknownFlags {
        /// The flag byte.
        flags: u8,
    },
    /// A packed name that no name encodes.
    #[error("invalid packed name")]
    BadName,
    /// A record out of the log's order (wrong position, version or unknown stream).
    #[error("record out of order: {what}")]
    OutOfOrder {
        /// What did not follow.
        what: &'static str,
    },
}

/// Why a store stopped accepting appends (see [`StoreError::Failed`]). The first failure
/// is kept: every later append, and `close`, answer with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The durability pipe failed: a write, sync or allocation error, a full disk, or a
    /// panic in the storage.
    #[error("durability pipe: {0}")]
    Pipe(PipeError),
    /// Writing the global position index failed.
    #[error("writing the index {path:?} at byte {offset}: {message}")]
    Index {
        /// The index file.
        path: PathBuf,
        /// Where the batch's entries were to go.
        offset: u64,
        /// The error's kind.
        kind: io::ErrorKind,
        /// The error's text.
        message: String,
    },
    /// No staging memory could be had for a batch.
    #[error("staging a batch of {bytes} bytes: {message}")]
    Staging {
        /// The batch's size.
        bytes: usize,
        /// What the buffer pool said.
        message: String,
    },
    /// One of the store's own threads panicked (a bug in this crate). The appends it held,
    /// and every later one, are answered with the first failure recorded (this one unless
    /// another came first) instead of never; live subscriptions end with it.
    #[error("the store's {thread} thread panicked")]
    Panicked {
        /// `"writer"` or `"completer"`.
        thread: &'static str,
    },
}

/// Where a store keeps its first [`Failure`], shared by its handles and threads (cloning
/// shares it). Every append and every writer batch asks it, so asking a store that has not
/// failed is one load of a flag that is only ever written once, not a lock every appending
/// thread would take.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureSlot(std::sync::Arc<FailureState>);

#[derive(Debug, Default)]
struct FailureState {
    /// Set (after `first`) when a failure is recorded.
    failed: std::sync::atomic::AtomicBool,
    first: std::sync::Mutex<Option<Failure>>,
}

impl FailureSlot {
    /// Records `failure` unless one is recorded already; returns the one that stands (the
    /// first).
    pub(crate) fn record(&self, failure: Failure) -> Failure {
        let mut first = self.0.first.lock().unwrap_or_else(|p| p.into_inner());
        let standing = first.get_or_insert(failure).clone();
        self.0
            .failed
            .store(true, std::sync::atomic::Ordering::Release);
        standing
    }

    /// The recorded failure, if any.
    pub(crate) fn get(&self) -> Option<Failure> {
        if !self.0.failed.load(std::sync::atomic::Ordering::Acquire) {
            return None;
        }
        self.0
            .first
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Everything that can go wrong with a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A name outside the alphabet, empty or too long.
    #[error("invalid {kind:?} name {name:?}: {source}")]
    InvalidName {
        /// Which name.
        kind: NameKind,
        /// The name as given.
        name: String,
        /// What was wrong with it.
        source: PackError,
    },
    /// An append with no events.
    #[error("an append needs at least one event")]
    EmptyAppend,
    /// An event larger than the store's limit.
    #[error("event of {size} bytes (payload + metadata) exceeds the limit of {max} bytes")]
    EventTooLarge {
        /// The event's size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// An append larger than `StoreOptions::max_append_bytes` once encoded.
    #[error("append of {size} bytes (encoded) exceeds the limit of {max} bytes")]
    AppendTooLarge {
        /// Its encoded size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The stream was not at the version the append expected. Nothing was written.
    #[error("stream {stream} expected {expected:?} but is at {actual:?}")]
    WrongExpectedVersion {
        /// The stream, as `domain/aggregate/instance`.
        stream: String,
        /// What the append expected.
        expected: Expected,
        /// The stream's version (`None`: no stream).
        actual: Option<u64>,
    },
    /// Another process has the store open for writing.
    #[error("store {path:?} is locked by another process")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The directory is not a store (or not one this build understands).
    #[error("{path:?} is not an eventstore directory: {reason}")]
    NotAStore {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A store written with a format version this build cannot read.
    #[error("{path:?} has format version {found}, this build reads version {supported}")]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The version this build reads.
        supported: u32,
    },
    /// Damage before the tail of the log (a torn tail is repaired, not reported this way).
    #[error("corrupt record in {path:?} at offset {offset}: {kind}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Byte offset of the record.
        offset: u64,
        /// What is wrong.
        kind: CorruptKind,
    },
    /// An I/O error.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The store failed ([`Failure`] says how): it accepts no more appends; reads keep
    /// working. An append answered with this error is not durable as far as this process
    /// knows; after a restart it may or may not be in the store (its bytes may have reached
    /// the disk before the failure), whole if it is, like a database commit whose answer was
    /// lost.
    #[error("the store failed and is read-only from now on: {0}")]
    Failed(Failure),
    /// The store was closed.
    #[error("the store is closed")]
    Closed,
    /// A configuration value out of range.
    #[error("invalid option {option} = {value}: {expected}")]
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        expected: &'static str,
    },
}

impl StoreError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_slot_keeps_the_first_failure_and_shares_it_with_its_clones() {
        let slot = FailureSlot::default();
        let shared = slot.clone();
        assert_eq!(shared.get(), None, "nothing recorded yet");
        let first = Failure::Panicked { thread: "writer" };
        assert_eq!(slot.record(first.clone()), first);
        let later = Failure::Panicked {
            thread: "completer",
        };
        assert_eq!(shared.record(later), first, "the first one stands");
        assert_eq!(shared.get(), Some(first.clone()));
        assert_eq!(slot.get(), Some(first));
    }
}
