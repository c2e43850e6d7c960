//! The store directory: its marker file, the writer lock, and file-name helpers.
//!
//! File names are fixed; no name a user gives (domain, aggregate type) ever becomes a path.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// The on-disk format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const MARKER_MAGIC: &[u8; 8] = b"EVSTORE\0";

/// Files of a store directory.
pub const MARKER: &str = "STORE";
/// The marker while it is written, before it is renamed into place.
const MARKER_TEMPORARY: &str = "STORE.tmp";
/// Bytes in the marker file: the magic and a u32 version.
const MARKER_LEN: usize = 12;
const _: () = assert!(MARKER_LEN == MARKER_MAGIC.len() + 4);
/// The writer lock.
pub const LOCK: &str = "LOCK";
/// The record log.
pub const LOG: &str = "log.dat";
/// Global position -> log offset, 8 bytes per position.
pub const INDEX: &str = "global.idx";
/// The stream table snapshot.
pub const CHECKPOINT: &str = "checkpoint.dat";

/// Creates (owner-only) or validates the store directory; returns the lock file, held for as
/// long as the store is open.
pub fn prepare(dir: &Path) -> Result<File> {
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| StoreError::io(dir, e))?;
    }
    if !dir.is_dir() {
        return Err(StoreError::NotAStore {
            path: dir.into(),
            reason: "not a directory".into(),
        });
    }
    let marker = dir.join(MARKER);
    if marker.exists() {
        check_marker(&marker)?;
    } else {
        // The lock and a marker not yet renamed into place are what a first open that
        // died early leaves: still a new store.
        let foreign = fs::read_dir(dir)
            .map_err(|e| StoreError::io(dir, e))?
            .filter_map(|entry| entry.ok())
            .any(|entry| {
                entry.file_name() != LOCK
                    && !(entry.file_name() == MARKER_TEMPORARY
                        && is_unfinished_marker(&entry.path()))
            });
        if foreign {
            return Err(StoreError::NotAStore {
                path: dir.into(),
                reason: format!("it holds files but no {MARKER} marker"),
            });
        }
    }
    let lock = lock(dir)?;
    if !marker.exists() {
        write_marker(dir, &marker)?;
    }
    Ok(lock)
}

/// Whether `path` is what writing the marker can leave behind when interrupted: a regular
/// file (not a link) of at most the marker's length, each byte the marker's or zero.
fn is_unfinished_marker(path: &Path) -> bool {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return false;
    };
    if !metadata.is_file() || metadata.len() > MARKER_LEN as u64 {
        return false;
    }
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    let marker = marker_bytes();
    bytes.len() <= MARKER_LEN
        && bytes
            .iter()
            .zip(&marker)
            .all(|(&found, &want)| found == want || found == 0)
}

/// The marker file's contents: magic and format version.
fn marker_bytes() -> Vec<u8> {
    let mut bytes = MARKER_MAGIC.to_vec();
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes
}

fn check_marker(marker: &Path) -> Result<()> {
    let mut bytes = Vec::new();
    File::open(marker)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|e| StoreError::io(marker, e))?;
    if bytes.len() != MARKER_LEN || &bytes[..8] != MARKER_MAGIC {
        return Err(StoreError::NotAStore {
            path: marker.into(),
            reason: "the marker file is not an eventstore marker".into(),
        });
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != FORMAT_VERSION {
        return Err(StoreError::UnsupportedFormat {
            path: marker.into(),
            found,
            supported: FORMAT_VERSION,
        });
    }
    Ok(())
}

fn write_marker(dir: &Path, marker: &Path) -> Result<()> {
    let temporary = dir.join(MARKER_TEMPORARY);
    write_durably(&temporary, &marker_bytes())?;
    fs::rename(&temporary, marker).map_err(|e| StoreError::io(marker, e))?;
    sync_dir(dir)
}

/// Writes `bytes` to a new owner-only file and fsyncs it.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(path, e))
}

/// fsyncs a directory, making created or renamed entries durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))
}

/// Takes the exclusive writer lock (`flock`), refusing a second writer process.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::io(&path, e))?;
    // SAFETY: flock on an fd we own; no memory is passed.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        let error = std::io::Error::last_os_error();
        return Err(match error.raw_os_error() {
            Some(libc::EWOULDBLOCK) => StoreError::Locked { path: dir.into() },
            _ => StoreError::io(path, error),
        });
    }
    Ok(file)
}

/// Opens (creating, owner-only) a store file for reading and writing.
pub fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::io(path, e))
}

/// `dir/name`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
