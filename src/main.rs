//! The `tickcap` binary: everything lives in the library (`tickcap::cli`).

fn main() -> std::process::ExitCode {
    tickcap::cli::main()
}
