//! The capture engine: one event-loop thread (mio) driving the three Kite
//! connections, one pinned writer thread, and an SPSC ring per connection
//! between them.
//!
//! ```text
//!  mio::Poll ── conn 1 ─┐                     ┌─ tickcap-writer ─► market_data_YYYY-MM-DD.jsonl
//!            ── conn 2 ─┼─ rtrb ring each ───►│  (JSONL, 1 MiB writes, fsync policy, rotation)
//!            ── conn 3 ─┘                     └─
//!            ── waker (stop), signals (SIGINT/SIGTERM), timers (backoff, stale, resume)
//! ```
//!
//! The loop owns every socket; nothing on its per-tick path allocates or
//! locks. Shutdown (a signal or [`Engine::stop`]) stops reading, hands every
//! received tick to the rings, lets the writer drain, write and fsync, and
//! returns.

mod api;
mod event_loop;
#[cfg(feature = "parquet")]
pub mod exports;
pub mod failover;
pub mod history;
pub mod ledger;
pub mod reload;
pub mod repair;
pub mod symbols;
pub mod upstream;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};

use crate::config::Config;
use crate::net::{Connection, Context};
use crate::ring::{ring, Wake};
use crate::sink::files::{DailyFiles, DaySink};
use crate::sink::writer::{Writer, WriterConfig};
pub use crate::stats::Stats;
use crate::status::{Rates, Request, StatusPort};
pub use crate::time::Clock;
use crate::time::{Mono, ZoneFormatter};
use api::{route, View};
use failover::Failover;
use history::{Action, History};
use ledger::Ledger;

/// Tokens 0..3 are the Kite connections.
const WAKER: Token = Token(10);
const SIGNALS: Token = Token(11);
/// The status port's listener; its clients get tokens from `STATUS_CLIENT_TOKENS` up.
const STATUS_LISTENER: Token = Token(12);
const STATUS_CLIENT_TOKENS: usize = 100;
/// Timers run at most this often.
const TIMER_GRAIN: Duration = Duration::from_millis(1);
/// The loop wakes at least this often to run timers.
const MAX_POLL_WAIT: Duration = Duration::from_millis(250);
/// How long shutdown waits for the writer to take what the rings cannot hold.
const SHUTDOWN_LIMIT: Duration = Duration::from_millis(1500);

