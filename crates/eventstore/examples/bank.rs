//! A small bank: several threads open accounts and move money with atomic two-stream
//! appends, then the example reads everything back and checks the totals.
//!
//! `cargo run --release -p eventstore --example bank [DIR]` (a temporary directory by default).

use std::time::Instant;

use eventstore::{AppendItem, Event, Expected, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let temporary = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(1)
        .map_or_else(|| temporary.path().to_path_buf(), Into::into);
    let store = Store::open(&dir)?;
    let accounts = store.domain("bank")?.aggregate("account")?;
    let threads = 8u128;
    let transfers = 200u64;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|thread| {
            let (store, accounts) = (store.clone(), accounts.clone());
            std::thread::spawn(move || -> Result<(), eventstore::StoreError> {
                let (from, to) = (
                    accounts.instance(2 * thread),
                    accounts.instance(2 * thread + 1),
                );
                let base_from = from.version();
                let base_to = to.version();
                let mut from_version = base_from;
                let mut to_version = base_to;
                for _ in 0..transfers {
                    let expect = |v: Option<u64>| v.map_or(Expected::NoStream, Expected::Exact);
                    let receipt = store.append_multi(&[
                        AppendItem {
                            stream: &from,
                            expected: expect(from_version),
                            events: &[Event::new("debited", 10u64.to_le_bytes().to_vec())],
                        },
                        AppendItem {
                            stream: &to,
                            expected: expect(to_version),
                            events: &[Event::new("credited", 10u64.to_le_bytes().to_vec())],
                        },
                    ])?;
                    from_version = Some(receipt.last_versions[0]);
                    to_version = Some(receipt.last_versions[1]);
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    let elapsed = started.elapsed();
    let appended = threads as u64 * transfers * 2;
    println!(
        "{appended} durable events in {:.2?} ({:.0} events/s) from {threads} threads",
        elapsed,
        appended as f64 / elapsed.as_secs_f64()
    );
    let mut balance: i128 = 0;
    for event in store.read_all(0, usize::MAX)? {
        let amount = u64::from_le_bytes(event.payload[..8].try_into()?) as i128;
        balance += if event.event_type.to_string() == "credited" {
            amount
        } else {
            -amount
        };
    }
    println!(
        "{} events in the store, money conserved: {}",
        store.len(),
        balance == 0
    );
    println!("durability: {:?}", store.pipe_stats());
    store.close()?;
    Ok(())
}
