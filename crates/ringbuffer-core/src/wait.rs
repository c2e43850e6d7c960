//! Waiting: spin -> yield -> park, and the sleep/wake hand-off that makes parking free for
//! the side that never sleeps.
//!
//! # The no-lost-wake-up protocol
//!
//! Each direction of the ring (consumers waiting for data, producers waiting for space) has
//! one [`Notifier`]: a `sleepers` counter, a mutex and a condition variable.
//!
//! - A waiter that decides to park takes the mutex, increments `sleepers`, executes the
//!   *heavy* barrier, re-checks its condition, and only then waits on the condvar (which
//!   releases the mutex atomically).
//! - A waker that finds sleepers takes the mutex, sets `sleepers` back to zero, bumps a
//!   generation and `notify_all`s: the woken are deregistered by the waker, not when they get
//!   to run. Otherwise `sleepers` stays non-zero until they are scheduled, and on an
//!   oversubscribed machine every publish in that window paid the mutex and a futex system
//!   call (measured next to a CPU hog: ~100 wake calls per park, now one). A sleeper that
//!   times out or wakes spuriously (its generation unchanged) deregisters itself.
//! - The other side, after every publish or release store, executes the *light* barrier and
//!   loads `sleepers`; only if it is non-zero does it take the mutex and `notify_all`.
//!
//! The two barriers order "store position; load sleepers" against "store sleepers; load
//! position" (the Dekker pattern): either the notifier sees the sleeper, or the sleeper's
//! re-check sees the new position. Because the sleeper holds the mutex from before its
//! re-check until it is inside `wait`, a notifier that saw it cannot slip its `notify_all`
//! into that window. On Linux, when the kernel grants `membarrier(PRIVATE_EXPEDITED)` as the
//! first ring is built, the light barrier is a compiler fence and the heavy barrier a
//! `membarrier(2)` call, so the fast path costs one relaxed load of a line only sleepers
//! write; elsewhere both are `SeqCst` fences. Each ring keeps which it is next to the sleeper
//! count and hands the same value to both sides.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::sync::{
    AtomicUsize, Condvar, Mutex, Ordering, heavy_barrier, light_barrier, light_barrier_is_fence,
    spin_loop, yield_now,
};

/// How a thread waits for data (consumers) or space (producers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Spin briefly, then yield, then park on a condition variable (the default). A parked
    /// thread uses no CPU; with more busy threads than cores it backs off within about a
    /// few microseconds of spinning, so it never starves the thread it waits for.
    #[default]
    Blocking,
    /// Spin briefly, then `yield_now` in a loop; never parks. Lowest wake-up latency that
    /// still shares the CPU, but an idle waiter keeps a core busy with system calls.
    Yield,
    /// Spin with a pause hint forever. Only for threads that own a core each: with more
    /// busy threads than cores it collapses.
    BusySpin,
}

