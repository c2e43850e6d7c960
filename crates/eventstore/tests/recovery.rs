//! Opening after damage: torn tails are cut and reported, earlier damage is an error naming the
//! file and offset, checkpoints bound the replay.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

mod common;

use common::stream_of;
use eventstore::{CorruptKind, Event, Expected, Store, StoreError, StoreOptions};

/// A small growth step keeps the log files (and these tests) small.
fn small() -> StoreOptions {
    StoreOptions {
        grow_step: 1 << 20,
        ..StoreOptions::default()
    }
}

fn fill(dir: &Path, streams: u128, events: u64) {
    let store = Store::open_with(dir, small()).unwrap();
    for instance in 0..streams {
        let stream = stream_of(&store, instance);
        for n in 0..events {
            stream
                .append(
                    Expected::Any,
                    &[Event::new("e", n.to_le_bytes().repeat(10))],
                )
                .unwrap();
        }
    }
    store.close().unwrap();
}

/// Opens the store, appends `events` to stream 0 expecting `expected`, and closes it.
fn append_to_first_stream(dir: &Path, expected: Expected, events: &[Event]) {
    append_with(dir, small(), expected, events);
}

/// [`append_to_first_stream`] with `options`.
fn append_with(dir: &Path, options: StoreOptions, expected: Expected, events: &[Event]) {
    let store = Store::open_with(dir, options).unwrap();
    stream_of(&store, 0u128).append(expected, events).unwrap();
    store.close().unwrap();
}

/// Offset just past the last record: where the zero fill of the preallocated log begins.
fn log_end(dir: &Path) -> u64 {
    end_of_records(&std::fs::read(dir.join("log.dat")).unwrap())
}

/// Offset just past the last record among `bytes`, the start of the log.
fn end_of_records(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| (last as u64 + 1).next_multiple_of(8))
}

fn write_at(dir: &Path, offset: u64, bytes: &[u8]) {
    let file = OpenOptions::new()
        .write(true)
        .open(dir.join("log.dat"))
        .unwrap();
    file.write_all_at(bytes, offset).unwrap();
    file.sync_all().unwrap();
}

