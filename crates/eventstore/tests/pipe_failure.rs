//! After the durability pipe fails (a failed fdatasync), appends fail with that error from then
//! on, and reads of what was durable keep working.

use std::io::{self, IoSlice};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use epoch_pipe::{FileStorage, Storage};
mod common;

use common::stream_of;
use eventstore::{Event, Expected, Failure, StorageHook, Store, StoreError, StoreOptions};

/// The real file, whose syncs fail once `broken` is set.
struct Failing {
    file: FileStorage,
    broken: Arc<AtomicBool>,
}

impl Storage for Failing {
    fn write_vectored_at(&self, offset: u64, buffers: &[IoSlice<'_>]) -> io::Result<usize> {
        self.file.write_vectored_at(offset, buffers)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc_eio()));
        }
        self.file.sync_data()
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.file.allocate(len)
    }
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(offset, buffer)
    }
    fn len(&self) -> io::Result<u64> {
        self.file.len()
    }
}

/// EIO, without a libc dependency in this test.
fn libc_eio() -> i32 {
    5
}

#[test]
fn after_a_failed_sync_appends_fail_for_good_and_reads_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let broken = Arc::new(AtomicBool::new(false));
    let hook_broken = Arc::clone(&broken);
    let options = StoreOptions {
        grow_step: 1 << 20,
        log_storage_hook: Some(StorageHook(Arc::new(move |file: FileStorage| {
            Box::new(Failing {
                file,
                broken: Arc::clone(&hook_broken),
            }) as Box<dyn Storage>
        }))),
        ..StoreOptions::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let stream = stream_of(&store, 1u128);
    stream
        .append(Expected::NoStream, &[Event::new("e", b"durable".to_vec())])
        .unwrap();

    broken.store(true, Ordering::SeqCst);
    let failed = stream.append(Expected::Exact(0), &[Event::new("e", b"lost".to_vec())]);
    assert!(
        matches!(failed, Err(StoreError::Failed(Failure::Pipe(_)))),
        "{failed:?}"
    );
    // A later successful sync would prove nothing: the store stays failed.
    broken.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        let again = stream.append(Expected::Any, &[Event::new("e", b"later".to_vec())]);
        assert!(
            matches!(again, Err(StoreError::Failed(Failure::Pipe(_)))),
            "{again:?}"
        );
    }
    let other = stream_of(&store, 2u128);
    assert!(matches!(
        other.append(Expected::NoStream, &[Event::new("e", Vec::new())]),
        Err(StoreError::Failed(Failure::Pipe(_)))
    ));

    // What was durable is still readable, and nothing else became visible.
    let events = stream.read_from(0).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, b"durable");
    assert_eq!(store.len(), 1);
    assert!(matches!(
        store.close(),
        Err(StoreError::Failed(Failure::Pipe(_)))
    ));

    // Reopened: the durable event is there; the failed append's outcome is indeterminate (its
    // bytes may have reached the disk before the sync failed), but if it is there it is whole.
    let reopened = Store::open(dir.path()).unwrap();
    let stream = stream_of(&reopened, 1u128);
    let events = stream.read_from(0).unwrap();
    assert_eq!(events[0].payload, b"durable");
    assert!(events.len() <= 2);
    if let Some(maybe) = events.get(1) {
        assert_eq!(maybe.payload, b"lost");
    }
    let version = stream.version().unwrap();
    stream
        .append(
            Expected::Exact(version),
            &[Event::new("e", b"after".to_vec())],
        )
        .unwrap();
}
