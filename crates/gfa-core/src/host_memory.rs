//! Keep freed tensor memory in the process instead of handing it back to the kernel.
//!
//! libtorch's CPU tensors come from glibc's `malloc`. With glibc's defaults a block above the
//! mmap threshold (128 KiB, raised as large blocks are freed, up to 32 MiB) is its own mapping,
//! unmapped when freed, and free memory at the top of the heap is trimmed back to the kernel;
//! a training step that frees and reallocates its activations then pays a page fault (a
//! zeroed page from the kernel) for every 4 KiB of them, every step. On the 2-core
//! development machine that was 12–29 % of a `cnn` width-0.25 step's CPU time, for gfa and
//! PyTorch alike (docs and figures: `results/bench/plain_step_profile.md`).
//! [`keep_freed_memory`] turns both off (`M_MMAP_MAX = 0`, `M_TRIM_THRESHOLD` at its maximum),
//! so the freed blocks are reused; the peak resident set grows by a few percent (4–5 % there).
//! It changes no arithmetic. The `gfa` binary and the benches call it at start-up.

/// Tell glibc's `malloc` to keep freed memory for reuse (see the module doc). Returns whether
/// both settings took; does nothing where `GLIBC_TUNABLES` already tunes `malloc` (the user's
/// choice wins) and returns `false`.
pub fn keep_freed_memory() -> bool {
    if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
        return false;
    }
    // SAFETY: mallopt only sets malloc's parameters; it is safe to call at any time.
    unsafe {
        let no_mmap = libc::mallopt(libc::M_MMAP_MAX, 0);
        let no_trim = libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        no_mmap == 1 && no_trim == 1
    }
}

/// Minor page faults of this process so far (`getrusage`).
pub fn minor_faults() -> i64 {
    // SAFETY: getrusage fills a zeroed, valid rusage.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u.ru_minflt
    }
}
