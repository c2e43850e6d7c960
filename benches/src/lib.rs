//! Shared helpers for the side-by-side benchmark suites in `benches/`.
//!
//! Each suite is a criterion bench target (`benches/<suite>.rs`); the naming contract the
//! `cargo xtask bench` report relies on is in `docs/CONVENTIONS.md`.

/// True when the bench binary runs under `cargo bench` (criterion is passed `--bench`), false
/// under `cargo test --benches`, where every bench runs once: suites use it to shrink their
/// workloads so the smoke run stays fast in an unoptimised build.
pub fn is_timed_run() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// Picks the workload size: `timed` under `cargo bench`, `smoke` otherwise.
pub fn scale(timed: usize, smoke: usize) -> usize {
    if is_timed_run() { timed } else { smoke }
}

/// A crew of long-lived worker threads for closed-loop benchmarks: each [`Crew::round`] lets
/// every worker run its job once and returns the wall time from the start signal to the last
/// worker's finish. The threads are spawned once, so a timed round measures the contenders'
/// steady state rather than thread creation (64 spawns cost ~1-2 ms, a sizeable share of a
/// round) and every contender gets the same harness.
#[derive(Debug)]
pub struct Crew {
    start: std::sync::Arc<std::sync::Barrier>,
    done: std::sync::Arc<std::sync::Barrier>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Crew {
    /// Spawns `threads` workers; worker `i` runs `job(i)` once per round.
    pub fn new(threads: usize, job: impl Fn(usize) + Send + Sync + 'static) -> Self {
        use std::sync::{Arc, Barrier, atomic::AtomicBool};
        let start = Arc::new(Barrier::new(threads + 1));
        let done = Arc::new(Barrier::new(threads + 1));
        let stop = Arc::new(AtomicBool::new(false));
        let job = Arc::new(job);
        let workers = (0..threads)
            .map(|i| {
                let (start, done, stop, job) = (
                    Arc::clone(&start),
                    Arc::clone(&done),
                    Arc::clone(&stop),
                    Arc::clone(&job),
                );
                std::thread::spawn(move || {
                    loop {
                        start.wait();
                        if stop.load(std::sync::atomic::Ordering::Acquire) {
                            return;
                        }
                        job(i);
                        done.wait();
                    }
                })
            })
            .collect();
        Crew {
            start,
            done,
            stop,
            workers,
        }
    }

    /// Runs one round; returns its wall time.
    pub fn round(&self) -> std::time::Duration {
        let began = std::time::Instant::now();
        self.start.wait();
        self.done.wait();
        began.elapsed()
    }
}

impl Drop for Crew {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.start.wait();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

/// Pinning the calling thread to one CPU (Linux), for cases whose figures would otherwise
/// depend on where the kernel places freshly spawned threads.
#[cfg(target_os = "linux")]
pub mod affinity {
    /// The CPUs the calling thread may run on (ascending), or `None` if the system will not
    /// say.
    pub fn allowed_cpus() -> Option<Vec<usize>> {
        let set = current_set()?;
        let cpus = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE, the size of `set` in CPUs.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect();
        Some(cpus)
    }

    /// The calling thread pinned to one CPU until dropped, then given back the CPUs it had
    /// (threads it spawns meanwhile inherit the one CPU).
    pub struct PinnedThread {
        before: libc::cpu_set_t,
    }

    impl std::fmt::Debug for PinnedThread {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PinnedThread").finish_non_exhaustive()
        }
    }

    impl PinnedThread {
        /// Pins the calling thread to `cpu`; `None` if the system refuses (no such CPU).
        pub fn to(cpu: usize) -> Option<Self> {
            let pinned = Self {
                before: current_set()?,
            };
            pinned.move_to(cpu).then_some(pinned)
        }

        /// Moves the (pinned) calling thread to `cpu` alone; false if the system refuses.
        pub fn move_to(&self, cpu: usize) -> bool {
            if cpu >= libc::CPU_SETSIZE as usize {
                return false;
            }
            // SAFETY: all zeros is the empty set of this plain bit array.
            let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: `cpu` is below CPU_SETSIZE (checked above).
            unsafe { libc::CPU_SET(cpu, &mut only) };
            set_current(&only)
        }
    }

    impl Drop for PinnedThread {
        fn drop(&mut self) {
            let restored = set_current(&self.before);
            debug_assert!(restored, "sched_setaffinity refused the thread's own CPUs");
        }
    }

    fn current_set() -> Option<libc::cpu_set_t> {
        // SAFETY: all zeros is the empty set of this plain bit array.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; 0 names the
        // calling thread.
        let got = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
        (got == 0).then_some(set)
    }

    fn set_current(set: &libc::cpu_set_t) -> bool {
        // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 names the calling thread.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) == 0 }
    }
}
