#![cfg(epoch_pipe_loom)]
//! loom models of the epoch hand-off between writers, the flusher, the sync workers and
//! waiters. Run with `cargo xtask loom epoch-pipe`.

use epoch_pipe::{CrashMode, Fault, Pipe, PipeConfig, SimDisk};

fn config(syncs_in_flight: usize) -> PipeConfig {
    PipeConfig {
        chunk_size: 512,
        grow_step: 512,
        syncs_in_flight,
        ..PipeConfig::default()
    }
}

/// A waiter is never acknowledged before its write is synced, and is always woken.
#[test]
fn ack_only_after_sync_and_no_lost_wake_up() {
    loom::model(|| {
        let disk = SimDisk::new();
        let pipe = Pipe::new(disk.clone(), config(1)).unwrap();
        let epoch = pipe.write(vec![7u8; 4], 0).unwrap();
        pipe.wait_durable(epoch).unwrap();
        assert_eq!(&disk.durable_contents()[..4], &[7u8; 4]);
        pipe.close().unwrap();
    });
}

/// Two writers racing: both acknowledged, each only once its own data is durable.
#[test]
fn two_writers_share_the_pipe() {
    loom::model(|| {
        let disk = SimDisk::new();
        let pipe = loom::sync::Arc::new(Pipe::new(disk.clone(), config(1)).unwrap());
        let other = loom::sync::Arc::clone(&pipe);
        let other_disk = disk.clone();
        let writer = loom::thread::spawn(move || {
            let epoch = other.write(vec![2u8; 4], 1).unwrap();
            other.wait_durable(epoch).unwrap();
            assert_eq!(&other_disk.durable_contents()[512..516], &[2u8; 4]);
        });
        let epoch = pipe.write(vec![1u8; 4], 0).unwrap();
        pipe.wait_durable(epoch).unwrap();
        assert_eq!(&disk.durable_contents()[..4], &[1u8; 4]);
        writer.join().unwrap();
    });
}

/// A writer that finds no staging room waits in line and is let in once the room comes back
/// (no lost wake-up between the room's release and the ticket queue).
#[test]
fn a_writer_waiting_for_room_is_let_in() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(2);
    builder.check(|| {
        let disk = SimDisk::new();
        let config = PipeConfig {
            max_staged_bytes: 4,
            ..config(1)
        };
        let pipe = loom::sync::Arc::new(Pipe::new(disk.clone(), config).unwrap());
        let other = loom::sync::Arc::clone(&pipe);
        let writer = loom::thread::spawn(move || {
            let epoch = other.write(vec![2u8; 4], 1).unwrap();
            other.wait_durable(epoch).unwrap();
        });
        let epoch = pipe.write(vec![1u8; 4], 0).unwrap();
        pipe.wait_durable(epoch).unwrap();
        writer.join().unwrap();
        assert_eq!(&disk.durable_contents()[512..516], &[2u8; 4]);
    });
}

/// With two syncs in flight and one failing, a success that overlapped the failure never
/// acknowledges data the failure dropped.
#[test]
fn overlapping_sync_failure_is_never_trusted() {
    loom::model(|| {
        let disk = SimDisk::new();
        // The first sync *call* fails, whichever job makes it: when the later job's sync runs
        // first, it drops the earlier group's data while the earlier sync then succeeds.
        disk.inject(Fault::SyncError, 0);
        let pipe = Pipe::new(disk.clone(), config(2)).unwrap();
        let first = pipe.write(vec![1u8; 4], 0).unwrap();
        // The pipe may already have failed: then the second write is refused.
        let second = pipe.write(vec![2u8; 4], 1);
        let acked_second = second.is_ok_and(|second| pipe.wait_durable(second).is_ok());
        let acked_first = pipe.wait_durable(first).is_ok();
        let image = disk.crash(CrashMode::DropUnsynced).durable_contents();
        if acked_first {
            assert_eq!(&image[..4], &[1u8; 4]);
        }
        if acked_second {
            assert_eq!(&image[512..516], &[2u8; 4]);
        }
        let _ = pipe.close();
    });
}

/// Tagged sleepers (what `wait_durable` does under its epoch's tag): each is woken by the
/// advance that names its tag, whatever the advances for other tags did around it. Under
/// loom the word is the mutex-and-condvar fallback, which keeps a sleeper asleep through
/// advances of other tags just as the futex does: a missed tag deadlocks the model.
#[test]
fn tagged_sleepers_wake_on_their_own_tags() {
    use loom::sync::Arc;
    use loom::sync::atomic::{AtomicU64, Ordering};
    loom::model(|| {
        let word = Arc::new(epoch_pipe::WakeWord::new());
        let round = Arc::new(AtomicU64::new(0));
        let waiters: Vec<_> = [(0b01u32, 1u64), (0b10, 2)]
            .into_iter()
            .map(|(tag, wanted)| {
                let (word, round) = (Arc::clone(&word), Arc::clone(&round));
                loom::thread::spawn(move || {
                    word.wait_until_tagged(tag, || round.load(Ordering::Acquire) >= wanted);
                })
            })
            .collect();
        round.store(1, Ordering::Release);
        word.advance_tags(0b01);
        round.store(2, Ordering::Release);
        word.advance_tags(0b10);
        for waiter in waiters {
            waiter.join().unwrap();
        }
    });
}
