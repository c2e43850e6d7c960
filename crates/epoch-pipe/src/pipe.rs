//! The pipe: staging, the flusher thread, the sync workers, the publisher thread and the
//! epoch hand-off.
//!
//! Protocol (what the loom models check):
//! - A writer, under the staging lock, takes the next epoch and appends its writes; if the
//!   flusher sleeps it is woken. Epochs are handed out in staging order.
//! - The flusher takes *everything* staged (so a transaction is never split), writes it in
//!   staging order (so two writes to one offset land in submission order), then queues one
//!   sync job carrying the batch's highest epoch. Only writes that returned before a sync
//!   started are acknowledged by it.
//! - Sync workers run `sync_data`; several may be in flight, and at most one more is queued
//!   (a later group joins the queued one). A success proves its epoch durable only once every
//!   sync that overlapped it has succeeded too (see [`Syncs`]); the durable epoch is then
//!   published under the notify lock and the [`WakeWord`] advanced with the tags of the
//!   epochs it made durable: blocked threads sleep on that word under their epoch's tag (no
//!   lost wake-up: see [`WakeWord::wait_until_tagged`]), futures register wakers under the
//!   lock.
//! - A proven epoch is acknowledged (the durable epoch raised, under the notify lock) while
//!   the syncs lock is still held, so a failure recorded later cannot take it back; waking
//!   its waiters comes after, without the syncs lock. With one sync in flight the flusher
//!   wakes them itself, or, once waking a group's waiters takes longer than 1.25 syncs (many
//!   waiters) and writes are already staged when a sync ends, hands the wake-up to the
//!   publisher thread (started then) and writes the next group at once. The publisher wakes
//!   everything it was handed before it ends, and `close` waits for it. Not under loom (a
//!   handful of waiters).
//! - Any error sets the sticky failure, also under the notify lock (and the `failed` flag
//!   the sleepers check): the durable epoch never moves again, and every waiter for a later
//!   epoch gets the error (fsyncgate: no retry is trusted after a failed sync).

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Operation, PipeError};
use crate::payload::Payload;
use crate::spin::Spin;
use crate::storage::Storage;
use crate::sync::{
    ALL_TAGS, Arc, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, MutexGuard, Ordering,
    WakeWord, lock, thread, wait,
};

/// A point in the pipe's write order. Every write (or transaction) gets the next epoch; once
/// epoch `e` is durable, so is every write with an epoch `<= e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(pub u64);

/// Counters of a [`Pipe`] since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipeStats {
    /// Epochs handed out (writes and transactions staged).
    pub epochs: u64,
    /// Groups written (each one `pwritev` pass).
    pub groups: u64,
    /// Syncs completed.
    pub syncs: u64,
    /// Wake-ups handed to the publisher thread so the flusher could go on with the next
    /// group at once (with many waiters, one sync in flight; see
    /// [`PipeConfig::syncs_in_flight`]).
    pub pipelined: u64,
}

/// Tuning of a [`Pipe`].
#[derive(Debug, Clone, Copy)]
pub struct PipeConfig {
    /// Bytes per chunk index: a write at index `i` lands at byte `i * chunk_size`.
    /// A power of two (default 4096, the buffer pool's chunk; with `O_DIRECT` it must be a
    /// multiple of the device's block size).
    pub chunk_size: u64,
    /// Largest single write or transaction, in bytes (default 64 MiB).
    pub max_write: u64,
    /// Bytes staged, or written and not yet durable, before writers wait (default 256 MiB):
    /// the pipe's memory bound, and a bound on what a crash can leave half-written past the
    /// last durable byte. A single write larger than this still goes through on its own.
    /// Writers that wait for room are let in in arrival order (a later write that would fit
    /// waits behind them), so a large write is never passed over for good. A write made on
    /// one of the pipe's own threads (a task's waker, a `Payload` or `Storage`
    /// implementation) never waits, since only they free room: it may go past this bound.
    pub max_staged_bytes: u64,
    /// The file is grown (`fallocate`) in steps of this many bytes (default 64 MiB), so that
    /// `fdatasync` rarely has to persist a size change.
    pub grow_step: u64,
    /// Syncs allowed in flight at once (default 1; 1 to 64). With 1 the flusher syncs each
    /// group itself (classic group commit: the largest groups, no thread hop), and once waking
    /// a group's waiters takes longer than 1.25 syncs it hands the wake-up to a publisher thread
    /// and writes the next group at once (writes staged meanwhile go out in a sync of their
    /// own while the waiters wake: [`PipeStats::pipelined`]); with more, sync
    /// workers run the syncs so the next group is written and synced while the previous sync
    /// is still running. Overlapping syncs only pay on devices that complete them in
    /// parallel: on the ext4 virtual disk this was tuned on, 4 in flight made groups smaller
    /// and cost 10-25% of acks/s at 1, 8 and 64 writers, so the default is 1.
    pub syncs_in_flight: usize,
    /// Bytes of zeros kept written ahead of the highest write (default 2 MiB; 0 turns it off;
    /// at most 1 GiB). A sync of data written into preallocated (`fallocate`d) space must
    /// also commit the conversion of those blocks from "unwritten" in the file system's
    /// journal; a sync of data overwriting blocks already written is a plain data flush. On
    /// the ext4 disk this was measured on, that made a sync of a 64-record group 2.2x faster
    /// (131 us against 292 us). The flusher writes the zeros itself, in runs of at least half
    /// this size, right after a group's data (so they never overlap data: they only go past
    /// the highest byte written, and never below the file's length when the pipe started),
    /// and the group's sync makes them durable. Failing to write zeros only stops the zeroing.
    pub zero_ahead: u64,
    /// Where zeros may begin: the bytes at and past it hold nothing the owner needs (an event
    /// log's committed end, say). Default `None`: the storage's length when the pipe starts,
    /// so nothing already in the file is ever zeroed.
    pub zero_from: Option<u64>,
    /// Longest a blocked [`Pipe::wait_durable`] spins before it parks (default 400 us; at
    /// most 10 ms; zero turns spinning off). Handing a thread back a CPU it parked on costs
    /// a wake-up and a context switch, tens of microseconds in a VM, a good share of a fast
    /// device's sync. So while syncs take at most half this long (a moving average), a waiter
    /// spins instead, at most one per CPU but one (the others park at once, so many
    /// waiters never starve the flusher), yielding now and then; and the flusher, after a
    /// sync, spins a moment for the next write before it sleeps. On a slow device nobody spins.
    /// The flusher's wait for the writers a sync acknowledged (it yields for at most one
    /// sync) is also bounded by this, and off when it is zero.
    pub wait_spin: Duration,
}

