//! The synchronisation primitives the pipe uses: `std`'s, or loom's under `cfg(epoch_pipe_loom)`,
//! so that the loom models check the very code that ships.

#[cfg(not(epoch_pipe_loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};
#[cfg(not(epoch_pipe_loom))]
pub(crate) use std::thread;

#[cfg(epoch_pipe_loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};
#[cfg(epoch_pipe_loom)]
pub(crate) use loom::thread;

/// Locks `mutex`, ignoring poisoning: every critical section in this crate leaves its state
/// consistent before anything that could panic, so a poisoned lock still guards valid data.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits on `condvar`, ignoring poisoning (see [`lock`]).
pub(crate) fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar
        .wait(guard)
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
