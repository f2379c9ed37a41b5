//! `tickcap demo`: the embedded default. Starts the replay feed on a free
//! loopback port and captures it with `run`'s engine, no account needed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Failure;
use crate::config::{Config, Env};
use crate::engine::{Engine, Options};
use crate::replay::{ReplayConfig, Server};

/// Arguments of `tickcap demo`.
#[derive(Debug, clap::Args)]
pub(super) struct Args {
    /// Run this many seconds (default: until Ctrl-C).
    #[arg(long)]
    duration: Option<f64>,
    /// Ticks per second the built-in feed sends (over all instruments).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Where the daily JSONL files go.
    #[arg(long, default_value = "./market_data")]
    data_dir: PathBuf,
    /// Status port address (if taken, a free port is used and printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    status: std::net::SocketAddr,
    /// The hub: Kite clients connect here (if taken, a free port is used and printed).
    #[arg(long, default_value = "127.0.0.1:9001")]
    serve: std::net::SocketAddr,
    /// `zstd` writes market_data_YYYY-MM-DD.jsonl.zst (level 3).
    #[arg(long, default_value = "none", value_parser = ["none", "zstd"])]
    compression: String,
}

/// NSE stocks (INFY, RELIANCE, HDFCBANK, TCS, ICICIBANK, SBIN, ITC, LT,
/// AXISBANK, HINDUNILVR) and two indices (NIFTY 50, NIFTY BANK): quote mode
/// on the primary connection.
const PRIMARY: &[u32] = &[
    408_065, 738_561, 341_249, 2_953_217, 1_270_529, 779_521, 424_961, 2_939_649, 1_510_401,
    356_865, 256_265, 260_105,
];
/// Full mode (market depth) on the secondary: TATAMOTORS, BHARTIARTL, KOTAKBANK.
const SECONDARY: &[u32] = &[884_737, 2_714_625, 492_033];

/// The demo's configuration, as TOML (so it goes through the same validation as a user's file).
pub(super) fn demo_config(
    feed_url: &str,
    data_dir: &std::path::Path,
    status: std::net::SocketAddr,
    serve: std::net::SocketAddr,
    compression: &str,
) -> String {
    let list = |t: &[u32]| t.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    format!(
        "[kite]\nurl = {url:?}\napi_key = \"demo\"\naccess_token = \"demo-access-token\"\n\n\
         [storage]\ndata_dir = {dir:?}\ntimezone = \"Asia/Kolkata\"\nfsync = \"interval\"\nflush_interval_ms = 50\ncompression = {compression:?}\n\n\
         [status]\nlisten = \"{status}\"\n\n[primary]\nmode = \"quote\"\ninstruments = [{p}]\n\n[secondary]\nmode = \"full\"\ninstruments = [{s}]\n\n\
         [tertiary]\nfailover_after_ms = 3000\n\n[serve]\nlisten = \"{serve}\"\n\n[candles]\nintervals = [\"minute\", \"5minute\"]\n",
        url = feed_url,
        dir = data_dir.display().to_string(),
        p = list(PRIMARY),
        s = list(SECONDARY),
    )
}

/// Runs the demo.
pub(super) fn run(args: Args) -> Result<(), Failure> {
    let duration = match args.duration {
        Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
        Some(s) => {
            return Err(Failure::usage(anyhow::anyhow!(
                "--duration must be a positive number of seconds, not {s}"
            )))
        }
        None => None,
    };
    let feed = Server::start(ReplayConfig::synthetic(
        ([127, 0, 0, 1], 0).into(),
        args.rate,
    ))
    .context("starting the built-in replay feed on 127.0.0.1")?;
    let parse = |status, serve| {
        let text = demo_config(
            &feed.url(),
            &args.data_dir,
            status,
            serve,
            &args.compression,
        );
        Config::parse(&text, std::path::Path::new("<demo>"), &Env::default())
    };
    let cfg = parse(args.status, args.serve).map_err(Failure::usage)?;
    super::run::describe(&cfg);
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&interrupted))
            .context("installing signal handlers")?;
    }
    // A taken port (another tickcap, say) is replaced by a free one.
    let (mut status, mut serve) = (args.status, args.serve);
    let free: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let mut attempt = Engine::start(cfg, Options::default());
    for _ in 0..2 {
        match &attempt {
            Err(crate::engine::EngineError::Status { addr, error }) => {
                eprintln!(
                    "tickcap demo: status port {addr} unavailable ({error}); using a free port"
                );
                status = free;
            }
            Err(crate::engine::EngineError::Serve { addr, error }) => {
                eprintln!(
                    "tickcap demo: serve port {addr} unavailable ({error}); using a free port"
                );
                serve = free;
            }
            _ => break,
        }
        let cfg = parse(status, serve).map_err(Failure::usage)?;
        attempt = Engine::start(cfg, Options::default());
    }
    let engine = attempt.map_err(engine_failure)?;
    let dir = std::fs::canonicalize(&args.data_dir).unwrap_or(args.data_dir.clone());
    println!(
        "tickcap demo: replay feed at {} ({} ticks/s), capturing into {}",
        feed.url(),
        args.rate,
        dir.display()
    );
    if let Some(a) = engine.status_addr() {
        println!(
            "  status: http://{a}/  (JSON: /health /connections /instruments /storage /metrics)"
        );
    }
    if let Some(a) = engine.serve_addr() {
        println!(
            "  hub: ws://{a}/ — point any Kite ticker client there, e.g. Python: \
             KiteTicker(\"demo\", \"demo\", root=\"ws://{a}\")"
        );
    }
    println!(
        "  stop with Ctrl-C{}",
        duration.map_or(String::new(), |d| format!(
            " (or wait {:.0} s)",
            d.as_secs_f64()
        ))
    );
    let started = Instant::now();
    let mut last_print = Instant::now();
    while !interrupted.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(100));
        if last_print.elapsed() >= Duration::from_secs(5) {
            let s = engine.stats();
            println!(
                "  {} ticks received, {} written",
                s.ticks_received(),
                s.lines_written()
            );
            last_print = Instant::now();
        }
    }
    // Stop the feed's ticks first, wait until the engine has read every
    // tick the feed sent (at --rate 0 the sockets hold a backlog: stopping
    // at once would close them unread and the check below would count
    // ticks still in flight as missing), then stop the engine.
    feed.halt();
    let stats = Arc::clone(engine.stats());
    let sent = feed.report().sent;
    let until = Instant::now() + Duration::from_secs(30);
    while stats.ticks_received() < sent && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let outcome = engine.stop();
    let report = feed.stop();
    let written = stats.lines_written();
    let file = stats
        .writer
        .current_file
        .lock()
        .ok()
        .and_then(|p| p.clone());
    println!(
        "tickcap demo: the feed sent {} ticks; {} received, {} written{}",
        report.sent,
        stats.ticks_received(),
        written,
        if report.sent == written {
            " (lossless)"
        } else {
            ""
        }
    );
    if let Some(f) = file {
        println!("  file: {}", f.display());
    }
    outcome?;
    if report.sent != written {
        return Err(anyhow::anyhow!("{} ticks sent but {written} written", report.sent).into());
    }
    Ok(())
}

/// A start failure: exit 2 when the configuration is at fault.
pub(super) fn engine_failure(e: crate::engine::EngineError) -> Failure {
    if e.is_config() {
        Failure::usage(e)
    } else {
        e.into()
    }
}