impl Default for PipeConfig {
    fn default() -> Self {
        PipeConfig {
            chunk_size: 4096,
            max_write: 64 << 20,
            max_staged_bytes: 256 << 20,
            grow_step: 64 << 20,
            syncs_in_flight: 1,
            zero_ahead: 2 << 20,
            zero_from: None,
            wait_spin: Duration::from_micros(400),
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// Its value.
    pub value: u64,
    /// What it must be.
    pub expected: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pipe config {} = {} must be {}",
            self.field, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Why [`Pipe::new`] did not start a pipe.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A configuration value out of range: nothing was started.
    Config(ConfigError),
    /// The operating system would not start one of the pipe's threads (a limit on threads or
    /// memory); the threads started before it were stopped and joined.
    Spawn {
        /// Which thread: `"flusher"` or `"sync worker"`.
        thread: &'static str,
        /// The error from the thread's creation.
        source: std::io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(error) => error.fmt(f),
            StartError::Spawn { thread, source } => {
                write!(f, "could not start the pipe's {thread} thread: {source}")
            }
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Config(error) => Some(error),
            StartError::Spawn { source, .. } => Some(source),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(error: ConfigError) -> Self {
        StartError::Config(error)
    }
}

impl PipeConfig {
    /// Checks every field (what [`Pipe::new`] does first), so an owner can refuse a bad
    /// configuration before it opens anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let error = |field, value, expected| {
            Err(ConfigError {
                field,
                value,
                expected,
            })
        };
        if !self.chunk_size.is_power_of_two() {
            return error("chunk_size", self.chunk_size, "a power of two");
        }
        if self.max_write == 0 || self.max_write > i64::MAX as u64 {
            return error("max_write", self.max_write, "between 1 and i64::MAX");
        }
        if self.max_staged_bytes == 0 {
            return error("max_staged_bytes", 0, "at least 1");
        }
        if self.grow_step == 0 {
            return error("grow_step", 0, "at least 1");
        }
        if self.zero_ahead > MAX_ZERO_AHEAD {
            return error("zero_ahead", self.zero_ahead, "at most 1 GiB");
        }
        if self.wait_spin > MAX_WAIT_SPIN {
            return error(
                "wait_spin (us)",
                self.wait_spin.as_micros() as u64,
                "at most 10 ms",
            );
        }
        if self.syncs_in_flight == 0 || self.syncs_in_flight > 64 {
            return error(
                "syncs_in_flight",
                self.syncs_in_flight as u64,
                "between 1 and 64",
            );
        }
        Ok(())
    }
}

/// The longest [`PipeConfig::wait_spin`].
const MAX_WAIT_SPIN: Duration = Duration::from_millis(10);

/// The largest [`PipeConfig::zero_ahead`].
const MAX_ZERO_AHEAD: u64 = 1 << 30;

/// Zeros are written in whole, aligned pages (so `O_DIRECT` files take them too) from this one
/// page, repeated in the iovecs.
const ZERO_PAGE_SIZE: usize = 4096;
#[repr(C, align(4096))]
struct ZeroPage([u8; ZERO_PAGE_SIZE]);
static ZERO_PAGE: ZeroPage = ZeroPage([0; ZERO_PAGE_SIZE]);
const _: () = assert!(std::mem::align_of::<ZeroPage>() == ZERO_PAGE_SIZE);

/// Most iovecs per `pwritev`: the kernel takes at most IOV_MAX (1024).
const MAX_IOVECS: usize = 512;

/// The flusher's view of the file's space, in bytes.
struct Space {
    /// Reserved with `allocate`.
    allocated: u64,
    /// The end of the highest write so far, or where zeros may begin (the file's length when
    /// the pipe started, or `zero_from`): zeros only ever go past it.
    written_end: u64,
    /// Zeros are written up to here.
    zeroed_end: u64,
    /// Off when configured off, when the file's length was unknown, or after zeros failed.
    zeroing: bool,
}

struct Staged {
    epoch: u64,
    offset: u64,
    payload: Box<dyn Payload>,
}

#[derive(Default)]
struct Staging {
    /// The newest epoch handed out.
    newest: u64,
    writes: Vec<Staged>,
    /// Bytes staged or being written (the memory bound).
    bytes: u64,
    /// Writers waiting for room take tickets and are let in in arrival order, so a large
    /// write is not passed over for good by smaller ones that keep fitting in the room left:
    /// tickets `room_served..room_issued` are waiting, the first of them is next.
    room_issued: u64,
    room_served: u64,
    flusher_idle: bool,
    closed: bool,
    failure: Option<PipeError>,
}

/// Sync jobs and what their completions prove.
///
/// A successful `fdatasync` proves the writes before it durable only if no sync that ran at
/// the same time failed: with one file description, Linux reports a writeback error to one
/// of the concurrent callers and the others return 0. So a success is recorded with a
/// *barrier* (the number of syncs started when it finished) and published only once every
/// sync started before that barrier has finished too, all of them successfully.
#[derive(Default)]
struct Syncs {
    /// Epoch of the queued, not yet started sync (at most one: a later group joins it).
    queued: Option<u64>,
    /// Start numbers of the syncs running now.
    running: Vec<u64>,
    /// Syncs started so far.
    started: u64,
    /// Successful syncs waiting for their barrier: (barrier, epoch).
    proven: Vec<(u64, u64)>,
    shutdown: bool,
}

#[derive(Default)]
struct Notify {
    failure: Option<PipeError>,
    /// Pending futures: (epoch, waker), each woken once its epoch is durable.
    wakers: Vec<(u64, Waker)>,
}

/// Acknowledged epochs whose waiters the publisher thread is to wake.
#[derive(Default)]
struct Handoff {
    pending: Vec<Acknowledged>,
    /// The flusher stopped: wake what is pending, then end.
    stop: bool,
}

/// An epoch made durable (`Shared::acknowledge`) whose waiters are still to be woken.
struct Acknowledged {
    epoch: u64,
    /// The newest epoch staged just before: the gather hint counts from it.
    staged_before: u64,
    /// Epochs this acknowledgement made durable.
    acknowledged: u64,
    /// Tasks waiting for those epochs.
    wakers: Vec<(u64, Waker)>,
}

/// How the flusher got a sync's outcome out (see `Shared::queue_sync`).
enum Outcome {
    /// Waiters woken by the flusher itself, starting at this instant.
    Published(std::time::Instant),
    /// Wake-up handed to the publisher thread: writes are staged already.
    HandedOff,
    /// Queued for a sync worker, or nothing to publish.
    Other,
}

#[cfg(not(epoch_pipe_loom))]
std::thread_local! {
    /// On a pipe's own threads (flusher, sync workers, publisher), which run tasks' wakers:
    /// the address of that pipe's shared state (0 elsewhere). A `close` of that pipe from one
    /// of them must not wait for its threads to end.
    static PIPE_OF_THREAD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(all(test, not(epoch_pipe_loom)))]
thread_local! {
    /// Test hook: the thread role whose start is refused, as if by the operating system, to
    /// pipes made on this thread.
    static REFUSE_SPAWN_OF: std::cell::Cell<Option<&'static str>> =
        const { std::cell::Cell::new(None) };
}

fn spawn_refused(role: &'static str) -> bool {
    #[cfg(all(test, not(epoch_pipe_loom)))]
    if REFUSE_SPAWN_OF.get() == Some(role) {
        return true;
    }
    let _ = role;
    false
}

/// Marks the calling thread as one of `shared`'s pipe's threads.
fn mark_pipe_thread<S>(shared: &Shared<S>) {
    #[cfg(not(epoch_pipe_loom))]
    PIPE_OF_THREAD.with(|pipe| pipe.set(std::ptr::from_ref(shared) as usize));
    #[cfg(epoch_pipe_loom)]
    let _ = shared;
}

/// Whether the calling thread is one of `shared`'s pipe's threads (never under loom, whose
/// models do not close from a waker).
fn on_pipe_thread<S>(shared: &Shared<S>) -> bool {
    #[cfg(not(epoch_pipe_loom))]
    return PIPE_OF_THREAD.with(std::cell::Cell::get) == std::ptr::from_ref(shared) as usize;
    #[cfg(epoch_pipe_loom)]
    {
        let _ = shared;
        false
    }
}

/// Publications that woke fewer waiters say little about the cost of waking a crowd.
const REGROUP_SAMPLE_MIN_WAITERS: u64 = 4;

/// Consecutive epochs that share a sleeper tag. With 64 writers in two cohorts that take turns
/// (see `Shared::pipelining`) a group spans 8-9 blocks, and the cohort behind it shares at
/// most the block at its end; the 32 tags span 128 epochs before they repeat.
const EPOCHS_PER_TAG: u64 = 4;
const TAGS: u64 = u32::BITS as u64;

/// The tag a blocked waiter for `epoch` sleeps under.
fn epoch_tag(epoch: u64) -> u32 {
    1 << ((epoch / EPOCHS_PER_TAG) % TAGS)
}

/// The tags of the epochs in `from..=to`: every waiter that epochs in there made durable
/// sleeps under one of them.
fn epochs_tags(from: u64, to: u64) -> u32 {
    if from > to {
        return 0;
    }
    let (first, last) = (from / EPOCHS_PER_TAG, to / EPOCHS_PER_TAG);
    if last - first + 1 >= TAGS {
        return ALL_TAGS;
    }
    // `last - first + 1` (< 32) consecutive tags from `first`'s, the ones past bit 31
    // folded back to bit 0.
    let run = (1u64 << (last - first + 1)) - 1;
    let shifted = run << (first % TAGS);
    (shifted as u32) | (shifted >> TAGS) as u32
}

/// Wakes every task of `wakers`, even if a waker panics (user code): the others are woken
/// first, then the first panic goes on (and fails the pipe, see [`FailOnPanic`]). A waker
/// that panicked part-way used to leave the tasks after it asleep forever.
fn wake_tasks(wakers: Vec<(u64, Waker)>) {
    let mut first_panic = None;
    for (_, waker) in wakers {
        if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()))
        {
            first_panic.get_or_insert(panic);
        }
    }
    if let Some(panic) = first_panic {
        std::panic::resume_unwind(panic);
    }
}

