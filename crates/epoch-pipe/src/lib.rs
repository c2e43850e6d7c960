//! Background durability for positioned file writes, with group commit.
//!
//! A [`Pipe`] takes writes ("these bytes at this chunk index"), stages them and returns an
//! [`Epoch`] at once. A flusher thread writes everything staged in one go (coalescing adjacent
//! writes into `pwritev`), and sync workers make each group durable with one `fdatasync`. A
//! caller that needs durability waits for its epoch ([`Pipe::wait_durable`], or the future
//! [`Pipe::durable`]); writers that don't wait never block on an fsync.
//!
//! # The epoch contract
//! - Epochs are handed out in staging order; epoch `e` durable means every write with an
//!   epoch `<= e` is on stable storage.
//! - A write is acknowledged only by a sync that started after the write returned.
//! - Two writes to the same offset land in submission order.
//! - A [`Transaction`]'s writes share one epoch and one group: durable together. Until that
//!   epoch is durable, any part of them may reach the disk (writeback goes sector by sector,
//!   in any order) and a crash may keep any subset; after a write or sync failure the pipe
//!   stops, but what was written stays readable and may still be written back. Callers
//!   that need all-or-nothing frame each transaction with a checksum over the whole
//!   transaction (the event store's batch commit record does this) and discard one whose
//!   checksum fails on recovery.
//!
//! # Failure semantics (fail-stop)
//! Any write, sync or allocate error moves the pipe to a failed state for good (a write call
//! that writes only part of its bytes is finished by further calls; one that writes nothing
//! is [`PipeError::ShortWrite`], a full disk [`PipeError::NoSpace`]): epochs not
//! acknowledged before it return that [`PipeError`], every later write returns it, and the
//! durable epoch never moves again, even if a later sync succeeds (after a failed `fsync`
//! Linux may have dropped the dirty pages, so a retry proves nothing). Reads through
//! [`Pipe::storage`] keep working. A panic on one of the pipe's threads (in a [`Storage`] or
//! [`Payload`] implementation) fails it the same way, with [`PipeError::Panicked`].
//!
//! # Map
//! - [`pipe`](Pipe): staging, flusher, sync workers, waiting ([`Pipe`], [`Transaction`],
//!   [`Durable`], [`PipeConfig`]).
//! - [`Storage`]: the seam; [`FileStorage`] (pwritev, fdatasync, fallocate, optional
//!   O_DIRECT) and [`SimDisk`] (unsynced data kept apart, crashes, faults on cue).
//! - [`Payload`]: what a write carries (`Vec<u8>`, boxed slices, pooled chunks).
//! - [`PipeError`]: typed failures; [`StartError`]: why [`Pipe::new`] did not start (a bad
//!   [`PipeConfig`], or a thread the system refused: nothing is left running).
//! - [`WakeWord`]: the futex word blocked waiters sleep on (one call wakes a whole group),
//!   also for owners that answer their own callers in groups.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod error;
mod payload;
mod pipe;
mod spin;
mod storage;
mod sync;

pub use error::{Operation, PipeError};
pub use payload::{Payload, PooledPayload};
pub use pipe::{ConfigError, Durable, Epoch, Pipe, PipeConfig, PipeStats, StartError, Transaction};
pub use storage::{
    Backend, CrashMode, Fault, FileOptions, FileStorage, SimDisk, Storage, sync_parent_dir,
};
pub use sync::{ALL_TAGS, WakeWord};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
