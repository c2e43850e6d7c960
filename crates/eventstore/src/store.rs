//! The application-facing API: `Store` -> `Domain` -> `AggregateType` -> `Stream`.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use epoch_pipe::{FileOptions, FileStorage, Pipe, PipeConfig, Storage};
use packed_ascii::{Packed64, Packed128};
use ringbuffer_core::{
    BroadcastConsumer, Error as RingError, LagPolicy, Producer, RingBuilder, SubscribeHandle,
};

use crate::error::{CorruptKind, Failure, FailureSlot, NameKind, Result, StoreError};
use crate::event::{Event, EventView, Expected, Receipt, RecordedEvent};
use crate::files;
use crate::log::LogView;
use crate::record::{self, Kind, StreamKey};
use crate::reply::{Answers, Waiter};
use crate::scan;
use crate::state::{self, CheckpointError, Committed};
use crate::writer::{
    BATCH_BYTES, CHUNK, COMPLETER_THREAD, CommitNotice, Completer, Item, PackedEvent, Request,
    Visible, WRITER_THREAD, Writer, WriterState,
};

/// Options of [`Store::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Largest payload + metadata of one event, in bytes (default 1 MiB; at least 64 KiB,
    /// at most 16 MiB).
    pub max_event_size: usize,
    /// Appends the intake ring holds before callers wait (default 4096; rounded up to a
    /// power of two, at most 1M).
    pub intake_capacity: usize,
    /// Durable batches the live-subscription ring holds (default 1024; rounded up to a power
    /// of two, at most 1M). A subscriber further behind than this is moved to reading from
    /// disk, never waited for, and rejoins the live ring once caught up.
    pub live_capacity: usize,
    /// A checkpoint of the stream table is written every this many events (default 1M) and
    /// on close; opening replays only the log after the last checkpoint.
    pub checkpoint_every: u64,
    /// Syncs in flight in the durability pipe (default 1; see `epoch_pipe::PipeConfig`).
    pub syncs_in_flight: usize,
    /// The log file is grown (preallocated) in steps of this many bytes (default 64 MiB; a
    /// multiple of 4096, at least 64 KiB): `fdatasync` then rarely has to persist a size change.
    pub grow_step: u64,
    /// Largest encoded size of one append (all its events, headers included), in bytes
    /// (default 32 MiB; at least `max_event_size` + 4 KiB, at most 1 GiB). Checked when the
    /// append is submitted, before it is known which of its streams exist, so each stream
    /// of the append counts a stream-creation record (112 bytes) whether it is new or not.
    pub max_append_bytes: usize,
    /// Tests only: wraps the log's storage (e.g. to simulate a power loss). Not part of the
    /// stable API.
    #[doc(hidden)]
    pub log_storage_hook: Option<StorageHook>,
    /// Tests only: runs on a subscriber's thread just before it joins the live ring (to make
    /// appends land in that window). Not part of the stable API.
    #[doc(hidden)]
    pub before_live_join: Option<TestHook>,
    /// Tests only: runs on the writer thread before each batch is written (a panic there
    /// stands for a bug in the writer). Not part of the stable API.
    #[doc(hidden)]
    pub before_write: Option<TestHook>,
    /// Tests only: runs on the completer thread before each batch is answered (a panic there
    /// stands for a bug in the completer). Not part of the stable API.
    #[doc(hidden)]
    pub before_answer: Option<TestHook>,
    /// Memory for batches on their way to disk (default 64 MiB, in 4 KiB-aligned pooled
    /// chunks): when it is all in flight, appends wait (backpressure).
    pub staging_bytes: usize,
    /// Longest the thread that waits for each batch's durability spins before it parks
    /// (default 400 us, at most 10 ms, zero: never spin); only while syncs take at most half
    /// this long. See `epoch_pipe::PipeConfig::wait_spin`: a park and wake-up cost tens of
    /// microseconds in a VM, a good share of a fast device's sync.
    pub wait_spin: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_event_size: 1 << 20,
            intake_capacity: 4096,
            live_capacity: 1024,
            checkpoint_every: 1_000_000,
            syncs_in_flight: 1,
            grow_step: 64 << 20,
            staging_bytes: 64 << 20,
            max_append_bytes: 32 << 20,
            log_storage_hook: None,
            before_live_join: None,
            before_write: None,
            before_answer: None,
            wait_spin: PipeConfig::default().wait_spin,
        }
    }
}

/// Wraps the log's storage before the pipe writes through it (tests only).
#[doc(hidden)]
#[derive(Clone)]
#[allow(clippy::type_complexity)]
pub struct StorageHook(pub Arc<dyn Fn(FileStorage) -> Box<dyn Storage> + Send + Sync>);

impl std::fmt::Debug for StorageHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageHook")
    }
}

/// Code a test runs at a chosen point of a store's threads (tests only).
#[doc(hidden)]
#[derive(Clone)]
pub struct TestHook(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for TestHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestHook")
    }
}

/// What opening the store found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Events found in the log (the next global position).
    pub events: u64,
    /// Streams found.
    pub streams: u64,
    /// Events replayed from the log after the last checkpoint.
    pub replayed_events: u64,
    /// A torn tail was cut off at this log offset.
    pub truncated_at: Option<u64>,
    /// Bytes zeroed when cutting the tail.
    pub truncated_bytes: u64,
    /// Why the tail was cut (the first bad record), if it was damaged rather than uncommitted.
    pub tail_damage: Option<CorruptKind>,
    /// The checkpoint was unreadable and the whole log was replayed.
    pub checkpoint_discarded: bool,
}

