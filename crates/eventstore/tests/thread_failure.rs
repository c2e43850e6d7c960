//! When one of the store's own threads dies (a panic, standing for a bug in this crate), no
//! append waits forever: the ones it held and every later one fail with
//! `Failure::Panicked`, reads keep working, and the store opens again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

mod common;

use eventstore::{Event, Expected, Failure, Store, StoreError, StoreOptions, TestHook};

use common::stream_of;

/// A hook that panics the `nth` time it runs (counting from 1), and only then.
fn panic_on_call(nth: usize) -> TestHook {
    let calls = AtomicUsize::new(0);
    TestHook(Arc::new(move || {
        if calls.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            panic!("test: a store thread dies here");
        }
    }))
}

/// A log grown 1 MiB at a time: opening searches the preallocated file past the log's end
/// (as far as the staging budget, 64 MiB by default) for writes a crash left, slow in a
/// debug build when the file is that large.
fn small_log() -> StoreOptions {
    StoreOptions {
        grow_step: 1 << 20,
        ..StoreOptions::default()
    }
}

fn is_panicked(result: &eventstore::Result<impl std::fmt::Debug>, thread: &str) -> bool {
    matches!(
        result,
        Err(StoreError::Failed(Failure::Panicked { thread: t })) if *t == thread
    )
}

/// Opens a store with `options`, appends one event that must succeed, then `more` appends
/// from as many threads at once, and returns what each of those was answered.
fn first_ok_then(
    dir: &std::path::Path,
    options: StoreOptions,
    more: usize,
) -> (Store, Vec<eventstore::Result<eventstore::Receipt>>) {
    let store = Store::open_with(dir, options).unwrap();
    stream_of(&store, 1)
        .append(Expected::NoStream, &[Event::new("e", b"durable".to_vec())])
        .unwrap();
    let answers = thread::scope(|scope| {
        let appends: Vec<_> = (0..more)
            .map(|i| {
                let store = &store;
                scope.spawn(move || {
                    stream_of(store, 100 + i as u128)
                        .append(Expected::Any, &[Event::new("e", b"later".to_vec())])
                })
            })
            .collect();
        appends
            .into_iter()
            .map(|append| append.join().unwrap())
            .collect()
    });
    (store, answers)
}

/// After the failure: appends fail with it, the durable event is read back, close reports
/// the failure, and a reopened store has the event and takes appends.
fn failed_for_good(dir: &std::path::Path, store: Store, thread: &str) {
    let stream = stream_of(&store, 1);
    let again = stream.append(Expected::Any, &[Event::new("e", Vec::new())]);
    assert!(is_panicked(&again, thread), "{again:?}");
    assert_eq!(stream.read_from(0).unwrap()[0].payload, b"durable");
    let closed = store.close();
    assert!(is_panicked(&closed, thread), "{closed:?}");
    drop((stream, store));

    let reopened = Store::open(dir).unwrap();
    let stream = stream_of(&reopened, 1);
    assert_eq!(stream.read_from(0).unwrap()[0].payload, b"durable");
    let version = stream.version().unwrap();
    stream
        .append(Expected::Exact(version), &[Event::new("e", Vec::new())])
        .unwrap();
}

/// The store's `thread` panics (through `options`' hook) on its second batch: the appends
/// it held fail with that, and so does everything after.
fn second_batch_panics(options: StoreOptions, thread: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (store, answers) = first_ok_then(dir.path(), options, 4);
    for answer in &answers {
        // Written or not, maybe durable, never answered as such: indeterminate, like any
        // failure's.
        assert!(is_panicked(answer, thread), "{answer:?}");
    }
    failed_for_good(dir.path(), store, thread);
}

#[test]
fn a_writer_that_panics_fails_the_appends_it_held_and_every_later_one() {
    second_batch_panics(
        StoreOptions {
            before_write: Some(panic_on_call(2)),
            ..small_log()
        },
        "writer",
    );
}

#[test]
fn a_completer_that_panics_fails_the_appends_it_held_and_every_later_one() {
    second_batch_panics(
        StoreOptions {
            before_answer: Some(panic_on_call(2)),
            ..small_log()
        },
        "completer",
    );
}
