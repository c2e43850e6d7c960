//! Bounded spinning in place of a park, while syncs are short (see [`PipeConfig::wait_spin`]).
//!
//! A park costs the waker a wake-up and the waiter a context switch; in a VM that is tens of
//! microseconds, a good share of a fast device's sync. Spinning is worth it only while the wait
//! is short and a CPU is free, so: waiters spin only while the moving average of sync times is
//! at most half the budget, and at most one per CPU but one spins at a time (the rest park at
//! once: with many blocked writers, spinners would take the CPUs the others need to run).
//!
//! Loom models check the park/wake protocol, not timing: under `epoch_pipe_loom` nothing spins.
//!
//! [`PipeConfig::wait_spin`]: crate::PipeConfig::wait_spin

#[cfg(not(epoch_pipe_loom))]
use std::time::Duration;

#[cfg(not(epoch_pipe_loom))]
pub(crate) use real::Spin;

#[cfg(epoch_pipe_loom)]
pub(crate) use model::Spin;

#[cfg(not(epoch_pipe_loom))]
mod real {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    /// Pause instructions between two checks of the condition.
    const PAUSES_PER_CHECK: u32 = 32;
    /// Checks between two looks at the clock (and yields).
    const CHECKS_PER_YIELD: u32 = 16;

    /// The spin policy of one pipe.
    pub(crate) struct Spin {
        budget: Duration,
        max_spinners: usize,
        spinners: AtomicUsize,
        /// Moving average of sync durations, in nanoseconds (0: none measured yet).
        sync_nanos: AtomicU64,
    }

    impl Spin {
        pub(crate) fn new(budget: Duration) -> Spin {
            // Asked once per process: the answer reads cgroup files (four system calls or
            // so), and a store opens a pipe each time it is opened.
            static CPUS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            let cpus =
                *CPUS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            Spin::with_cpus(budget, cpus)
        }

        pub(super) fn with_cpus(budget: Duration, cpus: usize) -> Spin {
            Spin {
                budget,
                max_spinners: cpus.saturating_sub(1),
                spinners: AtomicUsize::new(0),
                sync_nanos: AtomicU64::new(0),
            }
        }

        /// Runs `sync` and records how long it took.
        pub(crate) fn time_sync<T>(&self, sync: impl FnOnce() -> T) -> T {
            let start = Instant::now();
            let outcome = sync();
            self.record_sync(start.elapsed());
            outcome
        }

        fn record_sync(&self, took: Duration) {
            let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            super::add_to_average(&self.sync_nanos, took);
        }

        /// The moving average of sync durations (zero before the first).
        pub(crate) fn sync_average(&self) -> Duration {
            Duration::from_nanos(self.sync_nanos.load(Ordering::Relaxed))
        }

        /// Whether syncs are short enough to spin through.
        fn syncs_short(&self) -> bool {
            let sync = Duration::from_nanos(self.sync_nanos.load(Ordering::Relaxed));
            !self.budget.is_zero() && sync <= self.budget / 2
        }

        /// A waiter's spin: until `done` holds (true) or the budget runs out, or not at all
        /// when syncs are slow or enough threads spin already (false).
        pub(crate) fn waiter(&self, done: impl Fn() -> bool) -> bool {
            if !self.syncs_short() {
                return false;
            }
            let spinners = self.spinners.fetch_add(1, Ordering::Relaxed);
            let finished = spinners < self.max_spinners && spin(self.budget, &done);
            self.spinners.fetch_sub(1, Ordering::Relaxed);
            finished
        }

        /// The flusher's spin for the next write after a sync: `FLUSHER_SPIN` at most.
        pub(crate) fn flusher(&self, done: impl Fn() -> bool) -> bool {
            self.syncs_short() && spin(super::FLUSHER_SPIN.min(self.budget), &done)
        }