/// Fails the pipe when the thread holding it unwinds (a panicking `Storage` or `Payload`
/// implementation), so that waiters get [`PipeError::Panicked`] instead of waiting forever for
/// a sync that will never come, and `close` reports it. Declared first in the thread's
/// function, it is dropped after every lock guard of that thread.
struct FailOnPanic<'a, S: Storage> {
    shared: &'a Shared<S>,
    thread: &'static str,
}

impl<S: Storage> Drop for FailOnPanic<'_, S> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.fail_for_panic(self.thread);
        }
    }
}

struct Shared<S> {
    storage: S,
    config: PipeConfig,
    staging: Mutex<Staging>,
    /// The flusher waits here for staged writes; writers wait here for staging room.
    staged: Condvar,
    room: Condvar,
    syncs: Mutex<Syncs>,
    sync_work: Condvar,
    /// Highest epoch known durable. Written only under `notify`.
    durable: AtomicU64,
    notify: Mutex<Notify>,
    /// Blocked threads sleep here, tagged with their epoch's block (`epoch_tag`); every
    /// publication of a durable epoch advances it with the tags of the epochs it made durable
    /// (`epochs_tags`), a failure with all of them. One wake-up call for the whole group; a
    /// waiter for a later group stays asleep unless its block shares a tag with this group's
    /// (the block at either end, or blocks 32 apart).
    sleepers: WakeWord,
    /// Set (under the notify lock) with `Notify::failure`, for sleepers to check without it.
    failed: AtomicBool,
    /// Set by `close` before it tells the flusher, so a gather ends at once (a hint).
    closing: AtomicBool,
    /// Mirror of `Staging::newest`, so waiters validate epochs without the staging lock.
    newest: AtomicU64,
    /// Written groups not yet durable: (epoch, bytes), in epoch order.
    unsynced: Mutex<std::collections::VecDeque<(u64, u64)>>,
    /// The epoch the flusher may wait for before it takes its next group: the writes that
    /// the waiters acknowledged by the last publication are about to stage (a hint: see
    /// `run_flusher`; 0 = none).
    gather_until: AtomicU64,
    /// Waiters blocked or registered when the last publication went out, woken by it or not
    /// (tags leave the later cohort asleep): a hint, see `Shared::pipelining`, which weighs
    /// it against the regrouping time per waiter measured with the same count.
    last_woken: AtomicUsize,
    /// Moving average of how long each woken waiter delays the flusher's next group, in
    /// nanoseconds: the time from a publication the flusher made to the next group taken,
    /// divided by the waiters it woke (written by the flusher only; see `pipelining`).
    regroup_nanos_per_waiter: AtomicU64,
    /// Publications the flusher handed to the publisher thread (see `Shared::hand_off`).
    handoff: Mutex<Handoff>,
    handoff_work: Condvar,
    /// The publisher thread, started the first time a publication is handed off.
    publisher: Mutex<Option<thread::JoinHandle<()>>>,
    /// Groups written and syncs completed, for [`Pipe::stats`].
    groups: AtomicU64,
    syncs_done: AtomicU64,
    pipelined: AtomicU64,
    /// Spinning instead of parking while syncs are short.
    spin: Spin,
}

/// Background durability for positioned writes to one file.
///
/// ```
/// use epoch_pipe::{Pipe, PipeConfig, SimDisk};
///
/// let disk = SimDisk::new();
/// let pipe = Pipe::new(disk.clone(), PipeConfig::default())?;
/// let epoch = pipe.write(b"hello".to_vec(), 0)?;   // staged, returns at once
/// pipe.wait_durable(epoch)?;                        // on stable storage now
/// assert_eq!(&disk.durable_contents()[..5], b"hello");
///
/// // Several writes, durable together under one epoch.
/// let mut tx = pipe.transaction();
/// tx.write(b"page one".to_vec(), 1)?;
/// tx.write(b"page two".to_vec(), 2)?;
/// pipe.wait_durable(tx.commit()?)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pipe<S: Storage> {
    shared: Arc<Shared<S>>,
    threads: Mutex<Vec<thread::JoinHandle<()>>>,
}

