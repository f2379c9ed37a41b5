//! The journal thread (`tickcap-journal`): writes the events journal
//! (`events_YYYY-MM-DD.jsonl`) and the order updates
//! (`orders_YYYY-MM-DD.jsonl`) that every other part hands it through an
//! [`Emitter`](crate::events::Emitter).
//!
//! - **Files**: [`DailyFiles`] of their [`Family`], so the tick files'
//!   rules hold: append only, torn tail repaired at open (kill -9), one
//!   writer per file (`flock`), zstd frames when the capture is compressed,
//!   rotation by each record's day in the storage zone (a closed day is
//!   never reopened: a late record goes to the current day), retention and
//!   closed-day compression.
//! - **Flush and fsync**: records are written within `flush_interval`;
//!   fsync as the ticks' policy says (`batch` after every write,
//!   `interval` at most every `fsync_interval`, `never` at rotation and
//!   shutdown only).
//! - **Each day's journal starts with `day_start`**: the connections' state
//!   (open, subscriptions) at its first instant, from the live coverage
//!   tracker this thread feeds with every event it writes; so coverage of a
//!   day reads that day's file alone.
//! - **Order updates**: Kite sends each one on every socket of the key;
//!   the same text within [`ORDER_DEDUP`] is kept once (as the hub
//!   forwards it once). Today's are also kept in memory for `GET /orders`.
//! - **Failures**: a failed write is retried from where it stopped with
//!   backoff; at most [`MAX_PENDING`] bytes wait, past that the oldest
//!   records are dropped and counted in `events_lost`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::files::{DailyFiles, DaySink};
use crate::config::FsyncPolicy;
use crate::days::Family;
use crate::events::coverage::Tracker;
use crate::events::{write_event_line, write_order_line, Event, Record};
use crate::stats::Stats;
use crate::time::{Clock, LocalDate, ZoneFormatter};

/// The same order update text within this window is one update.
pub const ORDER_DEDUP: Duration = Duration::from_secs(60);
/// Bytes that may wait while writes fail.
pub const MAX_PENDING: usize = 16 << 20;
/// Order lines kept in memory for `GET /orders`.
pub const ORDERS_KEPT: usize = 10_000;

/// How the journal thread behaves.
#[derive(Debug, Clone)]
pub struct SideConfig {
    /// The storage zone (lines and day boundaries).
    pub zone: ZoneFormatter,
    /// The ticks' fsync policy.
    pub fsync: FsyncPolicy,
    /// With `interval`: the longest time between syncs.
    pub fsync_interval: Duration,
    /// Longest wait of a record before it is written.
    pub flush_interval: Duration,
    /// The receive clock (day changes are checked against it).
    pub clock: Clock,
    /// The day the capture started: no earlier day is written.
    pub start_day: LocalDate,
    /// At shutdown, try to write for at most this long.
    pub shutdown_limit: Duration,
}

/// Opens the daily files of a family (the candles of an interval, on
/// their first bar) as the engine configured the others.
pub type FilesFor = Box<dyn Fn(Family) -> io::Result<DailyFiles> + Send>;

/// The journal thread.
#[derive(Debug)]
pub struct Journal {
    thread: crate::thread::StoppableThread<()>,
}

impl Journal {
    /// Starts `tickcap-journal` writing what `rx` brings into `events` and
    /// `orders` (opened already: see [`DailyFiles::prepare`](DaySink::prepare)).
    pub fn spawn(
        cfg: SideConfig,
        rx: Receiver<Record>,
        events: DailyFiles,
        orders: DailyFiles,
        files_for: FilesFor,
        stats: Arc<Stats>,
    ) -> io::Result<Journal> {
        let thread = crate::thread::StoppableThread::spawn("tickcap-journal", None, move |stop| {
            let mut s = Side::new(cfg, events, orders, stats);
            s.files_for = Some(files_for);
            s.seed_orders();
            s.run(&rx, &stop);
        })?;
        Ok(Journal { thread })
    }

    /// Writes what is queued (for at most the shutdown limit), syncs, and
    /// ends the thread. False when it panicked.
    pub fn finish(mut self) -> bool {
        self.thread.stop().is_ok()
    }
}

/// Bytes of one family waiting for their day's file.
struct Pending {
    family: Family,
    day: LocalDate,
    bytes: Vec<u8>,
    done: usize,
    /// Lines in `bytes` (for the counters).
    lines: u64,
}

