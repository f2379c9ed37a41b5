//! `[storage] export_closed_days = "parquet"`: a thread, `tickcap-export`,
//! that writes each closed day's ticks to `EXPORT_DIR/market_data_D.parquet`
//! (the same export as `tickcap export`: instrument order, row groups a
//! one-instrument filter reads alone) by itself after the day is sealed.
//!
//! - **Which days**: the day that closes while the service runs (checked
//!   every 10 s against the receive clock in the storage zone; exported at
//!   the check after the one that saw it close), and at start
//!   the latest closed day if its export is missing (a restart after
//!   midnight). Older days are `tickcap export`'s: turning this on does
//!   not start an hour of exports of a month of history.
//! - **Never over a sealing**: a day whose segments are still being
//!   compressed (`compress_closed_days`: a `.jsonl` and its `.jsonl.zst`
//!   both present) waits for the next check; a day's file being written is
//!   never read (only days before today).
//! - **Behind capture**: SCHED_BATCH at nice 19 (its encoder and reader
//!   threads inherit it); the file appears whole or not at all (written
//!   under `.parquet.part`, renamed); a shutdown cancels it within a batch
//!   and leaves nothing behind; a failed export is counted, logged and
//!   tried again at the next check, a minute later.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::export::{export_day, parquet_name, ExportError, ExportOptions};
use crate::days::Family;
use crate::stats::Stats;
use crate::time::{Clock, LocalDate, ZoneFormatter};

/// How often closed days are looked for.
const CHECK: Duration = Duration::from_secs(10);
/// After a failure, the wait before the next try.
const RETRY: Duration = Duration::from_secs(60);

/// What the export thread needs.
#[derive(Debug, Clone)]
pub struct ExportConfig {
    /// Where the day files are.
    pub data_dir: PathBuf,
    /// Where the Parquet files go.
    pub export_dir: PathBuf,
    /// The storage zone (day boundaries, the timestamp columns).
    pub zone: ZoneFormatter,
    /// The zone's name.
    pub timezone: String,
    /// The receive clock.
    pub clock: Clock,
}

/// The running export thread.
#[derive(Debug)]
pub struct Exporter {
    thread: crate::thread::StoppableThread<()>,
    cancel: Arc<AtomicBool>,
}

impl Exporter {
    /// Starts `tickcap-export`.
    pub fn spawn(cfg: ExportConfig, stats: Arc<Stats>) -> std::io::Result<Self> {
        stats.exports.enabled.store(true, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        let c = Arc::clone(&cancel);
        let thread = crate::thread::StoppableThread::spawn("tickcap-export", None, move |stop| {
            crate::thread::yield_to_capture(19);
            run(cfg, &stats, &c, &stop);
        })?;
        Ok(Exporter { thread, cancel })
    }

    /// Asks it to stop: an export in progress is cancelled within a batch.
    pub fn request_stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.thread.request_stop();
    }

    /// Stops it; an export in progress is cancelled (its partial files
    /// removed) within a batch.
    pub fn stop(mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if self.thread.stop_within(Duration::from_secs(1)).is_none() {
            tracing::warn!("the Parquet export thread did not stop within 1 s (its temporary files go at the next export)");
        }
    }
}

/// The day's tick segments, unless one of them is being compressed (its
/// plain and `.zst` forms both present).
fn settled_segments(dir: &std::path::Path, day: LocalDate) -> Option<Vec<PathBuf>> {
    let segs = crate::days::segments_of_in(dir, Family::Ticks, day);
    // `also_zstd`: the segment's plain file has its `.zst` beside it.
    segs.iter()
        .all(|s| !s.also_zstd)
        .then(|| segs.into_iter().map(|s| s.path).collect())
}

fn run(
    mut cfg: ExportConfig,
    stats: &Stats,
    cancel: &Arc<AtomicBool>,
    stop: &crate::thread::StopFlag,
) {
    let today = cfg.zone.date_of_micros(cfg.clock.now_micros());
    // At start: the latest closed day, if its export is missing.
    let mut queue: Vec<LocalDate> = crate::days::segments_in(&cfg.data_dir, Family::Ticks)
        .into_iter()
        .map(|s| s.id.day)
        .filter(|d| *d < today)
        .max()
        .into_iter()
        .collect();
    let mut last_today = today;
    let mut wait = Duration::ZERO;
    while !stop.is_set() {
        std::thread::park_timeout(wait.min(Duration::from_millis(500)));
        if stop.is_set() {
            return;
        }
        wait = wait.saturating_sub(Duration::from_millis(500));
        if !wait.is_zero() {
            continue;
        }
        wait = CHECK;
        let today = cfg.zone.date_of_micros(cfg.clock.now_micros());
        if today > last_today {
            // Exported at the next check: the writer has written the day's
            // last ticks (its flush bound is far below the check's 10 s).
            if !queue.contains(&last_today) {
                queue.push(last_today);
            }
            last_today = today;
            continue;
        }
        let Some(&day) = queue.first() else {
            continue;
        };
        let Some(inputs) = settled_segments(&cfg.data_dir, day) else {
            continue; // being compressed: next check
        };
        if inputs.is_empty() {
            queue.remove(0);
            continue;
        }
        let out = cfg.export_dir.join(parquet_name(&inputs[0]));
        if out.exists() {
            queue.remove(0);
            continue;
        }
        let e = &stats.exports;
        if let Ok(mut r) = e.running.lock() {
            *r = Some(day.to_string());
        }
        let opts = ExportOptions {
            cancel: Some(Arc::clone(cancel)),
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let result = std::fs::create_dir_all(&cfg.export_dir)
            .map_err(|error| ExportError::Io {
                path: cfg.export_dir.clone(),
                error,
            })
            .and_then(|()| export_day(&inputs, &out, &cfg.timezone, &opts));
        let result = (result, t0.elapsed());
        if let Ok(mut r) = e.running.lock() {
            *r = None;
        }
        match result {
            (Ok(x), took) => {
                tracing::info!(
                    "closed day {day} exported: {} ({} rows, {:.1} s)",
                    x.path.display(),
                    x.rows,
                    took.as_secs_f64()
                );
                if x.bad_lines > 0 {
                    tracing::warn!(
                        "closed day {day}: {} line(s) that are not ticks were skipped; the first: {}",
                        x.bad_lines,
                        x.problems.first().map_or("", String::as_str)
                    );
                }
                e.done.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = e.last.lock() {
                    *l = Some((x.path.display().to_string(), x.rows));
                }
                queue.remove(0);
            }
            (Err(ExportError::Cancelled), _) => return,
            (Err(err), _) => {
                let text = crate::util::log_text(&err.to_string(), 300);
                tracing::error!(
                    "export of closed day {day} failed (tried again in a minute): {text}"
                );
                e.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = e.last_error.lock() {
                    *l = Some(text);
                }
                wait = RETRY;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_being_compressed_is_not_settled() {
        let dir = tempfile::tempdir().unwrap();
        let day = LocalDate::parse("2026-11-26").unwrap();
        let plain = dir.path().join("market_data_2026-11-26.jsonl");
        std::fs::write(&plain, "{}\n").unwrap();
        assert_eq!(settled_segments(dir.path(), day), Some(vec![plain.clone()]));
        // The compressed copy appears before the plain one is removed.
        let zst = dir.path().join("market_data_2026-11-26.jsonl.zst");
        std::fs::write(&zst, b"").unwrap();
        assert_eq!(settled_segments(dir.path(), day), None);
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(settled_segments(dir.path(), day), Some(vec![zst]));
    }
}