/// Opening fails as damage before the tail, naming the log, `offset` and `kind`.
fn assert_refused_as_corrupt(dir: &Path, offset: u64, kind: CorruptKind) {
    match Store::open_with(dir, small()) {
        Err(StoreError::Corrupt {
            path,
            offset: found,
            kind: what,
        }) => {
            assert!(path.ends_with("log.dat"));
            assert_eq!((found, what), (offset, kind));
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

/// Cuts or extends the log file to `len` bytes (a lost or partial size change).
fn set_log_len(dir: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(dir.join("log.dat"))
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn check_store(dir: &Path, streams: u128, events: u64) -> Store {
    let store = Store::open_with(dir, small()).unwrap();
    assert_eq!(store.len(), streams as u64 * events);
    for instance in 0..streams {
        let stream = stream_of(&store, instance);
        let read = stream.read_from(0).unwrap();
        assert_eq!(read.len() as u64, events);
        for (n, event) in read.iter().enumerate() {
            assert_eq!(event.version, n as u64);
            assert_eq!(event.payload, (n as u64).to_le_bytes().repeat(10));
        }
    }
    store
}

/// Opens the log alone (its checkpoint removed): one stream of `events` committed events
/// remains, the tail was cut at `at`, and `damage` says why (`None`: only uncommitted).
fn assert_tail_cut(dir: &Path, events: u64, at: u64, damage: Option<CorruptKind>) -> Store {
    std::fs::remove_file(dir.join("checkpoint.dat")).unwrap();
    let store = check_store(dir, 1, events);
    assert_eq!(store.recovery().truncated_at, Some(at));
    assert_eq!(store.recovery().tail_damage, damage);
    store
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2, 5);
    let end = log_end(dir.path());
    write_at(dir.path(), end, &[0xAB; 100]);
    let store = check_store(dir.path(), 2, 5);
    let report = store.recovery().clone();
    assert_eq!(report.truncated_at, Some(end));
    assert_eq!(report.truncated_bytes, 100);
    assert!(report.tail_damage.is_some());
    // The store keeps working and the repair is durable.
    let stream = stream_of(&store, 0u128);
    stream
        .append(
            Expected::Exact(4),
            &[Event::new("e", 5u64.to_le_bytes().repeat(10))],
        )
        .unwrap();
    store.close().unwrap();
    let reopened = Store::open_with(dir.path(), small()).unwrap();
    assert_eq!(reopened.len(), 11);
    assert_eq!(
        reopened.recovery().truncated_at,
        None,
        "the cut was durable"
    );
}

#[test]
fn a_half_written_last_record_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 3);
    let before = log_end(dir.path());
    // Append one more event, then tear it: keep its first 40 bytes only.
    fill(dir.path(), 1, 0);
    append_to_first_stream(
        dir.path(),
        Expected::Exact(2),
        &[Event::new("e", vec![9u8; 300])],
    );
    let after = log_end(dir.path());
    assert!(after > before);
    write_at(
        dir.path(),
        before + 40,
        &vec![0u8; (after - before - 40) as usize],
    );
    // The header survived, the body is zeros within the file: its checksum fails.
    assert_tail_cut(dir.path(), 3, before, Some(CorruptKind::BadChecksum));
}

/// Two committed events, then an append of `events` events of `size` bytes whose last record
/// (the one carrying COMMIT) is zeroed; returns where that append starts.
fn two_events_then_an_append_without_its_commit(dir: &Path, events: usize, size: usize) -> u64 {
    fill(dir, 1, 2);
    let before = log_end(dir);
    let events: Vec<Event> = (0..events)
        .map(|_| Event::new("e", vec![7u8; size]))
        .collect();
    append_to_first_stream(dir, Expected::Exact(1), &events);
    let offsets = record_offsets(dir);
    let [.., last, end] = offsets[..] else {
        panic!("records expected, found {offsets:?}")
    };
    write_at(dir, last as u64, &vec![0u8; end - last]);
    before
}

#[test]
fn a_batch_without_its_commit_record_is_dropped_whole() {
    let dir = tempfile::tempdir().unwrap();
    // Remove the last record (the one carrying COMMIT): the three before it must go too.
    let before = two_events_then_an_append_without_its_commit(dir.path(), 4, 64);
    // An uncommitted tail is not damage.
    assert_tail_cut(dir.path(), 2, before, None);
}

#[test]
fn damage_before_the_tail_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 5);
    std::fs::remove_file(dir.path().join("checkpoint.dat")).unwrap();
    // Flip a payload byte of an early record: later records are intact.
    let bytes = std::fs::read(dir.path().join("log.dat")).unwrap();
    let first = eventstore::record::decode(&bytes)
        .unwrap()
        .unwrap()
        .stored_len as u64;
    write_at(dir.path(), first + 80, &[0xFF]);
    assert_refused_as_corrupt(dir.path(), first, CorruptKind::BadChecksum);
}

#[test]
fn a_checkpoint_bounds_the_replay_and_a_bad_one_is_replaced_by_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        checkpoint_every: 10,
        ..small()
    };
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let stream = stream_of(&store, 0u128);
        for n in 0..25u64 {
            stream
                .append(
                    Expected::Any,
                    &[Event::new("e", n.to_le_bytes().repeat(10))],
                )
                .unwrap();
        }
        // Simulate a crash after the periodic checkpoints: no close, no final checkpoint.
        std::mem::forget(store);
    }
    // The forgotten store still holds the lock in this process: copy the files elsewhere.
    let copy = tempfile::tempdir().unwrap();
    for file in ["STORE", "log.dat", "global.idx", "checkpoint.dat"] {
        std::fs::copy(dir.path().join(file), copy.path().join(file)).unwrap();
    }
    let store = check_store(copy.path(), 1, 25);
    let replayed = store.recovery().replayed_events;
    assert!((5..25).contains(&replayed), "replayed {replayed} of 25");
    assert!(!store.recovery().checkpoint_discarded);
    drop(store);

    std::fs::write(copy.path().join("checkpoint.dat"), b"not a checkpoint").unwrap();
    let store = check_store(copy.path(), 1, 25);
    assert!(store.recovery().checkpoint_discarded);
    assert_eq!(store.recovery().replayed_events, 25);
}

/// A checkpoint whose checksum holds but whose numbers cannot (more events than its log could
/// hold: the index length would overflow) is discarded like a damaged one, not trusted.
#[test]
fn a_checkpoint_with_impossible_numbers_is_discarded() {
    let impossible: [fn(&mut eventstore::Committed); 2] = [
        |committed| committed.next_position = u64::MAX / 4,
        // No record starts at an unaligned offset: every aligned scan from it would miss them.
        |committed| committed.log_end -= 4,
    ];
    for damage in impossible {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path(), 1, 5);
        let path = dir.path().join("checkpoint.dat");
        let mut committed = eventstore::decode_checkpoint(&std::fs::read(&path).unwrap()).unwrap();
        damage(&mut committed);
        std::fs::write(&path, eventstore::encode_checkpoint(&committed)).unwrap();
        let store = check_store(dir.path(), 1, 5);
        assert!(store.recovery().checkpoint_discarded);
        assert_eq!(store.recovery().replayed_events, 5);
    }
}

