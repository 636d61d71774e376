//! `git-credential-codestorage`: run by git as `credential.helper = codestorage`.

#[cfg(any(target_env = "musl", test))]
mod arena;

fn main() -> std::process::ExitCode {
    git_credential_codestorage::cli::run()
}

/// With musl, every allocation of the program goes through the arena first.
///
/// Why: musl's allocator hands each freed block back to the kernel at once, so a `get`, which
/// allocates and frees a few hundred small blocks, spent a fifth of its run in `mmap` and `munmap`
/// (measured with perf on the static musl build; docs/performance.md). glibc keeps freed memory
/// and the arena measured no gain there, so other targets keep the system's allocator and the
/// program's only `unsafe` code runs where it pays.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: arena::Arena<{ 4 << 20 }> = arena::Arena::new();
