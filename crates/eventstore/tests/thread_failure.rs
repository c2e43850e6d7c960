//! When one of the store's own threads dies (a panic, standing for a bug in this crate), no
//! append waits forever: the ones it held and every later one fail with
//! `Failure::Panicked`, reads keep working, and the store opens again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

mod common;

use eventstore::{
    Event, Expected, Failure, PendingAppend, Store, StoreError, StoreOptions, TestHook,
};

use common::stream_of;

/// Appends made while the dying thread is held inside its hook: they wait in the intake
/// ring, or in the channel to the completer, when it dies.
const HELD_BACK: u128 = 3;

/// The test's side of a hook that stops the thread running it on its second call: the
/// hook says it `entered`, waits for the test to `release` it (or to be gone), then panics.
struct Gate {
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Gate {
    fn new() -> (Gate, TestHook) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let hook_side = Mutex::new((entered_tx, release_rx));
        let calls = AtomicUsize::new(0);
        let hook = TestHook(Arc::new(move || {
            if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                let (entered, release) = &*hook_side.lock().unwrap();
                let _ = entered.send(());
                // A test that failed meanwhile dropped its sender: no wait for it.
                let _ = release.recv();
                panic!("test: a store thread dies here");
            }
        }));
        (Gate { entered, release }, hook)
    }
}

fn is_panicked(result: &eventstore::Result<impl std::fmt::Debug>, thread: &str) -> bool {
    matches!(
        result,
        Err(StoreError::Failed(Failure::Panicked { thread: t })) if *t == thread
    )
}

fn later_append(store: &Store, id: u128) -> PendingAppend {
    stream_of(store, id)
        .append_nowait(Expected::Any, &[Event::new("e", b"later".to_vec())])
        .unwrap()
}

/// The store's `thread` dies on its second batch, through the hook `hook_in` puts into the
/// options: the append in that batch, those submitted while it was stopped in the hook, and
/// every later one fail with `Panicked` naming it; reads keep working; close reports the
/// failure; a reopened store has the durable event and takes appends. Bounded by a minute.
fn second_batch_dies(hook_in: fn(TestHook) -> StoreOptions, thread: &'static str) {
    within_a_minute(move || second_batch_dies_now(hook_in, thread));
}

fn second_batch_dies_now(hook_in: fn(TestHook) -> StoreOptions, thread: &str) {
    let (gate, hook) = Gate::new();
    let options = hook_in(hook);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    let stream = stream_of(&store, 1);
    stream
        .append(Expected::NoStream, &[Event::new("e", b"durable".to_vec())])
        .unwrap();
    let mut pending = vec![later_append(&store, 100)];
    gate.entered
        .recv_timeout(Duration::from_secs(30))
        .expect("the thread reaches its hook on the second batch");
    pending.extend((1..=HELD_BACK).map(|i| later_append(&store, 100 + i)));
    gate.release.send(()).unwrap();
    for append in pending {
        // Written or not, maybe durable, never answered as such: indeterminate, like any
        // failure's.
        let answer = append.wait();
        assert!(is_panicked(&answer, thread), "{answer:?}");
    }
    let again = stream.append(Expected::Any, &[Event::new("e", Vec::new())]);
    assert!(is_panicked(&again, thread), "{again:?}");
    assert_eq!(stream.read_from(0).unwrap()[0].payload, b"durable");
    let closed = store.close();
    assert!(is_panicked(&closed, thread), "{closed:?}");
    drop((stream, store));

    let reopened = Store::open(dir.path()).unwrap();
    let stream = stream_of(&reopened, 1);
    assert_eq!(stream.read_from(0).unwrap()[0].payload, b"durable");
    let version = stream.version().unwrap();
    stream
        .append(Expected::Exact(version), &[Event::new("e", Vec::new())])
        .unwrap();
}

/// Runs `test` on a thread of its own and fails if it takes longer than a minute: what is
/// tested here is that nothing waits forever, and a regression should fail, not hang.
fn within_a_minute(test: impl FnOnce() + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    let runner = thread::spawn(move || {
        test();
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => runner.join().unwrap(),
        // The test panicked: show its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(runner.join().unwrap_err())
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("an append still waits after a minute"),
    }
}

/// Stopped before writing its second batch, the writer holds that batch's append; the ones
/// submitted meanwhile wait in the intake ring.
#[test]
fn a_writer_that_panics_fails_the_appends_it_held_and_every_later_one() {
    second_batch_dies(
        |hook| StoreOptions {
            before_write: Some(hook),
            ..StoreOptions::default()
        },
        "writer",
    );
}

/// Stopped before answering the second batch, the completer holds that batch; the appends
/// submitted meanwhile are written and wait in its channel, or are still with the writer,
/// when it dies.
#[test]
fn a_completer_that_panics_fails_the_appends_it_held_and_every_later_one() {
    second_batch_dies(
        |hook| StoreOptions {
            before_answer: Some(hook),
            ..StoreOptions::default()
        },
        "completer",
    );
}
