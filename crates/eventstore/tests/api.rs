//! The application-facing behaviour of a store.

use std::sync::{Arc, Barrier};

mod common;

use eventstore::{AppendItem, Event, Expected, NameKind, Store, StoreError, StoreOptions};

use common::stream_of;

fn event(kind: &str, payload: &[u8]) -> Event {
    Event::new(kind, payload.to_vec())
}

#[test]
fn versions_start_at_zero_and_positions_are_global_and_gap_free() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let accounts = store.domain("bank").unwrap().aggregate("account").unwrap();
    let a = accounts.instance(1u128);
    let b = accounts.instance(2u128);
    let first = a
        .append(
            Expected::NoStream,
            &[event("opened", b"a0"), event("deposited", b"a1")],
        )
        .unwrap();
    assert_eq!(
        (
            first.first_position,
            first.last_position,
            first.last_version()
        ),
        (0, 1, 1)
    );
    let second = b.append(Expected::Any, &[event("opened", b"b0")]).unwrap();
    assert_eq!((second.first_position, second.last_version()), (2, 0));
    a.append(
        Expected::Exact(1),
        &[event("withdrawn", b"a2").with_metadata(b"meta".to_vec())],
    )
    .unwrap();

    let events = a.read_from(0).unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        [0, 1, 3]
    );
    assert_eq!(events[2].metadata, b"meta");
    assert_eq!(events[2].event_type.to_string(), "withdrawn");
    assert_eq!(events[0].domain.to_string(), "bank");
    assert_eq!(events[0].aggregate_type.to_string(), "account");
    assert_eq!(events[0].instance, 1);
    assert!(events[0].timestamp > 0);
    assert_eq!(a.version(), Some(2));
    assert_eq!(accounts.instance(3u128).version(), None);
    assert_eq!(store.len(), 4);

    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    assert_eq!(store.read_all(2, 1).unwrap()[0].payload, b"b0");
    assert!(store.read_all(4, 10).unwrap().is_empty());
}

#[test]
fn reads_forward_backward_and_with_limits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = stream_of(&store, 7u128);
    let events: Vec<Event> = (0..10u8).map(|n| event("e", &[n])).collect();
    stream.append(Expected::NoStream, &events).unwrap();
    let payloads = |events: Vec<eventstore::RecordedEvent>| {
        events.into_iter().map(|e| e.payload[0]).collect::<Vec<_>>()
    };
    assert_eq!(payloads(stream.read(3, 4).unwrap()), [3, 4, 5, 6]);
    assert_eq!(payloads(stream.read(8, 100).unwrap()), [8, 9]);
    assert!(stream.read(10, 5).unwrap().is_empty());
    assert_eq!(payloads(stream.read_backward(None, 3).unwrap()), [9, 8, 7]);
    assert_eq!(
        payloads(stream.read_backward(Some(4), 10).unwrap()),
        [4, 3, 2, 1, 0]
    );
    assert_eq!(
        payloads(stream.read_backward(Some(100), 2).unwrap()),
        [9, 8]
    );
    assert!(stream.read(0, 0).unwrap().is_empty());
}

/// Payload of version `v` in the long streams below: unique, so it can be found in the log.
fn versioned(v: u64) -> Vec<u8> {
    format!("<v{v:08}>").into_bytes()
}

/// Appends versions `0..count` to stream `id` (in appends of up to 700 events, interleaved
/// with another stream so the stream's events are spread through the log).
fn long_stream(store: &Store, id: u128, count: u64) {
    let (stream, other) = (stream_of(store, id), stream_of(store, id + 1000));
    let mut next = 0;
    while next < count {
        let end = (next + 700).min(count);
        let events: Vec<Event> = (next..end).map(|v| Event::new("e", versioned(v))).collect();
        stream.append(Expected::Any, &events).unwrap();
        other
            .append(Expected::Any, &[event("x", b"between")])
            .unwrap();
        next = end;
    }
}

