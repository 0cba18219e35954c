/// mimalloc instead of the system allocator: tensors of the CPU backend are allocated anew at every
/// operation, and glibc's malloc returns large blocks to the kernel to fault them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    kdrun::cli::main()
}
