//! The service's own candle repair (`[candles] repair = true`): a thread,
//! `tickcap-repair`, that puts Kite's historical bars in place of today's
//! bars that a gap in coverage made incomplete or missing.
//!
//! - **What it repairs** is decided from what is on disk, by the same plan
//!   `tickcap candles repair` uses ([`crate::candles::stored`]): today's
//!   events journal gives the gaps (also those of a run before a kill),
//!   today's candle files which bars are incomplete and which are repaired.
//!   So a restart, a second pass, or a pass after a manual repair never
//!   fetches a bar twice, and a complete bar is never touched.
//! - **When**: a first pass `delay` after the start; a pass when the
//!   journal has written new incomplete bars (a gap closed: its bars became
//!   final) and whenever a wanted bar becomes ready (`delay` after it ends:
//!   Kite publishes a bar shortly after its interval); and a last pass 5
//!   minutes after each session's close (15:30, 17:00, 23:55 local), which
//!   also asks again for bars Kite had no bar for earlier.
//! - **How**: one request per instrument and interval, paced to Kite's 3
//!   a second with its 429s retried ([`crate::net::history`]); the bars go
//!   to the journal thread, the files' only writer, which appends them to
//!   today's candle file with `"source": "kite"` (a later line for a bar
//!   replaces the earlier one) and never to a closed day's.
//! - **Never on the loop**; asked to stop first at shutdown and joined
//!   after the writer's drain, for at most 500 ms (a request in flight is
//!   left to end with the process).
//! - `day` bars are not repaired here (Kite's day bar exists after the
//!   day): `tickcap candles repair --interval day` does a closed day.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::candles::stored::{DateCache, Planner};
use crate::candles::Interval;
use crate::days::Family;
use crate::events::Emitter;
use crate::net::history::{HistoryError, Pacer, Source};
use crate::stats::Stats;
use crate::time::{Clock, LocalDate, ZoneFormatter};

/// The longest candle or event line read.
const MAX_LINE: usize = 1 << 20;
/// Passes after a session's close: minutes after local midnight.
const CLOSE_PASSES: [i64; 3] = [15 * 60 + 35, 17 * 60 + 5, 23 * 60 + 57];
/// Failed requests in one pass before it gives up until later.
const MAX_ERRORS_PER_PASS: u32 = 5;
const DAY: i64 = 86_400_000_000;

/// What the repair thread needs.
#[derive(Debug, Clone)]
pub struct RepairConfig {
    /// Where the day's files are.
    pub data_dir: PathBuf,
    /// The storage zone.
    pub zone: ZoneFormatter,
    /// The intervals built live (`day` is left out).
    pub intervals: Vec<Interval>,
    /// How long after a bar ends Kite is asked for it.
    pub delay: Duration,
    /// The receive clock.
    pub clock: Clock,
    /// Kite's REST root and credentials, kept current by reloads.
    pub source: Arc<Mutex<Source>>,
}

/// The running repair thread.
#[derive(Debug)]
pub struct Repairer {
    thread: crate::thread::StoppableThread<()>,
}

impl Repairer {
    /// Starts `tickcap-repair`.
    pub fn spawn(cfg: RepairConfig, events: Emitter, stats: Arc<Stats>) -> std::io::Result<Self> {
        stats.repair.enabled.store(true, Ordering::Relaxed);
        let thread = crate::thread::StoppableThread::spawn("tickcap-repair", None, move |stop| {
            let mut r = Repair {
                when: When::new(cfg.clock.now_micros(), cfg.delay),
                cfg,
                events,
                stats,
                pacer: Pacer::default(),
                tried: HashSet::new(),
            };
            r.run(&stop);
        })?;
        Ok(Repairer { thread })
    }

    /// Asks it to stop, without waiting (see [`Repairer::stop`]).
    pub fn request_stop(&self) {
        self.thread.request_stop();
    }

    /// Stops it (a request in flight is not waited for past 500 ms: the
    /// process may end under it).
    pub fn stop(mut self) {
        if self
            .thread
            .stop_within(Duration::from_millis(500))
            .is_none()
        {
            tracing::info!(
                "candle repair: a request to Kite still in flight at shutdown; not waited for"
            );
        }
    }
}

/// When passes are due: pure, over the receive clock's µs.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    delay: i64,
    /// The next pass, at the latest.
    next: Option<i64>,
    /// The incomplete-bar count the last pass saw.
    seen_incomplete: u64,
    /// The close passes made (local day, minute).
    closes: BTreeSet<(LocalDate, i64)>,
}

/// Why a pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// New incomplete bars, a bar become ready, or the first pass.
    Due,
    /// After a session's close: also asks again for what Kite lacked.
    Close,
}

