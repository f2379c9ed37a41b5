//! Measures the gap in the capture when the primary's feed fails, with and
//! without the tertiary, on loopback:
//!
//! 1. the replay feed's drop fault (`--drop-every`): the primary is dropped
//!    and reconnects by itself (the tertiary does not need to act);
//! 2. the primary's feed killed for `--outage` seconds (default 10): the
//!    tertiary takes over after `failover_after_ms` (default 3000).
//!
//!     cargo run --release --example failover_gap -- [--outage 10] [--failover-after-ms 3000]

use std::path::Path;
use std::time::Duration;

use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::{Faults, ReplayConfig, Server};

fn arg(name: &str, default: f64) -> f64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(primary: &str, tertiary: &str, dir: &Path, after_ms: u64) -> Config {
    let text = format!(
        "[kite]\nurl = {primary:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512]\n\
         [tertiary]\nurl = {tertiary:?}\nfailover_after_ms = {after_ms}\n",
        dir.display().to_string()
    );
    Config::parse(&text, Path::new("<failover_gap>"), &Env::default()).expect("config")
}

/// The largest gap between consecutive ticks of instrument 256 in the capture, ms.
fn max_gap(dir: &Path) -> f64 {
    let mut times = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("line");
            if v["instrument_token"] == 256 {
                let ts: jiff::Timestamp = v["timestamp"]
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .expect("timestamp");
                times.push(ts.as_microsecond());
            }
        }
    }
    times
        .windows(2)
        .map(|w| (w[1] - w[0]) as f64 / 1000.0)
        .fold(0.0, f64::max)
}

fn main() {
    let outage = arg("--outage", 10.0);
    let after = arg("--failover-after-ms", 3000.0) as u64;
    let rate = 2000;

    // 1. The drop fault.
    let dir = tempfile::tempdir().expect("tmp");
    let mut fc = ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), rate);
    fc.faults = Faults {
        drop_every: Some(Duration::from_secs(2)),
        ..Faults::default()
    };
    let feed = Server::start(fc).expect("feed");
    let spare =
        Server::start(ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), rate)).expect("feed");
    let engine = Engine::start(
        config(&feed.url(), &spare.url(), dir.path(), after),
        Options::default(),
    )
    .expect("engine");
    std::thread::sleep(Duration::from_secs(7));
    feed.halt();
    std::thread::sleep(Duration::from_millis(200));
    engine.stop().expect("a clean shutdown");
    let drops = feed.stop().faults.drops;
    println!("drop fault: {drops} drops; largest gap in the capture {:.0} ms (reconnect: backoff from 200 ms + connect; no takeover)", max_gap(dir.path()));

    // 2. The feed killed for `outage` seconds.
    let dir = tempfile::tempdir().expect("tmp");
    let feed =
        Server::start(ReplayConfig::synthetic(([127, 0, 0, 1], 0).into(), rate)).expect("feed");
    let addr = feed.local_addr();
    let engine = Engine::start(
        config(&feed.url(), &spare.url(), dir.path(), after),
        Options::default(),
    )
    .expect("engine");
    let url = format!("http://{}", engine.status_addr().expect("status"));
    std::thread::sleep(Duration::from_secs(2));
    feed.stop();
    std::thread::sleep(Duration::from_secs_f64(outage));
    let feed = loop {
        if let Ok(f) = Server::start(ReplayConfig::synthetic(addr, rate)) {
            break f;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Wait for the handback (the primary's backoff may be several seconds by now).
    let mut f = serde_json::Value::Null;
    for _ in 0..400 {
        std::thread::sleep(Duration::from_millis(100));
        f = tickcap::status::client::get(&url, "/failovers")
            .expect("status")
            .json()
            .expect("json");
        if f["failovers"][0]["gap_without_tertiary_ms"].is_number() {
            break;
        }
    }
    feed.halt();
    spare.halt();
    std::thread::sleep(Duration::from_millis(200));
    engine.stop().expect("a clean shutdown");
    let r = &f["failovers"][0];
    println!(
        "feed killed {outage:.0} s: takeover after {after} ms; gap with the tertiary {} ms, without it {} ms; largest gap in the capture {:.0} ms",
        r["gap_ms"].as_f64().map_or("?".into(), |g| format!("{g:.0}")),
        r["gap_without_tertiary_ms"].as_f64().map_or("?".into(), |g| format!("{g:.0}")),
        max_gap(dir.path())
    );
}