        /// The flusher's wait for acknowledged writers to stage their next writes: yields
        /// until `newest()` reaches `until`, for at most one average sync (and at most the
        /// spin budget: none when spinning is off), and gives up early once no write came for
        /// a quarter of a sync (the writers are not coming back) or `newest()` returns
        /// `u64::MAX` (the pipe is closing or failed). No wait before the first sync is
        /// measured.
        pub(crate) fn gather(&self, until: u64, newest: impl Fn() -> u64) {
            let sync = self.sync_nanos.load(Ordering::Relaxed);
            let budget = Duration::from_nanos(sync).min(self.budget);
            let stall = Duration::from_nanos(sync / super::GATHER_STALL_SHARE_OF_SYNC);
            if budget.is_zero() {
                return;
            }
            let start = Instant::now();
            let mut seen = newest();
            let mut progress_at = start;
            while seen < until {
                std::thread::yield_now();
                let now = Instant::now();
                let latest = newest();
                if latest != seen {
                    seen = latest;
                    progress_at = now;
                }
                if now - start >= budget || now - progress_at >= stall {
                    break;
                }
            }
        }
    }

    /// Spins until `done` or `budget`, yielding the CPU between rounds of checks so a thread
    /// waiting to run on it is not held off for the whole budget.
    fn spin(budget: Duration, done: &impl Fn() -> bool) -> bool {
        let start = Instant::now();
        loop {
            for _ in 0..CHECKS_PER_YIELD {
                if done() {
                    return true;
                }
                for _ in 0..PAUSES_PER_CHECK {
                    std::hint::spin_loop();
                }
            }
            if start.elapsed() >= budget {
                return done();
            }
            std::thread::yield_now();
        }
    }
}

#[cfg(epoch_pipe_loom)]
mod model {
    use std::time::Duration;

    /// Under loom nothing spins: the models check the park/wake protocol.
    pub(crate) struct Spin;

    impl Spin {
        pub(crate) fn new(_budget: Duration) -> Spin {
            Spin
        }
        pub(crate) fn time_sync<T>(&self, sync: impl FnOnce() -> T) -> T {
            sync()
        }
        pub(crate) fn sync_average(&self) -> Duration {
            Duration::ZERO
        }
        pub(crate) fn waiter(&self, _done: impl Fn() -> bool) -> bool {
            false
        }
        pub(crate) fn flusher(&self, _done: impl Fn() -> bool) -> bool {
            false
        }
        pub(crate) fn gather(&self, _until: u64, _newest: impl Fn() -> u64) {}
    }
}

/// The flusher gathers returning writers for at most one average sync, and stops once no write
/// came for 1/this of one. Measured in one process, alternating (64 writers in rounds of 256
/// acks each, as the suite runs them, 16 rounds per variant; 8 and 64 writers steady, 5 runs
/// each): against a plain half-sync budget, rounds 182-187k -> 183-187k acks/s median with the
/// worst round 154-158k -> 172-173k; w8 44.3k -> 45.2k; w64 178.5k -> 181.6k. A stall cut of
/// 1/8 was no different. Before any gather (the old 4 yields) groups at 8 writers were 5.3 of
/// 8 and at 64 48-50; with it 7.5 and 58-64.
#[cfg(not(epoch_pipe_loom))]
const GATHER_STALL_SHARE_OF_SYNC: u64 = 4;

/// Folds `sample` into the moving average kept in `average` (weight 1/8; 0 means no sample
/// yet). The load and the store are not one atomic step: two threads folding at once (sync
/// workers) may lose a sample, which a hint can afford.
pub(crate) fn add_to_average(average: &crate::sync::AtomicU64, sample: u64) {
    use crate::sync::Ordering;
    let old = average.load(Ordering::Relaxed);
    let new = if old == 0 {
        sample
    } else {
        old - old / 8 + sample / 8
    };
    average.store(new, Ordering::Relaxed);
}

/// The flusher's spin for the next write after a sync, at most: long enough for a waiter
/// that spun to see its ack and stage its next write, short next to a sync.
#[cfg(not(epoch_pipe_loom))]
const FLUSHER_SPIN: Duration = Duration::from_micros(50);

#[cfg(all(test, not(epoch_pipe_loom)))]
mod tests {
    use super::real::Spin;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    const BUDGET: Duration = Duration::from_millis(2);

