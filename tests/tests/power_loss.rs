//! Simulated power loss: the log's storage is wrapped so that what was written but not yet
//! synced is kept apart; at a random moment the "disk" is cut to its synced image (plus, in
//! some rounds, a torn part of the unsynced writes), a store is opened on that image, and every
//! acknowledged event must be there with its version and position, versions contiguous,
//! positions gap-free, no multi-stream append partial, and the store must keep working.

use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use epoch_pipe::{FileStorage, Storage};
use eventstore::{AppendItem, Event, Expected, StorageHook, Store, StoreOptions};
use eventstore_tests::invariants;

#[derive(Default)]
struct Disk {
    /// What survives a power loss.
    durable: Vec<u8>,
    /// Writes since the last sync started, in order.
    pending: Vec<(u64, Vec<u8>)>,
}

fn apply(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let end = offset as usize + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[offset as usize..end].copy_from_slice(data);
}

/// The real file, with a record of what is durable.
struct Shadow {
    file: FileStorage,
    disk: Arc<Mutex<Disk>>,
}

impl Storage for Shadow {
    fn write_vectored_at(&self, offset: u64, buffers: &[IoSlice<'_>]) -> io::Result<usize> {
        let written = self.file.write_vectored_at(offset, buffers)?;
        // Whole-slice copies: the pipe writes its zeros ahead in MiB runs, too many bytes to
        // move one at a time in a debug build.
        let mut data = Vec::with_capacity(written);
        for buffer in buffers {
            data.extend_from_slice(buffer);
        }
        data.truncate(written);
        self.disk.lock().unwrap().pending.push((offset, data));
        Ok(written)
    }
    fn sync_data(&self) -> io::Result<()> {
        // A sync covers the writes that returned before it started.
        let covered = std::mem::take(&mut self.disk.lock().unwrap().pending);
        let outcome = self.file.sync_data();
        let mut disk = self.disk.lock().unwrap();
        if outcome.is_ok() {
            for (offset, data) in &covered {
                apply(&mut disk.durable, *offset, data);
            }
        } else {
            // Put them back in front: not durable.
            let mut later = std::mem::take(&mut disk.pending);
            disk.pending = covered;
            disk.pending.append(&mut later);
        }
        outcome
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

fn payload(instance: u128, version: u64) -> Vec<u8> {
    format!("{instance}:{version}:").repeat(8).into_bytes()
}

#[test]
fn power_loss_never_loses_an_acknowledged_append() {
    let rounds: u64 = std::env::var("EVENTSTORE_POWER_LOSS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut checked = 0;
    let mut repaired = 0;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let live = tempfile::tempdir().unwrap();
        let disk = Arc::new(Mutex::new(Disk::default()));
        let hook_disk = Arc::clone(&disk);
        let options = StoreOptions {
            grow_step: 1 << 20,
            // No checkpoint during the run: the crashed image is the log alone.
            checkpoint_every: u64::MAX / 2,
            log_storage_hook: Some(StorageHook(Arc::new(move |file: FileStorage| {
                Box::new(Shadow {
                    file,
                    disk: Arc::clone(&hook_disk),
                }) as Box<dyn Storage>
            }))),
            ..StoreOptions::default()
        };
        let store = Store::open_with(live.path(), options).unwrap();
        let accounts = store.domain("bank").unwrap().aggregate("account").unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::<(u128, u64, u64)>::new()));
        let mut workers = Vec::new();
        for instance in 0..2u128 {
            let (stream, stop, acked) = (
                accounts.instance(instance),
                Arc::clone(&stop),
                Arc::clone(&acked),
            );
            workers.push(std::thread::spawn(move || {
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let expected = if next == 0 {
                        Expected::NoStream
                    } else {
                        Expected::Exact(next - 1)
                    };
                    let Ok(receipt) =
                        stream.append(expected, &[Event::new("e", payload(instance, next))])
                    else {
                        return;
                    };
                    acked
                        .lock()
                        .unwrap()
                        .push((instance, next, receipt.first_position));
                    next += 1;
                }
            }));
        }
        {
            let (left, right) = (accounts.instance(100u128), accounts.instance(101u128));
            let (store, stop, acked) = (store.clone(), Arc::clone(&stop), Arc::clone(&acked));
            workers.push(std::thread::spawn(move || {
                let mut next = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let expected = if next == 0 {
                        Expected::NoStream
                    } else {
                        Expected::Exact(next - 1)
                    };
                    let Ok(receipt) = store.append_multi(&[
                        AppendItem {
                            stream: &left,
                            expected,
                            events: &[Event::new("debit", payload(100, next))],
                        },
                        AppendItem {
                            stream: &right,
                            expected,
                            events: &[Event::new("credit", payload(101, next))],
                        },
                    ]) else {
                        return;
                    };
                    let mut acked = acked.lock().unwrap();
                    acked.push((100, next, receipt.first_position));
                    acked.push((101, next, receipt.last_position));
                    next += 1;
                }
            }));
        }
        // The moment of the power loss only needs to vary.
        std::thread::sleep(Duration::from_millis(10 + seed % 60));
        // Rounds that tear a write wait (boundedly) for a moment when one is unsynced.
        let tear = !seed.is_multiple_of(3);
        for _ in 0..20_000 {
            if !tear || !disk.lock().unwrap().pending.is_empty() {
                break;
            }
            std::thread::yield_now();
        }
        let acked_before = acked.lock().unwrap().clone();
        let image = {
            let disk = disk.lock().unwrap();
            let mut image = disk.durable.clone();
            // Some rounds keep a prefix of the unsynced writes, the last one torn.
            if tear && !disk.pending.is_empty() {
                let keep = (seed / 3) as usize % disk.pending.len();
                for (offset, data) in &disk.pending[..keep] {
                    apply(&mut image, *offset, data);
                }
                let (offset, data) = &disk.pending[keep];
                let torn = (seed / 7) as usize % data.len().max(1);
                apply(&mut image, *offset, &data[..torn]);
            }
            image
        };
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().for_each(|w| w.join().unwrap());
        store.close().unwrap();

        let after = tempfile::tempdir().unwrap();
        std::fs::copy(live.path().join("STORE"), after.path().join("STORE")).unwrap();
        std::fs::write(after.path().join("log.dat"), &image).unwrap();
        let store = Store::open_with(
            after.path(),
            StoreOptions {
                grow_step: 1 << 20,
                ..StoreOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("round {round}: reopen after power loss: {e}"));
        repaired += u64::from(store.recovery().truncated_at.is_some());
        invariants::check_after_crash(
            &store,
            &[0, 1, 100, 101],
            &acked_before,
            (100, 101),
            payload,
            round,
        );
        store.close().unwrap();
        checked += acked_before.len();
    }
    assert!(
        checked > 0,
        "no acknowledgement before any power loss: the test checked nothing"
    );
    eprintln!(
        "{rounds} power losses, {checked} acknowledged events checked, {repaired} torn tails cut"
    );
}
