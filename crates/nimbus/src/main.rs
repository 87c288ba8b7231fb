//! The `nimbus` binary: see the `nimbus` library for the commands.

use std::process::ExitCode;

/// mimalloc rather than the system allocator: the node allocates small, short-lived
/// buffers on many threads at once (requests, log lines, spans), where glibc's malloc
/// spent a tenth of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    nimbus::main()
}
