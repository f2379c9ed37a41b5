//! The writer thread: drains the rings in chunks, formats JSONL into a large
//! buffer, and writes it with few large `write` calls.
//!
//! - **Flush rule**: the buffer is written when it reaches `buffer_size`
//!   (≥ 1 MiB), or when its oldest tick was *received* 3/5 of
//!   `flush_interval` ago, or at the end. The writer parks at most half the
//!   interval, so a tick is drained within 1/2 and written within 3/5 of it
//!   after its receive: the other 2/5 (20 ms of the default 50) absorb the
//!   scheduler's delays in waking the writer on a loaded machine, so the
//!   promised bound — no tick waits longer than `flush_interval` for
//!   write(2) — does not depend on being woken on time.
//! - **fsync policy**: `batch` syncs after every write, `interval` at most
//!   every `fsync_interval`, `never` leaves it to the OS; rotation and
//!   shutdown always sync.
//! - **Rotation**: each tick's receive time picks its day (in the configured
//!   zone); a new day writes out the buffer, then switches file.
//! - **Write errors** (disk full, EIO) are counted and logged, and retried
//!   with backoff from where the write stopped: no byte is written twice or
//!   lost. While writes fail the buffer may grow to `max_buffer`; past that
//!   the writer stops draining, the rings fill, and the event loop stops
//!   reading the sockets (backpressure into the kernel).
//! - **Idle**: spin briefly, then park until woken by the event loop or the
//!   flush deadline (a named choice: spin-then-park; on 2 cores a pure spin
//!   would take the event loop's core).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::files::DaySink;
use super::line::LineFormatter;
use crate::config::FsyncPolicy;
use crate::ring::{Stamped, Wake};
use crate::stats::{new_histogram, publish, InstrumentMap, Stats};
use crate::time::{Clock, LocalDate, ZoneFormatter};

/// How the writer behaves.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Zone for lines and the day boundary.
    pub zone: ZoneFormatter,
    /// fsync policy.
    pub fsync: FsyncPolicy,
    /// Longest wait of a received tick before it is written.
    pub flush_interval: Duration,
    /// With `Interval`: longest time between syncs.
    pub fsync_interval: Duration,
    /// Write when the buffer holds this much.
    pub buffer_size: usize,
    /// Stop draining the rings past this much unwritten (while writes fail).
    pub max_buffer: usize,
    /// Pin the thread to this core.
    pub core: Option<usize>,
    /// Hot standby: drop second copies within this window (µs).
    pub dedup_window_micros: Option<i64>,
    /// The receive clock the ticks were stamped with, so receive→written
    /// latency compares like with like (a shifted test clock included).
    pub clock: Clock,
    /// At shutdown, keep trying to write for at most this long; then save
    /// what is unwritten to a recovery file and stop.
    pub shutdown_write_limit: Duration,
    /// Where a recovery file may go, in order of preference.
    pub recovery_dirs: Vec<std::path::PathBuf>,
    /// The day whose file the engine opened at start: no earlier day is
    /// ever written (a closed day is never reopened).
    pub start_day: Option<LocalDate>,
    /// The events journal (write failures and recoveries, files replaced)
    /// and where final candles go.
    pub events: crate::events::Emitter,
    /// Candle intervals to build from the ticks as they are written.
    pub candles: Vec<crate::candles::Interval>,
}

impl WriterConfig {
    /// Defaults: 1 MiB writes, 64 MiB ceiling while the disk fails.
    pub fn new(zone: ZoneFormatter, fsync: FsyncPolicy, flush_interval: Duration) -> Self {
        WriterConfig {
            zone,
            fsync,
            flush_interval,
            fsync_interval: Duration::from_secs(1),
            buffer_size: 1 << 20,
            max_buffer: 64 << 20,
            core: None,
            dedup_window_micros: None,
            clock: Clock::system(),
            shutdown_write_limit: Duration::from_secs(5),
            recovery_dirs: vec![std::env::temp_dir()],
            start_day: None,
            events: crate::events::Emitter::none(Clock::system()),
            candles: Vec::new(),
        }
    }
}

