//! One Kite connection as a state machine driven by the event loop:
//!
//! ```text
//!   Idle ──(has instruments)──► Connecting ──writable──► Handshaking ──101──► Open
//!     ▲                            │  timeout/error          │ 403: AuthFailed   │ close, error,
//!     │                            ▼                         ▼                   ▼ stale (no frame 5 s)
//!     └──(no instruments)──── Backoff ◄──────────────────────┴───────────────────┘
//! ```
//!
//! Transitions take the state by value (`std::mem::replace`), so a socket
//! lives in exactly one state. On open, every desired instrument is
//! subscribed and set to its mode (batched); on every reconnect, again.
//! Frames are decoded straight from tungstenite's payload into
//! [`Stamped`] values pushed into this connection's ring; when the ring is
//! full the rest waits in `overflow` and the socket is not read until the
//! writer makes room (the kernel buffers the bytes). Nothing received is
//! dropped.

use std::collections::{BTreeMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::ClientHandshake;
use tungstenite::handshake::MidHandshake;
use tungstenite::{HandshakeError, Message, WebSocket};

use super::stream::{wrap, WireStream};
use super::Backoff;
use crate::config::{ConnectionConfig, Role};
use crate::kite::{parse_text, ClientRequest, Mode, TextFrame};
use crate::ring::{push_frame, Stamped, Wake};
use crate::stats::{new_histogram, publish, ConnStats, StateName, Stats};
use crate::time::{Clock, Mono};
use crate::util::{log_text, LogLimit};

mod read;
mod resolve;
mod subscribe;

use resolve::Lookup;
pub use resolve::{system_resolver, Resolver};
pub use subscribe::subscription_requests;

/// Longest remote text in one log line, characters.
const LOG_TEXT_MAX: usize = 300;

/// A connect or upgrade that takes longer than this is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An open connection that has kept delivering frames this long has proven
/// healthy: only then does the reconnect backoff start again from its base
/// (a feed that accepts and then breaks each connection keeps backing off).
pub const HEALTHY_AFTER: Duration = Duration::from_secs(5);
/// Most frames (data, heartbeat, text, ping, pong, close alike) read from
/// one socket per loop turn; then the other sockets, the timers and the
/// status port get theirs. A socket that always has data (a ping flood, a
/// burst) cannot hold the loop.
pub const FRAME_BUDGET: u32 = 64;
/// Most payload bytes read from one socket per loop turn.
pub const BYTE_BUDGET: usize = 1 << 20;
/// How often the receive→ring histogram is copied for readers.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

type Mid = MidHandshake<ClientHandshake<WireStream>>;

/// Where a connection is in its life.
pub enum ConnState {
    /// Not connected on purpose (nothing to subscribe).
    Idle,
    /// Waiting to retry.
    Backoff {
        /// When to retry.
        until: Instant,
        /// Whether the last attempt was refused for credentials.
        auth: bool,
    },
    /// DNS lookup in flight on a resolver thread (never on the loop).
    Resolving {
        /// Host name (TLS SNI).
        host: String,
        /// `wss://`.
        tls: bool,
        /// Started (the connect timeout counts from here).
        since: Instant,
    },
    /// TCP connect in flight.
    Connecting {
        /// The socket.
        tcp: TcpStream,
        /// Host name (TLS SNI).
        host: String,
        /// `wss://`.
        tls: bool,
        /// Started.
        since: Instant,
    },
    /// TLS/WebSocket upgrade in flight.
    Handshaking {
        /// The interrupted handshake.
        mid: Box<Mid>,
        /// Started (at connect).
        since: Instant,
    },
    /// Streaming.
    Open {
        /// The socket.
        ws: Box<WebSocket<WireStream>>,
        /// Opened.
        since: Instant,
    },
    /// Shut down for good.
    Closed,
}

impl std::fmt::Debug for ConnState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name().as_str())
    }
}

impl ConnState {
    fn name(&self) -> StateName {
        match self {
            ConnState::Idle => StateName::Idle,
            ConnState::Backoff { auth: true, .. } => StateName::AuthFailed,
            ConnState::Backoff { .. } => StateName::Backoff,
            ConnState::Resolving { .. } | ConnState::Connecting { .. } => StateName::Connecting,
            ConnState::Handshaking { .. } => StateName::Handshaking,
            ConnState::Open { .. } => StateName::Open,
            ConnState::Closed => StateName::Closed,
        }
    }
}