/// Forward and backward reads anywhere in a long stream return exactly the versions asked
/// for, live, after a reopen from the checkpoint, and after a reopen that replays the whole
/// log (the in-memory marks they start from are rebuilt either way).
#[test]
fn reads_anywhere_in_a_long_stream_return_exactly_the_versions_asked() {
    const COUNT: u64 = 5000;
    let dir = tempfile::tempdir().unwrap();
    let check = |store: &Store| {
        let stream = stream_of(store, 5u128);
        let versions = |events: Vec<eventstore::RecordedEvent>| {
            events
                .iter()
                .map(|e| {
                    assert_eq!(e.payload, versioned(e.version));
                    e.version
                })
                .collect::<Vec<u64>>()
        };
        for (from, limit) in [
            (0, 10),
            (1020, 10),
            (1023, 1),
            (1024, 1),
            (1024, 1024),
            (2047, 2),
            (3000, 2048),
            (4990, 100),
            (0, COUNT as usize + 5),
        ] {
            let want: Vec<u64> = (from..(from + limit as u64).min(COUNT)).collect();
            assert_eq!(
                versions(stream.read(from, limit).unwrap()),
                want,
                "read({from}, {limit})"
            );
        }
        assert!(stream.read(COUNT, 3).unwrap().is_empty());
        for (from, limit) in [(Some(1500), 10), (Some(1024), 2), (Some(3), 10), (None, 3)] {
            let start = from.unwrap_or(COUNT - 1);
            let want: Vec<u64> = (start.saturating_sub(limit as u64 - 1)..=start)
                .rev()
                .collect();
            assert_eq!(
                versions(stream.read_backward(from, limit).unwrap()),
                want,
                "read_backward({from:?}, {limit})"
            );
        }
    };
    let store = Store::open(dir.path()).unwrap();
    long_stream(&store, 5u128, COUNT);
    check(&store);
    store.close().unwrap();
    let reopened = Store::open(dir.path()).unwrap();
    check(&reopened);
    reopened.close().unwrap();
    std::fs::remove_file(dir.path().join("checkpoint.dat")).unwrap();
    let replayed = Store::open(dir.path()).unwrap();
    assert_eq!(replayed.recovery().replayed_events, replayed.len());
    check(&replayed);
}

/// A forward read walks from the first mark above what it returns, not from the stream's
/// newest event: damage to a much later event of the stream does not reach it (it did when
/// every read started at the newest event), while a read that covers the damage reports it.
#[test]
fn a_forward_read_does_not_walk_the_stream_s_later_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    long_stream(&store, 9u128, 4000);
    // Damage the payload of version 3500 under the open store (its map sees the change).
    let log = dir.path().join("log.dat");
    let bytes = std::fs::read(&log).unwrap();
    let needle = versioned(3500);
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle.as_slice())
        .expect("version 3500 in the log");
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, b"#", at as u64 + 1).unwrap();
    let stream = stream_of(&store, 9u128);
    let first: Vec<u64> = stream
        .read(0, 10)
        .unwrap()
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(first, (0..10).collect::<Vec<_>>());
    assert_eq!(stream.read(2000, 1000).unwrap().len(), 1000);
    assert!(
        matches!(stream.read(3400, 200), Err(StoreError::Corrupt { .. })),
        "a read across the damaged event reports it"
    );
    assert!(matches!(
        stream.read_from(0),
        Err(StoreError::Corrupt { .. })
    ));
    // Put it back before the store closes (its checkpoint and a reopen must find a sound log).
    std::os::unix::fs::FileExt::write_all_at(&file, &needle[1..2], at as u64 + 1).unwrap();
    assert_eq!(stream.read_from(0).unwrap().len(), 4000);
}

#[test]
fn every_expectation_kind_is_enforced_and_a_failure_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = stream_of(&store, 1u128);
    let wrong = |result: Result<eventstore::Receipt, StoreError>, actual: Option<u64>| match result
    {
        Err(StoreError::WrongExpectedVersion { actual: found, .. }) => assert_eq!(found, actual),
        other => panic!("expected a wrong-version error, got {other:?}"),
    };
    wrong(
        stream.append(Expected::StreamExists, &[event("e", b"")]),
        None,
    );
    wrong(stream.append(Expected::Exact(0), &[event("e", b"")]), None);
    stream
        .append(Expected::NoStream, &[event("e", b"")])
        .unwrap();
    wrong(
        stream.append(Expected::NoStream, &[event("e", b"")]),
        Some(0),
    );
    wrong(
        stream.append(Expected::Exact(5), &[event("e", b"")]),
        Some(0),
    );
    stream
        .append(Expected::StreamExists, &[event("e", b"")])
        .unwrap();
    stream.append(Expected::Any, &[event("e", b"")]).unwrap();
    stream
        .append(Expected::Exact(2), &[event("e", b"")])
        .unwrap();
    assert_eq!(stream.version(), Some(3));
    assert_eq!(store.len(), 4, "failed appends wrote nothing");
}

