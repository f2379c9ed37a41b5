//! `tickcap replay`: run the Kite-compatible feed until a signal, the
//! duration, then print the report as one JSON line.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Failure;
use crate::replay::{read_recordings, Faults, ReplayConfig, Server, Source};

/// Arguments of `tickcap replay`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("source").required(true).args(["synthetic", "from"]))]
pub struct Args {
    /// Address to listen on, e.g. 127.0.0.1:9001 (port 0 picks a free one;
    /// the chosen address is printed on stderr).
    #[arg(long)]
    listen: SocketAddr,
    /// Serve synthetic ticks for every instrument a client subscribes to.
    #[arg(long)]
    synthetic: bool,
    /// Serve recorded tickcap JSONL files, in order.
    #[arg(long, num_args = 1.., value_name = "FILE.jsonl")]
    from: Vec<PathBuf>,
    /// Synthetic: send every subscriber of an instrument the same ticks (as
    /// Kite does), for hot-standby tests; default: each tick to one connection.
    #[arg(long)]
    broadcast: bool,
    /// Synthetic: an exchange clock generates ticks at --rate for every
    /// instrument any connection has subscribed, whether or not that
    /// connection is up; each tick goes to the connections subscribed at that
    /// instant. A connection that is down misses ticks (its volume sequence
    /// shows the gap), so loss and failover can be measured. Needs --rate > 0.
    #[arg(long, requires = "synthetic")]
    market: bool,
    /// Seed of the synthetic random walks.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Total ticks per second over all connections; 0 = as fast as clients
    /// read. Default: 1000 for --synthetic; for --from, pacing by the
    /// recorded timestamps (see --speed).
    #[arg(long)]
    rate: Option<u64>,
    /// With --from and no --rate: replay at this multiple of recorded time
    /// (0 = as fast as clients read).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Stop emitting after this many ticks in all (heartbeats go on).
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Require this api_key in the upgrade (else HTTP 403).
    #[arg(long)]
    api_key: Option<String>,
    /// Require this access_token in the upgrade (else HTTP 403).
    #[arg(long)]
    access_token: Option<String>,
    /// Connections allowed per API key (Kite: 3); more get HTTP 429.
    #[arg(long, default_value_t = 3)]
    max_connections: usize,
    /// Instruments allowed per connection (Kite: 3000).
    #[arg(long, default_value_t = 3000)]
    max_instruments: usize,
    /// Most packets per binary message.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=65535))]
    batch: u64,
    /// Send each connection's due ticks together once every MS
    /// milliseconds, in as few messages as --batch allows (Kite's shape: a
    /// message carries many instruments' packets). Default: each tick as
    /// soon as it is due (one or two packets a message at real rates).
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    send_every: Option<u64>,
    /// Fault: drop each connection abruptly (no close frame) at a random time
    /// between 0.5 and 1.5 × S seconds after it opens (seeded by --seed).
    #[arg(long, value_name = "S")]
    drop_every: Option<f64>,
    /// With --drop-every: drop only connections that use this api_key.
    #[arg(long, value_name = "KEY", requires = "drop_every")]
    drop_key: Option<String>,
    /// Fault: every S seconds, send nothing (no data, no heartbeat) for --stall-for.
    #[arg(long, value_name = "S")]
    stall_every: Option<f64>,
    /// Length of each stall, seconds.
    #[arg(long, value_name = "S", default_value_t = 6.0)]
    stall_for: f64,
    /// Fault: after every N ticks on a connection, add a packet of no Kite layout.
    #[arg(long, value_name = "N")]
    malformed_every: Option<u64>,
    /// Fault: refuse the first N upgrades with HTTP 403.
    #[arg(long, value_name = "N", default_value_t = 0)]
    reject_auth: u64,
    /// Fault: send an `error` text frame on each connection every S seconds.
    #[arg(long, value_name = "S")]
    error_every: Option<f64>,
    /// Send an order update (`{"type":"order",...}`) on every connection
    /// every S seconds — the same update on each socket of the key, as
    /// Kite does (`order_id` replay-1, replay-2, …).
    #[arg(long, value_name = "S")]
    order_every: Option<f64>,
    /// Also write the exit report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
}

