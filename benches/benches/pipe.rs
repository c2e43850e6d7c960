//! Suite `pipe`: durable acknowledgements per second of the epoch pipe against the raw ceiling
//! (a hand-written pwritev + one fdatasync per batch) and frozen-core's FrozenPipe (0.0.20,
//! flush window 100 us, as its own tests use; note that its `wait_for_durability` can return
//! before a write that slipped in during a flush is synced, so its figures are optimistic).
//!
//! Records are 256 bytes, written at consecutive offsets of one preallocated file on the
//! target directory's file system. `w{N}`: N writer threads, each writing a record and waiting
//! until it is durable, in a loop; the raw ceiling writes the same records in batches of N (what
//! perfect group commit of N waiting writers would do) with one thread and no coordination.
//! The raw ceiling's file is preallocated with `fallocate`, as the issue defines it; the pipe
//! writes zeros ahead of its writes (`PipeConfig::zero_ahead`), which makes its syncs plain
//! data flushes, so a second peer, `raw-ceiling-zeroed`, runs the same loop on a file written
//! with zeros beforehand: the pipe's ratio to it is its own overhead.
//!
//! `w64_async`: the same 64 writers as tasks on one thread (futures' `LocalPool`), each
//! awaiting `Pipe::durable`: 64 blocked threads on 2 cores cost a context switch per ack (a
//! few microseconds each in this VM, about the length of a sync per group); tasks do not.

use std::fs::{File, OpenOptions};
use std::io::IoSlice;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main, measurement::WallTime,
};
use epoch_pipe::{FileOptions, FileStorage, Pipe, PipeConfig};
use eventstore_benches::{Crew, scale};

const RECORD: usize = 256;
/// Preallocated file size: large enough that no run grows the file (small for the smoke run,
/// which CI runs on a disk of unknown size).
fn file_bytes() -> u64 {
    scale(256 << 20, 4 << 20) as u64
}

fn bench_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipe-bench");
    std::fs::create_dir_all(&dir).expect("create bench dir");
    dir
}

fn fresh_file(name: &str) -> PathBuf {
    let path = bench_dir().join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Writes wrap around inside the preallocated file.
fn slot_offset(slot: u64) -> u64 {
    (slot * RECORD as u64) % file_bytes()
}

/// Ours: a crew of `threads` writers, each doing `per_thread` write + wait_durable a round.
fn ours(pipe: &Arc<Pipe<FileStorage>>, threads: usize, per_thread: u64) -> Crew {
    let pipe = Arc::clone(pipe);
    let next_slot = AtomicU64::new(0);
    Crew::new(threads, move |_| {
        for _ in 0..per_thread {
            let slot = next_slot.fetch_add(1, Ordering::Relaxed);
            let index = slot_offset(slot) / RECORD as u64;
            let epoch = pipe.write(vec![0xa5u8; RECORD], index).expect("write");
            pipe.wait_durable(epoch).expect("durable");
        }
    })
}

fn open_pipe(name: &str) -> Arc<Pipe<FileStorage>> {
    // For experiments: EPOCH_PIPE_URING=1 submits through io_uring where the kernel allows.
    let io_uring = std::env::var_os("EPOCH_PIPE_URING").is_some();
    let options = FileOptions {
        io_uring,
        ..FileOptions::default()
    };
    let storage = FileStorage::open(&fresh_file(name), options).expect("open");
    let mut config = PipeConfig {
        chunk_size: RECORD as u64,
        grow_step: file_bytes(),
        ..PipeConfig::default()
    };
    // For tuning experiments: EPOCH_PIPE_SYNCS overrides the syncs in flight.
    if let Some(syncs) = std::env::var("EPOCH_PIPE_SYNCS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.syncs_in_flight = syncs;
    }
    Arc::new(Pipe::new(storage, config).expect("config"))
}

/// The raw ceiling: one thread, `batches` x (pwritev of `batch` records + one fdatasync).
fn raw_ceiling(file: &File, batch: usize, batches: u64, next_slot: &mut u64) -> Duration {
    let record = vec![0xa5u8; RECORD];
    let slices: Vec<IoSlice<'_>> = (0..batch).map(|_| IoSlice::new(&record)).collect();
    let start = Instant::now();
    for _ in 0..batches {
        if slot_offset(*next_slot) + (batch * RECORD) as u64 > file_bytes() {
            *next_slot = 0;
        }
        let offset = slot_offset(*next_slot) as libc::off_t;
        // SAFETY: `slices` are valid IoSlices (ABI-compatible with iovec) alive for the call.
        let written = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                slices.as_ptr().cast(),
                slices.len() as i32,
                offset,
            )
        };
        assert_eq!(written, (batch * RECORD) as isize, "pwritev");
        file.sync_data().expect("fdatasync");
        *next_slot += batch as u64;
    }
    start.elapsed()
}