impl<S: Storage> std::fmt::Debug for Pipe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("durable", &self.durable_epoch())
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S: Storage> Pipe<S> {
    /// Starts a pipe writing to `storage`: one flusher thread, plus `syncs_in_flight` sync
    /// workers when that is more than one. Fails on a bad configuration, or when a thread
    /// cannot be started (then nothing is left running).
    pub fn new(storage: S, config: PipeConfig) -> Result<Pipe<S>, StartError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            storage,
            config,
            staging: Mutex::new(Staging::default()),
            staged: Condvar::new(),
            room: Condvar::new(),
            syncs: Mutex::new(Syncs::default()),
            sync_work: Condvar::new(),
            durable: AtomicU64::new(0),
            notify: Mutex::new(Notify::default()),
            sleepers: WakeWord::new(),
            failed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            newest: AtomicU64::new(0),
            unsynced: Mutex::new(std::collections::VecDeque::new()),
            gather_until: AtomicU64::new(0),
            last_woken: AtomicUsize::new(0),
            regroup_nanos_per_waiter: AtomicU64::new(0),
            handoff: Mutex::new(Handoff::default()),
            handoff_work: Condvar::new(),
            publisher: Mutex::new(None),
            groups: AtomicU64::new(0),
            syncs_done: AtomicU64::new(0),
            pipelined: AtomicU64::new(0),
            spin: Spin::new(config.wait_spin),
        });
        let workers = if config.syncs_in_flight == 1 {
            0
        } else {
            config.syncs_in_flight
        };
        // Built before its threads: if one cannot start, dropping the pipe closes it, which
        // stops and joins those already running.
        let pipe = Pipe {
            shared,
            threads: Mutex::new(Vec::with_capacity(1 + workers)),
        };
        pipe.start_thread("flusher", |shared| shared.run_flusher(&shared))?;
        for _ in 0..workers {
            pipe.start_thread("sync worker", |shared| shared.run_sync_worker())?;
        }
        Ok(pipe)
    }

    /// Starts one of the pipe's threads (named `epoch-pipe-<role>`) running `run`.
    fn start_thread(
        &self,
        role: &'static str,
        run: impl FnOnce(Arc<Shared<S>>) + Send + 'static,
    ) -> Result<(), StartError> {
        let shared = Arc::clone(&self.shared);
        let spawned = if spawn_refused(role) {
            Err(std::io::Error::from(std::io::ErrorKind::OutOfMemory))
        } else {
            thread::Builder::new()
                .name(format!("epoch-pipe-{}", role.replace(' ', "-")))
                .spawn(move || run(shared))
        };
        let handle = spawned.map_err(|source| StartError::Spawn {
            thread: role,
            source,
        })?;
        lock(&self.threads).push(handle);
        Ok(())
    }

    /// The storage, for reads. Reads of durable data keep working after a failure.
    pub fn storage(&self) -> &S {
        &self.shared.storage
    }

    /// The configuration.
    pub fn config(&self) -> &PipeConfig {
        &self.shared.config
    }

    /// Stages `payload` for chunk index `index` (byte `index * chunk_size`) and returns its
    /// epoch at once; the write goes out with the next group.
    pub fn write(&self, payload: impl Payload, index: u64) -> Result<Epoch, PipeError> {
        let staged = self.shared.check(Box::new(payload), index)?;
        let len = staged.1.len() as u64;
        self.shared.stage(vec![staged], len)
    }

    /// Starts a transaction: writes that become durable together under one epoch.
    pub fn transaction(&self) -> Transaction<'_, S> {
        Transaction {
            pipe: self,
            writes: Vec::new(),
            bytes: 0,
        }
    }

    /// Blocks until `epoch` is durable, or returns the pipe's failure.
    pub fn wait_durable(&self, epoch: Epoch) -> Result<(), PipeError> {
        self.shared.check_known(epoch)?;
        let durable = || self.shared.durable.load(Ordering::Acquire) >= epoch.0;
        if durable() || self.shared.spin.waiter(durable) {
            return Ok(());
        }
        let shared = &*self.shared;
        // One pass: `failed` is set under the notify lock after `failure`, so a sleeper that
        // saw it finds the failure there.
        loop {
            shared.sleepers.wait_until_tagged(epoch_tag(epoch.0), || {
                durable() || shared.failed.load(Ordering::Acquire)
            });
            // The durable epoch never moves after a failure, so a durable epoch is an answer
            // whatever happened since.
            if durable() {
                return Ok(());
            }
            if let Some(failure) = lock(&shared.notify).failure.clone() {
                return Err(failure);
            }
        }
    }

    /// Polls whether `epoch` is durable, registering `cx`'s waker if not.
    pub fn poll_durable(&self, epoch: Epoch, cx: &mut Context<'_>) -> Poll<Result<(), PipeError>> {
        if let Err(error) = self.shared.check_known(epoch) {
            return Poll::Ready(Err(error));
        }
        if self.shared.durable.load(Ordering::Acquire) >= epoch.0 {
            return Poll::Ready(Ok(()));
        }
        let mut notify = lock(&self.shared.notify);
        if self.shared.durable.load(Ordering::Acquire) >= epoch.0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(failure) = &notify.failure {
            return Poll::Ready(Err(failure.clone()));
        }
        match notify
            .wakers
            .iter_mut()
            .find(|(e, w)| *e == epoch.0 && w.will_wake(cx.waker()))
        {
            Some(_) => {}
            None => notify.wakers.push((epoch.0, cx.waker().clone())),
        }
        Poll::Pending
    }

    /// A future that resolves once `epoch` is durable: async callers need no thread per wait.
    pub fn durable(&self, epoch: Epoch) -> Durable<'_, S> {
        Durable { pipe: self, epoch }
    }

    /// The newest epoch handed out; waiting for it waits for everything written so far.
    pub fn newest_epoch(&self) -> Epoch {
        Epoch(lock(&self.shared.staging).newest)
    }

    /// Waits until everything written so far is durable. No write waits for a timer, so this
    /// only waits for the group in flight.
    pub fn flush(&self) -> Result<Epoch, PipeError> {
        let newest = self.newest_epoch();
        self.wait_durable(newest)?;
        Ok(newest)
    }

    /// The highest epoch known durable.
    pub fn durable_epoch(&self) -> Epoch {
        Epoch(self.shared.durable.load(Ordering::Acquire))
    }

    /// Counters: how well writes are being grouped.
    pub fn stats(&self) -> PipeStats {
        PipeStats {
            epochs: self.shared.newest.load(Ordering::Relaxed),
            groups: self.shared.groups.load(Ordering::Relaxed),
            syncs: self.shared.syncs_done.load(Ordering::Relaxed),
            pipelined: self.shared.pipelined.load(Ordering::Relaxed),
        }
    }

    /// The failure the pipe stopped on, if any.
    pub fn failure(&self) -> Option<PipeError> {
        lock(&self.shared.notify).failure.clone()
    }

    /// Stops accepting writes, writes and syncs what was staged, and stops the threads.
    /// Returns the pipe's failure if it has one. Also done on drop. A `close` racing another
    /// waits for it; one made by a task's waker that the pipe runs (on one of its own
    /// threads) starts the close and returns without waiting for it.
    pub fn close(&self) -> Result<(), PipeError> {
        self.shared.closing.store(true, Ordering::Relaxed);
        {
            let mut staging = lock(&self.shared.staging);
            staging.closed = true;
            self.shared.staged.notify_all();
            self.shared.room.notify_all();
        }
        // On one of the pipe's own threads (a task's waker that closes the pipe) nobody can
        // wait for those threads to end: the close is under way, report what is known.
        if on_pipe_thread(&self.shared) {
            return match self.failure() {
                Some(failure) => Err(failure),
                None => Ok(()),
            };
        }
        // Held until every thread has ended: a `close` racing this one waits here instead of
        // finding no thread to join and returning before what was staged is synced.
        let mut threads = lock(&self.threads);
        for handle in threads.drain(..) {
            // A panicking worker already recorded nothing more to do; the failure (if any)
            // is reported below.
            let _ = handle.join();
        }
        // Started by the flusher, which has ended: the publisher wakes what was handed to it
        // and ends too. Taken out first: joining with the publisher lock held would block a
        // flusher that hands off a last wake-up.
        let publisher = lock(&self.shared.publisher).take();
        if let Some(publisher) = publisher {
            let _ = publisher.join();
        }
        drop(threads);
        match self.failure() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

impl<S: Storage> Drop for Pipe<S> {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Writes staged together: one epoch, one group, never split across syncs.
///
/// Dropping it without [`Transaction::commit`] discards the writes.
pub struct Transaction<'a, S: Storage> {
    pipe: &'a Pipe<S>,
    writes: Vec<(u64, Box<dyn Payload>)>,
    bytes: u64,
}

impl<S: Storage> std::fmt::Debug for Transaction<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("writes", &self.writes.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl<S: Storage> Transaction<'_, S> {
    /// Adds a write of `payload` at chunk index `index`. Checks it at once: a bad write is
    /// refused here and the transaction stays as it was.
    pub fn write(&mut self, payload: impl Payload, index: u64) -> Result<(), PipeError> {
        let (offset, payload) = self.pipe.shared.check(Box::new(payload), index)?;
        let bytes = self.bytes + payload.len() as u64;
        if bytes > self.pipe.shared.config.max_write {
            return Err(PipeError::TooLarge {
                len: bytes,
                max: self.pipe.shared.config.max_write,
            });
        }
        self.bytes = bytes;
        self.writes.push((offset, payload));
        Ok(())
    }

    /// Stages every write under one epoch.
    pub fn commit(self) -> Result<Epoch, PipeError> {
        if self.writes.is_empty() {
            return Err(PipeError::Empty);
        }
        self.pipe.shared.stage(self.writes, self.bytes)
    }
}

/// The future of [`Pipe::durable`].
#[derive(Debug)]
pub struct Durable<'a, S: Storage> {
    pipe: &'a Pipe<S>,
    epoch: Epoch,
}

impl<S: Storage> Future for Durable<'_, S> {
    type Output = Result<(), PipeError>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.pipe.poll_durable(self.epoch, cx)
    }
}

impl<S: Storage> Shared<S> {
    fn check(
        &self,
        payload: Box<dyn Payload>,
        index: u64,
    ) -> Result<(u64, Box<dyn Payload>), PipeError> {
        let len = payload.len() as u64;
        if len == 0 {
            return Err(PipeError::Empty);
        }
        let max = self.config.max_write;
        if len > max {
            return Err(PipeError::TooLarge { len, max });
        }
        let offset = index
            .checked_mul(self.config.chunk_size)
            .filter(|offset| {
                offset
                    .checked_add(len)
                    .is_some_and(|end| end <= i64::MAX as u64)
            })
            .ok_or(PipeError::TooLarge { len, max })?;
        Ok((offset, payload))
    }