/// Three events, then a fourth whose body starts with a copy of the log's first record (a
/// whole, valid record of this very log) followed by 400 bytes; returns where the fourth
/// starts and the copy's length.
fn three_events_then_one_carrying_a_record(dir: &Path) -> (u64, usize) {
    fill(dir, 1, 3);
    let before = log_end(dir);
    let bytes = std::fs::read(dir.join("log.dat")).unwrap();
    let inner = eventstore::record::decode(&bytes)
        .unwrap()
        .unwrap()
        .stored_len;
    let mut body = bytes[..inner].to_vec();
    body.extend_from_slice(&[0x5A; 400]);
    append_to_first_stream(dir, Expected::Exact(2), &[Event::new("e", body)]);
    (before, inner)
}

/// A torn last record whose event carries a whole record of its own (an event holding another
/// log's bytes) is a torn tail, cut like any other: the record inside its body is not taken
/// for a later record of this log, which would make the tear look like damage in the middle.
#[test]
fn a_torn_record_carrying_a_whole_record_in_its_body_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (before, _) = three_events_then_one_carrying_a_record(dir.path());
    let after = log_end(dir.path());
    // Tear the new record's end: its header and the record inside its body stay.
    write_at(dir.path(), after - 100, &[0u8; 100]);
    assert_tail_cut(dir.path(), 3, before, Some(CorruptKind::BadChecksum));
}

/// Bytes a crash left further past the last commit than this configuration's in-flight window
/// reaches (a run with a larger `max_append_bytes` writes further ahead) are cut too: left
/// there, later appends would run into them.
#[test]
fn leftovers_past_a_smaller_configuration_s_window_are_cut() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = StoreOptions {
        max_event_size: 64 << 10,
        max_append_bytes: (64 << 10) + 4096,
        ..small()
    };
    append_with(
        dir.path(),
        narrow.clone(),
        Expected::Any,
        &[Event::new("e", vec![1u8; 100])],
    );
    let end = log_end(dir.path());
    // Past 64 MiB of staging plus one 8 MiB + 68 KiB write: beyond this configuration's window.
    let far = end + (80 << 20);
    write_at(dir.path(), far, &[0xAB; 64]);
    let store = Store::open_with(dir.path(), narrow).unwrap();
    assert_eq!(store.recovery().truncated_at, Some(end));
    drop(store);
    let file = std::fs::File::open(dir.path().join("log.dat")).unwrap();
    let mut left = [0u8; 64];
    file.read_exact_at(&mut left, far).unwrap();
    assert_eq!(left, [0u8; 64], "the leftover bytes were zeroed");
}

/// Bytes a crash left inside the log's preallocated space (grown by `fallocate`, where the
/// search past the end asks the file system for data rather than reading it all): found and
/// cut, whether they reached the disk or were still in the page cache.
#[test]
fn leftovers_inside_the_preallocated_log_are_cut() {
    for synced in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        append_with(
            dir.path(),
            StoreOptions::default(),
            Expected::Any,
            &[Event::new("e", vec![1u8; 100])],
        );
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(dir.path().join("log.dat"))
            .unwrap();
        // One small record: the log ends in its first page (reading all 64 MiB to find it
        // would be slow in a debug build).
        let mut head = [0u8; 4096];
        file.read_exact_at(&mut head, 0).unwrap();
        let end = end_of_records(&head);
        // Past the 2 MiB the pipe zeroes ahead of its writes, inside the 64 MiB grow step.
        let far = end + (8 << 20);
        assert!(file.metadata().unwrap().len() > far + 64, "preallocated");
        file.write_all_at(&[0xAB; 64], far).unwrap();
        if synced {
            file.sync_all().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.recovery().truncated_at, Some(end), "synced {synced}");
        assert_eq!(store.recovery().truncated_bytes, far + 64 - end);
        drop(store);
        let mut left = [1u8; 64];
        file.read_exact_at(&mut left, far).unwrap();
        assert_eq!(left, [0u8; 64], "the leftover bytes were zeroed");
    }
}

