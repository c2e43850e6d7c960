//! A bounded ring of pre-allocated slots with 64-bit sequence numbers, in the tradition of
//! the LMAX Disruptor.
//!
//! Producers **claim** a run of slots, fill them **in place**, and **publish**; consumers
//! **read batches** (everything published since their last read) and release each batch
//! with a single store. The one consumer of an MPSC/SPSC ring may also take the entries
//! mutably ([`Consumer::read_mut`] -> [`BatchMut`]) and move owned values out without a
//! clone. Four topologies share one core:
//!
//! | builder method | producers | consumers | claim |
//! |---|---|---|---|
//! | [`RingBuilder::mpsc`] / [`mpsc`] | many ([`Producer`]: `Clone` and `Sync`, claims take `&self`) | one [`Consumer`] | compare-and-swap on a padded cursor once there is space, one publication mark per claim |
//! | [`RingBuilder::spsc`] / [`spsc`] | one [`SingleProducer`] | one [`Consumer`] | no atomic read-modify-write |
//! | [`RingBuilder::broadcast`] / [`broadcast`] | one [`BroadcastProducer`] | any number of [`BroadcastConsumer`]s, joining and leaving at run time, each seeing everything | no atomic read-modify-write |
//! | [`RingBuilder::work_sharing`] | one [`SingleProducer`] | several [`WorkConsumer`]s, each entry to exactly one | no atomic read-modify-write |
//!
//! Waiting (consumers for data, producers for space) follows a [`WaitStrategy`]: the default
//! spins briefly, yields, then parks, and the side that does not sleep pays one relaxed
//! load per publish or release for it (see [`WaitStrategy`] and the crate README). Every blocking call has a `try_` variant and a `_timeout` variant.
//!
//! Closing (explicitly or by dropping the producers) lets consumers drain everything that
//! was published, then they get [`Error::Closed`]; blocked waiters are woken. Dropping the
//! consumers of a ring makes claims fail with [`Error::Closed`]; a dropped broadcast
//! subscriber simply stops gating. A broadcast subscriber that falls a whole ring behind can
//! be found with [`BroadcastProducer::laggards`] and evicted
//! ([`BroadcastProducer::evict_laggards`], or automatically with [`LagPolicy::Evict`]); it
//! then reads [`Error::Lagged`] and can [`BroadcastConsumer::resubscribe`]. Any thread can add
//! subscribers through a [`SubscribeHandle`], and find and evict laggards through it while
//! the producer is blocked in a claim ([`SubscribeHandle::evict_laggards`]).
//!
//! Misuse is a typed [`Error`], never a panic or a hang: zero or non-power-of-two capacity,
//! a claim of zero slots or more than the ring holds, use after close.
//!
//! # MPSC
//!
//! ```
//! use ringbuffer_core::{Error, RingBuilder};
//!
//! let (producer, mut consumer) = RingBuilder::<u64>::new(1024).mpsc()?;
//! let threads: Vec<_> = (0..4u64)
//!     .map(|t| {
//!         let producer = producer.clone();
//!         std::thread::spawn(move || {
//!             for i in 0..1000u64 {
//!                 // Claim 10 slots, fill them in place, publish them together.
//!                 if i % 10 == 0 {
//!                     let mut claim = producer.claim(10).expect("open");
//!                     for (k, slot) in claim.iter_mut().enumerate() {
//!                         *slot = t * 1_000_000 + i + k as u64;
//!                     }
//!                     claim.publish();
//!                 }
//!             }
//!         })
//!     })
//!     .collect();
//! drop(producer); // the ring closes when the last producer is gone
//!
//! let mut total = 0;
//! loop {
//!     match consumer.read() {
//!         Ok(batch) => total += batch.len(), // batch released on drop, in one store
//!         Err(Error::Closed) => break,
//!         Err(other) => return Err(other),
//!     }
//! }
//! for t in threads {
//!     t.join().expect("producer thread");
//! }
//! assert_eq!(total, 4 * 1000);
//! # Ok::<(), Error>(())
//! ```
//!
//! # Broadcast
//!
//! ```
//! use ringbuffer_core::{Error, RingBuilder};
//!
//! let (mut producer, subscribers) = RingBuilder::<u64>::new(64).broadcast(2)?;
//! let readers: Vec<_> = subscribers
//!     .into_iter()
//!     .map(|mut sub| {
//!         std::thread::spawn(move || {
//!             let mut seen = Vec::new();
//!             while let Ok(batch) = sub.read() {
//!                 batch.for_each(|_seq, value, _end_of_batch| seen.push(*value));
//!             }
//!             seen
//!         })
//!     })
//!     .collect();
//! for i in 0..500 {
//!     producer.push(i)?;
//! }
//! producer.close();
//! for reader in readers {
//!     let seen = reader.join().expect("reader thread");
//!     assert_eq!(seen, (0..500).collect::<Vec<_>>()); // every subscriber sees everything
//! }
//! # Ok::<(), Error>(())
//! ```
//!
//! # Verification
//!
//! All atomics, locks and cells come from the `sync` shim; building with
//! `--cfg ringbuffer_loom` swaps in `loom`, and `tests/loom.rs` model-checks every protocol.

#![deny(missing_docs)]

mod batch;
mod broadcast;
mod builder;
mod claim;
mod consumer;
mod error;
mod producer;
mod ring;
mod sync;
mod wait;
mod work;

pub use batch::{Batch, BatchMut};
pub use broadcast::{BroadcastConsumer, BroadcastProducer, Laggard, SubscribeHandle};
pub use builder::{DEFAULT_WORK_BATCH, RingBuilder, broadcast, mpsc, spsc};
pub use claim::Claim;
pub use consumer::Consumer;
pub use error::Error;
pub use producer::{Producer, SingleProducer};
pub use ring::LagPolicy;
pub use wait::WaitStrategy;
pub use work::WorkConsumer;

// Every handle owns whole cache-line pairs: its private cursor state must not share a line
// with data another thread writes (the handles are `repr(align(128))`).
const _: () = {
    assert!(std::mem::align_of::<SingleProducer<u64>>() >= 128);
    assert!(std::mem::align_of::<Producer<u64>>() >= 128);
    assert!(std::mem::align_of::<Consumer<u64>>() >= 128);
    assert!(std::mem::align_of::<BroadcastProducer<u64>>() >= 128);
    assert!(std::mem::align_of::<BroadcastConsumer<u64>>() >= 128);
    assert!(std::mem::align_of::<WorkConsumer<u64>>() >= 128);
};
