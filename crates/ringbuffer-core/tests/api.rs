#![cfg(not(ringbuffer_loom))]
//! Behaviour of the public API: errors, close, drop, laggards, timeouts.

use std::time::Duration;

use ringbuffer_core::{Error, LagPolicy, RingBuilder, WaitStrategy};

#[test]
fn bad_capacities_are_typed_errors() {
    assert_eq!(
        RingBuilder::<u64>::new(0).mpsc().err(),
        Some(Error::ZeroCapacity)
    );
    assert_eq!(
        RingBuilder::<u64>::new(12).spsc().err(),
        Some(Error::CapacityNotPowerOfTwo { capacity: 12 })
    );
    assert_eq!(
        RingBuilder::<u64>::new(3).broadcast(1).err(),
        Some(Error::CapacityNotPowerOfTwo { capacity: 3 })
    );
    // Beyond the sequence space, and within it but beyond the address space (2^60 slots of
    // 8 bytes): a typed error, not an allocation panic or abort.
    assert_eq!(
        RingBuilder::<u64>::new(1 << 62).spsc().err(),
        Some(Error::CapacityTooLarge { capacity: 1 << 62 })
    );
    assert_eq!(
        RingBuilder::<u64>::new(1 << 60).spsc().err(),
        Some(Error::CapacityTooLarge { capacity: 1 << 60 })
    );
    assert_eq!(
        RingBuilder::<u8>::new(1 << 59).mpsc().err(),
        Some(Error::CapacityTooLarge { capacity: 1 << 59 })
    );
    // Consumer handles that cannot be allocated: a typed error, not a capacity-overflow panic.
    assert_eq!(
        RingBuilder::<u64>::new(8).broadcast(usize::MAX).err(),
        Some(Error::TooManyConsumers {
            requested: usize::MAX
        })
    );
    assert_eq!(
        RingBuilder::<u64>::new(8).work_sharing(usize::MAX).err(),
        Some(Error::TooManyConsumers {
            requested: usize::MAX
        })
    );
    assert_eq!(
        RingBuilder::<u64>::new(0).work_sharing(2).err(),
        Some(Error::ZeroCapacity)
    );
    assert_eq!(
        RingBuilder::<u64>::new(8).work_sharing(0).err(),
        Some(Error::ZeroConsumers)
    );
    assert_eq!(
        RingBuilder::<u64>::new(8)
            .work_batch(16)
            .work_sharing(1)
            .err(),
        Some(Error::ClaimTooLarge {
            requested: 16,
            capacity: 8
        })
    );
}

#[test]
fn bad_claims_are_typed_errors() {
    let (p, _c) = RingBuilder::<u64>::new(8).mpsc().unwrap();
    assert_eq!(p.claim(0).err(), Some(Error::ZeroClaim));
    assert_eq!(
        p.claim(9).err(),
        Some(Error::ClaimTooLarge {
            requested: 9,
            capacity: 8
        })
    );
    assert_eq!(p.try_claim(0).err(), Some(Error::ZeroClaim));
    assert_eq!(
        p.claim_timeout(9, Duration::ZERO).err(),
        Some(Error::ClaimTooLarge {
            requested: 9,
            capacity: 8
        })
    );
    let (mut sp, _c) = RingBuilder::<u64>::new(8).spsc().unwrap();
    assert_eq!(sp.claim(0).err(), Some(Error::ZeroClaim));
    assert_eq!(
        sp.try_claim(100).err(),
        Some(Error::ClaimTooLarge {
            requested: 100,
            capacity: 8
        })
    );
}

