//! The capture engine against the real replay feed on loopback: every tick
//! sent is written once, in order, with the values sent — at full speed,
//! through forced disconnects, stalls, a full disk and midnight.

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{halt_and_receive_all, read_capture, wait_until};
use tickcap::config::{Config, Env};
use tickcap::engine::{Clock, Engine, Options, Stats};
use tickcap::replay::{Faults, Server};

const SEED: u64 = 1;

fn feed(rate: u64, count: Option<u64>, faults: Faults) -> Server {
    common::synthetic_feed(rate, |c| {
        c.count = count;
        c.faults = faults;
    })
}

fn config(url: &str, dir: &Path, primary: usize, secondary: usize, extra: &str) -> Config {
    let p: Vec<String> = (1..=primary as u32)
        .map(|i| ((i << 8) | 1).to_string())
        .collect();
    let s: Vec<String> = (1..=secondary as u32)
        .map(|i| (((1000 + i) << 8) | 2).to_string())
        .collect();
    let text = format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {dir:?}\n\
         flush_interval_ms = 20\n[status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [{}, 256265]\n[secondary]\ninstruments = [{}]\n{extra}",
        p.join(","),
        s.join(","),
        dir = dir.display().to_string(),
    );
    Config::parse(&text, Path::new("test.toml"), &Env::default()).unwrap()
}

/// Waits until the feed's count is reached and the engine has written all of it.
fn wait_all_written(feed: &Server, stats: &Arc<Stats>, limit: Duration) -> u64 {
    assert!(
        wait_until(limit, || feed.count_reached()),
        "feed never reached its count: {:?}",
        feed.report()
    );
    // The count is used up; halt() waits until no session is still
    // counting a message it built, so `sent` is final.
    feed.halt();
    let sent = feed.report().sent;
    assert!(
        wait_until(limit, || stats.lines_written() >= sent),
        "sent {sent}, received {}, written {}",
        stats.ticks_received(),
        stats.lines_written()
    );
    sent
}

#[test]
fn a_200k_tick_burst_is_captured_whole_and_exact() {
    let dir = tempfile::tempdir().unwrap();
    let feed = feed(0, Some(200_000), Faults::default());
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 40, 10, ""),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(60));
    engine.stop().expect("a clean shutdown");
    assert_eq!(sent, 200_000);
    assert_eq!(stats.ticks_received(), sent);
    assert_eq!(
        stats
            .conns
            .iter()
            .map(|c| c.decode_errors.load(Ordering::Relaxed))
            .sum::<u64>(),
        0
    );
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines as u64, sent);
    assert_eq!(cap.assert_matches_synthetic(SEED) as u64, sent);
    // the report's last volume per instrument is what the file ends with
    let report = feed.stop();
    for (tok, recs) in &cap.by_token {
        if let Some(v) = report.last_volume.get(&tok.to_string()) {
            if recs.last().unwrap().tick.volume_traded > 0 {
                assert_eq!(u64::from(recs.last().unwrap().tick.volume_traded), *v);
            }
        }
    }
    // instruments arrive on their connection: primary (1), secondary (2)
    assert!(cap.conn_ids[&((1 << 8) | 1)].iter().all(|&c| c == 1));
    assert!(cap.conn_ids[&(((1001) << 8) | 2)].iter().all(|&c| c == 2));
    let h = Stats::histogram(&stats.latency.receive_to_written_us);
    assert_eq!(h.len(), sent, "every written tick has a latency sample");
}

#[test]
fn five_forced_disconnects_lose_nothing_that_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        drop_every: Some(Duration::from_millis(250)),
        ..Faults::default()
    };
    let feed = feed(40_000, Some(40_000), faults);
    // Drops this close never let the backoff reset (HEALTHY_AFTER): cap it.
    let engine = Engine::start(
        config(
            &feed.url(),
            dir.path(),
            20,
            5,
            "[engine]\nreconnect_max_ms = 200\n",
        ),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(60));
    // The feed goes on dropping after its last tick: the fifth reconnect
    // may come after every tick was written (seen once in a loaded run).
    let reconnects = || -> u64 {
        stats
            .conns
            .iter()
            .map(|c| c.reconnects.load(Ordering::Relaxed))
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(10), || reconnects() >= 5),
        "{} reconnects",
        reconnects()
    );
    engine.stop().expect("a clean shutdown");
    let report = feed.stop();
    assert!(report.faults.drops >= 5, "{:?}", report.faults);
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines as u64, sent);
    assert_eq!(cap.assert_matches_synthetic(SEED) as u64, sent);
}

