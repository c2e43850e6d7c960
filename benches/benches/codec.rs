//! Suite `codec`: packed-ascii names against `String`/`&str` (peer `string`) and `tinystr`.
//!
//! Every contender works on the same 10-character names. Per-name cases process a batch of
//! `NAMES` names per iteration, so the figure is names per second.

use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventstore_benches::scale;
use packed_ascii::Packed64;
use tinystr::TinyAsciiStr;

type Tiny = TinyAsciiStr<10>;

/// Names per iteration of the per-name cases.
const NAMES: usize = 1024;

/// Deterministic pseudo-random 10-character names over `[a-z0-9_-]`.
fn names(count: usize, seed: u64) -> Vec<String> {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789_-";
    let mut state = seed | 1;
    (0..count)
        .map(|_| {
            (0..10)
                .map(|_| {
                    // xorshift64*: enough to spread names without a dependency.
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    let pick = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
                    alphabet[pick as usize % alphabet.len()] as char
                })
                .collect()
        })
        .collect()
}

fn packed(names: &[String]) -> Vec<Packed64> {
    names
        .iter()
        .map(|n| Packed64::new(n).expect("generated names are valid"))
        .collect()
}

fn tiny(names: &[String]) -> Vec<Tiny> {
    names
        .iter()
        .map(|n| Tiny::try_from_str(n).expect("generated names are valid"))
        .collect()
}

fn encode_10(c: &mut Criterion) {
    let input = names(NAMES, 1);
    let mut group = c.benchmark_group("codec/encode_10");
    group.throughput(Throughput::Elements(NAMES as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            for name in &input {
                black_box(Packed64::new(black_box(name.as_str())).ok());
            }
        })
    });
    group.bench_function("string", |b| {
        b.iter(|| {
            for name in &input {
                black_box(String::from(black_box(name.as_str())));
            }
        })
    });
    group.bench_function("tinystr", |b| {
        b.iter(|| {
            for name in &input {
                black_box(Tiny::try_from_str(black_box(name.as_str())).ok());
            }
        })
    });
    group.finish();
}

/// Decoding = rendering the name's text into a reused output buffer (what logging, display and
/// serialisation do). A `String` and a `TinyAsciiStr` hold the text already; a packed name
/// computes it.
fn decode_10(c: &mut Criterion) {
    let strings = names(NAMES, 2);
    let packed = packed(&strings);
    let tiny = tiny(&strings);
    let mut out = String::with_capacity(16);
    let mut group = c.benchmark_group("codec/decode_10");
    group.throughput(Throughput::Elements(NAMES as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            for name in &packed {
                out.clear();
                out.push_str(black_box(*name).unpack().as_str());
                black_box(&out);
            }
        })
    });
    group.bench_function("string", |b| {
        b.iter(|| {
            for name in &strings {
                out.clear();
                out.push_str(black_box(name).as_str());
                black_box(&out);
            }
        })
    });
    group.bench_function("tinystr", |b| {
        b.iter(|| {
            for name in &tiny {
                out.clear();
                out.push_str(black_box(name).as_str());
                black_box(&out);
            }
        })
    });
    group.finish();
}

/// Ordering comparisons of adjacent pairs.
fn compare(c: &mut Criterion) {
    let strings = names(NAMES + 1, 3);
    let packed = packed(&strings);
    let tiny = tiny(&strings);
    let mut group = c.benchmark_group("codec/compare");
    group.throughput(Throughput::Elements(NAMES as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            black_box(&packed)
                .windows(2)
                .filter(|w| w[0] < w[1])
                .count()
        })
    });
    group.bench_function("string", |b| {
        b.iter(|| {
            black_box(&strings)
                .windows(2)
                .filter(|w| w[0] < w[1])
                .count()
        })
    });
    group.bench_function("tinystr", |b| {
        b.iter(|| black_box(&tiny).windows(2).filter(|w| w[0] < w[1]).count())
    });
    group.finish();
}

/// Hashing with std's default hasher (as a `HashMap` of names would).
fn hash(c: &mut Criterion) {
    let strings = names(NAMES, 4);
    let packed = packed(&strings);
    let tiny = tiny(&strings);
    let state = RandomState::new();
    let mut group = c.benchmark_group("codec/hash");
    group.throughput(Throughput::Elements(NAMES as u64));
    group.bench_function("ours", |b| {
        b.iter(|| {
            black_box(&packed)
                .iter()
                .fold(0u64, |acc, n| acc ^ state.hash_one(n))
        })
    });
    group.bench_function("string", |b| {
        b.iter(|| {
            black_box(&strings)
                .iter()
                .fold(0u64, |acc, n| acc ^ state.hash_one(n))
        })
    });
    group.bench_function("tinystr", |b| {
        b.iter(|| {
            black_box(&tiny)
                .iter()
                .fold(0u64, |acc, n| acc ^ state.hash_one(n))
        })
    });
    group.finish();
}

/// Sorting 64k names (the copy to sort is made outside the timed part).
fn sort_64k(c: &mut Criterion) {
    let count = scale(65_536, 4_096);
    let strings = names(count, 5);
    let packed = packed(&strings);
    let tiny = tiny(&strings);
    let mut group = c.benchmark_group("codec/sort_64k");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("ours", |b| {
        b.iter_batched_ref(
            || packed.clone(),
            |v| v.sort_unstable(),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("string", |b| {
        b.iter_batched_ref(
            || strings.clone(),
            |v| v.sort_unstable(),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("tinystr", |b| {
        b.iter_batched_ref(
            || tiny.clone(),
            |v| v.sort_unstable(),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(codec, encode_10, decode_10, compare, hash, sort_64k);
criterion_main!(codec);