/// Why a connection attempt or an open connection ended: kept as the
/// connection's last error and shown on `/connections` as the reason it is
/// backing off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// HTTP 401/403 at the upgrade: bad or expired credentials.
    #[error("Kite refused the credentials (HTTP {0})")]
    Auth(u16),
    /// The URL does not name a host.
    #[error("bad url: {0}")]
    BadUrl(String),
    /// DNS found no address.
    #[error("cannot resolve {host}: {message}")]
    Resolve {
        /// The host name.
        host: String,
        /// The resolver's message.
        message: String,
    },
    /// TCP connect failed.
    #[error("connect: {0}")]
    Connect(String),
    /// Neither connected nor upgraded in time.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// TLS setup failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The WebSocket upgrade failed (not 401/403).
    #[error("upgrade: {0}")]
    Upgrade(String),
    /// The server closed the connection.
    #[error("closed by server ({0})")]
    Closed(String),
    /// Reading failed (reset, protocol error).
    #[error("read: {0}")]
    Read(String),
    /// Writing failed.
    #[error("write: {0}")]
    Write(String),
    /// No frame, not even a heartbeat, for this many ms.
    #[error("stale: no frame (not even a heartbeat) for {0} ms")]
    Stale(u64),
}

impl ConnError {
    /// Its kind as the events journal names it.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnError::Auth(_) => "auth",
            ConnError::BadUrl(_) => "bad_url",
            ConnError::Resolve { .. } => "resolve",
            ConnError::Connect(_) => "connect",
            ConnError::Timeout(_) => "timeout",
            ConnError::Tls(_) => "tls",
            ConnError::Upgrade(_) => "upgrade",
            ConnError::Closed(_) => "closed",
            ConnError::Read(_) => "read",
            ConnError::Write(_) => "write",
            ConnError::Stale(_) => "stale",
        }
    }

    /// The WebSocket close code the server sent, if it closed with one.
    pub fn close_code(&self) -> Option<u16> {
        match self {
            ConnError::Closed(text) => text.split_whitespace().next()?.parse().ok(),
            _ => None,
        }
    }
}

/// What every connection of one engine shares.
#[derive(Clone)]
pub struct Context {
    /// Live counters.
    pub stats: Arc<Stats>,
    /// The writer's wake-up.
    pub wake: Arc<Wake>,
    /// The receive clock.
    pub clock: Clock,
    /// The timers' monotonic clock.
    pub mono: Mono,
    /// No frame for this long = stale.
    pub stale_after: Duration,
    /// Cap of the reconnect backoff.
    pub reconnect_max: Duration,
    /// TLS settings for `wss://` (None: webpki roots, see `stream::tls_config`).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Host name lookups (run on a thread of their own).
    pub resolver: Resolver,
    /// The events journal (opens, closes, backoffs, text frames, orders).
    pub events: crate::events::Emitter,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("stale_after", &self.stale_after)
            .field("reconnect_max", &self.reconnect_max)
            .finish_non_exhaustive()
    }
}

