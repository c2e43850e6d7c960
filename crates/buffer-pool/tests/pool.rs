#![cfg(not(buffer_pool_loom))]
//! Behaviour of the pool: alignment, errors, all-or-nothing, FIFO fairness, timeouts, growth,
//! statistics, views, lifetime and `bytes` interop.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use buffer_pool::{ConfigError, MAX_CHUNKS, Pool, PoolConfig, PoolError};

const LONG: Duration = Duration::from_secs(20);

/// Waits until the pool reports `n` waiters.
fn wait_for_waiters(pool: &Pool, n: usize) {
    let deadline = Instant::now() + LONG;
    while pool.stats().waiters != n {
        assert!(Instant::now() < deadline, "never saw {n} waiters");
        thread::sleep(Duration::from_millis(1));
    }
}

fn assert_aligned(pool: &Pool, chunks: usize) {
    let all = pool.try_allocate(chunks).expect("the whole pool is free");
    assert_eq!(all.chunk_count(), chunks);
    let mut addresses: Vec<usize> = all.chunk_ptrs().map(|p| p.as_ptr() as usize).collect();
    for address in &addresses {
        assert_eq!(
            address % 4096,
            0,
            "chunk at {address:#x} is not 4 KiB-aligned"
        );
    }
    for chunk in all.chunks() {
        assert_eq!(chunk.len(), pool.chunk_size());
        assert_eq!(chunk.as_ptr() as usize % 4096, 0);
    }
    // No two chunks overlap.
    addresses.sort_unstable();
    for pair in addresses.windows(2) {
        assert!(pair[1] - pair[0] >= pool.chunk_size().max(4096));
    }
}

#[test]
fn every_chunk_is_4k_aligned_in_both_backends() {
    for chunk_size in [512, 1024, 2048, 4096, 8192, 65536] {
        let fixed = Pool::fixed(chunk_size, 37).unwrap();
        assert_aligned(&fixed, 37);
        let growable = Pool::new(
            &PoolConfig::growable(0, 37)
                .with_chunk_size(chunk_size)
                .with_slab_chunks(4),
        )
        .unwrap();
        assert_eq!(growable.stats().total_chunks, 0);
        // Grows slab by slab while handing out single chunks, then hands out everything.
        let singles: Vec<_> = (0..37).map(|_| growable.try_allocate(1).unwrap()).collect();
        for single in &singles {
            assert_eq!(single.chunk(0).as_ptr() as usize % 4096, 0);
        }
        assert_eq!(growable.stats().total_chunks, 37);
        drop(singles);
        assert_aligned(&growable, 37);
    }
}

#[test]
fn bad_requests_fail_at_once() {
    let pool = Pool::fixed(4096, 4).unwrap();
    assert_eq!(pool.allocate(0).unwrap_err(), PoolError::ZeroChunks);
    assert_eq!(pool.try_allocate(0).unwrap_err(), PoolError::ZeroChunks);
    let too_large = PoolError::TooLarge {
        requested: 5,
        max_chunks: 4,
    };
    assert_eq!(pool.allocate(5).unwrap_err(), too_large);
    assert_eq!(pool.try_allocate(5).unwrap_err(), too_large);
    assert_eq!(pool.allocate_timeout(5, LONG).unwrap_err(), too_large);
    // Even while everything is taken: still an error, not a wait.
    let _all = pool.allocate(4).unwrap();
    assert_eq!(pool.allocate(usize::MAX).unwrap_err().to_string(), {
        format!(
            "{} chunks requested but the pool never holds more than 4",
            usize::MAX
        )
    });
    // A growable pool's bound is its maximum, not its current size.
    let growable = Pool::growable(4096, 1, 8).unwrap();
    assert!(matches!(
        growable.allocate(9),
        Err(PoolError::TooLarge {
            requested: 9,
            max_chunks: 8
        })
    ));
    assert_eq!(growable.allocate(8).unwrap().chunk_count(), 8);
}

/// A growth step larger than the pool (even `usize::MAX`) is capped at the pool's size, not
/// an overflow.
#[test]
fn a_huge_slab_size_is_capped_at_the_pool_size() {
    for slab_chunks in [11, 1 << 40, usize::MAX / 2 + 2, usize::MAX] {
        let pool = Pool::new(&PoolConfig::growable(1, 10).with_slab_chunks(slab_chunks)).unwrap();
        let all = pool.allocate(10).unwrap();
        assert_eq!(all.chunk_count(), 10, "slab_chunks {slab_chunks}");
        assert!(pool.try_allocate(1).is_err(), "slab_chunks {slab_chunks}");
    }
}

