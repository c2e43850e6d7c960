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

/// Every stream, by id (ids are assigned 0, 1, 2, ... in log order) and by names.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Indexed by stream id.
    pub streams: Vec<StreamState>,
    /// Names -> stream id.
    pub by_key: HashMap<StreamKey, u64>,
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
        self.by_key.insert(key, id);
        id
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
const CHECKPOINT_VERSION: u32 = 1;
const STREAM_ENTRY_LEN: usize = record::STREAM_BODY_LEN + 8 + 8 + 1;

/// Encodes a checkpoint: magic, version, next position, log end, stream count, the streams,
/// and a trailing CRC32C of everything before it.
pub fn encode_checkpoint(state: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + state.table.streams.len() * STREAM_ENTRY_LEN);
    out.extend_from_slice(CHECKPOINT_MAGIC);
    out.extend_from_slice(&CHECKPOINT_VERSION.to_le_bytes());
    out.extend_from_slice(&state.next_position.to_le_bytes());
    out.extend_from_slice(&state.log_end.to_le_bytes());
    out.extend_from_slice(&(state.table.streams.len() as u64).to_le_bytes());
    for stream in &state.table.streams {
        out.extend_from_slice(&record::encode_stream_body(&stream.key));
        out.push(u8::from(stream.last_version.is_some()));
        out.extend_from_slice(&stream.last_version.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&stream.last_offset.to_le_bytes());
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

/// Decodes a checkpoint written by [`encode_checkpoint`].
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
    if version != CHECKPOINT_VERSION {
        return Err(CheckpointError::Version(version));
    }
    let next_position = word(12);
    let log_end = word(20);
    let count = word(28);
    let entries = &body[36..];
    if count.checked_mul(STREAM_ENTRY_LEN as u64) != Some(entries.len() as u64) {
        return Err(CheckpointError::Corrupt(
            "stream count does not match the length",
        ));
    }
    let mut table = Table::default();
    for entry in entries.chunks_exact(STREAM_ENTRY_LEN) {
        let key = record::decode_stream_body(&entry[..record::STREAM_BODY_LEN])
            .map_err(|_| CheckpointError::Corrupt("bad stream names"))?;
        let rest = &entry[record::STREAM_BODY_LEN..];
        let has_version = match rest[0] {
            0 => false,
            1 => true,
            _ => return Err(CheckpointError::Corrupt("bad version flag")),
        };
        let version = u64::from_le_bytes(rest[1..9].try_into().expect("8 bytes"));
        let last_offset = u64::from_le_bytes(rest[9..17].try_into().expect("8 bytes"));
        if table.by_key.contains_key(&key) {
            return Err(CheckpointError::Corrupt("duplicate stream"));
        }
        let id = table.create(key);
        let stream = &mut table.streams[id as usize];
        stream.last_version = has_version.then_some(version);
        stream.last_offset = last_offset;
    }
    Ok(Committed {
        table,
        next_position,
        log_end,
    })
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
        }
        pending_records += 1;
        offset += record.stored_len as u64;
        state.log_end = offset;
        if record.header.commit {
            on_commit(&offsets);
            replay.events += offsets.len() as u64;
            offsets.clear();
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
