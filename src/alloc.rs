//! A global allocator for training programs: mimalloc that keeps freed memory.
//!
//! A training step frees and reallocates the same large activation buffers every
//! step. mimalloc's default hands freed memory back to the OS after a delay, so
//! every step page-faulted its buffers in again and the kernel zeroed them: on a
//! batch-norm CNN step that was 9,700 faults per run and 13 % of the CPU time
//! (docs/BENCHMARKS.md). This allocator turns purging off; memory stays at the
//! program's peak, which a training run reaches in its first step anyway.
//!
//! ```no_run
//! #[global_allocator]
//! static GLOBAL: taper::alloc::Allocator = taper::alloc::Allocator;
//! ```

use std::alloc::{GlobalAlloc, Layout};
use std::sync::Once;

/// mimalloc with purging of freed memory turned off (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

static TUNE: Once = Once::new();

/// mimalloc 3's `mi_option_purge_delay` (`-1`: never purge).
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

extern "C" {
    fn getenv(name: *const std::ffi::c_char) -> *mut std::ffi::c_char;
}

fn tune() {
    TUNE.call_once(|| {
        // An explicit MIMALLOC_PURGE_DELAY in the environment wins. Read with C's
        // getenv: std's `env::var_os` allocates the value, which from inside the
        // allocator re-entered this `Once` and hung the process.
        // SAFETY: getenv reads the environment and allocates nothing;
        // mi_option_set sets a process-wide integer option.
        unsafe {
            if getenv(c"MIMALLOC_PURGE_DELAY".as_ptr()).is_null() {
                libmimalloc_sys::mi_option_set(PURGE_DELAY, -1);
            }
        }
    });
}

// SAFETY: every call is forwarded unchanged to mimalloc's allocator.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        tune();
        mimalloc::MiMalloc.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        tune();
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_set_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads and sets process-wide integer options.
        unsafe {
            // Option 15 has mimalloc 3's purge-delay default (1000 ms) until tuned.
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), 1000);
            tune();
            assert_eq!(libmimalloc_sys::mi_option_get(PURGE_DELAY), -1);
        }
        let v = vec![1u8; 1 << 20];
        // SAFETY: a valid layout, freed with the same allocator.
        unsafe {
            let p = Allocator.alloc(Layout::from_size_align(64, 8).unwrap());
            assert!(!p.is_null());
            Allocator.dealloc(p, Layout::from_size_align(64, 8).unwrap());
        }
        assert_eq!(v.len(), 1 << 20);
    }
}
