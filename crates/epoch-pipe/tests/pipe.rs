#![cfg(not(epoch_pipe_loom))]
//! Behaviour of the pipe on the simulated disk and on real files.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use epoch_pipe::{
    CrashMode, Durable, Epoch, Fault, FileOptions, FileStorage, Operation, Pipe, PipeConfig,
    PipeError, SimDisk, Storage,
};

fn config() -> PipeConfig {
    PipeConfig {
        chunk_size: 512,
        grow_step: 4096,
        ..PipeConfig::default()
    }
}

fn read(disk: &SimDisk, offset: usize, len: usize) -> Vec<u8> {
    disk.durable_contents()
        .get(offset..offset + len)
        .map(<[u8]>::to_vec)
        .unwrap_or_default()
}

#[test]
fn a_write_is_durable_when_its_epoch_is() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    let first = pipe.write(vec![1u8; 100], 0).unwrap();
    let second = pipe.write(vec![2u8; 100], 3).unwrap();
    assert!(second > first);
    pipe.wait_durable(second).unwrap();
    assert!(pipe.durable_epoch() >= second);
    assert_eq!(read(&disk, 0, 100), vec![1u8; 100]);
    assert_eq!(read(&disk, 3 * 512, 100), vec![2u8; 100]);
    // The file was grown in grow_step units.
    assert_eq!(disk.durable_contents().len() % 4096, 0);
}

#[test]
fn writes_to_one_index_land_in_submission_order() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    let mut last = Epoch(0);
    for value in 0..200u8 {
        last = pipe.write(vec![value; 64], 7).unwrap();
    }
    pipe.wait_durable(last).unwrap();
    assert_eq!(read(&disk, 7 * 512, 64), vec![199u8; 64]);
}

#[test]
fn a_transaction_shares_one_epoch_and_bad_parts_are_refused_up_front() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    let mut tx = pipe.transaction();
    tx.write(vec![5u8; 10], 1).unwrap();
    assert_eq!(tx.write(Vec::new(), 2), Err(PipeError::Empty));
    tx.write(vec![6u8; 10], 2).unwrap();
    let epoch = tx.commit().unwrap();
    assert_eq!(pipe.newest_epoch(), epoch);
    pipe.wait_durable(epoch).unwrap();
    assert_eq!(read(&disk, 512, 10), vec![5u8; 10]);
    assert_eq!(read(&disk, 1024, 10), vec![6u8; 10]);
    assert_eq!(pipe.transaction().commit(), Err(PipeError::Empty));
}

#[test]
fn bad_input_is_a_typed_error() {
    let pipe = Pipe::new(
        SimDisk::new(),
        PipeConfig {
            max_write: 1000,
            ..config()
        },
    )
    .unwrap();
    assert_eq!(pipe.write(Vec::new(), 0), Err(PipeError::Empty));
    assert_eq!(
        pipe.write(vec![0; 1001], 0),
        Err(PipeError::TooLarge {
            len: 1001,
            max: 1000
        })
    );
    assert!(matches!(
        pipe.write(vec![0; 10], u64::MAX / 2),
        Err(PipeError::TooLarge { .. })
    ));
    assert_eq!(
        pipe.wait_durable(Epoch(5)),
        Err(PipeError::UnknownEpoch {
            epoch: 5,
            newest: 0
        })
    );
    for bad in [
        PipeConfig {
            chunk_size: 1000,
            ..config()
        },
        PipeConfig {
            chunk_size: 0,
            ..config()
        },
        PipeConfig {
            syncs_in_flight: 0,
            ..config()
        },
        PipeConfig {
            grow_step: 0,
            ..config()
        },
        PipeConfig {
            zero_ahead: (1 << 30) + 1,
            ..config()
        },
        PipeConfig {
            wait_spin: std::time::Duration::from_millis(11),
            ..config()
        },
    ] {
        assert!(Pipe::new(SimDisk::new(), bad).is_err());
    }
}

