//! Candles: built live by the writer from the ticks it writes, final by the
//! receive clock, one file per interval and day (a bar is in the file of
//! the day it starts), and equal to what `tickcap candles` cuts offline
//! from the same capture.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{halt_and_receive_all, wait_until};
use tickcap::config::{Config, Env};
use tickcap::days::Family;
use tickcap::engine::{Clock, Engine, Options};

fn lines(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

#[test]
fn bars_across_midnight_land_in_their_days_and_equal_the_offline_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The receive clock 3 s before the next Kolkata midnight.
    let now = Clock::system().now_micros();
    let (day, ist) = (86_400_000_000i64, 19_800_000_000i64);
    let next_midnight = (now + ist).div_euclid(day) * day + day - ist;
    let clock = Clock::shifted(next_midnight - 3_000_000 - now);
    let feed = common::synthetic_feed(2_000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 768, 1024]\n\
         [candles]\nintervals = [\"1m\", \"day\"]\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    assert_eq!(cfg.candles.len(), 2);
    let engine = Engine::start(
        cfg,
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    // The 23:59 bars are final 2 s (the grace) after midnight.
    assert!(
        wait_until(Duration::from_secs(20), || stats
            .journal
            .candles_written
            .load(Ordering::Relaxed)
            >= 8),
        "{} candles",
        stats.journal.candles_written.load(Ordering::Relaxed)
    );
    assert!(wait_until(Duration::from_secs(10), || clock.now_micros()
        > next_midnight + 3_000_000));
    // GET /candles: today's (the new day's) bars, the one in progress last.
    let url = format!("http://{}", engine.status_addr().unwrap());
    let mut got = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            got = common::get_json(&url, "/candles?instrument=512&interval=1m");
            got["candles"]
                .as_array()
                .is_some_and(|c| c.last().is_some_and(|b| b["partial"] == true))
        }),
        "{got}"
    );
    assert!(
        got["candles"][0]["date"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00+0530"),
        "{got}"
    );
    let r = tickcap::status::client::get(&url, "/candles?instrument=512&interval=5m").unwrap();
    assert_eq!(r.status, 400, "an interval not built");
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");

    let mut zone = tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap();
    let d0 = zone.date_of_micros(next_midnight - 1);
    let d1 = zone.date_of_micros(next_midnight);
    let minute = Family::Candles(tickcap::candles::Interval::Minute);
    let segs = tickcap::days::segments_in(&data, minute);
    let days: Vec<_> = segs.iter().map(|s| s.id.day).collect();
    assert_eq!(days, [d0, d1], "one minute-candle file per day");
    let first = lines(&segs[0].path);
    let second = lines(&segs[1].path);
    assert_eq!(first.len(), 4, "{first:?}");
    assert_eq!(second.len(), 4, "{second:?}");
    for l in &first {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["date"].as_str().unwrap().ends_with("T23:59:00+0530"),
            "{l}"
        );
        assert_eq!(v["complete"], false, "capture began inside it: {l}");
        assert!(v["high"].as_f64() >= v["low"].as_f64());
    }
    for l in &second {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["date"].as_str().unwrap().ends_with("T00:00:00+0530"),
            "{l}"
        );
        assert!(v["volume"].as_u64() > Some(0), "{l}");
        assert_eq!(v["complete"], false, "cut by the shutdown: {l}");
    }
    // The day bars: one per instrument per day, the packet's day.
    let day_segs =
        tickcap::days::segments_in(&data, Family::Candles(tickcap::candles::Interval::Day));
    assert_eq!(day_segs.len(), 2);
    for s in &day_segs {
        assert_eq!(lines(&s.path).len(), 4);
    }

    // Offline, from the same tick files: the same bars.
    let out = dir.path().join("cut");
    let ticks: Vec<String> = tickcap::days::segments(&data)
        .iter()
        .map(|s| s.path.display().to_string())
        .collect();
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("candles")
        .args(&ticks)
        .args(["--interval", "minute", "--interval", "day", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for s in segs.iter().chain(&day_segs) {
        let name = s.path.file_name().unwrap();
        assert_eq!(
            lines(&s.path),
            lines(&out.join(name)),
            "{name:?}: live and offline differ"
        );
    }
    // Never over an existing file.
    let again = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("candles")
        .args(&ticks)
        .args(["--interval", "1m", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    // Parquet, like the ticks.
    let pq = dir.path().join("pq");
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["export", "--format", "parquet", "--out"])
        .arg(&pq)
        .arg(&segs[1].path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pq_file = pq.join(format!("candles_minute_{d1}.parquet"));
    assert!(pq_file.exists(), "{}", String::from_utf8_lossy(&o.stdout));
    #[cfg(has_pydata)]
    {
        let code = format!(
            "import pandas as pd\n\
             df = pd.read_parquet({:?})\n\
             assert len(df) == 4 and str(df.date.dt.tz) == 'Asia/Kolkata', df\n\
             assert (df.date.dt.strftime('%H:%M') == '00:00').all(), df.date\n",
            pq_file.display().to_string()
        );
        let o = Command::new(env!("TICKCAP_PYDATA_BIN"))
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    #[cfg(has_pydata)]
    {
        let code = format!(
            "import pandas as pd, duckdb\n\
             df = pd.read_json({:?}, lines=True)\n\
             assert list(df.columns[:8]) == ['instrument_token','interval','date','open','high','low','close','volume'], df.columns\n\
             assert len(df) == 4 and (df.high >= df.low).all()\n\
             n = duckdb.execute(\"select count(*) from read_json_auto('{}')\").fetchone()[0]\n\
             assert n == 4, n\n",
            segs[1].path.display().to_string(),
            segs[1].path.display()
        );
        let o = Command::new(env!("TICKCAP_PYDATA_BIN"))
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

/// A minute and more of a gapless capture in full mode (each trade at its
/// exchange time), checked with `tickcap candles check` against the replay
/// feed's historical endpoint — Kite's API computed from every tick its
/// exchange made: every complete bar agrees on open, high, low, close and
/// volume. The endpoint's 3 requests a second hold (429 past them), and
/// the check paces itself under them.
#[test]
fn check_finds_every_complete_bar_equal_to_the_feeds_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The exchange's and the capture's clocks 1.5 s before a minute: the
    // next minute is the first whole one (about 63 s, not up to two minutes).
    let now = Clock::system().now_micros();
    let clock = Clock::shifted((now / 60_000_000 + 1) * 60_000_000 - 1_500_000 - now);
    let feed = common::synthetic_feed(400, |c| {
        c.market = true;
        c.clock = clock;
        c.api_key = Some("k".into());
        c.access_token = Some("t".into());
    });
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[secondary]\nmode = \"full\"\ninstruments = [256, 512, 768, 1024]\n\
         [candles]\nintervals = [\"minute\"]\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let engine = Engine::start(
        cfg,
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    // A whole minute covered: the second minute bar of each instrument is
    // final (the first began before capture).
    assert!(
        wait_until(Duration::from_secs(150), || stats
            .journal
            .candles_written
            .load(Ordering::Relaxed)
            >= 8),
        "{} candles",
        stats.journal.candles_written.load(Ordering::Relaxed)
    );
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");

    // The endpoint: Kite's limit of 3 requests a second.
    let http = feed.url().replace("ws://", "http://");
    let get = |path: &str| {
        tickcap::net::http::request(
            "GET",
            &format!("{http}{path}"),
            &[("Authorization", "token k:t"), ("X-Kite-Version", "3")],
            b"",
            Duration::from_secs(5),
        )
        .unwrap()
    };
    let codes: Vec<u16> = (0..8)
        .map(|_| get("/instruments/historical/256/minute?from=2026-01-01+00:00:00&to=2036-01-01+00:00:00").status)
        .collect();
    assert!(codes.contains(&429) && codes.contains(&200), "{codes:?}");
    // Without credentials: 403 (once the second's quota allows an answer).
    let mut status = 429;
    assert!(wait_until(Duration::from_secs(5), || {
        status = tickcap::net::http::request(
            "GET",
            &format!("{http}/instruments/historical/256/minute?from=2026-01-01&to=2026-01-02"),
            &[],
            b"",
            Duration::from_secs(5),
        )
        .unwrap()
        .status;
        status != 429
    }));
    assert_eq!(status, 403, "credentials are checked");

    let day = tickcap::days::segments_in(
        &data,
        tickcap::days::Family::Candles(tickcap::candles::Interval::Minute),
    )[0]
    .id
    .day
    .to_string();
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["candles", "check", "--json", "--day", &day, "--data-dir"])
        .arg(&data)
        .args(["--api-root", &http, "--api-key", "k", "--access-token", "t"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    eprintln!("check: {}", serde_json::to_string(&serde_json::json!({
        "bars": v["bars"], "complete_bars": v["complete_bars"], "agree": v["agree"], "agree_complete": v["agree_complete"],
        "missing_in_capture": v["missing_in_capture"], "not_in_kite": v["not_in_kite"]})).unwrap());
    assert!(v["complete_bars"].as_u64() >= Some(4), "{v}");
    for f in ["open", "high", "low", "close", "volume"] {
        assert_eq!(v["agree_complete"][f], 1.0, "{f}: {v}");
    }
    assert_eq!(v["missing_in_capture"], 0, "{v}");
    let disagreeing_complete = v["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["complete"] == true)
        .count();
    assert_eq!(disagreeing_complete, 0, "{v}");
}

/// A capture whose connection drops: its bars are `complete: false`, and
/// disagree with the truth; `tickcap candles repair` replaces exactly
/// those with the feed's historical bars (`source: "kite"`), after which
/// `check` finds every bar equal — and a bar marked complete is never
/// touched, even a wrong one.
#[test]
fn repair_replaces_the_gaps_bars_with_kites_and_only_those() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = Clock::system().now_micros();
    let clock = Clock::shifted((now / 60_000_000 + 1) * 60_000_000 - 1_500_000 - now);
    let feed = common::synthetic_feed(400, |c| {
        c.market = true;
        c.clock = clock;
        c.faults.drop_every = Some(Duration::from_millis(1500));
    });
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[secondary]\nmode = \"full\"\ninstruments = [256, 512]\n\
         [candles]\nintervals = [\"minute\"]\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let engine = Engine::start(
        cfg,
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    // The first minute's bars final, and a drop inside the second.
    assert!(wait_until(Duration::from_secs(30), || stats
        .journal
        .candles_written
        .load(Ordering::Relaxed)
        >= 2
        && feed.report().faults.drops >= 2));
    feed.halt();
    engine.stop().expect("a clean shutdown");
    let minute = Family::Candles(tickcap::candles::Interval::Minute);
    let file = tickcap::days::segments_in(&data, minute)[0].path.clone();
    let day = tickcap::days::segments_in(&data, minute)[0]
        .id
        .day
        .to_string();
    let before = lines(&file);
    assert!(before.len() >= 4, "{before:?}");
    assert!(
        before.iter().all(|l| l.contains("\"complete\":false")),
        "{before:?}"
    );
    // One bar claims to be complete (and is wrong): repair must leave it.
    let forged = before[0]
        .replace("\"complete\":false", "\"complete\":true")
        .replacen("\"volume\":", "\"volume\":999999", 1);
    let mut text = before[1..].join("\n");
    text.push('\n');
    text.push_str(&forged);
    text.push('\n');
    std::fs::write(&file, text).unwrap();

    let http = feed.url().replace("ws://", "http://");
    let kite = |sub: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
            .args(["candles", sub, "--json", "--day", &day, "--data-dir"])
            .arg(&data)
            .args(["--api-root", &http, "--api-key", "k", "--access-token", "t"])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{sub}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let checked = kite("check");
    assert!(checked["agree"]["volume"].as_f64() < Some(1.0), "{checked}");
    let repaired = kite("repair");
    eprintln!("repair: {repaired}");
    assert_eq!(
        repaired["replaced"].as_u64(),
        Some(before.len() as u64 - 1),
        "{repaired}"
    );
    let after = lines(&file);
    assert!(after.contains(&forged), "the complete bar was touched");
    assert!(after
        .iter()
        .filter(|l| **l != forged)
        .all(|l| l.contains("\"source\":\"kite\"") && l.contains("\"complete\":true")));
    let checked = kite("check");
    eprintln!("check after repair: {}", checked["agree"]);
    let forged_v: serde_json::Value = serde_json::from_str(&forged).unwrap();
    let bad: Vec<&serde_json::Value> = checked["disagreements"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        bad.iter().any(|d| d["field"] == "volume")
            && bad
                .iter()
                .all(|d| d["instrument_token"] == forged_v["instrument_token"]
                    && d["date"] == forged_v["date"]),
        "only the forged (untouched) bar disagrees: {checked}"
    );
}

/// `[candles] repair = true`: the service repairs today's bars itself. A
/// connection that drops every 1.5 s leaves every bar incomplete; a
/// `repair_delay_ms` after a bar ends, the service asks the feed's
/// historical endpoint (Kite's API) and appends Kite's bar after its own
/// (`"source": "kite"`: a later line for a bar replaces the earlier one).
/// `/health` counts it from the files; `/candles` shows Kite's bar; and
/// `check` — which reads the last line of each bar — finds every repaired
/// bar equal to the truth. A complete bar never gets a Kite line, and no
/// tickcap line follows a Kite line for the same bar.
#[test]
fn the_service_repairs_its_gaps_bars_itself_and_they_equal_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let now = Clock::system().now_micros();
    let clock = Clock::shifted((now / 60_000_000 + 1) * 60_000_000 - 1_500_000 - now);
    let feed = common::synthetic_feed(400, |c| {
        c.market = true;
        c.clock = clock;
        c.api_key = Some("k".into());
        c.access_token = Some("t".into());
        c.faults.drop_every = Some(Duration::from_millis(1500));
    });
    let http = feed.url().replace("ws://", "http://");
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\napi_root = {http:?}\ninstruments_dump = false\n\
         [storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[secondary]\nmode = \"full\"\ninstruments = [256, 512]\n\
         [candles]\nintervals = [\"minute\"]\nrepair = true\nrepair_delay_ms = 3000\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    assert!(cfg.candle_repair.is_some());
    let engine = Engine::start(
        cfg,
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let url = format!("http://{}", engine.status_addr().unwrap());
    // The first minute's two bars (capture began inside it, and it drops):
    // Kite's in their place a few seconds after the minute.
    assert!(
        wait_until(Duration::from_secs(40), || stats
            .journal
            .candles_repaired
            .load(Ordering::Relaxed)
            >= 2),
        "{}",
        common::get_json(&url, "/health")["candles"]
    );
    let health = common::get_json(&url, "/health");
    let c = &health["candles"];
    eprintln!("health candles: {c}");
    assert!(c["repair"]["passes"].as_u64() >= Some(1), "{c}");
    assert!(c["repair"]["fetched"].as_u64() >= Some(2), "{c}");
    assert_eq!(c["repair"]["errors"], 0, "{c}");
    let mut got = serde_json::Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            got = common::get_json(&url, "/candles?instrument=256&interval=minute");
            got["candles"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["source"] == "kite"))
        }),
        "{got}"
    );
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");

    let minute = Family::Candles(tickcap::candles::Interval::Minute);
    let segs = tickcap::days::segments_in(&data, minute);
    let file = segs[0].path.clone();
    let day = segs[0].id.day.to_string();
    let text = std::fs::read_to_string(&file).unwrap();
    let mut seen: std::collections::HashMap<(u64, String), Vec<serde_json::Value>> =
        Default::default();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let key = (
            v["instrument_token"].as_u64().unwrap(),
            v["date"].as_str().unwrap().to_owned(),
        );
        seen.entry(key).or_default().push(v);
    }
    let mut repaired = Vec::new();
    for (key, vs) in &seen {
        let kite_at = vs.iter().position(|v| v["source"] == "kite");
        if let Some(k) = kite_at {
            repaired.push(key.clone());
            assert_eq!(k, vs.len() - 1, "a tickcap line after Kite's: {vs:?}");
            assert!(
                vs[..k].iter().all(|v| v["complete"] == false),
                "a complete bar repaired: {vs:?}"
            );
            assert_eq!(vs[k]["complete"], true);
        }
    }
    assert!(repaired.len() >= 2, "{text}");
    // The counter is what is on disk: every Kite line it counted is there.
    let kite_lines = text
        .lines()
        .filter(|l| l.contains("\"source\":\"kite\""))
        .count() as u64;
    assert_eq!(
        stats.journal.candles_repaired.load(Ordering::Relaxed),
        kite_lines,
        "{text}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["candles", "check", "--json", "--day", &day, "--data-dir"])
        .arg(&data)
        .args(["--api-root", &http, "--api-key", "k", "--access-token", "t"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    eprintln!("check: {}", v["agree"]);
    for d in v["disagreements"].as_array().unwrap() {
        let key = (
            d["instrument_token"].as_u64().unwrap(),
            d["date"].as_str().unwrap().to_owned(),
        );
        assert!(!repaired.contains(&key), "a repaired bar disagrees: {d}");
    }
    // Parquet keeps each bar's last line: one row per bar.
    let out = dir.path().join("pq");
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["export", "--format", "parquet", "--out"])
        .arg(&out)
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains(&format!(": {} rows", seen.len())),
        "{} bars: {said}",
        seen.len()
    );
    // `tickcap candles repair` of the day afterwards: one line per bar, the
    // service's repairs kept as they are.
    let o = Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .args(["candles", "repair", "--json", "--day", &day, "--data-dir"])
        .arg(&data)
        .args(["--api-root", &http, "--api-key", "k", "--access-token", "t"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = std::fs::read_to_string(&file).unwrap();
    let keys: Vec<(u64, String)> = after
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["instrument_token"].as_u64().unwrap(),
                v["date"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let unique: std::collections::HashSet<_> = keys.iter().cloned().collect();
    assert_eq!(keys.len(), unique.len(), "{after}");
    for (key, vs) in &seen {
        if repaired.contains(key) {
            let kite = serde_json::to_string(vs.last().unwrap()).unwrap();
            assert!(
                after
                    .lines()
                    .any(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()
                        == *vs.last().unwrap()),
                "{kite} kept"
            );
        }
    }
}
