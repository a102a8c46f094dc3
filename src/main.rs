//! The `sip2d` binary: see `sip2d --help`.

/// sled allocates on every write; mimalloc does that faster and with less fragmentation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sip2d::cli::main()
}