#[test]
fn close_writes_what_was_staged_and_refuses_more() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    for index in 0..50 {
        pipe.write(vec![index as u8; 32], index).unwrap();
    }
    pipe.close().unwrap();
    for index in 0..50u64 {
        assert_eq!(read(&disk, index as usize * 512, 32), vec![index as u8; 32]);
    }
    assert_eq!(pipe.write(vec![1], 0), Err(PipeError::Closed));
}

#[test]
fn zeros_are_kept_ahead_of_the_highest_write_and_never_cover_data() {
    let disk = SimDisk::new();
    let config = PipeConfig {
        zero_ahead: 8 * 4096,
        ..config()
    };
    let pipe = Pipe::new(disk.clone(), config).unwrap();
    // A write, then the zeros past it: up to zero_ahead past its end, in whole pages.
    pipe.wait_durable(pipe.write(vec![1u8; 100], 0).unwrap())
        .unwrap();
    let image = disk.durable_contents();
    assert_eq!(image.len(), 9 * 4096);
    assert_eq!(&image[..100], &[1u8; 100][..]);
    assert!(image[100..].iter().all(|&byte| byte == 0));
    // Writes into the zeroed space land over the zeros; no new zeros until less than half of
    // zero_ahead is left past the highest write.
    let (writes_before, _) = disk.counts();
    pipe.wait_durable(pipe.write(vec![2u8; 512], 20).unwrap())
        .unwrap();
    assert_eq!(disk.counts().0, writes_before + 1, "no zeros were due yet");
    assert_eq!(read(&disk, 20 * 512, 512), vec![2u8; 512]);
    // Past half: zeros again, from the next page after the highest write.
    pipe.wait_durable(pipe.write(vec![3u8; 512], 40).unwrap())
        .unwrap();
    let image = disk.durable_contents();
    assert_eq!(
        image.len(),
        (41 * 512 + 8 * 4096usize).next_multiple_of(4096)
    );
    assert_eq!(&image[..100], &[1u8; 100][..]);
    assert_eq!(&image[20 * 512..21 * 512], &[2u8; 512][..]);
    assert_eq!(&image[40 * 512..41 * 512], &[3u8; 512][..]);
    let data = [0..100, 20 * 512..21 * 512, 40 * 512..41 * 512];
    for (at, &byte) in image.iter().enumerate() {
        assert!(
            byte == 0 || data.iter().any(|range| range.contains(&at)),
            "byte {at}"
        );
    }
}

#[test]
fn zeros_never_go_below_the_length_the_pipe_found() {
    // Bytes written before this pipe started (perhaps past what it will write) stay.
    let disk = SimDisk::from_image(vec![9u8; 3 * 4096]);
    let config = PipeConfig {
        zero_ahead: 4 * 4096,
        ..config()
    };
    let pipe = Pipe::new(disk.clone(), config).unwrap();
    pipe.wait_durable(pipe.write(vec![1u8; 512], 0).unwrap())
        .unwrap();
    let image = disk.durable_contents();
    assert_eq!(&image[..512], &[1u8; 512][..]);
    assert!(image[512..3 * 4096].iter().all(|&byte| byte == 9));
    assert_eq!(image.len(), 7 * 4096);
    assert!(image[3 * 4096..].iter().all(|&byte| byte == 0));
    // With `zero_from` the owner says where its data ends: zeros start at the next page.
    let disk = SimDisk::from_image(vec![9u8; 3 * 4096]);
    let from_owner = PipeConfig {
        zero_from: Some(700),
        ..config
    };
    let pipe = Pipe::new(disk.clone(), from_owner).unwrap();
    pipe.wait_durable(pipe.write(vec![1u8; 512], 0).unwrap())
        .unwrap();
    let image = disk.durable_contents();
    assert_eq!(&image[..512], &[1u8; 512][..]);
    assert!(image[512..4096].iter().all(|&byte| byte == 9));
    assert_eq!(image.len(), (700 + 4 * 4096usize).next_multiple_of(4096));
    assert!(image[4096..].iter().all(|&byte| byte == 0));
    // Turned off, nothing is written past the data.
    let disk = SimDisk::new();
    let off = PipeConfig {
        zero_ahead: 0,
        ..config
    };
    let pipe = Pipe::new(disk.clone(), off).unwrap();
    pipe.wait_durable(pipe.write(vec![1u8; 512], 0).unwrap())
        .unwrap();
    assert_eq!(disk.counts().0, 1);
}

