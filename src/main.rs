/// mimalloc instead of the system allocator: tensors of the CPU backend are allocated anew at every
/// operation, and glibc's malloc returns large blocks to the kernel to fault them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (the C library the `mimalloc` crate links).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc 2.3's `mi_option_e` (libmimalloc-sys 0.1.49, pinned by
/// Cargo.lock): how long freed memory stays committed before it is handed back to the kernel.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

fn main() -> std::process::ExitCode {
    // Never purge: a training step frees and allocates the same large tensors again and again, and
    // with the default 10 ms delay every step faulted its memory in anew (`kdrun bench --only
    // default-bert/train`: 19,356 → 1,765 page faults; BENCHMARKS.md). The process keeps its
    // high-water mark, as PyTorch's CPU allocator does.
    // SAFETY: sets an option; no allocation is live that depends on it.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    kdrun::cli::main()
}