#[test]
fn a_stalled_feed_trips_the_stale_detector_and_capture_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        stall_every: Some(Duration::from_millis(300)),
        stall_for: Duration::from_millis(1200),
        ..Faults::default()
    };
    let feed = feed(2_000, None, faults);
    let extra = "[engine]\nstale_after_ms = 400\n";
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 5, 0, extra),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .stale
        .load(Ordering::Relaxed)
        >= 1));
    // after the stale drop it reconnects and data flows again
    let before = stats.ticks_received();
    assert!(wait_until(Duration::from_secs(10), || stats.conns[0]
        .reconnects
        .load(Ordering::Relaxed)
        >= 1
        && stats.ticks_received() > before));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let report = feed.stop();
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines as u64, report.sent);
    cap.assert_matches_synthetic(SEED);
}

#[test]
fn midnight_rotates_to_a_new_file_by_receive_time() {
    let dir = tempfile::tempdir().unwrap();
    // Shift the receive clock to 0.7 s before the next Kolkata midnight.
    let now = Clock::system().now_micros();
    let day = 86_400_000_000i64;
    let ist = 19_800_000_000i64;
    let next_midnight = (now + ist).div_euclid(day) * day + day - ist;
    let clock = Clock::shifted(next_midnight - 700_000 - now);
    let feed = feed(2_000, None, Faults::default());
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 5, 0, ""),
        Options {
            clock,
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .files_opened
        .load(Ordering::Relaxed)
        >= 2));
    // Ticks in the new day's file too.
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .lines_today
        .load(Ordering::Relaxed)
        >= 100));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    let report = feed.stop();
    let cap = read_capture(dir.path());
    assert_eq!(cap.files.len(), 2, "{:?}", cap.files);
    assert!(cap.files.iter().all(|(_, n)| *n > 0));
    assert_eq!(cap.lines as u64, report.sent);
    // each file holds only its own day
    for (name, _) in &cap.files {
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let date = &name["market_data_".len().."market_data_".len() + 10];
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(
                v["timestamp"].as_str().unwrap().starts_with(date),
                "{name}: {}",
                v["timestamp"]
            );
        }
    }
    cap.assert_matches_synthetic(SEED);
}

#[test]
fn a_torn_tail_from_a_crash_is_moved_aside_on_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut zone = tickcap::time::ZoneFormatter::new("Asia/Kolkata").unwrap();
    let today = zone.date_of_micros(Clock::system().now_micros());
    let file = dir.path().join(format!("market_data_{today}.jsonl"));
    std::fs::write(
        &file,
        "{\"tradable\":true,\"mode\":\"ltp\",\"instrument_token\":",
    )
    .unwrap();
    let feed = feed(1_000, Some(500), Faults::default());
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 5, 0, ""),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(20));
    engine.stop().expect("a clean shutdown");
    assert_eq!(stats.writer.torn_repaired.load(Ordering::Relaxed), 1);
    let cap = read_capture(dir.path()); // panics on any unparsable line
    assert_eq!(cap.lines as u64, sent);
    let aside = std::fs::read_dir(dir.path()).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".torn-")
    });
    assert_eq!(aside.count(), 1);
}

/// A disk that is full for its first `fail` writes, then recovers.
struct FullDisk {
    inner: tickcap::sink::files::DailyFiles,
    fail: u32,
}

