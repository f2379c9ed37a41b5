//! One lifecycle for a day's files: what `tickcap compress`, `rm`, a
//! late tick and a failing fsync do to a capture in progress (the real
//! engine, the real binary, real files; Kafka's side is in `kafka.rs`).

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::{halt_and_receive_all, wait_until};
use tickcap::config::{Config, Env};
use tickcap::engine::{Clock, Engine, Options};
use tickcap::kite::Tick;
use tickcap::ring::{ring, Stamped, Wake};
use tickcap::sink::files::{DailyFiles, DaySink};
use tickcap::sink::writer::{Writer, WriterConfig};
use tickcap::time::{LocalDate, ZoneFormatter};

fn today() -> LocalDate {
    ZoneFormatter::new("Asia/Kolkata")
        .unwrap()
        .date_of_micros(Clock::system().now_micros())
}

fn start(feed: &tickcap::replay::Server, data: &Path, extra: &str) -> Engine {
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nflush_interval_ms = 20\n{extra}\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256, 512, 768]\n",
        feed.url(),
        data.display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    Engine::start(cfg, Options::default()).unwrap()
}

fn health(e: &Engine) -> serde_json::Value {
    common::get_json(&format!("http://{}", e.status_addr().unwrap()), "/health")
}

fn compress(args: &[&str]) -> (Option<i32>, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tickcap"))
        .arg("compress")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cron line `tickcap compress market_data/*.jsonl` while capturing:
/// today's open file is refused and nothing is lost.
#[test]
fn compress_refuses_todays_open_file_and_an_existing_zst() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2000, |_| {});
    let engine = start(&feed, &data, "");
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 200));
    let today_file = data.join(format!("market_data_{}.jsonl", today()));
    // Yesterday: a plain morning and an existing .zst beside it.
    let y = data.join("market_data_2026-11-20.jsonl");
    std::fs::write(&y, "{\"a\":1}\n").unwrap();
    let yz = data.join("market_data_2026-11-20.jsonl.zst");
    std::fs::write(&yz, "the afternoon").unwrap();
    let (code, err) = compress(&[today_file.to_str().unwrap(), y.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("today's open file"), "{err}");
    assert!(err.contains("not overwritten"), "{err}");
    assert!(today_file.exists());
    assert_eq!(std::fs::read(&yz).unwrap(), b"the afternoon");
    // Under another zone's calendar it may not be "today": the writer's
    // lock refuses it all the same.
    let (code, err) = compress(&[
        "--timezone",
        "Pacific/Kiritimati",
        today_file.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("today's open file") || err.contains("being written"),
        "{err}"
    );
    assert!(today_file.exists());
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    std::fs::remove_file(&y).unwrap();
    std::fs::remove_file(&yz).unwrap();
    let cap = common::read_capture(&data);
    assert_eq!(cap.lines as u64, feed.stop().sent, "nothing lost");
    cap.assert_matches_synthetic(1);
}

/// Today's file removed (or replaced) under the writer: it opens a new
/// segment within a second, `/health` says so for the rest of the day, and
/// every tick received after that is in the new file.
#[test]
fn the_writers_file_removed_while_capturing_is_reopened_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let feed = common::synthetic_feed(2000, |_| {});
    let engine = start(&feed, &data, "");
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > 200));
    assert_eq!(health(&engine)["status"], "healthy");
    let file = data.join(format!("market_data_{}.jsonl", today()));
    std::fs::remove_file(&file).unwrap();
    let removed_at = Clock::system().now_micros();
    assert!(wait_until(Duration::from_secs(5), || stats
        .writer
        .files_replaced
        .load(Ordering::Relaxed)
        == 1));
    assert!(
        wait_until(Duration::from_secs(5), || file.exists()),
        "a new segment"
    );
    let h = health(&engine);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("was removed"), "{h}");
    let after = stats.lines_written();
    assert!(wait_until(Duration::from_secs(10), || stats
        .lines_written()
        > after + 500));
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    feed.stop();
    // The new file: each instrument's ticks without a gap, from at most a
    // second before the removal to the last one sent.
    let cap = common::read_capture(&data);
    assert!(cap.lines > 500);
    for (token, recs) in &cap.by_token {
        let v: Vec<u64> = recs.iter().map(|r| r.tick.volume_traded.into()).collect();
        assert!(
            v.windows(2).all(|w| w[1] == w[0] + 1),
            "{token}: a gap after the reopen"
        );
        assert!(recs[0].at_micros >= removed_at - 1_500_000, "{token}");
    }
}

