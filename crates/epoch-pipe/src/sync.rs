//! The synchronisation primitives the pipe uses: `std`'s, or loom's under `cfg(epoch_pipe_loom)`,
//! so that the loom models check the very code that ships.

#[cfg(not(epoch_pipe_loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
};
#[cfg(not(epoch_pipe_loom))]
pub(crate) use std::thread;

#[cfg(epoch_pipe_loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering, fence},
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

/// Every tag of [`WakeWord::wait_until_tagged`] and [`WakeWord::advance_tags`]: what
/// [`WakeWord::wait_until`] and [`WakeWord::advance`] use.
pub const ALL_TAGS: u32 = u32::MAX;

/// A generation counter that threads sleep on until it moves; one [`WakeWord::advance`] wakes
/// every sleeper at once. The pipe's blocked waiters sleep on one; an owner that answers its
/// own callers in groups on top of the pipe (the event store's appenders) can use another.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use epoch_pipe::WakeWord;
///
/// let word = Arc::new(WakeWord::new());
/// let done = Arc::new(AtomicBool::new(false));
/// let waiter = {
///     let (word, done) = (Arc::clone(&word), Arc::clone(&done));
///     std::thread::spawn(move || word.wait_until(|| done.load(Ordering::Acquire)))
/// };
/// done.store(true, Ordering::Release); // the state first,
/// word.advance(); // then the word: every sleeper wakes and checks again
/// waiter.join().unwrap();
/// ```
///
/// On Linux it is a futex: a single `FUTEX_WAKE_BITSET` system call wakes all the sleepers
/// (of the tags it names), and the kernel batches their wake-ups (one inter-processor
/// interrupt per CPU, not per thread). Measured on a 2-vCPU VM, 64 threads each acknowledged
/// by a per-thread `unpark` cost 5.5 us of CPU per acknowledgement (~300k/s at most); woken
/// all at once from one word, 3.5-3.9 us (~470k/s). Elsewhere, and under loom, it is a mutex,
/// a condition variable and a wake count per tag with the same contract (a sleeper stays
/// asleep through advances that name none of its tags), so the loom models check the
/// protocol of the code that ships, tags included.
pub struct WakeWord {
    generation: AtomicU32,
    /// Threads inside a wait ([`WakeWord::wait_until_tagged`]), whatever their tags: the
    /// waker skips the system call when none.
    sleepers: AtomicUsize,
    /// Without futexes: the wake-ups so far of each tag (bit `i` of a tag set counts in
    /// `wakes[i]`), under the mutex a sleeper waits on.
    #[cfg(any(epoch_pipe_loom, not(target_os = "linux")))]
    parked: (Mutex<[u32; 32]>, Condvar),
}

impl Default for WakeWord {
    fn default() -> Self {
        WakeWord::new()
    }
}

