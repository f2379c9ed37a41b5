//! Failover against real replay feeds on loopback: the primary gets its own
//! feed, the tertiary another; killing the primary's feed makes the
//! tertiary take over within `failover_after_ms` plus a connect, and hand
//! back when the feed returns. Hot standby: primary and a mirroring
//! tertiary (own key) on one broadcasting feed that drops either connection
//! at random; the file holds every tick exactly once.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{get_json, halt_and_read_past, read_capture, wait_until};
use serde_json::Value;
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::{Faults, ReplayConfig, Server};
use tickcap::status::client;

fn feed_on(addr: SocketAddr, rate: u64, tweak: impl FnOnce(&mut ReplayConfig)) -> Server {
    let mut cfg = ReplayConfig::synthetic(addr, rate);
    tweak(&mut cfg);
    // The port of a stopped feed can take a moment to be free again.
    for _ in 0..100 {
        if let Ok(s) = Server::start(cfg.clone()) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("cannot listen on {addr}");
}

/// Users' connections on `user_url`, the tertiary on `tertiary_url`;
/// `sections` adds `[primary]`/`[secondary]` instruments.
fn failover_config(
    user_url: &str,
    tertiary_url: &str,
    dir: &Path,
    sections: &str,
    after_ms: u64,
) -> String {
    format!(
        "[kite]\nurl = {user_url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n{sections}\
         [tertiary]\nurl = {tertiary_url:?}\nfailover_after_ms = {after_ms}\n[engine]\nreconnect_max_ms = 500\n",
        dir.display().to_string(),
    )
}

fn engine(text: &str) -> (Engine, String) {
    let cfg = Config::parse(text, Path::new("t.toml"), &Env::default()).unwrap();
    let e = Engine::start(cfg, Options::default()).unwrap();
    let url = format!("http://{}", e.status_addr().unwrap());
    (e, url)
}

/// Lines per connection id for `token`, as (receive µs, connection id), in file order.
fn timeline(dir: &Path, token: u32) -> Vec<(i64, u8)> {
    let cap = read_capture(dir);
    cap.by_token[&token]
        .iter()
        .zip(&cap.conn_ids[&token])
        .map(|(r, c)| (r.at_micros, *c))
        .collect()
}

#[test]
fn the_tertiary_carries_a_dead_primary_and_hands_back_when_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let primary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let addr = primary_feed.local_addr();
    let tertiary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let text = failover_config(
        &primary_feed.url(),
        &tertiary_feed.url(),
        dir.path(),
        "[primary]\ninstruments = [256, 512]\n",
        1000,
    );
    let (engine, url) = engine(&text);
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 500));
    assert_eq!(get_json(&url, "/health")["status"], "healthy");

    // Kill the primary's feed for 10 s.
    primary_feed.stop();
    assert!(
        wait_until(Duration::from_secs(5), || get_json(&url, "/failovers")
            ["active"]
            == true),
        "no takeover"
    );
    assert!(wait_until(Duration::from_secs(5), || stats.conns[2]
        .ticks
        .load(std::sync::atomic::Ordering::Relaxed)
        > 100));
    let h = get_json(&url, "/health");
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("failover"), "{h}");
    let conns = get_json(&url, "/connections");
    assert_eq!(
        conns["connections"][2]["carrying"][0]["instruments"], 2,
        "{conns}"
    );
    // The primary stays dead while the tertiary delivers a few thousand
    // ticks (about 1.5 s at this rate): an outage much longer than the gap.
    let carried_before = stats.conns[2]
        .ticks
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || stats.conns[2]
        .ticks
        .load(std::sync::atomic::Ordering::Relaxed)
        > carried_before + 3000));

    // The feed returns on the same port.
    let primary_feed = feed_on(addr, 2_000, |_| {});
    assert!(
        wait_until(Duration::from_secs(10), || get_json(&url, "/failovers")
            ["active"]
            == false),
        "no handback"
    );
    // The record is complete once the recovered primary's first tick is seen.
    assert!(wait_until(Duration::from_secs(5), || get_json(
        &url,
        "/failovers"
    )["failovers"][0]["gap_without_tertiary_ms"]
        .is_number()));
    let f = get_json(&url, "/failovers");
    let rec = &f["failovers"][0];
    assert_eq!(f["takeovers"], 1);
    assert_eq!(rec["instruments"], 2);
    let gap = rec["gap_ms"].as_f64().unwrap();
    let outage = rec["gap_without_tertiary_ms"].as_f64().unwrap();
    eprintln!("measured: gap with the tertiary {gap:.0} ms, without it {outage:.0} ms (failover_after_ms = 1000)");
    assert!(
        gap < 1000.0 + 1000.0,
        "gap {gap} ms exceeds failover_after + a connect"
    );
    assert!(
        outage > 1000.0 + 1000.0 && outage > gap + 1000.0,
        "outage {outage} ms, gap {gap} ms"
    );
    assert_eq!(
        get_json(&url, "/connections")["connections"][2]["state"],
        "idle",
        "the tertiary lets go"
    );
    primary_feed.halt();
    tertiary_feed.halt();
    engine.stop().expect("a clean shutdown");

    // The file: connection 1, then 3 during the takeover, then 1 again; the
    // largest gap between consecutive ticks is bounded by the takeover.
    let t = timeline(dir.path(), 256);
    let ids: Vec<u8> = t.iter().map(|x| x.1).collect();
    let first3 = ids
        .iter()
        .position(|&c| c == 3)
        .expect("tertiary ticks in the file");
    let last3 = ids.iter().rposition(|&c| c == 3).unwrap();
    assert!(ids[..first3].iter().all(|&c| c == 1));
    assert!(
        ids[last3 + 1..].iter().all(|&c| c == 1) && last3 + 1 < ids.len(),
        "the primary resumes after the handback"
    );
    let max_gap = t.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    assert!(max_gap < 2_000_000, "largest gap {max_gap} µs");

    // The events journal: the primary's instruments have one gap, from its
    // drop to the tertiary's cover — the failover delay and a connect —
    // and the journal names the takeover and the handback.
    let journals: Vec<_> = tickcap::days::segments_in(dir.path(), tickcap::days::Family::Events)
        .into_iter()
        .map(|s| s.path)
        .collect();
    let (r, _) = tickcap::analysis::coverage::read(&journals).unwrap();
    for token in [256, 512] {
        let gaps: Vec<_> = r.instruments[&token]
            .gaps
            .iter()
            .filter(|g| g.kind != tickcap::events::coverage::GapKind::Startup)
            .collect();
        assert_eq!(gaps.len(), 1, "{token}: {gaps:?}");
        let ms = (gaps[0].end - gaps[0].start) / 1000;
        eprintln!("coverage: {token} uncovered for {ms} ms during the takeover (failover_after_ms = 1000)");
        assert!((900..1500).contains(&ms), "{token}: {ms} ms");
        assert!(
            gaps[0].cause.starts_with("connection 1 closed"),
            "{}",
            gaps[0].cause
        );
    }
    let journal = std::fs::read_to_string(&journals[0]).unwrap();
    for kind in [
        "\"kind\":\"takeover\"",
        "\"kind\":\"handback\"",
        "\"why\":\"failover\"",
    ] {
        assert!(journal.contains(kind), "{kind}");
    }
}