/// The length word is not under the checksum: a committed record whose length is damaged (so
/// its checksum fails over the wrong span) must not hide the records after it, which would
/// turn damage in the middle of the log into a silent cut of acknowledged appends.
#[test]
fn a_damaged_length_word_does_not_hide_the_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 5);
    std::fs::remove_file(dir.path().join("checkpoint.dat")).unwrap();
    let bytes = std::fs::read(dir.path().join("log.dat")).unwrap();
    let len = u32::from_le_bytes(bytes[..4].try_into().unwrap());
    // Still a length the store writes, now spanning the four records after it.
    write_at(dir.path(), 0, &(len + 4096).to_le_bytes());
    assert_refused_as_corrupt(dir.path(), 0, CorruptKind::BadChecksum);
}

/// A torn last record cut by the end of the file (its size growth was lost, pages inside the
/// old size kept) whose body carries a copy of an earlier record is a torn tail too.
#[test]
fn a_record_cut_by_the_end_of_the_file_carrying_a_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (before, inner) = three_events_then_one_carrying_a_record(dir.path());
    // The file ends inside the new record, after the copy it carries.
    let cut = before + (eventstore::record::HEADER_LEN + inner + 100) as u64;
    set_log_len(dir.path(), cut);
    assert_tail_cut(dir.path(), 3, before, Some(CorruptKind::Truncated));
}

/// A damaged length word whose span ends inside the last record: that record starts inside
/// the span and ends past it, and still counts (it is decoded whole, not cut at the span).
#[test]
fn a_damaged_length_ending_inside_the_last_record_does_not_hide_it() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 2); // stream created, event 0, event 1
    std::fs::remove_file(dir.path().join("checkpoint.dat")).unwrap();
    let offsets = record_offsets(dir.path());
    let [_, event0, event1, end] = offsets[..] else {
        panic!("three records expected, found {offsets:?}")
    };
    let bytes = std::fs::read(dir.path().join("log.dat")).unwrap();
    let len = u32::from_le_bytes(bytes[event0..event0 + 4].try_into().unwrap());
    let damaged = len + 16;
    let span_end = event0 + (damaged as usize).next_multiple_of(8);
    assert!(
        event1 < span_end && span_end < end,
        "the span ends inside event 1"
    );
    write_at(dir.path(), event0 as u64, &damaged.to_le_bytes());
    assert_refused_as_corrupt(dir.path(), event0 as u64, CorruptKind::BadChecksum);
}

/// The offsets where the log's records start, and where the last one ends.
fn record_offsets(dir: &Path) -> Vec<usize> {
    let bytes = std::fs::read(dir.join("log.dat")).unwrap();
    let mut offsets = vec![0];
    while let Ok(Some(record)) = eventstore::record::decode(&bytes[*offsets.last().unwrap()..]) {
        offsets.push(offsets.last().unwrap() + record.stored_len);
    }
    offsets
}

/// A record carried in a torn event's body whose position is far ahead of this log (a copy
/// of another store's event) cannot be this log's next record: a torn tail, not damage.
#[test]
fn a_carried_record_too_far_ahead_to_follow_is_not_taken_for_one() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 3);
    let before = log_end(dir.path());
    let bytes = std::fs::read(dir.path().join("log.dat")).unwrap();
    // Event 1 of this log, re-encoded as if it were event 1000 of another.
    let first = eventstore::record::decode(&bytes)
        .unwrap()
        .unwrap()
        .stored_len;
    let event = eventstore::record::decode(&bytes[first..])
        .unwrap()
        .unwrap();
    let mut header = event.header;
    header.position = 1000;
    let mut carried = Vec::new();
    eventstore::record::encode(&mut carried, &header, event.metadata, event.body);
    carried.extend_from_slice(&[0x5A; 400]);
    append_to_first_stream(dir.path(), Expected::Exact(2), &[Event::new("e", carried)]);
    let after = log_end(dir.path());
    write_at(dir.path(), after - 100, &[0u8; 100]);
    assert_tail_cut(dir.path(), 3, before, Some(CorruptKind::BadChecksum));
}

