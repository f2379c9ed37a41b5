//! A capture that knows its own coverage: the events journal beside each
//! day's ticks, coverage computed from it (drops, control calls, reloads),
//! `verify` judging by it, and Kite's order updates kept once each (the
//! real engine, the replay feed with its faults, real files).

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{get_json, halt_and_receive_all, post_json, wait_until};
use serde_json::{json, Value};
use tickcap::days::Family;
use tickcap::engine::Options;
use tickcap::events::coverage::{GapKind, Report};

fn config(feed: &tickcap::replay::Server, data: &Path, conns: &str) -> String {
    format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n{conns}",
        feed.url(),
        data.display().to_string()
    )
}

fn coverage_of(data: &Path) -> Report {
    let journals: Vec<_> = tickcap::days::segments_in(data, Family::Events)
        .into_iter()
        .map(|s| s.path)
        .collect();
    assert!(
        !journals.is_empty(),
        "no events journal in {}",
        data.display()
    );
    let (r, bad) = tickcap::analysis::coverage::read(&journals).unwrap();
    assert_eq!(bad, 0, "every journal line reads back");
    r
}

/// (receive time µs, connection) of every tick of `token`, in file order.
fn ticks_of(data: &Path, token: u32) -> Vec<(i64, u8)> {
    let mut out = Vec::new();
    for s in tickcap::days::segments(data) {
        for line in std::fs::read_to_string(&s.path).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            if v["instrument_token"] == token {
                let t = tickcap::time::parse_timestamp(v["timestamp"].as_str().unwrap()).unwrap();
                out.push((t, v["connection_id"].as_u64().unwrap() as u8));
            }
        }
    }
    out
}

