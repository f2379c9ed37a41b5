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
