//! Shared by every target: an allocator that refuses any single allocation over 1 GiB, as
//! a machine without that much memory would.
//!
//! libFuzzer's `-malloc_limit_mb` works through a sanitizer's malloc hooks, so with `-s none`
//! it sees nothing. This is how an allocation sized from the input shows up instead: an
//! infallible one aborts ("memory allocation of N bytes failed"), a crash libFuzzer keeps;
//! a fallible one (`try_reserve`) becomes an error the library must report.

use std::alloc::{GlobalAlloc, Layout, System};

const LIMIT: usize = 1 << 30;

struct Capped;

// SAFETY: forwards to `System` unchanged, except that it fails (null) over `LIMIT`, which
// every caller of an allocator must handle.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT { std::ptr::null_mut() } else { unsafe { System.alloc(layout) } }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT { std::ptr::null_mut() } else { unsafe { System.alloc_zeroed(layout) } }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > LIMIT { std::ptr::null_mut() } else { unsafe { System.realloc(ptr, layout, new_size) } }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;
