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
