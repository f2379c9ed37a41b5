//! Live counters of the engine, shared with whoever reports them (logs, the
//! status port, tests). Hot paths only touch relaxed atomics; histograms are
//! owned by their thread and published into a mutex about once a second
//! with `try_lock`: a publisher never waits (it skips a turn if a reader
//! holds the lock), so reading never blocks capture. A reader may wait for a
//! publisher's copy in progress.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use hdrhistogram::Histogram;

/// A connection's state, as shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    /// Nothing to subscribe: not connected on purpose.
    Idle,
    /// Waiting to retry.
    Backoff,
    /// TCP connect in progress.
    Connecting,
    /// TLS/WebSocket upgrade in progress.
    Handshaking,
    /// Subscribed and streaming.
    Open,
    /// Refused by the server (bad or expired credentials); retrying slowly.
    AuthFailed,
    /// Shut down.
    Closed,
}

impl StateName {
    const ALL: [StateName; 7] = [
        StateName::Idle,
        StateName::Backoff,
        StateName::Connecting,
        StateName::Handshaking,
        StateName::Open,
        StateName::AuthFailed,
        StateName::Closed,
    ];
    /// The name used in logs and on the status port.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Idle => "idle",
            StateName::Backoff => "backoff",
            StateName::Connecting => "connecting",
            StateName::Handshaking => "handshaking",
            StateName::Open => "open",
            StateName::AuthFailed => "auth_failed",
            StateName::Closed => "closed",
        }
    }
}

/// Counters of one Kite connection.
#[derive(Debug, Default)]
pub struct ConnStats {
    state: AtomicU8,
    /// Ticks decoded and handed to the ring (or its overflow).
    pub ticks: AtomicU64,
    /// Binary messages with ticks.
    pub frames: AtomicU64,
    /// Heartbeats (binary messages of ≤ 4 bytes).
    pub heartbeats: AtomicU64,
    /// Packets that did not decode.
    pub decode_errors: AtomicU64,
    /// `error` text frames from the server.
    pub server_errors: AtomicU64,
    /// Text frames that were not UTF-8 (skipped).
    pub bad_text_frames: AtomicU64,
    /// Times the connection was (re)opened after the first.
    pub reconnects: AtomicU64,
    /// Times it opened at all.
    pub opens: AtomicU64,
    /// Upgrades refused with HTTP 401/403.
    pub auth_failures: AtomicU64,
    /// Times it went stale (no frame for the stale limit) and was dropped.
    pub stale: AtomicU64,
    /// Times reading paused because the ring was full.
    pub ring_stalls: AtomicU64,
    /// Total microseconds spent paused on a full ring.
    pub ring_stall_micros: AtomicU64,
    /// Microseconds spent not open (down, connecting) while it had instruments.
    pub down_micros: AtomicU64,
    /// Receive time of the last tick, epoch µs (0 = none yet).
    pub last_tick_micros: AtomicI64,
    /// Instruments currently subscribed on it.
    pub subscribed: AtomicU64,
}

impl ConnStats {
    /// The current state.
    pub fn state(&self) -> StateName {
        StateName::ALL
            .get(usize::from(self.state.load(Ordering::Relaxed)))
            .copied()
            .unwrap_or(StateName::Idle)
    }
    pub(crate) fn set_state(&self, s: StateName) {
        let i = StateName::ALL.iter().position(|x| *x == s).unwrap_or(0);
        self.state.store(i as u8, Ordering::Relaxed);
    }
}

