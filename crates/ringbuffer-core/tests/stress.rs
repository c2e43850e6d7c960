#![cfg(not(ringbuffer_loom))]
//! Real threads, small rings (forcing many wrap-arounds), exact accounting: no loss, no
//! duplicate, no reorder. Each test is bounded to a few seconds in a debug build.

use std::thread;

use ringbuffer_core::{Error, RingBuilder, WaitStrategy};

/// Entry encoding: producer id in the top 16 bits, per-producer counter below.
fn entry(producer: u64, i: u64) -> u64 {
    (producer << 48) | i
}

fn checksum(producers: u64, per_producer: u64) -> u64 {
    (0..producers)
        .flat_map(|p| (0..per_producer).map(move |i| entry(p, i)))
        .fold(0u64, |a, v| {
            a.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        })
}

/// Checks per-producer order; returns (count, checksum).
struct Checker {
    next: Vec<u64>,
    count: u64,
    sum: u64,
}

impl Checker {
    fn new(producers: u64) -> Self {
        Self {
            next: vec![0; producers as usize],
            count: 0,
            sum: 0,
        }
    }

    fn see(&mut self, v: u64) {
        let (p, i) = ((v >> 48) as usize, v & ((1 << 48) - 1));
        assert_eq!(i, self.next[p], "producer {p} out of order");
        self.next[p] += 1;
        self.count += 1;
        self.sum = self.sum.wrapping_add(v.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

#[test]
fn mpsc_many_producers_batches_and_wrap() {
    for strategy in [WaitStrategy::Blocking, WaitStrategy::Yield] {
        const PRODUCERS: u64 = 4;
        const PER: u64 = 20_000;
        let (producer, mut consumer) = RingBuilder::<u64>::new(16)
            .wait_strategy(strategy)
            .mpsc()
            .unwrap();
        let handles: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let producer = producer.clone();
                thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        let n = (1 + (i % 7)).min(PER - i) as usize;
                        let mut claim = producer.claim(n).unwrap();
                        for slot in claim.iter_mut() {
                            *slot = entry(p, i);
                            i += 1;
                        }
                        claim.publish();
                    }
                })
            })
            .collect();
        drop(producer);
        let mut check = Checker::new(PRODUCERS);
        loop {
            match consumer.read() {
                Ok(batch) => batch.iter().for_each(|v| check.see(*v)),
                Err(Error::Closed) => break,
                Err(e) => panic!("{e}"),
            }
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(check.count, PRODUCERS * PER);
        assert_eq!(check.sum, checksum(PRODUCERS, PER));
    }
}

#[test]
fn mpsc_try_and_timeout_claims_mixed() {
    const PRODUCERS: u64 = 3;
    const PER: u64 = 10_000;
    let (producer, mut consumer) = RingBuilder::<u64>::new(8).mpsc().unwrap();
    let handles: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let producer = producer.clone();
            thread::spawn(move || {
                for i in 0..PER {
                    let mut claim = loop {
                        let attempt = if i % 2 == 0 {
                            producer.try_claim(1)
                        } else {
                            producer.claim_timeout(1, std::time::Duration::from_millis(1))
                        };
                        match attempt {
                            Ok(c) => break c,
                            Err(Error::Full | Error::Timeout) => thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    };
                    claim.write(0, entry(p, i));
                    claim.publish();
                }
            })
        })
        .collect();
    drop(producer);
    let mut check = Checker::new(PRODUCERS);
    while let Ok(batch) = consumer.read() {
        batch.iter().for_each(|v| check.see(*v));
    }
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(check.count, PRODUCERS * PER);
    assert_eq!(check.sum, checksum(PRODUCERS, PER));
}

