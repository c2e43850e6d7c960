//! The single writer and the completer.
//!
//! The writer thread is the serialization point: it takes appends from the intake in batches,
//! checks expected versions against its view of every stream (including appends still in
//! flight), assigns versions and global positions, encodes records, writes the global index
//! entries, and hands the batch to the epoch pipe as one write. The completer thread waits
//! for each batch's epoch in order, then makes it visible (committed table, subscribers) and
//! answers the callers. A wrong expected version fails that append alone and writes nothing.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use buffer_pool::{Pool, PoolError};
use epoch_pipe::{Epoch, Pipe, PooledPayload, Storage};
use packed_ascii::Packed128;
use ringbuffer_core::{BroadcastProducer, Consumer, Error as RingError};

use crate::error::{Failure, FailureSlot, Result, StoreError};
use crate::event::{Expected, Receipt};
use crate::record::{self, Header, Kind, StreamKey};
use crate::reply::{Answers, Reply, WakeOnDrop};
use crate::state::{Committed, MARK_EVERY, StreamState, Table};
use crate::store::TestHook;

/// The writer thread's name.
pub const WRITER_THREAD: &str = "eventstore-writer";
/// The completer thread's name.
pub const COMPLETER_THREAD: &str = "eventstore-completer";

/// Which of the store's threads the caller is (`"writer"`, `"completer"`), for
/// [`Failure::Panicked`]; `"unknown"` on any other thread.
pub fn this_thread() -> &'static str {
    match std::thread::current().name() {
        Some(WRITER_THREAD) => "writer",
        Some(COMPLETER_THREAD) => "completer",
        _ => "unknown",
    }
}

/// Bytes per pipe chunk: the log is written in 4 KiB-aligned pieces.
pub const CHUNK: u64 = 4096;

/// One event, validated and packed by the caller's thread.
#[derive(Debug)]
pub struct PackedEvent {
    pub event_type: Packed128,
    pub metadata: Vec<u8>,
    pub payload: Vec<u8>,
}

/// One stream's part of an append.
#[derive(Debug)]
pub struct Item {
    pub key: StreamKey,
    pub expected: Expected,
    pub events: Vec<PackedEvent>,
}

/// An append on its way to the writer.
#[derive(Debug)]
pub struct Request {
    pub items: Vec<Item>,
    pub reply: Reply,
    /// Log bytes it encodes to (at most; stream-created records counted for every item).
    pub bytes: usize,
}

/// A batch stops taking more requests once it encodes to this many bytes.
pub const BATCH_BYTES: usize = 8 << 20;

/// A batch written and waiting for its epoch.
struct Completion {
    epoch: Epoch,
    replies: Vec<(Reply, Receipt)>,
    new_streams: Vec<StreamKey>,
    updates: Vec<(u64, u64, u64)>,
    /// (stream, version, offset) of the batch's events whose version is a mark's.
    marks: Vec<(u64, u64, u64)>,
    next_position: u64,
    log_end: u64,
}

/// What the completer publishes; readers take its read lock.
#[derive(Debug, Default)]
pub struct Visible {
    pub state: Committed,
}

/// What the completer broadcasts to live subscribers once a batch is durable and visible:
/// where its events are, so a subscriber decodes them straight from the log (the page cache
/// holds them: they were just written) without an index lookup or a lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitNotice {
    /// Global position of the batch's first event.
    pub first_position: u64,
    /// One past the position of its last event.
    pub end_position: u64,
    /// Log offset of the batch's first record.
    pub first_offset: u64,
    /// Log offset one past its last record.
    pub end_offset: u64,
}

/// The writer's view of the log: committed state plus every batch in flight.
pub struct WriterState {
    pub table: Table,
    pub next_position: u64,
    pub log_end: u64,
    /// The log from `tail_base` (chunk-aligned) to `log_end`: the partial last chunk is
    /// rewritten with the next batch.
    pub tail_base: u64,
    pub tail: Vec<u8>,
}

