//! Load-test driver: the replay feed and the capture engine on loopback (real
//! sockets, real files in a temp dir), at rising tick rates. For each rate it
//! prints what was sent and written, the achieved rate, and the latency
//! percentiles from the engine's histograms; then the highest rate that was
//! both lossless and sustained (achieved ≥ 95% of the target).
//!
//!     cargo run --release --example loadtest -- [--seconds 3] [--rates 1000,10000,...] [--instruments 200] [--mode quote] [--zstd LEVEL]
//!
//! Everything runs on this machine's 2 cores: the feed's session threads,
//! the event loop and the writer compete, so the figures are a floor for a
//! capture host whose feed is elsewhere.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options, Stats};
use tickcap::replay::{ReplayConfig, Server};

struct Args {
    seconds: f64,
    rates: Vec<u64>,
    instruments: u32,
    mode: String,
    /// Poll the status port's /metrics this many times a second during each run.
    poll_metrics: u32,
    /// Capture compressed (`compression = "zstd"`) at this level.
    zstd: Option<i32>,
    /// Publish to Kafka at these brokers (topic `loadtest`, which must exist).
    kafka: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        seconds: 3.0,
        rates: vec![
            1_000, 10_000, 100_000, 200_000, 300_000, 400_000, 600_000, 800_000, 1_000_000,
        ],
        instruments: 200,
        mode: "quote".into(),
        poll_metrics: 0,
        zstd: None,
        kafka: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--rates" => {
                a.rates = v
                    .split(',')
                    .map(|r| r.trim().parse().expect("--rates a,b,c"))
                    .collect()
            }
            "--instruments" => a.instruments = v.parse().expect("--instruments N"),
            "--mode" => a.mode = v,
            "--poll-metrics" => a.poll_metrics = v.parse().expect("--poll-metrics N"),
            "--zstd" => a.zstd = Some(v.parse().expect("--zstd LEVEL")),
            "--kafka" => a.kafka = Some(v),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

struct Run {
    rate: u64,
    sent: u64,
    written: u64,
    achieved: f64,
    ring_ns: [u64; 5],
    written_us: [u64; 5],
    stalls: u64,
}

fn pct(h: &hdrhistogram::Histogram<u64>) -> [u64; 5] {
    [
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.9),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
    ]
}

fn one(rate: u64, a: &Args) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let count = (rate as f64 * a.seconds) as u64;
    let mut fc = ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), rate);
    fc.count = Some(count);
    let feed = Server::start(fc).expect("feed");
    let tokens: Vec<String> = (1..=a.instruments)
        .map(|i| ((i << 8) | 1).to_string())
        .collect();
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nfsync = \"interval\"\n{}[status]\nlisten = \"127.0.0.1:0\"\n\
         [primary]\nmode = {:?}\ninstruments = [{}]\n{}",
        feed.url(),
        dir.path().display().to_string(),
        a.zstd.map_or(String::new(), |l| format!("compression = \"zstd\"\nzstd_level = {l}\n")),
        a.mode,
        tokens.join(","),
        a.kafka
            .as_ref()
            .map_or(String::new(), |b| format!("[kafka]\nbrokers = {b:?}\ntopic = \"loadtest\"\n"))
    );
    let cfg = Config::parse(&text, Path::new("<loadtest>"), &Env::default()).expect("config");
    let start = Instant::now();
    let engine = Engine::start(cfg, Options::default()).expect("engine");
    let stats: Arc<Stats> = Arc::clone(engine.stats());
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let poller = (a.poll_metrics > 0).then(|| {
        let url = format!("http://{}", engine.status_addr().expect("status port"));
        let (per_s, polling) = (a.poll_metrics, Arc::clone(&polling));
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let mut n = 0u64;
            while polling.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = tickcap::status::client::get(&url, "/metrics");
                n += 1;
                let due = t0 + Duration::from_secs_f64(n as f64 / f64::from(per_s));
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
            }
            n
        })
    });
    let limit = Duration::from_secs_f64(a.seconds * 4.0 + 10.0);
    while !feed.count_reached() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    let send_time = start.elapsed().as_secs_f64();
    let sent = feed.report().sent;
    while stats.lines_written() < sent && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    polling.store(false, std::sync::atomic::Ordering::Relaxed);
    if let Some(p) = poller {
        let _ = p.join();
    }
    feed.halt();
    engine.stop().expect("a clean shutdown");
    let written = stats.lines_written();
    feed.stop();
    Run {
        rate,
        sent,
        written,
        achieved: sent as f64 / send_time,
        ring_ns: pct(&stats.receive_to_ring_ns()),
        written_us: pct(&Stats::histogram(&stats.latency.receive_to_written_us)),
        stalls: stats.conns[0]
            .ring_stalls
            .load(std::sync::atomic::Ordering::Relaxed),
    }
}

fn main() {
    let a = args();
    println!(
        "load test: {} s per rate, {} instruments in {} mode, feed and engine on loopback{}",
        a.seconds,
        a.instruments,
        a.mode,
        if a.poll_metrics > 0 {
            format!(", polling /metrics {}/s", a.poll_metrics)
        } else {
            String::new()
        }
    );
    println!(
        "{:>9} {:>10} {:>10} {:>11} {:>8} | receive→ring µs p50/p90/p99/p99.9/max | receive→written µs p50/p90/p99/p99.9/max | stalls",
        "target/s", "sent", "written", "achieved/s", "lossless"
    );
    let mut best = None;
    for &rate in &a.rates {
        let r = one(rate, &a);
        let lossless = r.written == r.sent;
        let sustained = r.achieved >= 0.95 * rate as f64;
        let us = |ns: u64| ns as f64 / 1000.0;
        println!(
            "{:>9} {:>10} {:>10} {:>11.0} {:>8} | {:.1}/{:.1}/{:.1}/{:.1}/{:.1} | {}/{}/{}/{}/{} | {}",
            r.rate,
            r.sent,
            r.written,
            r.achieved,
            if lossless && sustained { "yes" } else if lossless { "slow" } else { "NO" },
            us(r.ring_ns[0]),
            us(r.ring_ns[1]),
            us(r.ring_ns[2]),
            us(r.ring_ns[3]),
            us(r.ring_ns[4]),
            r.written_us[0],
            r.written_us[1],
            r.written_us[2],
            r.written_us[3],
            r.written_us[4],
            r.stalls
        );
        if lossless && sustained {
            best = Some(rate);
        }
    }
    match best {
        Some(r) => println!("highest lossless sustained rate: {r} ticks/s"),
        None => println!("no rate was both lossless and sustained"),
    }
}