impl When {
    /// The schedule of a thread started at `now`.
    pub fn new(now: i64, delay: Duration) -> When {
        let delay = delay.as_micros() as i64;
        When {
            delay,
            next: Some(now + delay),
            seen_incomplete: 0,
            closes: BTreeSet::new(),
        }
    }

    /// Whether a pass is due at `now`, given the journal's count of
    /// incomplete bars written so far.
    pub fn due(&mut self, now: i64, zone: &mut ZoneFormatter, incomplete: u64) -> Option<Pass> {
        let day = zone.date_of_micros(now);
        let off = i64::from(zone.offset_seconds(now)) * 1_000_000;
        let midnight = now - (now + off).rem_euclid(DAY);
        // A close pass: the latest one passed today, once (a start after
        // 15:35 makes it at once: its first pass is a close pass).
        if let Some(&m) = CLOSE_PASSES
            .iter()
            .rev()
            .find(|&&m| now >= midnight + m * 60_000_000)
        {
            if self.closes.insert((day, m)) {
                self.seen_incomplete = incomplete;
                return Some(Pass::Close);
            }
        }
        if incomplete != self.seen_incomplete {
            // New incomplete bars: Kite's are ready `delay` after them.
            self.seen_incomplete = incomplete;
            let at = now + self.delay;
            self.next = Some(self.next.map_or(at, |n| n.min(at)));
        }
        match self.next {
            Some(n) if now >= n => {
                self.next = None;
                Some(Pass::Due)
            }
            _ => None,
        }
    }

    /// After a pass: the next one when a wanted bar becomes ready (the
    /// plan's `next_ready`, epoch µs, plus the delay) or a retry.
    pub fn again_at(&mut self, at: i64) {
        self.next = Some(self.next.map_or(at, |n| n.min(at)));
    }

    /// The delay, µs.
    pub fn delay(&self) -> i64 {
        self.delay
    }
}

struct Repair {
    cfg: RepairConfig,
    events: Emitter,
    stats: Arc<Stats>,
    pacer: Pacer,
    when: When,
    /// Bars Kite had none of (asked again only at a close pass).
    tried: HashSet<(Interval, u32, i64)>,
}

/// How a pass ended.
enum Outcome {
    Done { next_ready: Option<i64> },
    Failed,
    Stopped,
}

impl Repair {
    fn run(&mut self, stop: &crate::thread::StopFlag) {
        while !stop.is_set() {
            let now = self.cfg.clock.now_micros();
            let incomplete = self
                .stats
                .journal
                .candles_incomplete
                .load(Ordering::Relaxed);
            if let Some(pass) = self.when.due(now, &mut self.cfg.zone, incomplete) {
                match self.pass(pass, stop) {
                    Outcome::Done { next_ready } => {
                        if let Some(r) = next_ready {
                            self.when.again_at(r + self.when.delay());
                        }
                    }
                    Outcome::Failed => self.when.again_at(now + 60_000_000),
                    Outcome::Stopped => return,
                }
            }
            std::thread::park_timeout(Duration::from_millis(500));
        }
    }

    /// Today's coverage gaps, from the journal on disk.
    fn gaps(&self, day: LocalDate) -> Vec<(u32, i64, i64)> {
        let journals: Vec<PathBuf> =
            crate::days::segments_of_in(&self.cfg.data_dir, Family::Events, day)
                .into_iter()
                .map(|s| s.path)
                .collect();
        crate::analysis::coverage::gap_spans(&journals).unwrap_or_else(|e| {
            tracing::warn!("candle repair: reading today's events journal: {e}");
            Vec::new()
        })
    }

