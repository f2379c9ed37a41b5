//! A dead disk at shutdown. The writer thread's CPU is read from /proc by
//! the thread id the dead disk saw writing (other tests' engines run in the
//! same process, each with its own `tickcap-writer` thread).

use crate::common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::wait_until;
use tickcap::config::{Config, Env};
use tickcap::engine::{Engine, Options};
use tickcap::replay::Server;

fn feed(rate: u64, count: Option<u64>) -> Server {
    common::synthetic_feed(rate, |c| c.count = count)
}

fn config(url: &str, dir: &Path) -> Config {
    let text = format!(
        "[kite]\nurl = {url:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         shutdown_write_limit_ms = 500\n[status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [257, 513, 769, 1025, 1281]\n",
        dir.display().to_string()
    );
    Config::parse(&text, Path::new("test.toml"), &Env::default()).unwrap()
}

/// A disk that refuses every write (ENOSPC), counting the attempts and
/// noting the id of the thread that writes.
struct DeadDisk {
    attempts: Arc<std::sync::atomic::AtomicU64>,
    writer_tid: Arc<std::sync::atomic::AtomicI32>,
}

impl tickcap::sink::files::DaySink for DeadDisk {
    fn write(&mut self, _: tickcap::time::LocalDate, _: &[u8]) -> std::io::Result<usize> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        // SAFETY: gettid has no preconditions.
        self.writer_tid
            .store(unsafe { libc::gettid() }, Ordering::Relaxed);
        Err(std::io::Error::from_raw_os_error(28))
    }
    fn sync(&mut self) -> std::io::Result<()> {
        Ok(())
    }
    fn current_path(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// CPU time (user + system) of this process's thread `tid`, in clock ticks.
fn thread_cpu_ticks(tid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Fields after the ")" of the name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn a_dead_disk_at_shutdown_is_bounded_saved_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer_tid = Arc::new(std::sync::atomic::AtomicI32::new(0));
    let feed = feed(20_000, Some(5_000));
    let opts = Options {
        sink: Some(Box::new(DeadDisk {
            attempts: Arc::clone(&attempts),
            writer_tid: Arc::clone(&writer_tid),
        })),
        ..Options::default()
    };
    let engine = Engine::start(config(&feed.url(), dir.path()), opts).unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(20), || feed.count_reached()));
    assert!(wait_until(Duration::from_secs(20), || stats
        .ticks_received()
        == 5_000));
    // While writes fail, the writer sleeps between tries (backoff), it does not spin.
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .write_errors
        .load(Ordering::Relaxed)
        >= 3));
    let tid = writer_tid.load(Ordering::Relaxed);
    let cpu0 = thread_cpu_ticks(tid).expect("the writer thread");
    let tries0 = attempts.load(Ordering::Relaxed);
    assert!(wait_until(Duration::from_secs(10), || attempts
        .load(Ordering::Relaxed)
        >= tries0 + 2));
    let cpu = thread_cpu_ticks(tid).unwrap() - cpu0;
    assert!(
        cpu <= 20,
        "the failing writer used {cpu} clock ticks of CPU between two tries"
    );
    let h = tickcap::engine::Engine::status_addr(&engine).map(|a| format!("http://{a}"));
    let health: serde_json::Value = tickcap::status::client::get(&h.unwrap(), "/health")
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(health["status"], "degraded", "{health}");
    assert!(
        health["reasons"].to_string().contains("writes fail"),
        "{health}"
    );

    // Shutdown is bounded: 500 ms of trying, then the recovery file.
    let t = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(engine.stop()));
    let outcome = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("shutdown finishes on a dead disk");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
    let Err(tickcap::engine::Shortfall::Unwritten {
        received,
        written,
        saved,
        saved_to: Some(path),
        lost,
        ..
    }) = outcome
    else {
        panic!("expected a saved shortfall, got {outcome:?}");
    };
    assert_eq!((received, written, saved, lost), (5_000, 0, 5_000, 0));
    assert!(path.starts_with(dir.path()), "{}", path.display());
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("market_data_") && name.contains(".jsonl.unwritten-"),
        "{name}"
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 5_000);
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["instrument_token"].is_u64());
    }
}

/// A disk that takes `room` bytes in all, then is full: the last write
/// stops in the middle of a line.
struct FillsMidLine {
    inner: tickcap::sink::files::DailyFiles,
    room: usize,
}

impl tickcap::sink::files::DaySink for FillsMidLine {
    fn write(&mut self, date: tickcap::time::LocalDate, data: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(28));
        }
        let n = data.len().min(self.room);
        self.room -= n;
        self.inner.write(date, &data[..n])
    }
    fn sync(&mut self) -> std::io::Result<()> {
        self.inner.sync()
    }
    fn current_path(&self) -> Option<std::path::PathBuf> {
        self.inner.current_path()
    }
    fn cut_tail(&mut self, bytes: u64) -> std::io::Result<()> {
        self.inner.cut_tail(bytes)
    }
}