/// Counters of the writer thread.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Lines (ticks) written and accepted by the OS.
    pub lines: AtomicU64,
    /// Bytes written.
    pub bytes: AtomicU64,
    /// `write` calls.
    pub writes: AtomicU64,
    /// Failed writes (each retried; nothing is dropped).
    pub write_errors: AtomicU64,
    /// `fdatasync` calls.
    pub fsyncs: AtomicU64,
    /// Time of the last completed write, epoch µs.
    pub last_flush_micros: AtomicI64,
    /// Files opened (rotations included).
    pub files_opened: std::sync::Arc<AtomicU64>,
    /// Torn last lines repaired at open.
    pub torn_repaired: std::sync::Arc<AtomicU64>,
    /// Lines written into the current day's file since it was opened (or since start).
    pub lines_today: AtomicU64,
    /// Hot standby: second copies dropped.
    pub dedup_dropped: AtomicU64,
    /// Hot standby: of each dropped pair, which connection was first (index = id).
    pub dedup_first_by: [AtomicU64; 4],
    /// Bytes formatted but not yet written (the writer's lag).
    pub buffered_bytes: AtomicU64,
    /// The file written last.
    pub current_file: Mutex<Option<PathBuf>>,
    /// The last write error, for the status port.
    pub last_error: Mutex<Option<String>>,
    /// Since when writes have been failing, epoch µs (0 = they succeed).
    pub failing_since_micros: AtomicI64,
    /// Receive time of the oldest line not yet written, epoch µs (0 = none).
    pub oldest_unwritten_micros: AtomicI64,
    /// Lines the writer could not write by the end of shutdown.
    pub unwritten_lines: AtomicU64,
    /// Of those, saved to a recovery file.
    pub saved_lines: AtomicU64,
    /// The recovery file.
    pub saved_to: Mutex<Option<PathBuf>>,
    /// Times the open file was found removed or replaced (and reopened).
    pub files_replaced: AtomicU64,
    /// The day (days since 1970-01-01, storage zone) the open file was last
    /// found removed or replaced; `/health` is degraded for the rest of it.
    pub replaced_on_day: AtomicI64,
    /// What happened then, for `/health`.
    pub replaced_why: Mutex<Option<String>>,
    /// Ticks received for a day already closed (just before midnight,
    /// drained after the rotation): written to the current day's file.
    pub late_ticks: AtomicU64,
    /// When an fsync first failed, epoch µs (0 = never). Sticky: after a
    /// failed `fdatasync` Linux may have dropped the dirty pages, so a
    /// later success proves nothing about the lines before it.
    pub fsync_failed_micros: AtomicI64,
    /// Lines written since the last good fsync when one failed (at risk).
    pub fsync_failed_lines: AtomicU64,
}

/// Counters of the hub (the serve port).
#[derive(Debug, Default)]
pub struct ServeStats {
    /// Where it listens (the bound address: port 0 in the config is resolved).
    pub listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// Clients connected now.
    pub clients: AtomicU64,
    /// Clients accepted since start.
    pub accepted: AtomicU64,
    /// Upgrades refused: wrong token (403).
    pub refused_auth: AtomicU64,
    /// Upgrades refused: `max_clients` reached (429).
    pub refused_full: AtomicU64,
    /// Incomplete upgrades closed to make room for a newcomer.
    pub upgrades_evicted: AtomicU64,
    /// Clients disconnected because their send queue passed its limit.
    pub dropped_slow: AtomicU64,
    /// Ticks sent to clients (one per client per tick).
    pub ticks_sent: AtomicU64,
    /// Bytes written to clients.
    pub bytes_sent: AtomicU64,
    /// Binary tick messages written to clients.
    pub messages_sent: AtomicU64,
    /// Text frames (order updates, messages) forwarded, once each.
    pub texts_forwarded: AtomicU64,
    /// Client messages that were not valid requests (answered with an error).
    pub bad_requests: AtomicU64,
    /// Ticks the event loop could not hand to the hub (its ring full): the
    /// hub disconnects every client then, saying so (capture is unaffected).
    pub ring_overflows: AtomicU64,
    /// Instruments subscribed upstream for clients now.
    pub auto_subscribed: AtomicU64,
    /// Instruments a client asked for that no connection had room for.
    pub auto_rejected: AtomicU64,
    /// Per client, published by the hub about once a second (for `/clients`).
    pub clients_view: Mutex<Vec<ClientView>>,
    /// The last 50 disconnects, with why.
    pub disconnects: Mutex<std::collections::VecDeque<Disconnect>>,
}