fn seconds(flag: &str, v: Option<f64>) -> Result<Option<Duration>, Failure> {
    v.map(|s| {
        Duration::try_from_secs_f64(s)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                Failure::usage(anyhow::anyhow!(
                    "--{flag} must be a positive number of seconds, not {s}"
                ))
            })
    })
    .transpose()
}

/// Builds the feed's configuration from the arguments (and reads `--from`).
pub fn config(args: &Args) -> Result<ReplayConfig, Failure> {
    let source = if args.synthetic {
        Source::Synthetic { seed: args.seed }
    } else {
        let mut from = args.from.clone();
        crate::days::sort_paths(&mut from);
        if !crate::days::take_non_tick_files(&mut from).is_empty() {
            eprintln!("tickcap replay: events/orders files are not ticks: skipped");
        }
        let rec = read_recordings(&from).map_err(Failure::usage)?;
        for bad in rec.bad.iter().take(20) {
            eprintln!("tickcap replay: skipped {bad}");
        }
        if rec.bad.len() > 20 {
            eprintln!(
                "tickcap replay: ... and {} more malformed lines",
                rec.bad.len() - 20
            );
        }
        eprintln!(
            "tickcap replay: {} recorded ticks, {} malformed lines skipped",
            rec.records.len(),
            rec.bad.len()
        );
        if !(args.speed >= 0.0 && args.speed.is_finite()) {
            return Err(Failure::usage(anyhow::anyhow!(
                "--speed must be 0 or more, not {}",
                args.speed
            )));
        }
        Source::Recorded {
            records: Arc::new(rec.records),
            speed: args.speed,
        }
    };
    let rate = match (&source, args.rate) {
        (_, Some(r)) => r,
        (Source::Synthetic { .. }, None) => 1000,
        (Source::Recorded { .. }, None) => 0,
    };
    let mut cfg = ReplayConfig::synthetic(args.listen, rate);
    cfg.source = source;
    cfg.count = args.count;
    cfg.api_key = args.api_key.clone();
    cfg.access_token = args.access_token.clone();
    cfg.max_connections_per_key = args.max_connections;
    cfg.max_instruments = args.max_instruments;
    cfg.max_batch = args.batch as usize;
    cfg.send_every = args.send_every.map(std::time::Duration::from_millis);
    cfg.broadcast = args.broadcast;
    cfg.market = args.market;
    if cfg.market && rate == 0 {
        return Err(Failure::usage(anyhow::anyhow!(
            "--market needs --rate above 0 (an exchange ticks at a rate)"
        )));
    }
    cfg.faults = Faults {
        drop_every: seconds("drop-every", args.drop_every)?,
        stall_every: seconds("stall-every", args.stall_every)?,
        stall_for: seconds("stall-for", Some(args.stall_for))?.unwrap_or_default(),
        malformed_every: args.malformed_every.filter(|&n| n > 0),
        reject_auth: args.reject_auth,
        error_every: seconds("error-every", args.error_every)?,
        order_every: seconds("order-every", args.order_every)?,
        drop_only_key: args.drop_key.clone(),
    };
    Ok(cfg)
}

/// Runs the feed until SIGINT/SIGTERM or `--duration`, then reports.
pub fn run(args: Args) -> Result<(), Failure> {
    let duration = seconds("duration", args.duration)?;
    let cfg = config(&args)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let server = Server::start(cfg).with_context(|| format!("listening on {}", args.listen))?;
    eprintln!("tickcap replay: listening on {}", server.url());
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let started = Instant::now();
    while !stop.load(Ordering::Relaxed) && duration.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(bar) = &progress {
            let r = server.report();
            bar.set_message(format!(
                "{} ticks sent, {:.0}/s, {} connection(s)",
                r.sent,
                r.rate,
                r.per_connection.len()
            ));
            bar.tick();
        }
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let report = server.stop();
    let line = serde_json::to_string(&report).context("encoding the report")?;
    println!("{line}");
    if let Some(path) = &args.report {
        std::fs::write(path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
