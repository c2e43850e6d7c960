#![cfg(ringbuffer_loom)]
//! loom models of every protocol, on rings of 2 slots so wrap-around is explored (4 where a
//! model needs room for the one-event window). Run with
//! `RUSTFLAGS="--cfg ringbuffer_loom" LOOM_MAX_PREEMPTIONS=2 cargo test -p ringbuffer-core --release --test loom`.
//!
//! Not covered here (by api, stress and unit tests instead): under loom both barrier sides
//! are `SeqCst` fences (the compiler fence + `membarrier` pair that ships on Linux is argued
//! in `sync.rs`), loom's timed waits never time out (so the timeout variants and the 1 ms
//! re-check after a failed barrier), and the eviction policy, `top_up` and the 64-event
//! check window (1 and 2 under loom). loom switches threads at every yield, and a waiter
//! spins and yields before it parks: a model whose other side acts at once may never see
//! the waiter parked, so such a side yields first (see the consumer-leaving model).

use loom::thread;
use ringbuffer_core::{Error, RingBuilder, WaitStrategy};

/// Reads until closed; returns everything in order.
fn drain_mpsc(consumer: &mut ringbuffer_core::Consumer<u64>) -> Vec<u64> {
    let mut seen = Vec::new();
    loop {
        match consumer.read() {
            Ok(batch) => seen.extend(batch.iter().copied()),
            Err(Error::Closed) => return seen,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// Reads a late subscriber until closed: a contiguous run in order from where it joined;
/// returns the sequence after the last entry it saw.
fn drain_late(late: &mut ringbuffer_core::BroadcastConsumer<u64>) -> u64 {
    let mut next = late.position();
    while let Ok(batch) = late.read() {
        for v in batch.iter() {
            assert_eq!(*v, next);
            next += 1;
        }
    }
    next
}

/// Pushes 0, 1, 2 and closes.
fn push_three_and_close(p: &mut ringbuffer_core::BroadcastProducer<u64>) {
    for i in 0..3 {
        p.push(i).unwrap();
    }
    p.close();
}

#[test]
fn single_producer_claim_publish_wraps() {
    loom::model(|| {
        let (mut p, mut c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Yield)
            .spsc()
            .unwrap();
        let t = thread::spawn(move || {
            let mut claim = p.claim(2).unwrap();
            claim.write(0, 1);
            claim.write(1, 2);
            claim.publish();
            p.push(3).unwrap();
        });
        assert_eq!(drain_mpsc(&mut c), vec![1, 2, 3]);
        t.join().unwrap();
    });
}

/// The single-event path publishes within a window checked once (2 events under loom): in a
/// 4-slot ring the window, not the space, ends it, so events go out on an earlier check,
/// and a close between two of them is still refused at once.
#[test]
fn single_producer_one_event_window() {
    loom::model(|| {
        let (mut p, mut c) = RingBuilder::<u64>::new(4)
            .wait_strategy(WaitStrategy::Yield)
            .spsc()
            .unwrap();
        let t = thread::spawn(move || {
            p.push(1).unwrap();
            p.push(2).unwrap();
            p.push(3).unwrap();
            p.close();
            assert_eq!(p.push(4).err(), Some(Error::Closed));
        });
        assert_eq!(drain_mpsc(&mut c), vec![1, 2, 3]);
        t.join().unwrap();
    });
}

#[test]
fn multi_producer_out_of_order_finish_and_wrap() {
    loom::model(|| {
        let (p, mut c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .mpsc()
            .unwrap();
        let handles: Vec<_> = [10u64, 20]
            .into_iter()
            .map(|base| {
                let p = p.clone();
                thread::spawn(move || {
                    p.push(base).unwrap();
                    p.push(base + 1).unwrap();
                })
            })
            .collect();
        drop(p);
        let seen = drain_mpsc(&mut c);
        assert_eq!(seen.len(), 4);
        for base in [10u64, 20] {
            let mine: Vec<_> = seen
                .iter()
                .copied()
                .filter(|v| v / 10 == base / 10)
                .collect();
            assert_eq!(mine, vec![base, base + 1]);
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}

#[test]
fn multi_producer_claims_of_several_slots_wrap() {
    // A claim's mark sits at its first slot with its length: the consumer must step over a
    // 2-slot claim as one, and a wrapped-around slot's older mark must never pass for a new
    // one (ring of 2, three claims).
    loom::model(|| {
        let (p, mut c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .mpsc()
            .unwrap();
        let pair = {
            let p = p.clone();
            thread::spawn(move || {
                let mut claim = p.claim(2).unwrap();
                claim.write(0, 10);
                claim.write(1, 11);
                claim.publish();
            })
        };
        let single = {
            let p = p.clone();
            thread::spawn(move || p.push(20).unwrap())
        };
        drop(p);
        let seen = drain_mpsc(&mut c);
        assert_eq!(seen.len(), 3);
        let pair_at = seen.iter().position(|&v| v == 10).unwrap();
        assert_eq!(
            seen.get(pair_at + 1),
            Some(&11),
            "a claim is read whole: {seen:?}"
        );
        assert!(seen.contains(&20));
        pair.join().unwrap();
        single.join().unwrap();
    });
}

#[test]
fn broadcast_gating_with_join_and_leave() {
    loom::model(|| {
        // `seed` never reads: it gates the producer (ring of 2, three entries) until it
        // leaves. Before leaving it lets `late` join from the other thread, concurrently with
        // the producer; `late` must then see a contiguous run ending at the last entry.
        let (mut p, mut subs) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .broadcast(1)
            .unwrap();
        let seed = subs.pop().unwrap();
        let joiner = thread::spawn(move || {
            let mut late = seed.subscribe();
            drop(seed);
            assert_eq!(drain_late(&mut late), 3);
        });
        push_three_and_close(&mut p);
        joiner.join().unwrap();
    });
}

/// A subscriber joins (through a handle) while the producer runs with nobody gating it: the
/// joiner registers at a provisional position, the producer may wait on it, and the joiner
/// then moves its word up to the cursor and wakes the producer; the joiner sees a contiguous
/// run ending at the last entry.
#[test]
fn broadcast_join_wakes_a_producer_gated_by_the_provisional_position() {
    loom::model(|| {
        let (mut p, subs) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .broadcast(0)
            .unwrap();
        assert!(subs.is_empty());
        let handle = p.subscribe_handle();
        let joiner = thread::spawn(move || {
            let mut late = handle.subscribe();
            assert_eq!(drain_late(&mut late), 3);
        });
        push_three_and_close(&mut p);
        joiner.join().unwrap();
    });
}

#[test]
fn work_sharing_hand_off() {
    loom::model(|| {
        // Two entries are waiting before the consumers start (keeps the model small); the
        // third wraps around and needs both consumers' `done` words to move past slot 0.
        let (mut p, mut workers) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .work_batch(1)
            .work_sharing(2)
            .unwrap();
        p.push(0).unwrap();
        p.push(1).unwrap();
        let handles: Vec<_> = workers
            .drain(..)
            .map(|mut w| {
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    while let Ok(batch) = w.read() {
                        seen.extend(batch.iter().copied());
                    }
                    seen
                })
            })
            .collect();
        p.push(2).unwrap();
        p.close();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
    });
}

#[test]
fn park_and_wake_loses_no_wake_up() {
    loom::model(|| {
        // Both sides may park: the consumer waiting for data, the producer (ring of 2, three
        // pushes) waiting for space. A lost wake-up shows up as a loom deadlock.
        let (mut p, mut c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .spsc()
            .unwrap();
        let t = thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < 3 {
                let batch = c.read().unwrap();
                seen.extend(batch.iter().copied());
            }
            seen
        });
        for i in 0..3 {
            p.push(i).unwrap();
        }
        assert_eq!(t.join().unwrap(), vec![0, 1, 2]);
    });
}

#[test]
fn a_consumer_leaving_wakes_a_producer_waiting_for_space() {
    loom::model(|| {
        // Nobody reads: the third push finds the ring of 2 full and parks until the consumer
        // is dropped, which must wake it with Closed (a lost wake-up is a loom deadlock).
        let (mut p, c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .spsc()
            .unwrap();
        // loom runs another thread whenever one yields, and the producer spins and yields
        // before it parks: yield here too, so interleavings where the drop comes after the
        // producer parked are explored.
        let leaving = thread::spawn(move || {
            for _ in 0..4 {
                thread::yield_now();
            }
            drop(c)
        });
        let mut pushed = 0;
        loop {
            match p.push(pushed) {
                Ok(_) => pushed += 1,
                Err(Error::Closed) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(pushed <= 2, "{pushed} pushes into a ring of 2 nobody read");
        leaving.join().unwrap();
    });
}

#[test]
fn close_while_a_slot_is_claimed() {
    loom::model(|| {
        let (holder, mut c) = RingBuilder::<u64>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .mpsc()
            .unwrap();
        let closer = holder.clone();
        let mut claim = holder.claim(1).unwrap();
        let closing = thread::spawn(move || closer.close());
        let reader = thread::spawn(move || drain_mpsc(&mut c));
        claim.write(0, 7);
        claim.publish();
        closing.join().unwrap();
        // Closed now: a later claim is refused; the granted one was not lost.
        assert_eq!(holder.push(8).err(), Some(Error::Closed));
        drop(holder);
        assert_eq!(reader.join().unwrap(), vec![7]);
    });
}

#[test]
fn the_consumer_moves_values_out_while_producers_wrap() {
    loom::model(|| {
        let (p, mut c) = RingBuilder::<Option<u64>>::new(2)
            .wait_strategy(WaitStrategy::Blocking)
            .mpsc()
            .unwrap();
        let p = loom::sync::Arc::new(p);
        let handles: Vec<_> = [10u64, 20]
            .into_iter()
            .map(|base| {
                // One shared producer handle (claims take `&self`).
                let p = loom::sync::Arc::clone(&p);
                thread::spawn(move || {
                    p.push(Some(base)).unwrap();
                    p.push(Some(base + 1)).unwrap();
                })
            })
            .collect();
        drop(p);
        let mut seen = Vec::new();
        loop {
            match c.read_mut() {
                Ok(batch) => batch.take_each(|v| seen.push(v.unwrap())),
                Err(Error::Closed) => break,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(seen.len(), 4);
        for base in [10u64, 20] {
            let mine: Vec<_> = seen.iter().filter(|v| **v / 10 == base / 10).collect();
            assert_eq!(mine, vec![&base, &(base + 1)]);
        }
        for h in handles {
            h.join().unwrap();
        }
    });
}