#[test]
fn bad_configs_are_refused() {
    for chunk_size in [0, 1, 256, 511, 513, 3000, 4097, 1 << 31] {
        assert_eq!(
            Pool::fixed(chunk_size, 4).unwrap_err(),
            ConfigError::ChunkSize { chunk_size }
        );
    }
    assert_eq!(
        Pool::fixed(4096, 0).unwrap_err(),
        ConfigError::ChunkCount { chunks: 0 }
    );
    assert_eq!(
        Pool::fixed(4096, MAX_CHUNKS + 1).unwrap_err(),
        ConfigError::ChunkCount {
            chunks: MAX_CHUNKS + 1
        }
    );
    assert_eq!(
        Pool::growable(4096, 9, 8).unwrap_err(),
        ConfigError::InitialAboveMax { initial: 9, max: 8 }
    );
    assert!(Pool::fixed(512, 1).is_ok());
    assert!(PoolConfig::fixed(3).is_fixed());
    assert!(!PoolConfig::growable(1, 3).is_fixed());
}

#[test]
fn try_allocate_is_all_or_nothing() {
    let pool = Pool::fixed(4096, 4).unwrap();
    let three = pool.try_allocate(3).unwrap();
    assert_eq!(
        pool.try_allocate(2).unwrap_err(),
        PoolError::WouldBlock {
            requested: 2,
            free: 1
        }
    );
    // The failed request took nothing.
    assert_eq!(pool.stats().free_chunks, 1);
    let one = pool.try_allocate(1).unwrap();
    assert_eq!(pool.stats().free_chunks, 0);
    drop(three);
    drop(one);
    assert_eq!(pool.try_allocate(4).unwrap().chunk_count(), 4);
}

