use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::Storage;
use super::uring::Rings;

/// How [`FileStorage::open`] opens its file.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// Try `O_DIRECT` (bypass the page cache). Every buffer and offset must then be aligned to
    /// the device's block size (pool chunks are 4 KiB-aligned). When the file system refuses
    /// it (tmpfs, some overlay file systems) the file is opened without it: see
    /// [`FileStorage::is_direct`].
    pub direct: bool,
    /// Unix permission bits for a new file (default `0o600`: owner only).
    pub mode: u32,
    /// Submit writes and syncs through io_uring when the kernel allows it (probed at open;
    /// otherwise `pwritev`/`fdatasync` are used): see [`FileStorage::backend`].
    pub io_uring: bool,
}

impl Default for FileOptions {
    fn default() -> Self {
        FileOptions {
            direct: false,
            mode: 0o600,
            io_uring: false,
        }
    }
}

/// How a [`FileStorage`] reaches the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `pwritev` and `fdatasync` system calls.
    Syscalls,
    /// io_uring `WRITEV` and `FSYNC(DATASYNC)` operations.
    IoUring,
}

/// A real file: `pwritev`, `fdatasync`, `fallocate` (falling back to `ftruncate` where the
/// file system lacks it).
#[derive(Debug)]
pub struct FileStorage {
    file: File,
    direct: bool,
    rings: Option<Rings>,
}

impl FileStorage {
    /// Opens or creates `path`. A new file's directory is fsynced so that the file itself
    /// survives a crash.
    pub fn open(path: &Path, options: FileOptions) -> io::Result<FileStorage> {
        let existed = path.exists();
        let open = |flags: i32| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(options.mode)
                .custom_flags(flags | libc::O_CLOEXEC)
                .open(path)
        };
        let (file, direct) = if options.direct {
            match open(libc::O_DIRECT) {
                Ok(file) => (file, true),
                // EINVAL: this file system does not do O_DIRECT; fall back cleanly.
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => (open(0)?, false),
                Err(error) => return Err(error),
            }
        } else {
            (open(0)?, false)
        };
        if !existed {
            sync_parent_dir(path)?;
        }
        // Any refusal (ENOSYS, EPERM from seccomp or the io_uring_disabled sysctl, ENOMEM)
        // means "not here": fall back to system calls.
        let rings = if options.io_uring {
            Rings::probe().ok()
        } else {
            None
        };
        Ok(FileStorage {
            file,
            direct,
            rings,
        })
    }

    /// True when the file was opened with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        if self.rings.is_some() {
            Backend::IoUring
        } else {
            Backend::Syscalls
        }
    }
}

/// fsyncs the directory holding `path`, making a new or renamed entry durable.
pub fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

impl Storage for FileStorage {
    fn write_vectored_at(&self, offset: u64, buffers: &[io::IoSlice<'_>]) -> io::Result<usize> {
        // Through io_uring when a ring can be had; otherwise (or without io_uring) pwritev.
        if let Some(result) = self
            .rings
            .as_ref()
            .and_then(|rings| rings.write_vectored(self.file.as_raw_fd(), offset, buffers))
        {
            return result;
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
        let count = buffers.len().min(libc::c_int::MAX as usize) as libc::c_int;
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` (guaranteed by std on Unix),
        // the pointer and count describe `buffers`, which outlives the call, and the kernel only
        // reads from those buffers.
        let written = unsafe {
            libc::pwritev(
                self.file.as_raw_fd(),
                buffers.as_ptr().cast(),
                count,
                offset,
            )
        };
        if written < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(written as usize)
    }

    fn sync_data(&self) -> io::Result<()> {
        match self
            .rings
            .as_ref()
            .and_then(|rings| rings.sync_data(self.file.as_raw_fd()))
        {
            Some(result) => result,
            None => self.file.sync_data(),
        }
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        if self.file.metadata()?.len() >= len {
            return Ok(());
        }
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length beyond off_t"))?;
        // SAFETY: plain syscall on an fd we own; no memory is passed.
        let result = unsafe { libc::fallocate(self.file.as_raw_fd(), 0, 0, len) };
        if result == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            // The file system cannot reserve blocks: extend the length instead.
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => self.file.set_len(len as u64),
            _ => Err(error),
        }
    }

    fn read_at(&self, offset: u64, buffer: &mut [u8]) -> io::Result<usize> {
        self.file.read_at(buffer, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