#[test]
fn of_two_racing_appends_with_one_expectation_exactly_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..20u128 {
        let stream = store
            .domain("race")
            .unwrap()
            .aggregate("t")
            .unwrap()
            .instance(round);
        let barrier = Arc::new(Barrier::new(4));
        let results: Vec<_> = (0..4)
            .map(|thread| {
                let (stream, barrier) = (stream.clone(), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    stream.append(Expected::NoStream, &[event("e", &[thread])])
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {results:?}");
        for result in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(
                result,
                Err(StoreError::WrongExpectedVersion {
                    actual: Some(0),
                    ..
                })
            ));
        }
        assert_eq!(stream.read_from(0).unwrap().len(), 1);
    }
}

#[test]
fn a_multi_stream_append_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bank = store.domain("bank").unwrap();
    let from = bank.aggregate("account").unwrap().instance(1u128);
    let to = bank.aggregate("account").unwrap().instance(2u128);
    let audit = store
        .domain("audit")
        .unwrap()
        .aggregate("log")
        .unwrap()
        .instance(0u128);
    from.append(Expected::NoStream, &[event("opened", b"")])
        .unwrap();

    let failed = store.append_multi(&[
        AppendItem {
            stream: &from,
            expected: Expected::Exact(0),
            events: &[event("debited", b"5")],
        },
        AppendItem {
            stream: &to,
            expected: Expected::StreamExists,
            events: &[event("credited", b"5")],
        },
    ]);
    assert!(matches!(
        failed,
        Err(StoreError::WrongExpectedVersion { actual: None, .. })
    ));
    assert_eq!(
        from.version(),
        Some(0),
        "nothing of the failed append was written"
    );
    assert_eq!(to.version(), None);

    let receipt = store
        .append_multi(&[
            AppendItem {
                stream: &from,
                expected: Expected::Exact(0),
                events: &[event("debited", b"5")],
            },
            AppendItem {
                stream: &to,
                expected: Expected::NoStream,
                events: &[event("credited", b"5")],
            },
            AppendItem {
                stream: &audit,
                expected: Expected::Any,
                events: &[event("moved", b"5"), event("noted", b"")],
            },
            AppendItem {
                stream: &from,
                expected: Expected::Exact(1),
                events: &[event("fee", b"1")],
            },
        ])
        .unwrap();
    assert_eq!(receipt.last_versions, [1, 0, 1, 2]);
    assert_eq!((receipt.first_position, receipt.last_position), (1, 5));
    assert_eq!(store.read_all(0, 100).unwrap().len(), 6);
}

#[test]
fn bad_input_is_a_typed_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        store.domain(""),
        Err(StoreError::InvalidName {
            kind: NameKind::Domain,
            ..
        })
    ));
    assert!(matches!(
        store.domain("much-too-long"),
        Err(StoreError::InvalidName {
            kind: NameKind::Domain,
            ..
        })
    ));
    assert!(matches!(
        store.domain("Bank"),
        Err(StoreError::InvalidName { .. })
    ));
    let domain = store.domain("d").unwrap();
    assert!(matches!(
        domain.aggregate("a b"),
        Err(StoreError::InvalidName {
            kind: NameKind::AggregateType,
            ..
        })
    ));
    let stream = domain.aggregate("t").unwrap().instance(1u128);
    assert!(matches!(
        stream.append(Expected::Any, &[]),
        Err(StoreError::EmptyAppend)
    ));
    assert!(matches!(
        stream.append(Expected::Any, &[event("has space", b"")]),
        Err(StoreError::InvalidName {
            kind: NameKind::EventType,
            ..
        })
    ));
    let big = vec![0u8; (1 << 20) + 1];
    assert!(matches!(
        stream.append(Expected::Any, &[Event::new("e", big)]),
        Err(StoreError::EventTooLarge { max: 1048576, .. })
    ));
    assert!(matches!(
        store.append_multi(&[]),
        Err(StoreError::EmptyAppend)
    ));
    // A 64 KiB payload is fine.
    stream
        .append(Expected::Any, &[Event::new("e", vec![1u8; 64 << 10])])
        .unwrap();
    assert_eq!(store.len(), 1);
    let bad = StoreOptions {
        max_event_size: 10,
        ..StoreOptions::default()
    };
    assert!(matches!(
        Store::open_with(tempfile::tempdir().unwrap().path(), bad),
        Err(StoreError::InvalidOption { .. })
    ));
    // The pipe's own options are checked before anything is opened, under their own names.
    for (bad, name) in [
        (
            StoreOptions {
                syncs_in_flight: 0,
                ..StoreOptions::default()
            },
            "syncs_in_flight",
        ),
        (
            StoreOptions {
                wait_spin: std::time::Duration::from_secs(1),
                ..StoreOptions::default()
            },
            "wait_spin (us)",
        ),
    ] {
        let empty = tempfile::tempdir().unwrap();
        match Store::open_with(empty.path(), bad) {
            Err(StoreError::InvalidOption { option, .. }) => assert_eq!(option, name),
            other => panic!("expected InvalidOption, got {other:?}"),
        }
        assert_eq!(std::fs::read_dir(empty.path()).unwrap().count(), 0);
    }
    // Spinning off works too.
    let quiet = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        quiet.path(),
        StoreOptions {
            wait_spin: std::time::Duration::ZERO,
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let stream = store
        .domain("d")
        .unwrap()
        .aggregate("a")
        .unwrap()
        .instance(1u128);
    stream
        .append(Expected::NoStream, &[Event::new("e", vec![1])])
        .unwrap();
    assert_eq!(store.len(), 1);
}