#[test]
fn frozen_core_deadlock_two_threads_each_wanting_three_of_four() {
    let pool = Pool::fixed(4096, 4).unwrap();
    let rounds = 300;
    thread::scope(|s| {
        for id in 0..2u8 {
            let pool = &pool;
            s.spawn(move || {
                for round in 0..rounds {
                    let mut three = pool
                        .allocate_timeout(3, LONG)
                        .expect("two 3-of-4 requests must never deadlock");
                    for chunk in three.chunks_mut() {
                        chunk[0] = id;
                        chunk[4095] = round as u8;
                    }
                    thread::yield_now();
                    for chunk in three.chunks() {
                        assert_eq!((chunk[0], chunk[4095]), (id, round as u8));
                    }
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!((stats.free_chunks, stats.waiters), (4, 0));
    assert_eq!(stats.high_water_chunks, 3);
}

#[test]
fn waiters_are_served_in_arrival_order_and_never_overtaken() {
    let pool = Pool::fixed(4096, 4).unwrap();
    let held = pool.allocate(4).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    thread::scope(|s| {
        let big_tx = done_tx.clone();
        let pool = &pool;
        let big = s.spawn(move || {
            let got = pool.allocate(3).unwrap();
            big_tx.send("big").unwrap();
            got
        });
        wait_for_waiters(pool, 1);
        let small = s.spawn(move || {
            let got = pool.allocate(1).unwrap();
            done_tx.send("small").unwrap();
            got
        });
        wait_for_waiters(pool, 2);

        // Free two chunks: the small request could be served, but it is behind the big one.
        let mut pieces = held.split();
        drop(pieces.next());
        drop(pieces.next());
        assert!(done_rx.recv_timeout(Duration::from_millis(100)).is_err());
        assert_eq!(pool.stats().free_chunks, 2);
        // A newcomer does not jump the queue either.
        assert!(matches!(
            pool.try_allocate(1),
            Err(PoolError::WouldBlock { free: 2, .. })
        ));
        assert!(matches!(
            pool.allocate_timeout(1, Duration::from_millis(20)),
            Err(PoolError::TimedOut { requested: 1, .. })
        ));

        // The third chunk completes the big request; the small one still waits.
        drop(pieces.next());
        assert_eq!(done_rx.recv_timeout(LONG).unwrap(), "big");
        assert!(done_rx.recv_timeout(Duration::from_millis(50)).is_err());
        drop(pieces); // the last chunk
        assert_eq!(done_rx.recv_timeout(LONG).unwrap(), "small");
        assert_eq!(big.join().unwrap().chunk_count(), 3);
        assert_eq!(small.join().unwrap().chunk_count(), 1);
    });
    assert_eq!(pool.stats().waiters, 0);
    assert_eq!(pool.stats().free_chunks, 4);
}

#[test]
fn a_timed_out_head_request_lets_the_ones_behind_it_through() {
    let pool = Pool::fixed(4096, 4).unwrap();
    let held = pool.allocate(3).unwrap();
    thread::scope(|s| {
        let pool = &pool;
        let big = s.spawn(move || pool.allocate_timeout(4, Duration::from_millis(200)));
        wait_for_waiters(pool, 1);
        let small = s.spawn(move || pool.allocate(1).map(|a| a.chunk_count()));
        wait_for_waiters(pool, 2);
        // One chunk is free, but the small request waits behind the big one until it gives up.
        let started = Instant::now();
        assert_eq!(
            big.join().unwrap().unwrap_err(),
            PoolError::TimedOut {
                requested: 4,
                timeout: Duration::from_millis(200)
            }
        );
        assert!(started.elapsed() < LONG);
        assert_eq!(small.join().unwrap(), Ok(1));
    });
    drop(held);
    let stats = pool.stats();
    assert_eq!((stats.free_chunks, stats.waiters), (4, 0));
    assert_eq!(pool.try_allocate(4).unwrap().chunk_count(), 4);
}

#[test]
fn timeouts_expire_and_leave_the_pool_intact() {
    let pool = Pool::fixed(4096, 2).unwrap();
    let held = pool.allocate(2).unwrap();
    let started = Instant::now();
    let err = pool
        .allocate_timeout(1, Duration::from_millis(30))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(30));
    assert_eq!(
        err,
        PoolError::TimedOut {
            requested: 1,
            timeout: Duration::from_millis(30)
        }
    );
    assert_eq!(pool.stats().waiters, 0);
    assert!(
        pool.allocate_timeout(1, Duration::ZERO).is_err(),
        "a zero timeout does not wait"
    );
    drop(held);
    assert_eq!(
        pool.allocate_timeout(2, Duration::ZERO)
            .unwrap()
            .chunk_count(),
        2
    );
    // A huge timeout is a plain wait.
    assert_eq!(
        pool.allocate_timeout(1, Duration::MAX)
            .unwrap()
            .chunk_count(),
        1
    );
}

#[test]
fn a_blocked_request_wakes_when_chunks_come_back() {
    let pool = Pool::fixed(4096, 3).unwrap();
    let held = pool.allocate(3).unwrap();
    thread::scope(|s| {
        let waiter = s.spawn(|| pool.allocate(3).map(|a| a.chunk_count()));
        wait_for_waiters(&pool, 1);
        drop(held);
        assert_eq!(waiter.join().unwrap(), Ok(3));
    });
}

#[test]
fn a_growable_pool_grows_in_slabs_up_to_its_bound() {
    let pool = Pool::new(&PoolConfig::growable(3, 10).with_slab_chunks(4)).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.total_chunks, stats.free_chunks), (4, 4));
    assert_eq!(stats.max_chunks, 10);
    let a = pool.try_allocate(5).unwrap();
    assert_eq!(pool.stats().total_chunks, 8);
    let b = pool.try_allocate(5).unwrap(); // the last slab is short: 2 chunks
    assert_eq!(pool.stats().total_chunks, 10);
    assert_eq!(pool.stats().free_chunks, 0);
    assert!(matches!(
        pool.try_allocate(1),
        Err(PoolError::WouldBlock { free: 0, .. })
    ));
    drop(a);
    drop(b);
    let stats = pool.stats();
    assert_eq!(
        (
            stats.total_chunks,
            stats.free_chunks,
            stats.high_water_chunks
        ),
        (10, 10, 10)
    );
    assert_eq!(stats.reserved_bytes(), 10 * 4096);
    // A waiting request makes the pool grow too.
    let pool = Pool::new(&PoolConfig::growable(0, 8).with_slab_chunks(2)).unwrap();
    let first = pool.allocate(3).unwrap();
    assert_eq!(pool.stats().total_chunks, 4);
    let second = pool.allocate(5).unwrap();
    assert_eq!(pool.stats().total_chunks, 8);
    drop((first, second));
}

#[test]
fn stats_report_chunks_and_bytes() {
    let pool = Pool::fixed(8192, 6).unwrap();
    let stats = pool.stats();
    assert_eq!(stats.total_chunks, 6);
    assert_eq!(stats.free_chunks, 6);
    assert_eq!(stats.in_use_chunks(), 0);
    assert_eq!(stats.high_water_chunks, 0);
    assert_eq!(stats.max_bytes(), 6 * 8192);
    let a = pool.allocate(2).unwrap();
    let b = pool.allocate(3).unwrap();
    drop(a);
    let stats = pool.stats();
    assert_eq!(stats.in_use_chunks(), 3);
    assert_eq!(stats.in_use_bytes(), 3 * 8192);
    assert_eq!(stats.free_bytes(), 3 * 8192);
    assert_eq!(stats.high_water_chunks, 5);
    assert_eq!(stats.high_water_bytes(), 5 * 8192);
    assert_eq!(stats.total_bytes(), 6 * 8192);
    drop(b);
    // Small chunks keep a 4 KiB stride.
    let small = Pool::fixed(512, 4).unwrap().stats();
    assert_eq!(
        (
            small.chunk_stride,
            small.reserved_bytes(),
            small.total_bytes()
        ),
        (4096, 16384, 2048)
    );
}

#[test]
fn views_cover_the_chunks_in_order() {
    let pool = Pool::fixed(512, 8).unwrap();
    let mut a = pool.allocate(3).unwrap();
    assert_eq!(
        (a.chunk_count(), a.chunk_size(), a.capacity()),
        (3, 512, 1536)
    );
    let data: Vec<u8> = (0..1200u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(a.fill(&data), 1200);
    assert_eq!(a.chunk(0), &data[..512]);
    assert_eq!(a.chunk(1), &data[512..1024]);
    assert_eq!(&a.chunk(2)[..176], &data[1024..]);
    assert!(a.get(3).is_none());
    assert!(a.get_mut(3).is_none());
    let slices = a.io_slices();
    assert_eq!(slices.len(), 3);
    assert!(slices.iter().all(|s| s.len() == 512));
    let mut partial = Vec::new();
    a.extend_io_slices(1200, &mut partial);
    let lens: Vec<usize> = partial.iter().map(|s| s.len()).collect();
    assert_eq!(lens, [512, 512, 176]);
    let joined: Vec<u8> = partial.iter().flat_map(|s| s.iter().copied()).collect();
    assert_eq!(joined, data);
    drop((slices, partial));
    let ptrs: Vec<_> = a.chunk_ptrs().collect();
    let starts: Vec<_> = a.chunks().map(|c| c.as_ptr()).collect();
    assert_eq!(
        ptrs.iter()
            .map(|p| p.as_ptr().cast_const())
            .collect::<Vec<_>>(),
        starts
    );
    a.chunk_mut(1).fill(7);
    assert!(a.io_slices_mut()[1].iter().all(|&b| b == 7));
    assert_eq!(a.fill(&vec![1; 5000]), 1536, "fill stops at the capacity");
    assert!(format!("{a:?}").contains("chunk_count: 3"));
}

#[test]
#[should_panic(expected = "chunk 2 of an allocation of 2")]
fn chunk_out_of_range_panics() {
    let pool = Pool::fixed(4096, 2).unwrap();
    let a = pool.allocate(2).unwrap();
    let _ = a.chunk(2);
}

#[test]
fn split_returns_chunks_one_by_one() {
    let pool = Pool::fixed(4096, 5).unwrap();
    let mut a = pool.allocate(5).unwrap();
    for (i, chunk) in a.chunks_mut().enumerate() {
        chunk[0] = i as u8;
    }
    let mut split = a.split();
    assert_eq!(split.len(), 5);
    let first = split.next().unwrap();
    let second = split.next().unwrap();
    assert_eq!((first.chunk(0)[0], second.chunk(0)[0]), (0, 1));
    assert_eq!(pool.stats().free_chunks, 0);
    drop(first);
    assert_eq!(pool.stats().free_chunks, 1);
    // The first chunk is back and can be taken again; the split still walks its own run.
    let again = pool.try_allocate(1).unwrap();
    let third = split.next().unwrap();
    assert_eq!(third.chunk(0)[0], 2);
    drop(split); // chunks 3 and 4
    assert_eq!(pool.stats().free_chunks, 2);
    drop((again, second, third));
    assert_eq!(pool.stats().free_chunks, 5);
}

#[test]
fn allocations_outlive_the_pool_handle() {
    let pool = Pool::growable(4096, 2, 8).unwrap();
    let clone = pool.clone();
    let mut a = pool.allocate(5).unwrap();
    drop(pool);
    let b = clone.allocate(1).unwrap();
    drop(clone);
    a.fill(b"still here");
    assert_eq!(&a.chunk(0)[..10], b"still here");
    let handle = thread::spawn(move || {
        drop(b);
        a.chunk(4).len()
    });
    assert_eq!(handle.join().unwrap(), 4096);
    // Pools dropped with everything free, and with nothing ever allocated.
    drop(Pool::fixed(4096, 3).unwrap());
    let pool = Pool::fixed(4096, 3).unwrap();
    drop(pool.allocate(2).unwrap());
    drop(pool);
}

#[test]
fn allocations_are_send_sync_static() {
    fn check<T: Send + Sync + 'static>() {}
    check::<buffer_pool::Allocation>();
    check::<Pool>();
    check::<buffer_pool::Split>();
}

#[cfg(feature = "bytes")]
#[test]
fn frozen_chunks_return_to_the_pool_when_the_last_clone_drops() {
    let pool = Pool::fixed(4096, 4).unwrap();
    let mut one = pool.allocate(1).unwrap();
    one.fill(b"hello pool");
    let address = one.chunk(0).as_ptr();
    let bytes = one.into_bytes(10);
    assert_eq!(&bytes[..], b"hello pool");
    assert_eq!(bytes.as_ptr(), address, "no copy");
    let clone = bytes.slice(6..);
    assert_eq!(&clone[..], b"pool");
    drop(bytes);
    assert_eq!(pool.stats().free_chunks, 3, "a clone still holds the chunk");
    drop(clone);
    assert_eq!(pool.stats().free_chunks, 4);

    let mut three = pool.allocate(3).unwrap();
    let data: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    three.fill(&data);
    let frozen = three.freeze(5000);
    assert_eq!(frozen.len(), 2);
    assert_eq!(
        pool.stats().free_chunks,
        2,
        "the untouched third chunk went back"
    );
    assert_eq!((frozen[0].len(), frozen[1].len()), (4096, 904));
    let joined: Vec<u8> = frozen.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(joined, data);
    // Bytes travel to other threads and keep the chunk (and the pool's memory) alive.
    drop(pool);
    let handle = thread::spawn(move || frozen.iter().map(|b| b.len()).sum::<usize>());
    assert_eq!(handle.join().unwrap(), 5000);
}

#[cfg(feature = "bytes")]
#[test]
#[should_panic(expected = "into_bytes needs a single-chunk allocation")]
fn into_bytes_of_several_chunks_panics() {
    let pool = Pool::fixed(4096, 2).unwrap();
    let _ = pool.allocate(2).unwrap().into_bytes(1);
}

#[test]
fn scattered_runs_are_walked_in_link_order() {
    for slots in [true, false] {
        let pool = Pool::new(&PoolConfig::fixed(8).with_thread_slots(slots)).unwrap();
        // Take every chunk one by one and give them back in a scrambled order, so that the
        // next multi-chunk run is not a contiguous block.
        let singles: Vec<_> = (0..8).map(|_| pool.try_allocate(1).unwrap()).collect();
        let mut order: Vec<_> = singles.into_iter().enumerate().collect();
        order.sort_by_key(|(i, _)| (i * 5) % 8);
        drop(order);
        let mut run = pool.try_allocate(6).unwrap();
        let addresses: Vec<usize> = run.chunk_ptrs().map(|p| p.as_ptr() as usize).collect();
        let mut distinct = addresses.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 6);
        for (i, chunk) in run.chunks_mut().enumerate() {
            chunk[0] = i as u8;
        }
        for (i, address) in addresses.iter().enumerate() {
            assert_eq!(run.chunk(i)[0], i as u8);
            assert_eq!(run.chunk(i).as_ptr() as usize, *address);
        }
        let pieces: Vec<_> = run.split().collect();
        for (i, piece) in pieces.iter().enumerate() {
            assert_eq!(piece.chunk(0)[0], i as u8);
        }
        drop(pieces);
        assert_eq!(pool.stats().free_chunks, 8);
        assert_eq!(pool.try_allocate(8).unwrap().chunk_count(), 8);
    }
}

#[test]
fn without_thread_slots_the_stats_are_exact() {
    let pool = Pool::new(&PoolConfig::fixed(6).with_thread_slots(false)).unwrap();
    let a = pool.allocate(2).unwrap();
    drop(pool.allocate(3).unwrap());
    let b = pool.allocate(1).unwrap();
    let stats = pool.stats();
    assert_eq!((stats.free_chunks, stats.high_water_chunks), (3, 5));
    drop((a, b));
    assert_eq!(pool.stats().free_chunks, 6);
}
