//! The stream table, its checkpoint file, and recovery of the log tail after the checkpoint.

use std::collections::HashMap;

use crate::error::CorruptKind;
use crate::record::{self, Kind, StreamKey};

/// What the store knows about one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// The stream's names.
    pub key: StreamKey,
    /// Version of its last event (`None`: no event yet).
    pub last_version: Option<u64>,
    /// Log offset of its last event (meaningless while `last_version` is `None`).
    pub last_offset: u64,
}

/// Every this many versions, where a stream's event lies in the log is kept in memory (its
/// *mark*): records link a stream's events newest to oldest, so a read of versions far below
/// the newest starts its walk at the first mark above them instead of at the newest event.
pub const MARK_EVERY: u64 = 1024;

/// A stream's marks: the log offsets of its events at versions `first * MARK_EVERY`,
/// `(first + 1) * MARK_EVERY`, ... (a run with no gap; a stream known from a checkpoint
/// written before marks existed has them only from some version on).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// `version / MARK_EVERY` of the first mark.
    pub first: u64,
    /// Log offsets, one per mark.
    pub offsets: Vec<u64>,
}

impl Marks {
    /// Records that the stream's event of `version` (a multiple of [`MARK_EVERY`]) is at
    /// `offset`, if it extends the run (or starts it).
    pub fn note(&mut self, version: u64, offset: u64) {
        debug_assert!(version.is_multiple_of(MARK_EVERY), "not a mark: {version}");
        let index = version / MARK_EVERY;
        if self.offsets.is_empty() {
            self.first = index;
        }
        if index == self.first + self.offsets.len() as u64 {
            self.offsets.push(offset);
        }
    }

    /// The mark of the lowest version at or above `version`, as (version, offset).
    pub fn at_or_above(&self, version: u64) -> Option<(u64, u64)> {
        let index = version.div_ceil(MARK_EVERY).max(self.first);
        let at = usize::try_from(index - self.first).ok()?;
        self.offsets
            .get(at)
            .map(|&offset| (index * MARK_EVERY, offset))
    }
}

/// Every stream, by id (ids are assigned 0, 1, 2, ... in log order) and by names.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Indexed by stream id.
    pub streams: Vec<StreamState>,
    /// Names -> stream id.
    pub by_key: HashMap<StreamKey, u64>,
    /// Indexed by stream id, like `streams` (kept apart so a stream's state stays `Copy`).
    pub marks: Vec<Marks>,
}

impl Table {
    /// Adds a stream; returns its id.
    pub fn create(&mut self, key: StreamKey) -> u64 {
        let id = self.streams.len() as u64;
        self.streams.push(StreamState {
            key,
            last_version: None,
            last_offset: record::NO_PREVIOUS,
        });
        self.marks.push(Marks::default());
        self.by_key.insert(key, id);
        id
    }

    /// Records a stream's event at `version` and `offset` in its marks when it is one.
    pub fn note_event(&mut self, stream: u64, version: u64, offset: u64) {
        if version.is_multiple_of(MARK_EVERY)
            && let Some(marks) = self.marks.get_mut(stream as usize)
        {
            marks.note(version, offset);
        }
    }

    /// The same streams without marks (for a thread that never reads).
    pub fn without_marks(&self) -> Table {
        Table {
            streams: self.streams.clone(),
            by_key: self.by_key.clone(),
            marks: vec![Marks::default(); self.streams.len()],
        }
    }

    /// The stream with these names.
    pub fn get(&self, key: &StreamKey) -> Option<(u64, &StreamState)> {
        let id = *self.by_key.get(key)?;
        Some((id, &self.streams[id as usize]))
    }
}

/// Everything recovery establishes: the table and where the log continues.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// The streams.
    pub table: Table,
    /// The next global position to assign (= number of events).
    pub next_position: u64,
    /// Log offset just past the last committed record.
    pub log_end: u64,
}

const CHECKPOINT_MAGIC: &[u8; 8] = b"EVCKPT\0\0";
/// Version 2 adds each stream's marks; version 1 (no marks) is still read.
pub const CHECKPOINT_VERSION: u32 = 2;
const STREAM_ENTRY_LEN: usize = record::STREAM_BODY_LEN + 8 + 8 + 1;