/// The shutdown summary of a disk that filled mid-line equals what is on
/// disk: the day's file ends on a line boundary, the recovery file holds
/// the rest, written + saved = received, nothing "lost".
#[test]
fn a_disk_full_mid_line_at_shutdown_reports_exactly_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = FillsMidLine {
        inner: tickcap::sink::files::DailyFiles::new(dir.path(), counter(), counter()).unwrap(),
        room: 300_000, // about 600 lines, then the disk is full in the middle of one
    };
    let feed = feed(20_000, Some(5_000));
    let opts = Options {
        sink: Some(Box::new(sink)),
        ..Options::default()
    };
    let engine = Engine::start(config(&feed.url(), dir.path()), opts).unwrap();
    let stats = Arc::clone(engine.stats());
    assert!(wait_until(Duration::from_secs(20), || stats
        .ticks_received()
        == 5_000));
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .write_errors
        .load(Ordering::Relaxed)
        >= 1));
    let Err(tickcap::engine::Shortfall::Unwritten {
        received,
        written,
        saved,
        saved_to: Some(path),
        lost,
        ..
    }) = engine.stop()
    else {
        panic!("expected a saved shortfall");
    };
    let day_files: Vec<_> = tickcap::days::segments(dir.path());
    assert_eq!(day_files.len(), 1);
    let day = std::fs::read_to_string(&day_files[0].path).unwrap();
    assert!(
        day.ends_with('\n'),
        "the day's file ends on a line boundary"
    );
    let recovered = std::fs::read_to_string(&path).unwrap();
    assert_eq!(received, 5_000);
    assert_eq!(
        written,
        day.lines().count() as u64,
        "written = lines in the file"
    );
    assert_eq!(
        saved,
        recovered.lines().count() as u64,
        "saved = lines in the recovery file"
    );
    assert_eq!((written + saved, lost), (5_000, 0));
    assert!(
        written > 100 && saved > 100,
        "{written} written, {saved} saved"
    );
    // Appended as the log says, every line parses.
    for line in day.lines().chain(recovered.lines()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["instrument_token"].is_u64());
    }
    // No empty recovery files anywhere.
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let e = e.unwrap();
        assert!(
            e.metadata().unwrap().len() > 0,
            "{:?} is empty",
            e.file_name()
        );
    }
}

/// Everything on and everything wrong at once: the disk full mid-line, the
/// Kafka broker unreachable, a hub client that never reads. Shutdown still
/// ends within the write limit and a couple of seconds, with exact counts.
#[test]
#[cfg(feature = "kafka")]
fn shutdown_is_bounded_with_the_disk_full_the_broker_down_and_a_stuck_hub_client() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let counter = || Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sink = FillsMidLine {
        inner: tickcap::sink::files::DailyFiles::new(dir.path(), counter(), counter()).unwrap(),
        room: 200_000,
    };
    let feed = common::synthetic_feed(5_000, |_| {});
    let text = format!(
        "[kite]\nurl = {:?}\napi_key = \"k\"\naccess_token = \"t\"\n[storage]\ndata_dir = {:?}\n\
         shutdown_write_limit_ms = 500\n[status]\nlisten = \"127.0.0.1:0\"\n[primary]\ninstruments = [257, 513, 769]\n\
         [serve]\nlisten = \"127.0.0.1:0\"\nsend_queue_kib = 64\n[kafka]\nbrokers = \"127.0.0.1:{}\"\ntopic = \"ticks\"\n",
        feed.url(),
        dir.path().display().to_string(),
        common::free_port()
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
    // A hub client that subscribes and then never reads.
    let hub = engine.serve_addr().unwrap();
    let mut stuck = std::net::TcpStream::connect(hub).unwrap();
    stuck
        .write_all(
            b"GET /?api_key=k&access_token=t HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    assert!(wait_until(Duration::from_secs(10), || stats
        .writer
        .write_errors
        .load(Ordering::Relaxed)
        >= 1
        && stats.ticks_received() > 2_000));
    let t = std::time::Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(engine.stop()));
    let outcome = rx
        .recv_timeout(Duration::from_secs(15))
        .expect("shutdown ends");
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500 + 4_000),
        "shutdown took {took:?}"
    );
    let Err(tickcap::engine::Shortfall::Unwritten {
        received,
        written,
        saved,
        lost,
        ..
    }) = outcome
    else {
        panic!("expected a saved shortfall, got {outcome:?}");
    };
    assert_eq!((written + saved, lost), (received, 0), "{outcome:?}");
    drop(stuck);
    feed.stop();
}