#[test]
fn both_primary_and_secondary_failing_are_carried_primary_first() {
    let dir = tempfile::tempdir().unwrap();
    let user_feed = feed_on("127.0.0.1:0".parse().unwrap(), 3_000, |_| {});
    let tertiary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 3_000, |_| {});
    let sections = "[primary]\ninstruments = [256, 512]\n[secondary]\ninstruments = [1281]\n";
    let text = failover_config(
        &user_feed.url(),
        &tertiary_feed.url(),
        dir.path(),
        sections,
        500,
    );
    let (engine, url) = engine(&text);
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 300));
    let addr = user_feed.local_addr();
    user_feed.stop();
    assert!(wait_until(Duration::from_secs(5), || get_json(
        &url,
        "/failovers"
    )["failovers"]
        .as_array()
        .map_or(0, Vec::len)
        == 2));
    let f = get_json(&url, "/failovers");
    let mut from: Vec<u64> = f["failovers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["connection_id"].as_u64().unwrap())
        .collect();
    // Which one fails over first depends on which socket saw the close
    // first; both are carried (capacity priority: the test below).
    from.sort_unstable();
    assert_eq!(from, [1, 2]);
    assert!(wait_until(Duration::from_secs(5), || get_json(
        &url,
        "/connections"
    )["connections"][2]["subscribed_instruments"]
        == 3));
    // Ticks of both failed connections' instruments reached the file from
    // the tertiary (the writer publishes who delivered each last, once a second).
    assert!(wait_until(Duration::from_secs(10), || {
        let seen = stats.instruments.lock().unwrap();
        [256u32, 1281]
            .iter()
            .all(|t| seen.get(t).is_some_and(|s| s.connection_id == 3))
    }));
    let user_feed = feed_on(addr, 3_000, |_| {});
    assert!(wait_until(Duration::from_secs(10), || get_json(
        &url,
        "/failovers"
    )["active"]
        == false));
    assert!(wait_until(Duration::from_secs(5), || get_json(
        &url,
        "/connections"
    )["connections"][2]["subscribed_instruments"]
        == 0));
    user_feed.halt();
    tertiary_feed.halt();
    engine.stop().expect("a clean shutdown");
    for token in [256, 1281] {
        assert!(
            timeline(dir.path(), token).iter().any(|x| x.1 == 3),
            "{token} carried by the tertiary"
        );
    }
}