struct Side {
    cfg: SideConfig,
    events: DailyFiles,
    orders: DailyFiles,
    /// The candle files of each interval, opened on their first bar.
    candles: std::collections::BTreeMap<crate::candles::Interval, DailyFiles>,
    files_for: Option<FilesFor>,
    /// Per interval, the latest day a bar was written to (a closed day's
    /// file is never reopened; a bar's day is its start's otherwise).
    candle_floor: HashMap<crate::candles::Interval, LocalDate>,
    stats: Arc<Stats>,
    pending: VecDeque<Pending>,
    pending_bytes: usize,
    floor: LocalDate,
    /// The day whose `day_start` was written (or whose file this run began).
    day: Option<LocalDate>,
    tracker: Tracker,
    /// Order updates kept lately (Kite sends one per socket).
    seen_orders: crate::dedup::Recent,
    dirty: bool,
    last_sync: Instant,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    last_publish: Instant,
    failing_since: Option<Instant>,
}

impl Side {
    fn new(cfg: SideConfig, events: DailyFiles, orders: DailyFiles, stats: Arc<Stats>) -> Self {
        Side {
            floor: cfg.start_day,
            cfg,
            events,
            orders,
            candles: Default::default(),
            files_for: None,
            candle_floor: HashMap::new(),
            stats,
            pending: VecDeque::new(),
            pending_bytes: 0,
            day: None,
            tracker: Tracker::default(),
            seen_orders: crate::dedup::Recent::new(ORDER_DEDUP.as_micros() as i64, 65_536),
            dirty: false,
            last_sync: Instant::now(),
            retry_at: None,
            retry_delay: Duration::from_millis(50),
            last_publish: Instant::now(),
            failing_since: None,
        }
    }