/// Everything the writer thread owns.
pub struct Writer {
    pub state: WriterState,
    pub pipe: Arc<Pipe<Box<dyn Storage>>>,
    pub index: File,
    pub index_path: std::path::PathBuf,
    pub max_batch_requests: usize,
    /// Staging memory: each batch is copied into pooled 4 KiB-aligned chunks for the pipe; an
    /// exhausted pool makes the writer (and so the intake) wait: the store's memory budget.
    pub pool: Pool,
    /// Where a fatal error is recorded, so every later append fails with it.
    pub failure: FailureSlot,
    /// Tests only: runs before each batch is written.
    pub before_write: Option<TestHook>,
}

fn stream_name(key: &StreamKey) -> String {
    format!("{}/{}/{:032x}", key.domain, key.aggregate, key.instance)
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Writer {
    /// Runs until the intake ring is closed and drained; then hands the completer its end.
    ///
    /// However the writing ends before that (a failure, the completer gone, a panic on this
    /// thread), no append is left waiting: the failure is recorded, and every request queued
    /// here or published later is answered with it until the store closes the intake.
    pub fn run(mut self, mut intake: Consumer<Option<Request>>, completer: Sender<CompletionMsg>) {
        let mut pending = VecDeque::new();
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.serve(&mut intake, &completer, &mut pending)
        }));
        let failure = match served {
            Ok(Ok(())) => return,
            Ok(Err(failure)) => failure,
            // The panic's message went to the panic hook; what is left is to answer.
            Err(_) => Failure::Panicked {
                thread: this_thread(),
            },
        };
        let failure = self.failure.record(failure);
        let refuse = |request: Request| {
            request.reply.send(Err(StoreError::Failed(failure.clone())));
        };
        pending.drain(..).for_each(refuse);
        while let Ok(slots) = intake.read_mut() {
            slots.take_each(|request| request.into_iter().for_each(refuse));
        }
    }

    /// The writing loop of [`run`](Self::run): `Ok` once the intake is closed and drained,
    /// `Err` with the failure that stops it (the batch it was writing already answered).
    ///
    /// Each read takes everything the appending threads published since the last one and
    /// moves the requests out of their slots, so the ring's room is back for the producers
    /// at once; the requests then go out in batches bounded in count and bytes.
    fn serve(
        &mut self,
        intake: &mut Consumer<Option<Request>>,
        completer: &Sender<CompletionMsg>,
        pending: &mut VecDeque<Request>,
    ) -> std::result::Result<(), Failure> {
        let mut batch = Vec::new();
        loop {
            let taken = if pending.is_empty() {
                intake.read_mut()
            } else {
                intake.try_read_mut()
            }
            .map(|slots| slots.take_each(|request| pending.extend(request)));
            match taken {
                Ok(()) | Err(RingError::Empty) => {}
                // Closed and drained: the store is shutting down. What is already queued
                // here was accepted, and `close` waits for it: write it first (the next read
                // with nothing queued ends the loop).
                Err(_) if pending.is_empty() => return Ok(()),
                Err(_) => {}
            }
            // The completer records a failure it meets (a panic, or a sync error the pipe
            // will also give this thread): write nothing more after it.
            if let Some(failure) = self.failure.get() {
                return Err(failure);
            }
            // A batch is bounded in requests and in bytes (its first request may cross the
            // byte line alone).
            let mut bytes = 0;
            while let Some(next) = pending.front() {
                if !batch.is_empty()
                    && (batch.len() >= self.max_batch_requests || bytes + next.bytes > BATCH_BYTES)
                {
                    break;
                }
                bytes += next.bytes;
                batch.extend(pending.pop_front());
            }
            if batch.is_empty() {
                // Only empty slots were read (a claim dropped unfilled): nothing to write.
                continue;
            }
            if let Some(hook) = &self.before_write {
                (hook.0)();
            }
            let Some(completion) = self.write_batch(std::mem::take(&mut batch))? else {
                continue;
            };
            if let Err(returned) = completer.send(CompletionMsg(completion)) {
                // The completer is gone before the store closed: only a panic ends it early.
                let failure = self.failure.record(Failure::Panicked {
                    thread: "completer",
                });
                for (reply, _) in returned.0.0.replies {
                    reply.send(Err(StoreError::Failed(failure.clone())));
                }
                return Err(failure);
            }
        }
    }

    /// Pooled chunks for `chunks` chunks, waiting for room; gives up when the pipe has failed
    /// (its staged chunks are released then, but a failed pipe takes no more writes anyway).
    fn staging_chunks(
        &self,
        chunks: usize,
    ) -> std::result::Result<Option<buffer_pool::Allocation>, Failure> {
        loop {
            match self
                .pool
                .allocate_timeout(chunks, std::time::Duration::from_millis(50))
            {
                Ok(allocation) => return Ok(Some(allocation)),
                Err(PoolError::TooLarge { .. }) => return Ok(None),
                Err(PoolError::TimedOut { .. }) => {
                    if let Some(failure) = self.pipe.failure() {
                        return Err(Failure::Pipe(failure));
                    }
                }
                Err(error) => {
                    return Err(Failure::Staging {
                        bytes: chunks * CHUNK as usize,
                        message: error.to_string(),
                    });
                }
            }
        }
    }

    /// Encodes a batch; `Err` when the pipe (or the index) has failed: every caller of the
    /// batch was answered, and the store is read-only from now on.
    fn write_batch(
        &mut self,
        requests: Vec<Request>,
    ) -> std::result::Result<Option<Completion>, Failure> {
        let timestamp = now_nanos();
        let first_offset = self.state.log_end;
        let first_position = self.state.next_position;
        let mut replies = Vec::with_capacity(requests.len());
        let mut new_streams = Vec::new();
        let mut touched: HashMap<u64, (u64, u64)> = HashMap::new();
        let mut event_offsets = Vec::new();
        let mut marks = Vec::new();
        for request in requests {
            match self.encode_request(
                &request.items,
                timestamp,
                &mut new_streams,
                &mut touched,
                &mut event_offsets,
                &mut marks,
            ) {
                Ok(receipt) => replies.push((request.reply, receipt)),
                Err(error) => {
                    request.reply.send(Err(error));
                }
            }
        }
        if self.state.log_end == first_offset {
            return Ok(None);
        }
        // Global index entries (page cache only; made durable before each checkpoint, and
        // rebuilt from the log after a crash).
        let mut entries = Vec::with_capacity(event_offsets.len() * 8);
        for offset in &event_offsets {
            entries.extend_from_slice(&offset.to_le_bytes());
        }
        let start = first_offset / CHUNK * CHUNK;
        let bytes = &self.state.tail[(start - self.state.tail_base) as usize..];
        let written = match self.index.write_all_at(&entries, first_position * 8) {
            Err(error) => Err(Failure::Index {
                path: self.index_path.clone(),
                offset: first_position * 8,
                kind: error.kind(),
                message: error.to_string(),
            }),
            Ok(()) => match self.staging_chunks(bytes.len().div_ceil(CHUNK as usize)) {
                Ok(Some(mut chunks)) => {
                    chunks.fill(bytes);
                    self.pipe
                        .write(PooledPayload::new(chunks, bytes.len()), start / CHUNK)
                        .map_err(Failure::Pipe)
                }
                // A batch larger than the whole staging budget goes out from the heap.
                Ok(None) => self
                    .pipe
                    .write(bytes.to_vec(), start / CHUNK)
                    .map_err(Failure::Pipe),
                Err(failure) => Err(failure),
            },
        };
        let epoch = match written {
            Ok(epoch) => epoch,
            Err(failure) => {
                let failure = self.failure.record(failure);
                for (reply, _) in replies {
                    reply.send(Err(StoreError::Failed(failure.clone())));
                }
                return Err(failure);
            }
        };
        // Keep only the last partial chunk of the tail.
        let keep_from = self.state.log_end / CHUNK * CHUNK;
        self.state
            .tail
            .drain(..(keep_from - self.state.tail_base) as usize);
        self.state.tail_base = keep_from;
        let updates = touched
            .into_iter()
            .map(|(id, (version, offset))| (id, version, offset))
            .collect();
        Ok(Some(Completion {
            epoch,
            replies,
            new_streams,
            updates,
            marks,
            next_position: self.state.next_position,
            log_end: self.state.log_end,
        }))
    }

    /// Checks every expectation of one append, then encodes it; on a wrong expectation nothing
    /// is encoded and no state changes.
    fn encode_request(
        &mut self,
        items: &[Item],
        timestamp: u64,
        new_streams: &mut Vec<StreamKey>,
        touched: &mut HashMap<u64, (u64, u64)>,
        event_offsets: &mut Vec<u64>,
        marks: &mut Vec<(u64, u64, u64)>,
    ) -> Result<Receipt> {
        // Phase 1: expectations, with earlier items of this append counted.
        let mut planned: HashMap<StreamKey, Option<u64>> = HashMap::new();
        for item in items {
            let actual = match planned.get(&item.key) {
                Some(version) => *version,
                None => self
                    .state
                    .table
                    .get(&item.key)
                    .and_then(|(_, s)| s.last_version),
            };
            if !item.expected.admits(actual) {
                return Err(StoreError::WrongExpectedVersion {
                    stream: stream_name(&item.key),
                    expected: item.expected,
                    actual,
                });
            }
            let added = item.events.len() as u64;
            planned.insert(item.key, Some(actual.map_or(added - 1, |v| v + added)));
        }
        // Phase 2: encode. The last record of the append carries COMMIT.
        let creations = {
            let mut seen = std::collections::HashSet::new();
            items
                .iter()
                .filter(|item| self.state.table.get(&item.key).is_none() && seen.insert(item.key))
                .count()
        };
        let total_records = creations + items.iter().map(|i| i.events.len()).sum::<usize>();
        let mut written_records = 0;
        let first_position = self.state.next_position;
        let mut last_versions = Vec::with_capacity(items.len());
        for item in items {
            let id = match self.state.table.get(&item.key) {
                Some((id, _)) => id,
                None => {
                    let id = self.state.table.create(item.key);
                    new_streams.push(item.key);
                    written_records += 1;
                    let header = Header {
                        kind: Kind::StreamCreated,
                        commit: written_records == total_records,
                        position: 0,
                        stream: id,
                        version: 0,
                        timestamp,
                        prev: record::NO_PREVIOUS,
                        event_type: None,
                    };
                    self.append_record(&header, &[], &record::encode_stream_body(&item.key));
                    id
                }
            };
            for event in &item.events {
                let stream = self.state.table.streams[id as usize];
                let version = stream.last_version.map_or(0, |v| v + 1);
                let prev = if stream.last_version.is_some() {
                    stream.last_offset
                } else {
                    record::NO_PREVIOUS
                };
                written_records += 1;
                let header = Header {
                    kind: Kind::Event,
                    commit: written_records == total_records,
                    position: self.state.next_position,
                    stream: id,
                    version,
                    timestamp,
                    prev,
                    event_type: Some(event.event_type),
                };
                let offset = self.append_record(&header, &event.metadata, &event.payload);
                event_offsets.push(offset);
                self.state.next_position += 1;
                let stream = &mut self.state.table.streams[id as usize];
                stream.last_version = Some(version);
                stream.last_offset = offset;
                touched.insert(id, (version, offset));
                if version.is_multiple_of(MARK_EVERY) {
                    marks.push((id, version, offset));
                }
            }
            last_versions.push(
                self.state.table.streams[id as usize]
                    .last_version
                    .unwrap_or(0),
            );
        }
        debug_assert_eq!(written_records, total_records);
        Ok(Receipt {
            first_position,
            last_position: self.state.next_position - 1,
            last_versions,
        })
    }

    /// Encodes one record at the log's end; returns its offset.
    fn append_record(&mut self, header: &Header, metadata: &[u8], body: &[u8]) -> u64 {
        let offset = self.state.log_end;
        let before = self.state.tail.len();
        record::encode(&mut self.state.tail, header, metadata, body);
        self.state.log_end += (self.state.tail.len() - before) as u64;
        offset
    }
}