/// A client that left, and why.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Disconnect {
    /// Peer address.
    pub address: String,
    /// When, epoch µs.
    pub at_micros: i64,
    /// Why (the close frame's reason when tickcap closed it).
    pub reason: String,
    /// Ticks it had been sent.
    pub ticks_sent: u64,
}

/// The Kafka publisher's state, as `/kafka` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KafkaState {
    /// No `[kafka]`.
    Off = 0,
    /// Connecting and recovering the topic's last positions.
    Starting = 1,
    /// Publishing.
    Publishing = 2,
    /// No broker answers (the backlog waits on disk).
    Unreachable = 3,
    /// Stopped (shutdown).
    Stopped = 4,
    /// Refused to publish (the partition count changed; see `last_error`).
    Refused = 5,
}

impl KafkaState {
    const ALL: [KafkaState; 6] = [
        KafkaState::Off,
        KafkaState::Starting,
        KafkaState::Publishing,
        KafkaState::Unreachable,
        KafkaState::Stopped,
        KafkaState::Refused,
    ];

    /// The name `/kafka` and `tickcap status` show.
    pub fn as_str(self) -> &'static str {
        match self {
            KafkaState::Off => "off",
            KafkaState::Starting => "starting",
            KafkaState::Publishing => "publishing",
            KafkaState::Unreachable => "broker unreachable",
            KafkaState::Stopped => "stopped",
            KafkaState::Refused => "refused",
        }
    }

    /// Whether `/health` is degraded by it.
    pub fn is_down(self) -> bool {
        matches!(self, KafkaState::Unreachable | KafkaState::Refused)
    }
}

/// Counters of the Kafka publisher.
#[derive(Debug, Default)]
pub struct KafkaStats {
    /// The state ([`KafkaState`]; read with [`KafkaStats::state`]).
    state: AtomicU8,
    /// Records handed to librdkafka.
    pub sent: AtomicU64,
    /// Records acknowledged by the broker (acks=all).
    pub acked: AtomicU64,
    /// Lines skipped at recovery because the topic already had them.
    pub skipped: AtomicU64,
    /// Producer errors (delivery failures, fatal errors) since start.
    pub errors: AtomicU64,
    /// Producers recreated after a fatal error.
    pub recreated: AtomicU64,
    /// Records sent and not yet acknowledged.
    pub in_flight: AtomicU64,
    /// Lines written to the journal and not yet acknowledged (in flight plus
    /// an estimate of what is not read yet).
    pub lag_ticks: AtomicU64,
    /// Receive time of the oldest line not yet acknowledged, epoch µs (0 = none).
    pub oldest_unacked_micros: AtomicI64,
    /// When the broker last acknowledged something, epoch µs.
    pub last_ack_micros: AtomicI64,
    /// The acknowledged position (`YYYY-MM-DD:byte offset`).
    pub position: Mutex<String>,
    /// The topic's partition count.
    pub partitions: AtomicU64,
    /// The last error, for `/kafka` and `/health`.
    pub last_error: Mutex<Option<String>>,
}

impl KafkaStats {
    /// The publisher's state.
    pub fn state(&self) -> KafkaState {
        let n = self.state.load(Ordering::Relaxed);
        KafkaState::ALL
            .into_iter()
            .find(|s| *s as u8 == n)
            .unwrap_or(KafkaState::Off)
    }

