//! [`RingBuilder`]: capacity, wait strategy, slot factory, topology.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::broadcast::{BroadcastConsumer, BroadcastProducer, join};
use crate::consumer::Consumer;
use crate::error::Error;
use crate::producer::{Producer, SingleProducer, SpInner};
use crate::ring::{Core, Gating, LagPolicy, Registry, Workers, check_capacity};
use crate::sync::{Arc, AtomicU64, AtomicUsize, Mutex};
use crate::wait::WaitStrategy;
use crate::work::WorkConsumer;

/// Default longest run a work-sharing consumer takes at once.
pub const DEFAULT_WORK_BATCH: usize = 64;

/// Configures and builds a ring. Every slot is filled up front by the factory (or
/// `T::default()`); nothing is allocated afterwards.
pub struct RingBuilder<T> {
    capacity: usize,
    strategy: WaitStrategy,
    lag_policy: LagPolicy,
    work_batch: Option<usize>,
    factory: Box<dyn Fn() -> T + Send + Sync>,
}

impl<T: Default + 'static> RingBuilder<T> {
    /// A ring of `capacity` slots (a power of two), pre-filled with `T::default()`.
    pub fn new(capacity: usize) -> Self {
        Self::with_factory(capacity, T::default)
    }
}

impl<T> RingBuilder<T> {
    /// A ring of `capacity` slots pre-filled by `factory`, which also refills the slots of
    /// a claim dropped without being published.
    pub fn with_factory(capacity: usize, factory: impl Fn() -> T + Send + Sync + 'static) -> Self {
        Self {
            capacity,
            strategy: WaitStrategy::default(),
            lag_policy: LagPolicy::default(),
            work_batch: None,
            factory: Box::new(factory),
        }
    }

    /// How producers and consumers wait (default [`WaitStrategy::Blocking`]).
    pub fn wait_strategy(mut self, strategy: WaitStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// What a broadcast producer does about a subscriber a whole ring behind (default
    /// [`LagPolicy::Block`]).
    pub fn lag_policy(mut self, policy: LagPolicy) -> Self {
        self.lag_policy = policy;
        self
    }

    /// Longest run a work-sharing consumer takes at once (default [`DEFAULT_WORK_BATCH`], or
    /// the capacity if smaller).
    pub fn work_batch(mut self, max: usize) -> Self {
        self.work_batch = Some(max);
        self
    }

    fn core(self, multi: bool, gating: Gating) -> Result<Arc<Core<T>>, Error> {
        Ok(Arc::new(Core::new(
            self.capacity,
            multi,
            gating,
            self.strategy,
            self.factory,
        )?))
    }

    fn single_gate() -> Gating {
        Gating::Single(CachePadded::new(AtomicU64::new(0)))
    }

    /// Many producers (clone the [`Producer`]), one consumer.
    pub fn mpsc(self) -> Result<(Producer<T>, Consumer<T>), Error> {
        let core = self.core(true, Self::single_gate())?;
        Ok((Producer::new(Arc::clone(&core)), Consumer::new(core)))
    }

    /// One producer, one consumer.
    pub fn spsc(self) -> Result<(SingleProducer<T>, Consumer<T>), Error> {
        let core = self.core(false, Self::single_gate())?;
        Ok((
            SingleProducer {
                inner: SpInner::new(Arc::clone(&core)),
            },
            Consumer::new(core),
        ))
    }

    /// One producer, `subscribers` initial subscribers (more can join and leave at any
    /// time), each seeing every entry.
    pub fn broadcast(
        self,
        subscribers: usize,
    ) -> Result<(BroadcastProducer<T>, Vec<BroadcastConsumer<T>>), Error> {
        let registry = Registry {
            subs: Mutex::new(Vec::new()),
            version: CachePadded::new(AtomicU64::new(0)),
            next_id: AtomicU64::new(0),
            policy: self.lag_policy,
        };
        let mut consumers = reserve_handles(subscribers)?;
        let core = self.core(false, Gating::Broadcast(registry))?;
        consumers.extend((0..subscribers).map(|_| join(&core)));
        Ok((
            BroadcastProducer {
                inner: SpInner::new(core),
            },
            consumers,
        ))
    }

    /// One producer, `consumers` work-sharing consumers (at least one): each entry goes to
    /// exactly one of them.
    pub fn work_sharing(
        self,
        consumers: usize,
    ) -> Result<(SingleProducer<T>, Vec<WorkConsumer<T>>), Error> {
        check_capacity(self.capacity)?;
        if consumers == 0 {
            return Err(Error::ZeroConsumers);
        }
        let max_batch = self
            .work_batch
            .unwrap_or(DEFAULT_WORK_BATCH.min(self.capacity));
        if max_batch == 0 {
            return Err(Error::ZeroClaim);
        }
        if max_batch > self.capacity {
            return Err(Error::ClaimTooLarge {
                requested: max_batch,
                capacity: self.capacity,
            });
        }
        let mut done = reserve_handles(consumers)?;
        done.extend((0..consumers).map(|_| CachePadded::new(AtomicU64::new(0))));
        let mut handles = reserve_handles(consumers)?;
        let workers = Workers {
            done: done.into(),
            next: CachePadded::new(AtomicU64::new(0)),
            alive: AtomicUsize::new(consumers),
            max_batch,
        };
        let core = self.core(false, Gating::Work(workers))?;
        handles.extend((0..consumers).map(|i| WorkConsumer::new(Arc::clone(&core), i)));
        Ok((
            SingleProducer {
                inner: SpInner::new(core),
            },
            handles,
        ))
    }
}

/// An empty vector with room for `count` per-consumer values, or
/// [`Error::TooManyConsumers`] if that much cannot be allocated (instead of a panic).
fn reserve_handles<V>(count: usize) -> Result<Vec<V>, Error> {
    let mut values = Vec::new();
    values
        .try_reserve_exact(count)
        .map_err(|_| Error::TooManyConsumers { requested: count })?;
    Ok(values)
}

impl<T> fmt::Debug for RingBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingBuilder")
            .field("capacity", &self.capacity)
            .field("strategy", &self.strategy)
            .field("lag_policy", &self.lag_policy)
            .field("work_batch", &self.work_batch)
            .finish_non_exhaustive()
    }
}

/// Shortcut: an MPSC ring of `capacity` default-filled slots with the default strategy.
pub fn mpsc<T: Default + Send + Sync + 'static>(
    capacity: usize,
) -> Result<(Producer<T>, Consumer<T>), Error> {
    RingBuilder::new(capacity).mpsc()
}

/// Shortcut: an SPSC ring of `capacity` default-filled slots with the default strategy.
pub fn spsc<T: Default + Send + Sync + 'static>(
    capacity: usize,
) -> Result<(SingleProducer<T>, Consumer<T>), Error> {
    RingBuilder::new(capacity).spsc()
}

/// Shortcut: a broadcast ring of `capacity` default-filled slots and no subscriber yet.
pub fn broadcast<T: Default + Send + Sync + 'static>(
    capacity: usize,
) -> Result<BroadcastProducer<T>, Error> {
    Ok(RingBuilder::new(capacity).broadcast(0)?.0)
}