/// Shared by every handle of one open store.
struct Inner {
    dir: PathBuf,
    options: StoreOptions,
    /// The MPSC intake ring: every appending thread claims a slot of this one shared
    /// producer (claims are lock-free) and the writer thread consumes it.
    intake: Producer<Option<Request>>,
    /// Joins subscribers to the completer's broadcast ring of commit notices.
    live: SubscribeHandle<CommitNotice>,
    log: LogView,
    index: File,
    visible: Arc<RwLock<Visible>>,
    /// The first failure, after which the store takes no appends (see [`Failure`]).
    failure: FailureSlot,
    pipe: Arc<Pipe<Box<dyn Storage>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    recovery: RecoveryReport,
    /// The writer lock, released by close.
    lock: Mutex<Option<File>>,
    /// Where appenders wait for their answers (woken a batch at a time).
    answers: Arc<Answers>,
}

/// An open event store. Cheap to clone and share between threads (`Send + Sync`).
///
/// ```
/// use eventstore::{Event, Expected, Store};
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let accounts = store.domain("bank")?.aggregate("account")?;
/// let stream = accounts.instance(42u128);
/// let receipt = stream.append(Expected::NoStream, &[Event::new("opened", b"{}".to_vec())])?;
/// assert_eq!(receipt.last_version(), 0);
/// stream.append(Expected::Exact(0), &[Event::new("deposited", b"100".to_vec())])?;
/// let events = stream.read_from(0)?;
/// assert_eq!(events.len(), 2);
/// assert_eq!(events[1].payload, b"100");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// A domain of a store (1 to 10 characters).
#[derive(Debug, Clone)]
pub struct Domain {
    store: Store,
    domain: Packed64,
}

/// An aggregate type within a domain (1 to 21 characters).
#[derive(Debug, Clone)]
pub struct AggregateType {
    store: Store,
    domain: Packed64,
    aggregate: Packed128,
}

/// One aggregate instance's stream of events.
#[derive(Debug, Clone)]
pub struct Stream {
    store: Store,
    key: StreamKey,
}

/// One part of [`Store::append_multi`].
#[derive(Debug, Clone, Copy)]
pub struct AppendItem<'a> {
    /// The stream.
    pub stream: &'a Stream,
    /// What it must be at.
    pub expected: Expected,
    /// Its new events.
    pub events: &'a [Event],
}

/// A stream read's view of the log: the mapping, the stream's last version, and where the
/// walk back starts (a mark, or the newest event).
struct Walk {
    map: std::sync::Arc<memmap2::Mmap>,
    /// The stream's id: every record walked must carry it.
    stream: u64,
    last: u64,
    start_version: u64,
    start_offset: u64,
    log_end: u64,
}

/// An append submitted without waiting: wait for it later.
#[derive(Debug)]
pub struct PendingAppend {
    reply: Waiter,
}

