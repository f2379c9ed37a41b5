//! The hub: tickcap's live feed served to any number of Kite ticker
//! clients on `[serve] listen`, in Kite's own protocol, so that a program
//! using an official client points it at tickcap instead of Kite and
//! changes nothing else.
//!
//! ```text
//!  event loop ── conn 1..3 ──► writer rings (capture, lossless)
//!                         └──► tee rings ──► hub thread (mio) ──► client sockets
//!                                              │ demand (token → highest mode wanted)
//!                                              └──► event loop: upstream subscribe/mode (auto_subscribe)
//! ```
//!
//! **Capture first.** The hub runs on its own thread. The event loop copies
//! ticks into the tee rings only while the hub has clients, never waits on
//! them (a full tee ring drops the copy, counted; the hub then disconnects
//! its clients saying so rather than serve a feed with a hole), and never
//! reads a client socket. Each client has a bounded send queue; a client
//! that falls behind past it is disconnected with a close frame giving the
//! reason.
//!
//! **Protocol.** The upgrade carries `api_key` and `access_token` in the
//! query (the token is checked against `[serve] token` when set; 403
//! otherwise, 429 past `max_clients`), then binary messages of packets in
//! each client's mode (a full tick asked in quote mode is sent as a quote
//! packet), Kite's 1-byte heartbeat every second, `error` text frames for
//! bad requests, and upstream `order`/`message` text frames forwarded once.

pub mod client;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};
use tungstenite::protocol::frame::coding::CloseCode;

use crate::dedup::Dedup;
use crate::kite::{encode_packet, Mode, PacketKind, Tick};
use crate::ring::{Stamped, TeeSignal};
use crate::stats::{new_histogram, publish, ClientView, Disconnect, Stats};
use crate::time::Clock;
use client::{Client, Gate, Sent};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const CLIENT_BASE: usize = 16;
/// Messages read from one client per turn (fairness between clients).
const READ_BUDGET: usize = 32;
/// Ticks taken from the tee rings per turn before clients are served.
const DRAIN_BUDGET: usize = 16_384;
/// A client must finish its upgrade within this long.
const UPGRADE_DEADLINE: Duration = Duration::from_secs(10);
/// Sockets beyond `max_clients` whose upgrade may be in flight at once.
const UPGRADE_MARGIN: usize = 64;
/// Under load, rounds of fan-out at most this often: each round costs a
/// write per client (and a wake-up of each client), so at 100k ticks/s
/// fewer, fuller messages halve the hub's and the clients' CPU. Applies
/// only while the last round carried ≥ [`BUSY_PACKETS`] packets per client:
/// at ordinary rates every tick goes out at once.
const COALESCE: Duration = Duration::from_millis(1);
/// Packets per client per round above which rounds are coalesced.
const BUSY_PACKETS: usize = 16;
/// An upstream text frame seen again within this long is not forwarded again
/// (each of the three connections receives the same order update).
const TEXT_DEDUP: Duration = Duration::from_secs(10);

/// How the hub runs.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// The `access_token` clients must present, if any.
    pub token: Option<String>,
    /// Most clients at once.
    pub max_clients: usize,
    /// A client's send queue limit, bytes.
    pub send_queue_bytes: usize,
    /// Heartbeat period (Kite: 1 s).
    pub heartbeat: Duration,
    /// Publish what clients want, for the engine to subscribe upstream.
    pub auto_subscribe: bool,
    /// Hot standby: drop the second copy of each tick, as the writer does.
    pub dedup_window_micros: Option<i64>,
    /// The receive clock (latency).
    pub clock: Clock,
}

