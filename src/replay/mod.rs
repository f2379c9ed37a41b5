//! The replay feed: a Kite-compatible WebSocket server for demos, tests and
//! load tests (`tickcap replay`, and in-process behind `tickcap demo`).
//!
//! One acceptor thread and one thread per client connection (a load
//! generator is simplest and fastest with blocking sockets; the capture
//! engine is the one that must multiplex). Each session speaks the Kite
//! protocol: the upgrade with `api_key`/`access_token`, JSON
//! `subscribe`/`unsubscribe`/`mode`, binary messages of packets in each
//! instrument's mode, a 1-byte heartbeat every second.
//!
//! Kite's limits, and what a client gets past them (our choice, documented
//! in the README): a 4th concurrent connection for one API key is refused at
//! the upgrade with HTTP 429; subscribing past 3000 instruments on one
//! connection subscribes none of the excess and sends an `error` text frame
//! naming how many were refused.

mod history;
mod pacer;
pub mod recorded;
mod report;
mod session;
pub mod synthetic;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use pacer::Pacer;
pub use recorded::{read_recordings, BadLine, Record, Recording};
pub use report::{FaultCounts, Report};

use synthetic::Instrument;

/// Where ticks come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Random walks for whatever a client subscribes to, seeded.
    Synthetic {
        /// `--seed`.
        seed: u64,
    },
    /// Recorded tickcap JSONL.
    Recorded {
        /// The records, in file order.
        records: Arc<Vec<Record>>,
        /// Pace by recorded timestamps divided by this (0 = no pacing by
        /// time). Ignored when a `--rate` is set.
        speed: f64,
    },
}

/// Faults to inject; all off by default.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Drop each connection abruptly (no close frame) this long after it opened.
    pub drop_every: Option<Duration>,
    /// Every this long, go silent (no data, no heartbeat) ...
    pub stall_every: Option<Duration>,
    /// ... for this long.
    pub stall_for: Duration,
    /// After every N ticks of a connection, add a packet of no Kite layout.
    pub malformed_every: Option<u64>,
    /// Refuse the first N upgrades with HTTP 403, whatever the credentials.
    pub reject_auth: u64,
    /// Send an `error` text frame on each connection this often.
    pub error_every: Option<Duration>,
    /// Send an `order` postback text frame on each connection this often:
    /// the same text on every connection at the same count (`order_id`
    /// `replay-N`), as Kite sends one update to each of a key's sockets.
    pub order_every: Option<Duration>,
    /// Apply `drop_every` only to connections of this `api_key` (one path
    /// failing while another, e.g. a hot standby's, stays up).
    pub drop_only_key: Option<String>,
}

/// What a feed serves and how.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Tick source.
    pub source: Source,
    /// Total ticks per second over all connections; 0 = as fast as clients read.
    pub rate: u64,
    /// Stop emitting after this many ticks (heartbeats go on).
    pub count: Option<u64>,
    /// Required `api_key` (none = any).
    pub api_key: Option<String>,
    /// Required `access_token` (none = any).
    pub access_token: Option<String>,
    /// Fault injection.
    pub faults: Faults,
    /// Kite's limit of connections per API key.
    pub max_connections_per_key: usize,
    /// Kite's limit of instruments per connection.
    pub max_instruments: usize,
    /// Most packets in one binary message.
    pub max_batch: usize,
    /// Send each connection's due ticks once every this long, in as few
    /// messages as `max_batch` allows (Kite's documented shape: a binary
    /// message carries packets of many instruments); `None`: as soon as a
    /// tick is due (the pessimistic case: one or two packets a message).
    pub send_every: Option<Duration>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Synthetic source: every connection subscribed to an instrument gets
    /// the *same* ticks (as Kite broadcasts one exchange feed), each
    /// generated once; without it each tick goes to one connection.
    pub broadcast: bool,
    /// Synthetic source, an exchange: one clock generates ticks at `rate`
    /// for every instrument any connection has subscribed, whether or not
    /// that connection is up at the moment, and each tick goes to the
    /// connections subscribed at that instant (as with `broadcast`). A
    /// connection that is down misses ticks, and its volume sequence shows
    /// the gap. Needs `rate > 0`.
    pub market: bool,
    /// The exchange's clock (trade and exchange times; tests shift it with
    /// the capture's receive clock, e.g. to just before a minute).
    pub clock: crate::time::Clock,
}