#[test]
fn spsc_batches_wrap_and_close() {
    let (mut p, mut c) = RingBuilder::<u64>::new(4).spsc().unwrap();
    assert_eq!(c.try_read().err(), Some(Error::Empty));
    let mut claim = p.claim(3).unwrap();
    assert_eq!(claim.first_sequence(), 0);
    for (i, slot) in claim.iter_mut().enumerate() {
        *slot = i as u64;
    }
    claim.publish();
    assert_eq!(p.try_claim(2).err(), Some(Error::Full));
    assert_eq!(
        p.claim_timeout(2, Duration::from_millis(5)).err(),
        Some(Error::Timeout)
    );
    {
        let batch = c.read().unwrap();
        assert_eq!(batch.iter().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        let mut ends = Vec::new();
        batch.for_each(|seq, _, end| ends.push((seq, end)));
        assert_eq!(ends, vec![(0, false), (1, false), (2, true)]);
    }
    // Wraps: sequences 3..7 live in slots 3, 0, 1, 2.
    let mut claim = p.claim(4).unwrap();
    let (a, b) = claim.as_mut_slices();
    assert_eq!((a.len(), b.len()), (1, 3));
    a[0] = 3;
    b.copy_from_slice(&[4, 5, 6]);
    claim.publish();
    p.close();
    assert_eq!(p.claim(1).err(), Some(Error::Closed));
    let batch = c.read().unwrap();
    let (a, b) = batch.as_slices();
    assert_eq!([a, b].concat(), vec![3, 4, 5, 6]);
    drop(batch);
    assert_eq!(c.read().err(), Some(Error::Closed));
    assert_eq!(c.try_read().err(), Some(Error::Closed));
}

#[test]
fn dropped_claim_publishes_factory_values() {
    let (p, mut c) = RingBuilder::with_factory(4, || 7u64).mpsc().unwrap();
    p.push(1).unwrap();
    {
        let mut claim = p.claim(2).unwrap();
        claim.write(0, 99);
        // dropped without publish
    }
    p.push(2).unwrap();
    let batch = c.read().unwrap();
    assert_eq!(batch.iter().copied().collect::<Vec<_>>(), vec![1, 7, 7, 2]);
}

#[test]
fn consumer_drop_unblocks_and_closes_producers() {
    let (p, c) = RingBuilder::<u64>::new(2).mpsc().unwrap();
    p.push(1).unwrap();
    p.push(2).unwrap();
    let t = std::thread::spawn(move || p.push(3));
    std::thread::sleep(Duration::from_millis(20));
    drop(c);
    assert_eq!(t.join().unwrap(), Err(Error::Closed));
    let (mut sp, c) = RingBuilder::<u64>::new(2).spsc().unwrap();
    drop(c);
    assert_eq!(sp.push(1), Err(Error::Closed));
}

/// The single-event path looks at the consumers every 64 events (not on each): a consumer
/// that goes away mid-stream is noticed within 64 events, and claims notice it at once.
#[test]
fn a_single_producer_notices_a_departed_consumer_within_64_events() {
    let (mut sp, mut c) = RingBuilder::<u64>::new(1024).spsc().unwrap();
    for i in 0..10 {
        sp.push(i).unwrap();
    }
    assert_eq!(c.read().unwrap().len(), 10);
    drop(c);
    let accepted = (0..=64).take_while(|&i| sp.push(i).is_ok()).count();
    assert!(
        accepted <= 64,
        "{accepted} events accepted after the consumer left"
    );
    assert_eq!(sp.push(0), Err(Error::Closed));
    assert_eq!(sp.claim(1).err(), Some(Error::Closed));

    // Closing refuses the very next event, whatever the check window.
    let (mut sp, _c) = RingBuilder::<u64>::new(1024).spsc().unwrap();
    sp.push(1).unwrap();
    sp.close();
    assert_eq!(sp.push(2), Err(Error::Closed));
}

#[test]
fn close_wakes_parked_consumer_and_keeps_granted_claims() {
    let (p, mut c) = RingBuilder::<u64>::new(8).mpsc().unwrap();
    let p2 = p.clone();
    let claim = p2.claim(1).unwrap();
    p.close();
    assert_eq!(p.push(5), Err(Error::Closed));
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        loop {
            match c.read() {
                Ok(b) => got.extend(b.iter().copied()),
                Err(e) => return (got, e),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(20));
    let mut claim = claim;
    claim.write(0, 42);
    claim.publish();
    let (got, err) = reader.join().unwrap();
    assert_eq!(got, vec![42]);
    assert_eq!(err, Error::Closed);
}

#[test]
fn a_producer_waiting_for_space_holds_no_sequences() {
    // A full ring: the waiting producer must not have taken sequence 2 already, or the close
    // would leave the consumer a granted claim to wait for (or a hole to read past).
    let (p, mut c) = RingBuilder::<u64>::new(2).mpsc().unwrap();
    p.push(1).unwrap();
    p.push(2).unwrap();
    let waiting = {
        let p = p.clone();
        std::thread::spawn(move || p.push(3))
    };
    assert_eq!(p.try_claim(1).err(), Some(Error::Full));
    // Whether the waiting producer got to wait yet or not, it took nothing: the close leaves
    // exactly the two published entries (a taken sequence would be granted and read too).
    p.close();
    assert_eq!(waiting.join().unwrap(), Err(Error::Closed));
    let mut got = Vec::new();
    let end = loop {
        match c.read() {
            Ok(batch) => got.extend(batch.iter().copied()),
            Err(e) => break e,
        }
    };
    assert_eq!((got, end), (vec![1, 2], Error::Closed));
}

#[test]
fn read_timeout_and_parked_wakeup() {
    let (mut p, mut c) = RingBuilder::<u64>::new(8).spsc().unwrap();
    assert_eq!(
        c.read_timeout(Duration::from_millis(5)).err(),
        Some(Error::Timeout)
    );
    let t = std::thread::spawn(move || {
        let b = c.read().unwrap();
        *b.get(0).unwrap()
    });
    std::thread::sleep(Duration::from_millis(50)); // long enough to park
    p.push(11).unwrap();
    assert_eq!(t.join().unwrap(), 11);
}

#[test]
fn broadcast_join_leave_and_laggards() {
    let (mut p, mut subs) = RingBuilder::<u64>::new(4).broadcast(1).unwrap();
    let mut slow = subs.pop().unwrap();
    p.push(0).unwrap();
    let mut late = p.subscribe();
    assert_eq!(late.position(), 1);
    for i in 1..4 {
        p.push(i).unwrap();
    }
    assert_eq!(p.subscriber_count(), 2);
    assert_eq!(p.try_claim(1).err(), Some(Error::Full));
    assert_eq!(
        p.laggards(),
        vec![ringbuffer_core::Laggard {
            id: slow.id(),
            position: 0
        }]
    );
    // `late` reads its three, then `slow` still gates.
    assert_eq!(
        late.read().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(p.try_claim(1).err(), Some(Error::Full));
    assert_eq!(p.evict_laggards(), 1);
    p.push(4).unwrap();
    assert_eq!(slow.read().err(), Some(Error::Lagged { missed_from: 0 }));
    assert_eq!(slow.resubscribe(), 5);
    p.push(5).unwrap();
    assert_eq!(
        slow.read().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![5]
    );
    drop(late); // leaving stops gating
    for i in 6..9 {
        p.push(i).unwrap();
    }
    p.close();
    assert_eq!(slow.read().unwrap().len(), 3);
    assert_eq!(slow.read().err(), Some(Error::Closed));
}

#[test]
fn broadcast_evict_policy_does_not_wait() {
    let (mut p, mut subs) = RingBuilder::<u64>::new(4)
        .lag_policy(LagPolicy::Evict)
        .broadcast(2)
        .unwrap();
    let mut fast = subs.pop().unwrap();
    let mut idle = subs.pop().unwrap();
    for i in 0..20 {
        p.push(i).unwrap();
        let b = fast.read().unwrap();
        assert_eq!(*b.get(0).unwrap(), i);
    }
    assert!(matches!(idle.read(), Err(Error::Lagged { missed_from: 0 })));
}

#[test]
fn broadcast_without_subscribers_never_blocks() {
    let mut p = ringbuffer_core::broadcast::<u64>(2).unwrap();
    for i in 0..10 {
        p.push(i).unwrap();
    }
    let mut s = p.subscribe();
    p.push(10).unwrap();
    assert_eq!(
        s.read().unwrap().iter().copied().collect::<Vec<_>>(),
        vec![10]
    );
}

#[test]
fn work_sharing_splits_and_closes() {
    let (mut p, mut workers) = RingBuilder::<u64>::new(8)
        .work_batch(2)
        .work_sharing(2)
        .unwrap();
    for i in 0..5 {
        p.push(i).unwrap();
    }
    p.close();
    let mut a = workers.remove(0);
    let mut b = workers.remove(0);
    let mut seen = Vec::new();
    seen.extend(a.read().unwrap().iter().copied());
    seen.extend(b.read().unwrap().iter().copied());
    seen.extend(a.read().unwrap().iter().copied());
    assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    assert_eq!(b.read().err(), Some(Error::Closed));
    drop(a);
    drop(b);
}

#[test]
fn all_workers_gone_closes_producer() {
    let (mut p, workers) = RingBuilder::<u64>::new(4).work_sharing(2).unwrap();
    drop(workers);
    assert_eq!(p.push(1), Err(Error::Closed));
}

#[test]
fn strategies_deliver() {
    for strategy in [
        WaitStrategy::BusySpin,
        WaitStrategy::Yield,
        WaitStrategy::Blocking,
    ] {
        let (mut p, mut c) = RingBuilder::<u64>::new(16)
            .wait_strategy(strategy)
            .spsc()
            .unwrap();
        let t = std::thread::spawn(move || {
            let mut next = 0;
            while let Ok(b) = c.read() {
                for v in b.iter() {
                    assert_eq!(*v, next);
                    next += 1;
                }
            }
            next
        });
        for i in 0..10_000 {
            p.push(i).unwrap();
        }
        drop(p);
        assert_eq!(t.join().unwrap(), 10_000);
    }
}

#[test]
fn one_shared_producer_serves_many_threads() {
    let (producer, mut consumer) = RingBuilder::<u64>::new(8).mpsc().unwrap();
    let producer = std::sync::Arc::new(producer);
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let producer = std::sync::Arc::clone(&producer);
            std::thread::spawn(move || {
                for i in 0..1000 {
                    producer.push(t * 10_000 + i).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0u64; 4];
    let mut seen = 0;
    while seen < 4000 {
        let batch = consumer.read().unwrap();
        for value in batch.iter() {
            let (t, i) = ((value / 10_000) as usize, value % 10_000);
            assert_eq!(i, next[t], "producer {t} out of order");
            next[t] += 1;
        }
        seen += batch.len();
    }
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(next, [1000; 4]);
    drop(producer);
    assert_eq!(consumer.try_read().err(), Some(Error::Closed));
}

#[test]
fn the_single_consumer_moves_owned_values_out() {
    let (producer, mut consumer) = RingBuilder::<Option<Vec<u8>>>::new(4).mpsc().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..100u8 {
            producer.push(Some(vec![i; i as usize])).unwrap();
        }
    });
    let mut taken = Vec::new();
    loop {
        match consumer.read_mut() {
            Ok(mut batch) => {
                assert!(batch.iter().all(Option::is_some));
                // Modify in place, then move out: the slots keep `None`.
                for value in batch.iter_mut().flatten() {
                    value.push(0xFF);
                }
                batch.take_each(|value| taken.push(value.unwrap()));
            }
            Err(Error::Closed) => break,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(taken.len(), 100);
    for (i, value) in taken.iter().enumerate() {
        assert_eq!(value.len(), i + 1);
        assert_eq!(value.last(), Some(&0xFF));
    }
}

#[test]
fn a_subscribe_handle_adds_subscribers_from_other_threads() {
    let (mut producer, _none) = RingBuilder::<u64>::new(4).broadcast(0).unwrap();
    let handle = producer.subscribe_handle();
    let mut early = handle.clone().subscribe();
    producer.push(1).unwrap();
    let mut late = std::thread::spawn(move || handle.subscribe())
        .join()
        .unwrap();
    producer.push(2).unwrap();
    assert_eq!(
        early.read().unwrap().iter().copied().collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(
        late.read().unwrap().iter().copied().collect::<Vec<_>>(),
        [2]
    );
    let handle = producer.subscribe_handle();
    drop(producer);
    let mut after_close = handle.subscribe();
    assert_eq!(after_close.try_read().err(), Some(Error::Closed));
}

/// The MPSC single-event path: a `fill` that panics publishes the slot's factory value (no
/// hole for the consumer), and publishes after a close are refused without disturbing what
/// the consumer drains.
#[test]
fn mpsc_publish_with_panicking_fill_leaves_no_hole() {
    let (p, mut c) = RingBuilder::<u64>::new(4).mpsc().unwrap();
    p.push(1).unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.publish_with(|_| panic!("fill failed on purpose"))
    }));
    assert!(panicked.is_err());
    assert_eq!(p.publish_with(|slot| *slot = 3), Ok(2));
    p.close();
    for _ in 0..5 {
        assert_eq!(p.push(9), Err(Error::Closed));
    }
    let mut got = Vec::new();
    let end = loop {
        match c.read() {
            Ok(batch) => got.extend(batch.iter().copied()),
            Err(e) => break e,
        }
    };
    assert_eq!(got, vec![1, 0, 3]);
    assert_eq!(end, Error::Closed);
}

/// The single-event path has a form that never waits and one with a timeout, on every
/// producer: on a full ring they refuse without calling `fill`; with room they publish.
#[test]
fn one_event_publishes_that_never_wait_or_time_out() {
    let short = std::time::Duration::from_millis(5);
    let untouched = |_: &mut u64| panic!("fill called on a refused publish");

    let (mut sp, mut sc) = RingBuilder::<u64>::new(2).spsc().unwrap();
    sp.push(1).unwrap();
    sp.push(2).unwrap();
    assert_eq!(sp.try_publish_with(untouched), Err(Error::Full));
    assert_eq!(
        sp.publish_with_timeout(untouched, short),
        Err(Error::Timeout)
    );
    drop(sc.read().unwrap());
    assert_eq!(sp.try_publish_with(|slot| *slot = 3), Ok(2));
    assert_eq!(sp.publish_with_timeout(|slot| *slot = 4, short), Ok(3));
    assert_eq!(
        sc.read().unwrap().iter().copied().collect::<Vec<_>>(),
        [3, 4]
    );

    let (mp, mut mc) = RingBuilder::<u64>::new(2).mpsc().unwrap();
    mp.push(1).unwrap();
    mp.push(2).unwrap();
    assert_eq!(mp.try_publish_with(untouched), Err(Error::Full));
    assert_eq!(
        mp.publish_with_timeout(untouched, short),
        Err(Error::Timeout)
    );
    drop(mc.read().unwrap());
    assert_eq!(mp.try_publish_with(|slot| *slot = 3), Ok(2));
    assert_eq!(mc.read().unwrap().iter().copied().collect::<Vec<_>>(), [3]);

    let (mut bp, mut subs) = RingBuilder::<u64>::new(2).broadcast(1).unwrap();
    bp.push(1).unwrap();
    bp.push(2).unwrap();
    assert_eq!(bp.try_publish_with(untouched), Err(Error::Full));
    drop(subs[0].read().unwrap());
    assert_eq!(bp.publish_with_timeout(|slot| *slot = 3, short), Ok(2));
}

/// A dropped MPSC claim whose reset panics (the factory fails) is still published: its
/// sequences were taken, and a hole would stall the consumer, then every producer, for good.
#[test]
fn mpsc_claim_dropped_while_the_factory_panics_leaves_no_hole() {
    let factory_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = std::sync::Arc::clone(&factory_calls);
    // The ring's own 4 slots are built first; every later call (a reset) panics.
    let (p, mut c) = RingBuilder::with_factory(4, move || {
        let call = calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(call < 4, "factory failed on purpose");
        0u64
    })
    .mpsc()
    .unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut claim = p.claim(2).unwrap();
        claim.for_each_mut(|slot| *slot = 5);
        drop(claim);
    }));
    assert!(panicked.is_err(), "the reset's factory call panics");
    p.push(7).unwrap();
    // A bound instead of a hang should the hole come back.
    let batch = c.read_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(batch.iter().copied().collect::<Vec<_>>(), [5, 5, 7]);
}

