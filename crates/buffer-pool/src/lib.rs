//! A pool of fixed-size, 4 KiB-aligned chunks: the event store's memory budget for staged
//! writes, and its backpressure.
//!
//! A [`Pool`] hands out [`Allocation`]s of `n` chunks; they go back when dropped. Chunks are a
//! power of two in size (at least 512 bytes, default 4 KiB) and each starts on a 4 KiB boundary,
//! so they can go straight to `O_DIRECT` writes and io_uring. Writers fill them as `&mut [u8]`
//! ([`Allocation::chunks_mut`], [`Allocation::fill`]); the I/O side reads them as iovecs
//! ([`Allocation::io_slices`]) or raw pointers ([`Allocation::chunk_ptrs`]).
//!
//! # Guarantees
//! - **All or nothing**: a request for `n` chunks takes all `n` at once or none; nobody ever
//!   holds part of a request while waiting for the rest, so two requests can never deadlock
//!   each other over a partial set.
//! - **Fair**: waiting requests are served strictly in arrival order, and a newcomer never
//!   overtakes a waiting request (a large request is not starved by a stream of small ones).
//! - **Bounded**: a fixed pool reserves all its memory up front; a growable pool grows one slab
//!   at a time up to its maximum. (On Linux a slab is an anonymous mapping: the kernel
//!   zero-fills each page when it is first touched, so that first touch costs a page fault.)
//!   [`Pool::stats`] shows total, free, waiters and the high-water mark. A request the pool
//!   could never satisfy (`n == 0`, `n > max_chunks`) fails at once with a [`PoolError`].
//! - **Fast**: when no request is waiting and enough chunks are free, allocate and release are
//!   one compare-and-swap each, no lock, no system call: on a per-thread slot that parks the
//!   last run a thread gave back (so threads do not contend), else on a lock-free free list.
//!   The slow path drains the slots first, so parked chunks never keep a waiter waiting.
//! - [`Allocation`]s are `Send + 'static` and keep the pool's memory alive on their own.
//!
//! Small chunks (512 to 2048 bytes) each occupy a 4 KiB stride so that every chunk stays
//! 4 KiB-aligned; use them only where the alignment matters more than the memory.
//!
//! # Example: a memory budget with backpressure
//! ```
//! use std::time::Duration;
//! use buffer_pool::{Pool, PoolError};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A budget of four 4 KiB chunks: the pool never holds more.
//! let pool = Pool::fixed(4096, 4)?;
//!
//! // Stage a batch in three chunks (all three or none).
//! let mut batch = pool.allocate(3)?;
//! batch.fill(b"event bytes...");
//! assert!(batch.chunk_ptrs().all(|p| p.as_ptr() as usize % 4096 == 0));
//!
//! // One chunk is left, so a request for two must wait: that is the backpressure.
//! assert!(matches!(pool.try_allocate(2), Err(PoolError::WouldBlock { .. })));
//! let short_wait = pool.allocate_timeout(2, Duration::from_millis(5));
//! assert!(matches!(short_wait, Err(PoolError::TimedOut { .. })));
//! // A request the budget can never satisfy fails at once instead of hanging.
//! assert!(matches!(pool.allocate(5), Err(PoolError::TooLarge { requested: 5, max_chunks: 4 })));
//!
//! std::thread::scope(|s| {
//!     // This writer blocks until the batch has been written out and dropped.
//!     let writer = s.spawn(|| pool.allocate(2).map(|a| a.chunk_count()));
//!     while pool.stats().waiters == 0 {
//!         std::thread::yield_now();
//!     }
//!     let iovecs = batch.io_slices(); // what pwritev(2) would take
//!     assert_eq!(iovecs.len(), 3);
//!     drop(iovecs);
//!     drop(batch); // the chunks go back, and straight to the waiting writer
//!     assert_eq!(writer.join().unwrap(), Ok(2));
//! });
//!
//! let stats = pool.stats();
//! assert_eq!((stats.free_chunks, stats.high_water_chunks), (4, 3));
//! # Ok(())
//! # }
//! ```
//!
//! # Map
//! - [`Pool`]: the handle: [`Pool::allocate`], [`Pool::try_allocate`],
//!   [`Pool::allocate_timeout`], [`Pool::stats`]; built from a [`PoolConfig`] (fixed or
//!   growable).
//! - [`Allocation`]: the RAII chunks and their views ([`Chunks`], [`ChunksMut`], [`ChunkPtrs`],
//!   [`Split`]); with the `bytes` feature (on by default), [`Allocation::freeze`] and
//!   [`Allocation::into_bytes`] turn filled chunks into `bytes::Bytes` without copying.
//! - [`PoolStats`]: memory use. [`PoolError`], [`ConfigError`]: typed failures.
//! - The protocol (free list, waiter hand-off, lifetime) is described in the `pool` module's
//!   source and checked by the loom models in `tests/loom.rs`.
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]

mod allocation;
#[cfg(feature = "bytes")]
mod bytes;
mod config;
mod error;
mod pool;
mod slab;
mod stats;
mod sync;

pub use allocation::{Allocation, ChunkPtrs, Chunks, ChunksMut, Split};
pub use config::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, PoolConfig};
pub use error::{ConfigError, PoolError};
pub use pool::{MAX_CHUNKS, Pool};
pub use stats::PoolStats;
