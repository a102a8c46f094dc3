//! The `sip2d` binary: see `sip2d --help`.

fn main() -> std::process::ExitCode {
    sip2d::cli::main()
}
