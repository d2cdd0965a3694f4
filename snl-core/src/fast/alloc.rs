//! Allocator settings for training on the CPU.

/// Makes glibc's `malloc` keep and reuse the large buffers a training step frees.
///
/// By default glibc serves every allocation above 128 KiB-32 MiB (its threshold adapts)
/// with a fresh `mmap` and returns it with `munmap` when freed, so every activation of
/// every step is page-faulted in again, one 4 KiB page at a time; on 2 cores those faults
/// cost more than the arithmetic of an elementwise op. This sets `M_MMAP_MAX = 0` (no
/// mmapped chunks: large buffers come from the heap and are reused), a 1 GiB
/// `M_TRIM_THRESHOLD` (freed memory at the top of the heap is not handed back between
/// steps) and a 64 MiB `M_TOP_PAD` (the heap grows in large steps). The price is a peak
/// resident size that does not shrink after the peak.
///
/// Call it once at start-up, before the first large allocation. Returns whether the
/// settings were applied: `true` on Linux with glibc, `false` (and a no-op) elsewhere.
pub fn tune_allocator() -> bool {
    imp::tune()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod imp {
    pub fn tune() -> bool {
        const TRIM_THRESHOLD: libc::c_int = 1 << 30;
        const TOP_PAD: libc::c_int = 64 << 20;
        // SAFETY: mallopt only changes glibc's allocation parameters; any values are valid
        // and memory already allocated stays valid.
        unsafe {
            let mmap = libc::mallopt(libc::M_MMAP_MAX, 0);
            let trim = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            let pad = libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
            mmap == 1 && trim == 1 && pad == 1
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn tune() -> bool {
        false
    }
}