/// A running writer.
#[derive(Debug)]
pub struct Writer {
    thread: crate::thread::StoppableThread<()>,
}

impl Writer {
    /// Starts the thread `tickcap-writer` over `rings`.
    pub fn spawn(
        cfg: WriterConfig,
        rings: Vec<rtrb::Consumer<Stamped>>,
        sink: Box<dyn DaySink>,
        stats: Arc<Stats>,
        wake: Arc<Wake>,
    ) -> std::io::Result<Writer> {
        // Parked in `park_timeout` when idle: the stop's `unpark` wakes it.
        let thread = crate::thread::StoppableThread::spawn("tickcap-writer", None, move |stop| {
            pin(cfg.core);
            wake.register_current();
            let mut w = WriterLoop::new(cfg, rings, sink, stats, wake, stop);
            w.run();
        })?;
        Ok(Writer { thread })
    }

    /// Asks the writer to drain everything, write, sync and exit; waits.
    /// False when the writer thread panicked.
    pub fn finish(mut self) -> bool {
        match self.thread.stop() {
            Ok(_) => true,
            Err(_) => {
                tracing::error!("the writer thread panicked");
                false
            }
        }
    }
}

/// Writes a new file whole and syncs it (never overwrites one).
fn save_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

fn pin(core: Option<usize>) {
    let Some(id) = core else { return };
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    match cores.into_iter().find(|c| c.id == id) {
        Some(c) if core_affinity::set_for_current(c) => {
            tracing::info!("writer pinned to core {id}")
        }
        Some(_) => tracing::warn!("writer: pinning to core {id} FAILED; running unpinned"),
        None => tracing::warn!("writer: core {id} not available for pinning; running unpinned"),
    }
}

/// How far behind the receive clock a quiet feed's bars are swept.
const QUIET_SWEEP_LAG: i64 = 5_000_000;

struct WriterLoop {
    cfg: WriterConfig,
    fmt: LineFormatter,
    rings: Vec<rtrb::Consumer<Stamped>>,
    sink: Box<dyn DaySink>,
    stats: Arc<Stats>,
    wake: Arc<Wake>,
    buf: Vec<u8>,
    /// Receive times of the lines in `buf` (for the latency histogram).
    recv: Vec<i64>,
    /// Day of the lines in `buf`.
    day: Option<LocalDate>,
    /// Bytes of `buf` already written (a write failed part-way).
    written: usize,
    /// The receive time of the oldest line in `buf`, as an `Instant` (the
    /// flush deadline counts from the receive, not from the drain).
    oldest: Option<Instant>,
    dirty_since_sync: bool,
    last_sync: Instant,
    retry_at: Option<Instant>,
    retry_delay: Duration,
    hist: Histogram<u64>,
    last_publish: Instant,
    seen: InstrumentMap,
    dedup: Option<crate::dedup::Dedup>,
    stop: crate::thread::StopFlag,
    /// Set when the stop request is first seen: the end of trying to write.
    deadline: Option<Instant>,
    /// The per-instrument map is to be published (a reader held it).
    instruments_due: bool,
    /// The latest day written: a closed day is never reopened.
    floor: Option<LocalDate>,
    /// Lines written since the last good fsync.
    since_sync: u64,
    /// Candles built from the ticks in write order (`[candles]`).
    book: Option<crate::candles::Book>,
    /// Bars final since the last hand-over.
    bars: Vec<crate::candles::Bar>,
}

