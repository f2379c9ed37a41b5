//! Fan-out load run: the replay feed upstream, the capture engine with its
//! hub (`[serve]`), and N Kite clients (plain WebSocket clients speaking
//! Kite's protocol, each subscribed to every instrument), all on loopback.
//! For each (rate, clients) pair it prints whether capture stayed lossless,
//! capture's receive→ring latency, the hub's receive→client latency, what
//! the clients received in all, and clients dropped as too slow.
//!
//!     cargo run --release --example fanout -- [--seconds 4] [--rates 10000,100000] [--clients 0,50] [--instruments 200] [--mode quote]
//!
//! Everything shares this machine's 2 cores (feed, event loop, writer, hub
//! and the clients' threads), so the figures are a floor.

use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options, Stats};
use tickcap::kite::{ClientRequest, Mode};
use tickcap::replay::{ReplayConfig, Server};
use tungstenite::Message;

struct Args {
    seconds: f64,
    rates: Vec<u64>,
    clients: Vec<usize>,
    instruments: u32,
    mode: Mode,
}

fn list<T: std::str::FromStr>(v: &str) -> Vec<T> {
    v.split(',')
        .map(|x| x.trim().parse().ok().expect("a comma-separated list"))
        .collect()
}

fn args() -> Args {
    let mut a = Args {
        seconds: 4.0,
        rates: vec![10_000, 100_000],
        clients: vec![0, 50],
        instruments: 200,
        mode: Mode::Quote,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().unwrap_or_default();
        match flag.as_str() {
            "--seconds" => a.seconds = v.parse().expect("--seconds N"),
            "--rates" => a.rates = list(&v),
            "--clients" => a.clients = list(&v),
            "--instruments" => a.instruments = v.parse().expect("--instruments N"),
            "--mode" => a.mode = v.parse().expect("--mode ltp|quote|full"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// One client: subscribes `tokens` in `mode`, counts packets until `stop`.
fn client(url: String, tokens: Vec<u32>, mode: Mode, got: Arc<AtomicU64>, stop: Arc<AtomicBool>) {
    let host = url.trim_start_matches("ws://").to_owned();
    let stream = TcpStream::connect(&host).expect("connect to the hub");
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let (mut ws, _) =
        tungstenite::client(format!("{url}/?api_key=k&access_token=t"), stream).expect("upgrade");
    ws.send(Message::text(
        ClientRequest::Subscribe(tokens.clone()).to_json(),
    ))
    .expect("subscribe");
    ws.send(Message::text(ClientRequest::Mode(mode, tokens).to_json()))
        .expect("mode");
    while !stop.load(Ordering::Relaxed) {
        match ws.read() {
            Ok(Message::Binary(b)) if b.len() >= 2 => {
                got.fetch_add(
                    u64::from(u16::from_be_bytes([b[0], b[1]])),
                    Ordering::Relaxed,
                );
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// CPU seconds used so far by this process's threads, by thread name
/// (the engine's threads are named; the clients are `fanout-client`, the
/// replay feed's `tickcap-replay*`).
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let hz = 100.0; // USER_HZ on Linux
    let mut m = std::collections::BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for t in rd.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split(' ').collect();
            let ticks: f64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0.0)
                + fields.get(12).and_then(|u| u.parse().ok()).unwrap_or(0.0);
            let name = comm.trim();
            let group = if name.starts_with("tickcap-replay") || name.starts_with("replay") {
                "feed"
            } else if name == "fanout-client" {
                "clients"
            } else {
                name
            };
            *m.entry(group.to_owned()).or_insert(0.0) += ticks / hz;
        }
    }
    m
}

struct Run {
    sent: u64,
    written: u64,
    achieved: f64,
    ring_p99_us: f64,
    client_us: [u64; 3],
    delivered: u64,
    /// Ticks sent while every client was connected, times the clients.
    due: u64,
    delivered_per_s: f64,
    dropped: u64,
    /// Ticks the hub could not take (its tee ring full: clients closed 1013).
    overflowed: u64,
    per_message: f64,
    /// % of one core while the feed sent, per thread group.
    cpu: Vec<(String, f64)>,
}

fn one(rate: u64, clients: usize, a: &Args) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let count = (rate as f64 * a.seconds) as u64;
    let mut fc = ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), rate);
    fc.count = Some(count);
    let feed = Server::start(fc).expect("feed");
    let tokens: Vec<u32> = (1..=a.instruments).map(|i| (i << 8) | 1).collect();
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n[status]\nlisten = \"127.0.0.1:0\"\n\
         [primary]\nmode = \"quote\"\ninstruments = [{}]\n[serve]\nlisten = \"127.0.0.1:0\"\n",
        feed.url(),
        dir.path().display().to_string(),
        tokens.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
    );
    let cfg = Config::parse(&text, Path::new("<fanout>"), &Env::default()).expect("config");
    let engine = Engine::start(cfg, Options::default()).expect("engine");
    let stats: Arc<Stats> = Arc::clone(engine.stats());
    let url = format!("ws://{}", engine.serve_addr().expect("serve port"));
    let got = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (url, t, g, s) = (
                url.clone(),
                tokens.clone(),
                Arc::clone(&got),
                Arc::clone(&stop),
            );
            let mode = a.mode;
            std::thread::Builder::new()
                .name("fanout-client".into())
                .spawn(move || client(url, t, mode, g, s))
                .expect("client thread")
        })
        .collect();
    // Every client connected before the feed's first tick is counted.
    let t0 = Instant::now();
    while (stats.serve.clients.load(Ordering::Relaxed) as usize) < clients
        && t0.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent_before = feed.report().sent;
    let cpu0 = cpu_by_thread();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(a.seconds * 4.0 + 10.0);
    while !feed.count_reached() && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    let send_time = start.elapsed().as_secs_f64();
    let cpu1 = cpu_by_thread();
    let cpu: Vec<(String, f64)> = [
        "tickcap-loop",
        "tickcap-writer",
        "tickcap-hub",
        "clients",
        "feed",
    ]
    .iter()
    .map(|k| {
        let d = cpu1.get(*k).unwrap_or(&0.0) - cpu0.get(*k).unwrap_or(&0.0);
        (
            k.trim_start_matches("tickcap-").to_owned(),
            100.0 * d / send_time,
        )
    })
    .collect();
    let sent = feed.report().sent;
    while stats.lines_written() < sent && start.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let the clients take what the hub still holds for them.
    let settle = Instant::now();
    let mut last = u64::MAX;
    while settle.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(200));
        let now = got.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    let client_h = Stats::histogram(&stats.latency.receive_to_client_us);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    feed.halt();
    engine.stop().expect("a clean shutdown");
    let written = stats.lines_written();
    feed.stop();
    let delivered = got.load(Ordering::Relaxed);
    Run {
        sent,
        written,
        achieved: sent as f64 / send_time,
        ring_p99_us: stats.receive_to_ring_ns().value_at_quantile(0.99) as f64 / 1000.0,
        client_us: [
            client_h.value_at_quantile(0.5),
            client_h.value_at_quantile(0.99),
            client_h.max(),
        ],
        delivered,
        due: (sent - sent_before) * clients as u64,
        delivered_per_s: delivered as f64 / send_time,
        dropped: stats.serve.dropped_slow.load(Ordering::Relaxed),
        overflowed: stats.serve.ring_overflows.load(Ordering::Relaxed),
        cpu,
        per_message: stats.serve.ticks_sent.load(Ordering::Relaxed) as f64
            / stats.serve.messages_sent.load(Ordering::Relaxed).max(1) as f64,
    }
}