fn raw_file(name: &str, zeroed: bool) -> File {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(fresh_file(name))
        .expect("open raw file");
    // SAFETY: plain syscall on an fd we own.
    let result = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, file_bytes() as libc::off_t) };
    if result != 0 {
        file.set_len(file_bytes()).expect("set_len");
    }
    if zeroed {
        let zeros = vec![0u8; 1 << 20];
        let mut at = 0;
        while at < file_bytes() {
            let len = zeros.len().min((file_bytes() - at) as usize);
            std::os::unix::fs::FileExt::write_all_at(&file, &zeros[..len], at).expect("zero");
            at += len as u64;
        }
    }
    file.sync_all().expect("sync");
    file
}

/// Slots of the frozen-core pipe's file; indexes wrap around inside it.
fn frozen_slots() -> usize {
    file_bytes() as usize / RECORD
}

fn open_frozen(name: &str) -> Arc<frozen_core::fpipe::FrozenPipe<7>> {
    let config = frozen_core::fpipe::FPCfg {
        backend: frozen_core::bpool::BPBackend::Prealloc { capacity: 256 },
        chunk_size: RECORD,
        initial_chunk_amount: frozen_slots(),
        flush_duration: Duration::from_micros(100),
    };
    Arc::new(
        frozen_core::fpipe::FrozenPipe::<7>::new(fresh_file(name), config).expect("frozen pipe"),
    )
}

/// frozen-core: a crew of `threads` writers, each doing `per_thread` write +
/// wait_for_durability a round.
fn frozen(pipe: &Arc<frozen_core::fpipe::FrozenPipe<7>>, threads: usize, per_thread: u64) -> Crew {
    let pipe = Arc::clone(pipe);
    let next = AtomicU64::new(0);
    Crew::new(threads, move |_| {
        let record = [0xa5u8; RECORD];
        for _ in 0..per_thread {
            let index = next.fetch_add(1, Ordering::Relaxed) as usize % frozen_slots();
            // SAFETY: frozen-core reads exactly chunk_size (RECORD) bytes from each slice,
            // and the slice is RECORD bytes long.
            let epoch = unsafe { pipe.write(&[&record[..]], index) }.expect("frozen write");
            pipe.wait_for_durability(epoch).expect("frozen durable");
        }
    })
}

fn writers(c: &mut Criterion) {
    for threads in [1usize, 8, 64] {
        // Acks per round: enough that the start and the tail of a round (writers waking from
        // the crew's barrier, the last small groups) are small next to the steady state.
        let per_thread = scale(
            match threads {
                1 => 64,
                8 => 256,
                _ => 256,
            },
            2,
        ) as u64;
        let acks = threads as u64 * per_thread;
        let mut group = c.benchmark_group(format!("pipe/w{threads}"));
        group.throughput(Throughput::Elements(acks));
        group.sample_size(10);
        let pipe = open_pipe(&format!("ours-w{threads}.dat"));
        let crew = ours(&pipe, threads, per_thread);
        group.bench_function("ours", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| crew.round()).sum())
        });
        drop(crew);
        drop(pipe);
        let frozen_pipe = open_frozen(&format!("frozen-w{threads}.dat"));
        let crew = frozen(&frozen_pipe, threads, per_thread);
        group.bench_function("frozen-core", |b| {
            b.iter_custom(|iters| (0..iters).map(|_| crew.round()).sum())
        });
        drop(crew);
        drop(frozen_pipe);
        raw_ceilings(&mut group, &format!("w{threads}"), threads, per_thread);
        group.finish();
    }
}