    /// Sets the publisher's state.
    pub fn set_state(&self, s: KafkaState) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

/// One client of the hub, as `/clients` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClientView {
    /// Peer address.
    pub address: String,
    /// When it connected, epoch µs.
    pub connected_micros: i64,
    /// The `api_key` it presented (not a secret: Kite shows it in URLs).
    pub api_key: String,
    /// Instruments and the mode of each.
    pub subscriptions: Vec<(u32, &'static str)>,
    /// Ticks sent to it.
    pub ticks_sent: u64,
    /// Bytes sent to it.
    pub bytes_sent: u64,
    /// Bytes queued, not yet written.
    pub queued_bytes: u64,
    /// Requests it sent that were refused.
    pub bad_requests: u64,
}

/// Latency histograms, in microseconds (receive→ring is in nanoseconds).
#[derive(Debug)]
pub struct Latency {
    /// Receive (frame read) → ticks in the ring, nanoseconds, per
    /// connection (each is published by its own connection; see
    /// [`Stats::receive_to_ring_ns`] for all of them).
    pub receive_to_ring_ns: [Mutex<Histogram<u64>>; 3],
    /// Receive → line accepted by `write(2)`, microseconds.
    pub receive_to_written_us: Mutex<Histogram<u64>>,
    /// Hot standby: how much earlier the first copy of a tick arrived, µs.
    pub dedup_lead_us: Mutex<Histogram<u64>>,
    /// Receive → the tick's message handed to a client's socket, µs (one
    /// sample per tick per client; published by the hub).
    pub receive_to_client_us: Mutex<Histogram<u64>>,
    /// Receive → the tick's Kafka record acknowledged (acks=all), µs
    /// (published by the Kafka publisher).
    pub receive_to_acked_us: Mutex<Histogram<u64>>,
}

/// A new histogram for 1 unit .. 1 hour of µs at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 3_600_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("static histogram bounds are valid: {e}"),
    }
}

/// What the writer saw of one instrument.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstrumentSeen {
    /// Ticks written.
    pub ticks: u64,
    /// Receive time of the last one, epoch µs.
    pub last_micros: i64,
    /// The connection that delivered the last one.
    pub connection_id: u8,
    /// Its `last_price` as on the wire (divide by `kite::price_divisor`).
    pub last_price_raw: u32,
    /// The day's open, high, low and previous close as the last tick that
    /// carried them said (raw; 0 until a quote or full tick).
    pub ohlc_raw: [u32; 4],
    /// `volume_traded` of the last tick that carried it.
    pub volume: u32,
}

/// Token → what the writer saw, published by the writer about once a second.
pub type InstrumentMap =
    std::collections::HashMap<u32, InstrumentSeen, std::hash::BuildHasherDefault<TokenHasher>>;

/// A hasher for `u32` instrument tokens (Fibonacci hashing): the writer,
/// the candle builder and the hub update a map entry per tick, so SipHash
/// would be most of the cost. A Kite token's low byte is its segment, and
/// the low bits of a product depend only on the low bits of the token:
/// `finish` folds the well-mixed high half into the low bits the table
/// indexes by (without it, 9,000 tokens of one segment fell into 64 slots
/// of a 16,384-slot table).
#[derive(Debug, Default, Clone, Copy)]
pub struct TokenHasher(u64);

/// A map keyed by instrument token with [`TokenHasher`].
pub type TokenMap<V> =
    std::collections::HashMap<u32, V, std::hash::BuildHasherDefault<TokenHasher>>;

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The events journal and the order updates (`crate::events`).
#[derive(Debug, Default)]
pub struct JournalStats {
    /// Records handed to the journal thread.
    pub emitted: AtomicU64,
    /// Records lost: the channel was full or the thread gone.
    pub lost: AtomicU64,
    /// Event lines written.
    pub events_written: AtomicU64,
    /// Order update lines written.
    pub orders_written: AtomicU64,
    /// Final candles written.
    pub candles_written: AtomicU64,
    /// Of those, bars marked `complete: false`.
    pub candles_incomplete: AtomicU64,
    /// Kite's bars written in place of incomplete or missing ones (the
    /// service's own repair, `"source": "kite"`).
    pub candles_repaired: AtomicU64,
    /// Kite's bars that came for a day already closed (not written: `tickcap
    /// candles repair --day D` repairs a closed day).
    pub candles_repair_late: AtomicU64,
    /// tickcap's bars that came after Kite's bar of the same interval was
    /// written (not written: Kite's stands).
    pub candles_after_repair: AtomicU64,
    /// Order updates received again on another socket (one kept).
    pub orders_duplicate: AtomicU64,
    /// Text frames recorded as `bad_text_frame` (never written as orders).
    pub bad_text_frames: AtomicU64,
    /// Failed writes of the journal files.
    pub write_errors: AtomicU64,
    /// Bytes waiting to be written (writes failing).
    pub pending_bytes: AtomicU64,
    /// Today's final candles, per instrument and interval (`GET /candles`).
    pub candles_today: Mutex<CandlesToday>,
    /// The bars in progress, as the writer last published them (~1/s).
    pub candles_open: Mutex<Vec<crate::candles::Bar>>,
    /// Today's order updates as written (the last 10,000) and how many.
    pub orders_today: Mutex<OrdersToday>,
    /// Per instrument: covered and watched µs today, and when that was
    /// computed (epoch µs); published by the journal thread once a second.
    pub coverage: Mutex<CoverageToday>,
}