fn assert_fail_stop(fault: Fault, expect: impl Fn(&PipeError) -> bool) {
    let disk = SimDisk::new();
    let pipe = Pipe::new(
        disk.clone(),
        PipeConfig {
            syncs_in_flight: 1,
            ..config()
        },
    )
    .unwrap();
    let good = pipe.write(vec![1u8; 8], 0).unwrap();
    pipe.wait_durable(good).unwrap();
    disk.inject(fault, 0);
    let doomed = pipe.write(vec![2u8; 8], 1).unwrap();
    let error = pipe.wait_durable(doomed).unwrap_err();
    assert!(expect(&error), "{fault:?} gave {error:?}");
    let frozen = pipe.durable_epoch();
    assert!(frozen < doomed);
    // Sticky: later writes fail, nothing later is ever acknowledged.
    assert_eq!(pipe.write(vec![3u8; 8], 2), Err(error.clone()));
    assert_eq!(pipe.wait_durable(doomed), Err(error.clone()));
    assert_eq!(pipe.failure(), Some(error.clone()));
    // A later successful sync (the disk works again) changes nothing.
    disk.sync_data().unwrap();
    assert_eq!(pipe.durable_epoch(), frozen);
    // What was durable stays readable.
    let mut buffer = [0u8; 8];
    pipe.storage().read_at(0, &mut buffer).unwrap();
    assert_eq!(buffer, [1u8; 8]);
    assert_eq!(pipe.close(), Err(error));
}

/// A short count is no error (Linux caps a call at 2 GiB - 4 KiB; a disk filling up reports
/// what fit): the pipe writes the rest with another call. The error of the call that fails
/// is the one reported, and a call that writes nothing is a `ShortWrite`.
#[test]
fn a_short_write_is_finished_and_what_stops_it_is_reported() {
    // Half, then the rest: durable, nothing failed.
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    disk.inject(Fault::ShortWrite, 0);
    let epoch = pipe.write(vec![5u8; 8], 1).unwrap();
    pipe.wait_durable(epoch).unwrap();
    assert_eq!(&disk.durable_contents()[512..520], &[5u8; 8]);
    assert_eq!(pipe.failure(), None);
    drop(pipe);

    // Half, then the disk is full: NoSpace for the rest, at its offset.
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    disk.inject(Fault::ShortWrite, 0);
    disk.inject(Fault::NoSpace, 1);
    let epoch = pipe.write(vec![5u8; 8], 1).unwrap();
    let error = pipe.wait_durable(epoch).unwrap_err();
    assert!(
        matches!(
            error,
            PipeError::NoSpace {
                offset: 516,
                len: 4,
                ..
            }
        ),
        "{error:?}"
    );
    drop(pipe);

    // Half, then nothing: a ShortWrite that says how far it got.
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    disk.inject(Fault::ShortWrite, 0);
    disk.inject(Fault::ZeroWrite, 1);
    let epoch = pipe.write(vec![5u8; 8], 1).unwrap();
    assert_eq!(
        pipe.wait_durable(epoch),
        Err(PipeError::ShortWrite {
            offset: 512,
            expected: 8,
            written: 4
        })
    );
}

