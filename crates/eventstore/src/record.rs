//! The record codec: one self-checking record per event (and per stream creation).
//!
//! Layout (little-endian, every record starts 8-byte aligned; see `docs/FORMAT.md`):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | total length of the record in bytes, padding excluded |
//! | 4 | 4 | CRC32C of bytes 8..length |
//! | 8 | 2 | magic `0xE5 0x7A` |
//! | 10 | 1 | kind: 1 = event, 2 = stream created |
//! | 11 | 1 | flags: bit 0 = COMMIT (last record of its append) |
//! | 12 | 4 | metadata length |
//! | 16 | 8 | global position (events) or 0 |
//! | 24 | 8 | stream id |
//! | 32 | 8 | version within the stream (events) or 0 |
//! | 40 | 8 | timestamp, nanoseconds since the Unix epoch |
//! | 48 | 8 | log offset of the stream's previous event, or `u64::MAX` |
//! | 56 | 16 | event type, `Packed128` big-endian (events) or zero |
//! | 72 | .. | metadata, then payload (events); domain, aggregate type, instance (stream created) |

use packed_ascii::{Packed64, Packed128};

use crate::error::CorruptKind;

/// Bytes of the fixed header.
pub const HEADER_LEN: usize = 72;
/// Every record starts at a multiple of this.
pub const ALIGN: usize = 8;
/// Identifies a record header.
pub const MAGIC: [u8; 2] = [0xE5, 0x7A];
/// `prev` of a stream's first event.
pub const NO_PREVIOUS: u64 = u64::MAX;
/// Bytes of a stream-created body: domain (8), aggregate type (16), instance id (16).
pub const STREAM_BODY_LEN: usize = 40;
/// The largest event body (metadata + payload) a store may be configured to take: the
/// upper bound of `StoreOptions::max_event_size`, so no record the store writes is longer
/// than `HEADER_LEN + MAX_EVENT_BODY`.
pub const MAX_EVENT_BODY: usize = 16 << 20;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An event.
    Event = 1,
    /// The first appearance of a stream: binds a stream id to its names.
    StreamCreated = 2,
}

/// The fixed fields of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the record holds.
    pub kind: Kind,
    /// Last record of its append (the append is durable and visible only with it).
    pub commit: bool,
    /// Global position (events).
    pub position: u64,
    /// The stream it belongs to.
    pub stream: u64,
    /// Version within the stream (events).
    pub version: u64,
    /// Nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// Log offset of the stream's previous event, or [`NO_PREVIOUS`].
    pub prev: u64,
    /// Event type (events only).
    pub event_type: Option<Packed128>,
}

/// A decoded record borrowing its bodies from the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The fixed fields.
    pub header: Header,
    /// Metadata bytes (events).
    pub metadata: &'a [u8],
    /// Payload bytes (events) or the stream-created body.
    pub body: &'a [u8],
    /// Bytes the record takes in the log, padding included.
    pub stored_len: usize,
}

/// Bytes a record with these bodies takes in the log, padding included.
pub const fn stored_len(metadata: usize, body: usize) -> usize {
    (HEADER_LEN + metadata + body).next_multiple_of(ALIGN)
}

/// Appends the encoding of a record to `out` (padded to [`ALIGN`]).
pub fn encode(out: &mut Vec<u8>, header: &Header, metadata: &[u8], body: &[u8]) {
    let start = out.len();
    debug_assert_eq!(start % ALIGN, 0, "records start aligned");
    let len = HEADER_LEN + metadata.len() + body.len();
    let len_u32 = u32::try_from(len).expect("record length is bounded by the store's limits");
    out.extend_from_slice(&len_u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // CRC, filled below
    out.extend_from_slice(&MAGIC);
    out.push(header.kind as u8);
    out.push(u8::from(header.commit));
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    for word in [
        header.position,
        header.stream,
        header.version,
        header.timestamp,
        header.prev,
    ] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&header.event_type.map_or(NO_TYPE, Packed128::to_be_bytes));
    debug_assert_eq!(out.len() - start, HEADER_LEN);
    out.extend_from_slice(metadata);
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[start + 8..start + len]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + len.next_multiple_of(ALIGN), 0);
}

