//! Where the bytes past the log's end stop being zero, found without reading the whole
//! preallocated file: opening searches up to a pipe's in-flight window past the last commit
//! (over 1 GiB for the widest configuration, bounded by the file's end) for bytes a crash
//! left there.
//!
//! Two steps. The file system says which parts of the range hold data at all
//! (`lseek(SEEK_DATA / SEEK_HOLE)`): preallocated space that was never written is a hole and
//! is skipped unread. Within the data, whole blocks are tested for any non-zero byte with an
//! OR over the block (which the compiler vectorises) from the end backwards. Before, a
//! byte-by-byte search over the mapped 64 MiB of a fresh store's preallocated log took most
//! of `Store::open`'s 40-70 ms (release build), and filled 64 MiB of page cache with zeros.

use std::fs::File;

/// Most data segments asked of the file system; past it, the rest of the range is searched
/// as one segment (a bound on the loop, never a wrong answer).
const MAX_SEGMENTS: usize = 4096;

/// Bytes tested per step of [`last_nonzero`].
const BLOCK: usize = 4096;

/// One past the last non-zero byte of `bytes[from..to]` (`bytes` is the whole file, as
/// mapped), or `None` if that range is all zero. `file` is the same file: only the parts the
/// file system reports as data are read.
pub fn nonzero_end(file: &File, bytes: &[u8], from: usize, to: usize) -> Option<usize> {
    let to = to.min(bytes.len());
    if from >= to {
        return None;
    }
    data_segments(file, from, to)
        .iter()
        .rev()
        .find_map(|&(start, end)| last_nonzero(&bytes[start..end]).map(|at| start + at + 1))
}

/// Index of the last non-zero byte of `bytes`.
pub fn last_nonzero(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    // Bounded: every step moves `end` down by at least one byte.
    while end > 0 {
        // Blocks aligned to the slice's start, so every step but the first takes a whole one.
        let start = (end - 1) / BLOCK * BLOCK;
        let block = &bytes[start..end];
        if block.iter().fold(0u8, |any, &byte| any | byte) != 0 {
            return block
                .iter()
                .rposition(|&byte| byte != 0)
                .map(|at| start + at);
        }
        end = start;
    }
    None
}

/// The parts of `[from, to)` that may hold data, in order: the file system's data segments
/// where it can tell them, else the whole range. Holes (never-written space, preallocated or
/// sparse) read as zeros, so leaving them out changes no answer.
#[cfg(target_os = "linux")]
fn data_segments(file: &File, from: usize, to: usize) -> Vec<(usize, usize)> {
    use std::os::fd::AsRawFd;

    if holes_untrusted(file) {
        return vec![(from, to)];
    }
    let seek = |offset: usize, whence: libc::c_int| -> Result<usize, std::io::Error> {
        let offset = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: `lseek` on a descriptor `file` owns (open for the whole call); it only moves
        // that descriptor's offset, which nothing here relies on (all log I/O is positional).
        let found = unsafe { libc::lseek(file.as_raw_fd(), offset, whence) };
        usize::try_from(found).map_err(|_| std::io::Error::last_os_error())
    };
    let mut segments = Vec::new();
    let mut at = from;
    while at < to {
        if segments.len() == MAX_SEGMENTS {
            segments.push((at, to));
            break;
        }
        let start = match seek(at, libc::SEEK_DATA) {
            Ok(start) => start,
            // No data at or after `at`.
            Err(error) if error.raw_os_error() == Some(libc::ENXIO) => break,
            // The file system cannot tell (or something else went wrong): read it all.
            Err(_) => {
                segments.push((at, to));
                break;
            }
        };
        // A file system that answers out of order (data before `at`) is not trusted for the
        // rest.
        if start < at {
            segments.push((at, to));
            break;
        }
        if start >= to {
            break;
        }
        let end = seek(start, libc::SEEK_HOLE).map_or(to, |hole| hole.min(to));
        // Nor one whose hole does not come after the data: the loop must move on.
        if end <= start {
            segments.push((start, to));
            break;
        }
        segments.push((start, end));
        at = end;
    }
    debug_assert!(segments.windows(2).all(|pair| pair[0].1 <= pair[1].0));
    segments
}