#[test]
fn every_fault_stops_the_pipe_with_its_own_error() {
    assert_fail_stop(Fault::WriteError, |e| {
        matches!(
            e,
            PipeError::Io {
                operation: Operation::Write,
                offset: 512,
                os_code: Some(5),
                ..
            }
        )
    });
    assert_fail_stop(Fault::NoSpace, |e| {
        matches!(
            e,
            PipeError::NoSpace {
                offset: 512,
                len: 8,
                ..
            }
        )
    });
    assert_fail_stop(Fault::ZeroWrite, |e| {
        matches!(
            e,
            PipeError::ShortWrite {
                offset: 512,
                expected: 8,
                written: 0
            }
        )
    });
    assert_fail_stop(Fault::SyncError, |e| {
        matches!(
            e,
            PipeError::Io {
                operation: Operation::Sync,
                ..
            }
        )
    });
}

#[test]
fn a_failed_sync_loses_the_unsynced_writes_and_never_acks_them() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), config()).unwrap();
    disk.inject(Fault::SyncError, 0);
    let epoch = pipe.write(vec![9u8; 16], 0).unwrap();
    assert!(pipe.wait_durable(epoch).is_err());
    let crashed = disk.crash(CrashMode::DropUnsynced);
    assert!(
        crashed
            .durable_contents()
            .get(..16)
            .is_none_or(|d| d != [9u8; 16])
    );
}

struct CountingWaker {
    wakes: std::sync::atomic::AtomicUsize,
    task: std::thread::Thread,
}
impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.task.unpark();
    }
}

#[test]
fn the_future_form_wakes_its_task() {
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk, config()).unwrap();
    let counter = Arc::new(CountingWaker {
        wakes: 0.into(),
        task: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&counter));
    let mut cx = Context::from_waker(&waker);
    for round in 0..20u64 {
        let epoch = pipe.write(vec![1u8; 8], round).unwrap();
        let mut future = std::pin::pin!(pipe.durable(epoch));
        let mut pendings = 0;
        loop {
            let before = counter.wakes.load(std::sync::atomic::Ordering::SeqCst);
            match future.as_mut().poll(&mut cx) {
                Poll::Ready(result) => break result.unwrap(),
                Poll::Pending => {
                    pendings += 1;
                    // A lost wake-up shows as a timeout with no wake counted.
                    std::thread::park_timeout(std::time::Duration::from_secs(10));
                    let after = counter.wakes.load(std::sync::atomic::Ordering::SeqCst);
                    assert!(after > before, "round {round}: pending future never woken");
                }
            }
        }
        assert!(pipe.durable_epoch() >= epoch);
        assert!(pendings <= 2, "round {round}: polled {pendings} times");
    }
}