/// One of the three Kite connections.
pub struct Connection {
    role: Role,
    id: u8,
    token: Token,
    cfg: ConnectionConfig,
    /// Instruments wanted on this connection, with their modes.
    desired: BTreeMap<u32, Mode>,
    /// Keep connected even with nothing subscribed (a warm standby).
    warm: bool,
    state: ConnState,
    backoff: Backoff,
    producer: rtrb::Producer<Stamped>,
    overflow: VecDeque<Stamped>,
    paused_since: Option<Instant>,
    last_frame: Instant,
    down_since: Option<Instant>,
    /// A frame (data or heartbeat) arrived since the last open.
    framed_since_open: bool,
    /// Receive time of the first tick after [`Connection::mark`], epoch µs.
    first_tick_since_mark: Option<i64>,
    marked: bool,
    stale_after: Duration,
    stats: Arc<Stats>,
    wake: Arc<Wake>,
    clock: Clock,
    mono: Mono,
    /// Why it last failed (shown while it backs off).
    last_error: Option<ConnError>,
    hist: Histogram<u64>,
    /// When `hist` was last published (real time).
    last_publish: Instant,
    /// Remote text in the log: a few lines per window per connection.
    text_log: LogLimit,
    resolver: Resolver,
    /// The lookup in flight, kept across a timed-out attempt so that a hung
    /// resolver costs one thread, not one per retry.
    lookup: Option<Lookup>,
    /// Free ring slots below which a frame wakes the writer early.
    wake_below_free: usize,
    /// The read budget ran out with data possibly left: read again next turn
    /// (edge-triggered readiness will not signal it again).
    more_to_read: bool,
    scratch: Vec<u8>,
    errors_logged: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The hub's copy of the ticks (with `[serve]`).
    tee: Option<crate::ring::Tee>,
    /// New credentials arrived: abandon the attempt in flight at the next timer.
    retry_pending: bool,
    /// The events journal.
    events: crate::events::Emitter,
    /// Remote text in the journal: rate-limited like the log, separately.
    text_events: LogLimit,
    /// When the current open began, epoch µs (for `open_ms`).
    opened_at_micros: i64,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish()
    }
}

impl Connection {
    /// A connection for `cfg`, feeding `producer`. Does not connect yet.
    pub fn new(
        cfg: ConnectionConfig,
        token: Token,
        producer: rtrb::Producer<Stamped>,
        ctx: &Context,
    ) -> Self {
        let Context {
            stats,
            wake,
            clock,
            mono,
            stale_after,
            reconnect_max,
            tls,
            resolver,
            events,
        } = ctx.clone();
        let desired = cfg.instruments.iter().map(|&t| (t, cfg.mode)).collect();
        let id = cfg.role.connection_id();
        let wake_below_free = producer.buffer().capacity() * 3 / 4;
        Connection {
            role: cfg.role,
            id,
            token,
            desired,
            warm: false,
            cfg,
            state: ConnState::Idle,
            backoff: Backoff::new(
                Duration::from_millis(200),
                reconnect_max,
                clock.now_micros() as u64 ^ u64::from(id),
            ),
            producer,
            overflow: VecDeque::new(),
            paused_since: None,
            last_frame: mono.now(),
            down_since: None,
            framed_since_open: false,
            first_tick_since_mark: None,
            marked: false,
            stale_after,
            stats,
            wake,
            clock,
            mono,
            last_error: None,
            hist: new_histogram(),
            last_publish: Instant::now(),
            more_to_read: false,
            wake_below_free,
            text_log: LogLimit::new(10, Duration::from_secs(10)),
            resolver,
            lookup: None,
            scratch: Vec::new(),
            errors_logged: 0,
            tls,
            tee: None,
            events,
            text_events: LogLimit::new(20, Duration::from_secs(10)),
            opened_at_micros: 0,
            retry_pending: false,
        }
    }

    /// Copies every tick (and order/message text frame) to the hub while
    /// it has clients.
    pub fn set_tee(&mut self, tee: crate::ring::Tee) {
        self.tee = Some(tee);
    }

    fn st(&self) -> &ConnStats {
        &self.stats.conns[usize::from(self.id - 1)]
    }

    fn set_state(&mut self, s: ConnState) {
        self.st().set_state(s.name());
        self.state = s;
    }

    /// The connection id (1, 2, 3).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// Its role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Why it last failed, until it has proven healthy again.
    pub fn last_error(&self) -> Option<&ConnError> {
        self.last_error.as_ref()
    }

    /// Reconnect attempts since the backoff was last reset.
    pub fn backoff_attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// Whether it is open.
    pub fn is_open(&self) -> bool {
        matches!(self.state, ConnState::Open { .. })
    }

    /// How long it has not been open (None while open or idle on purpose).
    pub fn down_for(&self, now: Instant) -> Option<Duration> {
        if self.is_open() {
            return None;
        }
        self.down_since.map(|t| now.saturating_duration_since(t))
    }

    /// Open, resubscribed, and a frame (ticks or a heartbeat) has arrived
    /// since: the connection demonstrably works again.
    pub fn is_delivering(&self) -> bool {
        self.is_open() && self.framed_since_open
    }