impl ReplayConfig {
    /// The synthetic seed (or 0 for a recorded source): seeds fault timing too.
    pub fn seed(&self) -> u64 {
        match self.source {
            Source::Synthetic { seed } => seed,
            Source::Recorded { .. } => 0,
        }
    }

    /// A synthetic feed on `listen` at `rate` ticks/s with Kite's limits.
    pub fn synthetic(listen: SocketAddr, rate: u64) -> Self {
        ReplayConfig {
            listen,
            source: Source::Synthetic { seed: 1 },
            rate,
            count: None,
            api_key: None,
            access_token: None,
            faults: Faults::default(),
            max_connections_per_key: 3,
            max_instruments: 3000,
            max_batch: 512,
            send_every: None,
            heartbeat: Duration::from_secs(1),
            broadcast: false,
            market: false,
            clock: crate::time::Clock::system(),
        }
    }
}

/// Counters shared by the acceptor and the sessions.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    per_mode: [AtomicU64; 3],
    heartbeats: AtomicU64,
    accepted: AtomicU64,
    refused_auth: AtomicU64,
    refused_limit: AtomicU64,
    faults: report::FaultCounters,
    /// Historical-candle requests answered.
    history_served: AtomicU64,
    /// Historical-candle requests refused with 429 (over 3 a second).
    history_429: AtomicU64,
}

/// State shared by every thread of one feed.
#[derive(Debug)]
struct Shared {
    cfg: ReplayConfig,
    started: Instant,
    stop: AtomicBool,
    /// Emission halted (heartbeats go on): see [`Server::halt`].
    halted: AtomicBool,
    /// Sessions inside `build_batch` (between the halted check and counting
    /// what they built): [`Server::halt`] waits for zero.
    building: std::sync::atomic::AtomicUsize,
    pacer: Pacer,
    counters: Counters,
    /// Synthetic instruments, global so that a token's `volume_traded`
    /// sequence continues across connections (a failover keeps counting).
    instruments: Mutex<HashMap<u32, Instrument>>,
    /// Broadcast mode: each instrument's recent ticks, shared by all sessions.
    broadcast: Mutex<HashMap<u32, synthetic::Broadcast>>,
    /// Market mode: every instrument any connection has subscribed, in
    /// first-subscribed order (the exchange clock goes round them).
    market_tokens: Mutex<Vec<u32>>,
    /// Market mode: ticks the exchange generated.
    generated: AtomicU64,
    /// Last `volume_traded` sent per token (recorded source).
    last_volume: Mutex<HashMap<u32, u32>>,
    /// Ticks sent per connection number.
    per_connection: Mutex<Vec<(u32, Arc<AtomicU64>)>>,
    /// Open connections per API key.
    per_key: Mutex<HashMap<String, usize>>,
    next_connection: AtomicU32,
    handshakes: AtomicU64,
    /// The historical endpoint's rate window: (second since start, requests).
    history_window: Mutex<(u64, u32)>,
}

/// The exchange clock of a market feed: generates ticks at the feed's rate,
/// round-robin over every instrument ever subscribed, into the shared
/// broadcast logs the sessions forward from. Ends with the feed.
fn market_loop(sh: &Shared) {
    let Source::Synthetic { seed } = sh.cfg.source else {
        return;
    };
    let mut cursor = 0usize;
    while !sh.stop.load(Ordering::Relaxed) {
        sh.building.fetch_add(1, Ordering::SeqCst);
        let mut made = 0u64;
        if !sh.halted.load(Ordering::SeqCst) {
            let tokens = lock(&sh.market_tokens).clone();
            if !tokens.is_empty() {
                let granted = sh.pacer.claim(tokens.len() as u64 * 4);
                let now_secs = (sh.cfg.clock.now_micros() / 1_000_000).max(0) as u32;
                let mut logs = lock(&sh.broadcast);
                for _ in 0..granted {
                    let token = tokens[cursor % tokens.len()];
                    cursor = cursor.wrapping_add(1);
                    let log = logs
                        .entry(token)
                        .or_insert_with(|| synthetic::Broadcast::new(token, seed));
                    let head = log.head();
                    log.get(head, now_secs);
                }
                made = granted;
            }
        }
        sh.generated.fetch_add(made, Ordering::Relaxed);
        sh.building.fetch_sub(1, Ordering::SeqCst);
        if made == 0 {
            let nap = sh.pacer.next_due().unwrap_or(Duration::from_millis(20));
            std::thread::sleep(nap.clamp(Duration::from_micros(200), Duration::from_millis(20)));
        }
    }
}