impl PendingAppend {
    /// Blocks until the append is durable (or failed).
    pub fn wait(self) -> Result<Receipt> {
        self.reply.wait()
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if the directory is new or empty.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens with options.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let dir = dir.as_ref();
        check_options(&options)?;
        let lock = files::prepare(dir)?;
        let log_path = files::path(dir, files::LOG);
        let index_path = files::path(dir, files::INDEX);
        let log_file = files::open_rw(&log_path)?;
        let index = files::open_rw(&index_path)?;
        let created = !files::path(dir, files::CHECKPOINT).exists()
            && log_file
                .metadata()
                .map_err(|e| StoreError::io(&log_path, e))?
                .len()
                == 0;
        if created {
            files::sync_dir(dir)?;
        }
        let log = LogView::open(&log_path)?;
        // The in-flight window of any configuration, not only this one: a store last run with
        // a larger `max_append_bytes` may have left bytes that far past its last commit. The
        // search stops at the file's end, which growth keeps within a `grow_step` or so.
        let widest = pipe_config(&StoreOptions {
            max_append_bytes: MAX_APPEND_BYTES_LIMIT,
            ..StoreOptions::default()
        });
        let window = widest.max_staged_bytes + widest.max_write;
        let (committed, recovery, tail) =
            recover(dir, &log_file, &log, &index, &index_path, window)?;
        drop(log_file);

        let file = FileStorage::open(&log_path, FileOptions::default())
            .map_err(|e| StoreError::io(&log_path, e))?;
        let storage: Box<dyn Storage> = match &options.log_storage_hook {
            Some(hook) => (hook.0)(file),
            None => Box::new(file),
        };
        let pipe_config = PipeConfig {
            // Past the committed end the log holds only zeros (recovery zeroed any uncommitted
            // bytes): the pipe may write zeros ahead from there, so new appends land on
            // written blocks and their syncs are plain data flushes.
            zero_from: Some(committed.log_end),
            ..pipe_config(&options)
        };
        let pipe = Arc::new(Pipe::new(storage, pipe_config).map_err(|e| pipe_start_error(dir, e))?);

        let tail_base = committed.log_end / CHUNK * CHUNK;
        let failure = FailureSlot::default();
        let writer = Writer {
            state: WriterState {
                table: committed.table.without_marks(),
                next_position: committed.next_position,
                log_end: committed.log_end,
                tail_base,
                tail,
            },
            pipe: Arc::clone(&pipe),
            index: index
                .try_clone()
                .map_err(|e| StoreError::io(&index_path, e))?,
            index_path: index_path.clone(),
            max_batch_requests: 1024,
            pool: staging_pool(&options)?,
            failure: failure.clone(),
            before_write: options.before_write.clone(),
        };
        let visible = Arc::new(RwLock::new(Visible { state: committed }));
        let ring_option = |option, capacity: usize| StoreError::InvalidOption {
            option,
            value: capacity as u64,
            expected: "between 1 and 1M",
        };
        let (live, _) = RingBuilder::new(options.live_capacity.next_power_of_two())
            .lag_policy(LagPolicy::Evict)
            .broadcast(0)
            .map_err(|_| ring_option("live_capacity", options.live_capacity))?;
        let (intake, intake_ring) = RingBuilder::new(options.intake_capacity.next_power_of_two())
            .mpsc()
            .map_err(|_| ring_option("intake_capacity", options.intake_capacity))?;
        let live_handle = live.subscribe_handle();
        let checkpoint_dir = dir.to_path_buf();
        let checkpoint_index = index
            .try_clone()
            .map_err(|e| StoreError::io(&index_path, e))?;
        let answers = Arc::new(Answers::new(failure.clone()));
        let completer = Completer {
            answers: Arc::clone(&answers),
            pipe: Arc::clone(&pipe),
            visible: Arc::clone(&visible),
            live,
            failure: failure.clone(),
            // A checkpoint is an optimisation: when it cannot be written the next open replays
            // more of the log, so a failure here is not an append failure.
            checkpoint: Box::new(move |state| {
                let _ = write_checkpoint(&checkpoint_dir, &checkpoint_index, state);
            }),
            checkpoint_every: options.checkpoint_every,
            before_answer: options.before_answer.clone(),
        };
        // Unbounded, and std's drops every queued message when the receiver goes: if the
        // completer dies, the replies of batches queued for it are dropped on its unwinding
        // thread, which answers them with the failure (see `Reply`).
        let (done_tx, done_rx) = mpsc::channel();
        let writer_thread = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer.run(intake_ring, done_tx))
            .map_err(|e| StoreError::io(dir, e))?;
        let completer_thread = std::thread::Builder::new()
            .name(COMPLETER_THREAD.into())
            .spawn(move || completer.run(done_rx))
            .map_err(|e| StoreError::io(dir, e))?;
        Ok(Store {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                options,
                intake,
                live: live_handle,
                log,
                index,
                visible,
                failure,
                pipe,
                threads: Mutex::new(vec![writer_thread, completer_thread]),
                recovery,
                lock: Mutex::new(Some(lock)),
                answers,
            }),
        })
    }

    /// What opening found and repaired (a torn tail, replayed events).
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Durability counters: appends staged, groups written, `fdatasync`s done. Appends per
    /// sync is the group-commit factor.
    pub fn pipe_stats(&self) -> epoch_pipe::PipeStats {
        self.inner.pipe.stats()
    }

    /// The store directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// A domain handle; the name is checked and packed once.
    pub fn domain(&self, name: &str) -> Result<Domain> {
        let domain = Packed64::new(name).map_err(|source| StoreError::InvalidName {
            kind: NameKind::Domain,
            name: name.into(),
            source,
        })?;
        Ok(Domain {
            store: self.clone(),
            domain,
        })
    }

    /// Events in the global order from `from_position`, at most `limit`.
    pub fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let mut events =
            Vec::with_capacity(limit.min(self.len().saturating_sub(from_position) as usize));
        self.scan_all(from_position, limit, |event| {
            events.push(event.to_recorded())
        })?;
        Ok(events)
    }

    /// Visits events in the global order from `from_position`, at most `limit`, borrowing
    /// them straight from the memory-mapped log (no copy, no allocation). Returns the position
    /// after the last event visited.
    pub fn scan_all(
        &self,
        from_position: u64,
        limit: usize,
        visit: impl FnMut(&EventView<'_>),
    ) -> Result<u64> {
        let (next_position, log_end) = self.committed_end();
        if from_position >= next_position || limit == 0 {
            return Ok(from_position);
        }
        let offset = self.offset_of(from_position)?;
        self.scan_log(offset, from_position, next_position, log_end, limit, visit)
    }

    /// Visits the events with positions in `[from_position, end_position)` (at most `limit`)
    /// found in the log from `offset` (a record boundary at or before the first of them) up to
    /// `log_end`, all of it durable and visible. Returns the position after the last visited.
    fn scan_log(
        &self,
        mut offset: u64,
        from_position: u64,
        next_position: u64,
        log_end: u64,
        limit: usize,
        mut visit: impl FnMut(&EventView<'_>),
    ) -> Result<u64> {
        let map = self.inner.log.map_covering(log_end)?;
        // Stream names by id, looked up under the read lock only when the stream changes.
        let mut last_stream: Option<(u64, StreamKey)> = None;
        let mut visited = 0;
        let mut position = from_position;
        while offset < log_end && visited < limit {
            let bytes = &map[offset as usize..log_end as usize];
            let record = match record::decode(bytes) {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(kind) => return Err(self.inner.log.corrupt(offset, kind)),
            };
            offset += record.stored_len as u64;
            let header = &record.header;
            if header.kind != Kind::Event || header.position < from_position {
                continue;
            }
            if header.position >= next_position {
                break;
            }
            if header.position != position {
                // The index pointed past events, or the log lost one: never skip in silence.
                let what = "global positions do not follow";
                return Err(self.inner.log.corrupt(
                    offset - record.stored_len as u64,
                    CorruptKind::OutOfOrder { what },
                ));
            }
            let key = match last_stream {
                Some((id, key)) if id == header.stream => key,
                _ => {
                    let key = self.read_visible().state.table.streams[header.stream as usize].key;
                    last_stream = Some((header.stream, key));
                    key
                }
            };
            visit(&EventView::new(key, &record));
            visited += 1;
            position = header.position + 1;
        }
        Ok(position)
    }

    /// Follows the global order from `from_position`: past events first, then new ones as
    /// they become durable.
    ///
    /// A subscription catches up by reading the log, then joins the store's live broadcast
    /// ring: the thread that makes each durable batch visible publishes one notice of where
    /// its events are, and every live subscriber decodes them from the log (no index lookup,
    /// no lock). A subscriber that falls a whole ring behind ([`StoreOptions::live_capacity`]
    /// batches) is evicted rather than waited for, so it never holds writers back; it then
    /// continues from disk and rejoins, without losing or repeating an event.
    pub fn subscribe(&self, from_position: u64) -> Subscription {
        Subscription {
            store: self.clone(),
            next_position: from_position,
            buffer: VecDeque::new(),
            live: None,
            settle_until: None,
            rejoined: 0,
        }
    }

    /// Appends to several streams at once: all of it becomes durable together or none of it
    /// does, and one failed expectation fails the whole call.
    pub fn append_multi(&self, items: &[AppendItem<'_>]) -> Result<Receipt> {
        self.append_multi_nowait(items)?.wait()
    }

    /// [`Store::append_multi`] without waiting for durability.
    pub fn append_multi_nowait(&self, items: &[AppendItem<'_>]) -> Result<PendingAppend> {
        if items.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let packed = items
            .iter()
            .map(|item| self.pack_item(item.stream.key, item.expected, item.events))
            .collect::<Result<Vec<_>>>()?;
        self.submit(packed)
    }

    /// The number of events in the store (= the next global position).
    pub fn len(&self) -> u64 {
        self.committed_end().0
    }

    /// True when the store has no events.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops accepting appends, waits for those in flight, writes a checkpoint, stops the
    /// threads and releases the writer lock. Later appends through any handle fail with
    /// [`StoreError::Closed`] (or, on a store that failed before, with that
    /// [`StoreError::Failed`] failure); reads keep working. Also done when the last handle is
    /// dropped.
    pub fn close(&self) -> Result<()> {
        self.inner.shutdown();
        match self.failure() {
            Some(failure) => Err(StoreError::Failed(failure)),
            None => Ok(()),
        }
    }

    /// The first failure, if the store failed (see [`StoreError::Failed`]).
    fn failure(&self) -> Option<Failure> {
        self.inner.failure.get()
    }

    /// What a handle of a store that ended answers: its failure, or [`StoreError::Closed`].
    fn closed_or_failed(&self) -> StoreError {
        self.failure()
            .map_or(StoreError::Closed, StoreError::Failed)
    }

    fn pack_item(&self, key: StreamKey, expected: Expected, events: &[Event]) -> Result<Item> {
        if events.is_empty() {
            return Err(StoreError::EmptyAppend);
        }
        let max = self.inner.options.max_event_size;
        let events = events
            .iter()
            .map(|event| {
                let size = event.payload.len() + event.metadata.len();
                if size > max {
                    return Err(StoreError::EventTooLarge { size, max });
                }
                let event_type = Packed128::new(&event.event_type).map_err(|source| {
                    StoreError::InvalidName {
                        kind: NameKind::EventType,
                        name: event.event_type.clone(),
                        source,
                    }
                })?;
                Ok(PackedEvent {
                    event_type,
                    metadata: event.metadata.clone(),
                    payload: event.payload.clone(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Item {
            key,
            expected,
            events,
        })
    }

    fn submit(&self, items: Vec<Item>) -> Result<PendingAppend> {
        let bytes: usize = items
            .iter()
            .map(|item| {
                record::stored_len(0, record::STREAM_BODY_LEN)
                    + item
                        .events
                        .iter()
                        .map(|e| record::stored_len(e.metadata.len(), e.payload.len()))
                        .sum::<usize>()
            })
            .sum();
        let max = self.inner.options.max_append_bytes;
        if bytes > max {
            return Err(StoreError::AppendTooLarge { size: bytes, max });
        }
        if let Some(failure) = self.failure() {
            return Err(StoreError::Failed(failure));
        }
        let (reply, waiter) = self.inner.answers.pair();
        // The request is moved into the claimed slot and out again by the writer: no copy of
        // the events, no lock.
        self.inner
            .intake
            .push(Some(Request {
                items,
                reply,
                bytes,
            }))
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingAppend { reply: waiter })
    }

    fn read_visible(&self) -> std::sync::RwLockReadGuard<'_, Visible> {
        self.inner.visible.read().unwrap_or_else(|p| p.into_inner())
    }

    /// (next position, log end) of what is durable and visible.
    fn committed_end(&self) -> (u64, u64) {
        let visible = self.read_visible();
        (visible.state.next_position, visible.state.log_end)
    }

    fn offset_of(&self, position: u64) -> Result<u64> {
        let mut entry = [0u8; 8];
        self.inner
            .index
            .read_exact_at(&mut entry, position * 8)
            .map_err(|e| StoreError::io(files::path(&self.inner.dir, files::INDEX), e))?;
        Ok(u64::from_le_bytes(entry))
    }
}

impl Inner {
    fn shutdown(&self) {
        // The threads guard is held across the joins, so a second, concurrent close waits for
        // the first instead of releasing the lock while the writer still drains.
        let mut threads = self.threads.lock().unwrap_or_else(|p| p.into_inner());
        // Closing the intake ends the writer after it drains; the completer follows, and
        // dropping its broadcast producer tells live subscribers the store is closed.
        self.intake.close();
        for thread in threads.drain(..) {
            let _ = thread.join();
        }
        let _ = self.pipe.close();
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        drop(threads);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Domain {
    /// An aggregate type handle; the name is checked and packed once.
    pub fn aggregate(&self, name: &str) -> Result<AggregateType> {
        let aggregate = Packed128::new(name).map_err(|source| StoreError::InvalidName {
            kind: NameKind::AggregateType,
            name: name.into(),
            source,
        })?;
        Ok(AggregateType {
            store: self.store.clone(),
            domain: self.domain,
            aggregate,
        })
    }

    /// The packed domain name.
    pub fn name(&self) -> Packed64 {
        self.domain
    }
}

impl AggregateType {
    /// The stream of one instance (ids up to 128 bits: UUIDs fit).
    pub fn instance(&self, id: impl Into<u128>) -> Stream {
        Stream {
            store: self.store.clone(),
            key: StreamKey {
                domain: self.domain,
                aggregate: self.aggregate,
                instance: id.into(),
            },
        }
    }

    /// The packed aggregate type name.
    pub fn name(&self) -> Packed128 {
        self.aggregate
    }
}

impl Stream {
    /// Appends `events` if the stream is as `expected`, and waits until they are durable.
    pub fn append(&self, expected: Expected, events: &[Event]) -> Result<Receipt> {
        self.append_nowait(expected, events)?.wait()
    }

    /// Submits the append and returns at once; [`PendingAppend::wait`] waits for durability.
    /// Nothing is visible to readers before it is durable.
    pub fn append_nowait(&self, expected: Expected, events: &[Event]) -> Result<PendingAppend> {
        let item = self.store.pack_item(self.key, expected, events)?;
        self.store.submit(vec![item])
    }

    /// The version of the stream's last durable event (`None`: no events).
    pub fn version(&self) -> Option<u64> {
        let visible = self.store.read_visible();
        visible
            .state
            .table
            .get(&self.key)
            .and_then(|(_, stream)| stream.last_version)
    }

    /// Every event from version `from` on, in version order.
    pub fn read_from(&self, from: u64) -> Result<Vec<RecordedEvent>> {
        self.read(from, usize::MAX)
    }

    /// At most `limit` events from version `from` on, in version order.
    ///
    /// Streams are linked from each event to the one before, and the place in the log of
    /// every 1024th version is kept in memory, so this walks back from the first such mark at
    /// or above the last version it returns (or from the newest event): it decodes `limit`
    /// plus fewer than 1024 events, whatever the stream's length.
    pub fn read(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        self.scan(from, limit, |event| events.push(event.to_recorded()))?;
        Ok(events)
    }

    /// Visits at most `limit` events from version `from` on, in version order, borrowing them
    /// from the memory-mapped log. Returns how many were visited. Costs what
    /// [`read`](Self::read) costs.
    pub fn scan(
        &self,
        from: u64,
        limit: usize,
        mut visit: impl FnMut(&EventView<'_>),
    ) -> Result<usize> {
        if limit == 0 {
            return Ok(0);
        }
        let reach = from.saturating_add(limit as u64 - 1);
        let Some(walk) = self.snapshot(reach)? else {
            return Ok(0);
        };
        if from > walk.last {
            return Ok(0);
        }
        let records = self.walk_back(&walk, from, limit)?;
        let mut visited = 0;
        for record in records.iter().rev().take(limit) {
            visit(&EventView::new(self.key, record));
            visited += 1;
        }
        Ok(visited)
    }

    /// At most `limit` events from version `from` (or the last, with `None`) downwards.
    pub fn read_backward(&self, from: Option<u64>, limit: usize) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let Some(walk) = self.snapshot(from.unwrap_or(u64::MAX))? else {
            return Ok(Vec::new());
        };
        let start = from.unwrap_or(walk.last).min(walk.last);
        let lowest = (start + 1).saturating_sub(limit as u64);
        let records = self.walk_back(&walk, lowest, usize::MAX)?;
        let skip = (walk.start_version - start) as usize;
        Ok(records
            .iter()
            .skip(skip)
            .take(limit)
            .map(|r| EventView::new(self.key, r).to_recorded())
            .collect())
    }

    /// Where a read that needs versions up to `reach` starts walking back: the first mark
    /// at or above `reach`, or the stream's newest event; `None` for no events.
    fn snapshot(&self, reach: u64) -> Result<Option<Walk>> {
        let (stream_id, last, start_version, start_offset, log_end) = {
            let visible = self.store.read_visible();
            let Some((id, stream)) = visible.state.table.get(&self.key) else {
                return Ok(None);
            };
            let Some(last) = stream.last_version else {
                return Ok(None);
            };
            let (start_version, start_offset) = visible
                .state
                .table
                .marks
                .get(id as usize)
                .and_then(|marks| marks.at_or_above(reach))
                .filter(|&(version, _)| version < last)
                .unwrap_or((last, stream.last_offset));
            (id, last, start_version, start_offset, visible.state.log_end)
        };
        Ok(Some(Walk {
            map: self.store.inner.log.map_covering(log_end)?,
            stream: stream_id,
            last,
            start_version,
            start_offset,
            log_end,
        }))
    }

    /// The stream's records with versions from `lowest` to `walk.start_version`, newest
    /// first, found by following each record's link to the stream's previous event from
    /// `walk`'s start: the cost is the number of events walked, never the size of the log.
    /// Each record is decoded (and checksummed) once; only the `keep` oldest are kept.
    fn walk_back<'m>(
        &self,
        walk: &'m Walk,
        lowest: u64,
        keep: usize,
    ) -> Result<std::collections::VecDeque<record::Record<'m>>> {
        let (map, log_end, mut offset) = (&walk.map[..], walk.log_end, walk.start_offset);
        // Only the `keep` oldest records are kept (a forward read with a limit), so memory is
        // bounded by the limit even when the walk starts above the versions it returns.
        let mut records = std::collections::VecDeque::with_capacity(
            ((walk.start_version - lowest.min(walk.start_version) + 1) as usize)
                .min(keep)
                .min(1 << 16),
        );
        let mut expected_version = walk.start_version;
        loop {
            let bytes = map
                .get(offset as usize..log_end as usize)
                .unwrap_or_default();
            let record = match record::decode(bytes) {
                Ok(Some(record)) => record,
                Ok(None) => {
                    return Err(self.store.inner.log.corrupt(offset, CorruptKind::Truncated));
                }
                Err(kind) => return Err(self.store.inner.log.corrupt(offset, kind)),
            };
            if record.header.kind != Kind::Event
                || record.header.stream != walk.stream
                || record.header.version != expected_version
            {
                let what = "stream link leads to the wrong record";
                return Err(self
                    .store
                    .inner
                    .log
                    .corrupt(offset, CorruptKind::OutOfOrder { what }));
            }
            let prev = record.header.prev;
            if records.len() == keep {
                records.pop_front();
            }
            if keep > 0 {
                records.push_back(record);
            }
            if expected_version <= lowest || prev == record::NO_PREVIOUS {
                break;
            }
            expected_version -= 1;
            offset = prev;
        }
        Ok(records)
    }

    /// The stream's names.
    pub fn key(&self) -> StreamKey {
        self.key
    }
}

/// Follows the global order; see [`Store::subscribe`].
#[derive(Debug)]
pub struct Subscription {
    store: Store,
    /// Position of the next event to decode (events up to here are delivered or buffered).
    next_position: u64,
    buffer: VecDeque<RecordedEvent>,
    /// The live ring, once caught up; `None` while reading from disk.
    live: Option<BroadcastConsumer<CommitNotice>>,
    /// Just joined the live ring: reading from disk up to this position (what was visible
    /// right after the join), since batches made visible before the join had their notices
    /// published before it too, and may take more than one read.
    settle_until: Option<u64>,
    /// Times this subscription was evicted from the live ring and caught up from disk.
    rejoined: u64,
}

/// Events decoded per read while catching up from disk.
const CATCH_UP_EVENTS: usize = 1024;

impl Subscription {
    /// The next event, waiting for one if the subscriber is caught up.
    pub fn next_event(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(event) = self.next_timeout(Duration::from_secs(3600))? {
                return Ok(event);
            }
        }
    }

    /// The next event if one is durable already.
    pub fn try_next(&mut self) -> Result<Option<RecordedEvent>> {
        self.next_timeout(Duration::ZERO)
    }

    /// The next event, waiting at most `timeout` for one. Once live delivery ends and every
    /// event was delivered: [`StoreError::Closed`] if the store was closed,
    /// [`StoreError::Failed`] if it had failed (live delivery also ends early when its
    /// completer thread panicked).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(Some(event));
            }
            if let Some(until) = self.settle_until {
                if self.next_position < until && self.catch_up()? {
                    continue;
                }
                self.settle_until = None;
            }
            let Some(live) = self.live.as_mut() else {
                if self.catch_up()? {
                    continue;
                }
                // Caught up: join live, then read the disk up to what is visible now
                // (`settle_until`): a batch whose notice went out before the join was visible
                // before it. Later batches come through the ring (bounded: steady appends do
                // not keep the subscriber off the ring).
                if let Some(hook) = &self.store.inner.options.before_live_join {
                    (hook.0)();
                }
                self.live = Some(self.store.inner.live.subscribe());
                self.settle_until = Some(self.store.committed_end().0);
                continue;
            };
            let remaining = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            let read: std::result::Result<Vec<CommitNotice>, RingError> = live
                .read_timeout(remaining)
                .map(|batch| batch.iter().copied().collect());
            let notices = match read {
                Ok(notices) => notices,
                Err(RingError::Lagged { .. }) => {
                    // Evicted: the ring moved on without us; continue from disk.
                    self.live = None;
                    self.rejoined += 1;
                    continue;
                }
                Err(RingError::Timeout | RingError::Empty) => return Ok(None),
                // The completer ends the ring when the store closes, or when it panicked.
                Err(_) => return Err(self.store.closed_or_failed()),
            };
            for notice in notices {
                self.take_notice(notice)?;
            }
        }
    }

    /// Reads up to [`CATCH_UP_EVENTS`] visible events from disk; false if there were none.
    fn catch_up(&mut self) -> Result<bool> {
        let events = self.store.read_all(self.next_position, CATCH_UP_EVENTS)?;
        let Some(last) = events.last() else {
            return Ok(false);
        };
        self.next_position = last.position + 1;
        self.buffer.extend(events);
        Ok(true)
    }

    /// Decodes a notice's events that this subscription has not seen yet.
    fn take_notice(&mut self, notice: CommitNotice) -> Result<()> {
        if notice.end_position <= self.next_position {
            return Ok(()); // already read from disk
        }
        if notice.first_position > self.next_position {
            // Cannot happen with the join order above (every batch visible right after the
            // join was read from disk while settling); recover through the index anyway
            // rather than skip an event.
            while self.next_position < notice.first_position && self.catch_up()? {}
            if notice.end_position <= self.next_position {
                return Ok(()); // the disk read covered the whole notice
            }
        }
        let mut events = Vec::new();
        let next = self.store.scan_log(
            notice.first_offset,
            self.next_position,
            notice.end_position,
            notice.end_offset,
            usize::MAX,
            |event| events.push(event.to_recorded()),
        )?;
        if next != notice.end_position {
            let what = "a commit notice's events are not all in its log range";
            return Err(self
                .store
                .inner
                .log
                .corrupt(notice.first_offset, CorruptKind::OutOfOrder { what }));
        }
        self.next_position = next;
        self.buffer.extend(events);
        Ok(())
    }

    /// The position of the next event this subscription returns.
    pub fn position(&self) -> u64 {
        self.next_position - self.buffer.len() as u64
    }

    /// Whether it follows the live ring now (false while it reads from disk).
    pub fn is_live(&self) -> bool {
        self.live.is_some() && self.settle_until.is_none()
    }

    /// How many times it fell a whole live ring behind and continued from disk.
    pub fn times_evicted(&self) -> u64 {
        self.rejoined
    }
}

/// The writer's staging memory: grows from 256 KiB up to `staging_bytes` in 4 KiB chunks.
fn staging_pool(options: &StoreOptions) -> Result<buffer_pool::Pool> {
    let max = (options.staging_bytes / CHUNK as usize).max(1);
    // One slab (64 chunks of 4 KiB) up front: every slab is a system call (an anonymous
    // mapping), and a store that is opened to be read never stages anything. Appends grow
    // the pool a slab at a time as they need it.
    buffer_pool::Pool::growable(CHUNK as usize, 64.min(max), max).map_err(|_| {
        StoreError::InvalidOption {
            option: "staging_bytes",
            value: options.staging_bytes as u64,
            expected: "at least 4 KiB and within the pool's limits",
        }
    })
}

/// The largest `StoreOptions::max_append_bytes`.
const MAX_APPEND_BYTES_LIMIT: usize = 1 << 30;

/// The pipe under the log. `max_staged_bytes` bounds how far past the last commit a crash can
/// leave bytes behind, which bounds the scan of recovery.
fn pipe_config(options: &StoreOptions) -> PipeConfig {
    PipeConfig {
        chunk_size: CHUNK,
        // A batch stops growing past BATCH_BYTES, but its last append may cross that line.
        max_write: (BATCH_BYTES + options.max_append_bytes) as u64 + 2 * CHUNK,
        max_staged_bytes: 64 << 20,
        grow_step: options.grow_step,
        syncs_in_flight: options.syncs_in_flight,
        wait_spin: options.wait_spin,
        ..PipeConfig::default()
    }
}

fn check_options(options: &StoreOptions) -> Result<()> {
    let invalid = |option, value: u64, expected| {
        Err(StoreError::InvalidOption {
            option,
            value,
            expected,
        })
    };
    if !(64 << 10..=record::MAX_EVENT_BODY).contains(&options.max_event_size) {
        return invalid(
            "max_event_size",
            options.max_event_size as u64,
            "between 64 KiB and 16 MiB",
        );
    }
    if options.max_append_bytes < options.max_event_size + 4096
        || options.max_append_bytes > MAX_APPEND_BYTES_LIMIT
    {
        return invalid(
            "max_append_bytes",
            options.max_append_bytes as u64,
            "between max_event_size + 4 KiB and 1 GiB",
        );
    }
    for (option, capacity) in [
        ("intake_capacity", options.intake_capacity),
        ("live_capacity", options.live_capacity),
    ] {
        if !(1..=1 << 20).contains(&capacity) {
            return invalid(option, capacity as u64, "between 1 and 1M");
        }
    }
    if options.checkpoint_every == 0 {
        return invalid("checkpoint_every", 0, "at least 1");
    }
    if options.grow_step < 64 << 10 || !options.grow_step.is_multiple_of(CHUNK) {
        return invalid(
            "grow_step",
            options.grow_step,
            "a multiple of 4096, at least 64 KiB",
        );
    }
    // What the pipe itself checks (syncs_in_flight, wait_spin), refused before anything is
    // opened.
    pipe_config(options).validate().map_err(pipe_option)
}

/// A pipe configuration error as the store option it came from.
fn pipe_option(error: epoch_pipe::ConfigError) -> StoreError {
    StoreError::InvalidOption {
        option: error.field,
        value: error.value,
        expected: error.expected,
    }
}

/// A pipe that did not start: a bad option, or a thread the system would not start (an I/O
/// error on the store directory, the closest thing a caller can act on).
fn pipe_start_error(dir: &Path, error: epoch_pipe::StartError) -> StoreError {
    match error {
        epoch_pipe::StartError::Config(error) => pipe_option(error),
        epoch_pipe::StartError::Spawn { source, .. } => StoreError::io(dir, source),
        // `StartError` is non-exhaustive: a kind this build does not know.
        other => StoreError::io(dir, std::io::Error::other(other.to_string())),
    }
}

/// Writes the checkpoint: the global index is made durable first (it covers every position
/// the checkpoint claims), then the checkpoint replaces the old one atomically.
fn write_checkpoint(dir: &Path, index: &File, state: &Committed) -> Result<()> {
    let index_path = files::path(dir, files::INDEX);
    index
        .sync_data()
        .map_err(|e| StoreError::io(&index_path, e))?;
    let temporary = files::path(dir, "checkpoint.tmp");
    files::write_durably(&temporary, &state::encode_checkpoint(state))?;
    let target = files::path(dir, files::CHECKPOINT);
    std::fs::rename(&temporary, &target).map_err(|e| StoreError::io(&target, e))?;
    files::sync_dir(dir)
}

/// Loads the checkpoint, replays the log after it, cuts a torn tail, and rebuilds the global
/// index entries the checkpoint does not cover. Returns the committed state, the report, and
/// the log's last partial chunk (the writer continues it).
fn recover(
    dir: &Path,
    log_file: &File,
    log: &LogView,
    index: &File,
    index_path: &Path,
    dirty_window: u64,
) -> Result<(Committed, RecoveryReport, Vec<u8>)> {
    let mut report = RecoveryReport::default();
    let checkpoint_path = files::path(dir, files::CHECKPOINT);
    let mut committed = match std::fs::read(&checkpoint_path) {
        Ok(bytes) => match state::decode_checkpoint(&bytes) {
            Ok(committed) => committed,
            Err(CheckpointError::Version(found)) => {
                return Err(StoreError::UnsupportedFormat {
                    path: checkpoint_path,
                    found,
                    supported: state::CHECKPOINT_VERSION,
                });
            }
            Err(CheckpointError::Corrupt(_)) => {
                report.checkpoint_discarded = true;
                Committed::default()
            }
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Committed::default(),
        Err(error) => return Err(StoreError::io(&checkpoint_path, error)),
    };
    let log_len = log_file
        .metadata()
        .map_err(|e| StoreError::io(log.path(), e))?
        .len();
    // The checkpoint claims more log than there is, or more events than its log could hold
    // (each takes a whole record header at least; the index's length, `next_position * 8`,
    // would also overflow), or an end where no record can start: it cannot be trusted.
    let holds_at_most = committed.log_end / crate::record::HEADER_LEN as u64;
    if committed.log_end > log_len
        || committed.next_position > holds_at_most
        || !committed.log_end.is_multiple_of(record::ALIGN as u64)
    {
        report.checkpoint_discarded = true;
        committed = Committed::default();
    }
    let checkpoint_positions = committed.next_position;
    let checkpoint_log_end = committed.log_end;
    let map = if log_len > 0 {
        Some(log.map_covering(log_len)?)
    } else {
        None
    };
    let bytes: &[u8] = map.as_deref().map_or(&[], |m| &m[..]);
    // Index entries of the replayed events are written as each append commits, in pieces.
    let mut entries: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut entries_at = checkpoint_positions * 8;
    let mut index_error = None;
    let replay = state::replay_tail(bytes, &mut committed, |offsets| {
        for offset in offsets {
            entries.extend_from_slice(&offset.to_le_bytes());
        }
        if entries.len() >= 1 << 20 && index_error.is_none() {
            index_error = index.write_all_at(&entries, entries_at).err();
            entries_at += entries.len() as u64;
            entries.clear();
        }
    });
    if let Some(error) = index_error {
        return Err(StoreError::io(index_path, error));
    }
    if let Some((offset, kind)) = replay.damage {
        if state::damage_is_followed(bytes, offset as usize, &kind, &committed) {
            return Err(log.corrupt(offset, kind));
        }
        report.tail_damage = Some(kind);
    }
    // Cut everything after the last committed append: zero it (the log's end is where the
    // zeros begin) and make that durable before anything new is written.
    // A crash leaves bytes past the last commit only within what the pipe had in flight
    // (staged + one write), so only that window is searched for them.
    let stop = replay.stop as usize;
    let window_end = (stop as u64)
        .saturating_add(dirty_window)
        .min(bytes.len() as u64) as usize;
    let dirty_end = scan::nonzero_end(log_file, bytes, stop, window_end).unwrap_or(0);
    let sync_log = || {
        log_file
            .sync_data()
            .map_err(|e| StoreError::io(log.path(), e))
    };
    let zero = |from: usize, to: usize| -> Result<()> {
        let zeros = vec![0u8; (to - from).min(1 << 20)];
        let mut at = from;
        while at < to {
            let len = zeros.len().min(to - at);
            log_file
                .write_all_at(&zeros[..len], at as u64)
                .map_err(|e| StoreError::io(log.path(), e))?;
            at += len;
        }
        Ok(())
    };
    if dirty_end > stop {
        report.truncated_at = Some(replay.stop);
        report.truncated_bytes = (dirty_end - stop) as u64;
        // The length word at the cut first, durably: from then on the log ends there whatever
        // part of the rest a power loss keeps zeroed (a later page zeroed and an earlier one
        // not would read as damage in the middle). Whatever is left is cut again next time.
        let word_end = (stop + record::ALIGN).min(dirty_end);
        zero(stop, word_end)?;
        sync_log()?;
        zero(word_end, dirty_end)?;
    }
    // A file that ends inside the last record's zero padding (cut by hand, or a lost size
    // change) gets that padding back, so reads and checkpoints see the whole record.
    let regrown = committed.log_end > bytes.len() as u64;
    if regrown {
        log_file
            .set_len(committed.log_end)
            .map_err(|e| StoreError::io(log.path(), e))?;
    }
    // Replay read what the file holds, which after a process crash includes writes the pipe
    // never synced (still in the page cache). They are committed from now on (visible, in the
    // index and the checkpoint, built upon by new appends), so they are made durable first.
    // When replay committed nothing past the checkpoint (whose log was durable before it was
    // written) and nothing was cut or regrown, there is nothing to make durable: a clean
    // reopen pays no sync (on a disk with a write cache, each can cost a cache flush).
    if committed.log_end != checkpoint_log_end || dirty_end > stop || regrown {
        sync_log()?;
    }
    let tail_base = committed.log_end / CHUNK * CHUNK;
    // The file may end inside the last record's padding (cut short by hand or by a lost size
    // change): what it lacks is zeros by the format, and the writer rewrites this chunk whole.
    let tail_len = (committed.log_end - tail_base) as usize;
    let mut tail = bytes
        .get(tail_base as usize..)
        .map_or(&[][..], |rest| &rest[..tail_len.min(rest.len())])
        .to_vec();
    debug_assert!(
        tail_len - tail.len() < record::ALIGN,
        "only padding is missing"
    );
    tail.resize(tail_len, 0);
    drop(map);

    // The same for the index: entries up to the checkpoint's were made durable before it was
    // written, so with nothing replayed and the length already right, nothing is written.
    let index_len = index
        .metadata()
        .map_err(|e| StoreError::io(index_path, e))?
        .len();
    let replayed_none = committed.next_position == checkpoint_positions;
    debug_assert!(!replayed_none || (entries.is_empty() && entries_at == checkpoint_positions * 8));
    let index_settled = replayed_none && index_len == committed.next_position * 8;
    if !index_settled {
        index
            .write_all_at(&entries, entries_at)
            .and_then(|()| index.set_len(committed.next_position * 8))
            .and_then(|()| index.sync_data())
            .map_err(|e| StoreError::io(index_path, e))?;
    }

    report.events = committed.next_position;
    report.streams = committed.table.streams.len() as u64;
    report.replayed_events = replay.events;
    Ok((committed, report, tail))
}
