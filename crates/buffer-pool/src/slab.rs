//! Slab memory: zeroed, 4 KiB-aligned blocks the pool carves into chunks.
//!
//! On Linux a slab is an anonymous private mapping. The kernel backs it with zero pages on
//! first touch, so creating a pool writes nothing, and a page costs a fault only when a chunk
//! on it is first used; freeing unmaps it, giving the memory back to the system. From the
//! allocator (`alloc_zeroed` with 4 KiB alignment, which has no `calloc` shortcut) every
//! slab was zeroed with `memset` up front: perf put a third of opening an event store (its
//! 1 MiB staging pool) there. Elsewhere the allocator is used (`mmap` with `MAP_ANONYMOUS`
//! is not on every target `cfg(unix)` covers).

use std::ptr::NonNull;

use crate::pool::ALIGN;

/// `bytes` (a non-zero multiple of [`ALIGN`]) of zeroed, `ALIGN`-aligned memory, or `None`
/// if the system refuses.
pub(crate) fn allocate_zeroed(bytes: usize) -> Option<NonNull<u8>> {
    assert!(
        bytes > 0 && bytes.is_multiple_of(ALIGN),
        "slab of {bytes} bytes"
    );
    let base = imp::allocate_zeroed(bytes)?;
    // Mappings start on a page, and pages are a multiple of 4 KiB wherever Linux runs; the
    // allocator was asked for this alignment.
    assert!(
        (base.as_ptr() as usize).is_multiple_of(ALIGN),
        "slab at {base:p} is not {ALIGN}-aligned"
    );
    Some(base)
}

/// Frees a slab.
///
/// # Safety
/// `base` came from [`allocate_zeroed`]`(bytes)`, is not freed yet, and nothing points into
/// it any more.
pub(crate) unsafe fn free(base: NonNull<u8>, bytes: usize) {
    // SAFETY: forwarded from our caller.
    unsafe { imp::free(base, bytes) }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ptr::NonNull;

    pub(super) fn allocate_zeroed(bytes: usize) -> Option<NonNull<u8>> {
        // SAFETY: a new anonymous private mapping: no file, no address asked for, so it
        // cannot overlap memory anything else uses; the kernel zero-fills it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(base.cast())
    }

    pub(super) unsafe fn free(base: NonNull<u8>, bytes: usize) {
        // SAFETY: the caller passes a whole mapping made by `allocate_zeroed(bytes)` that
        // nothing points into.
        let unmapped = unsafe { libc::munmap(base.as_ptr().cast(), bytes) };
        // It can only fail for an argument that is not such a mapping: a bug, not a state.
        debug_assert_eq!(unmapped, 0, "munmap of a {bytes}-byte slab failed");
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::alloc::Layout;
    use std::ptr::NonNull;

    use crate::pool::ALIGN;

    pub(super) fn allocate_zeroed(bytes: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(bytes, ALIGN).ok()?;
        // SAFETY: `layout` has a non-zero size (checked by the caller).
        NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })
    }

    pub(super) unsafe fn free(base: NonNull<u8>, bytes: usize) {
        // SAFETY: `base` came from `alloc_zeroed` with this very layout (the caller's contract),
        // which `allocate_zeroed` built without error.
        unsafe {
            std::alloc::dealloc(
                base.as_ptr(),
                Layout::from_size_align_unchecked(bytes, ALIGN),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabs_are_zeroed_aligned_and_writable() {
        for bytes in [ALIGN, 3 * ALIGN, 256 * ALIGN] {
            let base = allocate_zeroed(bytes).expect("slab");
            assert!((base.as_ptr() as usize).is_multiple_of(ALIGN));
            // SAFETY: `bytes` bytes from `allocate_zeroed`, initialised (zeroed), ours alone.
            let memory = unsafe { std::slice::from_raw_parts_mut(base.as_ptr(), bytes) };
            assert!(memory.iter().all(|b| *b == 0));
            memory.fill(0xa5);
            assert!(memory.iter().all(|b| *b == 0xa5));
            // SAFETY: from `allocate_zeroed(bytes)`; `memory` is not used after this.
            unsafe { free(base, bytes) };
        }
    }
}