#[test]
fn broadcast_subscribers_all_see_everything() {
    const N: u64 = 50_000;
    let (mut producer, subs) = RingBuilder::<u64>::new(8).broadcast(3).unwrap();
    let handles: Vec<_> = subs
        .into_iter()
        .map(|mut sub| {
            thread::spawn(move || {
                let mut check = Checker::new(1);
                while let Ok(batch) = sub.read() {
                    batch.iter().for_each(|v| check.see(*v));
                }
                (check.count, check.sum)
            })
        })
        .collect();
    // A subscriber that joins and leaves repeatedly while the producer runs: whatever it
    // sees must be a contiguous run in order.
    let joiner = {
        let mut current = producer.subscribe();
        thread::spawn(move || {
            for _ in 0..50 {
                let mut expected = None;
                for _ in 0..5 {
                    match current.read() {
                        Ok(batch) => {
                            for v in batch.iter() {
                                if let Some(e) = expected {
                                    assert_eq!(*v, e);
                                }
                                expected = Some(*v + 1);
                            }
                        }
                        Err(_) => return,
                    }
                }
                // Join anew (from this thread, while the producer runs), then leave the old.
                current = current.subscribe();
            }
            while current.read().is_ok() {}
        })
    };
    let mut i = 0;
    while i < N {
        let n = (1 + i % 5).min(N - i) as usize;
        let mut claim = producer.claim(n).unwrap();
        for slot in claim.iter_mut() {
            *slot = entry(0, i);
            i += 1;
        }
        claim.publish();
    }
    producer.close();
    for h in handles {
        assert_eq!(h.join().unwrap(), (N, checksum(1, N)));
    }
    joiner.join().unwrap();
}

#[test]
fn work_sharing_each_entry_once() {
    const N: u64 = 60_000;
    let (mut producer, workers) = RingBuilder::<u64>::new(16)
        .work_batch(4)
        .work_sharing(3)
        .unwrap();
    let handles: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            thread::spawn(move || {
                let mut seen = Vec::new();
                while let Ok(batch) = w.read() {
                    let mut last = None;
                    for v in batch.iter() {
                        if let Some(l) = last {
                            assert_eq!(*v, l + 1, "a batch is a contiguous run");
                        }
                        last = Some(*v);
                        seen.push(*v);
                    }
                }
                seen
            })
        })
        .collect();
    for i in 0..N {
        producer.push(i).unwrap();
    }
    producer.close();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>());
}

#[test]
fn spsc_oversubscribed_with_hogs() {
    // More busy threads than cores: the default strategy must not collapse.
    const N: u64 = 200_000;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    let (mut p, mut c) = RingBuilder::<u64>::new(32).spsc().unwrap();
    let reader = thread::spawn(move || {
        let mut next = 0;
        while let Ok(b) = c.read() {
            for v in b.iter() {
                assert_eq!(*v, next);
                next += 1;
            }
        }
        next
    });
    for i in 0..N {
        p.push(i).unwrap();
    }
    drop(p);
    assert_eq!(reader.join().unwrap(), N);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
}

/// The one-event path (`push` / `publish_with`) fetches slot lines ahead of itself, spaced by
/// the slot size: every size must still deliver every value once and in order, on a ring
/// small enough that the lines it fetches are often ones the consumer has not released.
fn one_event_path_delivers_in_order<T: Default + Send + Sync + 'static>(
    make: fn(u64) -> T,
    key: fn(&T) -> u64,
) {
    const N: u64 = 50_000;
    for capacity in [8usize, 64, 256] {
        let (mut p, mut c) = RingBuilder::<T>::new(capacity).spsc().unwrap();
        let reader = thread::spawn(move || {
            let mut next = 0u64;
            while let Ok(b) = c.read() {
                for v in b.iter() {
                    assert_eq!(key(v), next, "capacity {capacity}: out of order");
                    next += 1;
                }
            }
            next
        });
        for i in 0..N {
            p.publish_with(|slot| *slot = make(i)).unwrap();
        }
        drop(p);
        assert_eq!(
            reader.join().unwrap(),
            N,
            "capacity {capacity}: lost entries"
        );
    }
}

#[test]
fn one_event_path_any_slot_size() {
    // 24 bytes: lines and slots do not line up.
    one_event_path_delivers_in_order::<[u64; 3]>(
        |i| [i, !i, i ^ 7],
        |v| {
            assert_eq!((v[1], v[2]), (!v[0], v[0] ^ 7), "torn entry");
            v[0]
        },
    );
    // A whole line per slot.
    one_event_path_delivers_in_order::<[u64; 8]>(
        |i| [i; 8],
        |v| {
            assert!(v.iter().all(|x| *x == v[0]), "torn entry");
            v[0]
        },
    );
}

#[test]
fn one_event_path_zero_sized_entries_are_counted() {
    const N: u64 = 50_000;
    let (mut p, mut c) = RingBuilder::<()>::new(16).spsc().unwrap();
    let reader = thread::spawn(move || {
        let mut count = 0u64;
        while let Ok(b) = c.read() {
            count += b.len() as u64;
        }
        count
    });
    for _ in 0..N {
        p.push(()).unwrap();
    }
    drop(p);
    assert_eq!(reader.join().unwrap(), N);
}