    fn check_known(&self, epoch: Epoch) -> Result<(), PipeError> {
        let newest = self.newest.load(Ordering::Acquire);
        if epoch.0 > newest {
            return Err(PipeError::UnknownEpoch {
                epoch: epoch.0,
                newest,
            });
        }
        Ok(())
    }

    fn stage(&self, writes: Vec<(u64, Box<dyn Payload>)>, bytes: u64) -> Result<Epoch, PipeError> {
        let mut staging = lock(&self.staging);
        let mut ticket = None;
        loop {
            // Failure and close are for good: every writer in line leaves by one of these,
            // so nobody is left waiting for a ticket that left.
            if let Some(failure) = &staging.failure {
                return Err(failure.clone());
            }
            if staging.closed {
                return Err(PipeError::Closed);
            }
            let next_in_line = ticket.unwrap_or(staging.room_issued) == staging.room_served;
            // A write larger than the bound goes through alone rather than never.
            let fits = staging.bytes == 0 || staging.bytes + bytes <= self.config.max_staged_bytes;
            if next_in_line && fits {
                if ticket.is_some() {
                    staging.room_served += 1;
                    // The next in line may fit in what is left.
                    self.room.notify_all();
                }
                break;
            }
            // A write made on one of this pipe's own threads (a task's waker, say) is let in at
            // once: only those threads free room, so it would wait for itself. (A waker of this
            // pipe writing to another full pipe, whose waker writes back here, can still
            // deadlock: each waits for the other's threads.) Asked only of a write that would
            // wait, so the common one pays no thread-local lookup.
            if ticket.is_none() && on_pipe_thread(self) {
                break;
            }
            if ticket.is_none() {
                ticket = Some(staging.room_issued);
                staging.room_issued += 1;
            }
            staging = wait(&self.room, staging);
        }
        debug_assert!(staging.room_served <= staging.room_issued);
        staging.newest += 1;
        let epoch = staging.newest;
        self.newest.store(epoch, Ordering::Release);
        staging.bytes += bytes;
        staging
            .writes
            .extend(writes.into_iter().map(|(offset, payload)| Staged {
                epoch,
                offset,
                payload,
            }));
        if staging.flusher_idle {
            staging.flusher_idle = false;
            self.staged.notify_one();
        }
        Ok(Epoch(epoch))
    }

    /// Gives back the staging room of every group up to `epoch`, now durable.
    fn release_room(&self, epoch: u64) {
        let mut durable_bytes = 0;
        {
            let mut unsynced = lock(&self.unsynced);
            while unsynced.front().is_some_and(|&(e, _)| e <= epoch) {
                durable_bytes += unsynced.pop_front().map_or(0, |(_, bytes)| bytes);
            }
        }
        if durable_bytes > 0 {
            let mut staging = lock(&self.staging);
            staging.bytes -= durable_bytes.min(staging.bytes);
            self.room.notify_all();
        }
    }

    fn fail(&self, failure: PipeError) {
        // Nothing staged will be written any more: drop it (outside the lock) so pooled chunks
        // go back to their pool at once; a writer may be waiting for them.
        let abandoned = {
            let mut staging = lock(&self.staging);
            staging.failure.get_or_insert_with(|| failure.clone());
            staging.bytes = 0;
            self.room.notify_all();
            std::mem::take(&mut staging.writes)
        };
        drop(abandoned);
        let wakers = {
            let mut notify = lock(&self.notify);
            notify.failure.get_or_insert(failure);
            self.failed.store(true, Ordering::Release);
            std::mem::take(&mut notify.wakers)
        };
        self.sleepers.advance();
        wake_tasks(wakers);
    }

    /// The flusher thread's loop; `this` is the `Arc` that holds `self` (to start the
    /// publisher thread with).
    fn run_flusher(&self, this: &Arc<Self>) {
        let _fail_on_panic = self.enter_pipe_thread("flusher");
        let length = self.storage.len();
        // Without a floor, zeros could land on data written before this pipe started.
        let zero_floor = self.config.zero_from.or(length.as_ref().ok().copied());
        let mut space = Space {
            allocated: length.unwrap_or(0),
            written_end: zero_floor.unwrap_or(0),
            zeroed_end: zero_floor.unwrap_or(0),
            zeroing: zero_floor.is_some() && self.config.zero_ahead > 0,
        };
        let mut batch: Vec<Staged> = Vec::new();
        // The newest epoch taken so far, and whether the flusher may spin for the next one
        // (once after each group it synced itself: a waiter that spun through that sync is
        // about to write again).
        let mut taken = 0;
        let mut may_spin = false;
        // How the last sync's outcome went out: handed off (writes were staged already, take
        // them at once) or published here (time the regrouping; see `Shared::pipelining`).
        let mut last_outcome = Outcome::Other;
        loop {
            // Waiters the last sync acknowledged are about to write again: give them the CPU
            // for a moment so they join this group instead of the next (a group costs a whole
            // fsync whatever its size). At most one average sync (see `Spin::gather`); skipped
            // when they are all back already.
            let until = self.gather_until.swap(0, Ordering::Relaxed);
            let handed_off = matches!(last_outcome, Outcome::HandedOff);
            if until > 0 && !handed_off {
                self.spin.gather(until, || {
                    if self.closing.load(Ordering::Relaxed) || self.failed.load(Ordering::Relaxed) {
                        u64::MAX
                    } else {
                        self.newest.load(Ordering::Acquire)
                    }
                });
            }
            let batch_bytes;
            let mut went_idle = false;
            {
                let mut staging = lock(&self.staging);
                loop {
                    let stop =
                        staging.failure.is_some() || (staging.writes.is_empty() && staging.closed);
                    if stop {
                        // After a failure nothing staged will be written: let it go now so
                        // pooled chunks return to their pool (a writer may be waiting for them).
                        let abandoned = std::mem::take(&mut staging.writes);
                        if staging.failure.is_some() {
                            staging.bytes = 0;
                        }
                        // Lock order is syncs -> staging -> notify: release staging first.
                        drop(staging);
                        drop(abandoned);
                        return self.stop_sync_workers();
                    }
                    if !staging.writes.is_empty() {
                        break;
                    }
                    // Waiting for writes that nobody was woken to make: the time until the
                    // next group says nothing about waking waiters.
                    went_idle = true;
                    if std::mem::take(&mut may_spin) {
                        drop(staging);
                        self.spin
                            .flusher(|| self.newest.load(Ordering::Acquire) > taken);
                        staging = lock(&self.staging);
                        continue;
                    }
                    staging.flusher_idle = true;
                    staging = wait(&self.staged, staging);
                }
                staging.flusher_idle = false;
                std::mem::swap(&mut batch, &mut staging.writes);
                batch_bytes = batch.iter().map(|w| w.payload.len() as u64).sum::<u64>();
            }
            let Some(epoch) = batch.last().map(|w| w.epoch) else {
                continue;
            };
            if let Outcome::Published(at) = std::mem::replace(&mut last_outcome, Outcome::Other)
                && !went_idle
            {
                self.time_regroup(at);
            }
            taken = epoch;
            may_spin = self.config.syncs_in_flight == 1;
            let outcome = self.write_batch(&batch, &mut space);
            if outcome.is_ok() {
                self.zero_ahead(&mut space);
            }
            self.groups.fetch_add(1, Ordering::Relaxed);
            batch.clear(); // drops the payloads: pooled chunks go back now
            if let Err(failure) = outcome {
                self.fail(failure);
                return self.stop_sync_workers();
            }
            // The group's bytes keep counting against `max_staged_bytes` until they are
            // durable, so written-but-unsynced data is bounded too (recovery relies on it).
            lock(&self.unsynced).push_back((epoch, batch_bytes));
            last_outcome = self.queue_sync(this, epoch);
        }
    }