fn stamped(token: u32, recv_micros: i64, conn: u8) -> Stamped {
    Stamped {
        tick: Tick {
            last_price: 100,
            ..Tick::new(tickcap::kite::PacketKind::Ltp, token)
        },
        recv_micros,
        connection_id: conn,
    }
}

/// A tick received just before midnight on one connection, drained after
/// the rotation from another: it goes to the new day (counted); the closed
/// day is never reopened.
#[test]
fn a_tick_drained_after_the_rotation_never_reopens_the_closed_day() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opened = counter();
    let files = DailyFiles::new(dir.path(), Arc::clone(&opened), counter()).unwrap();
    let zone = ZoneFormatter::new("UTC").unwrap();
    let day1_end = 1_764_201_599_900_000; // 2025-11-26T23:59:59.9Z
    let mut cfg = WriterConfig::new(
        zone,
        tickcap::config::FsyncPolicy::Never,
        Duration::from_millis(10),
    );
    cfg.clock = Clock::shifted(day1_end + 5_000_000 - Clock::system().now_micros());
    let stats = Arc::new(tickcap::stats::Stats::default());
    let (mut p1, c1) = ring(16);
    let (mut p2, c2) = ring(16);
    let writer = Writer::spawn(
        cfg,
        vec![c1, c2],
        Box::new(files),
        Arc::clone(&stats),
        Arc::new(Wake::default()),
    )
    .unwrap();
    p1.push(stamped(1, day1_end - 1_000_000, 1)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || stats.lines_written() == 1));
    p1.push(stamped(1, day1_end + 200_000, 1)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || stats.lines_written() == 2));
    // Connection 2's tick, received before midnight, arrives late.
    p2.push(stamped(2, day1_end + 50_000, 2)).unwrap();
    assert!(wait_until(Duration::from_secs(5), || stats.lines_written() == 3));
    assert!(writer.finish());
    assert_eq!(stats.writer.late_ticks.load(Ordering::Relaxed), 1);
    let read = |d: &str| {
        std::fs::read_to_string(dir.path().join(format!("market_data_{d}.jsonl"))).unwrap()
    };
    assert_eq!(
        read("2025-11-26").lines().count(),
        1,
        "the closed day is untouched"
    );
    assert_eq!(read("2025-11-27").lines().count(), 2);
    assert_eq!(opened.load(Ordering::Relaxed), 2, "no third open");
}

/// A disk whose fsync fails once, then succeeds again.
struct FsyncFailsOnce {
    inner: DailyFiles,
    failed: bool,
}

impl DaySink for FsyncFailsOnce {
    fn write(&mut self, date: LocalDate, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write(date, data)
    }
    fn sync(&mut self) -> std::io::Result<()> {
        if !self.failed {
            self.failed = true;
            return Err(std::io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
    fn current_path(&self) -> Option<std::path::PathBuf> {
        self.inner.current_path()
    }
}

/// After a failed fdatasync the kernel may have dropped the pages: a later
/// success does not make `/health` healthy again.
#[test]
fn a_failed_fsync_keeps_health_degraded_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = FsyncFailsOnce {
        inner: DailyFiles::new(dir.path(), counter(), counter()).unwrap(),
        failed: false,
    };
    let feed = common::synthetic_feed(2000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\nfsync = \"batch\"\n\
         [status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [256]\n",
        feed.url(),
        dir.path().display().to_string()
    );
    let cfg = Config::parse(&text, Path::new("t.toml"), &Env::default()).unwrap();
    let engine = Engine::start(
        cfg,
        Options {
            sink: Some(Box::new(sink)),
            ..Options::default()
        },
    )
    .unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .fsyncs
        .load(Ordering::Relaxed)
        > 5));
    let h = health(&engine);
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(h["reasons"].to_string().contains("fsync failed"), "{h}");
    assert!(stats.writer.fsync_failed_lines.load(Ordering::Relaxed) > 0);
    halt_and_receive_all(&feed, &stats, Duration::from_secs(10));
    engine.stop().expect("a clean shutdown");
    feed.stop();
}