/// Spin rounds before the first yield; each round pauses twice as long as the one before,
/// the first for [`FIRST_SPIN`].
#[cfg(not(ringbuffer_loom))]
const SPIN_ROUNDS: u32 = 2;
/// How long the first spin round lasts: a caught-up consumer that polls again at once pulls
/// the producer's cursor and slot lines back every few events, so both crawl; waiting about a
/// microsecond lets the producer get a few lines ahead. The round is counted in `pause`
/// instructions, whose length differs ~3x between CPUs (27 ns on the AMD EPYC this was first
/// tuned on, 8.4 ns on the Intel Xeon of session 6), so it is calibrated at run time
/// ([`first_spin_pauses`]). Measured in one process, 5 runs each, on the Xeon (1P1C batch 1 /
/// batch 64 / 2P1C batch 64, M events/s): 32 pauses (0.27 us, the old fixed count) 69-86 /
/// 337-385 / 127-133; 128 (1.1 us) 183-261 / 450-479 / 139-144; 256 (2.2 us) 205-267 /
/// 322-444 / 108-115; 1024: 130-299 / 152-269 / 57-76. On the EPYC, 32 pauses (0.86 us)
/// against the older 1, 2, 4 ... 32 ladder: 1P1C batch 1 0.56x -> 1.05x rtrb, 2P1C and 4P1C
/// batch 1 ~1.5x.
#[cfg(not(ringbuffer_loom))]
const FIRST_SPIN: Duration = Duration::from_nanos(1000);
/// `yield_now` calls before a [`WaitStrategy::Blocking`] waiter parks when nothing else is
/// runnable: ~24 us on the EPYC (0.74 us a yield), ~4.6 us on the Xeon (145 ns); an idle
/// waiter then parks at ~0% CPU. On the Xeon 160 yields (~24 us again) measured no different
/// in the hog, MPSC or 1P1C cases, so the count stays a count. With
/// more busy threads than cores the thread a waiter needs is often runnable but
/// descheduled: a yield hands it the core at once, while a park costs the other side a futex
/// wake and the sleeper a trip through the scheduler. Measured in one process (9 runs of 4M
/// events, medians): 2P1C batch 64 went from 41-55 M/s with 3 yields to ~170 with 30 and
/// ~189 with 50; 4P1C batch 64 from 98-122 to ~155-165; the 1P1C-next-to-a-CPU-hog case
/// was unchanged (median ~465 M/s with 3, 30 or 100).
#[cfg(not(ringbuffer_loom))]
const YIELD_ROUNDS: u32 = 32;
/// Longest park when the heavy barrier failed (see [`heavy_barrier`]): a missed wake-up then
/// costs at most this, instead of a hang.
const UNFENCED_PARK: Duration = Duration::from_millis(1);

/// A yield that returns later than this handed the core to a thread that keeps it (a time
/// slice is milliseconds; a peer that fills or drains the ring gives it back within tens of
/// microseconds): stop yielding and park.
const LONG_YIELD: Duration = Duration::from_micros(200);
/// After waking the thread it then waits for, a waiter spins rather than yields for this
/// long: about a wake-up's latency on a virtual machine. Without it, next to a CPU hog the
/// waiter yielded its core to the hog for a whole time slice while the woken peer came back,
/// every ring's worth of data (criterion's hog case: 0.01x of uncontended). Measured in one
/// process with a fresh hog per run (15 runs of 1M events): 0 us: median ~19 M/s, worst 2;
/// 30 us: median ~262, worst 134; 100 us: as good next to the hog but 2P1C/4P1C batch 64 lost
/// 25-30% (a spinning waiter keeps the core from a runnable producer).
const PEER_WAKE_WINDOW: Duration = Duration::from_micros(30);
/// After a waiter's yield took [`LONG_YIELD`] while the thread it serves was parked waiting
/// for it (a busy thread holds this core, and the peer starves), the waiters of that
/// direction go from spinning straight to parking for this long, each such yield renewing
/// it: every wait used to pay one long yield, a whole time slice, before parking (a ring's
/// worth of data per slice next to a CPU hog), while a parked waiter is woken, and preempts
/// the hog, as soon as it is notified. Long yields that hand the core to a peer that works
/// meanwhile (more producers than cores) do not count: a peer parked for less than half of
/// [`LONG_YIELD`] was waiting its turn, not starving. Measured in one process next to a fresh
/// hog per run, alternating with the build before (2 x 11 runs of 1M events, batch 64): it
/// collapsed to 2-119 M/s (against ~335 alone) in 4 of 22 runs before, in none of 33 after;
/// 2P1C batch 1 and 64 and 4P1C batch 64 unchanged within the noise, 4P1C batch 1 5-10%
/// lower when the host ran fast (17 against 18.5 M/s), unchanged when slow. Counting every
/// long yield instead (or any parked peer) cost 4P1C batch 1 20-30%; a threshold of a whole
/// `LONG_YIELD` let 3 of 11 hog runs dip to 120-211 M/s.
const YIELDS_HURT_FOR: Duration = Duration::from_millis(20);
// Under loom every pause is a model-checker yield: keep the ladder short so the park path
// is reached (and explored) quickly.
#[cfg(ringbuffer_loom)]
const SPIN_ROUNDS: u32 = 1;
#[cfg(ringbuffer_loom)]
const YIELD_ROUNDS: u32 = 1;