    /// Writes `batch` in staging order, coalescing runs of adjacent writes into one `pwritev`.
    fn write_batch(&self, batch: &[Staged], space: &mut Space) -> Result<(), PipeError> {
        let mut index = 0;
        let mut slices: Vec<IoSlice<'_>> = Vec::new();
        while index < batch.len() {
            let start = batch[index].offset;
            let mut end = start;
            slices.clear();
            while index < batch.len() && batch[index].offset == end && slices.len() < MAX_IOVECS {
                batch[index].payload.io_slices(&mut slices);
                end += batch[index].payload.len() as u64;
                index += 1;
            }
            self.allocate(end, space)?;
            // Zeros already written there are overwritten here, in this order: the flusher
            // writes both.
            space.written_end = space.written_end.max(end);
            self.write_slices(start, &slices)?;
        }
        Ok(())
    }

    /// Grows the reserved space to cover `end`, in `grow_step`s.
    fn allocate(&self, end: u64, space: &mut Space) -> Result<(), PipeError> {
        if end <= space.allocated {
            return Ok(());
        }
        let grown = end
            .div_ceil(self.config.grow_step)
            .checked_mul(self.config.grow_step)
            .unwrap_or(end);
        // A whole step may not fit on a nearly full disk while this write still does: then
        // just this write's end (the next write tries a whole step again).
        let failed = |target: u64, e: &std::io::Error| {
            PipeError::from_io(
                Operation::Allocate,
                space.allocated,
                target - space.allocated,
                e,
            )
        };
        let allocated = match self.storage.allocate(grown) {
            Ok(()) => grown,
            Err(e) if grown > end && crate::error::is_no_space(&e) => {
                self.storage.allocate(end).map_err(|e| failed(end, &e))?;
                end
            }
            Err(e) => return Err(failed(grown, &e)),
        };
        space.allocated = allocated;
        Ok(())
    }