/// A log file cut inside the zero padding of its last record (its length not a multiple of
/// 8) still opens whole, and the next append keeps the records before it: the padding the
/// file lacks is zeros by the format.
#[test]
fn a_log_cut_inside_the_last_record_s_padding_keeps_its_records() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 1, 2);
    append_to_first_stream(
        dir.path(),
        Expected::Exact(1),
        &[Event::new("e", vec![9u8; 3])],
    );
    let offsets = record_offsets(dir.path());
    let [.., last, _] = offsets[..] else {
        panic!("records expected, found {offsets:?}")
    };
    let bytes = std::fs::read(dir.path().join("log.dat")).unwrap();
    let unpadded = last as u64
        + u64::from(u32::from_le_bytes(
            bytes[last..last + 4].try_into().unwrap(),
        ));
    assert_ne!(unpadded % 8, 0, "the last record is padded");
    set_log_len(dir.path(), unpadded);
    // The checkpoint of the close before the cut claims more log than the file holds: the
    // first open discards it; the checkpoints written after that hold.
    let payloads = |dir: &Path, checkpoint_holds: bool| -> Vec<Vec<u8>> {
        let store = Store::open_with(dir, small()).unwrap();
        assert_eq!(store.recovery().checkpoint_discarded, !checkpoint_holds);
        let read = stream_of(&store, 0u128).read_from(0).unwrap();
        store.close().unwrap();
        read.iter().map(|event| event.payload.to_vec()).collect()
    };
    // Readable at once (before any append grows the file again), and its checkpoint holds.
    assert_eq!(payloads(dir.path(), false)[2], [9u8; 3]);
    assert_eq!(payloads(dir.path(), true).len(), 3);
    append_to_first_stream(
        dir.path(),
        Expected::Exact(2),
        &[Event::new("e", vec![8u8; 5])],
    );
    let after = payloads(dir.path(), true);
    assert_eq!(after.len(), 4);
    assert_eq!(after[2], [9u8; 3]);
    assert_eq!(after[3], [8u8; 5]);
}

/// What a power loss can leave while open cuts an uncommitted tail: the 8 bytes at the cut are
/// zeroed and synced first, the rest may keep any mix of zeroed and old pages. From the zero
/// word on the log has ended: the next open cuts what is left, whatever the mix.
#[test]
fn a_cut_interrupted_after_its_first_word_opens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let before = two_events_then_an_append_without_its_commit(dir.path(), 3, 5000);
    // The cut's first word zeroed, and one later page (inside the second event) zeroed too.
    write_at(dir.path(), before, &[0u8; 8]);
    let page = (before + 8192).next_multiple_of(4096);
    write_at(dir.path(), page, &[0u8; 4096]);
    // A zero word is the end, not damage.
    drop(assert_tail_cut(dir.path(), 2, before, None));
    let reopened = check_store(dir.path(), 1, 2);
    assert_eq!(
        reopened.recovery().truncated_at,
        None,
        "the cut is whole now"
    );
}

/// Every mix a power loss can leave of a cut in progress: the word at the cut zeroed and
/// synced first, then any subset of the later pages zeroed. Each mix opens to the committed
/// events alone, and a second open finds nothing left to cut.
#[test]
fn every_mix_of_an_interrupted_cut_opens_to_the_committed_events() {
    const PAGE: u64 = 4096;
    let template = tempfile::tempdir().unwrap();
    let before = two_events_then_an_append_without_its_commit(template.path(), 4, 5000);
    std::fs::remove_file(template.path().join("checkpoint.dat")).unwrap();
    let tail_end = log_end(template.path());
    // The pages the cut zeroes after its first word (the first one only from that word on).
    let first_zeroed = before + 8;
    let pages: Vec<(u64, u64)> = (first_zeroed / PAGE..tail_end.div_ceil(PAGE))
        .map(|page| {
            let start = (page * PAGE).max(first_zeroed);
            (start, ((page + 1) * PAGE).min(tail_end))
        })
        .filter(|(start, end)| start < end)
        .collect();
    assert!(
        (3..=8).contains(&pages.len()),
        "a tail over several pages expected, found {pages:?}"
    );
    for mix in 0..1u32 << pages.len() {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(template.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        write_at(dir.path(), before, &[0u8; 8]);
        for (page, (start, end)) in pages.iter().enumerate() {
            if mix & (1 << page) != 0 {
                write_at(dir.path(), *start, &vec![0u8; (end - start) as usize]);
            }
        }
        let all_zeroed = mix == (1 << pages.len()) - 1;
        let store = check_store(dir.path(), 1, 2);
        assert_eq!(
            store.recovery().truncated_at,
            (!all_zeroed).then_some(before),
            "mix {mix:#b}: the rest of the tail is cut at the zero word"
        );
        assert_eq!(store.recovery().tail_damage, None, "mix {mix:#b}");
        drop(store);
        let reopened = check_store(dir.path(), 1, 2);
        assert_eq!(reopened.recovery().truncated_at, None, "mix {mix:#b}");
    }
}
