#![cfg(not(buffer_pool_loom))]
//! Many threads allocating random sizes from a pool that is near empty most of the time; each
//! holder stamps its chunks with its own pattern and checks it before releasing, so a chunk
//! handed to two holders at once would be caught.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use buffer_pool::{Allocation, Pool, PoolConfig, PoolError};

const THREADS: usize = 8;
const RUN_FOR: Duration = Duration::from_millis(1500);

/// xorshift64*, seeded per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        (self.next() >> 32) % n
    }
}

/// Stamps every chunk with `tag` (and its position), yields, and checks the stamp is intact.
fn stamp_and_check(allocation: &mut Allocation, tag: u64) {
    let size = allocation.chunk_size();
    for (i, chunk) in allocation.chunks_mut().enumerate() {
        let byte = (tag as u8) ^ (i as u8);
        chunk.fill(byte);
        chunk[..8].copy_from_slice(&tag.to_le_bytes());
        chunk[size - 8..].copy_from_slice(&(i as u64).to_le_bytes());
    }
    thread::yield_now();
    for (i, chunk) in allocation.chunks().enumerate() {
        let byte = (tag as u8) ^ (i as u8);
        assert_eq!(
            chunk[..8],
            tag.to_le_bytes(),
            "chunk {i} shared with another holder"
        );
        assert_eq!(chunk[size - 8..], (i as u64).to_le_bytes());
        assert!(
            chunk[8..size - 8].iter().all(|&b| b == byte),
            "chunk {i} overwritten"
        );
    }
}

fn stress(pool: &Pool, max_request: u64) -> u64 {
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let near_empty = AtomicU64::new(0);
    let samples = AtomicU64::new(0);
    thread::scope(|s| {
        for id in 0..THREADS as u64 {
            let (stop, ops, near_empty, samples) = (&stop, &ops, &near_empty, &samples);
            s.spawn(move || {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id + 1) * 0x1234_5678));
                let mut held: Vec<Allocation> = Vec::new();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    let n = 1 + rng.below(max_request) as usize;
                    let tag = (id << 48) | round;
                    let result = match rng.below(4) {
                        0 => pool.try_allocate(n),
                        1 => pool.allocate_timeout(n, Duration::from_millis(rng.below(3))),
                        // Never wait while holding: that could deadlock the test itself.
                        _ if held.is_empty() => pool.allocate_timeout(n, Duration::from_secs(30)),
                        _ => pool.try_allocate(n),
                    };
                    match result {
                        Ok(mut allocation) => {
                            assert_eq!(allocation.chunk_count(), n);
                            stamp_and_check(&mut allocation, tag);
                            ops.fetch_add(1, Ordering::Relaxed);
                            let stats = pool.stats();
                            samples.fetch_add(1, Ordering::Relaxed);
                            if stats.free_chunks * 4 <= stats.total_chunks {
                                near_empty.fetch_add(1, Ordering::Relaxed);
                            }
                            match rng.below(4) {
                                // Keep it a little longer, alongside others.
                                0 if held.len() < 2 => held.push(allocation),
                                // Release chunk by chunk.
                                1 => {
                                    for (i, mut single) in allocation.split().enumerate() {
                                        stamp_and_check(&mut single, tag ^ (i as u64 + 1));
                                    }
                                }
                                _ => drop(allocation),
                            }
                        }
                        Err(PoolError::WouldBlock { .. } | PoolError::TimedOut { .. }) => {
                            for mut allocation in held.drain(..) {
                                stamp_and_check(&mut allocation, tag);
                            }
                        }
                        Err(other) => panic!("unexpected error {other}"),
                    }
                }
            });
        }
        thread::sleep(RUN_FOR);
        stop.store(true, Ordering::Relaxed);
    });
    let stats = pool.stats();
    assert_eq!(stats.free_chunks, stats.total_chunks, "a chunk was lost");
    assert_eq!(stats.waiters, 0);
    assert!(stats.high_water_chunks <= stats.total_chunks);
    let ops = ops.load(Ordering::Relaxed);
    let (near_empty, samples) = (
        near_empty.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
    );
    eprintln!("{ops} allocations, pool near empty in {near_empty} of {samples} samples, {stats:?}");
    assert!(ops > 1000, "only {ops} allocations");
    assert!(
        near_empty * 2 > samples,
        "the pool was near empty in only {near_empty} of {samples} samples"
    );
    ops
}

#[test]
fn stress_fixed_pool() {
    let pool = Pool::fixed(1024, 24).unwrap();
    stress(&pool, 6);
    assert_eq!(pool.try_allocate(24).unwrap().chunk_count(), 24);
}

#[test]
fn stress_growable_pool() {
    let pool = Pool::new(
        &PoolConfig::growable(0, 30)
            .with_slab_chunks(4)
            .with_chunk_size(512),
    )
    .unwrap();
    stress(&pool, 7);
    assert_eq!(pool.stats().total_chunks, 30);
}

#[cfg(feature = "bytes")]
#[test]
fn stress_frozen_bytes_across_threads() {
    let pool = Pool::fixed(4096, 8).unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<(u64, bytes::Bytes)>(16);
    thread::scope(|s| {
        s.spawn(move || {
            for (tag, bytes) in rx {
                assert!(bytes.iter().all(|&b| b == tag as u8));
            }
        });
        for id in 0..3u64 {
            let (pool, tx) = (&pool, tx.clone());
            s.spawn(move || {
                for round in 0..2000u64 {
                    let tag = id * 7 + round;
                    let mut one = pool.allocate_timeout(1, Duration::from_secs(30)).unwrap();
                    one.chunk_mut(0).fill(tag as u8);
                    let len = 1 + (round as usize * 37) % 4096;
                    tx.send((tag, one.into_bytes(len))).unwrap();
                }
            });
        }
        drop(tx);
    });
    assert_eq!(pool.stats().free_chunks, 8);
}
