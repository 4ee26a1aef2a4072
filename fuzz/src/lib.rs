//! Linked into every fuzz target: an allocator that aborts, as libFuzzer's `-malloc_limit_mb=64`
//! would, on any single allocation over 64 MiB. libFuzzer can only see allocations through a
//! sanitizer's malloc hooks, and the targets are built without a sanitizer (`scripts/fuzz.sh`
//! says why), so the limit is kept here.

use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make.
pub const MALLOC_LIMIT: usize = 64 << 20;

/// The system allocator, refusing anything over [`MALLOC_LIMIT`] with an abort (a crash to
/// libFuzzer, which keeps the input).
pub struct Limited;

#[global_allocator]
static ALLOCATOR: Limited = Limited;

fn check(size: usize) {
    if size > MALLOC_LIMIT {
        eprintln!("==malloc limit: an allocation of {size} bytes (over {MALLOC_LIMIT})");
        std::process::abort();
    }
}

// SAFETY: every method checks the size, then forwards its arguments unchanged to `System`,
// which upholds the `GlobalAlloc` contract; the callers' obligations are passed on as they are.
unsafe impl GlobalAlloc for Limited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's `layout` obligations are those of `System.alloc`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: `ptr` was allocated by `System` with `layout`; the caller vouches for `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
