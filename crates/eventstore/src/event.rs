//! Events as the application gives them and as the store returns them.

use packed_ascii::{Packed64, Packed128};

use crate::record::{Record, StreamKey};

/// An event to append: a type name, an opaque payload and optional metadata.
///
/// The type name is checked when the event is appended (a bad name is a typed error then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub(crate) event_type: String,
    pub(crate) payload: Vec<u8>,
    pub(crate) metadata: Vec<u8>,
}

impl Event {
    /// An event of type `event_type` (1 to 21 characters of the packed-ascii alphabet).
    pub fn new(event_type: impl Into<String>, payload: impl Into<Vec<u8>>) -> Event {
        Event {
            event_type: event_type.into(),
            payload: payload.into(),
            metadata: Vec::new(),
        }
    }

    /// Adds metadata bytes (correlation ids, causation, ...), stored beside the payload.
    pub fn with_metadata(mut self, metadata: impl Into<Vec<u8>>) -> Event {
        self.metadata = metadata.into();
        self
    }

    /// The type name as given.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// An event read back, with what the store assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream's domain.
    pub domain: Packed64,
    /// The stream's aggregate type.
    pub aggregate_type: Packed128,
    /// The aggregate instance.
    pub instance: u128,
    /// The event type.
    pub event_type: Packed128,
    /// Version within the stream: 0 for its first event, then contiguous.
    pub version: u64,
    /// Position in the store's single global order: 0, 1, 2, ... with no gaps.
    pub position: u64,
    /// When the store wrote it, nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// Metadata bytes.
    pub metadata: Vec<u8>,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// An event borrowed from the memory-mapped log, as the `scan` methods visit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// The stream's names.
    pub stream: StreamKey,
    /// The event type.
    pub event_type: Packed128,
    /// Version within the stream.
    pub version: u64,
    /// Position in the global order.
    pub position: u64,
    /// When the store wrote it, nanoseconds since the Unix epoch.
    pub timestamp: u64,
    /// Metadata bytes.
    pub metadata: &'a [u8],
    /// Payload bytes.
    pub payload: &'a [u8],
}

impl<'a> EventView<'a> {
    pub(crate) fn new(stream: StreamKey, record: &Record<'a>) -> EventView<'a> {
        EventView {
            stream,
            // Event records always carry a type (the decoder refuses one without).
            event_type: record
                .header
                .event_type
                .unwrap_or(packed_ascii::packed128!("?")),
            version: record.header.version,
            position: record.header.position,
            timestamp: record.header.timestamp,
            metadata: record.metadata,
            payload: record.body,
        }
    }

    /// An owned copy.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            domain: self.stream.domain,
            aggregate_type: self.stream.aggregate,
            instance: self.stream.instance,
            event_type: self.event_type,
            version: self.version,
            position: self.position,
            timestamp: self.timestamp,
            metadata: self.metadata.to_vec(),
            payload: self.payload.to_vec(),
        }
    }
}

/// What an append expects of its stream (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// No check.
    Any,
    /// The stream has no events yet.
    NoStream,
    /// The stream has at least one event.
    StreamExists,
    /// The stream's last event has exactly this version.
    Exact(u64),
}

impl Expected {
    /// Whether a stream whose last version is `actual` satisfies this expectation.
    pub fn admits(self, actual: Option<u64>) -> bool {
        match self {
            Expected::Any => true,
            Expected::NoStream => actual.is_none(),
            Expected::StreamExists => actual.is_some(),
            Expected::Exact(version) => actual == Some(version),
        }
    }
}

/// What an append was given: where its events went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Global position of the first event appended.
    pub first_position: u64,
    /// Global position of the last event appended.
    pub last_position: u64,
    /// For each stream of the append, in the order given: its new last version.
    pub last_versions: Vec<u64>,
}

impl Receipt {
    /// The new last version of the (first) stream appended to: the `Expected::Exact` of the
    /// next append.
    pub fn last_version(&self) -> u64 {
        self.last_versions.first().copied().unwrap_or_default()
    }
}