/// Today's final bars, compact (28 bytes a bar: a full day of minute bars
/// of 9,000 instruments is at most 95 MB, and far less in practice —
/// illiquid instruments do not trade every minute).
#[derive(Debug, Default)]
pub struct CandlesToday {
    /// The day (storage zone); a new day starts empty.
    pub day: Option<crate::time::LocalDate>,
    /// (token, interval) → bars in the order they became final.
    pub bars:
        std::collections::HashMap<(u32, crate::candles::Interval), Vec<crate::candles::Compact>>,
}

/// The service's own candle repair: each pass reads today's journal and
/// candle files, so `wanted` is what the files say waits.
#[derive(Debug, Default)]
pub struct RepairStats {
    /// Whether it runs (`[candles] repair = true`).
    pub enabled: std::sync::atomic::AtomicBool,
    /// Passes made (a pass: read the files, plan, fetch what is ready).
    pub passes: AtomicU64,
    /// Bars the last pass found wanting Kite's (incomplete, or missing in a
    /// gap), ready or not.
    pub wanted: AtomicU64,
    /// Kite's bars fetched and handed to the journal.
    pub fetched: AtomicU64,
    /// Wanted bars Kite had no bar for (no trade in the interval, or not
    /// yet published: tried again at the session's close).
    pub not_in_kite: AtomicU64,
    /// Failed requests (after Kite's 429 retries).
    pub errors: AtomicU64,
    /// The last failure, escaped.
    pub last_error: Mutex<Option<String>>,
    /// When the last pass ended, epoch µs (0: none yet).
    pub last_pass_micros: AtomicI64,
}

/// Closed days exported to Parquet by the service.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Whether it runs.
    pub enabled: std::sync::atomic::AtomicBool,
    /// Days exported.
    pub done: AtomicU64,
    /// Exports that failed (retried at the next check).
    pub failed: AtomicU64,
    /// The last failure.
    pub last_error: Mutex<Option<String>>,
    /// The day being exported, if one is.
    pub running: Mutex<Option<String>>,
    /// The last export: its file and rows.
    pub last: Mutex<Option<(String, u64)>>,
}

/// Today's order update lines.
#[derive(Debug, Default, Clone)]
pub struct OrdersToday {
    /// The day (storage zone), `YYYY-MM-DD`.
    pub day: String,
    /// Order updates written today.
    pub total: u64,
    /// The last 10,000 lines (JSON objects), oldest first.
    pub lines: std::collections::VecDeque<String>,
}

/// Today's coverage per instrument.
#[derive(Debug, Default, Clone)]
pub struct CoverageToday {
    /// When computed, epoch µs.
    pub at_micros: i64,
    /// token → (covered µs, watched µs) since midnight (or since start).
    pub totals: std::collections::BTreeMap<u32, (i64, i64)>,
}

