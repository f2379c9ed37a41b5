//! The `tickcap` command line: argument parsing and one function per
//! subcommand. Behaviour lives in the library modules; this is glue.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod candles;
mod compress;
mod decode;
mod demo;
mod doctor;
mod export;
mod init;
mod instruments;
mod login;
pub mod replay;
mod run;
mod status;
mod tools;

/// Exit code for a usage or configuration error (clap uses 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;

/// Lossless capture of Zerodha Kite's streaming market data into daily JSONL files.
#[derive(Debug, Parser)]
#[command(name = "tickcap", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the capture service: three Kite connections, daily JSONL files. Until SIGINT/SIGTERM.
    Run(run::Args),
    /// Start the built-in replay feed on loopback and capture it (no account needed).
    Demo(demo::Args),
    /// Write a commented tickcap.toml to start from (every key, its default).
    Init(init::Args),
    /// Log in to Kite (the user's own login) and write the day's access token to access_token_file.
    Login(login::Args),
    /// Kite's instruments dump: `search TEXT` for tokens and symbols, `fetch` today's now.
    Instruments(instruments::Args),
    /// Live terminal view of a running service (its status port).
    Status(status::Args),
    /// Diagnose config, credentials, reachability, market hours and a running service.
    Doctor(doctor::Args),
    /// The data directory: daily files, sizes, tick counts, time ranges; --cleanup.
    Storage(tools::StorageArgs),
    /// Statistics (and --plot charts) of captured files.
    Analyze(tools::AnalyzeArgs),
    /// Check captured files: well-formed, ordered, and (with --replay-report) complete.
    Verify(tools::VerifyArgs),
    /// Kite's candles (minute … day) from captured days, as the service builds them live.
    Candles(candles::Args),
    /// When each instrument was captured, and the gaps with their causes (from the events journal).
    Coverage(tools::CoverageArgs),
    /// Compress closed days' plain captures to .jsonl.zst (atomically; the plain file is removed after).
    Compress(compress::Args),
    /// Captured days (plain or .jsonl.zst) as Parquet, one file a day, typed columns.
    Export(export::Args),
    /// Decode raw Kite binary messages (one file = one WebSocket message) to JSONL.
    Decode(decode::Args),
    /// Serve a Kite-compatible WebSocket feed (synthetic or recorded) for demos and load tests.
    Replay(Box<replay::Args>),
}

/// An error that ends the command, with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    /// 1 (runtime) or 2 (usage/config).
    pub code: u8,
    /// What to tell the user.
    pub error: anyhow::Error,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: EXIT_USAGE,
            error: error.into(),
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            code: EXIT_FAILURE,
            error: e.into(),
        }
    }
}

/// Parses the command line, runs the subcommand and maps its outcome to an
/// exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Init(args) => init::run(args),
        Command::Login(args) => login::run(args),
        Command::Instruments(args) => instruments::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Export(args) => export::run(args),
        Command::Compress(args) => compress::run(args),
        Command::Storage(args) => tools::storage(args),
        Command::Analyze(args) => tools::analyze(args),
        Command::Verify(args) => tools::verify(args),
        Command::Coverage(args) => tools::coverage(args),
        Command::Candles(args) => candles::run(args),
        Command::Status(args) => status::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Replay(args) => replay::run(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`| head`): not a failure.
        Err(f) if broken_pipe(&f.error) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("tickcap: error: {:#}", f.error);
            ExitCode::from(f.code)
        }
    }
}

/// Whether an error is, at its root, a write to a closed pipe.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs to stderr; `TICKCAP_LOG` (e.g. `debug`, `tickcap=trace`) sets the filter.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TICKCAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
