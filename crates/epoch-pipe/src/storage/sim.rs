use std::io;

use super::Storage;
use crate::sync::{Arc, Mutex, lock};

/// A fault [`SimDisk`] injects on cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write fails with `EIO` and writes nothing.
    WriteError,
    /// The write fails with `ENOSPC` and writes nothing.
    NoSpace,
    /// The write stores only its first half and reports that count, as a kernel may (the
    /// pipe writes the rest with another call).
    ShortWrite,
    /// The write stores nothing and reports 0 bytes without an error (a storage that stopped
    /// taking data: the pipe fails with `PipeError::ShortWrite`).
    ZeroWrite,
    /// The sync fails with `EIO`; like Linux, the unsynced writes are then dropped from the
    /// durable image for good (they stay readable, but no later sync persists them).
    SyncError,
}

/// What survives a simulated crash of the writes that were not synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Only synced data survives.
    DropUnsynced,
    /// A pseudo-random prefix of the unsynced writes survives whole.
    KeepPrefix {
        /// Seed of the choice.
        seed: u64,
    },
    /// A pseudo-random prefix survives, and the next write is torn at a 512-byte boundary.
    TornTail {
        /// Seed of the choice.
        seed: u64,
    },
    /// Each unsynced write's 512-byte sectors survive or not independently (writeback in any
    /// order).
    RandomSectors {
        /// Seed of the choice.
        seed: u64,
    },
}

#[derive(Debug, Default)]
struct SimState {
    /// What reads see: every write applied in order (the page cache).
    cache: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    pending: Vec<(u64, Vec<u8>)>,
    /// Armed faults: (operations still to pass before it fires, fault).
    armed: Vec<(u64, Fault)>,
    writes: u64,
    syncs: u64,
}

/// An in-memory disk that keeps written-but-not-synced data apart, can crash, and can fail any
/// write or sync on cue. Clones share one disk.
///
/// ```
/// use epoch_pipe::{CrashMode, SimDisk, Storage};
/// use std::io::IoSlice;
///
/// let disk = SimDisk::new();
/// disk.write_vectored_at(0, &[IoSlice::new(b"synced")])?;
/// disk.sync_data()?;
/// disk.write_vectored_at(6, &[IoSlice::new(b"lost")])?;
/// let after = disk.crash(CrashMode::DropUnsynced);
/// assert_eq!(after.contents(), b"synced");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    state: Arc<Mutex<SimState>>,
}

/// xorshift64*: deterministic choices for crash modes without a dependency.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

fn apply(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

const SECTOR: usize = 512;

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// A disk whose durable (and visible) contents are `image`.
    pub fn from_image(image: Vec<u8>) -> SimDisk {
        let state = SimState {
            cache: image.clone(),
            durable: image,
            ..SimState::default()
        };
        SimDisk {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Arms `fault` to fire on the `after`-th next operation it applies to (0 = the next one):
    /// writes for the write faults, syncs for [`Fault::SyncError`].
    pub fn inject(&self, fault: Fault, after: u64) {
        lock(&self.state).armed.push((after, fault));
    }

    /// What reads see now.
    pub fn contents(&self) -> Vec<u8> {
        lock(&self.state).cache.clone()
    }

    /// The durable image only.
    pub fn durable_contents(&self) -> Vec<u8> {
        lock(&self.state).durable.clone()
    }

    /// Writes and syncs performed so far.
    pub fn counts(&self) -> (u64, u64) {
        let state = lock(&self.state);
        (state.writes, state.syncs)
    }

    /// A new disk holding what survives a crash of this one now, per `mode`. This disk is
    /// left as it is (a crashed process's threads may still be running against it).
    pub fn crash(&self, mode: CrashMode) -> SimDisk {
        let state = lock(&self.state);
        let mut image = state.durable.clone();
        let pending = &state.pending;
        match mode {
            CrashMode::DropUnsynced => {}
            CrashMode::KeepPrefix { seed } | CrashMode::TornTail { seed } => {
                let mut rng = seed | 1;
                let keep = (next_random(&mut rng) % (pending.len() as u64 + 1)) as usize;
                for (offset, data) in &pending[..keep] {
                    apply(&mut image, *offset, data);
                }
                if let (CrashMode::TornTail { .. }, Some((offset, data))) =
                    (mode, pending.get(keep))
                {
                    let sectors = data.len().div_ceil(SECTOR);
                    let torn = (next_random(&mut rng) % sectors as u64) as usize * SECTOR;
                    apply(&mut image, *offset, &data[..torn.min(data.len())]);
                }
            }
            CrashMode::RandomSectors { seed } => {
                let mut rng = seed | 1;
                for (offset, data) in pending {
                    for (index, sector) in data.chunks(SECTOR).enumerate() {
                        if next_random(&mut rng) & 1 == 1 {
                            apply(&mut image, offset + (index * SECTOR) as u64, sector);
                        }
                    }
                }
            }
        }
        SimDisk::from_image(image)
    }

    /// Takes the armed fault of one of `kinds` that is due now, counting down the others.
    fn due_fault(state: &mut SimState, sync: bool) -> Option<Fault> {
        let mut due = None;
        state.armed.retain_mut(|(after, fault)| {
            if (*fault == Fault::SyncError) != sync {
                return true;
            }
            if *after == 0 && due.is_none() {
                due = Some(*fault);
                return false;
            }
            *after = after.saturating_sub(1);
            true
        });
        due
    }
}

impl Storage for SimDisk {
    fn write_vectored_at(&self, offset: u64, buffers: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let mut state = lock(&self.state);
        state.writes += 1;
        let mut data = Vec::with_capacity(buffers.iter().map(|b| b.len()).sum());
        for buffer in buffers {
            data.extend_from_slice(buffer);
        }
        match SimDisk::due_fault(&mut state, false) {
            Some(Fault::WriteError) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Some(Fault::NoSpace) => return Err(io::Error::from_raw_os_error(libc::ENOSPC)),
            Some(Fault::ShortWrite) => data.truncate(data.len() / 2),
            Some(Fault::ZeroWrite) => data.clear(),
            Some(Fault::SyncError) | None => {}
        }
        let written = data.len();
        if written > 0 {
            apply(&mut state.cache, offset, &data);
            state.pending.push((offset, data));
        }
        Ok(written)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut state = lock(&self.state);
        state.syncs += 1;
        let pending = std::mem::take(&mut state.pending);
        if SimDisk::due_fault(&mut state, true).is_some() {
            // fsyncgate: the kernel reports the error once and forgets the dirty pages.
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        for (offset, data) in &pending {
            apply(&mut state.durable, *offset, data);
        }
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut state = lock(&self.state);
        let current = state.cache.len();
        if (current as u64) < len {
            // The new length is durable at the next sync, like a size change under fdatasync.
            let extension = vec![0; len as usize - current];
            state.cache.resize(len as usize, 0);
            state.pending.push((current as u64, extension));
        }
        Ok(())
    }

    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        let state = lock(&self.state);
        let start = (offset as usize).min(state.cache.len());
        let end = (start + buffer.len()).min(state.cache.len());
        buffer[..end - start].copy_from_slice(&state.cache[start..end]);
        Ok(end - start)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.state).cache.len() as u64)
    }
}