#[test]
fn many_threads_share_syncs() {
    let disk = SimDisk::new();
    let pipe = Arc::new(Pipe::new(disk.clone(), config()).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|thread| {
            let pipe = Arc::clone(&pipe);
            std::thread::spawn(move || {
                for n in 0..50u64 {
                    let index = thread * 50 + n;
                    let epoch = pipe.write(index.to_le_bytes().to_vec(), index).unwrap();
                    pipe.wait_durable(epoch).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    let image = disk.durable_contents();
    for index in 0..400u64 {
        let at = index as usize * 512;
        assert_eq!(image[at..at + 8], index.to_le_bytes());
    }
    let (_, syncs) = disk.counts();
    assert!(syncs <= 400, "every write got its own sync: {syncs}");
}

#[test]
fn a_real_file_round_trips_and_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipe.dat");
    let storage = FileStorage::open(&path, FileOptions::default()).unwrap();
    let pipe = Pipe::new(storage, PipeConfig::default()).unwrap();
    let epoch = pipe.write(b"durable bytes".to_vec(), 2).unwrap();
    pipe.wait_durable(epoch).unwrap();
    let mut buffer = [0u8; 13];
    pipe.storage().read_at(2 * 4096, &mut buffer).unwrap();
    assert_eq!(&buffer, b"durable bytes");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}

/// A 4 KiB-aligned heap block, as O_DIRECT needs (the buffer pool provides these in the store).
struct AlignedBlock {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: the block is uniquely owned heap memory; nothing else aliases it.
unsafe impl Send for AlignedBlock {}

impl AlignedBlock {
    fn filled(fill: u8) -> AlignedBlock {
        let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
        // SAFETY: the layout has a nonzero size.
        let raw = unsafe { std::alloc::alloc(layout) };
        let ptr = std::ptr::NonNull::new(raw).expect("allocation failed");
        // SAFETY: `ptr` points to 4096 writable bytes just allocated.
        unsafe { std::ptr::write_bytes(ptr.as_ptr(), fill, 4096) };
        AlignedBlock { ptr, layout }
    }
}

impl Drop for AlignedBlock {
    fn drop(&mut self) {
        // SAFETY: allocated in `filled` with this exact layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

impl epoch_pipe::Payload for AlignedBlock {
    fn len(&self) -> usize {
        self.layout.size()
    }
    fn io_slices<'a>(&'a self, out: &mut Vec<std::io::IoSlice<'a>>) {
        // SAFETY: the block holds `len` initialised bytes and lives as long as `self`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) };
        out.push(std::io::IoSlice::new(bytes));
    }
}

#[test]
fn o_direct_is_used_where_allowed_and_falls_back_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("direct.dat");
    let options = FileOptions {
        direct: true,
        ..FileOptions::default()
    };
    let storage = FileStorage::open(&path, options).unwrap();
    let direct = storage.is_direct();
    let pipe = Pipe::new(storage, PipeConfig::default()).unwrap();
    let epoch = pipe.write(AlignedBlock::filled(7), 1).unwrap();
    pipe.wait_durable(epoch).unwrap();
    pipe.close().unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes[4096..8192].iter().all(|&b| b == 7),
        "direct = {direct}"
    );
}

#[test]
fn io_uring_is_used_where_the_kernel_allows_and_falls_back_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    for io_uring in [true, false] {
        let path = dir.path().join(format!("uring-{io_uring}.dat"));
        let options = FileOptions {
            io_uring,
            ..FileOptions::default()
        };
        let storage = FileStorage::open(&path, options).unwrap();
        let backend = storage.backend();
        eprintln!("io_uring requested: {io_uring}, backend: {backend:?}");
        if !io_uring {
            assert_eq!(backend, epoch_pipe::Backend::Syscalls);
        }
        let pipe = Pipe::new(
            storage,
            PipeConfig {
                chunk_size: 64,
                ..PipeConfig::default()
            },
        )
        .unwrap();
        let mut last = Epoch(0);
        for index in 0..100u64 {
            last = pipe.write(index.to_le_bytes().repeat(8), index).unwrap();
        }
        pipe.wait_durable(last).unwrap();
        pipe.close().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        for index in 0..100u64 {
            let at = index as usize * 64;
            assert_eq!(
                bytes[at..at + 64],
                index.to_le_bytes().repeat(8)[..],
                "{backend:?}"
            );
        }
    }
}

#[test]
fn a_failure_gives_staged_pooled_chunks_back() {
    let pool = buffer_pool::Pool::fixed(4096, 64).unwrap();
    let disk = SimDisk::new();
    disk.inject(Fault::WriteError, 0);
    let pipe = Pipe::new(disk, PipeConfig::default()).unwrap();
    let mut epochs = Vec::new();
    for index in 0..32u64 {
        let mut chunks = pool.allocate(2).unwrap();
        chunks.fill(&[1u8; 8192]);
        match pipe.write(epoch_pipe::PooledPayload::new(chunks, 8192), index * 2) {
            Ok(epoch) => epochs.push(epoch),
            Err(_) => break,
        }
    }
    assert!(pipe.wait_durable(*epochs.last().unwrap()).is_err());
    pipe.close().unwrap_err();
    assert_eq!(
        pool.stats().free_chunks,
        64,
        "every staged chunk went back to the pool"
    );
}

#[test]
fn a_payload_of_more_than_a_thousand_slices_is_written_whole() {
    let pool = buffer_pool::Pool::fixed(4096, 1500).unwrap();
    let disk = SimDisk::new();
    let pipe = Pipe::new(disk.clone(), PipeConfig::default()).unwrap();
    let mut chunks = pool.allocate(1300).unwrap();
    let data: Vec<u8> = (0..1300 * 4096).map(|n| (n % 251) as u8).collect();
    chunks.fill(&data);
    let epoch = pipe
        .write(epoch_pipe::PooledPayload::new(chunks, data.len()), 0)
        .unwrap();
    pipe.wait_durable(epoch).unwrap();
    assert_eq!(&disk.durable_contents()[..data.len()], &data[..]);
}

/// A simulated disk whose syncs first run a test's hook (to panic, to wait, ...), with room
/// for `space_limit` bytes (a larger `allocate` fails with ENOSPC).
struct HookedSync<F> {
    disk: SimDisk,
    before_sync: F,
    space_limit: u64,
}

impl<F: Fn() + Send + Sync + 'static> Storage for HookedSync<F> {
    fn write_vectored_at(
        &self,
        offset: u64,
        buffers: &[std::io::IoSlice<'_>],
    ) -> std::io::Result<usize> {
        self.disk.write_vectored_at(offset, buffers)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        (self.before_sync)();
        self.disk.sync_data()
    }
    fn allocate(&self, len: u64) -> std::io::Result<()> {
        if len > self.space_limit {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.disk.allocate(len)
    }
    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.disk.read_at(offset, buffer)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.disk.len()
    }
}

/// On a nearly full disk a whole growth step does not fit but a write does: the pipe grows
/// the file just to the write's end instead of failing, and fails with `NoSpace` only once
/// the write itself does not fit.
#[test]
fn a_write_that_fits_where_a_growth_step_does_not_goes_through() {
    let disk = SimDisk::new();
    let storage = HookedSync {
        disk: disk.clone(),
        before_sync: || {},
        space_limit: 2048,
    };
    let config = PipeConfig {
        grow_step: 64 * 1024,
        zero_ahead: 0,
        ..config()
    };
    let pipe = Pipe::new(storage, config).unwrap();
    let fits = pipe.write(vec![4u8; 8], 2).unwrap();
    pipe.wait_durable(fits).unwrap();
    assert_eq!(read(&disk, 1024, 8), [4u8; 8]);
    let too_far = pipe.write(vec![5u8; 8], 8).unwrap();
    assert_eq!(
        pipe.wait_durable(too_far),
        Err(PipeError::NoSpace {
            operation: Operation::Allocate,
            offset: 1032,
            len: 4096 - 1032 + 8,
        })
    );
}

/// Where a gated disk's syncs wait until `open_gate`.
type Gate = Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>;

/// A simulated disk whose syncs wait until the test opens the gate.
fn gated_disk() -> (HookedSync<impl Fn() + Send + Sync + 'static>, Gate) {
    let gate: Gate = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let held = Arc::clone(&gate);
    let storage = HookedSync {
        disk: SimDisk::new(),
        before_sync: move || {
            let (open, opened) = &*held;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        },
        space_limit: u64::MAX,
    };
    (storage, gate)
}

fn open_gate(gate: &Gate) {
    let (open, opened) = &**gate;
    *open.lock().unwrap() = true;
    opened.notify_all();
}

/// Polls `durable` once with `waker`, which the pipe keeps (the gate holds the sync).
fn register_while_gated<S: Storage>(durable: std::pin::Pin<&mut Durable<'_, S>>, waker: Waker) {
    assert!(
        durable.poll(&mut Context::from_waker(&waker)).is_pending(),
        "the gate holds the sync"
    );
}

/// A task waker that closes the pipe (it runs on the pipe's flusher) while another thread is
/// inside `close`, joining that flusher: neither waits for the other.
struct ClosingWaker<S: Storage>(Arc<Pipe<S>>);

impl<S: Storage> Wake for ClosingWaker<S> {
    fn wake(self: Arc<Self>) {
        let _ = self.0.close();
    }
}

#[test]
fn a_waker_that_closes_the_pipe_does_not_deadlock_a_racing_close() {
    let (storage, gate) = gated_disk();
    let pipe = Arc::new(Pipe::new(storage, config()).unwrap());
    let epoch = pipe.write(vec![1u8; 8], 0).unwrap();
    let mut durable = std::pin::pin!(pipe.durable(epoch));
    register_while_gated(
        durable.as_mut(),
        Waker::from(Arc::new(ClosingWaker(Arc::clone(&pipe)))),
    );
    let closer = {
        let pipe = Arc::clone(&pipe);
        std::thread::spawn(move || pipe.close())
    };
    open_gate(&gate);
    assert_eq!(closer.join().unwrap(), Ok(()));
    assert_eq!(
        durable
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(()))
    );
}

/// A task waker that writes to the pipe it is woken by (it runs on a pipe thread), sending the
/// outcome back.
struct WritingWaker<S: Storage>(
    Arc<Pipe<S>>,
    std::sync::Mutex<std::sync::mpsc::Sender<Result<Epoch, PipeError>>>,
);

impl<S: Storage> Wake for WritingWaker<S> {
    fn wake(self: Arc<Self>) {
        let outcome = self.0.write(vec![2u8; 60], 1);
        let _ = self.1.lock().unwrap().send(outcome);
    }
}

/// A waker's write on the pipe's own thread does not wait for staging room: the room of the
/// epoch that woke it is given back only after its wakers ran, so it would wait for itself.
#[test]
fn a_waker_that_writes_does_not_wait_for_room_it_holds_itself() {
    let (storage, gate) = gated_disk();
    let pipe = Arc::new(
        Pipe::new(
            storage,
            PipeConfig {
                max_staged_bytes: 64,
                ..config()
            },
        )
        .unwrap(),
    );
    let epoch = pipe.write(vec![1u8; 8], 0).unwrap();
    let (sent, outcome) = std::sync::mpsc::channel();
    let mut durable = std::pin::pin!(pipe.durable(epoch));
    register_while_gated(
        durable.as_mut(),
        Waker::from(Arc::new(WritingWaker(
            Arc::clone(&pipe),
            std::sync::Mutex::new(sent),
        ))),
    );
    open_gate(&gate);
    // 8 + 60 bytes are over the bound while the first write's room is still counted.
    let written = outcome
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the waker's write returned (it used to wait for room forever)")
        .expect("write");
    pipe.wait_durable(written).unwrap();
    pipe.close().unwrap();
}

/// A panic on a pipe thread fails the pipe: the waiter gets `Panicked` (it used to wait
/// forever), later writes are refused, what was durable stays durable, `close` reports it.
#[test]
fn a_panicking_storage_fails_the_pipe() {
    for (syncs_in_flight, thread) in [(1, "flusher"), (2, "sync worker")] {
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let panics = Arc::clone(&armed);
        let storage = HookedSync {
            disk: SimDisk::new(),
            before_sync: move || {
                if panics.load(std::sync::atomic::Ordering::Acquire) {
                    panic!("this storage panics on purpose");
                }
            },
            space_limit: u64::MAX,
        };
        let pipe = Pipe::new(
            storage,
            PipeConfig {
                syncs_in_flight,
                ..config()
            },
        )
        .unwrap();
        let durable = pipe.write(vec![1u8; 8], 0).unwrap();
        pipe.wait_durable(durable).unwrap();
        armed.store(true, std::sync::atomic::Ordering::Release);
        let lost = pipe.write(vec![2u8; 8], 1).unwrap();
        let panicked = PipeError::Panicked { thread };
        assert_eq!(pipe.wait_durable(lost), Err(panicked.clone()));
        assert_eq!(pipe.write(vec![3u8; 8], 2), Err(panicked.clone()));
        assert_eq!(pipe.wait_durable(durable), Ok(()));
        assert!(panicked.to_string().contains(thread));
        assert_eq!(pipe.close(), Err(panicked));
    }
}

/// Many writers on a disk whose syncs are quick: waking a group's waiters takes longer than a
/// sync, so the flusher hands wake-ups to the publisher thread and writes the next group at
/// once. Every write is durable when its wait returns, also for the writes waited on only
/// after `close`. Nobody spins (`wait_spin` 0), so every waiter sleeps and counts, whatever
/// the number of CPUs.
#[test]
fn many_waiters_pipeline_groups_and_lose_no_acknowledgement() {
    const THREADS: u64 = 32;
    const WRITES: u64 = 64;
    let disk = SimDisk::new();
    let config = PipeConfig {
        wait_spin: std::time::Duration::ZERO,
        ..config()
    };
    let pipe = Arc::new(Pipe::new(disk.clone(), config).unwrap());
    let last_epochs: Vec<Epoch> = (0..THREADS)
        .map(|thread| {
            let (pipe, disk) = (Arc::clone(&pipe), disk.clone());
            std::thread::spawn(move || {
                let mut last = None;
                for n in 0..WRITES {
                    let index = thread * WRITES + n;
                    let epoch = pipe.write(index.to_le_bytes().to_vec(), index).unwrap();
                    if n % 8 == 7 {
                        // Not waited for here: checked after `close` below.
                        last = Some(epoch);
                        continue;
                    }
                    pipe.wait_durable(epoch).unwrap();
                    let at = index as usize * 512;
                    assert_eq!(
                        read(&disk, at, 8),
                        index.to_le_bytes(),
                        "acked, not durable"
                    );
                }
                last.unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let stats = pipe.stats();
    pipe.close().unwrap();
    for epoch in last_epochs {
        pipe.wait_durable(epoch).unwrap();
    }
    let image = disk.durable_contents();
    for index in 0..THREADS * WRITES {
        let at = index as usize * 512;
        assert_eq!(image[at..at + 8], index.to_le_bytes());
    }
    assert_eq!(stats.epochs, THREADS * WRITES);
    // ~40% of the syncs on the 2-vCPU machine this was written on (53-70 of 136-156).
    assert!(
        stats.pipelined > 0,
        "no wake-up was handed off in {} syncs",
        stats.syncs
    );
}

struct PanickingWaker;

impl Wake for PanickingWaker {
    fn wake(self: Arc<Self>) {
        panic!("this waker panics on purpose");
    }
}

/// Two tasks wait for one epoch and the first one's waker panics: the second is woken all the
/// same (its epoch is durable), then the pipe fails with `Panicked`.
#[test]
fn a_panicking_waker_does_not_strand_the_other_tasks() {
    // Syncs wait until the test opens the gate, so both tasks register first.
    let (storage, gate) = gated_disk();
    let pipe = Pipe::new(storage, config()).unwrap();
    let epoch = pipe.write(vec![7u8; 8], 0).unwrap();

    let panicking = Waker::from(Arc::new(PanickingWaker));
    let mut first = std::pin::pin!(pipe.durable(epoch));
    assert!(
        first
            .as_mut()
            .poll(&mut Context::from_waker(&panicking))
            .is_pending()
    );
    let counter = Arc::new(CountingWaker {
        wakes: 0.into(),
        task: std::thread::current(),
    });
    let counting = Waker::from(Arc::clone(&counter));
    let mut second = std::pin::pin!(pipe.durable(epoch));
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(&counting))
            .is_pending()
    );

    open_gate(&gate);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while counter.wakes.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the task after the panicking waker was never woken"
        );
        std::thread::park_timeout(std::time::Duration::from_millis(10));
    }
    let mut cx = Context::from_waker(&counting);
    assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
    assert_eq!(pipe.close(), Err(PipeError::Panicked { thread: "flusher" }));
}