fn tickcap(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The feed drops the primary's socket every 1.5 s: each drop is a gap in
/// coverage that the tick file confirms to the tick — the last tick of the
/// connection before it and the first after it lie within 100 ms of its
/// ends, and no tick of that connection falls inside it. `verify` calls
/// the capture incomplete and names the gaps.
#[test]
fn a_dropped_connection_is_exactly_its_gap_in_coverage() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(3_000, |c| {
        c.faults.drop_every = Some(Duration::from_millis(1500));
    });
    let text = config(&feed, &data, "[primary]\ninstruments = [256, 512, 768]\n");
    let engine = common::start_with_file(&dir.path().join("t.toml"), &text, Options::default());
    let stats = Arc::clone(engine.stats());
    assert!(
        wait_until(Duration::from_secs(20), || {
            feed.report().faults.drops >= 2 && stats.conns[0].opens.load(Ordering::Relaxed) >= 3
        }),
        "drops {}",
        feed.report().faults.drops
    );
    // Ticks after the last reopen close the last gap in the file too.
    let n = stats.conns[0].ticks.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .ticks
        .load(Ordering::Relaxed)
        > n + 300));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");

    let r = coverage_of(&data);
    for token in [256, 512, 768] {
        let i = &r.instruments[&token];
        let drops: Vec<_> = i
            .gaps
            .iter()
            .filter(|g| g.kind == GapKind::Disconnected)
            .collect();
        assert!(drops.len() >= 2, "{token}: {:?}", i.gaps);
        let ticks = ticks_of(&data, token);
        for g in drops {
            assert!(g.cause.starts_with("connection 1 closed: "), "{}", g.cause);
            let before = ticks
                .iter()
                .filter(|t| t.0 <= g.start)
                .map(|t| t.0)
                .max()
                .unwrap();
            let after = ticks
                .iter()
                .filter(|t| t.0 >= g.end)
                .map(|t| t.0)
                .min()
                .unwrap();
            assert!(
                ticks.iter().all(|t| t.0 <= g.start || t.0 >= g.end),
                "a tick inside the gap {g:?}"
            );
            assert!(
                g.start - before < 100_000,
                "{token}: last tick {} ms before the gap {g:?}",
                (g.start - before) / 1000
            );
            assert!(
                after - g.end < 100_000,
                "{token}: first tick {} ms after the gap {g:?}",
                (after - g.end) / 1000
            );
        }
        // Covered and gaps make up the watched time.
        let gaps: i64 = i.gaps.iter().map(|g| g.end - g.start).sum();
        assert_eq!(i.covered_micros + gaps, i.watched_micros);
    }
    let tick_file = tickcap::days::segments(&data)[0].path.clone();
    let (code, out) = tickcap(&["verify", tick_file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("coverage: INCOMPLETE"), "{out}");
    assert!(out.contains("connection 1 closed: "), "{out}");
    let (code, out) = tickcap(&[
        "coverage",
        "--json",
        "--instrument",
        "512",
        tick_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).unwrap();
    let gaps = v["gaps"].as_array().unwrap();
    assert!(gaps.len() >= 2, "{v}");
    for g in gaps {
        assert_eq!(g["instrument_token"], 512);
        for k in ["start", "end"] {
            assert!(
                tickcap::time::parse_timestamp(g[k].as_str().unwrap()).is_some(),
                "{g}"
            );
        }
        assert!(g["cause"].is_string());
    }
}

/// A capture without faults: `verify` says complete from the journal, and
/// the journal starts and ends the run with the counts.
#[test]
fn a_clean_capture_is_complete_and_its_journal_tells_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2_000, |_| {});
    let text = config(
        &feed,
        &data,
        "[primary]\ninstruments = [256, 512]\n[secondary]\ninstruments = [768]\n",
    );
    let engine = common::start_with_file(&dir.path().join("t.toml"), &text, Options::default());
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 1000));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let journal = &tickcap::days::segments_in(&data, Family::Events)[0].path;
    let lines: Vec<Value> = std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds[0], "service_start", "{kinds:?}");
    assert_eq!(*kinds.last().unwrap(), "service_stop", "{kinds:?}");
    let stop = lines.last().unwrap();
    assert_eq!(stop["received"], stop["written"]);
    assert_eq!(stop["written"].as_u64(), Some(stats.lines_written()));
    assert!(kinds.contains(&"subscribe") && kinds.contains(&"connection_open"));
    let subs: Vec<&Value> = lines.iter().filter(|v| v["kind"] == "subscribe").collect();
    assert!(subs.iter().all(|v| v["why"] == "config"), "{subs:?}");
    let r = coverage_of(&data);
    assert_eq!(r.runs.len(), 1);
    assert!(r.runs[0].clean);
    for t in [256, 512, 768] {
        assert!(r.instruments[&t]
            .gaps
            .iter()
            .all(|g| g.kind == GapKind::Startup));
        assert!(r.instruments[&t].share() > 0.9, "{t}");
    }
    let tick_file = tickcap::days::segments(&data)[0].path.clone();
    let (code, out) = tickcap(&["verify", tick_file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("covered for the whole capture"), "{out}");
}