impl std::fmt::Debug for WakeWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WakeWord")
            .field("sleepers", &self.sleepers.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl WakeWord {
    /// A word nobody sleeps on yet.
    pub fn new() -> WakeWord {
        WakeWord {
            generation: AtomicU32::new(0),
            sleepers: AtomicUsize::new(0),
            #[cfg(any(epoch_pipe_loom, not(target_os = "linux")))]
            parked: (Mutex::new([0; 32]), Condvar::new()),
        }
    }

    /// Sleeps until `ready` holds. `ready` must only turn true through state written before
    /// an [`advance`](Self::advance).
    ///
    /// No lost wake-up: see [`wait_until_tagged`](Self::wait_until_tagged), of which this is
    /// the case with every tag.
    pub fn wait_until(&self, ready: impl Fn() -> bool) {
        self.wait_until_tagged(ALL_TAGS, ready);
    }

    /// [`wait_until`](Self::wait_until) for a sleeper that only an advance naming one of its
    /// `tags` (a bit set; 0 counts as [`ALL_TAGS`] here) has to wake: `ready` must only turn
    /// true through state written before an [`advance_tags`](Self::advance_tags) whose tags
    /// share a bit with these. The other advances leave this thread asleep.
    ///
    /// No lost wake-up: the sleeper count is raised before the generation is read and
    /// `ready` checked; an advance moves the generation before it reads the count, with a
    /// sequentially consistent fence between the two on each side (fences, not SeqCst
    /// accesses, so loom checks the argument too). Take the advance that publishes what
    /// `ready` waits for (its tags share a bit with these): either this thread sees its new
    /// generation (and so, by its release, the state written before it), or that advance sees
    /// the sleeper and wakes its tags. A sleep on a generation that already moved returns at
    /// once, whichever advance moved it; the generation only grows, so seeing a later advance
    /// also shows the state of every earlier one.
    ///
    /// The pipe tags each blocked waiter with its epoch's block, so a publication wakes the
    /// waiters it acknowledged and leaves those of the next group asleep (unless their
    /// epochs share a block with it).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use epoch_pipe::WakeWord;
    ///
    /// let word = Arc::new(WakeWord::new());
    /// let done = Arc::new(AtomicU64::new(0));
    /// let waiter = {
    ///     let (word, done) = (Arc::clone(&word), Arc::clone(&done));
    ///     // Waits for round 2, under tag 0b10.
    ///     std::thread::spawn(move || word.wait_until_tagged(0b10, || done.load(Ordering::Acquire) >= 2))
    /// };
    /// done.store(1, Ordering::Release);
    /// word.advance_tags(0b01); // round 1: tag 0b01 only, the waiter may sleep on
    /// done.store(2, Ordering::Release);
    /// word.advance_tags(0b10); // round 2 wakes it
    /// waiter.join().unwrap();
    /// ```
    pub fn wait_until_tagged(&self, tags: u32, ready: impl Fn() -> bool) {
        let tags = if tags == 0 { ALL_TAGS } else { tags };
        self.sleepers.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        loop {
            let generation = self.generation.load(Ordering::Acquire);
            if ready() {
                break;
            }
            self.sleep(generation, tags);
        }
        self.sleepers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Moves the generation and wakes every sleeper; returns how many there were (a hint).
    pub fn advance(&self) -> usize {
        self.advance_tags(ALL_TAGS)
    }

    /// Moves the generation and wakes the sleepers whose tags share a bit with `tags` (see
    /// [`wait_until_tagged`](Self::wait_until_tagged); `tags` 0 wakes nobody); returns how
    /// many threads were inside a wait, tagged alike or not (a hint).
    pub fn advance_tags(&self, tags: u32) -> usize {
        self.generation.fetch_add(1, Ordering::Release);
        fence(Ordering::SeqCst);
        let sleepers = self.sleepers.load(Ordering::Relaxed);
        if sleepers > 0 && tags != 0 {
            self.wake(tags);
        }
        sleepers
    }

    /// Sleeps while the generation is still `generation` (spurious returns are fine: the
    /// caller checks again).
    #[cfg(all(not(epoch_pipe_loom), target_os = "linux"))]
    fn sleep(&self, generation: u32, tags: u32) {
        // SAFETY: the address is that of a live, aligned `u32` (the atomic's storage) for
        // the whole call; FUTEX_WAIT_BITSET only reads it. A null timeout means no timeout;
        // the unused second address is ignored by this operation. `tags` is not zero (the
        // kernel refuses an empty bit set with EINVAL: the caller checks again and would spin).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.generation.as_ptr(),
                libc::FUTEX_WAIT_BITSET | libc::FUTEX_PRIVATE_FLAG,
                generation,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                tags,
            );
        }
    }

    #[cfg(all(not(epoch_pipe_loom), target_os = "linux"))]
    fn wake(&self, tags: u32) {
        // SAFETY: as in `sleep`; FUTEX_WAKE_BITSET does not touch the word, and `tags` is
        // not zero (checked by the caller).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                self.generation.as_ptr(),
                libc::FUTEX_WAKE_BITSET | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
                std::ptr::null::<libc::timespec>(),
                std::ptr::null::<u32>(),
                tags,
            );
        }
    }

    #[cfg(any(epoch_pipe_loom, not(target_os = "linux")))]
    fn sleep(&self, generation: u32, tags: u32) {
        let (mutex, condvar) = &self.parked;
        let mut wakes = lock(mutex);
        // Checked under the mutex that `wake` takes after the generation moved: a move
        // after this check finds this thread already waiting, and counts its wake-up.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        let seen = Self::wakes_of(&wakes, tags);
        // Like FUTEX_WAIT_BITSET: asleep until an advance names one of these tags.
        while Self::wakes_of(&wakes, tags) == seen {
            wakes = wait(condvar, wakes);
        }
    }

    /// The sum of the wake counts of `tags` (it changes when any of them is woken).
    #[cfg(any(epoch_pipe_loom, not(target_os = "linux")))]
    fn wakes_of(wakes: &[u32; 32], tags: u32) -> u32 {
        (0..32)
            .filter(|bit| tags & (1 << bit) != 0)
            .fold(0u32, |sum, bit| sum.wrapping_add(wakes[bit]))
    }

    #[cfg(any(epoch_pipe_loom, not(target_os = "linux")))]
    fn wake(&self, tags: u32) {
        let (mutex, condvar) = &self.parked;
        {
            let mut wakes = lock(mutex);
            for (bit, count) in wakes.iter_mut().enumerate() {
                if tags & (1 << bit) != 0 {
                    *count = count.wrapping_add(1);
                }
            }
        }
        condvar.notify_all();
    }
}