/// Everything the engine counts.
#[derive(Debug)]
pub struct Stats {
    /// Per instrument, as written (published by the writer ~1/s).
    pub instruments: Mutex<InstrumentMap>,
    /// Per connection (index = connection id − 1).
    pub conns: [ConnStats; 3],
    /// The writer.
    pub writer: WriterStats,
    /// The hub.
    pub serve: ServeStats,
    /// The Kafka publisher.
    pub kafka: KafkaStats,
    /// The Kafka publisher of order updates (`[kafka] orders_topic`).
    pub kafka_orders: KafkaStats,
    /// The Kafka publishers of candles, by `candles::Interval::ALL` position.
    pub kafka_candles: [KafkaStats; 8],
    /// The events journal and the order updates.
    pub journal: JournalStats,
    /// The service's own candle repair (`[candles] repair = true`).
    pub repair: RepairStats,
    /// Closed days exported to Parquet (`[storage] export_closed_days`).
    pub exports: ExportStats,
    /// Latencies.
    pub latency: Latency,
    /// When the engine started, epoch µs.
    pub started_micros: AtomicI64,
    /// When the credentials in use were loaded (start or the last reload
    /// that changed them), epoch µs.
    pub credentials_loaded_micros: AtomicI64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            instruments: Mutex::new(InstrumentMap::default()),
            conns: Default::default(),
            writer: WriterStats::default(),
            serve: ServeStats::default(),
            kafka: KafkaStats::default(),
            kafka_orders: KafkaStats::default(),
            kafka_candles: Default::default(),
            journal: JournalStats::default(),
            repair: RepairStats::default(),
            exports: ExportStats::default(),
            latency: Latency {
                receive_to_ring_ns: std::array::from_fn(|_| Mutex::new(new_histogram())),
                receive_to_written_us: Mutex::new(new_histogram()),
                dedup_lead_us: Mutex::new(new_histogram()),
                receive_to_client_us: Mutex::new(new_histogram()),
                receive_to_acked_us: Mutex::new(new_histogram()),
            },
            started_micros: AtomicI64::new(0),
            credentials_loaded_micros: AtomicI64::new(0),
        }
    }
}

impl Stats {
    /// The Kafka counters of `interval`'s candle publisher.
    pub fn kafka_candles_of(&self, interval: crate::candles::Interval) -> &KafkaStats {
        let i = crate::candles::Interval::ALL
            .iter()
            .position(|x| *x == interval)
            .unwrap_or(0);
        &self.kafka_candles[i]
    }

    /// Total ticks received over all connections.
    pub fn ticks_received(&self) -> u64 {
        self.conns
            .iter()
            .map(|c| c.ticks.load(Ordering::Relaxed))
            .sum()
    }

    /// Lines written.
    pub fn lines_written(&self) -> u64 {
        self.writer.lines.load(Ordering::Relaxed)
    }

    /// Receive → ring over all connections, nanoseconds.
    pub fn receive_to_ring_ns(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for h in &self.latency.receive_to_ring_ns {
            let g = h.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = all.add(&*g);
        }
        all
    }

    /// A copy of a histogram (waits for the publishing thread's brief copy).
    pub fn histogram(h: &Mutex<Histogram<u64>>) -> Histogram<u64> {
        h.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Copies `local` into `shared` unless someone holds it (never waits).
pub(crate) fn publish(shared: &Mutex<Histogram<u64>>, local: &Histogram<u64>) {
    if let Ok(mut g) = shared.try_lock() {
        g.clone_from(local);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_of_one_segment_spread_over_the_low_bits() {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let b = BuildHasherDefault::<super::TokenHasher>::default();
        let slots: std::collections::HashSet<u64> = (0..9_000u32)
            .map(|i| b.hash_one(((100_000 + i) << 8) | 1) & 0x3fff)
            .collect();
        // 9,000 keys in 16,384 slots: a fair hash fills about 6,900.
        assert!(slots.len() > 6_000, "{} slots", slots.len());
    }
}