    fn pass(&mut self, pass: Pass, stop: &crate::thread::StopFlag) -> Outcome {
        let now = self.cfg.clock.now_micros();
        let day = self.cfg.zone.date_of_micros(now);
        let ready_before = now - self.when.delay();
        let gaps = self.gaps(day);
        if pass == Pass::Close {
            self.tried.clear();
        }
        let mut wanted_total = 0u64;
        let mut next_ready: Option<i64> = None;
        let mut work: Vec<(Interval, u32, BTreeSet<i64>)> = Vec::new();
        for &interval in &self.cfg.intervals {
            let mut plan = Planner::new(interval, gaps.iter().copied());
            let mut dates = DateCache::default();
            for seg in
                crate::days::segments_of_in(&self.cfg.data_dir, Family::Candles(interval), day)
            {
                if let Err(e) =
                    crate::zst::for_each_line(&seg.path, MAX_LINE, |l| plan.line(l, &mut dates))
                {
                    tracing::warn!("candle repair: {}: {e}", seg.path.display());
                }
            }
            if let Some(r) = plan.next_ready(&mut self.cfg.zone, ready_before) {
                next_ready = Some(next_ready.map_or(r, |n| n.min(r)));
            }
            let wanted: BTreeMap<u32, BTreeSet<i64>> =
                plan.wanted(&mut self.cfg.zone, ready_before);
            for (token, mut starts) in wanted {
                wanted_total += starts.len() as u64;
                starts.retain(|s| !self.tried.contains(&(interval, token, *s)));
                if !starts.is_empty() {
                    work.push((interval, token, starts));
                }
            }
        }
        let r = &self.stats.repair;
        r.wanted.store(wanted_total, Ordering::Relaxed);
        r.passes.fetch_add(1, Ordering::Relaxed);
        let (mut fetched, mut missing, mut errors) = (0u64, 0u64, 0u32);
        let mut outcome = Outcome::Done { next_ready };
        for (interval, token, starts) in &work {
            if stop.is_set() {
                outcome = Outcome::Stopped;
                break;
            }
            let src = match self.cfg.source.lock() {
                Ok(s) => s.clone(),
                Err(_) => break,
            };
            match crate::net::history::fetch_bars(
                &src,
                &mut self.pacer,
                *token,
                *interval,
                day,
                starts,
            ) {
                Ok((bars, lacking)) => {
                    let got: BTreeSet<i64> = bars.iter().map(|b| b.start).collect();
                    for s in starts.iter().filter(|s| !got.contains(s)) {
                        self.tried.insert((*interval, *token, *s));
                    }
                    missing += lacking;
                    for b in bars {
                        if !self.events.repaired(b) {
                            return Outcome::Stopped;
                        }
                        fetched += 1;
                    }
                }
                Err(e) => {
                    errors += 1;
                    r.errors.fetch_add(1, Ordering::Relaxed);
                    let text =
                        crate::util::log_text(&format!("instrument {token} {interval}: {e}"), 300);
                    if errors <= 2 {
                        tracing::warn!("candle repair: Kite's historical API: {text}");
                    }
                    if let Ok(mut l) = r.last_error.lock() {
                        *l = Some(text);
                    }
                    // A refused token refuses every request: stop asking.
                    let refused = matches!(
                        e,
                        HistoryError::Kite {
                            status: 401 | 403,
                            ..
                        }
                    );
                    if refused || errors >= MAX_ERRORS_PER_PASS {
                        outcome = Outcome::Failed;
                        break;
                    }
                }
            }
        }
        r.fetched.fetch_add(fetched, Ordering::Relaxed);
        r.not_in_kite.fetch_add(missing, Ordering::Relaxed);
        r.last_pass_micros
            .store(self.cfg.clock.now_micros(), Ordering::Relaxed);
        if fetched + missing > 0 || errors > 0 {
            tracing::info!(
                "candle repair ({}): {wanted_total} bar(s) wanted; {fetched} of Kite's handed to the journal, {missing} Kite has not (yet), {errors} request(s) failed",
                if pass == Pass::Close { "after the close" } else { "after a gap" }
            );
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27 00:00 IST.
    const MIDNIGHT: i64 = 1_795_717_800_000_000;
    const MIN: i64 = 60_000_000;

    #[test]
    fn passes_come_after_the_delay_after_new_incomplete_bars_and_after_each_close() {
        let mut z = ZoneFormatter::new("Asia/Kolkata").unwrap();
        let start = MIDNIGHT + (9 * 60 + 20) * MIN;
        let mut w = When::new(start, Duration::from_secs(60));
        assert_eq!(w.due(start, &mut z, 0), None);
        // The first pass a delay after the start.
        assert_eq!(w.due(start + MIN, &mut z, 0), Some(Pass::Due));
        assert_eq!(w.due(start + MIN + 1, &mut z, 0), None);
        // New incomplete bars: a pass a delay later, not before.
        assert_eq!(w.due(start + 2 * MIN, &mut z, 4), None);
        assert_eq!(w.due(start + 3 * MIN - 1, &mut z, 4), None);
        assert_eq!(w.due(start + 3 * MIN, &mut z, 4), Some(Pass::Due));
        // A wanted bar not yet ready: a pass when it is.
        w.again_at(start + 10 * MIN);
        assert_eq!(w.due(start + 10 * MIN - 1, &mut z, 4), None);
        assert_eq!(w.due(start + 10 * MIN, &mut z, 4), Some(Pass::Due));
        // After NSE's close (15:30) and 5 minutes: once.
        let close = MIDNIGHT + (15 * 60 + 35) * MIN;
        assert_eq!(w.due(close - 1, &mut z, 4), None);
        assert_eq!(w.due(close, &mut z, 4), Some(Pass::Close));
        assert_eq!(w.due(close + MIN, &mut z, 4), None);
        // A start after the close makes the close pass at once.
        let mut late = When::new(close + 30 * MIN, Duration::from_secs(60));
        assert_eq!(late.due(close + 30 * MIN, &mut z, 0), Some(Pass::Close));
        // The next day's first close pass comes again.
        assert_eq!(w.due(close + DAY, &mut z, 4), Some(Pass::Close));
    }
}