/// The zero event type of non-event records.
const NO_TYPE: [u8; 16] = [0; 16];

/// Decodes the record at the start of `bytes`.
///
/// `Ok(None)` means the end of the log: a zero length word (the file beyond the last record is
/// zero-filled). Anything else that is not a whole, checksummed record is an error saying why.
pub fn decode(bytes: &[u8]) -> Result<Option<Record<'_>>, CorruptKind> {
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() < 4 {
        return if bytes.iter().all(|&b| b == 0) {
            Ok(None)
        } else {
            Err(CorruptKind::Truncated)
        };
    }
    let len = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return Ok(None);
    }
    if len < HEADER_LEN {
        return Err(CorruptKind::BadLength { len });
    }
    if bytes.len() < len {
        return Err(CorruptKind::Truncated);
    }
    if bytes[8..10] != MAGIC {
        return Err(CorruptKind::BadMagic);
    }
    let stored_crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(&bytes[8..len]) != stored_crc {
        return Err(CorruptKind::BadChecksum);
    }
    let kind = match bytes[10] {
        1 => Kind::Event,
        2 => Kind::StreamCreated,
        other => return Err(CorruptKind::UnknownKind { kind: other }),
    };
    let flags = bytes[11];
    if flags & !1 != 0 {
        return Err(CorruptKind::UnknownFlags { flags });
    }
    let metadata_len = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) as usize;
    if metadata_len > len - HEADER_LEN {
        return Err(CorruptKind::BadLength { len });
    }
    let type_bytes: [u8; 16] = bytes[56..72].try_into().expect("16 bytes");
    let event_type = match kind {
        Kind::Event => {
            Some(Packed128::from_be_bytes(type_bytes).map_err(|_| CorruptKind::BadName)?)
        }
        Kind::StreamCreated if type_bytes == NO_TYPE => None,
        Kind::StreamCreated => return Err(CorruptKind::BadName),
    };
    let header = Header {
        kind,
        commit: flags & 1 == 1,
        position: word(16),
        stream: word(24),
        version: word(32),
        timestamp: word(40),
        prev: word(48),
        event_type,
    };
    let metadata = &bytes[HEADER_LEN..HEADER_LEN + metadata_len];
    let body = &bytes[HEADER_LEN + metadata_len..len];
    if kind == Kind::StreamCreated {
        if body.len() != STREAM_BODY_LEN || !metadata.is_empty() {
            return Err(CorruptKind::BadLength { len });
        }
        decode_stream_body(body)?;
    }
    Ok(Some(Record {
        header,
        metadata,
        body,
        stored_len: len.next_multiple_of(ALIGN),
    }))
}

/// The names of a stream, as its stream-created record stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    /// The domain.
    pub domain: Packed64,
    /// The aggregate type.
    pub aggregate: Packed128,
    /// The aggregate instance.
    pub instance: u128,
}

/// Encodes a stream-created body.
pub fn encode_stream_body(key: &StreamKey) -> [u8; STREAM_BODY_LEN] {
    let mut body = [0u8; STREAM_BODY_LEN];
    body[..8].copy_from_slice(&key.domain.to_be_bytes());
    body[8..24].copy_from_slice(&key.aggregate.to_be_bytes());
    body[24..].copy_from_slice(&key.instance.to_be_bytes());
    body
}

/// Decodes a stream-created body.
pub fn decode_stream_body(body: &[u8]) -> Result<StreamKey, CorruptKind> {
    if body.len() != STREAM_BODY_LEN {
        return Err(CorruptKind::BadLength { len: body.len() });
    }
    let domain = Packed64::from_be_bytes(body[..8].try_into().expect("8 bytes"))
        .map_err(|_| CorruptKind::BadName)?;
    let aggregate = Packed128::from_be_bytes(body[8..24].try_into().expect("16 bytes"))
        .map_err(|_| CorruptKind::BadName)?;
    let instance = u128::from_be_bytes(body[24..].try_into().expect("16 bytes"));
    Ok(StreamKey {
        domain,
        aggregate,
        instance,
    })
}