#[cfg(all(test, not(epoch_pipe_loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Threads sleeping on one word are all woken by each advance, and none misses one: a
    /// lost wake-up here would hang the test. Two words ping-pong: the main thread publishes
    /// a round on `go` and sleeps on `back` until every worker has seen it.
    #[test]
    fn every_sleeper_wakes_on_every_advance() {
        const WORKERS: u64 = 6;
        const ROUNDS: u64 = 2_000;
        let round = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(AtomicU64::new(0));
        let go = Arc::new(WakeWord::new());
        let back = Arc::new(WakeWord::new());
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let (round, seen, go, back) =
                    (round.clone(), seen.clone(), go.clone(), back.clone());
                thread::spawn(move || {
                    for r in 1..=ROUNDS {
                        go.wait_until(|| round.load(Ordering::Acquire) >= r);
                        seen.fetch_add(1, Ordering::AcqRel);
                        back.advance();
                    }
                })
            })
            .collect();
        for r in 1..=ROUNDS {
            round.store(r, Ordering::Release);
            let woken = go.advance();
            assert!(woken <= WORKERS as usize, "{woken} sleepers counted");
            back.wait_until(|| seen.load(Ordering::Acquire) == r * WORKERS);
        }
        for worker in workers {
            worker.join().expect("worker");
        }
        assert_eq!(seen.load(Ordering::Relaxed), ROUNDS * WORKERS);
    }

    /// A tagged sleeper is woken by an advance that names its tag, whatever the advances
    /// for other tags did meanwhile: each round is meant for one worker (its tag only), and
    /// a lost wake-up would hang the test.
    #[test]
    fn an_advance_wakes_the_sleepers_of_its_tags() {
        const WORKERS: u64 = 4;
        const ROUNDS: u64 = 2_000;
        let round = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let go = Arc::new(WakeWord::new());
        let back = Arc::new(WakeWord::new());
        let workers: Vec<_> = (0..WORKERS)
            .map(|worker| {
                let (round, done, go, back) =
                    (round.clone(), done.clone(), go.clone(), back.clone());
                thread::spawn(move || {
                    // This worker's rounds: worker, worker + WORKERS, ...
                    for mine in (worker + 1..=ROUNDS).step_by(WORKERS as usize) {
                        go.wait_until_tagged(1 << worker, || round.load(Ordering::Acquire) >= mine);
                        done.store(mine, Ordering::Release);
                        back.advance();
                    }
                })
            })
            .collect();
        for r in 1..=ROUNDS {
            round.store(r, Ordering::Release);
            go.advance_tags(1 << ((r - 1) % WORKERS));
            back.wait_until(|| done.load(Ordering::Acquire) == r);
        }
        for worker in workers {
            worker.join().expect("worker");
        }
    }

    /// With nobody asleep, an advance makes no wake-up call and reports no sleepers.
    #[test]
    fn advance_without_sleepers_counts_none() {
        let word = WakeWord::new();
        assert_eq!(word.advance(), 0);
        word.wait_until(|| true);
        assert_eq!(word.advance(), 0);
    }
}
