//! The official Python client (`kiteconnect.KiteTicker`, from PyPI) pointed
//! at tickcap's hub, changing nothing but its root URL: three instances at
//! once, on different instruments and modes, across upstream reconnects and
//! a failover, each receiving exactly the captured ticks of its instruments.
//!
//! Needs a Python with `kiteconnect` (build.rs looks: `TICKCAP_PYTHON`,
//! `.venv/bin/python`, `python3`); `.ci/run` creates `.venv`. Without one
//! the test is reported as ignored.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{read_capture, wait_until};
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::{Faults, ReplayConfig, Server};

#[cfg(has_kiteconnect)]
pub(crate) const PYTHON: &str = env!("TICKCAP_PYTHON_BIN");
#[cfg(not(has_kiteconnect))]
pub(crate) const PYTHON: &str = "python3";

/// One official client: `mode` on `tokens`, recording into `out`.
pub(crate) fn python_client(
    hub: &str,
    out: &Path,
    mode: &str,
    tokens: &[u32],
    stop: &Path,
) -> Child {
    let list: Vec<String> = tokens.iter().map(u32::to_string).collect();
    Command::new(PYTHON)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tools/hub_client.py"))
        .args([hub, out.to_str().unwrap(), mode, &list.join(",")])
        .args(["--seconds", "60", "--stop-file", stop.to_str().unwrap()])
        .spawn()
        .expect("start the Python client")
}

/// What one client recorded: per token, volume → last price; and whether
/// it connected.
fn recorded(out: &Path) -> (bool, BTreeMap<u32, BTreeMap<u32, f64>>, BTreeSet<String>) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut by_token: BTreeMap<u32, BTreeMap<u32, f64>> = BTreeMap::new();
    let mut modes = BTreeSet::new();
    let mut connected = false;
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        connected |= v["connected"] == true;
        if let (Some(t), Some(p)) = (v["instrument_token"].as_u64(), v["last_price"].as_f64()) {
            modes.insert(v["mode"].as_str().unwrap_or("").to_owned());
            if let Some(vol) = v["volume_traded"].as_u64() {
                by_token.entry(t as u32).or_default().insert(vol as u32, p);
            } else {
                by_token.entry(t as u32).or_default();
            }
        }
    }
    (connected, by_token, modes)
}

#[test]
#[cfg_attr(
    not(has_kiteconnect),
    ignore = "no Python with kiteconnect at build time (python3 -m venv .venv && .venv/bin/pip install kiteconnect, then touch build.rs)"
)]
fn three_official_clients_get_exactly_the_captured_ticks_across_reconnects_and_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let mut fcfg = ReplayConfig::synthetic("127.0.0.1:0".parse().unwrap(), 3000);
    // Every upstream connection is dropped 2.5 s after it opens: the
    // primary reconnects (backoff from 200 ms) and, down longer than
    // failover_after_ms, is taken over by the tertiary meanwhile.
    fcfg.faults = Faults {
        drop_every: Some(Duration::from_millis(2500)),
        ..Faults::default()
    };
    let feed = Server::start(fcfg).unwrap();
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 408065]\n[secondary]\ninstruments = [2562]\n\
         [tertiary]\nfailover_after_ms = 100\n[serve]\nlisten = \"127.0.0.1:0\"\n",
        feed.url(),
        dir.path().join("data").display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let engine = Engine::start(cfg, Options::default()).unwrap();
    let stats = Arc::clone(engine.stats());
    let hub = format!("ws://{}", engine.serve_addr().unwrap());
    let stop = dir.path().join("stop");
    // Full on captured quote instruments (raised upstream), LTP on the
    // secondary's full one, and an instrument nobody captures (subscribed
    // upstream for it).
    let plan: [(&str, &[u32]); 3] = [
        ("full", &[408_065, 256]),
        ("ltp", &[2562]),
        ("quote", &[1025]),
    ];
    let outs: Vec<_> = (0..3)
        .map(|i| dir.path().join(format!("client{i}.jsonl")))
        .collect();
    let mut kids: Vec<Child> = plan
        .iter()
        .zip(&outs)
        .map(|((mode, tokens), out)| python_client(&hub, out, mode, tokens, &stop))
        .collect();
    assert!(
        wait_until(Duration::from_secs(30), || outs
            .iter()
            .all(|o| recorded(o).0)),
        "the Python clients did not all connect"
    );
    let reconnects = || stats.conns[0].reconnects.load(Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(30), || reconnects() >= 2),
        "the primary never reconnected"
    );
    std::fs::write(&stop, "").unwrap();
    for k in &mut kids {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = k.try_wait().unwrap() {
                break Some(s);
            }
            if std::time::Instant::now() > deadline {
                let _ = k.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            status.is_some_and(|s| s.success()),
            "a Python client failed: {status:?}"
        );
    }
    let takeovers = common_takeovers(&engine);
    common::halt_and_read_past(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    assert!(takeovers >= 1, "no failover happened during the run");
    eprintln!(
        "upstream: {} primary reconnects, {takeovers} takeovers",
        reconnects()
    );

    let cap = read_capture(&dir.path().join("data"));
    for (i, ((mode, tokens), out)) in plan.iter().zip(&outs).enumerate() {
        let (_, got, modes) = recorded(out);
        assert!(
            modes.contains(*mode),
            "client {i} never saw mode {mode}: {modes:?}"
        );
        for &t in tokens.iter() {
            let div = f64::from(tickcap::kite::price_divisor(t));
            let file: BTreeMap<u32, f64> = cap.by_token[&t]
                .iter()
                .map(|r| (r.tick.volume_traded, f64::from(r.tick.last_price) / div))
                .collect();
            let Some(seen) = got.get(&t) else {
                panic!("client {i} got nothing for {t}");
            };
            if *mode == "ltp" {
                assert!(!seen.is_empty() || got.contains_key(&t));
                continue; // LTP packets carry no volume to compare by
            }
            assert!(
                seen.len() > 50,
                "client {i}: only {} ticks of {t}",
                seen.len()
            );
            eprintln!(
                "client {i} ({mode}): {t}: {} ticks, all in the file, none skipped",
                seen.len()
            );
            for (vol, price) in seen {
                assert_eq!(
                    file.get(vol),
                    Some(price),
                    "client {i}: {t} volume {vol} is not in the file as sent"
                );
            }
            let (lo, hi) = (*seen.keys().next().unwrap(), *seen.keys().last().unwrap());
            let missing: Vec<u32> = file
                .range(lo..=hi)
                .map(|(v, _)| *v)
                .filter(|v| !seen.contains_key(v))
                .collect();
            assert!(
                missing.is_empty(),
                "client {i}: {} captured ticks of {t} not delivered: {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
    }
}

/// Takeovers so far, from `/failovers`.
fn common_takeovers(engine: &Engine) -> u64 {
    tickcap::status::client::get(
        &format!("http://{}", engine.status_addr().unwrap()),
        "/failovers",
    )
    .ok()
    .and_then(|r| r.json())
    .and_then(|v| v["takeovers"].as_u64())
    .unwrap_or(0)
}
