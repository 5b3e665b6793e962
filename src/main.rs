//! The `lsbackup` binary: parses arguments, draws output, maps outcomes to exit codes. The work
//! is done by the library (`lsbackup::engine` and friends).

mod cli;

fn main() {
    bound_allocator();
    std::process::exit(cli::main());
}

/// glibc's malloc raises its mmap threshold each time a large block is freed, after which the
/// archive's 1 MiB chunk buffers come from per-thread heaps that keep freed memory: resident
/// memory then grows with the number of threads that ever held a chunk. A fixed threshold (which
/// turns the raising off) gives such buffers back on free, and two arenas bound the rest.
fn bound_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024);
    }
}