    /// Starts watching for the next tick (see [`Connection::first_tick_since_mark`]).
    pub fn mark(&mut self) {
        self.marked = true;
        self.first_tick_since_mark = None;
    }

    /// Receive time of the first tick since [`Connection::mark`], epoch µs.
    pub fn first_tick_since_mark(&self) -> Option<i64> {
        self.first_tick_since_mark
    }

    /// Whether it should be connected.
    fn wanted(&self) -> bool {
        self.warm || !self.desired.is_empty()
    }

    /// Keep it connected while idle (warm standby).
    pub fn set_warm(&mut self, warm: bool) {
        self.warm = warm;
    }

    /// Instruments wanted on it, with modes.
    pub fn desired(&self) -> &BTreeMap<u32, Mode> {
        &self.desired
    }

    /// Starts connecting if there is anything to subscribe.
    pub fn start(&mut self, registry: &Registry) {
        self.st()
            .subscribed
            .store(self.desired.len() as u64, Ordering::Relaxed);
        if self.wanted() && matches!(self.state, ConnState::Idle) {
            self.down_since = Some(self.mono.now());
            self.connect(registry);
        }
    }

    /// The earliest time `on_timer` has work.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.paused_since.is_some() {
            return Some(self.mono.now() + Duration::from_millis(1));
        }
        match &self.state {
            ConnState::Backoff { until, .. } => Some(*until),
            // Poll the lookup soon; it arrives from another thread.
            ConnState::Resolving { .. } => Some(self.mono.now() + Duration::from_millis(5)),
            ConnState::Connecting { since, .. } | ConnState::Handshaking { since, .. } => {
                Some(*since + CONNECT_TIMEOUT)
            }
            ConnState::Open { .. } => Some(self.last_frame + self.stale_after),
            ConnState::Idle | ConnState::Closed => None,
        }
    }

    /// Handles a readiness event for this connection's socket.
    pub fn on_event(&mut self, registry: &Registry) {
        let state = std::mem::replace(&mut self.state, ConnState::Idle);
        match state {
            ConnState::Connecting {
                tcp,
                host,
                tls,
                since,
            } => {
                match tcp.take_error() {
                    Ok(Some(e)) | Err(e) => {
                        return self.fail(registry, Some(tcp), ConnError::Connect(e.to_string()))
                    }
                    Ok(None) => {}
                }
                match tcp.peer_addr() {
                    Err(e) if e.kind() == ErrorKind::NotConnected => {
                        self.state = ConnState::Connecting {
                            tcp,
                            host,
                            tls,
                            since,
                        };
                        return;
                    }
                    Err(e) => {
                        return self.fail(registry, Some(tcp), ConnError::Connect(e.to_string()))
                    }
                    Ok(_) => {}
                }
                let _ = tcp.set_nodelay(true);
                let stream = match wrap(tcp, &host, tls, self.tls.clone()) {
                    Ok(s) => s,
                    Err(e) => return self.retry_later(registry, ConnError::Tls(e.to_string())),
                };
                let req = match self.request_url().into_client_request() {
                    Ok(r) => r,
                    Err(e) => return self.retry_later(registry, ConnError::BadUrl(e.to_string())),
                };
                // Reads of 16 KiB: tungstenite zero-fills its read chunk before
                // every read, and its 128 KiB default made that memset a
                // visible cost per frame at real rates.
                let ws_cfg =
                    tungstenite::protocol::WebSocketConfig::default().read_buffer_size(16 * 1024);
                self.handshake_step(
                    registry,
                    tungstenite::client::client_with_config(req, stream, Some(ws_cfg)),
                    since,
                );
            }
            ConnState::Handshaking { mut mid, since } => {
                // A new readiness: the socket is asked again (DrainedTcp).
                mid.get_mut().get_mut().begin_turn();
                self.handshake_step(registry, mid.handshake(), since);
            }
            ConnState::Open { ws, since } => {
                self.state = ConnState::Open { ws, since };
                self.read_frames(registry);
            }
            other => self.state = other,
        }
    }

    fn handshake_step(
        &mut self,
        registry: &Registry,
        r: Result<
            (
                WebSocket<WireStream>,
                tungstenite::handshake::client::Response,
            ),
            HandshakeError<ClientHandshake<WireStream>>,
        >,
        since: Instant,
    ) {
        match r {
            Ok((ws, _)) => self.opened(registry, ws),
            Err(HandshakeError::Interrupted(mid)) => self.set_state(ConnState::Handshaking {
                mid: Box::new(mid),
                since,
            }),
            Err(HandshakeError::Failure(tungstenite::Error::Http(resp)))
                if matches!(resp.status().as_u16(), 401 | 403) =>
            {
                self.retry_later(registry, ConnError::Auth(resp.status().as_u16()))
            }
            Err(HandshakeError::Failure(e)) => self.retry_later(
                registry,
                ConnError::Upgrade(log_text(&e.to_string(), LOG_TEXT_MAX)),
            ),
        }
    }

    fn opened(&mut self, registry: &Registry, mut ws: WebSocket<WireStream>) {
        let stats = Arc::clone(&self.stats);
        let st = &stats.conns[usize::from(self.id - 1)];
        let n = st.opens.fetch_add(1, Ordering::Relaxed);
        if n > 0 {
            st.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let now = self.mono.now();
        let down = self
            .down_since
            .take()
            .map(|t| now.saturating_duration_since(t));
        if let Some(d) = down {
            st.down_micros
                .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        }
        if n > 0 {
            tracing::info!(
                "connection {} ({}) reopened after {} ms down; resubscribing {} instruments",
                self.id,
                self.role.as_str(),
                down.map_or(0, |d| d.as_millis()),
                self.desired.len()
            );
        } else {
            tracing::info!(
                "connection {} ({}) open; subscribing {} instruments",
                self.id,
                self.role.as_str(),
                self.desired.len()
            );
        }
        // The backoff is not reset here: a server that accepts and then
        // breaks every connection would be hammered. See `HEALTHY_AFTER`.
        self.framed_since_open = false;
        self.last_frame = self.mono.now();
        for req in subscription_requests(&self.desired) {
            let _ = ws.write(Message::text(req.to_json()));
        }
        let _ = ws.flush();
        self.set_state(ConnState::Open {
            ws: Box::new(ws),
            since: self.mono.now(),
        });
        self.opened_at_micros = self.clock.now_micros();
        self.events.emit_at(
            self.opened_at_micros,
            crate::events::Event::ConnectionOpen {
                connection_id: self.id,
                role: self.role.as_str().to_owned(),
                instruments: self.desired.len(),
                down_ms: down.filter(|_| n > 0).map(|d| d.as_millis() as u64),
            },
        );
        // Frames may already sit behind the HTTP 101 in tungstenite's buffer:
        // mio will not signal them again.
        self.read_frames(registry);
    }

    /// Timers: backoff expiry, connect timeout, stale feed, ring-full resume.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        if let Some(since) = self.paused_since {
            if self.drain_overflow() {
                self.paused_since = None;
                self.st().ring_stall_micros.fetch_add(
                    now.saturating_duration_since(since).as_micros() as u64,
                    Ordering::Relaxed,
                );
                self.read_frames(registry);
            }
        }
        if let ConnState::Open { since, .. } = &self.state {
            let healthy = self.framed_since_open
                && self.last_frame.saturating_duration_since(*since) >= HEALTHY_AFTER;
            if healthy && (self.backoff.attempts() > 0 || self.last_error.is_some()) {
                self.backoff.reset();
                self.last_error = None;
            }
        }
        self.poll_lookup(registry);
        if std::mem::take(&mut self.retry_pending)
            && matches!(
                self.state,
                ConnState::Connecting { .. } | ConnState::Handshaking { .. }
            )
        {
            tracing::info!(
                "connection {}: new credentials; abandoning the attempt in flight and reconnecting",
                self.id
            );
            let state = std::mem::replace(&mut self.state, ConnState::Idle);
            self.discard(registry, state);
            self.connect(registry);
        }
        match &self.state {
            ConnState::Idle if self.wanted() => {
                self.down_since.get_or_insert(now);
                self.connect(registry);
            }
            ConnState::Backoff { until, .. } if now >= *until => {
                if self.wanted() {
                    self.connect(registry);
                } else {
                    self.set_state(ConnState::Idle);
                }
            }
            ConnState::Resolving { since, .. }
            | ConnState::Connecting { since, .. }
            | ConnState::Handshaking { since, .. }
                if now >= *since + CONNECT_TIMEOUT =>
            {
                let state = std::mem::replace(&mut self.state, ConnState::Idle);
                self.discard(registry, state);
                self.retry_later(registry, ConnError::Timeout(CONNECT_TIMEOUT));
            }
            ConnState::Open { .. }
                if self.paused_since.is_none()
                    && now.duration_since(self.last_frame) >= self.stale_after =>
            {
                self.st().stale.fetch_add(1, Ordering::Relaxed);
                let quiet = now.duration_since(self.last_frame);
                self.drop_open(registry, ConnError::Stale(quiet.as_millis() as u64));
            }
            ConnState::Open { .. } if !self.wanted() => {
                tracing::info!("connection {}: nothing subscribed; closing", self.id);
                self.emit_closed_as("idle", "nothing subscribed");
                let state = std::mem::replace(&mut self.state, ConnState::Idle);
                self.discard(registry, state);
                self.set_state(ConnState::Idle);
            }
            _ => {}
        }
        // Published about once a second, not per timer call: a copy of the
        // histogram is tens of KiB, and the timers run every loop turn.
        let real = Instant::now();
        if !self.hist.is_empty()
            && real.saturating_duration_since(self.last_publish) >= PUBLISH_EVERY
        {
            publish(
                &self.stats.latency.receive_to_ring_ns[usize::from(self.id - 1)],
                &self.hist,
            );
            self.last_publish = real;
        }
    }

    /// Moves overflow into the ring; true when it is empty.
    fn drain_overflow(&mut self) -> bool {
        while let Some(s) = self.overflow.pop_front() {
            if let Err(rtrb::PushError::Full(s)) = self.producer.push(s) {
                self.overflow.push_front(s);
                self.wake.notify();
                return false;
            }
        }
        self.wake.notify();
        true
    }

    fn drop_open(&mut self, registry: &Registry, why: ConnError) {
        let state = std::mem::replace(&mut self.state, ConnState::Idle);
        if matches!(state, ConnState::Open { .. }) {
            self.emit_closed(&why);
        }
        if let ConnState::Open { since, .. } = &state {
            tracing::warn!(
                "connection {} ({}) lost after {} s open: {}; reconnecting",
                self.id,
                self.role.as_str(),
                self.mono.now().saturating_duration_since(*since).as_secs(),
                why
            );
        }
        self.discard(registry, state);
        self.down_since = Some(self.mono.now());
        self.retry_later(registry, why);
    }

    /// An open connection was lost: the journal says how long it had been
    /// silent, so that coverage ends at its last frame (a stale
    /// connection's gap began `stale_after` before it was noticed).
    fn emit_closed(&self, why: &ConnError) {
        let silent = self.mono.now().saturating_duration_since(self.last_frame);
        self.emit_closed_with(
            why.kind(),
            why.to_string(),
            why.close_code(),
            Some(silent.as_millis() as u64),
        );
    }

    fn emit_closed_as(&self, kind: &str, reason: &str) {
        self.emit_closed_with(kind, reason.to_owned(), None, None);
    }

    fn emit_closed_with(
        &self,
        kind: &str,
        reason: String,
        close_code: Option<u16>,
        silent_ms: Option<u64>,
    ) {
        let now = self.clock.now_micros();
        let open_ms = ((now - self.opened_at_micros).max(0) / 1000) as u64;
        self.events.emit_at(
            now,
            crate::events::Event::ConnectionClosed {
                connection_id: self.id,
                error: kind.to_owned(),
                reason,
                close_code,
                open_ms,
                silent_ms: silent_ms.map(|s| s.min(open_ms)),
            },
        );
    }

    fn fail(&mut self, registry: &Registry, tcp: Option<TcpStream>, why: ConnError) {
        if let Some(mut tcp) = tcp {
            let _ = registry.deregister(&mut tcp);
        }
        self.retry_later(registry, why);
    }

    /// Deregisters and closes whatever socket `state` holds.
    fn discard(&mut self, registry: &Registry, state: ConnState) {
        match state {
            ConnState::Connecting { mut tcp, .. } => {
                let _ = registry.deregister(&mut tcp);
            }
            ConnState::Handshaking { mut mid, .. } => {
                let _ = registry.deregister(mid.get_mut().get_mut().tcp_mut());
            }
            ConnState::Open { mut ws, .. } => {
                let _ = ws.close(None);
                let _ = ws.flush();
                let _ = registry.deregister(ws.get_mut().tcp_mut());
            }
            _ => {}
        }
    }

    fn retry_later(&mut self, _registry: &Registry, why: ConnError) {
        let delay = self.backoff.next_delay();
        self.last_error = Some(why.clone());
        let auth = matches!(why, ConnError::Auth(_));
        match &why {
            ConnError::Auth(code) => {
                self.st().auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "connection {} ({}): Kite refused the credentials (HTTP {code}): api_key {:?}, access_token {}. \
                     The token may be expired (they expire daily). Retrying in {} ms",
                    self.id,
                    self.role.as_str(),
                    self.cfg.api_key,
                    self.cfg.access_token.redacted(),
                    delay.as_millis()
                );
            }
            msg => {
                self.errors_logged += 1;
                if self.errors_logged <= 20 || self.errors_logged.is_power_of_two() {
                    tracing::warn!(
                        "connection {} ({}): {msg}; retrying in {} ms",
                        self.id,
                        self.role.as_str(),
                        delay.as_millis()
                    );
                }
            }
        }
        self.events.emit(crate::events::Event::BackingOff {
            connection_id: self.id,
            error: why.kind().to_owned(),
            reason: why.to_string(),
            retry_in_ms: delay.as_millis() as u64,
        });
        self.down_since.get_or_insert_with(Instant::now);
        self.set_state(ConnState::Backoff {
            until: self.mono.now() + delay,
            auth,
        });
    }

    /// Closes the connection for good and hands every received tick to the
    /// ring (waiting for the writer to make room, at most `limit`).
    pub fn shutdown(&mut self, registry: &Registry, limit: Duration) -> usize {
        if self.is_open() {
            self.emit_closed_as("shutdown", "tickcap is stopping");
        }
        let state = std::mem::replace(&mut self.state, ConnState::Idle);
        self.discard(registry, state);
        self.set_state(ConnState::Closed);
        // Real time: this waits for the writer thread, not for a timer.
        let until = Instant::now() + limit;
        while !self.drain_overflow() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        publish(
            &self.stats.latency.receive_to_ring_ns[usize::from(self.id - 1)],
            &self.hist,
        );
        self.overflow.len()
    }

    /// The configured mode of the connection.
    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    /// Its configuration (URL, key; the token stays redacted in any output).
    pub fn config(&self) -> &ConnectionConfig {
        &self.cfg
    }

    /// Replaces URL and credentials; used from the next connect on.
    pub fn set_endpoint(&mut self, cfg: &ConnectionConfig) {
        self.cfg.url = cfg.url.clone();
        self.cfg.api_key = cfg.api_key.clone();
        self.cfg.access_token = cfg.access_token.clone();
        self.cfg.mode = cfg.mode;
    }

    /// New credentials arrived (a reload): a connection that is not open
    /// tries again with them at the next timer, from the base delay — one
    /// waiting to retry (after a 403, say) as well as one whose TCP connect
    /// or upgrade is in flight with the old token (that attempt is
    /// abandoned: its 403 would otherwise cost a full backoff).
    pub fn retry_now(&mut self) {
        self.backoff.reset();
        match &mut self.state {
            ConnState::Backoff { until, .. } => *until = self.mono.now(),
            ConnState::Connecting { .. } | ConnState::Handshaking { .. } => {
                self.retry_pending = true;
            }
            _ => {}
        }
    }

    /// A reload changed `engine.stale_after_ms`.
    pub fn set_stale_after(&mut self, d: Duration) {
        self.stale_after = d;
    }

    /// A reload changed `engine.reconnect_max_ms`: the backoff's cap from
    /// the next delay on.
    pub fn set_reconnect_max(&mut self, cap: Duration) {
        self.backoff.set_cap(cap);
    }

    /// (capacity, ticks waiting) of its ring, plus its overflow.
    pub fn ring_occupancy(&self) -> (usize, usize) {
        let cap = self.producer.buffer().capacity();
        (cap, cap - self.producer.slots() + self.overflow.len())
    }
}