/// `pause` instructions in the first spin round: [`FIRST_SPIN`] measured on this CPU once per
/// process (the fastest of a few timings, so a preemption during one does not count),
/// between 8 and 4096.
#[cfg(not(ringbuffer_loom))]
fn first_spin_pauses() -> u32 {
    static PAUSES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let known = PAUSES.load(std::sync::atomic::Ordering::Relaxed);
    if known != 0 {
        return known;
    }
    const SAMPLE: u32 = 512;
    let fastest = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..SAMPLE {
                spin_loop();
            }
            start.elapsed()
        })
        .min()
        .unwrap_or(FIRST_SPIN)
        .max(Duration::from_nanos(1));
    let pauses = (FIRST_SPIN.as_nanos() * u128::from(SAMPLE) / fastest.as_nanos()).clamp(8, 4096);
    // Threads that measured at the same time all use the first value stored.
    match PAUSES.compare_exchange(
        0,
        pauses as u32,
        std::sync::atomic::Ordering::Relaxed,
        std::sync::atomic::Ordering::Relaxed,
    ) {
        Ok(_) => pauses as u32,
        Err(first) => first,
    }
}

/// Under loom every pause is a model-checker yield: one per round.
#[cfg(ringbuffer_loom)]
fn first_spin_pauses() -> u32 {
    1
}

/// A streaming consumer that finds less than this many bytes of entries waits a moment for
/// more ([`top_up`]).
const MIN_BATCH_BYTES: usize = 4096;

/// Events a single producer publishes between two notes of where it runs (see
/// [`Whereabouts`]), besides one after each wait for space: `sched_getcpu` is not free
/// everywhere, and a streaming producer passes 256 events in well under a microsecond.
pub(crate) const CPU_NOTE_EVERY: u64 = 256;

/// The batch a streaming consumer waits for: [`MIN_BATCH_BYTES`] of entries, at most half the
/// ring (1 under loom, where nobody waits for more).
pub(crate) fn min_batch<T>(capacity: usize) -> u64 {
    if cfg!(ringbuffer_loom) {
        return 1;
    }
    let entries = MIN_BATCH_BYTES / std::mem::size_of::<T>().max(1);
    entries.clamp(1, (capacity / 2).max(1)) as u64
}

/// Re-reads `published_end` until it reaches `want` or one first spin round has passed, and
/// returns the last answer.
///
/// Why: a consumer that keeps up with a fast producer reads a few entries at a time, and each
/// read pulls the producer's cursor line and the slot line it is filling away from it, so
/// both crawl (1P1C batch 1 settled at ~60 entries a read and ~180 M events/s on the Xeon).
/// When the previous read found data without waiting (a stream, not a trickle) and this one
/// finds less than [`min_batch`], waiting about a microsecond lets the producer get lines
/// ahead: ~540 entries a read and ~275 M/s, measured in one process, 5 runs each (4096 bytes;
/// 1024: ~240 M/s; 16 KiB: no better). A trickle never waits here: its reads wait anyway.
/// Each re-read pulls the cursor line from the producer again: 8 re-reads gave ~272 M/s,
/// 4 ~286, 2 ~299, 1 ~293 (10 runs each).
pub(crate) fn top_up(mut published_end: impl FnMut() -> u64, want: u64) -> u64 {
    const CHECKS: u32 = 2;
    let pauses = (first_spin_pauses() / CHECKS).max(1);
    let mut end = published_end();
    for _ in 0..CHECKS {
        if end >= want {
            break;
        }
        for _ in 0..pauses {
            spin_loop();
        }
        end = published_end();
    }
    end
}

