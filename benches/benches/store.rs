//! Suite `store`: durable appends and reads of eventstore against SQLite (rusqlite, bundled,
//! WAL, synchronous=FULL, one transaction per append checking the expected version, as
//! sqlite-es does) and redb (immediate durability, one write transaction per append).
//!
//! `append_t{T}_b{B}`: T threads, each appending batches of B 256-byte events to its own
//! streams and waiting for durability; durable events/s. `read_stream_1000`: read back one
//! 1,000-event stream; `scan_1m`: read every event of a 1M-event store in global order.
//! `open_100k`: open a closed 100,000-event store and read one stream's version, as a
//! process does when it starts; opens/s (closing again is not timed).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use eventstore::{Event, Expected, Store, StoreOptions};
use eventstore_benches::{Crew, scale};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use rusqlite::{Connection, OptionalExtension, params};

const EVENT_BYTES: usize = 256;
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const VERSIONS: TableDefinition<&[u8], u64> = TableDefinition::new("versions");
const GLOBAL: TableDefinition<u64, &[u8]> = TableDefinition::new("global");

fn bench_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("store-bench")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    dir
}

/// A common interface so every contender runs the same loops.
trait Contender: Send + Sync {
    /// Appends `batch` events to stream `stream`, whose last version is `last` (None: new).
    fn append(&self, stream: u128, last: Option<u64>, batch: usize);
    /// Reads a whole stream; returns the number of events.
    fn read_stream(&self, stream: u128) -> usize;
    /// Reads every event in global order; returns the number of events.
    fn scan(&self) -> usize;
}

struct Ours(Store);

impl Contender for Ours {
    fn append(&self, stream: u128, last: Option<u64>, batch: usize) {
        let events: Vec<Event> = (0..batch)
            .map(|_| Event::new("happened", vec![0x5au8; EVENT_BYTES]))
            .collect();
        let expected = last.map_or(Expected::NoStream, Expected::Exact);
        let stream = self
            .0
            .domain("bench")
            .expect("name")
            .aggregate("thing")
            .expect("name")
            .instance(stream);
        stream.append(expected, &events).expect("append");
    }
    fn read_stream(&self, stream: u128) -> usize {
        let stream = self
            .0
            .domain("bench")
            .expect("name")
            .aggregate("thing")
            .expect("name")
            .instance(stream);
        // Borrowed from the mapped log, as the peers below borrow their rows.
        stream
            .scan(0, usize::MAX, |event| {
                std::hint::black_box((event.version, event.event_type, event.payload));
            })
            .expect("read")
    }
    fn scan(&self) -> usize {
        let mut count = 0;
        self.0
            .scan_all(0, usize::MAX, |event| {
                std::hint::black_box((event.position, event.stream, event.payload));
                count += 1;
            })
            .expect("scan");
        count
    }
}

struct Sqlite {
    path: PathBuf,
}

thread_local! {
    static SQLITE: std::cell::RefCell<Option<(PathBuf, Connection)>> = const { std::cell::RefCell::new(None) };
}

impl Sqlite {
    fn new(dir: &Path) -> Sqlite {
        let path = dir.join("events.sqlite");
        let sqlite = Sqlite { path };
        sqlite.with(|connection| {
            connection
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS events (
                        aggregate_type TEXT NOT NULL, aggregate_id BLOB NOT NULL, version INTEGER NOT NULL,
                        event_type TEXT NOT NULL, payload BLOB NOT NULL,
                        PRIMARY KEY (aggregate_type, aggregate_id, version));",
                )
                .expect("schema");
        });
        sqlite
    }

    /// One connection per thread, as an application with a connection pool would have.
    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> T) -> T {
        SQLITE.with(|slot| {
            let mut slot = slot.borrow_mut();
            if slot.as_ref().is_none_or(|(path, _)| *path != self.path) {
                *slot = Some((self.path.clone(), connect(&self.path)));
            }
            work(&mut slot.as_mut().expect("connection").1)
        })
    }
}

/// A connection as every SQLite contender opens one: WAL, full sync, waiting for locks.
fn connect(path: &Path) -> Connection {
    let connection = Connection::open(path).expect("open sqlite");
    connection
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=60000;",
        )
        .expect("pragmas");
    connection
}