impl WriterLoop {
    fn new(
        cfg: WriterConfig,
        rings: Vec<rtrb::Consumer<Stamped>>,
        sink: Box<dyn DaySink>,
        stats: Arc<Stats>,
        wake: Arc<Wake>,
        stop: crate::thread::StopFlag,
    ) -> Self {
        let cap = cfg.buffer_size + (256 << 10);
        let dedup = cfg.dedup_window_micros.map(crate::dedup::Dedup::new);
        let floor = cfg.start_day;
        let book = (!cfg.candles.is_empty())
            .then(|| crate::candles::Book::new(&cfg.candles, cfg.zone.clone()));
        WriterLoop {
            book,
            bars: Vec::new(),
            fmt: LineFormatter::new(cfg.zone.clone()),
            buf: Vec::with_capacity(cap),
            recv: Vec::with_capacity(cap / 128),
            cfg,
            rings,
            sink,
            stats,
            wake,
            day: None,
            written: 0,
            oldest: None,
            dirty_since_sync: false,
            last_sync: Instant::now(),
            retry_at: None,
            retry_delay: Duration::from_millis(50),
            hist: new_histogram(),
            last_publish: Instant::now(),
            seen: InstrumentMap::default(),
            dedup,
            stop,
            deadline: None,
            instruments_due: false,
            floor,
            since_sync: 0,
        }
    }