/// One waiter's progress through spin -> yield -> park.
#[derive(Debug)]
pub(crate) struct Backoff {
    step: u32,
    /// The last yield kept this waiter off the CPU for [`LONG_YIELD`] or more.
    long_yield: bool,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            step: 0,
            long_yield: false,
        }
    }

    /// Goes straight to the yields.
    pub(crate) fn skip_spinning(&mut self) {
        self.step = self.step.max(SPIN_ROUNDS);
    }

    /// Whether the next [`snooze`](Self::snooze) would yield (or park) rather than spin.
    #[inline]
    pub(crate) fn yielding(&self, strategy: WaitStrategy) -> bool {
        strategy == WaitStrategy::Blocking && self.step >= SPIN_ROUNDS
    }

    /// Pauses once; returns `true` when the strategy says it is time to park.
    #[inline]
    pub(crate) fn snooze(&mut self, strategy: WaitStrategy) -> bool {
        match strategy {
            WaitStrategy::BusySpin => {
                spin_loop();
                false
            }
            _ if self.step < SPIN_ROUNDS => {
                for _ in 0..(first_spin_pauses() << self.step) {
                    spin_loop();
                }
                self.step += 1;
                false
            }
            WaitStrategy::Yield => {
                yield_now();
                false
            }
            WaitStrategy::Blocking => {
                if self.step >= SPIN_ROUNDS + YIELD_ROUNDS {
                    return true;
                }
                let before = Instant::now();
                yield_now();
                self.step += 1;
                // A yield that kept us off the CPU this long went to a thread that does not
                // give the core back soon (an unrelated busy thread, not the peer we wait
                // for): more yields would each cost a whole time slice, while a parked
                // thread is woken, and preempts, as soon as it is notified.
                // (Not under loom: a model must not branch on wall-clock time.)
                self.long_yield = !cfg!(ringbuffer_loom) && before.elapsed() >= LONG_YIELD;
                self.long_yield
            }
        }
    }
}

/// The line [`Notifier::notify`] reads on every publish or release.
#[derive(Debug)]
struct FastPath {
    /// Parked threads a waker has not woken yet. Changed only under `lock`; read without it
    /// on the notify fast path.
    sleepers: AtomicUsize,
    /// [`light_barrier_is_fence`], read once when the ring is built.
    light_is_fence: bool,
}

/// Sleepers of one direction of a ring, and how to wake them.
#[derive(Debug)]
pub(crate) struct Notifier {
    /// What the notify fast path reads, on a line of its own.
    fast: CachePadded<FastPath>,
    /// Wake-up generation: bumped by every wake that found sleepers.
    lock: Mutex<u64>,
    condvar: Condvar,
    /// When a wake last found sleepers (nanoseconds since [`clock`]'s base): a timing hint
    /// for the other direction's waiters, not part of any synchronization.
    last_wake: CachePadded<std::sync::atomic::AtomicU64>,
    /// When a waiter of this direction last had a long yield that starved its peer
    /// (nanoseconds since [`clock`]'s base, 0 for never): a timing hint, see
    /// [`YIELDS_HURT_FOR`].
    long_yield_at: std::sync::atomic::AtomicU64,
    /// When the first of the current sleepers parked (a timing hint, like `last_wake`).
    parked_since: std::sync::atomic::AtomicU64,
    /// Where a thread of this direction was last seen, and whether it is working through a
    /// batch it will release soon (timing hints, see [`Whereabouts`]).
    whereabouts: CachePadded<Whereabouts>,
}

/// Where the threads of one direction were last seen: a timing hint, not part of any
/// synchronization.
///
/// Why: a waiter spins on the bet that the thread it waits for runs on another core. When
/// the scheduler has put both on the same core (it places a new thread next to its spawner
/// when the other core looks busy, and a ring's two threads then stay together for
/// milliseconds, since both always ran a moment ago), every spin only delays the peer, which
/// cannot run until the waiter gives the core away. A waiter that finds its peer was last
/// seen on its own core yields at once instead.
#[derive(Debug, Default)]
struct Whereabouts {
    /// The direction has one thread: `cpu` is recorded (with several, "the peer" is not one
    /// thread and the hint would mislead).
    one_thread: bool,
    /// The single consumer of an MPSC/SPSC ring holds a batch and will release it soon.
    busy: std::sync::atomic::AtomicBool,
    /// The CPU (plus one; 0: not known) the direction's one thread last started a batch or a
    /// wait on, or went by a periodic check of the single-producer path.
    cpu: std::sync::atomic::AtomicU32,
}

/// The CPU the calling thread runs on, plus one; 0 where it cannot be known (and under
/// loom, whose models must not depend on it). With glibc 2.35 or later `sched_getcpu` reads
/// the thread's restartable-sequence area; elsewhere it may be a vDSO or a system call, so
/// the hot paths ask at most every [`CPU_NOTE_EVERY`] events.
#[inline]
pub(crate) fn current_cpu() -> u32 {
    #[cfg(all(target_os = "linux", not(ringbuffer_loom)))]
    {
        // SAFETY: `sched_getcpu` takes no arguments and touches no memory of ours.
        let cpu = unsafe { libc::sched_getcpu() };
        if let Ok(cpu) = u32::try_from(cpu) {
            return cpu.saturating_add(1);
        }
    }
    0
}