/// What a market feed's volume sequences show of one capture.
#[derive(Debug)]
struct Ledger {
    /// Ticks the exchange generated for the traded instruments.
    generated: u64,
    /// Of those, never written.
    missing: u64,
    /// Written more than once.
    duplicated: u64,
    /// Connections that wrote a tick first (index = id).
    writers: [bool; 4],
    /// Drops the feed inflicted on the primary.
    drops: u64,
}

/// A market feed at 4000 ticks/s that drops only the primary's key ("k")
/// at random times; the tertiary (key "k2") mirrors the primary when
/// `mirror`, else stands by idle. Runs until `drops` drops, then compares
/// each instrument's volume sequence in the file with what was generated.
fn primary_drops_on_a_market(mirror: bool, drops: u64) -> Ledger {
    let dir = tempfile::tempdir().unwrap();
    let feed = feed_on("127.0.0.1:0".parse().unwrap(), 4_000, |c| {
        c.market = true;
        c.faults = Faults {
            drop_every: Some(Duration::from_millis(350)),
            drop_only_key: Some("k".into()),
            ..Faults::default()
        };
    });
    let tertiary = if mirror {
        "[tertiary]\napi_key = \"k2\"\naccess_token = \"t2\"\nmirror = true\n"
    } else {
        "[tertiary]\napi_key = \"k2\"\naccess_token = \"t2\"\n"
    };
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 768, 256265]\n\
         {tertiary}[engine]\nreconnect_max_ms = 200\n",
        feed.url(),
        dir.path().display().to_string(),
    );
    let (engine, url) = engine(&text);
    let stats = Arc::clone(engine.stats());
    assert!(
        wait_until(Duration::from_secs(20), || feed.report().faults.drops
            >= drops),
        "{:?}",
        feed.report()
    );
    halt_and_read_past(&feed, &stats, Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(10), || {
        let dropped = stats
            .writer
            .dedup_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        stats.lines_written() + dropped == stats.ticks_received()
    }));
    let f = get_json(&url, "/failovers");
    engine.stop().expect("a clean shutdown");
    let report = feed.stop();
    assert_eq!(f["hot_standby"]["enabled"], mirror);
    assert_eq!(f["takeovers"], 0, "drops this short need no takeover");
    let cap = read_capture(dir.path());
    let mut ledger = Ledger {
        generated: 0,
        missing: 0,
        duplicated: 0,
        writers: [false; 4],
        drops: report.faults.drops,
    };
    for token in [256u32, 512, 768] {
        let last = report.last_volume[&token.to_string()];
        ledger.generated += last;
        let recs = cap.by_token.get(&token).map_or(&[][..], Vec::as_slice);
        let mut seen = vec![0u32; last as usize + 1];
        // Exactly once is the promise; the order is the receive order across
        // both connections, which can differ from the exchange's when one
        // lags (a reconnected primary may deliver a newer tick before the
        // lagging standby delivers an older one).
        for r in recs {
            seen[r.tick.volume_traded as usize] += 1;
        }
        // The standby's promise starts when it is subscribed: ticks the
        // exchange made before then (a primary dropped in its first
        // moments, on a loaded machine) are not its to save. Its first
        // written tick marks that point; without a standby, from the start.
        let ids = &cap.conn_ids[&token];
        let from = recs
            .iter()
            .zip(ids)
            .filter(|(_, c)| **c == 3)
            .map(|(r, _)| r.tick.volume_traded as usize)
            .min()
            .unwrap_or(1)
            .max(1);
        let gaps: Vec<usize> = (from..seen.len()).filter(|v| seen[*v] == 0).collect();
        if !gaps.is_empty() {
            eprintln!(
                "instrument {token}: missing volumes {:?} of {last}",
                &gaps[..gaps.len().min(20)]
            );
        }
        ledger.missing += gaps.len() as u64;
        ledger.duplicated += seen[1..].iter().filter(|n| **n > 1).count() as u64;
        for c in &cap.conn_ids[&token] {
            ledger.writers[usize::from(*c)] = true;
        }
    }
    eprintln!(
        "market, primary dropped {} times, mirror = {mirror}: {} generated, {} missing ({:.0} per drop), {} duplicated",
        ledger.drops,
        ledger.generated,
        ledger.missing,
        ledger.missing as f64 / ledger.drops.max(1) as f64,
        ledger.duplicated
    );
    ledger
}

