//! The tables the tasks iterate: adding a bench suite or a loom crate is one entry here.

/// A criterion bench target in `benches/benches/<name>.rs`.
pub struct Suite {
    /// Suite name: the bench target and the `<suite>/` prefix of its criterion groups.
    pub name: &'static str,
    /// What it compares, for the report.
    pub title: &'static str,
}

/// Every benchmark suite `cargo xtask bench` knows, in report order.
pub const SUITES: &[Suite] = &[
    Suite {
        name: "codec",
        title: "packed-ascii codec vs String/&str and tinystr",
    },
    Suite {
        name: "ring",
        title: "ringbuffer-core vs disruptor, crossbeam ArrayQueue/channel, rtrb, bus",
    },
    Suite {
        name: "pool",
        title: "buffer-pool vs a fresh aligned std::alloc allocation and a Mutex<Vec> free list",
    },
    Suite {
        name: "store",
        title: "eventstore durable appends and reads vs SQLite (rusqlite, WAL, synchronous=FULL) and redb",
    },
    Suite {
        name: "pipe",
        title: "epoch pipe durable acks vs the raw pwritev+fdatasync ceiling and frozen-core",
    },
];

/// A crate whose lock-free protocols have loom models in `tests/loom.rs`.
pub struct LoomCrate {
    /// The package name.
    pub krate: &'static str,
    /// The crate-specific cfg that switches its `sync` shim to loom.
    pub cfg: &'static str,
    /// `LOOM_MAX_PREEMPTIONS`, chosen so the suite fits CI.
    pub max_preemptions: u32,
}

/// Every crate `cargo xtask loom` runs.
pub const LOOM_CRATES: &[LoomCrate] = &[
    LoomCrate {
        krate: "ringbuffer-core",
        cfg: "ringbuffer_loom",
        max_preemptions: 2,
    },
    LoomCrate {
        krate: "buffer-pool",
        cfg: "buffer_pool_loom",
        max_preemptions: 2,
    },
    LoomCrate {
        krate: "epoch-pipe",
        cfg: "epoch_pipe_loom",
        max_preemptions: 2,
    },
];

/// The entries named in `wanted` (all of them when it is empty); an unknown name is an error.
pub fn select<'a, T>(
    table: &'a [T],
    wanted: &[String],
    name_of: impl Fn(&T) -> &'static str,
) -> Result<Vec<&'a T>, String> {
    if wanted.is_empty() {
        return Ok(table.iter().collect());
    }
    wanted
        .iter()
        .map(|name| {
            table
                .iter()
                .find(|entry| name_of(entry) == name)
                .ok_or_else(|| {
                    let known: Vec<_> = table.iter().map(&name_of).collect();
                    format!("unknown name {name:?}; known: {known:?}")
                })
        })
        .collect()
}