    /// Whether shutdown has asked us to stop and the time to write is over.
    fn past_deadline(&mut self) -> bool {
        if self.deadline.is_none() && self.stop.is_set() {
            self.deadline = Some(Instant::now() + self.cfg.shutdown_write_limit);
        }
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn run(&mut self) {
        loop {
            let stopping = self.stop.is_set();
            if self.past_deadline() {
                if !(self.buf.is_empty() && self.rings_empty()) {
                    self.give_up();
                }
                break;
            }
            let drained = if self.buf.len() < self.cfg.max_buffer {
                self.drain()
            } else {
                0
            };
            let now = Instant::now();
            // Drained at most flush_interval / 2 after its receive (the idle
            // park below), written when the oldest line was received 3/5
            // of flush_interval ago: 2/5 are left for a late wake-up.
            let half = self.cfg.flush_interval / 2;
            let write_at = self.cfg.flush_interval * 3 / 5;
            let due = self
                .oldest
                .is_some_and(|t| now.duration_since(t) >= write_at);
            let can_retry = self.retry_at.is_none_or(|t| now >= t);
            if !self.buf.is_empty()
                && can_retry
                && (self.buf.len() >= self.cfg.buffer_size || due || stopping)
            {
                self.write_out();
            }
            if self.cfg.fsync == FsyncPolicy::Interval
                && self.dirty_since_sync
                && now.duration_since(self.last_sync) >= self.cfg.fsync_interval
            {
                self.sync();
            }
            if !self.bars.is_empty() {
                self.hand_over_bars();
            }
            if now.duration_since(self.last_publish) >= Duration::from_secs(1) {
                // A feed gone quiet still closes its bars: the receive
                // clock, less a margin for ticks still on their way here
                // (so a bar closes on the ticks' own times when they flow).
                if let Some(b) = &mut self.book {
                    b.sweep(
                        self.cfg.clock.now_micros() - QUIET_SWEEP_LAG,
                        &mut self.bars,
                    );
                    // The bars in progress for `GET /candles` (a reader
                    // holding the lock costs this second's copy, not a wait).
                    if let Ok(mut open) = self.stats.journal.candles_open.try_lock() {
                        b.open_bars(&mut open);
                    }
                }
                self.hand_over_bars();
                self.verify_file();
                publish(&self.stats.latency.receive_to_written_us, &self.hist);
                self.publish_dedup();
                self.instruments_due = true;
                self.last_publish = now;
            }
            // Never waits on a reader: a turn that finds the map locked
            // tries again on the next one (not a second later).
            if self.instruments_due {
                if let Ok(mut m) = self.stats.instruments.try_lock() {
                    m.clone_from(&self.seen);
                    self.instruments_due = false;
                }
            }
            if stopping && drained == 0 && self.rings_empty() && self.buf.is_empty() {
                break;
            }
            if drained > 0 {
                continue;
            }
            // Idle: park for half the flush interval (the event loop wakes us
            // earlier only when a ring fills up), or until the write is due,
            // the retry time or the shutdown deadline. No spinning and no
            // yield loop: at real rates a wake per frame cost two context
            // switches per frame; batching by time costs ~40 wakes a second.
            // While writes fail the write deadline is already past and must
            // not wake us: the retry time rules.
            self.wake.going_to_sleep();
            let can_take = self.buf.len() < self.cfg.max_buffer;
            let stop_news = !stopping && self.stop.is_set();
            if (can_take && !self.rings_empty()) || stop_news {
                self.wake.awake();
                continue;
            }
            let now = Instant::now();
            let mut timeout = half;
            let write_at = self.cfg.flush_interval * 3 / 5;
            match (self.retry_at, self.oldest) {
                (Some(t), _) => timeout = timeout.min(t.saturating_duration_since(now)),
                (None, Some(t)) => {
                    timeout = timeout.min((t + write_at).saturating_duration_since(now));
                }
                (None, None) => {}
            }
            if let Some(d) = self.deadline {
                timeout = timeout.min(d.saturating_duration_since(now));
            }
            std::thread::park_timeout(timeout);
            self.wake.awake();
        }
        // The bars in progress end with the capture (marked incomplete by
        // the journal: coverage ended before their interval did).
        if let Some(b) = &mut self.book {
            b.finish(&mut self.bars);
        }
        self.hand_over_bars();
        if self.dirty_since_sync || self.cfg.fsync != FsyncPolicy::Batch {
            self.sync();
        }
        publish(&self.stats.latency.receive_to_written_us, &self.hist);
        if let Ok(mut m) = self.stats.instruments.lock() {
            m.clone_from(&self.seen);
        }
        self.publish_dedup();
    }

    /// Sends the final bars to the journal thread, which writes them.
    fn hand_over_bars(&mut self) {
        for b in self.bars.drain(..) {
            self.cfg.events.candle(b);
        }
    }

    fn publish_dedup(&self) {
        if let Some(d) = &self.dedup {
            let w = &self.stats.writer;
            w.dedup_dropped.store(d.dropped, Ordering::Relaxed);
            for (i, n) in d.first_by.iter().enumerate() {
                w.dedup_first_by[i].store(*n, Ordering::Relaxed);
            }
            publish(&self.stats.latency.dedup_lead_us, &d.lead);
        }
    }

    fn rings_empty(&self) -> bool {
        self.rings.iter().all(|r| r.is_empty())
    }

    /// Formats what the rings hold, merged by receive time across rings (so
    /// the file is in receive order and, in hot standby, the copy kept is the
    /// one that arrived first); returns the ticks taken. Stops at a day
    /// boundary: the old day's lines are written (and synced) before the
    /// first line of the new day is formatted.
    fn drain(&mut self) -> usize {
        let mut chunks: Vec<rtrb::chunks::ReadChunk<'_, Stamped>> =
            Vec::with_capacity(self.rings.len());
        for r in self.rings.iter_mut() {
            let n = r.slots().min(8192);
            if n > 0 {
                if let Ok(c) = r.read_chunk(n) {
                    chunks.push(c);
                }
            }
        }
        if chunks.is_empty() {
            return 0;
        }
        let views: Vec<(&[Stamped], &[Stamped])> = chunks.iter().map(|c| c.as_slices()).collect();
        let lens: Vec<usize> = views.iter().map(|(a, b)| a.len() + b.len()).collect();
        let at = |k: usize, i: usize| -> &Stamped {
            let (a, b) = views[k];
            if i < a.len() {
                &a[i]
            } else {
                &b[i - a.len()]
            }
        };
        let mut pos = vec![0usize; views.len()];
        let mut new_day = false;
        loop {
            // The ring whose next tick was received first.
            let mut pick: Option<usize> = None;
            for k in 0..views.len() {
                if pos[k] < lens[k]
                    && pick.is_none_or(|p| at(k, pos[k]).recv_micros < at(p, pos[p]).recv_micros)
                {
                    pick = Some(k);
                }
            }
            let Some(k) = pick else { break };
            let st = at(k, pos[k]);
            let mut day = self.fmt.clock_mut().date_of_micros(st.recv_micros);
            // A tick received before midnight but drained after the
            // rotation goes to the current day: the closed day is sealed.
            if let Some(floor) = self.floor {
                if day < floor {
                    day = floor;
                    self.stats.writer.late_ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
            if self.day != Some(day) && !self.buf.is_empty() {
                new_day = true;
                break;
            }
            pos[k] += 1;
            if let Some(d) = &mut self.dedup {
                if !d.keep(st) {
                    continue;
                }
            }
            self.day = Some(day);
            self.floor = Some(day);
            self.fmt
                .write_line(&mut self.buf, &st.tick, st.recv_micros, st.connection_id);
            self.recv.push(st.recv_micros);
            let e = self.seen.entry(st.tick.instrument_token).or_default();
            e.ticks += 1;
            e.last_micros = st.recv_micros;
            e.connection_id = st.connection_id;
            e.last_price_raw = st.tick.last_price;
            if st.tick.kind != crate::kite::PacketKind::Ltp {
                let t = &st.tick;
                e.ohlc_raw = [t.open, t.high, t.low, t.close];
                e.volume = t.volume_traded;
            }
            if let Some(b) = &mut self.book {
                b.update(&st.tick, st.recv_micros, &mut self.bars);
            }
        }
        drop(views);
        let total: usize = pos.iter().sum();
        for (c, n) in chunks.into_iter().zip(&pos) {
            c.commit(*n);
        }
        if self.oldest.is_none() {
            if let Some(&first) = self.recv.first() {
                // Its receive time on the monotonic clock: now less its age.
                let age = (self.cfg.clock.now_micros() - first).clamp(0, 60_000_000);
                let now = Instant::now();
                self.oldest = Some(
                    now.checked_sub(Duration::from_micros(age as u64))
                        .unwrap_or(now),
                );
            }
        }
        // The writer's lag, for /health: the receive time of the oldest line
        // not yet accepted by write(2).
        if let Some(&first) = self.recv.first() {
            let w = &self.stats.writer;
            if w.oldest_unwritten_micros.load(Ordering::Relaxed) == 0 {
                w.oldest_unwritten_micros.store(first, Ordering::Relaxed);
            }
        }
        if new_day {
            // Rotation: the old day's lines go to the old file first.
            self.write_out_blocking();
            self.sync();
            self.day = None;
            self.stats.writer.lines_today.store(0, Ordering::Relaxed);
        }
        self.stats
            .writer
            .buffered_bytes
            .store((self.buf.len() - self.written) as u64, Ordering::Relaxed);
        total
    }

    /// Rotation must not mix days in one buffer: retry until the old day is out.
    fn write_out_blocking(&mut self) {
        while !self.buf.is_empty() {
            if self.past_deadline() {
                // Shutdown gave up on the disk: `give_up` saves the buffer.
                return;
            }
            if let Some(t) = self.retry_at {
                std::thread::sleep(t.saturating_duration_since(Instant::now()));
            }
            self.write_out();
        }
    }

    /// Writes `buf[written..]`; on error keeps it for a retry.
    fn write_out(&mut self) {
        let Some(day) = self.day else { return };
        let w = &self.stats.writer;
        while self.written < self.buf.len() {
            match self.sink.write(day, &self.buf[self.written..]) {
                Ok(0) => {
                    self.fail(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "write returned 0",
                    ));
                    return;
                }
                Ok(n) => {
                    self.written += n;
                    w.writes.fetch_add(1, Ordering::Relaxed);
                    w.bytes.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
        let now_micros = self.cfg.clock.now_micros();
        for &t in &self.recv {
            let _ = self.hist.record((now_micros - t).max(1) as u64);
        }
        w.lines.fetch_add(self.recv.len() as u64, Ordering::Relaxed);
        self.since_sync += self.recv.len() as u64;
        w.lines_today
            .fetch_add(self.recv.len() as u64, Ordering::Relaxed);
        w.last_flush_micros.store(now_micros, Ordering::Relaxed);
        w.buffered_bytes.store(0, Ordering::Relaxed);
        let failing_since = w.failing_since_micros.swap(0, Ordering::Relaxed);
        if failing_since > 0 {
            self.cfg.events.emit(crate::events::Event::WriterRecovered {
                failed_ms: ((now_micros - failing_since).max(0) / 1000) as u64,
            });
        }
        w.oldest_unwritten_micros.store(0, Ordering::Relaxed);
        if self.retry_at.take().is_some() {
            tracing::info!("writes succeed again; nothing was lost");
            if let Ok(mut e) = w.last_error.lock() {
                *e = None;
            }
        }
        self.retry_delay = Duration::from_millis(50);
        self.buf.clear();
        self.recv.clear();
        self.written = 0;
        self.oldest = None;
        self.dirty_since_sync = true;
        if let Ok(mut p) = w.current_file.try_lock() {
            let cur = self.sink.current_path();
            if *p != cur {
                *p = cur;
            }
        }
        if self.cfg.fsync == FsyncPolicy::Batch {
            self.sync();
        }
    }

    /// Shutdown could not write everything in time: move what is left (the
    /// unwritten tail of the buffer, from the start of its first incomplete
    /// line, and everything still in the rings) to a recovery file, or say
    /// exactly what was lost when no place takes it.
    fn give_up(&mut self) {
        // Everything the event loop handed over joins the buffer now: no
        // ceiling, the rings are bounded and this is the last step.
        while self.drain() > 0 {}
        let start = self.buf[..self.written]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        // Lines wholly in the file before the disk stopped taking bytes are
        // written: counted as such, not as lost.
        let done = self.buf[..start].iter().filter(|&&b| b == b'\n').count() as u64;
        let w = &self.stats.writer;
        w.lines.fetch_add(done, Ordering::Relaxed);
        w.lines_today.fetch_add(done, Ordering::Relaxed);
        // A line cut short in the file: cut it off (the file then ends on a
        // line boundary and the recovery file holds the whole line); if the
        // disk will not even do that, the recovery file starts with the
        // rest of that line, so appending it completes the file exactly.
        let partial = (self.written - start) as u64;
        let from = if partial == 0 {
            start
        } else {
            match self.sink.cut_tail(partial) {
                Ok(()) => start,
                Err(e) => {
                    tracing::error!(
                        "cannot cut the partial last line ({partial} bytes) off the day's file: {e}; \
                         the recovery file starts with the rest of that line: append it to the day's file as it is"
                    );
                    self.written
                }
            }
        };
        let data = &self.buf[from..];
        let lines = self.buf[start..].iter().filter(|&&b| b == b'\n').count() as u64;
        let (first, last) = (
            self.recv.iter().min().copied().unwrap_or(0),
            self.recv.iter().max().copied().unwrap_or(0),
        );
        let day = self
            .day
            .map_or_else(|| "unknown-day".to_owned(), |d| d.to_string());
        let epoch = self.cfg.clock.now_micros() / 1_000_000;
        let name = format!("market_data_{day}.jsonl.unwritten-{epoch}");
        w.unwritten_lines.store(lines, Ordering::Relaxed);
        let mut saved = None;
        // Nothing left (every line made it): no empty recovery file.
        let dirs: &[std::path::PathBuf] = if data.is_empty() {
            &[]
        } else {
            &self.cfg.recovery_dirs
        };
        for dir in dirs {
            let path = dir.join(&name);
            match save_file(&path, data) {
                Ok(()) => {
                    saved = Some(path);
                    break;
                }
                Err(e) => tracing::error!("cannot save unwritten lines to {}: {e}", path.display()),
            }
        }
        match &saved {
            Some(p) => {
                w.saved_lines.store(lines, Ordering::Relaxed);
                tracing::error!(
                    "the disk did not take {lines} lines within {:?} of shutdown; they are saved in {} (receive times {first}..{last} µs); append them to the day's file once it is writable",
                    self.cfg.shutdown_write_limit,
                    p.display()
                );
            }
            None if data.is_empty() => {}
            None => tracing::error!(
                "LOST: {lines} lines could not be written or saved anywhere (receive times {first}..{last} µs since the epoch)"
            ),
        }
        if let Ok(mut g) = w.saved_to.lock() {
            *g = saved;
        }
        self.buf.clear();
        self.recv.clear();
        self.written = 0;
    }

    /// Once a second and after a failed write: is the open file still the
    /// file at its path? If it was removed or replaced (a `compress` or
    /// `rm` of today's file), the sink opens a new segment at the next
    /// write, and `/health` is degraded for the rest of the day.
    fn verify_file(&mut self) {
        let Some(why) = self.sink.verify() else {
            return;
        };
        let w = &self.stats.writer;
        w.files_replaced.fetch_add(1, Ordering::Relaxed);
        let day = self
            .day
            .or(self.floor)
            .map_or(0, crate::time::days_from_civil);
        w.replaced_on_day.store(day, Ordering::Relaxed);
        tracing::error!(
            "{why} while tickcap was writing it: the lines written to it since the last check (up to a second) are in the removed file; writing goes on in a new file"
        );
        self.cfg.events.emit(crate::events::Event::FileReplaced {
            reason: why.clone(),
        });
        if let Ok(mut g) = w.replaced_why.lock() {
            *g = Some(why);
        }
    }

    fn fail(&mut self, e: std::io::Error) {
        self.verify_file();
        let w = &self.stats.writer;
        if w.failing_since_micros
            .compare_exchange(
                0,
                self.cfg.clock.now_micros(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            self.cfg.events.emit(crate::events::Event::WriterFailed {
                error: e.to_string(),
                path: self.sink.current_path().map(|p| p.display().to_string()),
            });
        }
        let n = w.write_errors.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= 10 || n.is_power_of_two() {
            tracing::error!(
                "write failed ({e}); {} bytes kept in memory and retried in {:?} (error #{n})",
                self.buf.len() - self.written,
                self.retry_delay
            );
        }
        if let Ok(mut le) = w.last_error.lock() {
            *le = Some(e.to_string());
        }
        self.retry_at = Some(Instant::now() + self.retry_delay);
        self.retry_delay = (self.retry_delay * 2).min(Duration::from_secs(2));
    }

    fn sync(&mut self) {
        match self.sink.sync() {
            Ok(()) => {
                self.stats.writer.fsyncs.fetch_add(1, Ordering::Relaxed);
                self.dirty_since_sync = false;
                self.since_sync = 0;
            }
            Err(e) => {
                let w = &self.stats.writer;
                w.write_errors.fetch_add(1, Ordering::Relaxed);
                let first = w
                    .fsync_failed_micros
                    .compare_exchange(
                        0,
                        self.cfg.clock.now_micros(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok();
                w.fsync_failed_lines
                    .fetch_max(self.since_sync, Ordering::Relaxed);
                if first {
                    tracing::error!(
                        "fsync failed: {e}. The kernel may have dropped the {} lines written since the last good fsync; a later fsync succeeding does not bring them back. /health stays degraded until a restart",
                        self.since_sync
                    );
                } else {
                    tracing::error!("fsync failed again: {e}");
                }
            }
        }
        self.last_sync = Instant::now();
    }
}