#[test]
fn hot_standby_writes_every_tick_of_the_market_exactly_once_through_primary_drops() {
    let l = primary_drops_on_a_market(true, 4);
    assert!(l.generated > 4000, "{l:?}");
    assert_eq!((l.missing, l.duplicated), (0, 0), "{l:?}");
    assert!(
        l.writers[1] && l.writers[3],
        "both connections delivered first at some point: {l:?}"
    );
}

#[test]
fn without_the_standby_the_same_drops_lose_ticks() {
    // The control experiment: it proves the market feed can show a loss,
    // so the test above would fail if the standby did nothing.
    let l = primary_drops_on_a_market(false, 4);
    assert!(l.missing > 0, "{l:?}");
    assert_eq!(l.duplicated, 0, "{l:?}");
    assert!(!l.writers[3], "an idle tertiary writes nothing: {l:?}");
}

#[test]
fn when_the_tertiary_is_short_of_room_the_primary_is_carried_first() {
    let dir = tempfile::tempdir().unwrap();
    let user_feed = feed_on("127.0.0.1:0".parse().unwrap(), 3_000, |_| {});
    let tertiary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 3_000, |_| {});
    let primary: Vec<String> = (1..=2990u32).map(|i| ((i << 8) | 1).to_string()).collect();
    let secondary: Vec<String> = (1..=20u32)
        .map(|i| (((5000 + i) << 8) | 2).to_string())
        .collect();
    let sections = format!(
        "[primary]\ninstruments = [{}]\n[secondary]\ninstruments = [{}]\n",
        primary.join(","),
        secondary.join(",")
    );
    let text = failover_config(
        &user_feed.url(),
        &tertiary_feed.url(),
        dir.path(),
        &sections,
        500,
    );
    let (engine, url) = engine(&text);
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 3000));
    user_feed.stop();
    assert!(wait_until(Duration::from_secs(10), || get_json(
        &url,
        "/failovers"
    )["failovers"]
        .as_array()
        .map_or(0, Vec::len)
        == 2));
    let f = get_json(&url, "/failovers");
    let rec = |id: u64| {
        f["failovers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["connection_id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(rec(1)["instruments"], 2990, "{f}");
    assert_eq!(rec(1)["not_carried"].as_array().unwrap().len(), 0, "{f}");
    assert_eq!(rec(2)["instruments"], 10, "{f}");
    assert_eq!(rec(2)["not_carried"].as_array().unwrap().len(), 10, "{f}");
    assert_eq!(
        get_json(&url, "/connections")["connections"][2]["subscribed_instruments"],
        3000
    );
    tertiary_feed.halt();
    engine.stop().expect("a clean shutdown");
}

#[test]
fn a_reload_during_a_takeover_keeps_the_carried_instruments_captured() {
    let dir = tempfile::tempdir().unwrap();
    let primary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let tertiary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let text = failover_config(
        &primary_feed.url(),
        &tertiary_feed.url(),
        dir.path(),
        "[primary]\ninstruments = [256, 512]\n",
        500,
    );
    let path = dir.path().join("tickcap.toml");
    let engine = common::start_with_file(&path, &text, Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 200));
    primary_feed.stop();
    assert!(wait_until(Duration::from_secs(10), || get_json(
        &url,
        "/failovers"
    )["active"]
        == true));
    // The file is unchanged; the reload must not take the instruments off the tertiary.
    let (status, body) = {
        let r = client::request(
            &url,
            "POST",
            "/reload",
            Some(b"{}"),
            None,
            Duration::from_secs(3),
        )
        .unwrap();
        (r.status, r.json().unwrap_or(Value::Null))
    };
    assert_eq!(status, 200, "{body}");
    let t = &stats.conns[2];
    let before = t.ticks.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        wait_until(Duration::from_secs(5), || t
            .ticks
            .load(std::sync::atomic::Ordering::Relaxed)
            > before + 500),
        "the tertiary keeps delivering the carried instruments after the reload"
    );
    let c = get_json(&url, "/connections");
    assert_eq!(c["connections"][2]["subscribed_instruments"], 2, "{c}");
    assert_eq!(get_json(&url, "/failovers")["active"], true);
    tertiary_feed.halt();
    engine.stop().expect("a clean shutdown");
}

