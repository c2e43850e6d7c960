//! What a blocked thread costs on this machine: the numbers behind the `pipe` suite's `w64`
//! case, where each of 64 writer threads sleeps until its write is durable and is woken
//! afterwards (the raw ceiling it is compared with is one thread that never sleeps).
//!
//! `cargo run --release -p eventstore-benches --example wake_cost` prints:
//! - one system call (`getppid`), for scale;
//! - a futex hand-off between two threads (one wakes the other and sleeps until woken back),
//!   with both on one CPU and on two, and how long the waker's `FUTEX_WAKE` call itself takes;
//! - one `FUTEX_WAKE` of 64 sleeping threads, and how long until all of them have run (what
//!   the pipe pays per group at 64 writers, before they can write again).
//!
//! Linux only (futexes and CPU affinity); elsewhere it says so and exits.

#[cfg(target_os = "linux")]
fn main() {
    linux::run();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("wake_cost measures Linux futexes: nothing to measure here");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::thread;
    use std::time::{Duration, Instant};

    use eventstore_benches::affinity::PinnedThread;

    const SYSCALLS: u32 = 100_000;
    const HANDOFFS: u32 = 20_000;
    const WAKE_ALL_THREADS: usize = 64;
    const WAKE_ALL_ROUNDS: u32 = 2_000;

    /// One futex operation on `word` (process-private).
    fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
        // SAFETY: `word` is an aligned u32 that outlives the call. FUTEX_WAIT reads it and
        // takes the null pointer as "no timeout"; FUTEX_WAKE only uses its address as a key
        // and ignores the last argument. Spurious returns are fine: every waiter re-checks.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op | libc::FUTEX_PRIVATE_FLAG,
                value,
                std::ptr::null::<libc::timespec>(),
            );
        }
    }

    /// Sleeps while `word` holds `expected` (returns at once if it does not, or on a signal).
    fn futex_wait(word: &AtomicU32, expected: u32) {
        futex(word, libc::FUTEX_WAIT, expected);
    }

    /// Wakes up to `count` threads sleeping on `word`.
    fn futex_wake(word: &AtomicU32, count: u32) {
        futex(word, libc::FUTEX_WAKE, count);
    }

    fn micros(total: Duration, count: u32) -> f64 {
        total.as_secs_f64() * 1e6 / f64::from(count)
    }

    pub fn run() {
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        println!("CPUs available: {cpus}");

        let start = Instant::now();
        for _ in 0..SYSCALLS {
            // SAFETY: getppid takes no arguments and cannot fail.
            unsafe { libc::getppid() };
        }
        println!(
            "system call (getppid):          {:6.2} us",
            micros(start.elapsed(), SYSCALLS)
        );

        handoff("futex hand-off, one CPU:", 0, 0);
        if cpus >= 2 {
            handoff("futex hand-off, two CPUs:", 0, 1);
        }
        wake_all();
    }

    /// Two threads take turns through one futex word: even values are the first thread's
    /// turn, odd ones the second's. Each turn wakes the other thread and sleeps.
    fn handoff(label: &str, first_cpu: usize, second_cpu: usize) {
        let turn = Arc::new(AtomicU32::new(0));
        let other = Arc::clone(&turn);
        let pinned = Arc::new(AtomicU32::new(0));
        let other_pinned = Arc::clone(&pinned);
        let second = thread::spawn(move || {
            let pin = PinnedThread::to(second_cpu);
            other_pinned.store(u32::from(pin.is_some()) + 1, Ordering::Release);
            futex_wake(&other_pinned, 1);
            take_turns(&other, 1);
        });
        while pinned.load(Ordering::Acquire) == 0 {
            futex_wait(&pinned, 0);
        }
        // Without the placement asked for, the figure is still printed, marked as such.
        let pin = PinnedThread::to(first_cpu);
        let placed = pin.is_some() && pinned.load(Ordering::Acquire) == 2;
        let start = Instant::now();
        let wake_calls = take_turns(&turn, 0);
        let elapsed = start.elapsed();
        second.join().expect("hand-off thread");
        println!(
            "{label:32} {:6.2} us a hand-off; the waker's FUTEX_WAKE call {:6.2} us{}",
            micros(elapsed, 2 * HANDOFFS),
            micros(wake_calls, HANDOFFS),
            if placed {
                ""
            } else {
                " (could not pin the threads)"
            }
        );
    }

    /// Plays `parity`'s turns; returns the time spent inside this side's wake calls.
    fn take_turns(turn: &AtomicU32, parity: u32) -> Duration {
        let mut in_wake = Duration::ZERO;
        for round in 0..HANDOFFS {
            let mine = 2 * round + parity;
            loop {
                let now = turn.load(Ordering::Acquire);
                if now == mine {
                    break;
                }
                futex_wait(turn, now);
            }
            turn.store(mine + 1, Ordering::Release);
            let woke_at = Instant::now();
            futex_wake(turn, 1);
            in_wake += woke_at.elapsed();
        }
        in_wake
    }

    /// 64 threads sleep on one word; each round bumps it and wakes them all with one call,
    /// then waits (yielding) until every one of them has run and checked in.
    fn wake_all() {
        let generation = Arc::new(AtomicU32::new(0));
        let checked_in = Arc::new(AtomicU64::new(0));
        let sleepers: Vec<_> = (0..WAKE_ALL_THREADS)
            .map(|_| {
                let (generation, checked_in) = (Arc::clone(&generation), Arc::clone(&checked_in));
                thread::spawn(move || {
                    for round in 1..=WAKE_ALL_ROUNDS {
                        loop {
                            let now = generation.load(Ordering::Acquire);
                            if now >= round {
                                break;
                            }
                            futex_wait(&generation, now);
                        }
                        checked_in.fetch_add(1, Ordering::AcqRel);
                    }
                })
            })
            .collect();
        let threads = WAKE_ALL_THREADS as u64;
        let mut in_wake = Duration::ZERO;
        let start = Instant::now();
        for round in 1..=WAKE_ALL_ROUNDS {
            // Everybody ran the previous round (or, for the first, got started and asleep
            // or about to be: a late starter finds the new generation and does not sleep).
            while checked_in.load(Ordering::Acquire) < threads * u64::from(round - 1) {
                thread::yield_now();
            }
            generation.store(round, Ordering::Release);
            let woke_at = Instant::now();
            futex_wake(&generation, i32::MAX as u32); // all of them
            in_wake += woke_at.elapsed();
        }
        while checked_in.load(Ordering::Acquire) < threads * u64::from(WAKE_ALL_ROUNDS) {
            thread::yield_now();
        }
        let elapsed = start.elapsed();
        for sleeper in sleepers {
            sleeper.join().expect("sleeper thread");
        }
        println!(
            "wake {WAKE_ALL_THREADS} sleepers, all run:      {:6.1} us a round ({:.2} us a thread); \
             the waker's FUTEX_WAKE call {:6.1} us",
            micros(elapsed, WAKE_ALL_ROUNDS),
            micros(elapsed, WAKE_ALL_ROUNDS) / WAKE_ALL_THREADS as f64,
            micros(in_wake, WAKE_ALL_ROUNDS)
        );
    }
}