/// A control-call unsubscribe and a reload that drops an instrument end its
/// coverage there — not a gap — while the others stay covered throughout.
#[test]
fn an_unsubscribe_and_a_reload_end_coverage_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("t.toml");
    let feed = common::synthetic_feed(2_000, |_| {});
    let text = config(&feed, &data, "[primary]\ninstruments = [256, 512, 768]\n");
    let engine = common::start_with_file(&path, &text, Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 500));
    let (code, body) = post_json(&url, "/unsubscribe", &json!({"tokens": [512]}));
    assert_eq!(code, 200, "{body}");
    let w = stats.lines_written();
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > w + 500));
    std::fs::write(
        &path,
        config(&feed, &data, "[primary]\ninstruments = [256, 512]\n"),
    )
    .unwrap();
    let (code, body) = post_json(&url, "/reload", &json!({}));
    assert_eq!(code, 200, "{body}");
    let w = stats.lines_written();
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > w + 500));
    // The instruments' share today, live.
    assert!(wait_until(Duration::from_secs(5), || {
        let v = get_json(&url, "/instruments");
        v["instruments"].as_array().is_some_and(|a| {
            a.iter().any(|r| {
                r["instrument_token"] == 256 && r["covered_share_today"].as_f64() > Some(0.5)
            })
        })
    }));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");

    let r = coverage_of(&data);
    let ok = |t: u32| {
        r.instruments[&t]
            .gaps
            .iter()
            .all(|g| g.kind == GapKind::Startup)
    };
    assert!(ok(256) && ok(512) && ok(768), "{:?}", r.gaps());
    // 512: unsubscribed by the control call, subscribed again by the reload.
    let c512 = &r.instruments[&512].covered;
    assert_eq!(c512.len(), 2, "{c512:?}");
    // 768: its coverage ends at the reload, before the run's end.
    let c768 = &r.instruments[&768].covered;
    assert_eq!(c768.len(), 1);
    assert!(c768[0].1 < r.runs[0].end - 100_000);
    assert!(
        c768[0].1 > c512[0].1,
        "the reload came after the unsubscribe"
    );
    assert_eq!(r.instruments[&256].covered.len(), 1);
    // Ticks Kite had in flight when the unsubscribe went out may follow.
    let last_768 = ticks_of(&data, 768).last().unwrap().0;
    assert!(
        last_768 <= c768[0].1 + 100_000,
        "768 ticked {} ms after its coverage ended",
        (last_768 - c768[0].1) / 1000
    );
    let journal =
        std::fs::read_to_string(&tickcap::days::segments_in(&data, Family::Events)[0].path)
            .unwrap();
    assert!(journal
        .lines()
        .any(|l| l.contains("\"kind\":\"unsubscribe\"") && l.contains("\"why\":\"control\"")));
    assert!(journal
        .lines()
        .any(|l| l.contains("\"kind\":\"unsubscribe\"") && l.contains("\"why\":\"reload\"")));
    assert!(journal.lines().any(|l| l.contains("\"kind\":\"reload\"")));
}

/// Kite sends each order update on every socket of the key: each lands
/// once in `orders_`, as Kite's JSON with `timestamp` and `connection_id`,
/// and `GET /orders` lists them.
#[test]
fn order_updates_from_three_sockets_are_kept_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(500, |c| {
        c.faults.order_every = Some(Duration::from_millis(100));
    });
    let text = config(
        &feed,
        &data,
        "[primary]\ninstruments = [256]\n[secondary]\ninstruments = [512]\n[tertiary]\ninstruments = [768]\n",
    );
    let engine = common::start_with_file(&dir.path().join("t.toml"), &text, Options::default());
    let url = format!("http://{}", engine.status_addr().unwrap());
    let stats = Arc::clone(engine.stats());
    let j = &stats.journal;
    assert!(
        wait_until(Duration::from_secs(15), || j
            .orders_written
            .load(Ordering::Relaxed)
            >= 10
            && j.orders_duplicate.load(Ordering::Relaxed) >= 20),
        "written {}, duplicates {}",
        j.orders_written.load(Ordering::Relaxed),
        j.orders_duplicate.load(Ordering::Relaxed)
    );
    let listed = get_json(&url, "/orders");
    assert!(listed["total"].as_u64() >= Some(10), "{listed}");
    feed.halt();
    engine.stop().expect("a clean shutdown");
    let file = &tickcap::days::segments_in(&data, Family::Orders)[0].path;
    let lines: Vec<Value> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, j.orders_written.load(Ordering::Relaxed));
    let mut ids: Vec<String> = lines
        .iter()
        .map(|v| {
            assert_eq!(v["type"], "order");
            assert!(tickcap::time::parse_timestamp(v["timestamp"].as_str().unwrap()).is_some());
            assert!((1..=3).contains(&v["connection_id"].as_u64().unwrap()));
            v["data"]["order_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "an order update written twice");
    // What /orders listed is what the file holds, in the same order.
    let first: Vec<&Value> = listed["orders"].as_array().unwrap().iter().collect();
    for (a, b) in first.iter().zip(&lines) {
        assert_eq!(*a, b);
    }
}
