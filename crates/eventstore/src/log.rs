//! Reading the record log through a memory map that follows the file as it grows.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use memmap2::Mmap;

use crate::error::{CorruptKind, Result, StoreError};

/// A read-only view of the log. Cheap to share; remaps when asked past its end.
#[derive(Debug)]
pub struct LogView {
    path: PathBuf,
    file: File,
    map: RwLock<Option<Arc<Mmap>>>,
}

impl LogView {
    /// A view of the log at `path`.
    pub fn open(path: &Path) -> Result<LogView> {
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        Ok(LogView {
            path: path.into(),
            file,
            map: RwLock::new(None),
        })
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A map covering at least `end` bytes (fails if the file is shorter).
    pub fn map_covering(&self, end: u64) -> Result<Arc<Mmap>> {
        if let Some(map) = self.map.read().unwrap_or_else(|p| p.into_inner()).as_ref()
            && map.len() as u64 >= end
        {
            return Ok(Arc::clone(map));
        }
        let mut slot = self.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = slot.as_ref()
            && map.len() as u64 >= end
        {
            return Ok(Arc::clone(map));
        }
        // SAFETY: the store holds the directory's writer lock, and the log is only ever
        // appended to and grown (never truncated or shrunk) while it is open, so the mapped
        // range stays backed by the file for the map's lifetime. Bytes under the map may change
        // (appends past the committed end), but readers only decode records below the
        // committed end, whose bytes never change: the writer does rewrite the log's last
        // partial 4 KiB chunk, but with the same bytes below the committed end.
        let map = unsafe { Mmap::map(&self.file) }.map_err(|e| StoreError::io(&self.path, e))?;
        if (map.len() as u64) < end {
            return Err(StoreError::Corrupt {
                path: self.path.clone(),
                offset: map.len() as u64,
                kind: CorruptKind::Truncated,
            });
        }
        let map = Arc::new(map);
        *slot = Some(Arc::clone(&map));
        Ok(map)
    }

    pub(crate) fn corrupt(&self, offset: u64, kind: CorruptKind) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            offset,
            kind,
        }
    }
}
