//! The event loop: one `mio::Poll` over the Kite sockets, the status port,
//! signals and the waker; timers (backoff, stale feed, failover, token
//! files, the dump's refresh); hub demand into the ledger; and the shutdown
//! that drains every received tick to disk. The engine is built in
//! `mod.rs`; this is what runs.

use super::*;

/// How often the journal gets a heartbeat (its counts; after a kill -9
/// the last one bounds when the capture ended).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

impl EventLoop {
    /// The token files the running config reads, with their current mtimes.
    pub(super) fn watch_token_files(&mut self) {
        let mut files: Vec<std::path::PathBuf> = self
            .config
            .connections
            .iter()
            .filter_map(|c| c.access_token_file.clone())
            .collect();
        files.sort();
        files.dedup();
        self.token_files = files
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
                (p, m)
            })
            .collect();
    }

    /// Once a second: a token file that changed (`tickcap login` wrote a new
    /// token) triggers a reload by itself. One `stat` per file per second is
    /// the only file IO this adds to the loop.
    pub(super) fn check_token_files(&mut self, now: Instant) {
        if self.token_files.is_empty()
            || now.saturating_duration_since(self.token_checked) < Duration::from_secs(1)
        {
            return;
        }
        self.token_checked = now;
        let changed = self
            .token_files
            .iter()
            .any(|(p, seen)| std::fs::metadata(p).and_then(|m| m.modified()).ok() != *seen);
        if changed {
            tracing::info!("an access token file changed: reloading the configuration");
            self.reload();
            self.watch_token_files();
        }
    }

    /// SIGHUP: reread the config (errors are logged; the running one stays).
    pub(super) fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::warn!("SIGHUP ignored: no config file (started without --config)");
            return;
        };
        let now = self.clock.now_micros();
        let symbols = self.dump.symbols();
        let run = reload::Running {
            config: &mut self.config,
            conns: &mut self.conns,
            ledger: &mut self.ledger,
            history: &mut self.history,
            failover: &mut self.failover,
            events: &self.events,
        };
        match reload::reload(&path, &*symbols, run, now) {
            Ok(r) => {
                if !r.credentials_changed.is_empty() {
                    self.stats
                        .credentials_loaded_micros
                        .store(now, Ordering::Relaxed);
                }
                self.released.extend(&r.hub_released);
                self.tell_hub();
                self.refresh_repair_source();
            }
            Err(e) => tracing::error!("reload rejected, running config kept: {e}"),
        }
    }

    /// The candle repair asks Kite with the running config's credentials.
    pub(super) fn refresh_repair_source(&self) {
        if let Some(src) = &self.repair_source {
            if let Ok(mut s) = src.lock() {
                *s = crate::net::history::Source::of(&self.config.dump);
            }
        }
    }

    /// Tells the hub which of its instruments gave way to the user's claims.
    pub(super) fn tell_hub(&mut self) {
        if self.released.is_empty() {
            return;
        }
        if let Some(link) = &self.link {
            link.reject(&self.released);
        }
        self.stats
            .serve
            .auto_rejected
            .fetch_add(self.released.len() as u64, Ordering::Relaxed);
        self.released.clear();
    }

    pub(super) fn on_status_event(&mut self, token: Token) {
        let registry = self.poll.registry();
        let http = self.status.http_counts();
        let dump = &self.dump;
        let ledger = &mut self.ledger;
        let released = &mut self.released;
        let events = &self.events;
        let mut reloaded = false;
        let (conns, stats, config, history, zone, clock, path, failover) = (
            &mut self.conns,
            &*self.stats,
            &mut self.config,
            &mut self.history,
            &mut self.zone,
            self.clock,
            self.config_path.as_deref(),
            &mut self.failover,
        );
        self.status
            .on_event(registry, token, &mut |req: &Request, rates: &Rates| {
                let mut view = View {
                    conns: &mut conns[..],
                    stats,
                    config: &mut *config,
                    config_path: path,
                    history: &mut *history,
                    rates,
                    clock,
                    zone: &mut *zone,
                    http,
                    page: crate::status::PAGE,
                    failover,
                    dump,
                    ledger: &mut *ledger,
                    released: &mut *released,
                    reloaded: &mut reloaded,
                    events,
                };
                // The status port shares the capture thread: a bug in an
                // endpoint must cost a 500, never the capture.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    route(&mut view, req)
                })) {
                    Ok(resp) => resp,
                    Err(_) => {
                        tracing::error!(
                            "status port: {} {} panicked; answered 500, capture goes on",
                            req.method,
                            req.path
                        );
                        crate::status::Response::error(
                            500,
                            "internal error (logged); capture is not affected",
                        )
                    }
                }
            });
        if reloaded {
            // `tickcap login` writes the token file and calls /reload: that
            // change is applied now, not a second time by the watcher.
            self.watch_token_files();
            self.refresh_repair_source();
        }
    }

    pub(super) fn run(&mut self) -> Result<(), Shortfall> {
        let mut events = Events::with_capacity(256);
        for c in &mut self.conns {
            c.start(self.poll.registry());
        }
        let mut last_log = self.mono.now();
        let mut last_timers = last_log;
        let mut last_count = 0u64;
        loop {
            let now = self.mono.now();
            let wait = self
                .conns
                .iter()
                .filter_map(Connection::next_deadline)
                .min()
                .map_or(MAX_POLL_WAIT, |t| {
                    t.saturating_duration_since(now).min(MAX_POLL_WAIT)
                });
            // A socket whose read budget ran out is read again at once.
            let wait = if self.conns.iter().any(Connection::has_more_to_read) {
                Duration::ZERO
            } else {
                wait
            };
            // While a connection with instruments is down, check the
            // failover deadline often.
            let wait = if self
                .conns
                .iter()
                .take(2)
                .any(|c| !c.desired().is_empty() && !c.is_open())
            {
                wait.min(Duration::from_millis(10))
            } else {
                wait
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("poll failed: {e}; stopping");
                    break;
                }
            }
            // Sockets that still had data after their budget last turn get
            // another budget, before this turn's events: every socket reads
            // at most one budget per turn.
            let mut served = [false; 3];
            for (i, c) in self.conns.iter_mut().enumerate() {
                if c.has_more_to_read() {
                    c.read_more(self.poll.registry());
                    served[i] = true;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    Token(i)
                        if i < self.conns.len() && !served.get(i).copied().unwrap_or(false) =>
                    {
                        self.conns[i].on_event(self.poll.registry());
                    }
                    Token(i) if i < self.conns.len() => {}
                    t if self.status.owns(t) => {
                        self.on_status_event(t);
                        self.tell_hub();
                    }
                    SIGNALS => {
                        if let Some(s) = &mut self.signals {
                            let mut hup = false;
                            for sig in s.pending() {
                                if sig == signal_hook::consts::SIGHUP {
                                    hup = true;
                                    continue;
                                }
                                tracing::info!(
                                    "signal {sig}: stopping; draining every received tick to disk"
                                );
                                self.stop.set();
                            }
                            if hup {
                                tracing::info!("SIGHUP: reloading the configuration");
                                self.reload();
                            }
                        }
                    }
                    _ => {}
                }
            }
            if self.stop.is_set() {
                break;
            }
            self.serve_demand();
            // Timers run at most once a millisecond (their granularity):
            // at thousands of frames a second, running them after every
            // frame was measurable work for nothing.
            let now = self.mono.now();
            if now.saturating_duration_since(last_timers) < TIMER_GRAIN {
                continue;
            }
            last_timers = now;
            for c in &mut self.conns {
                c.on_timer(self.poll.registry(), now);
            }
            self.check_token_files(Instant::now());
            let new_dump = self
                .dump
                .poll(&self.config, self.clock.now_micros(), Instant::now());
            if new_dump {
                if let Some(e) = self.dump.event(&self.config) {
                    self.events.emit(e);
                }
            }
            if new_dump && self.config.dump.symbols_used {
                tracing::info!(
                    "a new instruments dump: reloading to re-resolve the configured symbols"
                );
                self.reload();
            }
            let before = [self.ledger.is_taken_over(0), self.ledger.is_taken_over(1)];
            self.failover.step(
                now,
                self.clock.now_micros(),
                &mut self.conns,
                &mut self.ledger,
                &self.stats,
            );
            for (i, was) in before.iter().enumerate() {
                let now_taken = self.ledger.is_taken_over(i);
                if *was != now_taken {
                    let n = self.ledger.takeover_split(i).0.len();
                    let (from, to) = if now_taken {
                        (i as u8 + 1, 3)
                    } else {
                        (3, i as u8 + 1)
                    };
                    self.events.emit(if now_taken {
                        crate::events::Event::Takeover {
                            from,
                            to,
                            instruments: n,
                        }
                    } else {
                        crate::events::Event::Handback {
                            from,
                            to,
                            instruments: n,
                        }
                    });
                }
            }
            if before != [self.ledger.is_taken_over(0), self.ledger.is_taken_over(1)] {
                upstream::sync(
                    &self.ledger,
                    &mut self.conns,
                    &mut self.history,
                    &self.events,
                    self.clock.now_micros(),
                    Action::Failover,
                );
            }
            let secs = self.clock.now_micros() / 1_000_000;
            self.status
                .on_timer(self.poll.registry(), now, secs, &self.stats);
            if now.duration_since(self.last_heartbeat) >= HEARTBEAT_EVERY {
                self.last_heartbeat = now;
                self.events.emit(crate::events::Event::Heartbeat {
                    received: self.stats.ticks_received(),
                    written: self.stats.lines_written(),
                });
            }
            if now.duration_since(last_log) >= Duration::from_secs(60) {
                let total = self.stats.ticks_received();
                tracing::info!(
                    "{} ticks in the last {} s; {} received, {} written",
                    total - last_count,
                    now.duration_since(last_log).as_secs(),
                    total,
                    self.stats.lines_written()
                );
                last_log = now;
                last_count = total;
            }
        }
        self.shutdown()
    }

    /// The hub's clients want a different set of instruments: subscribe,
    /// raise or release upstream (`auto_subscribe`).
    pub(super) fn serve_demand(&mut self) {
        let Some(link) = &self.link else {
            return;
        };
        let Some(wanted) = link.take_demand() else {
            return;
        };
        let up = std::array::from_fn(|i| self.conns[i].is_open());
        let modes = std::array::from_fn(|i| self.conns[i].mode());
        let rejected = self.ledger.hub_demand(&wanted, up, modes);
        upstream::sync(
            &self.ledger,
            &mut self.conns,
            &mut self.history,
            &self.events,
            self.clock.now_micros(),
            Action::Serve,
        );
        self.failover.refresh(&self.ledger);
        let s = &self.stats.serve;
        s.auto_subscribed
            .store(self.ledger.hub_only().len() as u64, Ordering::Relaxed);
        s.auto_rejected
            .fetch_add(rejected.len() as u64, Ordering::Relaxed);
        if !rejected.is_empty() {
            tracing::warn!(
                "hub: {} instrument(s) asked by clients do not fit upstream (3000 per connection): {:?}",
                rejected.len(),
                &rejected[..rejected.len().min(20)]
            );
        }
        link.reject(&rejected);
    }

    pub(super) fn shutdown(&mut self) -> Result<(), Shortfall> {
        let out = self.shut_down_parts();
        let (received, written) = (self.stats.ticks_received(), self.stats.lines_written());
        self.events.emit(crate::events::Event::ServiceStop {
            received,
            written,
            shortfall: out.as_ref().err().map(ToString::to_string),
        });
        // Last: the journal writes what every other part recorded.
        if let Some(j) = self.journal.take() {
            if !j.finish() {
                tracing::error!("the journal thread panicked");
            }
        }
        out
    }

    fn shut_down_parts(&mut self) -> Result<(), Shortfall> {
        let started = Instant::now();
        // Coverage ends here: what follows is the drain.
        self.events.emit(crate::events::Event::Stopping {
            reason: "stop requested (signal or control)".into(),
        });
        // The candle repair asks Kite nothing more; an export in progress
        // is cancelled (it is done again at the next start). Asked now,
        // joined after the writer: neither delays the drain.
        if let Some(r) = &self.repairer {
            r.request_stop();
        }
        #[cfg(feature = "parquet")]
        if let Some(x) = &self.exporter {
            x.request_stop();
        }
        // Clients first: they get a close frame; capture then drains.
        if let Some(h) = self.hub.take() {
            h.stop();
        }
        // The publisher winds down while the writer drains: what is in
        // flight gets up to 2 s to be acknowledged (only while a broker
        // answers); the rest waits in the daily files for the next start.
        #[cfg(feature = "kafka")]
        for p in &self.publisher {
            p.request_stop();
        }
        let mut stuck = 0;
        for c in &mut self.conns {
            stuck += c.shutdown(self.poll.registry(), SHUTDOWN_LIMIT);
        }
        let writer_ok = self.writer.take().is_none_or(Writer::finish);
        if let Some(r) = self.repairer.take() {
            r.stop();
        }
        #[cfg(feature = "parquet")]
        if let Some(x) = self.exporter.take() {
            x.stop();
        }
        #[cfg(feature = "kafka")]
        for p in self.publisher.drain(..) {
            p.stop();
        }
        let w = &self.stats.writer;
        let received = self.stats.ticks_received();
        let deduplicated = w.dedup_dropped.load(Ordering::Relaxed);
        let written = self.stats.lines_written();
        let saved = w.saved_lines.load(Ordering::Relaxed);
        if deduplicated > 0 {
            tracing::info!("hot standby: {deduplicated} second copies dropped");
        }
        if !writer_ok {
            return Err(Shortfall::Panicked("writer"));
        }
        if stuck > 0 || received != written + deduplicated {
            let saved_to = w.saved_to.lock().ok().and_then(|g| g.clone());
            let e = Shortfall::Unwritten {
                received,
                written,
                deduplicated,
                saved,
                saved_to,
                lost: received.saturating_sub(written + deduplicated + saved),
            };
            tracing::error!("stopped with a shortfall: {e}");
            return Err(e);
        }
        tracing::info!(
            "stopped in {} ms: {received} ticks received, all written",
            started.elapsed().as_millis()
        );
        Ok(())
    }
}