#[test]
fn hostile_names_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    for name in ["..", "a/b", "\\", "/", "../../x"] {
        let stream = store
            .domain(name)
            .unwrap()
            .aggregate(name)
            .unwrap()
            .instance(1u128);
        stream.append(Expected::Any, &[event("e", b"x")]).unwrap();
        assert_eq!(stream.read_from(0).unwrap()[0].domain.to_string(), name);
    }
    let mut entries: Vec<String> = std::fs::read_dir(dir.path().join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    assert_eq!(entries, ["LOCK", "STORE", "global.idx", "log.dat"]);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing escaped the store dir"
    );
    use std::os::unix::fs::PermissionsExt;
    for file in ["LOCK", "STORE", "global.idx", "log.dat"] {
        let mode = std::fs::metadata(dir.path().join("store").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{file} is {mode:o}");
    }
}

/// A first open that died between writing its marker and renaming it into place leaves
/// `STORE.tmp` (and the lock file) behind: the directory is still a new store, not a foreign one.
#[test]
fn a_first_open_interrupted_before_its_marker_was_in_place_opens_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("LOCK"), b"").unwrap();
    std::fs::write(dir.path().join("STORE.tmp"), b"EVST").unwrap();
    let store = Store::open(dir.path()).unwrap();
    stream_of(&store, 1u128)
        .append(Expected::NoStream, &[event("e", b"x")])
        .unwrap();
    store.close().unwrap();
    assert!(!dir.path().join("STORE.tmp").exists(), "renamed into place");
    assert_eq!(Store::open(dir.path()).unwrap().len(), 1);

    // A file of that name that is not a partly written marker keeps a directory foreign,
    // and a link of that name is never followed (its target is left alone).
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("STORE.tmp"), b"hello world!").unwrap();
    assert!(matches!(
        Store::open(foreign.path()),
        Err(StoreError::NotAStore { .. })
    ));
    let linked = tempfile::tempdir().unwrap();
    let target = linked.path().join("precious.txt");
    std::fs::write(&target, b"keep me").unwrap();
    let store_dir = linked.path().join("store");
    std::fs::create_dir(&store_dir).unwrap();
    std::os::unix::fs::symlink(&target, store_dir.join("STORE.tmp")).unwrap();
    assert!(matches!(
        Store::open(&store_dir),
        Err(StoreError::NotAStore { .. })
    ));
    assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
}

#[test]
fn a_second_writer_is_refused_and_foreign_directories_are_not_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    drop(store);
    Store::open(dir.path()).unwrap();

    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("notes.txt"), b"hello").unwrap();
    assert!(matches!(
        Store::open(foreign.path()),
        Err(StoreError::NotAStore { .. })
    ));
    std::fs::write(foreign.path().join("STORE"), b"something else").unwrap();
    assert!(matches!(
        Store::open(foreign.path()),
        Err(StoreError::NotAStore { .. })
    ));

    let future = tempfile::tempdir().unwrap();
    let mut marker = b"EVSTORE\0".to_vec();
    marker.extend_from_slice(&99u32.to_le_bytes());
    std::fs::write(future.path().join("STORE"), marker).unwrap();
    assert!(matches!(
        Store::open(future.path()),
        Err(StoreError::UnsupportedFormat { found: 99, .. })
    ));
    let file = future.path().join("STORE");
    assert!(matches!(
        Store::open(&file),
        Err(StoreError::NotAStore { .. })
    ));
}