/// (connection id, mode) of every upstream row for `token`.
fn rows(url: &str, token: u32) -> Vec<(u64, String)> {
    get_json(url, "/instruments")["instruments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instrument_token"] == token)
        .map(|r| {
            (
                r["connection_id"].as_u64().unwrap(),
                r["mode"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn post(url: &str, path: &str, body: Value) -> u16 {
    common::post_json(url, path, &body).0
}

#[test]
fn control_calls_during_a_takeover_reach_the_tertiary_and_move_back_on_handback() {
    let dir = tempfile::tempdir().unwrap();
    let primary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let addr = primary_feed.local_addr();
    let tertiary_feed = feed_on("127.0.0.1:0".parse().unwrap(), 2_000, |_| {});
    let text = failover_config(
        &primary_feed.url(),
        &tertiary_feed.url(),
        dir.path(),
        "[primary]\ninstruments = [256, 512]\n",
        500,
    );
    let (engine, url) = engine(&text);
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 200));
    primary_feed.stop();
    assert!(wait_until(Duration::from_secs(10), || get_json(
        &url,
        "/failovers"
    )["active"]
        == true));
    // Subscribe, re-mode and unsubscribe on the dead primary: the tertiary follows at once.
    assert_eq!(
        post(
            &url,
            "/subscribe",
            serde_json::json!({"tokens": [1025], "connection_id": 1})
        ),
        200
    );
    assert_eq!(
        post(
            &url,
            "/mode",
            serde_json::json!({"tokens": [256], "mode": "full"})
        ),
        200
    );
    assert_eq!(
        post(&url, "/unsubscribe", serde_json::json!({"tokens": [512]})),
        200
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            rows(&url, 1025).contains(&(3, "quote".into()))
                && rows(&url, 256).contains(&(3, "full".into()))
                && !rows(&url, 512).iter().any(|r| r.0 == 3)
        }),
        "the tertiary carries 1025 {:?}, 256 in full {:?}, not 512 {:?}",
        rows(&url, 1025),
        rows(&url, 256),
        rows(&url, 512)
    );
    let ticks_1025 = || {
        get_json(&url, "/instruments")["instruments"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["instrument_token"] == 1025)
            .map(|r| r["tick_count"].as_u64().unwrap_or(0))
            .max()
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(5), || ticks_1025() > 50),
        "1025 is captured by the tertiary"
    );
    // The primary returns: it carries the changed set, the tertiary lets go.
    let primary_feed = feed_on(addr, 2_000, |_| {});
    assert!(
        wait_until(Duration::from_secs(10), || get_json(&url, "/failovers")
            ["active"]
            == false),
        "no handback"
    );
    assert_eq!(rows(&url, 1025), [(1, "quote".into())]);
    assert_eq!(rows(&url, 256), [(1, "full".into())]);
    assert!(rows(&url, 512).is_empty());
    assert_eq!(
        get_json(&url, "/connections")["connections"][2]["subscribed_instruments"],
        0
    );
    primary_feed.halt();
    tertiary_feed.halt();
    engine.stop().expect("a clean shutdown");
}