/// Things the engine cannot start without.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The event loop could not be set up.
    #[error("event loop: {0}")]
    Poll(#[source] std::io::Error),
    /// Signal handlers could not be installed.
    #[error("signal handlers: {0}")]
    Signals(#[source] std::io::Error),
    /// The data directory is unusable (a configuration error).
    #[error("storage.data_dir = {dir:?} cannot be used: {error}")]
    DataDir {
        /// The directory.
        dir: String,
        /// Why (shown once: not a `source`, so the chain does not repeat it).
        error: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start the {0} thread: {1}")]
    Thread(&'static str, #[source] std::io::Error),
    /// The time zone did not resolve (config validation normally catches it).
    #[error(transparent)]
    Zone(#[from] crate::time::UnknownZone),
    /// The serve port could not listen (a configuration error).
    #[error("serve.listen = \"{addr}\" cannot be used: {error}")]
    Serve {
        /// The address.
        addr: String,
        /// Why (shown once).
        error: std::io::Error,
    },
    /// `[kafka]` names a property librdkafka does not know, or a value it
    /// refuses (its own message).
    #[error("{0}")]
    Kafka(String),
    /// The configured instruments do not fit (config validation normally catches it).
    #[error(transparent)]
    Ledger(#[from] ledger::LedgerError),
    /// The status port could not listen (a configuration error).
    #[error("status.listen = \"{addr}\" cannot be used: {error}")]
    Status {
        /// The address.
        addr: String,
        /// Why (shown once).
        error: std::io::Error,
    },
}

impl EngineError {
    /// Whether the configuration is at fault (exit 2), not the machine.
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            EngineError::DataDir { .. }
                | EngineError::Status { .. }
                | EngineError::Serve { .. }
                | EngineError::Zone(_)
                | EngineError::Ledger(_)
                | EngineError::Kafka(_)
        )
    }
}

/// How a capture ended, when it did not end cleanly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Shortfall {
    /// A thread panicked.
    #[error("the {0} thread panicked")]
    Panicked(&'static str),
    /// Ticks were received but not written to the daily files.
    #[error("{received} ticks received, {written} written ({deduplicated} hot-standby copies dropped): {saved} saved to {}, {lost} lost", saved_to.as_deref().map_or_else(|| "no recovery file".to_owned(), |p| p.display().to_string()))]
    Unwritten {
        /// Ticks received.
        received: u64,
        /// Lines written.
        written: u64,
        /// Second copies dropped by dedup.
        deduplicated: u64,
        /// Lines saved to the recovery file.
        saved: u64,
        /// The recovery file.
        saved_to: Option<std::path::PathBuf>,
        /// Received and neither written nor saved.
        lost: u64,
    },
}

/// How to run the engine beyond its config.
pub struct Options {
    /// The receive clock.
    pub clock: Clock,
    /// The timers' monotonic clock (tests step it by hand).
    pub mono: Mono,
    /// Stop on SIGINT/SIGTERM (the `run` command); tests stop via [`Engine::stop`].
    pub handle_signals: bool,
    /// Where the writer's bytes go (default: the daily files in `data_dir`).
    pub sink: Option<Box<dyn DaySink>>,
    /// The config file, for SIGHUP and `POST /reload` (none: reload is refused).
    pub config_path: Option<std::path::PathBuf>,
    /// TLS settings for `wss://` (default: webpki roots; tests add their own CA).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Host name lookups (default: the system's; tests inject a hung one).
    pub resolver: Option<crate::net::conn::Resolver>,
    /// The instruments dump `tickcap run` obtained (symbols, daily refresh).
    pub dump: Option<crate::net::dump::Loaded>,
    /// Fault injection for tests: once this many records are acknowledged,
    /// librdkafka is told to raise a fatal producer error (once), as a
    /// broker that fences the idempotent producer would.
    pub kafka_fatal_after: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::system(),
            mono: Mono::system(),
            handle_signals: false,
            config_path: None,
            tls: None,
            sink: None,
            resolver: None,
            dump: None,
            kafka_fatal_after: None,
        }
    }
}

/// A running engine.
#[derive(Debug)]
pub struct Engine {
    stats: Arc<Stats>,
    thread: crate::thread::StoppableThread<Result<(), Shortfall>>,
    status_addr: Option<std::net::SocketAddr>,
    serve_addr: Option<std::net::SocketAddr>,
}

impl Engine {
    /// Starts the writer and the event loop.
    pub fn start(config: Config, mut opts: Options) -> Result<Engine, EngineError> {
        // Configuration librdkafka refuses is an error before anything starts.
        #[cfg(feature = "kafka")]
        if let Some(k) = &config.kafka {
            crate::publish::check_config(k).map_err(EngineError::Kafka)?;
        }
        let poll = Poll::new().map_err(EngineError::Poll)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(EngineError::Poll)?);
        let stats = Arc::new(Stats::default());
        stats
            .started_micros
            .store(opts.clock.now_micros(), Ordering::Relaxed);
        stats
            .credentials_loaded_micros
            .store(opts.clock.now_micros(), Ordering::Relaxed);
        let zone = ZoneFormatter::new(&config.storage.timezone)?;

        let sink = match opts.sink.take() {
            Some(s) => s,
            None => {
                let w = &stats.writer;
                Box::new(daily_files(
                    &config,
                    crate::days::Family::Ticks,
                    Arc::clone(&w.files_opened),
                    Arc::clone(&w.torn_repaired),
                )?) as Box<dyn DaySink>
            }
        };
        // Today's segment is opened (its torn tail repaired) before the
        // writer, the publisher or any other reader starts.
        let mut sink = sink;
        let today =
            ZoneFormatter::new(&config.storage.timezone)?.date_of_micros(opts.clock.now_micros());
        if let Err(error) = sink.prepare(today) {
            if error.kind() == std::io::ErrorKind::ResourceBusy {
                return Err(EngineError::DataDir {
                    dir: config.storage.data_dir.display().to_string(),
                    error,
                });
            }
            // A full or failing disk: the writer retries and reports it.
            tracing::error!("cannot open today's file yet: {error}; the writer keeps trying");
        }
        // The events journal and the order updates: the same lifecycle,
        // today's files opened (repaired) before anything reads them.
        let (events_tx, events_rx) = std::sync::mpsc::sync_channel(crate::events::CHANNEL_CAPACITY);
        let events = crate::events::Emitter::new(events_tx, opts.clock, Arc::clone(&stats));
        let journal = {
            let mut files = Vec::new();
            for family in [crate::days::Family::Events, crate::days::Family::Orders] {
                let mut f = daily_files(&config, family, Default::default(), Default::default())?;
                // The orders file appears with the first order update; an
                // existing one (a restart) is repaired now.
                let exists = !crate::days::segments_of_in(&config.storage.data_dir, family, today)
                    .is_empty();
                let prepared = if family == crate::days::Family::Orders && !exists {
                    Ok(())
                } else {
                    f.prepare(today)
                };
                if let Err(error) = prepared {
                    if error.kind() == std::io::ErrorKind::ResourceBusy {
                        return Err(EngineError::DataDir {
                            dir: config.storage.data_dir.display().to_string(),
                            error,
                        });
                    }
                    tracing::error!(
                        "cannot open today's {} file yet: {error}; the journal keeps trying",
                        family.prefix()
                    );
                }
                files.push(f);
            }
            let orders = files.pop().ok_or(EngineError::Thread(
                "journal",
                std::io::Error::other("no files"),
            ))?;
            let evs = files.pop().ok_or(EngineError::Thread(
                "journal",
                std::io::Error::other("no files"),
            ))?;
            let digest = match opts.config_path.as_deref() {
                Some(p) => crate::util::read_regular(p, 16 << 20)
                    .map(|b| crate::events::digest(&b))
                    .unwrap_or_else(|_| "unreadable".into()),
                None => crate::events::digest(format!("{config:?}").as_bytes()),
            };
            events.emit(crate::events::Event::ServiceStart {
                version: env!("CARGO_PKG_VERSION").to_owned(),
                config_digest: digest,
                pid: std::process::id(),
            });
            let scfg = crate::sink::side::SideConfig {
                zone: ZoneFormatter::new(&config.storage.timezone)?,
                fsync: config.storage.fsync,
                fsync_interval: Duration::from_millis(config.storage.fsync_interval_ms),
                flush_interval: Duration::from_millis(config.storage.flush_interval_ms),
                clock: opts.clock,
                start_day: today,
                shutdown_limit: Duration::from_millis(config.storage.shutdown_write_limit_ms),
            };
            let cfg2 = config.clone();
            let files_for: crate::sink::side::FilesFor = Box::new(move |family| {
                daily_files(&cfg2, family, Default::default(), Default::default())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            });
            crate::sink::side::Journal::spawn(
                scfg,
                events_rx,
                evs,
                orders,
                files_for,
                Arc::clone(&stats),
            )
            .map_err(|e| EngineError::Thread("journal", e))?
        };
        // Closed days to Parquet, behind capture in the scheduler.
        #[cfg(feature = "parquet")]
        let exporter = match &config.storage.export_closed_days {
            Some(dir) => Some(
                exports::Exporter::spawn(
                    exports::ExportConfig {
                        data_dir: config.storage.data_dir.clone(),
                        export_dir: dir.clone(),
                        zone: ZoneFormatter::new(&config.storage.timezone)?,
                        timezone: config.storage.timezone.clone(),
                        clock: opts.clock,
                    },
                    Arc::clone(&stats),
                )
                .map_err(|e| EngineError::Thread("export", e))?,
            ),
            None => None,
        };
        // The service's own candle repair, off the loop; reloads keep its
        // credentials current.
        let repair_source = config.candle_repair.as_ref().map(|_| {
            Arc::new(std::sync::Mutex::new(crate::net::history::Source::of(
                &config.dump,
            )))
        });
        let repairer = match (&config.candle_repair, &repair_source) {
            (Some(r), Some(source)) => {
                let intervals: Vec<_> = config
                    .candles
                    .iter()
                    .copied()
                    .filter(|i| *i != crate::candles::Interval::Day)
                    .collect();
                if intervals.is_empty() {
                    tracing::warn!("[candles] repair: no interval but day is built live; day bars are repaired by `tickcap candles repair --interval day` after the day");
                    None
                } else {
                    let rcfg = repair::RepairConfig {
                        data_dir: config.storage.data_dir.clone(),
                        zone: ZoneFormatter::new(&config.storage.timezone)?,
                        intervals,
                        delay: Duration::from_millis(r.delay_ms),
                        clock: opts.clock,
                        source: Arc::clone(source),
                    };
                    Some(
                        repair::Repairer::spawn(rcfg, events.clone(), Arc::clone(&stats))
                            .map_err(|e| EngineError::Thread("candle repair", e))?,
                    )
                }
            }
            _ => None,
        };
        let wake = Arc::new(Wake::default());
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let (p, c) = ring(config.ring_capacity);
            producers.push(p);
            consumers.push(c);
        }
        let mut wcfg = WriterConfig::new(
            zone,
            config.storage.fsync,
            Duration::from_millis(config.storage.flush_interval_ms),
        );
        wcfg.fsync_interval = Duration::from_millis(config.storage.fsync_interval_ms);
        wcfg.core = config.writer_core;
        wcfg.clock = opts.clock;
        wcfg.shutdown_write_limit = Duration::from_millis(config.storage.shutdown_write_limit_ms);
        wcfg.recovery_dirs = vec![config.storage.data_dir.clone(), std::env::temp_dir()];
        wcfg.start_day = Some(today);
        wcfg.events = events.clone();
        wcfg.candles = config.candles.clone();
        wcfg.dedup_window_micros = config
            .tertiary_mirror
            .then(|| config.dedup_window_ms as i64 * 1000);
        let writer = Writer::spawn(wcfg, consumers, sink, Arc::clone(&stats), Arc::clone(&wake))
            .map_err(|e| EngineError::Thread("writer", e))?;

        let ctx = Context {
            stats: Arc::clone(&stats),
            wake: Arc::clone(&wake),
            clock: opts.clock,
            mono: opts.mono.clone(),
            stale_after: Duration::from_millis(config.stale_after_ms),
            reconnect_max: Duration::from_millis(config.reconnect_max_ms),
            tls: opts.tls.clone(),
            resolver: opts
                .resolver
                .clone()
                .unwrap_or_else(crate::net::conn::system_resolver),
            events: events.clone(),
        };
        let mut conns: Vec<Connection> = config
            .connections
            .iter()
            .zip(producers)
            .enumerate()
            .map(|(i, (c, p))| {
                // Empty: the ledger owns what each connection carries, and
                // the first `upstream::sync` below gives it the config's
                // instruments (recorded in the journal like any change).
                let c = crate::config::ConnectionConfig {
                    instruments: Vec::new(),
                    ..c.clone()
                };
                Connection::new(c, Token(i), p, &ctx)
            })
            .collect();
        if config.tertiary_warm {
            conns[2].set_warm(true);
        }
        // The hub: a tee ring per connection, and its own thread.
        let (hub, link) = match &config.serve {
            None => (None, None),
            Some(sc) => {
                let signal = Arc::new(crate::ring::TeeSignal::default());
                let w = Arc::clone(&waker);
                let link = Arc::new(crate::serve::Link::new(
                    Arc::clone(&signal),
                    Box::new(move || {
                        let _ = w.wake();
                    }),
                ));
                let mut consumers = Vec::new();
                for c in &mut conns {
                    let (p, cons) = ring(config.ring_capacity);
                    c.set_tee(crate::ring::Tee::new(p, Arc::clone(&signal)));
                    consumers.push(cons);
                }
                let hcfg = crate::serve::HubConfig {
                    listen: sc.listen,
                    token: sc.token.as_ref().map(|t| t.expose().to_owned()),
                    max_clients: sc.max_clients,
                    send_queue_bytes: sc.send_queue_bytes,
                    heartbeat: Duration::from_secs(1),
                    auto_subscribe: sc.auto_subscribe,
                    dedup_window_micros: config
                        .tertiary_mirror
                        .then(|| config.dedup_window_ms as i64 * 1000),
                    clock: opts.clock,
                };
                let hub = crate::serve::Hub::start(
                    hcfg,
                    consumers,
                    Arc::clone(&link),
                    Arc::clone(&stats),
                )
                .map_err(|error| EngineError::Serve {
                    addr: sc.listen.to_string(),
                    error,
                })?;
                tracing::info!(
                    "serving Kite clients on ws://{}/ (point a KiteTicker's root URL there)",
                    hub.local_addr()
                );
                (Some(hub), Some(link))
            }
        };
        let serve_addr = hub.as_ref().map(crate::serve::Hub::local_addr);
        // One publisher per stream: the ticks, and the order updates when
        // `[kafka] orders_topic` is set.
        #[cfg(feature = "kafka")]
        let publisher = match &config.kafka {
            None => Vec::new(),
            Some(k) => {
                let mut v = Vec::new();
                let mut streams = vec![crate::publish::Stream::Ticks];
                if k.orders_topic.is_some() {
                    streams.push(crate::publish::Stream::Orders);
                }
                if k.candles_topic.is_some() {
                    streams.extend(
                        config
                            .candles
                            .iter()
                            .map(|i| crate::publish::Stream::Candles(*i)),
                    );
                }
                for stream in streams {
                    v.push(
                        crate::publish::Publisher::start_stream(
                            stream,
                            k.clone(),
                            config.storage.data_dir.clone(),
                            Arc::clone(&stats),
                            opts.clock,
                            opts.kafka_fatal_after,
                        )
                        .map_err(|e| EngineError::Thread("kafka", e))?,
                    );
                }
                v
            }
        };
        #[cfg(not(feature = "kafka"))]
        if config.kafka.is_some() {
            tracing::error!("[kafka] is configured but this tickcap was built without the `kafka` feature: nothing is published");
        }
        let signals = if opts.handle_signals {
            let mut s = signal_hook_mio::v1_0::Signals::new([
                signal_hook::consts::SIGINT,
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGHUP,
            ])
            .map_err(EngineError::Signals)?;
            poll.registry()
                .register(&mut s, SIGNALS, mio::Interest::READABLE)
                .map_err(EngineError::Signals)?;
            Some(s)
        } else {
            None
        };
        let listen = config.status_listen;
        let status = StatusPort::bind(
            listen,
            poll.registry(),
            STATUS_LISTENER,
            STATUS_CLIENT_TOKENS,
            Duration::from_millis(config.status_request_deadline_ms),
        )
        .map_err(|error| EngineError::Status {
            addr: config.status_listen.to_string(),
            error,
        })?;
        let status_addr = status.local_addr();
        if let Some(a) = status_addr {
            tracing::info!("status port on http://{a}/");
        }
        let mut history = History::default();
        let now = opts.clock.now_micros();
        for c in &config.connections {
            if !c.instruments.is_empty() {
                history.record(
                    now,
                    history::Action::Config,
                    c.role.connection_id(),
                    &c.instruments,
                    Some(c.mode),
                );
            }
        }
        let stats2 = Arc::clone(&stats);
        let zone2 = ZoneFormatter::new(&config.storage.timezone)?;
        let clock = opts.clock;
        let mono = opts.mono.clone();
        let config_path = opts.config_path.take();
        let dump = symbols::DumpState::new(&config, opts.dump.take());
        let failover = Failover::new(
            Duration::from_millis(config.failover_after_ms),
            !config.tertiary_mirror,
        );
        // The ledger owns who wants what; the connections' sets derive from it.
        let mut ledger = Ledger::new(config.tertiary_mirror);
        ledger.set_usable(std::array::from_fn(|i| {
            let c = &config.connections[i];
            !c.api_key.is_empty() && !c.access_token.expose().is_empty()
        }));
        ledger.set_config(
            std::array::from_fn(|i| config.connections[i].instruments.as_slice()),
            std::array::from_fn(|i| config.connections[i].mode),
        )?;
        if let Some(e) = dump.event(&config) {
            events.emit(e);
        }
        let mut no_history = History::default();
        upstream::sync(
            &ledger,
            &mut conns,
            &mut no_history,
            &events,
            now,
            Action::Config,
        );
        let wake = Arc::clone(&waker);
        let thread = crate::thread::StoppableThread::spawn("tickcap-loop", None, move |st| {
            let mut l = EventLoop {
                poll,
                conns,
                signals,
                stop: st,
                writer: Some(writer),
                stats: stats2,
                status,
                history,
                config,
                config_path,
                zone: zone2,
                clock,
                mono,
                failover,
                token_files: Vec::new(),
                token_checked: Instant::now(),
                dump,
                hub,
                link,
                ledger,
                released: Vec::new(),
                #[cfg(feature = "kafka")]
                publisher,
                events,
                journal: Some(journal),
                repairer,
                repair_source,
                #[cfg(feature = "parquet")]
                exporter,
                last_heartbeat: Instant::now(),
            };
            l.watch_token_files();
            l.run()
        })
        .map_err(|e| EngineError::Thread("event loop", e))?
        // Blocked in `poll`: the stop wakes it through its mio waker.
        .with_wake(move || {
            let _ = wake.wake();
        });
        Ok(Engine {
            stats,
            thread,
            status_addr,
            serve_addr,
        })
    }

    /// Where the status port listens.
    pub fn status_addr(&self) -> Option<std::net::SocketAddr> {
        self.status_addr
    }

    /// Where the serve port (the hub) listens, with `[serve]`.
    pub fn serve_addr(&self) -> Option<std::net::SocketAddr> {
        self.serve_addr
    }

    /// The live counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Whether the engine has stopped (after a signal).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Stops capture, drains everything received to disk, and waits; how
    /// it ended (also logged).
    pub fn stop(mut self) -> Result<(), Shortfall> {
        self.shutdown()
    }

    /// Waits until the engine stops by itself (a signal); how it ended.
    pub fn wait(mut self) -> Result<(), Shortfall> {
        self.join()
    }

    fn join(&mut self) -> Result<(), Shortfall> {
        Self::outcome(self.thread.join())
    }

    fn shutdown(&mut self) -> Result<(), Shortfall> {
        Self::outcome(self.thread.stop())
    }

    fn outcome(r: std::thread::Result<Option<Result<(), Shortfall>>>) -> Result<(), Shortfall> {
        match r {
            Ok(None) => Ok(()),
            Ok(Some(outcome)) => outcome,
            Err(_) => {
                tracing::error!("the event loop panicked");
                Err(Shortfall::Panicked("event loop"))
            }
        }
    }
}