impl tickcap::sink::files::DaySink for FullDisk {
    fn write(&mut self, date: tickcap::time::LocalDate, data: &[u8]) -> std::io::Result<usize> {
        if self.fail > 0 {
            self.fail -= 1;
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        // accept at most half of a large write, to exercise partial writes
        let n = if data.len() > 4096 {
            data.len() / 2
        } else {
            data.len()
        };
        self.inner.write(date, &data[..n])
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn current_path(&self) -> Option<std::path::PathBuf> {
        self.inner.current_path()
    }
}

#[test]
fn a_full_disk_is_reported_retried_and_survived_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = FullDisk {
        inner: tickcap::sink::files::DailyFiles::new(dir.path(), counter(), counter()).unwrap(),
        fail: 4,
    };
    let feed = feed(20_000, Some(10_000), Faults::default());
    let opts = Options {
        sink: Some(Box::new(sink)),
        ..Options::default()
    };
    let engine = Engine::start(config(&feed.url(), dir.path(), 10, 2, ""), opts).unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(30));
    engine.stop().expect("a clean shutdown");
    assert_eq!(stats.writer.write_errors.load(Ordering::Relaxed), 4);
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines as u64, sent);
    assert_eq!(cap.assert_matches_synthetic(SEED) as u64, sent);
}

#[test]
fn auth_refusals_back_off_and_recover() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Faults {
        reject_auth: 2,
        ..Faults::default()
    };
    let feed = feed(1_000, Some(300), faults);
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 3, 0, ""),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(20));
    engine.stop().expect("a clean shutdown");
    assert_eq!(stats.conns[0].auth_failures.load(Ordering::Relaxed), 2);
    assert_eq!(read_capture(dir.path()).lines as u64, sent);
}

/// A disk whose first write takes 2.5 s (a stalled device), then is fine.
struct SlowDisk {
    inner: tickcap::sink::files::DailyFiles,
    slow: bool,
}

impl tickcap::sink::files::DaySink for SlowDisk {
    fn write(&mut self, date: tickcap::time::LocalDate, data: &[u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.slow) {
            std::thread::sleep(Duration::from_millis(2500));
        }
        self.inner.write(date, data)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn current_path(&self) -> Option<std::path::PathBuf> {
        self.inner.current_path()
    }
}

#[test]
fn a_writer_that_falls_behind_makes_health_degraded_with_the_lag() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = SlowDisk {
        inner: tickcap::sink::files::DailyFiles::new(dir.path(), counter(), counter()).unwrap(),
        slow: true,
    };
    let feed = feed(2_000, None, Faults::default());
    let opts = Options {
        sink: Some(Box::new(sink)),
        ..Options::default()
    };
    let engine = Engine::start(config(&feed.url(), dir.path(), 3, 0, ""), opts).unwrap();
    let url = format!("http://{}", engine.status_addr().unwrap());
    let health = || -> serde_json::Value {
        tickcap::status::client::get(&url, "/health")
            .unwrap()
            .json()
            .unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(10), || health()["reasons"]
            .to_string()
            .contains("writer lag")),
        "{}",
        health()
    );
    assert_eq!(health()["status"], "degraded");
    // The disk recovers: the lag clears.
    assert!(wait_until(Duration::from_secs(10), || !health()["reasons"]
        .to_string()
        .contains("writer lag")));
    let stats = Arc::clone(engine.stats());
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
}

/// The feed in Kite's shape (`send_every`: what came due meanwhile, many
/// instruments' packets in one message, every 200 ms): every tick is
/// captured exactly, in far fewer frames than ticks.
#[test]
fn ticks_batched_many_to_a_message_are_captured_whole() {
    let dir = tempfile::tempdir().unwrap();
    let feed = common::synthetic_feed(6_000, |c| {
        c.count = Some(12_000);
        c.send_every = Some(Duration::from_millis(200));
        c.max_batch = 65_535;
    });
    let engine = Engine::start(
        config(&feed.url(), dir.path(), 40, 10, ""),
        Options::default(),
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    let sent = wait_all_written(&feed, &stats, Duration::from_secs(60));
    let frames: u64 = stats
        .conns
        .iter()
        .map(|c| c.frames.load(Ordering::Relaxed))
        .sum();
    engine.stop().expect("a clean shutdown");
    assert_eq!(sent, 12_000);
    // 2 s of ticks in 200 ms sends on two connections: tens of frames
    // (heartbeats included), not thousands — on average far more than 20
    // ticks a frame (a tick as soon as due: one or two).
    assert!(frames * 20 < sent, "{frames} frames for {sent} ticks");
    let cap = read_capture(dir.path());
    assert_eq!(cap.lines as u64, sent);
    assert_eq!(cap.assert_matches_synthetic(SEED) as u64, sent);
}