/// Encodes a checkpoint: magic, version, next position, log end, stream count, the streams
/// (each: names, version flag, last version, last offset, then its marks: the first mark's
/// index, their count and their offsets), and a trailing CRC32C of everything before it.
pub fn encode_checkpoint(state: &Committed) -> Vec<u8> {
    let marks: usize = state.table.marks.iter().map(|m| m.offsets.len()).sum();
    let mut out =
        Vec::with_capacity(40 + state.table.streams.len() * (STREAM_ENTRY_LEN + 16) + marks * 8);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&state.next_position.to_le_bytes());
    out.extend_from_slice(&state.log_end.to_le_bytes());
    out.extend_from_slice(&(state.table.streams.len() as u64).to_le_bytes());
    let no_marks = Marks::default();
    for (id, stream) in state.table.streams.iter().enumerate() {
        out.extend_from_slice(&record::encode_stream_body(&stream.key));
        out.push(u8::from(stream.last_version.is_some()));
        out.extend_from_slice(&stream.last_version.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&stream.last_offset.to_le_bytes());
        let marks = state.table.marks.get(id).unwrap_or(&no_marks);
        out.extend_from_slice(&marks.first.to_le_bytes());
        out.extend_from_slice(&(marks.offsets.len() as u64).to_le_bytes());
        for offset in &marks.offsets {
            out.extend_from_slice(&offset.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a checkpoint, or damaged.
    Corrupt(&'static str),
    /// A version this build does not read.
    Version(u32),
}

/// Decodes a checkpoint written by [`encode_checkpoint`] (or by a build that wrote version 1,
/// without marks).
pub fn decode_checkpoint(bytes: &[u8]) -> Result<Committed, CheckpointError> {
    if bytes.len() < 40 || &bytes[..8] != CHECKPOINT_MAGIC {
        return Err(CheckpointError::Corrupt("bad magic or too short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(CheckpointError::Corrupt("checksum mismatch"));
    }
    let word = |at: usize| u64::from_le_bytes(body[at..at + 8].try_into().expect("8 bytes"));
    let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if version != 1 && version != CHECKPOINT_VERSION {
        return Err(CheckpointError::Version(version));
    }
    let next_position = word(12);
    let log_end = word(20);
    let count = word(28);
    let mut entries = &body[36..];
    if version == 1 && count.checked_mul(STREAM_ENTRY_LEN as u64) != Some(entries.len() as u64) {
        return Err(CheckpointError::Corrupt(
            "stream count does not match the length",
        ));
    }
    let mut table = Table::default();
    for _ in 0..count {
        let Some((entry, rest)) = entries.split_at_checked(STREAM_ENTRY_LEN) else {
            return Err(CheckpointError::Corrupt(
                "stream count does not match the length",
            ));
        };
        entries = rest;
        let key = record::decode_stream_body(&entry[..record::STREAM_BODY_LEN])
            .map_err(|_| CheckpointError::Corrupt("bad stream names"))?;
        let fields = &entry[record::STREAM_BODY_LEN..];
        let has_version = match fields[0] {
            0 => false,
            1 => true,
            _ => return Err(CheckpointError::Corrupt("bad version flag")),
        };
        let last_version = u64::from_le_bytes(fields[1..9].try_into().expect("8 bytes"));
        let last_offset = u64::from_le_bytes(fields[9..17].try_into().expect("8 bytes"));
        if table.by_key.contains_key(&key) {
            return Err(CheckpointError::Corrupt("duplicate stream"));
        }
        let marks = if version == 1 {
            Marks::default()
        } else {
            let (marks, rest) = decode_marks(entries, has_version.then_some(last_version))?;
            entries = rest;
            marks
        };
        if marks.offsets.last().is_some_and(|&last| last > last_offset) {
            return Err(CheckpointError::Corrupt(
                "a mark past the stream's last event",
            ));
        }
        let id = table.create(key);
        let stream = &mut table.streams[id as usize];
        stream.last_version = has_version.then_some(last_version);
        stream.last_offset = last_offset;
        table.marks[id as usize] = marks;
    }
    if !entries.is_empty() {
        return Err(CheckpointError::Corrupt(
            "stream count does not match the length",
        ));
    }
    Ok(Committed {
        table,
        next_position,
        log_end,
    })
}

/// A stream's marks in a version-2 checkpoint entry, and what follows them. Refused unless
/// they fit the stream (no mark above its last version) and rise.
fn decode_marks(
    bytes: &[u8],
    last_version: Option<u64>,
) -> Result<(Marks, &[u8]), CheckpointError> {
    let too_short = CheckpointError::Corrupt("stream count does not match the length");
    let word = |at: usize| -> Result<u64, CheckpointError> {
        bytes
            .get(at..at + 8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .ok_or(too_short.clone())
    };
    let first = word(0)?;
    let count = word(8)?;
    let len = count
        .checked_mul(8)
        .and_then(|len| usize::try_from(len).ok())
        .filter(|&len| len <= bytes.len() - 16)
        .ok_or(too_short.clone())?;
    if count > 0 {
        let highest = first
            .checked_add(count - 1)
            .and_then(|index| index.checked_mul(MARK_EVERY));
        if highest.is_none_or(|highest| last_version.is_none_or(|last| highest > last)) {
            return Err(CheckpointError::Corrupt(
                "a mark past the stream's last version",
            ));
        }
    }
    let offsets: Vec<u64> = bytes[16..16 + len]
        .chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
        .collect();
    if offsets.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err(CheckpointError::Corrupt("marks out of order"));
    }
    Ok((Marks { first, offsets }, &bytes[16 + len..]))
}

/// What replaying the log tail found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TailReplay {
    /// Events of committed appends replayed.
    pub events: u64,
    /// Where replay stopped (the first byte that is not part of a committed append).
    pub stop: u64,
    /// Why it stopped: `None` at a clean end, else the first bad record.
    pub damage: Option<(u64, CorruptKind)>,
    /// Records after the last commit that were decoded but belong to no committed append.
    pub uncommitted_records: u64,
}

/// How to take back the records of an append that never got its COMMIT.
#[derive(Debug, Default)]
struct Undo {
    streams: usize,
    next_position: u64,
    log_end: u64,
    /// Streams changed by the append, with their state before it (first change first).
    changed: Vec<(u64, StreamState)>,
}

/// Replays the records of `log` from `state.log_end`, applying every committed append to
/// `state` in place and handing each committed append's event offsets (in position order) to
/// `on_commit`. Stops at the end of the log, at the first record that does not decode, or at
/// the first record that does not follow (position, version, stream); what comes after the
/// last commit is taken back out of `state`. Memory use does not grow with the log's length.
pub fn replay_tail(
    log: &[u8],
    state: &mut Committed,
    mut on_commit: impl FnMut(&[u64]),
) -> TailReplay {
    let mut replay = TailReplay {
        stop: state.log_end,
        ..TailReplay::default()
    };
    let mut undo: Option<Undo> = None;
    let mut offsets = Vec::new();
    let mut marks = Vec::new();
    let mut pending_records = 0;
    let mut offset = state.log_end;
    while let Some(bytes) = log.get(offset as usize..) {
        let record = match record::decode(bytes) {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(kind) => {
                replay.damage = Some((offset, kind));
                break;
            }
        };
        let journal = undo.get_or_insert_with(|| Undo {
            streams: state.table.streams.len(),
            next_position: state.next_position,
            log_end: state.log_end,
            changed: Vec::new(),
        });
        if record.header.kind == Kind::Event
            && let Some(stream) = state.table.streams.get(record.header.stream as usize)
        {
            journal.changed.push((record.header.stream, *stream));
        }
        if let Err(what) = apply(state, &record, offset) {
            replay.damage = Some((offset, CorruptKind::OutOfOrder { what }));
            break;
        }
        if record.header.kind == Kind::Event {
            offsets.push(offset);
            if record.header.version.is_multiple_of(MARK_EVERY) {
                marks.push((record.header.stream, record.header.version, offset));
            }
        }
        pending_records += 1;
        offset += record.stored_len as u64;
        state.log_end = offset;
        if record.header.commit {
            on_commit(&offsets);
            replay.events += offsets.len() as u64;
            offsets.clear();
            // Marks of an append count once it is committed (an uncommitted one is undone).
            for (stream, version, offset) in marks.drain(..) {
                state.table.note_event(stream, version, offset);
            }
            undo = None;
            replay.stop = offset;
            pending_records = 0;
        }
    }
    if let Some(undo) = undo {
        for (id, before) in undo.changed.into_iter().rev() {
            state.table.streams[id as usize] = before;
        }
        for stream in state.table.streams.drain(undo.streams..) {
            state.table.by_key.remove(&stream.key);
        }
        state.table.marks.truncate(undo.streams);
        state.next_position = undo.next_position;
        state.log_end = undo.log_end;
    }
    replay.uncommitted_records = pending_records;
    replay
}

fn apply(
    state: &mut Committed,
    record: &record::Record<'_>,
    offset: u64,
) -> Result<(), &'static str> {
    let header = &record.header;
    match header.kind {
        Kind::StreamCreated => {
            let key = record::decode_stream_body(record.body).map_err(|_| "stream names")?;
            if header.stream != state.table.streams.len() as u64 {
                return Err("stream id is not the next one");
            }
            if state.table.by_key.contains_key(&key) {
                return Err("stream created twice");
            }
            state.table.create(key);
        }
        Kind::Event => {
            if header.position != state.next_position {
                return Err("global position is not the next one");
            }
            let stream = state
                .table
                .streams
                .get_mut(header.stream as usize)
                .ok_or("event of an unknown stream")?;
            let expected_version = stream.last_version.map_or(0, |v| v + 1);
            if header.version != expected_version {
                return Err("stream version is not the next one");
            }
            let expected_prev = if stream.last_version.is_some() {
                stream.last_offset
            } else {
                record::NO_PREVIOUS
            };
            if header.prev != expected_prev {
                return Err("previous-event link is wrong");
            }
            stream.last_version = Some(header.version);
            stream.last_offset = offset;
            state.next_position += 1;
        }
    }
    Ok(())
}

/// Whether the log goes on after the damaged record at `offset` (`kind` says what is wrong
/// with it; `state` is the committed state replay reached): then the damage is in the middle
/// of the log, not a torn tail.
///
/// Any valid record starting past the damaged record's span says so. One starting inside the
/// span (its declared length, when its magic is right, its length one the store writes, and
/// only the checksum failed or the record runs past the end of the file) says so only if it
/// could come after `state`: an event at or past the next position, a stream creation at or
/// past the next stream id, and either no further ahead than one per header length from the
/// committed end. A torn write keeps its header and part of its body, and an event's body may
/// carry whole records of its own (an event holding a copy of log bytes), which would
/// otherwise make a torn tail look like damage in the middle. The length word is not under the
/// checksum, so the span is not simply skipped: every record starting in it is decoded in
/// full, and a flipped length bit cannot hide the records after it.
pub fn damage_is_followed(
    log: &[u8],
    offset: usize,
    kind: &CorruptKind,
    state: &Committed,
) -> bool {
    let start = offset.saturating_add(record::ALIGN).min(log.len());
    let header_kept = log.get(offset + 8..offset + 10) == Some(&record::MAGIC[..])
        && matches!(kind, CorruptKind::BadChecksum | CorruptKind::Truncated);
    let declared = log.get(offset..offset + 4).map_or(0, |word| {
        u32::from_le_bytes(word.try_into().expect("4 bytes")) as usize
    });
    let span_end = if header_kept
        && (record::HEADER_LEN..=record::HEADER_LEN + record::MAX_EVENT_BODY).contains(&declared)
    {
        offset
            .saturating_add(declared.next_multiple_of(record::ALIGN))
            .clamp(start, log.len())
    } else {
        start
    };
    let could_follow = |at: usize, record: &record::Record<'_>| {
        // Records take at least a header each: a record this far past the committed end is
        // at most this many records on.
        let records_on = (at as u64).saturating_sub(state.log_end) / record::HEADER_LEN as u64;
        let (next, found) = match record.header.kind {
            Kind::Event => (state.next_position, record.header.position),
            Kind::StreamCreated => (state.table.streams.len() as u64, record.header.stream),
        };
        (next..=next.saturating_add(records_on)).contains(&found)
    };
    valid_records(log, start).any(|(at, record)| at >= span_end || could_follow(at, &record))
}

/// The whole, checksummed records starting at aligned offsets of `log` from `from` on
/// (including ones inside other records' bodies), with their offsets.
fn valid_records(log: &[u8], from: usize) -> impl Iterator<Item = (usize, record::Record<'_>)> {
    (from..log.len().saturating_sub(record::HEADER_LEN - 1))
        .step_by(record::ALIGN)
        .filter(|&at| log[at + 8..at + 10] == record::MAGIC)
        .filter_map(|at| Some((at, record::decode(&log[at..]).ok().flatten()?)))
}