#[test]
fn reopening_continues_versions_and_positions() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let stream = stream_of(&store, 9u128);
        stream
            .append(Expected::NoStream, &[event("a", b"1"), event("b", b"2")])
            .unwrap();
        store.close().unwrap();
        assert!(matches!(
            stream.append(Expected::Any, &[event("c", b"")]),
            Err(StoreError::Closed)
        ));
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery().events, 2);
    let stream = stream_of(&store, 9u128);
    assert_eq!(stream.version(), Some(1));
    let receipt = stream
        .append(Expected::Exact(1), &[event("c", b"3")])
        .unwrap();
    assert_eq!((receipt.first_position, receipt.last_version()), (2, 2));
    assert_eq!(stream.read_from(0).unwrap().len(), 3);
}

/// `close` writes every append it accepted: more appends than one read of the intake takes
/// are queued when it closes (the writer used to stop at the closed ring and drop the rest).
#[test]
fn close_writes_every_append_it_accepted() {
    const APPENDS: u32 = 3000;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let stream = stream_of(&store, 1u128);
        let pending: Vec<_> = (0..APPENDS)
            .map(|n| {
                stream
                    .append_nowait(Expected::Any, &[event("e", &n.to_le_bytes())])
                    .unwrap()
            })
            .collect();
        store.close().unwrap();
        for pending in pending {
            pending.wait().unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        stream_of(&store, 1u128).version(),
        Some(u64::from(APPENDS) - 1)
    );
}

#[test]
fn appends_without_waiting_and_subscriptions_see_only_durable_events_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = stream_of(&store, 1u128);
    stream
        .append(Expected::NoStream, &[event("e", b"0")])
        .unwrap();
    let mut subscription = store.subscribe(0);
    let pending: Vec<_> = (1..50u8)
        .map(|n| {
            stream
                .append_nowait(Expected::Any, &[event("e", &[n])])
                .unwrap()
        })
        .collect();
    for pending in pending {
        pending.wait().unwrap();
    }
    let consumer = std::thread::spawn(move || {
        (0..100u64)
            .map(|_| subscription.next_event().unwrap().position)
            .collect::<Vec<_>>()
    });
    for n in 50..100u8 {
        stream.append(Expected::Any, &[event("e", &[n])]).unwrap();
    }
    assert_eq!(consumer.join().unwrap(), (0..100).collect::<Vec<_>>());
    let mut late = store.subscribe(98);
    assert_eq!(late.try_next().unwrap().unwrap().position, 98);
    assert_eq!(
        late.next_timeout(std::time::Duration::from_millis(1))
            .unwrap()
            .unwrap()
            .position,
        99
    );
    assert_eq!(late.try_next().unwrap(), None);
}