/// The two raw-ceiling peers of a `writers`-writer case: the loop on a fallocated file and on
/// a pre-zeroed one, each `rounds` batches of `writers` records per iteration.
fn raw_ceilings(group: &mut BenchmarkGroup<'_, WallTime>, case: &str, writers: usize, rounds: u64) {
    for (peer, zeroed) in [("raw-ceiling", false), ("raw-ceiling-zeroed", true)] {
        let file = raw_file(&format!("{peer}-{case}.dat"), zeroed);
        let mut next_slot = 0;
        group.bench_function(peer, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| raw_ceiling(&file, writers, rounds, &mut next_slot))
                    .sum()
            })
        });
    }
}

/// 64 writer tasks on one executor thread: one round of `per_task` write + await each.
fn ours_async(pipe: &Arc<Pipe<FileStorage>>, tasks: u64, per_task: u64) -> Duration {
    use futures::task::LocalSpawnExt;
    let mut pool = futures::executor::LocalPool::new();
    let next_slot = std::rc::Rc::new(std::cell::Cell::new(0u64));
    for _ in 0..tasks {
        let (pipe, next_slot) = (Arc::clone(pipe), std::rc::Rc::clone(&next_slot));
        pool.spawner()
            .spawn_local(async move {
                for _ in 0..per_task {
                    let slot = next_slot.get();
                    next_slot.set(slot + 1);
                    let index = slot_offset(slot) / RECORD as u64;
                    let epoch = pipe.write(vec![0xa5u8; RECORD], index).expect("write");
                    pipe.durable(epoch).await.expect("durable");
                }
            })
            .expect("spawn");
    }
    let start = Instant::now();
    pool.run();
    start.elapsed()
}

fn async_writers(c: &mut Criterion) {
    let (tasks, per_task) = (64u64, scale(256, 2) as u64);
    let mut group = c.benchmark_group("pipe/w64_async");
    group.throughput(Throughput::Elements(tasks * per_task));
    group.sample_size(10);
    let pipe = open_pipe("ours-w64-async.dat");
    group.bench_function("ours", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ours_async(&pipe, tasks, per_task)).sum())
    });
    drop(pipe);
    raw_ceilings(&mut group, "w64-async", tasks as usize, per_task);
    group.finish();
}

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipe/w1_p50_latency");
    group.sample_size(scale(50, 10));
    let pipe = open_pipe("ours-latency.dat");
    let next = AtomicU64::new(0);
    group.bench_function("ours", |b| {
        b.iter(|| {
            let index = slot_offset(next.fetch_add(1, Ordering::Relaxed)) / RECORD as u64;
            let epoch = pipe.write(vec![0x5au8; RECORD], index).expect("write");
            pipe.wait_durable(epoch).expect("durable");
        })
    });
    drop(pipe);
    let file = raw_file("raw-latency.dat", false);
    let mut next_slot = 0;
    group.bench_function("raw-fdatasync", |b| {
        b.iter(|| raw_ceiling(&file, 1, 1, &mut next_slot))
    });
    group.finish();
}

/// Removes the bench files (gigabytes on a timed run) once a suite function is done.
fn clean_up(_: &mut Criterion) {
    let _ = std::fs::remove_dir_all(Path::new(env!("CARGO_TARGET_TMPDIR")).join("pipe-bench"));
}

criterion_group!(pipe, writers, async_writers, latency, clean_up);
criterion_main!(pipe);