struct EventLoop {
    poll: Poll,
    conns: Vec<Connection>,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    stop: crate::thread::StopFlag,
    writer: Option<Writer>,
    stats: Arc<Stats>,
    status: StatusPort,
    history: History,
    config: Config,
    config_path: Option<std::path::PathBuf>,
    zone: ZoneFormatter,
    clock: Clock,
    mono: Mono,
    failover: Failover,
    /// Token files to watch, with the modification time last seen.
    token_files: Vec<(std::path::PathBuf, Option<std::time::SystemTime>)>,
    /// When the token files were last checked.
    token_checked: Instant,
    /// The instruments dump in use and its daily refresh.
    dump: symbols::DumpState,
    /// The hub, with `[serve]`.
    hub: Option<crate::serve::Hub>,
    link: Option<Arc<crate::serve::Link>>,
    /// Who wants which instrument; every connection's set derives from it.
    ledger: Ledger,
    /// Hub-only instruments that gave way to the user's claims, to tell the hub.
    released: Vec<u32>,
    /// The Kafka publishers, with `[kafka]` (the ticks; the order updates
    /// with `orders_topic`).
    #[cfg(feature = "kafka")]
    publisher: Vec<crate::publish::Publisher>,
    /// The events journal.
    events: crate::events::Emitter,
    /// The journal thread (stopped last).
    journal: Option<crate::sink::side::Journal>,
    /// The candle repair thread (`[candles] repair = true`; stopped first).
    repairer: Option<repair::Repairer>,
    /// Its Kite credentials, kept current by reloads.
    repair_source: Option<Arc<std::sync::Mutex<crate::net::history::Source>>>,
    /// The closed days' Parquet export (`[storage] export_closed_days`).
    #[cfg(feature = "parquet")]
    exporter: Option<exports::Exporter>,
    /// When the last heartbeat event was written.
    last_heartbeat: Instant,
}

/// The daily files of `family` as the config says (directory, retention,
/// closed-day compression, zstd).
fn daily_files(
    config: &Config,
    family: crate::days::Family,
    opened: Arc<std::sync::atomic::AtomicU64>,
    repaired: Arc<std::sync::atomic::AtomicU64>,
) -> Result<DailyFiles, EngineError> {
    let dir = &config.storage.data_dir;
    let bad = |error| EngineError::DataDir {
        dir: dir.display().to_string(),
        error,
    };
    let files = DailyFiles::new(dir, opened, repaired)
        .map_err(bad)?
        .for_family(family)
        .with_retention(config.storage.retention_days);
    let files = match config.storage.compress_closed_days {
        Some(level) => files.with_closed_day_compression(level),
        None => files,
    };
    match config.storage.zstd_level {
        None => Ok(files),
        Some(level) => files.with_zstd(level).map_err(bad),
    }
}
