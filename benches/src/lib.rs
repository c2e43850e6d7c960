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
