//! An embedded event store: SQLite for event sourcing.
//!
//! Open a directory, append immutable events to streams named Domain -> Aggregate type ->
//! Aggregate instance, with optimistic concurrency; read a stream back or the whole store in
//! one global order; follow new events as they become durable. Every append acknowledged as
//! durable survives a crash: appends from many threads are group-committed (one `fdatasync`
//! for everything that arrived together).
//!
//! ```
//! use eventstore::{AppendItem, Event, Expected, Store, StoreError};
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path())?;
//! let accounts = store.domain("bank")?.aggregate("account")?;
//! let alice = accounts.instance(1u128);
//! let bob = accounts.instance(2u128);
//!
//! alice.append(Expected::NoStream, &[Event::new("opened", b"alice".to_vec())])?;
//! bob.append(Expected::NoStream, &[Event::new("opened", b"bob".to_vec())])?;
//!
//! // Optimistic concurrency: a stale expectation is refused and writes nothing.
//! let stale = alice.append(Expected::NoStream, &[Event::new("opened", b"again".to_vec())]);
//! assert!(matches!(stale, Err(StoreError::WrongExpectedVersion { actual: Some(0), .. })));
//!
//! // Several streams, atomically.
//! store.append_multi(&[
//!     AppendItem { stream: &alice, expected: Expected::Exact(0), events: &[Event::new("debited", b"10".to_vec())] },
//!     AppendItem { stream: &bob, expected: Expected::Exact(0), events: &[Event::new("credited", b"10".to_vec())] },
//! ])?;
//!
//! assert_eq!(alice.read_from(0)?.len(), 2);
//! let all = store.read_all(0, 100)?;
//! assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [0, 1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Map
//! - [`store`](Store): the API and opening/recovery ([`Store`], [`Domain`], [`AggregateType`],
//!   [`Stream`], [`Subscription`], [`StoreOptions`], [`RecoveryReport`]).
//! - `writer`: the single writer (expected versions, positions, encoding) and the completer
//!   (durability, visibility, replies); `reply`: answers, a batch of appenders woken at once.
//! - [`record`]: the record codec; `state`: the stream table, checkpoints, tail replay;
//!   `log`: memory-mapped reads; `files`: the directory, its marker and its lock; `scan`:
//!   where the bytes past the log's end stop being zero (opening), without reading holes.
//! - [`Event`], [`RecordedEvent`], [`Expected`], [`Receipt`]; [`StoreError`].
//!
//! The on-disk format is described in `docs/FORMAT.md`.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod error;
mod event;
mod files;
mod log;
pub mod record;
mod reply;
mod scan;
mod state;
mod store;
mod writer;

pub use error::{CorruptKind, Failure, NameKind, Result, StoreError};
pub use event::{Event, EventView, Expected, Receipt, RecordedEvent};
pub use files::FORMAT_VERSION;
pub use record::StreamKey;
#[doc(hidden)]
pub use state::{Committed, TailReplay, decode_checkpoint, encode_checkpoint, replay_tail};
pub use store::{
    AggregateType, AppendItem, Domain, PendingAppend, RecoveryReport, StorageHook, Store,
    StoreOptions, Stream, Subscription, TestHook,
};
