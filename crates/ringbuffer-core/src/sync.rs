//! The synchronisation primitives the ring is built from, in one place.
//!
//! Normal builds re-export `std`; builds with `--cfg ringbuffer_loom` re-export `loom`'s
//! model-checked equivalents, so the code the loom models in `tests/loom.rs` explore is the
//! code that ships. Only this module names `std::sync` / `loom` directly.

#[cfg(not(ringbuffer_loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(not(ringbuffer_loom))]
pub(crate) use std::sync::{Arc, Condvar, Mutex};

#[cfg(ringbuffer_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
#[cfg(ringbuffer_loom)]
pub(crate) use loom::sync::{Arc, Condvar, Mutex};

/// Gives up the CPU to another runnable thread (a model-checker yield under loom).
#[inline]
pub(crate) fn yield_now() {
    #[cfg(not(ringbuffer_loom))]
    std::thread::yield_now();
    #[cfg(ringbuffer_loom)]
    loom::thread::yield_now();
}

/// One spin-loop pause (under loom, a yield so the model checker can schedule someone else).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(ringbuffer_loom))]
    std::hint::spin_loop();
    #[cfg(ringbuffer_loom)]
    loom::thread::yield_now();
}

/// An `UnsafeCell` with loom's closure API (`with` / `with_mut`), so slot accesses are
/// tracked by loom's causality checker in model builds and compile to plain pointer
/// accesses otherwise.
#[cfg(not(ringbuffer_loom))]
#[derive(Debug)]
#[repr(transparent)]
pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

#[cfg(not(ringbuffer_loom))]
impl<T> UnsafeCell<T> {
    /// Wraps `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self(std::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a shared-access pointer to the value.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    /// Runs `f` with an exclusive-access pointer to the value.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(ringbuffer_loom)]
pub(crate) use loom::cell::UnsafeCell;

/// Whether the light side of the asymmetric barrier pair (see [`crate::wait`]) must be a
/// real `SeqCst` fence: yes unless, on Linux, the kernel granted
/// `membarrier(PRIVATE_EXPEDITED)` at start, in which case the sleeper's [`heavy_barrier`]
/// forces a full barrier on every running thread of the process and the light side is a
/// compiler fence only. Always yes under loom. Decided by [`init_barriers`], never changed
/// after: a ring reads it once, when it is built.
pub(crate) fn light_barrier_is_fence() -> bool {
    #[cfg(all(target_os = "linux", not(ringbuffer_loom)))]
    {
        if membarrier::available() {
            return false;
        }
    }
    true
}

/// Light side of the asymmetric barrier pair, executed on every publish and release, so it
/// must be (nearly) free: `is_fence` is [`light_barrier_is_fence`], kept by the caller next
/// to the data it loads anyway (a global load and branch per event cost measurable time).
#[inline(always)]
pub(crate) fn light_barrier(is_fence: bool) {
    if is_fence {
        fence(Ordering::SeqCst);
    } else {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    }
}

/// Heavy side of the asymmetric barrier pair: executed only by a thread about to sleep.
/// `light_is_fence` is what the ring's publishers were told ([`light_barrier_is_fence`] when
/// the ring was built), so both sides derive from one value. Returns whether the pair holds.
/// It does not when the publishers only fence the compiler but this `membarrier` call failed
/// (`ENOMEM`, or a seccomp filter installed since): a fence on this side alone cannot order a
/// publisher's store before its load of the sleeper count, so the sleeper must not trust a
/// wake-up to come and re-checks on a short timeout instead.
#[inline]
#[must_use = "a failed barrier means the wake-up may be missed"]
pub(crate) fn heavy_barrier(light_is_fence: bool) -> bool {
    #[cfg(all(target_os = "linux", not(ringbuffer_loom)))]
    {
        if !light_is_fence {
            if membarrier::expedited() {
                return true;
            }
            fence(Ordering::SeqCst);
            return false;
        }
    }
    // Only Linux with `membarrier` lets publishers skip the fence.
    debug_assert!(
        light_is_fence,
        "the publishers' light barrier must be a fence here"
    );
    fence(Ordering::SeqCst);
    true
}

/// Registers the process for `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` once; called
/// when a ring is built, before any handle exists, so both barrier sides agree on the mode
/// for the ring's whole life.
pub(crate) fn init_barriers() {
    #[cfg(all(target_os = "linux", not(ringbuffer_loom)))]
    membarrier::init();
}

#[cfg(all(target_os = "linux", not(ringbuffer_loom)))]
pub(crate) mod membarrier {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicBool, Ordering};

    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    static AVAILABLE: AtomicBool = AtomicBool::new(false);
    static INIT: OnceLock<()> = OnceLock::new();

    pub(super) fn init() {
        INIT.get_or_init(|| {
            // SAFETY: `membarrier` takes two integer arguments and touches no memory of ours;
            // a kernel without it (or a seccomp filter) answers with an error, which we treat
            // as "not available" and fall back to symmetric fences.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_membarrier,
                    CMD_REGISTER_PRIVATE_EXPEDITED,
                    0 as libc::c_long,
                )
            };
            if rc == 0 && expedited() {
                AVAILABLE.store(true, Ordering::SeqCst);
            }
        });
    }

    #[inline(always)]
    pub(crate) fn available() -> bool {
        // Set once, before any ring handle exists (the ring's construction happens-before
        // every use through the `Arc` that shares it), never cleared.
        AVAILABLE.load(Ordering::Relaxed)
    }

    /// Tests: makes every later `membarrier` call count as failed (what a seccomp filter
    /// installed after start would do).
    #[cfg(test)]
    pub(crate) static FAIL_FROM_NOW: AtomicBool = AtomicBool::new(false);

    pub(super) fn expedited() -> bool {
        #[cfg(test)]
        if FAIL_FROM_NOW.load(Ordering::Relaxed) {
            return false;
        }
        // SAFETY: as in `init`: integer arguments only, errors are reported, not UB.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                CMD_PRIVATE_EXPEDITED,
                0 as libc::c_long,
            )
        };
        rc == 0
    }
}