    /// Writes `slices` at `start`. One payload may bring many slices (a pooled payload has
    /// one per chunk): the kernel takes at most IOV_MAX per call, so write in pieces.
    fn write_slices(&self, start: u64, slices: &[IoSlice<'_>]) -> Result<(), PipeError> {
        let mut at = start;
        for piece in slices.chunks(MAX_IOVECS) {
            let piece_len: u64 = piece.iter().map(|slice| slice.len() as u64).sum();
            let written = self
                .storage
                .write_vectored_at(at, piece)
                .map_err(|e| PipeError::from_io(Operation::Write, at, piece_len, &e))?;
            if written as u64 != piece_len {
                self.write_rest(at, piece, piece_len, written)?;
            }
            at += piece_len;
        }
        Ok(())
    }

    /// Finishes a `pwritev` that wrote `written` of the `piece_len` bytes of `piece` at `at`.
    /// A short count is no error by itself (Linux writes at most 2 GiB - 4 KiB a call, and a
    /// disk filling up mid-write reports what fit): the rest goes out with further calls, and
    /// the error of the call that fails is the one reported (`ENOSPC` -> `NoSpace`). A call
    /// that writes nothing and reports no error is [`PipeError::ShortWrite`].
    #[cold]
    fn write_rest(
        &self,
        at: u64,
        piece: &[IoSlice<'_>],
        piece_len: u64,
        mut written: usize,
    ) -> Result<(), PipeError> {
        let mut rest: Vec<IoSlice<'_>> = piece.to_vec();
        let mut rest = &mut rest[..];
        let mut done = 0u64;
        // Each round writes at least one byte or returns: at most `piece_len` rounds.
        loop {
            let left = piece_len - done;
            if written == 0 || written as u64 > left {
                // Nothing written and no error, or more claimed than asked for (a storage
                // not to be trusted with more).
                return Err(PipeError::ShortWrite {
                    offset: at,
                    expected: piece_len,
                    written: done + written as u64,
                });
            }
            if written as u64 == left {
                return Ok(());
            }
            IoSlice::advance_slices(&mut rest, written);
            done += written as u64;
            let offset = at + done;
            written = self
                .storage
                .write_vectored_at(offset, rest)
                .map_err(|e| PipeError::from_io(Operation::Write, offset, piece_len - done, &e))?;
        }
    }

    /// Keeps zeros written ahead of the highest write (see [`PipeConfig::zero_ahead`]): once
    /// less than half of `zero_ahead` is left, writes zeros up to `zero_ahead` past it. Runs
    /// on the flusher after a group's data and before its sync, so the zeros only ever land
    /// past every byte written so far and the sync makes them durable with the group.
    fn zero_ahead(&self, space: &mut Space) {
        let ahead = self.config.zero_ahead;
        if !space.zeroing {
            return;
        }
        let page = ZERO_PAGE_SIZE as u64;
        let from = space
            .zeroed_end
            .max(space.written_end.next_multiple_of(page));
        // `written_end <= i64::MAX` (writes are checked) and `ahead <= 1 GiB`: no overflow.
        if from >= space.written_end + ahead / 2 {
            return;
        }
        let to = (space.written_end + ahead).next_multiple_of(page);
        if to > i64::MAX as u64 {
            space.zeroing = false;
            return;
        }
        debug_assert!(from >= space.written_end && from < to && from.is_multiple_of(page));
        let pages = ((to - from) / page) as usize;
        let slices = vec![IoSlice::new(&ZERO_PAGE.0); pages];
        // Zeros only speed later syncs up: a failure to place them stops the zeroing, not the
        // pipe (a write error that matters shows again in the next sync, which fails it).
        match self
            .allocate(to, space)
            .and_then(|()| self.write_slices(from, &slices))
        {
            Ok(()) => space.zeroed_end = to,
            Err(_) => space.zeroing = false,
        }
    }

    /// Gets `epoch` synced. With `syncs_in_flight == 1` the flusher syncs itself (classic
    /// group commit, no thread hop), acknowledges the outcome, and wakes the waiters itself
    /// or hands their wake-up off (see [`Shared::pipelining`]). Otherwise the sync goes to
    /// the workers, so the flusher writes the next group while this one syncs; a queued sync
    /// that has not started yet takes this group's epoch instead, since it will cover this
    /// group too. Either way the flusher never waits for a sync slot.
    fn queue_sync(&self, this: &Arc<Self>, epoch: u64) -> Outcome {
        let mut syncs = lock(&self.syncs);
        debug_assert!(syncs.queued.is_none_or(|queued| queued < epoch));
        if self.config.syncs_in_flight > 1 {
            syncs.queued = Some(epoch);
            self.sync_work.notify_one();
            return Outcome::Other;
        }
        let Some(acked) = self.sync(syncs, epoch) else {
            return Outcome::Other;
        };
        let acked = if self.pipelining(epoch) {
            match self.hand_off(this, acked) {
                Ok(()) => return Outcome::HandedOff,
                Err(acked) => acked,
            }
        } else {
            acked
        };
        let at = std::time::Instant::now();
        self.wake(acked);
        Outcome::Published(at)
    }

    /// Records how long the waiters of a publication the flusher made kept it from its next
    /// group (they wake, run, and stage their next writes), per waiter.
    fn time_regroup(&self, published_at: std::time::Instant) {
        let woken = self.last_woken.load(Ordering::Relaxed) as u64;
        if woken < REGROUP_SAMPLE_MIN_WAITERS {
            return;
        }
        let per_waiter =
            u64::try_from(published_at.elapsed().as_nanos()).unwrap_or(u64::MAX) / woken;
        crate::spin::add_to_average(&self.regroup_nanos_per_waiter, per_waiter);
    }

    /// Whether the flusher, having synced up to `taken`, should let another thread wake the
    /// waiters and write the next group at once. Waking a crowd takes a while (a few
    /// microseconds of CPU per thread, and the woken threads preempt the waker), and the disk
    /// idles meanwhile. When the last publication woke many waiters and writes are staged
    /// already (writers acknowledged earlier, back during this sync), the next group goes out
    /// while this one's waiters wake up: the writers settle into two cohorts that take turns,
    /// one syncing while the other wakes and stages. With few waiters (a wake-up is quick)
    /// the flusher keeps waking them itself and gathering them into one group. Never under
    /// loom, whose models have a handful of waiters.
    fn pipelining(&self, taken: u64) -> bool {
        let woken = self.last_woken.load(Ordering::Relaxed) as u64;
        let per_waiter = self.regroup_nanos_per_waiter.load(Ordering::Relaxed);
        let sync = u64::try_from(self.spin.sync_average().as_nanos()).unwrap_or(u64::MAX);
        // Two half-size groups per turn of both cohorts, instead of one whole group: worth it
        // once regrouping everybody takes longer than a sync and a quarter (each pipelined
        // sync also pays a hand-off and a write of its own).
        sync > 0
            && woken.saturating_mul(per_waiter) > sync.saturating_mul(5) / 4
            && self.newest.load(Ordering::Acquire) > taken
    }

    /// Hands the wake-up of an acknowledged epoch to the publisher thread, starting it the
    /// first time; gives it back if the thread cannot be started (the caller wakes itself).
    fn hand_off(&self, this: &Arc<Self>, acked: Acknowledged) -> Result<(), Acknowledged> {
        {
            let mut publisher = lock(&self.publisher);
            if publisher.is_none() {
                let shared = Arc::clone(this);
                match thread::Builder::new()
                    .name("epoch-pipe-publisher".into())
                    .spawn(move || shared.run_publisher())
                {
                    Ok(handle) => *publisher = Some(handle),
                    Err(_) => return Err(acked),
                }
            }
        }
        let mut handoff = lock(&self.handoff);
        if handoff.stop {
            // The publisher is ending (or gone): nobody would take this.
            return Err(acked);
        }
        handoff.pending.push(acked);
        self.handoff_work.notify_one();
        self.pipelined.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The publisher thread: wakes the waiters of what the flusher hands it, until the
    /// flusher stops (then it wakes what is pending and ends).
    fn run_publisher(&self) {
        let _fail_on_panic = self.enter_pipe_thread("publisher");
        let mut handoff = lock(&self.handoff);
        loop {
            if !handoff.pending.is_empty() {
                let pending = std::mem::take(&mut handoff.pending);
                drop(handoff);
                for acked in pending {
                    self.wake_or_fail(acked);
                }
                handoff = lock(&self.handoff);
                continue;
            }
            if handoff.stop {
                return;
            }
            handoff = wait(&self.handoff_work, handoff);
        }
    }

    /// Wakes an acknowledged epoch's waiters for the publisher. A task's waker that panics
    /// (user code) fails the pipe as a panic on this thread would, but does not end the
    /// thread: it goes on with the rest of this hand-off and later ones until the flusher
    /// stops, since an acknowledgement left pending would strand its tasks for good.
    fn wake_or_fail(&self, acked: Acknowledged) {
        let woke = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.wake(acked)));
        if woke.is_err() {
            self.fail_for_panic("publisher");
        }
    }

    /// Fails the pipe with [`PipeError::Panicked`] for `thread` and stops its workers. `fail`
    /// wakes the tasks still registered, whose wakers may panic too: caught, since a panic
    /// there while the caller unwinds would abort the process.
    fn fail_for_panic(&self, thread: &'static str) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.fail(PipeError::Panicked { thread });
        }));
        self.stop_sync_workers();
    }

    /// What each of the pipe's threads does first: marks itself as one of this pipe's (see
    /// `close`) and returns the guard that fails the pipe if it panics.
    fn enter_pipe_thread(&self, thread: &'static str) -> FailOnPanic<'_, S> {
        mark_pipe_thread(self);
        FailOnPanic {
            shared: self,
            thread,
        }
    }

    /// Ends the sync workers and the publisher (each finishes what it was given first).
    fn stop_sync_workers(&self) {
        {
            let mut syncs = lock(&self.syncs);
            syncs.shutdown = true;
            self.sync_work.notify_all();
        }
        let mut handoff = lock(&self.handoff);
        handoff.stop = true;
        self.handoff_work.notify_all();
    }

    fn run_sync_worker(&self) {
        let _fail_on_panic = self.enter_pipe_thread("sync worker");
        let mut syncs = lock(&self.syncs);
        loop {
            let Some(epoch) = syncs.queued.take() else {
                if syncs.shutdown {
                    return;
                }
                syncs = wait(&self.sync_work, syncs);
                continue;
            };
            // Waiters woken without the lock: the flusher queues the next sync meanwhile.
            if let Some(acked) = self.sync(syncs, epoch) {
                self.wake(acked);
            }
            syncs = lock(&self.syncs);
        }
    }

    /// Runs one sync acknowledging `epoch` (the lock is released during the syscall), records
    /// what its outcome proves, and acknowledges the newest epoch now proven durable before it
    /// lets the lock go; returns what waking that epoch's waiters needs (wake-ups are
    /// idempotent and may run in any order, on any thread).
    fn sync<'a>(&'a self, mut syncs: MutexGuard<'a, Syncs>, epoch: u64) -> Option<Acknowledged> {
        let start = syncs.started;
        syncs.started += 1;
        syncs.running.push(start);
        drop(syncs);

        let outcome = self.spin.time_sync(|| self.storage.sync_data());
        self.syncs_done.fetch_add(1, Ordering::Relaxed);

        let mut syncs = lock(&self.syncs);
        syncs.running.retain(|&running| running != start);
        match outcome {
            Err(error) => {
                syncs.proven.clear();
                self.fail(PipeError::from_io(Operation::Sync, 0, 0, &error));
                None
            }
            Ok(()) => {
                let barrier = syncs.started;
                syncs.proven.push((barrier, epoch));
                // Every sync started before `oldest_running` has finished successfully (a
                // failure would have failed the pipe), so proofs with a barrier at or below it
                // hold.
                let oldest_running = syncs.running.iter().copied().min().unwrap_or(u64::MAX);
                let mut newest = None;
                syncs.proven.retain(|&(barrier, epoch)| {
                    let holds = barrier <= oldest_running;
                    if holds {
                        newest = newest.max(Some(epoch));
                    }
                    !holds
                });
                // Acknowledged under the syncs lock: a failure recorded after this proof
                // cannot take it back.
                newest.and_then(|epoch| self.acknowledge(epoch))
            }
        }
    }

    /// Makes `epoch` durable for everybody who looks (`durable`), unless the pipe failed
    /// first; returns what waking its waiters needs. Called under the syncs lock right after
    /// the proof, so no later failure can come between a proof and its acknowledgement.
    fn acknowledge(&self, epoch: u64) -> Option<Acknowledged> {
        let mut notify = lock(&self.notify);
        if notify.failure.is_some() {
            // `fail` gave all the staging room back already.
            return None;
        }
        // Read before the acknowledgement: every write its waiters stage comes after.
        let staged_before = self.newest.load(Ordering::Acquire);
        let acknowledged = epoch.saturating_sub(self.durable.fetch_max(epoch, Ordering::Release));
        let (wakers, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut notify.wakers)
            .into_iter()
            .partition(|(e, _)| *e <= epoch);
        notify.wakers = pending;
        Some(Acknowledged {
            epoch,
            staged_before,
            acknowledged,
            wakers,
        })
    }

    /// Wakes the waiters of an acknowledged epoch (even after a failure since: their epoch is
    /// durable) and gives its staging room back.
    fn wake(&self, acked: Acknowledged) {
        let Acknowledged {
            epoch,
            staged_before,
            acknowledged,
            wakers,
        } = acked;
        let sleepers = self
            .sleepers
            .advance_tags(epochs_tags((epoch - acknowledged).saturating_add(1), epoch));
        self.last_woken
            .store(sleepers + wakers.len(), Ordering::Relaxed);
        // Each acknowledged epoch that had a waiter may bring a write back: `sleepers` also
        // counts waiters for later epochs and `acknowledged` writes nobody waited for, so the
        // smaller of the two is the estimate.
        let returning = acknowledged.min((sleepers + wakers.len()) as u64);
        if returning > 1 {
            self.gather_until
                .fetch_max(staged_before + returning, Ordering::Relaxed);
        }
        wake_tasks(wakers);
        // After the wake-up: the acknowledged waiters wait on it, a writer held back by
        // `max_staged_bytes` only on the room.
        self.release_room(epoch);
    }
}