impl Contender for Sqlite {
    fn append(&self, stream: u128, last: Option<u64>, batch: usize) {
        self.with(|connection| {
            let tx = connection
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .expect("begin");
            let id = stream.to_be_bytes();
            let current: Option<i64> = tx
                .query_row(
                    "SELECT MAX(version) FROM events WHERE aggregate_type = 'thing' AND aggregate_id = ?1",
                    params![&id[..]],
                    |row| row.get(0),
                )
                .optional()
                .expect("version query")
                .flatten();
            assert_eq!(current.map(|v| v as u64), last, "expected version");
            let first = last.map_or(0, |v| v + 1);
            {
                let mut insert = tx
                    .prepare_cached("INSERT INTO events VALUES ('thing', ?1, ?2, 'happened', ?3)")
                    .expect("prepare");
                let payload = [0x5au8; EVENT_BYTES];
                for n in 0..batch as u64 {
                    insert.execute(params![&id[..], (first + n) as i64, &payload[..]]).expect("insert");
                }
            }
            tx.commit().expect("commit");
        })
    }
    fn read_stream(&self, stream: u128) -> usize {
        self.with(|connection| {
            let mut query = connection
                .prepare_cached("SELECT version, event_type, payload FROM events WHERE aggregate_type = 'thing' AND aggregate_id = ?1 ORDER BY version")
                .expect("prepare");
            let mut rows = query.query(params![&stream.to_be_bytes()[..]]).expect("query");
            let mut count = 0;
            // Borrowed column values (no copy), like eventstore's scan.
            while let Some(row) = rows.next().expect("row") {
                let version: i64 = row.get(0).expect("version");
                let kind = row.get_ref(1).expect("type").as_str().expect("text");
                let payload = row.get_ref(2).expect("payload").as_blob().expect("blob");
                std::hint::black_box((version, kind, payload));
                count += 1;
            }
            count
        })
    }
    fn scan(&self) -> usize {
        self.with(|connection| {
            let mut query = connection
                .prepare_cached(
                    "SELECT aggregate_id, version, event_type, payload FROM events ORDER BY rowid",
                )
                .expect("prepare");
            let rows = query
                .query_map([], |row| {
                    Ok((
                        row.get::<_, Vec<u8>>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .expect("query");
            rows.fold(0, |count, row| {
                std::hint::black_box(row.expect("row"));
                count + 1
            })
        })
    }
}

struct Redb {
    db: redb::Database,
    next_position: AtomicU64,
}

impl Redb {
    fn new(dir: &Path) -> Redb {
        let db = redb::Database::create(dir.join("events.redb")).expect("create redb");
        Redb {
            db,
            next_position: AtomicU64::new(0),
        }
    }
}

fn event_key(stream: u128, version: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(&stream.to_be_bytes());
    key[16..].copy_from_slice(&version.to_be_bytes());
    key
}

impl Contender for Redb {
    fn append(&self, stream: u128, last: Option<u64>, batch: usize) {
        let tx = self.db.begin_write().expect("begin");
        {
            let mut versions = tx.open_table(VERSIONS).expect("versions");
            let id = stream.to_be_bytes();
            let current = versions.get(&id[..]).expect("get").map(|v| v.value());
            assert_eq!(current, last, "expected version");
            let first = last.map_or(0, |v| v + 1);
            let mut events = tx.open_table(EVENTS).expect("events");
            let mut global = tx.open_table(GLOBAL).expect("global");
            let payload = [0x5au8; EVENT_BYTES];
            for n in 0..batch as u64 {
                let key = event_key(stream, first + n);
                events.insert(&key[..], &payload[..]).expect("insert");
                let position = self.next_position.fetch_add(1, Ordering::Relaxed);
                global.insert(position, &key[..]).expect("insert global");
            }
            versions
                .insert(&id[..], first + batch as u64 - 1)
                .expect("version");
        }
        tx.commit().expect("commit");
    }
    fn read_stream(&self, stream: u128) -> usize {
        let tx = self.db.begin_read().expect("read");
        let events = tx.open_table(EVENTS).expect("events");
        let (start, end) = (event_key(stream, 0), event_key(stream, u64::MAX));
        events
            .range(&start[..]..=&end[..])
            .expect("range")
            .fold(0, |count, entry| {
                std::hint::black_box(entry.expect("entry").1.value().to_vec());
                count + 1
            })
    }
    fn scan(&self) -> usize {
        let tx = self.db.begin_read().expect("read");
        let global = tx.open_table(GLOBAL).expect("global");
        let events = tx.open_table(EVENTS).expect("events");
        global.iter().expect("iter").fold(0, |count, entry| {
            let (_, key) = entry.expect("entry");
            std::hint::black_box(
                events
                    .get(key.value())
                    .expect("get")
                    .expect("event")
                    .value()
                    .to_vec(),
            );
            count + 1
        })
    }
}

/// A crew of `threads` writers; each round, every writer appends `appends` batches of `batch`
/// to a fresh stream of its own (fresh streams keep the expected versions simple). The crew's
/// threads live across rounds, so a round measures appends, not thread start-up.
fn append_crew(contender: &Arc<dyn Contender>, threads: usize, appends: u64, batch: usize) -> Crew {
    let contender = Arc::clone(contender);
    let rounds: Vec<AtomicU64> = (0..threads).map(|_| AtomicU64::new(0)).collect();
    Crew::new(threads, move |worker| {
        let round = rounds[worker].fetch_add(1, Ordering::Relaxed) as u128;
        let stream = round * 1_000_000 + worker as u128;
        let mut last = None;
        for _ in 0..appends {
            contender.append(stream, last, batch);
            last = Some(last.map_or(batch as u64 - 1, |v| v + batch as u64));
        }
    })
}

fn contenders(case: &str) -> Vec<(&'static str, Arc<dyn Contender>)> {
    let ours_dir = bench_dir(&format!("{case}-ours"));
    let options = StoreOptions {
        checkpoint_every: u64::MAX / 2,
        ..StoreOptions::default()
    };
    vec![
        (
            "ours",
            Arc::new(Ours(
                Store::open_with(&ours_dir, options).expect("open store"),
            )) as Arc<dyn Contender>,
        ),
        (
            "sqlite",
            Arc::new(Sqlite::new(&bench_dir(&format!("{case}-sqlite")))),
        ),
        (
            "redb",
            Arc::new(Redb::new(&bench_dir(&format!("{case}-redb")))),
        ),
    ]
}

fn appends(c: &mut Criterion) {
    for (threads, batch) in [(1usize, 1usize), (8, 1), (64, 1), (8, 10), (64, 10)] {
        let case = format!("append_t{threads}_b{batch}");
        // Per thread: fewer appends with more threads, so the slowest peer (SQLite at 64
        // threads, a few hundred appends/s) keeps the quick run within its time budget.
        let per_thread = match threads {
            1 => 32,
            8 => 8,
            _ => 2,
        };
        let appends_per_thread = scale(per_thread, 2) as u64;
        let mut group = c.benchmark_group(format!("store/{case}"));
        group.throughput(Throughput::Elements(
            threads as u64 * appends_per_thread * batch as u64,
        ));
        group.sample_size(10);
        for (name, contender) in contenders(&case) {
            let crew = append_crew(&contender, threads, appends_per_thread, batch);
            group.bench_function(name, |b| {
                b.iter_custom(|iters| (0..iters).map(|_| crew.round()).sum())
            });
        }
        group.finish();
    }
}

/// Fills a contender with `events` events: stream 0 gets `stream_len`, the rest spread over
/// 1,000 streams, in appends of 1,000 (setup, not measured).
fn fill(contender: &dyn Contender, events: usize, stream_len: usize) {
    let mut left = events - stream_len;
    let mut last = None;
    let mut written = 0;
    while written < stream_len {
        let batch = 1000.min(stream_len - written);
        contender.append(0, last, batch);
        written += batch;
        last = Some(written as u64 - 1);
    }
    let mut versions = vec![None; 1000];
    let mut stream = 0;
    while left > 0 {
        let batch = 1000.min(left);
        let slot: &mut Option<u64> = &mut versions[stream % 1000];
        contender.append(1 + (stream % 1000) as u128, *slot, batch);
        *slot = Some(slot.map_or(batch as u64 - 1, |v| v + batch as u64));
        left -= batch;
        stream += 1;
    }
}

fn reads(c: &mut Criterion) {
    let total = scale(1_000_000, 5_000);
    let stream_len = scale(1000, 100);
    let built: Vec<_> = contenders("reads")
        .into_iter()
        .map(|(name, contender)| {
            fill(contender.as_ref(), total, stream_len);
            (name, contender)
        })
        .collect();
    let mut group = c.benchmark_group("store/read_stream_1000");
    group.throughput(Throughput::Elements(stream_len as u64));
    for (name, contender) in &built {
        group.bench_function(*name, |b| {
            b.iter(|| assert_eq!(contender.read_stream(0), stream_len))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("store/scan_1m");
    group.throughput(Throughput::Elements(total as u64));
    group.sample_size(10);
    for (name, contender) in &built {
        group.bench_function(*name, |b| b.iter(|| assert_eq!(contender.scan(), total)));
    }
    group.finish();
}

/// Benchmarks `name`: each iteration runs `open` (timed) then `close` (not timed).
fn bench_opens<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    open: impl Fn() -> S,
    close: impl Fn(S),
) {
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let opened = open();
                spent += start.elapsed();
                close(opened);
            }
            spent
        })
    });
}

fn opens(c: &mut Criterion) {
    let total = scale(100_000, 2_000);
    let stream_len = scale(1000, 100);
    let last = stream_len as u64 - 1;
    let mut group = c.benchmark_group("store/open_100k");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);