/// `statfs`'s magic number of ZFS.
#[cfg(target_os = "linux")]
const ZFS_SUPER_MAGIC: i64 = 0x2fc1_2fc1;

/// Whether the file's file system is one whose hole reports are not trusted: ZFS before
/// 2.2.2 / 2.1.14 could report dirty data as a hole (openzfs issues 11900 and 15526), and
/// which release runs cannot be told from here. Unknown (`fstatfs` failing) is trusted, as
/// every other file system answers `SEEK_DATA` correctly or not at all.
#[cfg(target_os = "linux")]
fn holes_untrusted(file: &File) -> bool {
    use std::os::fd::AsRawFd;

    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut stats: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fstatfs` writes one `statfs` into the struct we own, for a descriptor `file`
    // owns.
    let done = unsafe { libc::fstatfs(file.as_raw_fd(), &mut stats) };
    #[allow(clippy::unnecessary_cast)] // `f_type`'s width differs between targets
    let magic = stats.f_type as i64;
    done == 0 && magic == ZFS_SUPER_MAGIC
}

/// Elsewhere there is no portable way to ask: the whole range.
#[cfg(not(target_os = "linux"))]
fn data_segments(_file: &File, from: usize, to: usize) -> Vec<(usize, usize)> {
    vec![(from, to)]
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;

    #[test]
    fn the_last_nonzero_byte_is_found_at_every_place_around_block_edges() {
        assert_eq!(last_nonzero(&[]), None);
        assert_eq!(last_nonzero(&[0; 3 * BLOCK + 5]), None);
        for len in [1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 5] {
            for at in [0, len / 2, len.saturating_sub(BLOCK), len - 1] {
                let mut bytes = vec![0u8; len];
                bytes[at] = 0x80;
                assert_eq!(last_nonzero(&bytes), Some(at), "len {len}, at {at}");
                // An earlier non-zero byte does not hide a later one.
                bytes[0] = 1;
                assert_eq!(last_nonzero(&bytes), Some(at), "len {len}, at {at}");
            }
        }
    }

    /// A file made long by `set_len` (a hole) or by `fallocate` (unwritten extents, as the
    /// log is grown), with a few bytes written into it and left in the page cache: the search
    /// finds the last of them, and where the file system reports holes, reads less than the
    /// file.
    #[test]
    fn nonzero_bytes_are_found_past_holes_and_preallocated_space() {
        for preallocate in [false, true] {
            searched_in(tempfile::tempfile().unwrap(), preallocate);
        }
    }

    fn searched_in(file: std::fs::File, preallocate: bool) {
        use std::os::fd::AsRawFd;

        let len = 8 << 20;
        if preallocate {
            // SAFETY: `fallocate` on a descriptor `file` owns, with no pointers.
            let done = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len as libc::off_t) };
            if done != 0 {
                // A file system without it: the sparse file is all there is to test.
                return;
            }
        } else {
            file.set_len(len as u64).unwrap();
        }
        let mut bytes = vec![0u8; len];
        assert_eq!(nonzero_end(&file, &bytes, 0, len), None);
        for (at, value) in [(10, 1u8), (3 << 20, 7), (5 << 20, 9)] {
            file.write_all_at(&[value], at as u64).unwrap();
            bytes[at] = value;
        }
        assert_eq!(nonzero_end(&file, &bytes, 0, len), Some((5 << 20) + 1));
        assert_eq!(nonzero_end(&file, &bytes, 0, 5 << 20), Some((3 << 20) + 1));
        assert_eq!(nonzero_end(&file, &bytes, 11, 3 << 20), None);
        assert_eq!(nonzero_end(&file, &bytes, 0, 11), Some(11));
        assert_eq!(
            nonzero_end(&file, &bytes, len, len + 5),
            None,
            "empty range"
        );
        let segments = data_segments(&file, 0, len);
        assert!(
            segments.iter().any(|&(s, e)| s <= 5 << 20 && 5 << 20 < e),
            "{segments:?}"
        );
        let read: usize = segments.iter().map(|(s, e)| e - s).sum();
        // A file system that cannot tell holes reports the whole file as one segment.
        assert!(
            read < len / 2 || segments == [(0, len)],
            "{read} of {len} bytes read, preallocated {preallocate}: {segments:?}"
        );
    }
}