/// Market mode: a session subscribes `token`; returns the sequence number
/// of the next tick the exchange will generate for it (what it gets first).
fn market_join(sh: &Shared, token: u32, seed: u64) -> u64 {
    {
        let mut tokens = lock(&sh.market_tokens);
        if !tokens.contains(&token) {
            tokens.push(token);
        }
    }
    lock(&sh.broadcast)
        .entry(token)
        .or_insert_with(|| synthetic::Broadcast::new(token, seed))
        .head()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking session must not take the feed down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running feed. Dropping it without [`Server::stop`] stops it too.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    acceptor: Option<JoinHandle<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Binds and starts accepting clients.
    pub fn start(cfg: ReplayConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            pacer: match cfg.send_every {
                Some(w) => Pacer::new(cfg.rate, cfg.count).with_backlog(w),
                None => Pacer::new(cfg.rate, cfg.count),
            },
            cfg,
            started: Instant::now(),
            stop: AtomicBool::new(false),
            halted: AtomicBool::new(false),
            building: std::sync::atomic::AtomicUsize::new(0),
            counters: Counters::default(),
            instruments: Mutex::new(HashMap::new()),
            broadcast: Mutex::new(HashMap::new()),
            market_tokens: Mutex::new(Vec::new()),
            generated: AtomicU64::new(0),
            last_volume: Mutex::new(HashMap::new()),
            per_connection: Mutex::new(Vec::new()),
            per_key: Mutex::new(HashMap::new()),
            next_connection: AtomicU32::new(1),
            handshakes: AtomicU64::new(0),
            history_window: Mutex::new((u64::MAX, 0)),
        });
        if shared.cfg.market {
            if shared.cfg.rate == 0 || !matches!(shared.cfg.source, Source::Synthetic { .. }) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a market feed needs the synthetic source and a rate above 0",
                ));
            }
            let sh = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("replay-market".into())
                .spawn(move || market_loop(&sh))?;
        }
        let sh = Arc::clone(&shared);
        let acceptor = std::thread::Builder::new()
            .name("replay-accept".into())
            .spawn(move || accept_loop(&sh, &listener))?;
        Ok(Server {
            shared,
            addr,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR` for this feed.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// The counters so far.
    pub fn report(&self) -> Report {
        report::build(&self.shared)
    }

    /// Whether `--count` is used up (emission over).
    pub fn count_reached(&self) -> bool {
        self.shared.pacer.exhausted()
    }

    /// Stops emitting ticks (connections stay open with heartbeats), so
    /// that a capture can be stopped with nothing in flight. Returns once no
    /// session is still building a message: from then on the report's
    /// `sent` is final.
    pub fn halt(&self) {
        self.shared.halted.store(true, Ordering::SeqCst);
        let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while self.shared.building.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::yield_now();
        }
    }

    /// Stops accepting, closes every connection and returns the final report.
    pub fn stop(mut self) -> Report {
        self.shutdown();
        report::build(&self.shared)
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            if let Ok(sessions) = a.join() {
                for s in sessions {
                    let _ = s.join();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) -> Vec<JoinHandle<()>> {
    let mut sessions: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let sh = Arc::clone(shared);
                match std::thread::Builder::new()
                    .name(format!("replay-{peer}"))
                    .spawn(move || session::serve(&sh, stream))
                {
                    Ok(h) => sessions.push(h),
                    Err(e) => tracing::error!("replay: cannot start a session thread: {e}"),
                }
                sessions.retain(|h| !h.is_finished());
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!("replay: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    sessions
}