/// Nanoseconds since a process-wide base instant.
fn clock() -> u64 {
    static BASE: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

impl Notifier {
    /// `one_thread`: this direction has a single thread (the producer of an SPSC/SPMC ring,
    /// the consumer of an SPSC/MPSC ring), so where it was last seen says where it is.
    pub(crate) fn new(one_thread: bool) -> Self {
        Self {
            fast: CachePadded::new(FastPath {
                sleepers: AtomicUsize::new(0),
                light_is_fence: light_barrier_is_fence(),
            }),
            lock: Mutex::new(0),
            condvar: Condvar::new(),
            last_wake: CachePadded::new(std::sync::atomic::AtomicU64::new(0)),
            long_yield_at: std::sync::atomic::AtomicU64::new(0),
            parked_since: std::sync::atomic::AtomicU64::new(0),
            whereabouts: CachePadded::new(Whereabouts {
                one_thread,
                ..Whereabouts::default()
            }),
        }
    }

    /// Records that a thread of this direction holds a batch (`true`, and on which CPU) or
    /// released it.
    #[inline]
    pub(crate) fn set_busy(&self, busy: bool) {
        if busy {
            self.note_cpu(current_cpu());
        }
        self.whereabouts
            .busy
            .store(busy, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a thread of this direction holds a batch it will release soon (never under
    /// loom, where the spin it leads to would branch on wall-clock time).
    fn busy(&self) -> bool {
        !cfg!(ringbuffer_loom)
            && self
                .whereabouts
                .busy
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records the CPU (plus one) a thread of this direction runs on; skips the store when
    /// it is already there, so a thread that stays put does not dirty the line its peer reads.
    #[inline]
    pub(crate) fn note_cpu(&self, cpu: u32) {
        let seen = &self.whereabouts.cpu;
        if self.whereabouts.one_thread && seen.load(std::sync::atomic::Ordering::Relaxed) != cpu {
            seen.store(cpu, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Whether a thread of this direction was last seen on CPU `cpu` (plus one, as
    /// [`current_cpu`] gives it; never for 0, unknown).
    fn last_seen_on(&self, cpu: u32) -> bool {
        cpu != 0
            && self
                .whereabouts
                .cpu
                .load(std::sync::atomic::Ordering::Relaxed)
                == cpu
    }

    /// Called after a publish/release store: wakes the sleepers, if any. Costs the light
    /// barrier (a compiler fence where `membarrier` was granted) and one relaxed load of a
    /// line only sleepers write when nobody sleeps (see the module docs).
    #[inline]
    pub(crate) fn notify(&self) {
        light_barrier(self.fast.light_is_fence);
        if self.fast.sleepers.load(Ordering::Relaxed) != 0 {
            self.wake_all();
        }
    }

    /// Wakes every sleeper (also called directly on close, eviction, departure).
    #[cold]
    pub(crate) fn wake_all(&self) {
        let mut generation = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Under the lock every counted sleeper is waiting on the condvar (registration and
        // the wait happen under it atomically), so one notify_all reaches them all.
        if self.fast.sleepers.load(Ordering::Relaxed) != 0 {
            if !cfg!(ringbuffer_loom) {
                self.last_wake
                    .store(clock(), std::sync::atomic::Ordering::Relaxed);
            }
            self.fast.sleepers.store(0, Ordering::SeqCst);
            *generation = generation.wrapping_add(1);
            self.condvar.notify_all();
        }
        drop(generation);
    }

    /// Records that a waiter's yield was long while its peer was parked.
    fn note_long_yield(&self) {
        self.long_yield_at
            .store(clock().max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether a waiter of this direction starved its peer by yielding within
    /// [`YIELDS_HURT_FOR`].
    fn yields_hurt(&self) -> bool {
        let at = self
            .long_yield_at
            .load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && clock().saturating_sub(at) < YIELDS_HURT_FOR.as_nanos() as u64
    }

    /// Whether threads have been parked here for at least `LONG_YIELD / 2` (a racy hint):
    /// they starve, rather than just wait for their turn.
    fn starving(&self) -> bool {
        self.fast.sleepers.load(Ordering::Relaxed) != 0
            && clock().saturating_sub(self.parked_since.load(std::sync::atomic::Ordering::Relaxed))
                >= LONG_YIELD.as_nanos() as u64 / 2
    }

    /// Whether a wake found sleepers within the last [`PEER_WAKE_WINDOW`].
    fn woke_recently(&self) -> bool {
        let at = self.last_wake.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && clock().saturating_sub(at) < PEER_WAKE_WINDOW.as_nanos() as u64
    }

    /// Parks until notified, `deadline` passes, or `ready` turns out to hold already.
    /// Returns `Some` with `ready`'s answer if it held on the re-check, `None` after a wake-up
    /// (the caller re-checks and may spin again).
    #[cold]
    pub(crate) fn park<R>(
        &self,
        deadline: Option<Instant>,
        ready: &mut impl FnMut() -> Option<R>,
    ) -> Option<R> {
        let guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let registered_in = *guard;
        if self.fast.sleepers.fetch_add(1, Ordering::SeqCst) == 0 && !cfg!(ringbuffer_loom) {
            self.parked_since
                .store(clock(), std::sync::atomic::Ordering::Relaxed);
        }
        let deadline = if heavy_barrier(self.fast.light_is_fence) {
            deadline
        } else {
            // The publisher's side may not see this sleeper (see `heavy_barrier`): a wake-up
            // can be missed, so sleep at most a moment and let the caller check again.
            let poll = Instant::now() + UNFENCED_PARK;
            Some(deadline.map_or(poll, |d| d.min(poll)))
        };
        if let Some(r) = ready() {
            self.fast.sleepers.fetch_sub(1, Ordering::SeqCst);
            return Some(r);
        }
        let guard = match deadline {
            None => self
                .condvar
                .wait(guard)
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left == Duration::ZERO {
                    guard
                } else {
                    self.condvar
                        .wait_timeout(guard, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            }
        };
        if *guard == registered_in {
            // Timed out or woke spuriously: no waker took us off the count, so leave it.
            self.fast.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        drop(guard);
        None
    }
}

/// Outcome of a bounded wait.
pub(crate) enum Waited<R> {
    Ready(R),
    TimedOut,
}

/// Waits until `ready` returns `Some`, following `strategy`, parking on `notifier`.
/// `deadline`: `None` waits forever; `Some(past)` checks once and gives up.
#[inline]
pub(crate) fn wait_for<R>(
    strategy: WaitStrategy,
    notifier: &Notifier,
    peer: &Notifier,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Option<R>,
) -> Waited<R> {
    let mut backoff = Backoff::new();
    let mut peer_spin_since: Option<Instant> = None;
    let mut cpu = None;
    loop {
        if let Some(r) = ready() {
            return Waited::Ready(r);
        }
        if let Some(d) = deadline
            && Instant::now() >= d
        {
            return Waited::TimedOut;
        }
        // Once per wait and after each park (a wake-up often moves the thread): say where we
        // are, and skip the spinning if the peer shares our core (see `Whereabouts`).
        let here = *cpu.get_or_insert_with(|| {
            let cpu = current_cpu();
            notifier.note_cpu(cpu);
            if strategy == WaitStrategy::Blocking && peer.last_seen_on(cpu) {
                backoff.skip_spinning();
            }
            cpu
        });
        if backoff.yielding(strategy)
            && !peer.last_seen_on(here)
            // The peer is about to hand over what we wait for: either we just woke it, or it
            // is working through a batch (the consumer of an MPSC/SPSC ring; next to a busy
            // thread, yielding here gave the core away for a time slice every ring's worth).
            && (peer.woke_recently() || peer.busy())
            && peer_spin_since.get_or_insert_with(Instant::now).elapsed() < PEER_WAKE_WINDOW
        {
            // The thread we wait for is on its way: keep the core (yielding would hand it to
            // whoever else is runnable here, maybe for a whole time slice) for the short
            // while a wake-up or a batch takes; at most that long per wait. Measured next to a
            // CPU hog (1P1C batch 64, 50 runs of 1M events each, alternating builds): counting
            // a held batch too raised the harmonic mean from 144-195 to 199-235 M/s.
            spin_loop();
            continue;
        }
        // Skip the yields while they are known to starve the peer (never under loom: a
        // model must not branch on wall-clock time).
        let park_now =
            !cfg!(ringbuffer_loom) && backoff.yielding(strategy) && notifier.yields_hurt();
        if park_now || backoff.snooze(strategy) {
            if std::mem::take(&mut backoff.long_yield) && peer.starving() {
                notifier.note_long_yield();
            }
            if let Some(r) = notifier.park(deadline, &mut ready) {
                return Waited::Ready(r);
            }
            cpu = None;
        }
    }
}

#[cfg(all(test, not(ringbuffer_loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// When `membarrier` fails after the ring chose it, the sleeper cannot be sure a publisher
    /// sees it, so its park comes back on its own to check again: nobody wakes this one, and
    /// without the bound it would sleep forever. (Other tests running meanwhile only poll.)
    #[cfg(target_os = "linux")]
    #[test]
    fn a_park_the_barrier_cannot_cover_comes_back_to_check() {
        use crate::sync::membarrier;
        crate::sync::init_barriers();
        if !membarrier::available() {
            return; // symmetric fences: nothing can fail
        }
        membarrier::FAIL_FROM_NOW.store(true, Ordering::Relaxed);
        let notifier = Notifier::new(true);
        let answer = notifier.park(None, &mut || None::<()>);
        membarrier::FAIL_FROM_NOW.store(false, Ordering::Relaxed);
        assert!(answer.is_none(), "nothing was ready");
        assert_eq!(
            notifier.fast.sleepers.load(Ordering::Relaxed),
            0,
            "the sleeper took itself off the count"
        );
    }

    #[test]
    fn whereabouts_are_kept_only_for_a_direction_of_one_thread() {
        let cpu = current_cpu();
        #[cfg(target_os = "linux")]
        assert_ne!(cpu, 0, "sched_getcpu answers on Linux");
        let single = Notifier::new(true);
        assert!(!single.last_seen_on(cpu), "nothing recorded yet");
        single.note_cpu(7);
        assert!(single.last_seen_on(7));
        assert!(!single.last_seen_on(8));
        single.note_cpu(0);
        assert!(!single.last_seen_on(0), "unknown never matches");
        let shared = Notifier::new(false);
        shared.note_cpu(7);
        assert!(!shared.last_seen_on(7), "several threads: no hint");
        single.set_busy(true);
        let recorded = single
            .whereabouts
            .cpu
            .load(std::sync::atomic::Ordering::Relaxed);
        // Compared with what was recorded, not with `cpu`: the thread may have moved since.
        assert!(single.busy() && (recorded != 0) == (cpu != 0) && single.last_seen_on(recorded));
        single.set_busy(false);
        assert!(!single.busy());
    }

    #[test]
    fn the_first_spin_is_calibrated_once_within_bounds() {
        let pauses = first_spin_pauses();
        assert!((8..=4096).contains(&pauses), "{pauses} pauses");
        assert_eq!(first_spin_pauses(), pauses, "measured once per process");
    }

    #[test]
    fn a_top_up_stops_once_the_batch_is_big_enough_or_after_its_checks() {
        let reads = Cell::new(0u64);
        let growing = || {
            reads.set(reads.get() + 1);
            reads.get() * 10
        };
        assert_eq!(top_up(growing, 20), 20);
        assert_eq!(reads.get(), 2);

        reads.set(0);
        let stuck = || {
            reads.set(reads.get() + 1);
            5
        };
        assert_eq!(top_up(stuck, 30), 5, "gives up with what there is");
        assert_eq!(reads.get(), 3, "one read, then one per check");
    }

    #[test]
    fn the_wanted_batch_is_a_page_of_entries_at_most_half_the_ring() {
        assert_eq!(min_batch::<u64>(8192), 512);
        assert_eq!(min_batch::<[u8; 64]>(8192), 64);
        assert_eq!(min_batch::<u64>(256), 128);
        assert_eq!(min_batch::<u64>(1), 1);
        assert_eq!(min_batch::<()>(8192), 4096);
    }
}
