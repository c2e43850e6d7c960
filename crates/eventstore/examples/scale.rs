//! Fills a store with N events (default 1M) across 10,000 streams, closes it, reopens it and
//! reports open times and the process's peak RSS.
//!
//! `cargo run --release -p eventstore --example scale -- [EVENTS] [DIR]`

use std::time::Instant;

use eventstore::{Event, Expected, Store};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let events: u64 = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |n| n.parse())?;
    let temporary = tempfile::tempdir()?;
    let dir = std::env::args()
        .nth(2)
        .map_or_else(|| temporary.path().to_path_buf(), Into::into);
    let streams = 10_000u64;
    let batch = 100u64;
    let payload = vec![0x42u8; 256];
    let started = Instant::now();
    {
        let store = Store::open(&dir)?;
        let aggregate = store.domain("scale")?.aggregate("item")?;
        let mut pending = Vec::new();
        let mut versions = vec![None::<u64>; streams as usize];
        for n in 0..events / batch {
            let slot = (n % streams) as usize;
            let stream = aggregate.instance(slot as u128);
            let batch_events: Vec<Event> = (0..batch)
                .map(|_| Event::new("e", payload.clone()))
                .collect();
            let expected = versions[slot].map_or(Expected::NoStream, Expected::Exact);
            pending.push(stream.append_nowait(expected, &batch_events)?);
            versions[slot] = Some(versions[slot].map_or(batch - 1, |v| v + batch));
            if pending.len() >= 256 {
                for append in pending.drain(..) {
                    append.wait()?;
                }
            }
        }
        for append in pending {
            append.wait()?;
        }
        println!(
            "filled {} events in {:.2?}; peak RSS {} MiB",
            store.len(),
            started.elapsed(),
            peak_rss_kib() / 1024
        );
        store.close()?;
    }
    let started = Instant::now();
    let store = Store::open(&dir)?;
    println!(
        "reopened (checkpointed) in {:.2?}: {} events, {} streams, {} replayed",
        started.elapsed(),
        store.len(),
        store.recovery().streams,
        store.recovery().replayed_events
    );
    let started = Instant::now();
    let stream = store.domain("scale")?.aggregate("item")?.instance(7u128);
    let read = stream.read_from(0)?;
    println!(
        "read one stream of {} events in {:.2?}",
        read.len(),
        started.elapsed()
    );
    for pass in ["cold", "warm"] {
        let started = Instant::now();
        let mut bytes = 0usize;
        let end = store.scan_all(0, usize::MAX, |event| bytes += event.payload.len())?;
        let elapsed = started.elapsed();
        println!(
            "scanned {end} events ({} MiB of payload, {pass} map) in {elapsed:.2?}: {:.1} M events/s",
            bytes >> 20,
            end as f64 / elapsed.as_secs_f64() / 1e6
        );
    }
    store.close()?;
    std::fs::remove_file(dir.join("checkpoint.dat"))?;
    let started = Instant::now();
    let store = Store::open(&dir)?;
    println!(
        "reopened without a checkpoint (full replay) in {:.2?}: {} events",
        started.elapsed(),
        store.len()
    );
    println!("peak RSS {} MiB", peak_rss_kib() / 1024);
    Ok(())
}