#[cfg(all(test, not(epoch_pipe_loom)))]
mod tests {
    use super::*;
    use std::task::Wake;

    struct PanickingWaker;
    impl Wake for PanickingWaker {
        fn wake(self: Arc<Self>) {
            panic!("this waker panics on purpose");
        }
    }

    struct CountingWaker(AtomicUsize, std::thread::Thread);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            self.1.unpark();
        }
    }

    /// Two acknowledgements handed to the publisher in one batch, the first with a task whose
    /// waker panics: the second's task is woken all the same (a publisher that unwound used
    /// to drop it), the pipe fails with `Panicked` on the publisher, and a hand-off after
    /// that is refused (the flusher then wakes inline) rather than left pending for nobody.
    #[test]
    fn a_panicking_waker_on_the_publisher_strands_no_later_hand_off() {
        let pipe = Pipe::new(crate::SimDisk::new(), PipeConfig::default()).expect("config");
        let shared = &pipe.shared;
        let counting = Arc::new(CountingWaker(AtomicUsize::new(0), std::thread::current()));
        let acknowledged = |epoch: u64, waker: Waker| Acknowledged {
            epoch,
            staged_before: 0,
            acknowledged: 0,
            wakers: vec![(epoch, waker)],
        };
        // An acknowledgement that wakes nobody starts the publisher; then both go out as one
        // batch, queued under one lock (handed off one by one, the first could stop the
        // publisher before the second is handed off).
        let nobody = Acknowledged {
            epoch: 0,
            staged_before: 0,
            acknowledged: 0,
            wakers: Vec::new(),
        };
        assert!(shared.hand_off(shared, nobody).is_ok());
        {
            let mut handoff = lock(&shared.handoff);
            handoff
                .pending
                .push(acknowledged(1, Waker::from(Arc::new(PanickingWaker))));
            handoff
                .pending
                .push(acknowledged(2, Waker::from(Arc::clone(&counting))));
            shared.handoff_work.notify_one();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while counting.0.load(Ordering::SeqCst) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the task after the panicking waker was never woken"
            );
            std::thread::park_timeout(Duration::from_millis(10));
        }
        assert_eq!(
            pipe.failure(),
            Some(PipeError::Panicked {
                thread: "publisher"
            })
        );
        // The first panic stopped the publisher before the second hand-off was woken: a
        // later one comes back to its caller (the flusher wakes it inline).
        let late = acknowledged(3, Waker::from(Arc::clone(&counting)));
        assert!(shared.hand_off(shared, late).is_err());
    }

    /// A payload whose bytes the flusher cannot take until the test opens the gate: holds
    /// the first group (and so the staging room) in place.
    struct Gated(Vec<u8>, Arc<(Mutex<bool>, Condvar)>);
    impl Payload for Gated {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn io_slices<'a>(&'a self, out: &mut Vec<IoSlice<'a>>) {
            let (open, opened) = &*self.1;
            let mut open = lock(open);
            while !*open {
                open = wait(opened, open);
            }
            out.push(IoSlice::new(&self.0));
        }
    }

    /// A write waiting for staging room is let in before a later, smaller write that would
    /// fit in the room left (else a stream of small writes could hold it off for good).
    #[test]
    fn writers_waiting_for_room_are_let_in_in_arrival_order() {
        let pipe = Arc::new(
            Pipe::new(
                crate::SimDisk::new(),
                PipeConfig {
                    max_staged_bytes: 8192,
                    ..PipeConfig::default()
                },
            )
            .expect("pipe"),
        );
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let first = pipe
            .write(Gated(vec![1; 4096], Arc::clone(&gate)), 0)
            .expect("write");
        let second = pipe.write(vec![2u8; 2048], 1).expect("write"); // 6 KiB of 8 in use
        // Until the writer is in line, or got through without queueing (the bug).
        let in_line = |n, writer: &std::thread::JoinHandle<Epoch>| {
            while lock(&pipe.shared.staging).room_issued < n && !writer.is_finished() {
                std::thread::yield_now();
            }
        };
        let big = std::thread::spawn({
            let pipe = Arc::clone(&pipe);
            move || pipe.write(vec![3u8; 4096], 2).expect("write")
        });
        in_line(1, &big);
        let small = std::thread::spawn({
            let pipe = Arc::clone(&pipe);
            move || pipe.write(vec![4u8; 1024], 3).expect("write") // would fit
        });
        in_line(2, &small);
        {
            let (open, opened) = &*gate;
            *lock(open) = true;
            opened.notify_all();
        }
        let (big, small) = (big.join().expect("big"), small.join().expect("small"));
        assert!(
            first < second && second < big && big < small,
            "epochs {first:?} {second:?} {big:?} {small:?}"
        );
        pipe.wait_durable(small).expect("durable");
        let staging = lock(&pipe.shared.staging);
        assert_eq!((staging.room_issued, staging.room_served), (2, 2));
    }

    /// A pipe whose thread the system refuses is an error, and the threads started before it
    /// are stopped: none still holds the storage.
    #[test]
    fn a_thread_that_cannot_start_is_an_error_and_leaves_nothing_running() {
        let config = PipeConfig {
            syncs_in_flight: 3,
            ..PipeConfig::default()
        };
        for role in ["flusher", "sync worker"] {
            let disk = Arc::new(crate::SimDisk::new());
            REFUSE_SPAWN_OF.set(Some(role));
            let started = Pipe::new(Arc::clone(&disk), config);
            REFUSE_SPAWN_OF.set(None);
            match started {
                Err(StartError::Spawn { thread, source }) => {
                    assert_eq!(thread, role);
                    assert_eq!(source.kind(), std::io::ErrorKind::OutOfMemory);
                }
                other => panic!("expected a spawn error for the {role}, got {other:?}"),
            }
            // The flusher (started before a refused sync worker) was stopped and joined.
            assert_eq!(
                Arc::strong_count(&disk),
                1,
                "{role}: a thread still holds the pipe"
            );
        }
        // And with nothing refused, the same configuration starts and works.
        let pipe = Pipe::new(crate::SimDisk::new(), config).expect("pipe");
        let epoch = pipe.write(vec![7u8; 16], 0).expect("write");
        pipe.wait_durable(epoch).expect("durable");
    }

    /// A publication of `from..=to` names the tag of every epoch in it (else a waiter would
    /// sleep through its acknowledgement), and, short of 32 blocks, only the tags of blocks
    /// the range touches (else the tags would wake waiters for nothing).
    #[test]
    fn a_publication_names_exactly_the_tags_of_its_epochs() {
        let edges = [0, 1, 3, 4, 5, 60, 124, 127, 128, 129, 1_000, u64::MAX / 2];
        for from in edges {
            for len in [1, 2, 3, 4, 5, 8, 31, 64, 65, 120, 124, 125, 128, 129, 1_000] {
                let to = from + len - 1;
                let tags = epochs_tags(from, to);
                let mut expected = 0u32;
                for epoch in from..=to.min(from + 4 * TAGS * EPOCHS_PER_TAG) {
                    assert_ne!(tags & epoch_tag(epoch), 0, "epoch {epoch} of {from}..={to}");
                    expected |= epoch_tag(epoch);
                }
                assert_eq!(tags, expected, "{from}..={to}: {tags:#034b}");
                assert_eq!(epoch_tag(from).count_ones(), 1);
            }
        }
        assert_eq!(epochs_tags(10, 9), 0, "an empty range names no tag");
        assert_eq!(epochs_tags(0, TAGS * EPOCHS_PER_TAG - 1), ALL_TAGS);
        // Wrapping past bit 31: blocks 31 and 32 are bits 31 and 0.
        let block_31 = 31 * EPOCHS_PER_TAG;
        assert_eq!(
            epochs_tags(block_31, block_31 + EPOCHS_PER_TAG),
            (1 << 31) | 1
        );
    }
}