/// What the hub and the event loop share.
pub struct Link {
    /// The tee's wake-up, activity flag and upstream texts.
    pub signal: Arc<TeeSignal>,
    /// Token → highest mode any client wants (with `auto_subscribe`).
    demand: Mutex<BTreeMap<u32, Mode>>,
    demand_dirty: AtomicBool,
    /// Tokens the engine could not place upstream (no room).
    rejected: Mutex<Vec<u32>>,
    wake_engine: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl Link {
    /// A link that wakes the engine with `wake_engine` when demand changes.
    pub fn new(signal: Arc<TeeSignal>, wake_engine: Box<dyn Fn() + Send + Sync>) -> Self {
        Link {
            signal,
            demand: Mutex::new(BTreeMap::new()),
            demand_dirty: AtomicBool::new(false),
            rejected: Mutex::new(Vec::new()),
            wake_engine,
        }
    }

    /// The engine: the demand, if it changed since the last call.
    pub fn take_demand(&self) -> Option<BTreeMap<u32, Mode>> {
        self.demand_dirty.swap(false, Ordering::AcqRel).then(|| {
            self.demand
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    /// The engine: these tokens could not be subscribed upstream.
    pub fn reject(&self, tokens: &[u32]) {
        if tokens.is_empty() {
            return;
        }
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(tokens);
        self.signal.notify();
    }

    fn publish_demand(&self, d: BTreeMap<u32, Mode>) {
        *self.demand.lock().unwrap_or_else(PoisonError::into_inner) = d;
        self.demand_dirty.store(true, Ordering::Release);
        (self.wake_engine)();
    }

    fn take_rejected(&self) -> Vec<u32> {
        std::mem::take(&mut *self.rejected.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// How many clients want each token in each mode; the highest mode wanted
/// is what the engine must capture.
#[derive(Debug, Default)]
pub struct Demand {
    counts: HashMap<u32, [u32; 3]>,
    changed: bool,
}

fn rank(m: Mode) -> usize {
    match m {
        Mode::Ltp => 0,
        Mode::Quote => 1,
        Mode::Full => 2,
    }
}

const MODES: [Mode; 3] = [Mode::Ltp, Mode::Quote, Mode::Full];

impl Demand {
    /// One client's subscription changed from `old` to `new`.
    pub fn change(&mut self, token: u32, old: Option<Mode>, new: Option<Mode>) {
        let before = self.highest(token);
        if let Some(m) = old {
            if let Some(c) = self.counts.get_mut(&token) {
                c[rank(m)] = c[rank(m)].saturating_sub(1);
                if *c == [0, 0, 0] {
                    self.counts.remove(&token);
                }
            }
        }
        if let Some(m) = new {
            self.counts.entry(token).or_default()[rank(m)] += 1;
        }
        self.changed |= before != self.highest(token);
    }

    /// The highest mode any client wants `token` in.
    pub fn highest(&self, token: u32) -> Option<Mode> {
        let c = self.counts.get(&token)?;
        (0..3).rev().find(|&i| c[i] > 0).map(|i| MODES[i])
    }

    /// Token → highest mode, if anything changed since the last call.
    pub fn take_changed(&mut self) -> Option<BTreeMap<u32, Mode>> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        Some(
            self.counts
                .keys()
                .filter_map(|&t| Some((t, self.highest(t)?)))
                .collect(),
        )
    }
}

/// The mode a packet kind carries.
fn mode_of(kind: PacketKind) -> Mode {
    match kind {
        PacketKind::Ltp => Mode::Ltp,
        PacketKind::IndexQuote | PacketKind::Quote => Mode::Quote,
        PacketKind::IndexFull | PacketKind::Full => Mode::Full,
    }
}

/// Encodes `tick` as a client in `mode` receives it into `out` (cleared):
/// the packet as captured when the mode is at or above it, else the
/// poorer layout. Pure: the per-client filtering bench runs it.
#[inline]
pub fn encode_for(tick: &Tick, mode: Mode, out: &mut Vec<u8>) {
    out.clear();
    if rank(mode) >= rank(mode_of(tick.kind)) {
        encode_packet(tick, out);
    } else {
        encode_packet(&tick.in_mode(mode), out);
    }
}

/// Puts the hub thread behind capture in the scheduler: SCHED_BATCH (a
/// woken hub does not preempt the event loop or the writer mid-frame) at
/// nice 10 (when the cores are busy, capture runs first). Clients are
/// served with what capture leaves; measured in docs/performance.md.
fn yield_to_capture() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on the calling thread with valid arguments;
    // failure only leaves the default policy, which is logged.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        let tid = libc::gettid();
        let batch = libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
        let nice = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10);
        if batch != 0 || nice != 0 {
            tracing::debug!("hub: could not lower its scheduling priority");
        }
    }
}

/// The running hub.
#[derive(Debug)]
pub struct Hub {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl Hub {
    /// Binds the serve port and starts the hub thread, fed by `consumers`
    /// (one tee ring per connection).
    pub fn start(
        cfg: HubConfig,
        consumers: Vec<rtrb::Consumer<Stamped>>,
        link: Arc<Link>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Hub> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cfg.listen)?;
        let addr = listener.local_addr()?;
        let _ = stats.serve.listen.set(addr);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        link.signal.set_waker(Arc::clone(&waker));
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("tickcap-hub".into())
            .spawn(move || {
                yield_to_capture();
                let mut h = HubLoop {
                    dedup: cfg.dedup_window_micros.map(Dedup::new),
                    cfg,
                    poll,
                    listener,
                    clients: Vec::new(),
                    consumers,
                    link,
                    stats,
                    stop: st,
                    demand: Demand::default(),
                    subscribers: HashMap::new(),
                    scratch: [Vec::new(), Vec::new(), Vec::new()],
                    hist: new_histogram(),
                    recent_texts: VecDeque::new(),
                    touched: Vec::new(),
                    overflow_seen: 0,
                    views_dirty: false,
                    client_log: crate::util::LogLimit::new(20, Duration::from_secs(10)),
                    last_round_packets: 0,
                };
                h.run();
            })?;
        Ok(Hub {
            stop,
            waker,
            thread: Some(thread),
            addr,
        })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every client ("going away") and stops the thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                tracing::error!("the hub thread panicked");
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct HubLoop {
    cfg: HubConfig,
    poll: Poll,
    listener: TcpListener,
    /// Slot i is mio token CLIENT_BASE + i.
    clients: Vec<Option<Client>>,
    consumers: Vec<rtrb::Consumer<Stamped>>,
    link: Arc<Link>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    demand: Demand,
    /// Token → (client slot, mode) of every client subscribed to it.
    subscribers: HashMap<u32, Vec<(usize, Mode)>>,
    /// One encoding per mode of the tick being fanned out.
    scratch: [Vec<u8>; 3],
    dedup: Option<Dedup>,
    hist: Histogram<u64>,
    recent_texts: VecDeque<(u64, Instant)>,
    /// Clients with a batch started this turn.
    touched: Vec<usize>,
    overflow_seen: u64,
    /// A client came or went: publish the views at the end of the turn.
    views_dirty: bool,
    /// Client connects and disconnects are driven from outside: a few
    /// log lines per window, the rest counted (like the feed's texts).
    client_log: crate::util::LogLimit,
    /// Packets added to client batches in the last round.
    last_round_packets: usize,
}

/// ` (N similar lines not logged)` when the log limit held some back.
fn skipped_note(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" ({skipped} similar client lines not logged)")
    }
}

impl HubLoop {
    fn run(&mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_beat = Instant::now() + self.cfg.heartbeat;
        let mut next_publish = Instant::now();
        let mut last_round = Instant::now();
        loop {
            let ticks_waiting = self.consumers.iter().any(|c| !c.is_empty());
            let busy = ticks_waiting
                || self
                    .clients
                    .iter()
                    .flatten()
                    .any(|c| c.more_to_read || c.wants_write());
            let open = self.open_clients().max(1);
            let coalesce_until = (ticks_waiting && self.last_round_packets >= BUSY_PACKETS * open)
                .then(|| last_round + COALESCE)
                .filter(|t| *t > Instant::now());
            let wait = if let Some(t) = coalesce_until {
                t.saturating_duration_since(Instant::now())
            } else if busy {
                Duration::ZERO
            } else {
                self.link.signal.going_to_sleep();
                // Re-check after announcing sleep (see TeeSignal).
                if self.consumers.iter().any(|c| !c.is_empty()) {
                    Duration::ZERO
                } else {
                    next_beat
                        .min(next_publish)
                        .saturating_duration_since(Instant::now())
                }
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(
                        "hub: poll failed: {e}; the serve port stops (capture goes on)"
                    );
                    break;
                }
            }
            self.link.signal.awake();
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let i = t - CLIENT_BASE;
                        if ev.is_writable() {
                            if let Some(Some(c)) = self.clients.get_mut(i) {
                                c.writable();
                            }
                        }
                        if ev.is_readable() || ev.is_writable() {
                            self.on_client(i);
                        }
                    }
                }
            }
            for i in 0..self.clients.len() {
                if self.clients[i].as_ref().is_some_and(|c| c.more_to_read) {
                    self.on_client(i);
                }
            }
            self.check_overflow();
            if coalesce_until.is_some_and(|t| Instant::now() < t) {
                // Woken early by a client socket: serve it, keep ticks for the round.
                self.flush_all();
                continue;
            }
            last_round = Instant::now();
            self.drain();
            self.forward_texts();
            self.apply_rejected();
            let now = Instant::now();
            if now >= next_beat {
                next_beat = now + self.cfg.heartbeat;
                self.heartbeats(now);
            }
            self.flush_all();
            if let (true, Some(d)) = (self.cfg.auto_subscribe, self.demand.take_changed()) {
                self.link.publish_demand(d);
            }
            if now >= next_publish || std::mem::take(&mut self.views_dirty) {
                next_publish = now + Duration::from_secs(1);
                self.publish();
            }
        }
        for i in 0..self.clients.len() {
            self.remove(i, CloseCode::Away, "tickcap is shutting down");
        }
        self.publish();
    }

    fn open_clients(&self) -> usize {
        self.clients
            .iter()
            .flatten()
            .filter(|c| c.is_open())
            .count()
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, peer) = match self.listener.accept() {
                Ok(x) => x,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!("hub: accept failed: {e}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let slot = match self.clients.iter().position(Option::is_none) {
                Some(i) => i,
                None => {
                    // Beyond max_clients + a margin of upgrades in flight:
                    // the oldest incomplete upgrade makes room (half-open
                    // sockets must not keep real clients out); a completed
                    // client is never evicted for a newcomer. With none
                    // incomplete, close at once (the 429 needs a slot).
                    if self.clients.len() >= self.cfg.max_clients + UPGRADE_MARGIN {
                        match self.oldest_upgrade() {
                            Some(i) => {
                                self.drop_upgrade(i);
                                self.stats
                                    .serve
                                    .upgrades_evicted
                                    .fetch_add(1, Ordering::Relaxed);
                                i
                            }
                            None => {
                                drop(stream);
                                self.stats
                                    .serve
                                    .refused_full
                                    .fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        }
                    } else {
                        self.clients.push(None);
                        self.clients.len() - 1
                    }
                }
            };
            if let Err(e) = self.poll.registry().register(
                &mut stream,
                Token(CLIENT_BASE + slot),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                tracing::warn!("hub: cannot register {peer}: {e}");
                continue;
            }
            let gate = Gate {
                token: self.cfg.token.clone(),
                full: self.open_clients() >= self.cfg.max_clients,
                stats: Arc::clone(&self.stats),
                api_key: Default::default(),
            };
            match Client::accept(stream, peer.to_string(), gate, self.cfg.clock.now_micros()) {
                Ok(mut c) => {
                    c.queue_limit = self.cfg.send_queue_bytes;
                    let open = c.is_open();
                    self.clients[slot] = Some(c);
                    if open {
                        self.opened(slot);
                    }
                }
                Err(e) => tracing::debug!("hub: {peer}: {e}"),
            }
        }
    }

    fn opened(&mut self, slot: usize) {
        self.stats.serve.accepted.fetch_add(1, Ordering::Relaxed);
        self.stats.serve.clients.fetch_add(1, Ordering::Relaxed);
        self.link.signal.active.store(true, Ordering::SeqCst);
        self.views_dirty = true;
        if let Some(c) = &self.clients[slot] {
            if let Some(skipped) = self.client_log.allow(Instant::now()) {
                tracing::info!(
                    "hub: client {} connected (api_key {:?}){}",
                    c.peer,
                    crate::util::log_text(&c.api_key.borrow(), 64),
                    skipped_note(skipped)
                );
            }
        }
    }

    fn on_client(&mut self, i: usize) {
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        if !c.is_open() {
            match c.continue_upgrade() {
                Ok(()) if c.is_open() => self.opened(i),
                Ok(()) => {
                    if c.accepted.elapsed() > UPGRADE_DEADLINE {
                        self.drop_upgrade(i);
                    }
                    return;
                }
                Err(e) => {
                    tracing::debug!("hub: {}: {e}", c.peer);
                    self.drop_upgrade(i);
                    return;
                }
            }
        }
        let Some(Some(c)) = self.clients.get_mut(i) else {
            return;
        };
        let r = c.read(READ_BUDGET, &self.stats);
        for (t, old, new) in r.changes {
            self.demand.change(t, old, new);
            let list = self.subscribers.entry(t).or_default();
            list.retain(|(s, _)| *s != i);
            if let Some(m) = new {
                list.push((i, m));
            }
            if list.is_empty() {
                self.subscribers.remove(&t);
            }
        }
        if let Some(why) = r.ended {
            let code = if r.protocol_error {
                CloseCode::Protocol
            } else {
                CloseCode::Normal
            };
            self.remove(i, code, &why);
        }
    }

    /// The slot of the incomplete upgrade accepted longest ago.
    fn oldest_upgrade(&self) -> Option<usize> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().filter(|c| !c.is_open()).map(|c| (i, c.accepted)))
            .min_by_key(|(_, at)| *at)
            .map(|(i, _)| i)
    }

    fn drop_upgrade(&mut self, i: usize) {
        if let Some(mut c) = self.clients[i].take() {
            if let Some(s) = c.stream() {
                let _ = self.poll.registry().deregister(s);
            }
        }
    }

    /// Ends client `i`: a close frame with `reason`, its subscriptions
    /// released, the reason recorded.
    fn remove(&mut self, i: usize, code: CloseCode, reason: &str) {
        let Some(mut c) = self.clients.get_mut(i).and_then(Option::take) else {
            return;
        };
        if !c.is_open() {
            if let Some(s) = c.stream() {
                let _ = self.poll.registry().deregister(s);
            }
            return;
        }
        c.close(code, reason);
        if let Some(s) = c.stream() {
            let _ = self.poll.registry().deregister(s);
        }
        for (t, m) in c.subs.drain() {
            self.demand.change(t, Some(m), None);
            if let Some(list) = self.subscribers.get_mut(&t) {
                list.retain(|(s, _)| *s != i);
                if list.is_empty() {
                    self.subscribers.remove(&t);
                }
            }
        }
        self.views_dirty = true;
        let s = &self.stats.serve;
        let left = s.clients.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        if left == 0 {
            self.link.signal.active.store(false, Ordering::SeqCst);
        }
        if let Some(skipped) = self.client_log.allow(Instant::now()) {
            tracing::info!(
                "hub: client {} disconnected: {} ({} ticks sent){}",
                c.peer,
                crate::util::log_text(reason, 200),
                c.ticks_sent,
                skipped_note(skipped)
            );
        }
        let mut d = s.disconnects.lock().unwrap_or_else(PoisonError::into_inner);
        if d.len() == 50 {
            d.pop_front();
        }
        d.push_back(Disconnect {
            address: c.peer.clone(),
            at_micros: self.cfg.clock.now_micros(),
            reason: reason.to_owned(),
            ticks_sent: c.ticks_sent,
        });
    }

    /// A tee ring overflowed: the clients' feed has a hole. Tell them
    /// (close 1013, try again) rather than serve it silently.
    fn check_overflow(&mut self) {
        let n = self.link.signal.overflowed.load(Ordering::Relaxed);
        if n == self.overflow_seen {
            return;
        }
        let lost = n - self.overflow_seen;
        self.overflow_seen = n;
        self.stats.serve.ring_overflows.store(n, Ordering::Relaxed);
        tracing::warn!("hub: fell behind, {lost} ticks not copied to it (capture has them all); disconnecting its clients");
        let reason = format!("tickcap's hub fell behind ({lost} ticks not delivered); reconnect");
        for i in 0..self.clients.len() {
            self.remove(i, CloseCode::Again, &reason);
        }
    }

    /// Takes ticks from the tee rings and adds each to the batch of every
    /// client subscribed to it, in its mode.
    fn drain(&mut self) {
        let mut taken = 0;
        for k in 0..self.consumers.len() {
            while taken < DRAIN_BUDGET {
                let Ok(st) = self.consumers[k].pop() else {
                    break;
                };
                taken += 1;
                if let Some(d) = &mut self.dedup {
                    if !d.keep(&st) {
                        continue;
                    }
                }
                let Some(list) = self.subscribers.get(&st.tick.instrument_token) else {
                    continue;
                };
                let mut encoded = [false; 3];
                for &(slot, mode) in list {
                    let r = rank(mode);
                    if !encoded[r] {
                        encode_for(&st.tick, mode, &mut self.scratch[r]);
                        encoded[r] = true;
                    }
                    let Some(Some(c)) = self.clients.get_mut(slot) else {
                        continue;
                    };
                    if c.push_packet(&self.scratch[r], st.recv_micros) {
                        c.finish_batch();
                    }
                    self.touched.push(slot);
                }
            }
        }
        self.last_round_packets = self.touched.len();
        self.touched.sort_unstable();
        self.touched.dedup();
        for &slot in &self.touched {
            if let Some(Some(c)) = self.clients.get_mut(slot) {
                c.finish_batch();
            }
        }
        self.touched.clear();
    }

    fn forward_texts(&mut self) {
        let texts = self.link.signal.take_texts();
        if texts.is_empty() {
            return;
        }
        let now = Instant::now();
        while self
            .recent_texts
            .front()
            .is_some_and(|(_, at)| now.duration_since(*at) > TEXT_DEDUP)
        {
            self.recent_texts.pop_front();
        }
        for (_, text) in texts {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            text.hash(&mut h);
            let h = h.finish();
            if self.recent_texts.iter().any(|(x, _)| *x == h) {
                continue;
            }
            if self.recent_texts.len() == 256 {
                self.recent_texts.pop_front();
            }
            self.recent_texts.push_back((h, now));
            self.stats
                .serve
                .texts_forwarded
                .fetch_add(1, Ordering::Relaxed);
            for c in self.clients.iter_mut().flatten().filter(|c| c.is_open()) {
                c.send_text(text.clone());
            }
        }
    }

    /// Tokens the engine had no room for: the clients that asked get Kite's
    /// words and lose the subscription.
    fn apply_rejected(&mut self) {
        let rejected = self.link.take_rejected();
        if rejected.is_empty() {
            return;
        }
        let mut told = vec![false; self.clients.len()];
        for t in rejected {
            let Some(list) = self.subscribers.remove(&t) else {
                continue;
            };
            for (slot, m) in list {
                self.demand.change(t, Some(m), None);
                if let Some(Some(c)) = self.clients.get_mut(slot) {
                    c.subs.remove(&t);
                    if !told[slot] {
                        told[slot] = true;
                        c.send_text(client::error_text(client::TOO_MANY));
                    }
                }
            }
        }
    }

    fn heartbeats(&mut self, now: Instant) {
        for i in 0..self.clients.len() {
            let Some(c) = &mut self.clients[i] else {
                continue;
            };
            if c.is_open() {
                c.heartbeat();
            } else if now.duration_since(c.accepted) > UPGRADE_DEADLINE {
                self.drop_upgrade(i);
            }
        }
    }

    /// Writes to every client that has something and a writable socket;
    /// disconnects the ones past their queue limit.
    fn flush_all(&mut self) {
        let now = self.cfg.clock.now_micros();
        let limit = self.cfg.send_queue_bytes;
        for i in 0..self.clients.len() {
            let Some(c) = &mut self.clients[i] else {
                continue;
            };
            let (hist, serve) = (&mut self.hist, &self.stats.serve);
            let r = if c.wants_write() {
                c.pump(|s: Sent, bytes| {
                    if bytes > 0 {
                        serve.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
                    }
                    if s.ticks > 0 {
                        serve.messages_sent.fetch_add(1, Ordering::Relaxed);
                        serve.ticks_sent.fetch_add(s.ticks, Ordering::Relaxed);
                        let _ = hist.record_n((now - s.oldest_micros).max(1) as u64, s.ticks);
                    }
                })
            } else {
                Ok(())
            };
            let queued = c.queued;
            match r {
                Err(e) => self.remove(i, CloseCode::Error, &e),
                Ok(()) if queued > limit || c.over_limit => {
                    self.stats
                        .serve
                        .dropped_slow
                        .fetch_add(1, Ordering::Relaxed);
                    self.remove(
                        i,
                        CloseCode::Policy,
                        &format!(
                            "too slow: {} KiB waiting, past the {} KiB send queue",
                            queued / 1024,
                            limit / 1024
                        ),
                    );
                }
                Ok(()) => {}
            }
        }
    }

    fn publish(&mut self) {
        publish(&self.stats.latency.receive_to_client_us, &self.hist);
        let views: Vec<ClientView> = self
            .clients
            .iter()
            .flatten()
            .filter(|c| c.is_open())
            .map(|c| {
                let mut subscriptions: Vec<(u32, &'static str)> =
                    c.subs.iter().map(|(t, m)| (*t, m.as_str())).collect();
                subscriptions.sort_unstable();
                ClientView {
                    address: c.peer.clone(),
                    connected_micros: c.since_micros,
                    api_key: c.api_key.borrow().clone(),
                    subscriptions,
                    ticks_sent: c.ticks_sent,
                    bytes_sent: c.bytes_sent,
                    queued_bytes: c.queued as u64,
                    bad_requests: c.bad_requests,
                }
            })
            .collect();
        // Never wait on a /clients reader; a busy lock means try again on
        // the next turn (not a second later).
        match self.stats.serve.clients_view.try_lock() {
            Ok(mut g) => *g = views,
            Err(_) => self.views_dirty = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_is_the_highest_mode_any_client_wants() {
        let mut d = Demand::default();
        d.change(256, None, Some(Mode::Quote));
        d.change(256, None, Some(Mode::Full));
        assert_eq!(d.take_changed().unwrap()[&256], Mode::Full);
        assert!(d.take_changed().is_none(), "no change, nothing to publish");
        d.change(256, Some(Mode::Full), None);
        assert_eq!(d.take_changed().unwrap()[&256], Mode::Quote);
        d.change(256, Some(Mode::Quote), Some(Mode::Quote));
        assert!(d.take_changed().is_none());
        d.change(256, Some(Mode::Quote), None);
        assert!(d.take_changed().unwrap().is_empty(), "the last one left");
    }

    #[test]
    fn a_client_gets_the_packet_of_its_mode() {
        let mut full = Tick::new(PacketKind::Full, 408_065);
        full.last_price = 150_000;
        full.volume_traded = 77;
        let mut out = Vec::new();
        encode_for(&full, Mode::Full, &mut out);
        assert_eq!(out.len(), 184);
        encode_for(&full, Mode::Quote, &mut out);
        assert_eq!(out.len(), 44);
        let back = crate::kite::decode_packet(&out, 0).unwrap();
        assert_eq!((back.last_price, back.volume_traded), (150_000, 77));
        encode_for(&full, Mode::Ltp, &mut out);
        assert_eq!(out.len(), 8);
        // A quote tick for a full subscriber (upgrade in flight): as captured.
        let quote = Tick::new(PacketKind::Quote, 408_065);
        encode_for(&quote, Mode::Full, &mut out);
        assert_eq!(out.len(), 44);
    }
}