    #[test]
    fn a_waiter_spins_until_done() {
        let spin = Spin::with_cpus(Duration::from_secs(10), 2);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| done.store(true, Ordering::Release));
            assert!(spin.waiter(|| done.load(Ordering::Acquire)));
        });
    }

    #[test]
    fn a_waiter_gives_up_after_its_budget() {
        let spin = Spin::with_cpus(BUDGET, 2);
        let start = Instant::now();
        assert!(!spin.waiter(|| false));
        assert!(start.elapsed() >= BUDGET);
    }

    #[test]
    fn nobody_spins_when_the_budget_is_zero_or_there_is_one_cpu() {
        let checks = AtomicUsize::new(0);
        let check = || {
            checks.fetch_add(1, Ordering::Relaxed);
            false
        };
        assert!(!Spin::with_cpus(Duration::ZERO, 2).waiter(check));
        assert!(!Spin::with_cpus(BUDGET, 1).waiter(check));
        assert!(!Spin::with_cpus(Duration::ZERO, 2).flusher(check));
        assert_eq!(checks.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn nobody_spins_once_syncs_take_over_half_the_budget() {
        let spin = Spin::with_cpus(BUDGET, 2);
        spin.time_sync(|| std::thread::sleep(BUDGET));
        let checks = AtomicUsize::new(0);
        let check = || {
            checks.fetch_add(1, Ordering::Relaxed);
            false
        };
        assert!(!spin.waiter(check));
        assert!(!spin.flusher(check));
        assert_eq!(checks.load(Ordering::Relaxed), 0);
        // Short syncs bring the average back down, and spinning back.
        for _ in 0..64 {
            spin.time_sync(|| ());
        }
        assert!(spin.waiter(|| true));
    }

    #[test]
    fn the_gather_waits_for_returning_writers_within_a_sync() {
        let spin = Spin::with_cpus(BUDGET, 2);
        let reads = AtomicUsize::new(0);
        let newest = || reads.fetch_add(1, Ordering::Relaxed) as u64;
        spin.gather(10, newest);
        assert_eq!(
            reads.load(Ordering::Relaxed),
            0,
            "no sync measured: no wait"
        );

        // Writers coming back one by one: done once the awaited epoch is staged (a long sync,
        // so a slow yield on a busy machine does not end the wait first).
        let patient = Spin::with_cpus(Duration::from_secs(10), 2);
        patient.time_sync(|| std::thread::sleep(Duration::from_millis(100)));
        patient.gather(10, newest);
        assert_eq!(
            reads.load(Ordering::Relaxed),
            11,
            "stops at the awaited epoch"
        );
        // Closing or failed: `newest` says so with `u64::MAX`, and the gather ends at once.
        patient.gather(u64::MAX - 1, || u64::MAX);

        spin.time_sync(|| std::thread::sleep(BUDGET));
        // Nobody comes back: gives up after a quarter of a sync without a write.
        let start = Instant::now();
        spin.gather(10, || 5);
        let waited = start.elapsed();
        assert!(waited >= BUDGET / 4, "waited {waited:?}");
        assert!(waited < BUDGET * 50, "waited {waited:?}");

        // Writes keep coming but never reach the epoch: gives up after one sync.
        reads.store(0, Ordering::Relaxed);
        let start = Instant::now();
        spin.gather(u64::MAX, newest);
        let waited = start.elapsed();
        assert!(waited >= BUDGET, "waited {waited:?}");
        assert!(waited < BUDGET * 50, "waited {waited:?}");

        // Spinning off: no gather at all.
        let off = Spin::with_cpus(Duration::ZERO, 2);
        off.time_sync(|| std::thread::sleep(BUDGET));
        reads.store(0, Ordering::Relaxed);
        off.gather(10, newest);
        assert_eq!(reads.load(Ordering::Relaxed), 0, "spinning off: no wait");
    }

    #[test]
    fn at_most_one_spinner_per_cpu_but_one() {
        let spin = Spin::with_cpus(Duration::from_secs(10), 2);
        let release = AtomicBool::new(false);
        let spinning = AtomicBool::new(false);
        std::thread::scope(|s| {
            let first = s.spawn(|| {
                spin.waiter(|| {
                    spinning.store(true, Ordering::Release);
                    release.load(Ordering::Acquire)
                })
            });
            while !spinning.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            // The one slot is taken: a second waiter parks at once instead.
            let checks = AtomicUsize::new(0);
            assert!(!spin.waiter(|| {
                checks.fetch_add(1, Ordering::Relaxed);
                true
            }));
            assert_eq!(checks.load(Ordering::Relaxed), 0);
            release.store(true, Ordering::Release);
            assert!(first.join().expect("spinner"));
        });
    }
}