    let ours_dir = bench_dir("open-ours");
    let store = Store::open(&ours_dir).expect("open store");
    fill(&Ours(store.clone()), total, stream_len);
    store.close().expect("close store");
    drop(store);
    bench_opens(
        &mut group,
        "ours",
        || {
            let store = Store::open(&ours_dir).expect("open store");
            let domain = store.domain("bench").expect("name");
            let stream = domain.aggregate("thing").expect("name").instance(0u128);
            assert_eq!(stream.version(), Some(last));
            store
        },
        |store| store.close().expect("close store"),
    );

    let sqlite_dir = bench_dir("open-sqlite");
    fill(&Sqlite::new(&sqlite_dir), total, stream_len);
    // The filling thread's cached connection goes, so each open below is the first.
    SQLITE.with(|slot| slot.borrow_mut().take());
    let sqlite_path = sqlite_dir.join("events.sqlite");
    bench_opens(
        &mut group,
        "sqlite",
        || {
            let connection = connect(&sqlite_path);
            let version: Option<i64> = connection
                .query_row(
                    "SELECT MAX(version) FROM events WHERE aggregate_type = 'thing' AND aggregate_id = ?1",
                    params![&0u128.to_be_bytes()[..]],
                    |row| row.get(0),
                )
                .expect("version query");
            assert_eq!(version.map(|v| v as u64), Some(last));
            connection
        },
        drop,
    );

    let redb_dir = bench_dir("open-redb");
    fill(&Redb::new(&redb_dir), total, stream_len);
    let redb_path = redb_dir.join("events.redb");
    bench_opens(
        &mut group,
        "redb",
        || {
            let db = redb::Database::open(&redb_path).expect("open redb");
            {
                let tx = db.begin_read().expect("read");
                let versions = tx.open_table(VERSIONS).expect("versions");
                let version = versions.get(&0u128.to_be_bytes()[..]).expect("get");
                assert_eq!(version.map(|v| v.value()), Some(last));
            }
            db
        },
        drop,
    );
    group.finish();
}

/// Removes the stores (a gigabyte or more on a timed run) once the suite is done.
fn clean_up(_: &mut Criterion) {
    let _ = std::fs::remove_dir_all(Path::new(env!("CARGO_TARGET_TMPDIR")).join("store-bench"));
}

criterion_group!(store, appends, reads, opens, clean_up);
criterion_main!(store);
