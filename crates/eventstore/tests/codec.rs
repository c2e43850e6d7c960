//! Property tests of the record and checkpoint codecs: round trips, and any bytes given to a
//! decoder yield a value or a typed error, never a panic.

use eventstore::record::{self, Header, Kind, StreamKey};
use eventstore::{Committed, decode_checkpoint, replay_tail};
use packed_ascii::{Packed64, Packed128};
use proptest::prelude::*;

fn header_strategy() -> impl Strategy<Value = Header> {
    (
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        "[a-z0-9_-]{1,21}",
    )
        .prop_map(
            |(commit, position, stream, version, timestamp, prev, name)| Header {
                kind: Kind::Event,
                commit,
                position,
                stream,
                version,
                timestamp,
                prev,
                event_type: Some(Packed128::new(&name).unwrap()),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn records_round_trip(
        header in header_strategy(),
        metadata in proptest::collection::vec(any::<u8>(), 0..64),
        body in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut out = vec![0u8; 8]; // records start aligned, after whatever came before
        record::encode(&mut out, &header, &metadata, &body);
        prop_assert_eq!(out.len() % record::ALIGN, 0);
        let decoded = record::decode(&out[8..]).unwrap().unwrap();
        prop_assert_eq!(decoded.header, header);
        prop_assert_eq!(decoded.metadata, &metadata[..]);
        prop_assert_eq!(decoded.body, &body[..]);
        prop_assert_eq!(decoded.stored_len, out.len() - 8);
        prop_assert_eq!(decoded.stored_len, record::stored_len(metadata.len(), body.len()));
    }

    #[test]
    fn any_bytes_decode_to_a_value_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = record::decode(&bytes);
        let _ = decode_checkpoint(&bytes);
        let mut state = Committed::default();
        let _ = replay_tail(&bytes, &mut state, |_| {});
    }

    #[test]
    fn every_mutation_of_a_record_is_caught(
        header in header_strategy(),
        body in proptest::collection::vec(any::<u8>(), 1..200),
        flip_at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut out = Vec::new();
        record::encode(&mut out, &header, &[], &body);
        let len = record::HEADER_LEN + body.len();
        let at = flip_at.index(len);
        out[at] ^= flip;
        // A changed length may make it read as the end of the log or as a shorter/longer
        // record; every other change must fail the checksum or a field check.
        match record::decode(&out) {
            Ok(Some(decoded)) => prop_assert!(at < 4, "mutation at {at} went unnoticed: {decoded:?}"),
            Ok(None) => prop_assert!(at < 4),
            Err(_) => {}
        }
    }

    #[test]
    fn checkpoints_round_trip(count in 0usize..20, next in any::<u64>(), end in any::<u64>()) {
        let mut state = Committed { next_position: next, log_end: end, ..Committed::default() };
        for n in 0..count {
            let key = StreamKey {
                domain: Packed64::new("d").unwrap(),
                aggregate: Packed128::new("agg").unwrap(),
                instance: n as u128 * 7919,
            };
            let id = state.table.create(key);
            let last_version = (n % 3 != 0).then_some(n as u64 * 1500);
            state.table.streams[id as usize].last_version = last_version;
            state.table.streams[id as usize].last_offset = n as u64 * 1_000_000;
            // A mark every 1024 versions up to the last one, some streams' run starting late.
            if let Some(last) = last_version {
                let first = (n % 2) as u64;
                for index in first..=last / 1024 {
                    state.table.note_event(id, index * 1024, index * 10 + 1);
                }
            }
        }
        let bytes = eventstore::record::encode_stream_body(&StreamKey {
            domain: Packed64::new("x").unwrap(),
            aggregate: Packed128::new("y").unwrap(),
            instance: 1,
        });
        prop_assert_eq!(bytes.len(), record::STREAM_BODY_LEN);
        let encoded = encode(&state);
        let decoded = decode_checkpoint(&encoded).unwrap();
        prop_assert_eq!(decoded.next_position, next);
        prop_assert_eq!(decoded.log_end, end);
        prop_assert_eq!(decoded.table.streams, state.table.streams.clone());
        prop_assert_eq!(&decoded.table.marks, &state.table.marks);
        prop_assert!(state.table.marks.iter().filter(|m| !m.offsets.is_empty()).count() >= count / 3);
        // The format before marks (version 1) still reads, with none.
        let old = version_1(&state);
        let decoded = decode_checkpoint(&old).unwrap();
        prop_assert_eq!(decoded.table.streams, state.table.streams.clone());
        prop_assert!(decoded.table.marks.iter().all(|m| m.offsets.is_empty()));
        // Any single flipped byte is refused.
        for at in [0, encoded.len() / 2, encoded.len() - 1] {
            let mut bad = encoded.clone();
            bad[at] ^= 0x40;
            prop_assert!(decode_checkpoint(&bad).is_err());
        }
    }
}

fn encode(state: &Committed) -> Vec<u8> {
    eventstore::encode_checkpoint(state)
}

/// A checkpoint as builds before marks wrote it (version 1: fixed-size stream entries).
fn version_1(state: &Committed) -> Vec<u8> {
    let mut out = b"EVCKPT\0\0".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
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

#[test]
fn marks_past_the_last_version_or_out_of_order_are_refused() {
    let key = StreamKey {
        domain: Packed64::new("d").unwrap(),
        aggregate: Packed128::new("a").unwrap(),
        instance: 1,
    };
    let build = |last_version: u64, offsets: &[u64]| {
        let mut state = Committed {
            log_end: 1 << 30,
            ..Committed::default()
        };
        let id = state.table.create(key);
        state.table.streams[id as usize].last_version = Some(last_version);
        state.table.streams[id as usize].last_offset = 1 << 20;
        state.table.marks[id as usize].offsets = offsets.to_vec();
        eventstore::encode_checkpoint(&state)
    };
    assert!(decode_checkpoint(&build(2048, &[8, 16, 24])).is_ok());
    assert!(
        decode_checkpoint(&build(2047, &[8, 16, 24])).is_err(),
        "mark of 2048 past 2047"
    );
    assert!(
        decode_checkpoint(&build(4096, &[8, 8])).is_err(),
        "not rising"
    );
    assert!(
        decode_checkpoint(&build(4096, &[8, 2 << 20])).is_err(),
        "past the last event"
    );
}