/// A completion on its way to the completer (opaque outside this module).
pub struct CompletionMsg(Completion);

/// The completer: waits for each batch's epoch in order, then publishes and answers.
pub struct Completer {
    /// Appenders wait here; one wake answers every batch made visible since the last.
    pub answers: Arc<Answers>,
    pub pipe: Arc<Pipe<Box<dyn Storage>>>,
    pub visible: Arc<RwLock<Visible>>,
    /// The broadcast ring of live subscribers (they are evicted, never waited for, when a
    /// whole ring behind; see `Subscription`).
    pub live: BroadcastProducer<CommitNotice>,
    pub failure: FailureSlot,
    pub checkpoint: Box<dyn FnMut(&Committed) + Send>,
    pub checkpoint_every: u64,
    /// Tests only: runs before each batch is answered.
    pub before_answer: Option<TestHook>,
}

impl Completer {
    /// Runs until the writer is gone and every completion is answered.
    pub fn run(mut self, completions: Receiver<CompletionMsg>) {
        // However this thread ends (even by a panic), appenders whose answers were filled
        // but not yet woken are woken.
        let _wake_on_exit = WakeOnDrop(Arc::clone(&self.answers));
        // Records a panic even with no reply in hand (a reply dropped by the unwinding
        // records it itself), before the writer finds the channel closed.
        let _fail_on_panic = FailOnPanic(self.failure.clone());
        let mut since_checkpoint = 0;
        let mut next = None;
        loop {
            let CompletionMsg(completion) = match next.take() {
                Some(message) => message,
                None => match completions.recv() {
                    Ok(message) => message,
                    Err(_) => break,
                },
            };
            if let Some(hook) = &self.before_answer {
                (hook.0)();
            }
            let outcome = match self.failure.get() {
                Some(failure) => Err(failure),
                None => self
                    .pipe
                    .wait_durable(completion.epoch)
                    .map_err(Failure::Pipe),
            };
            match outcome {
                Ok(()) => {
                    let notice = {
                        let mut visible = self.visible.write().unwrap_or_else(|p| p.into_inner());
                        let state = &mut visible.state;
                        let (first_position, first_offset) = (state.next_position, state.log_end);
                        for key in &completion.new_streams {
                            state.table.create(*key);
                        }
                        for &(id, version, offset) in &completion.updates {
                            let stream: &mut StreamState = &mut state.table.streams[id as usize];
                            stream.last_version = Some(version);
                            stream.last_offset = offset;
                        }
                        for &(id, version, offset) in &completion.marks {
                            state.table.note_event(id, version, offset);
                        }
                        state.next_position = completion.next_position;
                        state.log_end = completion.log_end;
                        CommitNotice {
                            first_position,
                            end_position: completion.next_position,
                            first_offset,
                            end_offset: completion.log_end,
                        }
                    };
                    // Visible first, then live: a subscriber that joins in between finds the
                    // batch on disk, and skips the notice by position. Under the evict policy
                    // the push never waits for a subscriber that is between batches.
                    // Only a closed ring refuses, and only this thread closes it (on exit).
                    let _ = self.live.push(notice);
                    for (reply, receipt) in completion.replies {
                        reply.fill(Ok(receipt));
                    }
                    since_checkpoint += notice.end_position - notice.first_position;
                    if since_checkpoint >= self.checkpoint_every {
                        since_checkpoint = 0;
                        // Answer first: a checkpoint is written here, and the appenders
                        // answered so far need not wait for it.
                        self.answers.wake();
                        let visible = self.visible.read().unwrap_or_else(|p| p.into_inner());
                        (self.checkpoint)(&visible.state);
                    }
                }
                Err(failure) => {
                    let failure = self.failure.record(failure);
                    for (reply, _) in completion.replies {
                        reply.fill(Err(StoreError::Failed(failure.clone())));
                    }
                }
            }
            // A batch behind this one that is durable already is answered with it: one wake
            // for both, so its appenders are not woken once per batch.
            if let Ok(message) = completions.try_recv() {
                let durable = self.pipe.durable_epoch() >= message.0.epoch;
                next = Some(message);
                if durable {
                    continue;
                }
            }
            self.answers.wake();
        }
        if self.failure.get().is_none() {
            let visible = self.visible.read().unwrap_or_else(|p| p.into_inner());
            (self.checkpoint)(&visible.state);
        }
    }
}

/// Records [`Failure::Panicked`] when the thread holding it unwinds, so appends fail with it
/// from then on instead of queueing for a thread that is gone.
struct FailOnPanic(FailureSlot);

impl Drop for FailOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let thread = this_thread();
            self.0.record(Failure::Panicked { thread });
        }
    }
}