#[test]
fn many_threads_append_in_parallel() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: Vec<_> = (0..8u128)
        .map(|thread| {
            let stream = stream_of(&store, thread);
            std::thread::spawn(move || {
                for n in 0..50u64 {
                    let expected = if n == 0 {
                        Expected::NoStream
                    } else {
                        Expected::Exact(n - 1)
                    };
                    stream
                        .append(expected, &[event("e", &n.to_le_bytes())])
                        .unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(store.len(), 400);
    let all = store.read_all(0, usize::MAX).unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..400).collect::<Vec<_>>()
    );
    for thread in 0..8u128 {
        let stream = stream_of(&store, thread);
        let versions: Vec<u64> = stream
            .read_from(0)
            .unwrap()
            .iter()
            .map(|e| e.version)
            .collect();
        assert_eq!(versions, (0..50).collect::<Vec<_>>());
    }
}

#[test]
fn scans_borrow_events_in_order_without_copying() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let aggregate = store.domain("d").unwrap().aggregate("t").unwrap();
    for n in 0..30u64 {
        let stream = aggregate.instance(u128::from(n % 3));
        stream
            .append(Expected::Any, &[event("e", &n.to_le_bytes())])
            .unwrap();
    }
    let mut positions = Vec::new();
    let next = store
        .scan_all(5, 10, |event| {
            assert_eq!(event.payload, event.position.to_le_bytes());
            assert_eq!(event.stream.instance, u128::from(event.position % 3));
            positions.push(event.position);
        })
        .unwrap();
    assert_eq!(positions, (5..15).collect::<Vec<_>>());
    assert_eq!(next, 15);
    let mut versions = Vec::new();
    let visited = aggregate
        .instance(1u128)
        .scan(2, 3, |event| {
            assert_eq!(event.payload, (event.version * 3 + 1).to_le_bytes());
            versions.push(event.version);
        })
        .unwrap();
    assert_eq!((visited, versions), (3, vec![2, 3, 4]));
    assert_eq!(
        store
            .scan_all(30, 10, |_| panic!("nothing past the end"))
            .unwrap(),
        30
    );
}

#[test]
fn large_appends_and_batches_go_through_and_oversized_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let aggregate = store.domain("d").unwrap().aggregate("t").unwrap();
    // 5 MiB in one append: more than 1024 pooled chunks, written in several pwritev calls.
    let big: Vec<Event> = (0..5u8)
        .map(|n| Event::new("e", vec![n; 1 << 20]))
        .collect();
    aggregate
        .instance(0u128)
        .append(Expected::NoStream, &big)
        .unwrap();
    // Many 1 MiB appends at once: batches are cut by size, none exceeds the pipe's limit.
    let pending: Vec<_> = (1..=24u128)
        .map(|n| {
            aggregate
                .instance(n)
                .append_nowait(
                    Expected::NoStream,
                    &[Event::new("e", vec![n as u8; 1 << 20])],
                )
                .unwrap()
        })
        .collect();
    for append in pending {
        append.wait().unwrap();
    }
    let read = aggregate.instance(0u128).read_from(0).unwrap();
    assert_eq!(read.len(), 5);
    assert!(
        read.iter()
            .enumerate()
            .all(|(n, e)| e.payload == vec![n as u8; 1 << 20])
    );
    assert_eq!(
        aggregate.instance(24u128).read_from(0).unwrap()[0].payload,
        vec![24u8; 1 << 20]
    );
    let too_much: Vec<Event> = (0..40)
        .map(|_| Event::new("e", vec![0u8; 1 << 20]))
        .collect();
    assert!(matches!(
        aggregate.instance(99u128).append(Expected::Any, &too_much),
        Err(StoreError::AppendTooLarge { max, .. }) if max == 32 << 20
    ));
    assert_eq!(store.len(), 29, "the refused append wrote nothing");
}

#[test]
fn concurrent_closes_both_finish_and_release_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = stream_of(&store, 1u128);
    let pending: Vec<_> = (0..100u8)
        .map(|n| {
            stream
                .append_nowait(Expected::Any, &[event("e", &[n])])
                .unwrap()
        })
        .collect();
    let closers: Vec<_> = (0..2)
        .map(|_| {
            let s = store.clone();
            std::thread::spawn(move || s.close())
        })
        .collect();
    for closer in closers {
        closer.join().unwrap().unwrap();
    }
    // Everything submitted before close was written.
    for append in pending {
        append.wait().unwrap();
    }
    let reopened = Store::open(dir.path()).unwrap();
    assert_eq!(reopened.len(), 100);
}

#[test]
fn a_slow_subscriber_is_evicted_continues_from_disk_and_rejoins_without_loss_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        live_capacity: 4,
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let stream = stream_of(&store, 7u128);
    stream
        .append(Expected::NoStream, &[event("e", b"0")])
        .unwrap();
    let mut subscription = store.subscribe(0);
    assert_eq!(subscription.next_event().unwrap().position, 0);
    // Caught up: the next wait joins the live ring.
    assert_eq!(
        subscription
            .next_timeout(std::time::Duration::ZERO)
            .unwrap(),
        None
    );
    assert!(subscription.is_live());
    // 40 durable batches (each append waits, so each is its own commit) while the subscriber
    // does not read: the completer must evict it instead of waiting (or this test hangs).
    for n in 1..=40u8 {
        stream
            .append(Expected::Exact(u64::from(n) - 1), &[event("e", &[n])])
            .unwrap();
    }
    let positions: Vec<u64> = (0..40)
        .map(|_| subscription.next_event().unwrap().position)
        .collect();
    assert_eq!(
        positions,
        (1..=40).collect::<Vec<_>>(),
        "no loss, no repeat"
    );
    assert!(subscription.times_evicted() >= 1, "it fell a ring behind");
    // Back on the live ring: a new append arrives through it.
    assert_eq!(subscription.try_next().unwrap(), None);
    assert!(subscription.is_live());
    let evictions = subscription.times_evicted();
    let reader = std::thread::spawn(move || {
        let event = subscription.next_event().unwrap();
        (event.position, event.payload, subscription.times_evicted())
    });
    stream
        .append(Expected::Exact(40), &[event("e", b"live")])
        .unwrap();
    let (position, payload, evicted_after) = reader.join().unwrap();
    assert_eq!((position, payload.as_slice()), (41, &b"live"[..]));
    assert_eq!(evicted_after, evictions);
}