fn main() {
    let a = args();
    println!(
        "fan-out: {} s per run, {} instruments, clients subscribe all in {} mode; feed, engine, hub and clients on loopback",
        a.seconds, a.instruments, a.mode
    );
    println!(
        "{:>8} {:>7} {:>9} {:>9} {:>10} {:>8} {:>14} | receive→client µs p50/p99/max | {:>11} {:>9} {:>13} {:>7} {:>9}",
        "target/s", "clients", "sent", "written", "achieved/s", "lossless", "ring p99 µs", "delivered", "of due", "delivered/s", "dropped", "ticks/msg"
    );
    for &rate in &a.rates {
        for &n in &a.clients {
            let r = one(rate, n, &a);
            println!(
                "{:>8} {:>7} {:>9} {:>9} {:>10.0} {:>8} {:>14.1} | {}/{}/{} | {:>11} {:>8.2}% {:>13.0} {:>7} {:>9.1}",
                rate,
                n,
                r.sent,
                r.written,
                r.achieved,
                if r.written == r.sent { "yes" } else { "NO" },
                r.ring_p99_us,
                r.client_us[0],
                r.client_us[1],
                r.client_us[2],
                r.delivered,
                if r.due > 0 { 100.0 * r.delivered as f64 / r.due as f64 } else { 0.0 },
                r.delivered_per_s,
                r.dropped,
                r.per_message
            );
            println!(
                "{:>17} hub fell behind by {} ticks (clients closed 1013); CPU % of a core: {}",
                "",
                r.overflowed,
                r.cpu
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}