    /// Today's order updates written before this start (a restart mid-day)
    /// join `GET /orders`.
    fn seed_orders(&mut self) {
        let dir = self.orders.dir().to_owned();
        let mut today = crate::stats::OrdersToday {
            day: self.floor.to_string(),
            ..Default::default()
        };
        for seg in crate::days::segments_of_in(&dir, Family::Orders, self.floor) {
            let Ok(text) = crate::zst::read_all(&seg.path) else {
                continue;
            };
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                // A restart within the dedupe window keeps one copy of an
                // update that a socket brings again.
                let at = serde_json::from_slice::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| {
                        v["timestamp"]
                            .as_str()
                            .and_then(crate::time::parse_timestamp)
                    });
                if let Some(at) = at {
                    let key = crate::dedup::Recent::key_of(crate::events::order_key(line));
                    self.seen_orders.first_sighting(key, at);
                }
                today.total += 1;
                if today.lines.len() == ORDERS_KEPT {
                    today.lines.pop_front();
                }
                today
                    .lines
                    .push_back(String::from_utf8_lossy(line).into_owned());
            }
        }
        if let Ok(mut o) = self.stats.journal.orders_today.lock() {
            *o = today;
        }
    }

    fn run(&mut self, rx: &Receiver<Record>, stop: &crate::thread::StopFlag) {
        let mut deadline: Option<Instant> = None;
        loop {
            let stopping = stop.is_set();
            if stopping && deadline.is_none() {
                deadline = Some(Instant::now() + self.cfg.shutdown_limit);
            }
            let wait = if stopping {
                Duration::ZERO
            } else {
                (self.cfg.flush_interval / 2)
                    .clamp(Duration::from_millis(5), Duration::from_millis(100))
            };
            let mut got = 0;
            match rx.recv_timeout(wait) {
                Ok(r) => {
                    self.take(r);
                    got += 1;
                    // Whatever else is queued, in one write.
                    while got < 4096 {
                        match rx.try_recv() {
                            Ok(r) => {
                                self.take(r);
                                got += 1;
                            }
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    if !stopping {
                        // Every emitter is gone: nothing more will come.
                        stop.set();
                    }
                }
            }
            self.check_day();
            let now = Instant::now();
            if self.retry_at.is_none_or(|t| now >= t) {
                self.write_out();
            }
            if self.dirty
                && (self.cfg.fsync == FsyncPolicy::Batch
                    || (self.cfg.fsync == FsyncPolicy::Interval
                        && now.duration_since(self.last_sync) >= self.cfg.fsync_interval))
            {
                self.sync();
            }
            // Once a second, and soon after a change (a subscribe, a drop).
            let since = now.duration_since(self.last_publish);
            if since >= Duration::from_secs(1) || (got > 0 && since >= Duration::from_millis(100)) {
                self.publish();
                self.last_publish = now;
            }
            if stopping && got == 0 && self.pending.is_empty() {
                break;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let lost: u64 = self.pending.iter().map(|p| p.lines).sum();
                if lost > 0 {
                    self.stats.journal.lost.fetch_add(lost, Ordering::Relaxed);
                    tracing::error!(
                        "events journal: {lost} record(s) could not be written before shutdown"
                    );
                }
                break;
            }
        }
        self.sync();
        self.publish();
    }

    /// Formats one record into the pending bytes of its family and day.
    fn take(&mut self, r: Record) {
        match r {
            Record::Candle(mut bar) => {
                // A bar saw everything only if its instrument was covered
                // for the whole interval (a day bar is the packet's day).
                if bar.interval != crate::candles::Interval::Day
                    && !self.tracker.covered_fully(
                        bar.instrument_token,
                        bar.start,
                        crate::candles::bar_end(&bar),
                    )
                {
                    bar.complete = false;
                }
                if !self.keep_candle(crate::candles::Compact::of(&bar), &bar) {
                    return;
                }
                let j = &self.stats.journal;
                if !bar.complete {
                    j.candles_incomplete.fetch_add(1, Ordering::Relaxed);
                }
                let day = self.cfg.zone.date_of_micros(bar.start);
                let floor = self.candle_floor.entry(bar.interval).or_insert(day);
                let day = day.max(*floor);
                *floor = day;
                let mut line = Vec::with_capacity(200);
                crate::candles::write_bar_line(&mut line, &mut self.cfg.zone, &bar, "tickcap");
                self.queue(Family::Candles(bar.interval), day, line);
            }
            Record::Repaired(bar) => {
                // Kite's bar goes into the file of the day it starts, never
                // a closed day's (those are `tickcap candles repair`'s).
                let day = self.cfg.zone.date_of_micros(bar.start);
                let floor = self.candle_floor.get(&bar.interval).copied();
                if day < self.floor || floor.is_some_and(|f| day < f) {
                    self.stats
                        .journal
                        .candles_repair_late
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let compact = crate::candles::Compact {
                    kite: true,
                    ..crate::candles::Compact::of(&bar)
                };
                self.keep_candle(compact, &bar);
                self.candle_floor.insert(bar.interval, day);
                self.stats
                    .journal
                    .candles_repaired
                    .fetch_add(1, Ordering::Relaxed);
                let mut line = Vec::with_capacity(200);
                crate::candles::write_bar_line(&mut line, &mut self.cfg.zone, &bar, "kite");
                self.queue(Family::Candles(bar.interval), day, line);
            }
            Record::Event(at, event) => {
                let day = self.day_of(at);
                self.start_day_if_new(day, at);
                self.tracker.feed(at, &event);
                let mut line = Vec::with_capacity(256);
                write_event_line(&mut line, &mut self.cfg.zone, at, &event);
                self.queue(Family::Events, day, line);
            }
            Record::Order {
                at,
                connection_id,
                text,
            } => {
                let mut line = Vec::with_capacity(text.len() + 80);
                let Some(kite) =
                    write_order_line(&mut line, &mut self.cfg.zone, at, connection_id, &text)
                else {
                    self.stats
                        .journal
                        .bad_text_frames
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                };
                if !self
                    .seen_orders
                    .first_sighting(crate::dedup::Recent::key_of(&line[..kite]), at)
                {
                    self.stats
                        .journal
                        .orders_duplicate
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let day = self.day_of(at);
                self.start_day_if_new(day, at);
                if let Ok(mut o) = self.stats.journal.orders_today.lock() {
                    let d = day.to_string();
                    if o.day != d {
                        *o = crate::stats::OrdersToday {
                            day: d,
                            ..Default::default()
                        };
                    }
                    o.total += 1;
                    if o.lines.len() == ORDERS_KEPT {
                        o.lines.pop_front();
                    }
                    let l = &line[..line.len() - 1];
                    o.lines.push_back(String::from_utf8_lossy(l).into_owned());
                }
                self.queue(Family::Orders, day, line);
            }
        }
    }

    /// Today's bars for `GET /candles`: a bar takes its interval's place (a
    /// later line for the same bar replaces an earlier one). False: tickcap's
    /// bar came after Kite's for the same interval, which stands.
    fn keep_candle(&mut self, c: crate::candles::Compact, bar: &crate::candles::Bar) -> bool {
        let j = &self.stats.journal;
        let day = self.cfg.zone.date_of_micros(bar.start);
        let Ok(mut today) = j.candles_today.lock() else {
            return true;
        };
        let d = self.cfg.zone.date_of_micros(self.cfg.clock.now_micros());
        if today.day != Some(d) {
            today.day = Some(d);
            today.bars.clear();
        }
        if day != d {
            return true;
        }
        let bars = today
            .bars
            .entry((bar.instrument_token, bar.interval))
            .or_default();
        // Bars come in time order; a repair looks back a little way.
        match bars.iter().rposition(|b| b.start_secs <= c.start_secs) {
            Some(i) if bars[i].start_secs == c.start_secs => {
                if bars[i].kite && !c.kite {
                    j.candles_after_repair.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                bars[i] = c;
            }
            Some(i) => bars.insert(i + 1, c),
            None => bars.insert(0, c),
        }
        true
    }

    fn day_of(&mut self, at: i64) -> LocalDate {
        let d = self.cfg.zone.date_of_micros(at);
        if d < self.floor {
            self.floor
        } else {
            self.floor = d;
            d
        }
    }

    /// A new day (by the clock or by a record): its journal starts with the
    /// connections' state, and today's totals start over.
    fn start_day_if_new(&mut self, day: LocalDate, at: i64) {
        match self.day {
            None => self.day = Some(day),
            Some(d) if d == day => {}
            Some(_) => {
                self.day = Some(day);
                self.tracker.roll(at);
                if self.tracker.running() {
                    let e = Event::DayStart {
                        connections: self.tracker.snapshot(),
                    };
                    let mut line = Vec::with_capacity(512);
                    write_event_line(&mut line, &mut self.cfg.zone, at, &e);
                    self.queue(Family::Events, day, line);
                }
            }
        }
    }

    fn check_day(&mut self) {
        let now = self.cfg.clock.now_micros();
        let day = self.day_of(now);
        self.start_day_if_new(day, now);
    }

    fn queue(&mut self, family: Family, day: LocalDate, line: Vec<u8>) {
        self.pending_bytes += line.len();
        match self.pending.back_mut() {
            Some(p) if p.family == family && p.day == day && p.done == 0 => {
                p.bytes.extend_from_slice(&line);
                p.lines += 1;
            }
            _ => self.pending.push_back(Pending {
                family,
                day,
                bytes: line,
                done: 0,
                lines: 1,
            }),
        }
        while self.pending_bytes > MAX_PENDING && self.pending.len() > 1 {
            if let Some(p) = self.pending.pop_front() {
                self.pending_bytes -= p.bytes.len() - p.done;
                self.stats
                    .journal
                    .lost
                    .fetch_add(p.lines, Ordering::Relaxed);
                tracing::error!(
                    "events journal: {} record(s) dropped: writes have failed for too long",
                    p.lines
                );
            }
        }
        self.stats
            .journal
            .pending_bytes
            .store(self.pending_bytes as u64, Ordering::Relaxed);
    }

    fn write_out(&mut self) {
        while let Some(p) = self.pending.front_mut() {
            let files = match p.family {
                Family::Orders => &mut self.orders,
                Family::Candles(i) => {
                    if !self.candles.contains_key(&i) {
                        let opened = match &self.files_for {
                            Some(f) => f(p.family),
                            None => Err(io::Error::other("no candle files configured")),
                        };
                        match opened {
                            Ok(f) => {
                                self.candles.insert(i, f);
                            }
                            Err(e) => {
                                self.failed(&e);
                                break;
                            }
                        }
                    }
                    match self.candles.get_mut(&i) {
                        Some(f) => f,
                        None => break,
                    }
                }
                _ => &mut self.events,
            };
            let r = files.write(p.day, &p.bytes[p.done..]);
            match r {
                Ok(n) if n > 0 => {
                    p.done += n;
                    self.pending_bytes -= n;
                    self.dirty = true;
                    if p.done == p.bytes.len() {
                        let c = match p.family {
                            Family::Orders => &self.stats.journal.orders_written,
                            Family::Candles(_) => &self.stats.journal.candles_written,
                            _ => &self.stats.journal.events_written,
                        };
                        c.fetch_add(p.lines, Ordering::Relaxed);
                        self.pending.pop_front();
                    }
                    if let Some(t) = self.failing_since.take() {
                        tracing::info!(
                            "events journal: writes work again after {} ms",
                            t.elapsed().as_millis()
                        );
                    }
                    self.retry_at = None;
                    self.retry_delay = Duration::from_millis(50);
                }
                Ok(_) => {
                    self.failed(&io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write returned 0",
                    ));
                    break;
                }
                Err(e) => {
                    self.failed(&e);
                    break;
                }
            }
        }
        self.stats
            .journal
            .pending_bytes
            .store(self.pending_bytes as u64, Ordering::Relaxed);
    }

    fn failed(&mut self, e: &io::Error) {
        let n = self
            .stats
            .journal
            .write_errors
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if n <= 10 || n.is_power_of_two() {
            tracing::error!("events journal: write failed (#{n}): {e}; retrying");
        }
        self.failing_since.get_or_insert_with(Instant::now);
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(2));
    }

    fn sync(&mut self) {
        for f in [&mut self.events, &mut self.orders]
            .into_iter()
            .chain(self.candles.values_mut())
        {
            if let Err(e) = f.sync() {
                tracing::warn!("events journal: fsync failed: {e}");
            }
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    fn publish(&mut self) {
        let now = self.cfg.clock.now_micros();
        let totals = self.tracker.totals_at(now);
        if let Ok(mut c) = self.stats.journal.coverage.lock() {
            c.at_micros = now;
            c.totals = totals;
        }
    }
}