/// Events made durable just before a subscriber joins the live ring have had their notices
/// published before the join too: the subscriber reads them from disk, all of them, however
/// many reads of [`CATCH_UP_EVENTS`] that takes, and does not wait for a later append.
#[test]
fn a_subscriber_joining_live_reads_everything_made_durable_just_before_it_joined() {
    const APPENDS: u64 = 5;
    const EVENTS_EACH: u64 = 600;
    let dir = tempfile::tempdir().unwrap();
    let store_for_hook = Arc::new(std::sync::OnceLock::<Store>::new());
    let once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hook_store, hook_once) = (Arc::clone(&store_for_hook), Arc::clone(&once));
    let options = StoreOptions {
        before_live_join: Some(eventstore::TestHook(Arc::new(move || {
            if hook_once.swap(true, std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let store = hook_store.get().expect("the store is open");
            let stream = stream_of(store, 3u128);
            for _ in 0..APPENDS {
                let events: Vec<Event> = (0..EVENTS_EACH).map(|_| event("e", b"x")).collect();
                stream.append(Expected::Any, &events).unwrap();
            }
        }))),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    assert!(store_for_hook.set(store.clone()).is_ok());
    let mut subscription = store.subscribe(0);
    // Nothing yet: the first call joins the live ring, and the hook appends right before.
    let mut positions = Vec::new();
    while let Some(event) = subscription
        .next_timeout(std::time::Duration::from_secs(2))
        .unwrap()
    {
        positions.push(event.position);
        if positions.len() as u64 == APPENDS * EVENTS_EACH {
            break;
        }
    }
    assert!(
        once.load(std::sync::atomic::Ordering::Relaxed),
        "the hook ran"
    );
    assert_eq!(
        positions.len() as u64,
        APPENDS * EVENTS_EACH,
        "every event made durable before the join, without another append"
    );
    assert!(
        positions
            .iter()
            .zip(0..)
            .all(|(&found, want)| found == want),
        "in order, no repeat"
    );
    assert_eq!(subscription.try_next().unwrap(), None);
    assert!(
        subscription.is_live(),
        "following the ring once the disk has nothing new"
    );
    store.close().unwrap();
}

#[test]
fn closing_the_store_wakes_a_live_subscriber_after_it_has_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = stream_of(&store, 1u128);
    let mut subscription = store.subscribe(0);
    assert_eq!(subscription.try_next().unwrap(), None);
    let reader = std::thread::spawn(move || {
        let mut positions = Vec::new();
        loop {
            match subscription.next_event() {
                Ok(event) => positions.push(event.position),
                Err(StoreError::Closed) => return positions,
                Err(other) => panic!("unexpected {other}"),
            }
        }
    });
    for n in 0..20u8 {
        stream.append(Expected::Any, &[event("e", &[n])]).unwrap();
    }
    store.close().unwrap();
    assert_eq!(reader.join().unwrap(), (0..20).collect::<Vec<_>>());
}

#[test]
fn ring_capacities_out_of_range_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    for options in [
        StoreOptions {
            intake_capacity: 0,
            ..StoreOptions::default()
        },
        StoreOptions {
            live_capacity: (1 << 20) + 1,
            ..StoreOptions::default()
        },
    ] {
        assert!(matches!(
            Store::open_with(dir.path(), options),
            Err(StoreError::InvalidOption { .. })
        ));
    }
    // Not a power of two: rounded up, not refused.
    let options = StoreOptions {
        intake_capacity: 1000,
        live_capacity: 3,
        ..StoreOptions::default()
    };
    Store::open_with(dir.path(), options)
        .unwrap()
        .close()
        .unwrap();
}
