//! The `tickcap` binary: everything lives in the library (`tickcap::cli`).

fn main() -> std::process::ExitCode {
    // `tickcap analyze FILE | head -1`: when the reader of our output goes
    // away, `println!` panics with "failed printing to stdout: Broken pipe".
    // That is not an error of ours: exit quietly with 0, as Unix tools do.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
    tickcap::cli::main()
}