/// The single-producer single-event path: a `fill` that panics publishes nothing (the cursor
/// has not moved) and the next event reuses its slot, whose sequence it gets.
#[test]
fn spsc_publish_with_panicking_fill_publishes_nothing() {
    let (mut p, mut c) = RingBuilder::<u64>::new(4).spsc().unwrap();
    assert_eq!(p.push(1), Ok(0));
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        p.publish_with(|slot| {
            *slot = 77;
            panic!("fill failed on purpose")
        })
    }));
    assert!(panicked.is_err());
    assert_eq!(p.next_sequence(), 1, "the failed event took no sequence");
    assert_eq!(p.publish_with(|slot| *slot = 3), Ok(1));
    drop(p);
    let mut got = Vec::new();
    while let Ok(batch) = c.read() {
        got.extend(batch.iter().copied());
    }
    assert_eq!(got, vec![1, 3]);
}

/// `for_each_mut` fills every slot of a claim once, in order, for slots smaller than a line
/// and for slots of a line or more (filled with their lines fetched ahead), with claims
/// shorter and longer than the fetch distance and claims that wrap around the ring's end.
#[test]
fn for_each_mut_fills_each_slot_once_in_order_for_any_slot_size() {
    fn check<T: Default + Copy + Send + Sync + 'static>(make: fn(u64) -> T, key: fn(&T) -> u64) {
        let (mut p, mut c) = RingBuilder::<T>::new(16).spsc().unwrap();
        let mut next = 0u64;
        let mut seen = 0u64;
        for n in [1usize, 3, 9, 16, 5, 12, 16, 7] {
            let mut claim = p.claim(n).unwrap();
            claim.for_each_mut(|slot| {
                *slot = make(next);
                next += 1;
            });
            claim.publish();
            let batch = c.try_read().unwrap();
            assert_eq!(batch.len(), n);
            for entry in batch.iter() {
                assert_eq!(key(entry), seen);
                seen += 1;
            }
        }
        assert_eq!(seen, next);
    }
    check(|k| k as u8, |e| u64::from(*e));
    check(|k| k, |e| *e);
    check(|k| [k; 8], |e| e[7]);
    // Not a multiple of a line: slots straddle lines.
    check(|k| [k; 9], |e| e[8]);
    check(|k| [k; 24], |e| e[23]);
    check(|k| [[k; 32]; 4], |e| e[3][31]);
}
