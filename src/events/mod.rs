//! The events journal: what the capture did, beside what it captured.
//!
//! A tick file says what arrived; it cannot say what did not. Each day's
//! `events_YYYY-MM-DD.jsonl` holds one line per thing the capture did —
//! service start and stop, connections opening, closing and backing off,
//! subscriptions and why, takeovers and handbacks, reloads, the instruments
//! dump, writer failures, Kite's message and error text frames — so that
//! [`coverage`] can tell a quiet instrument from an uncaptured one, and
//! Kite's order updates go to `orders_YYYY-MM-DD.jsonl` (the JSON as Kite
//! sent it, plus `timestamp` and `connection_id`).
//!
//! ```text
//! {"timestamp":"2026-11-27T09:15:02.417311+05:30","kind":"connection_closed","connection_id":1,"error":"read","reason":"read: Connection reset by peer","open_ms":120433}
//! ```
//!
//! **Order with the ticks.** An event is stamped with the receive clock on
//! the thread where it happened (the event loop, for everything about
//! connections and subscriptions), between the frames it read before and
//! after: an event line's `timestamp` sits between the last tick received
//! before it and the first after it.
//!
//! **Who writes.** Anything may emit through an [`Emitter`] (a bounded
//! channel; never blocks, a full channel is counted in
//! `events_lost`); the journal thread (`sink::side`) owns the files, with
//! the tick files' lifecycle ([`crate::days::Family`]).

pub mod coverage;

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::stats::Stats;
use crate::time::Clock;

/// The longest remote text kept in an event (characters).
pub const TEXT_MAX: usize = 1000;
/// The longest order update kept (bytes); a longer one is an event, not an order.
pub const ORDER_MAX: usize = 64 << 10;
/// Records the channel holds before `events_lost` counts.
pub const CHANNEL_CAPACITY: usize = 65_536;

/// Why subscriptions changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// The configuration, at start.
    Config,
    /// A control call (`/subscribe`, `/unsubscribe`, `/mode`).
    Control,
    /// A configuration reload.
    Reload,
    /// Hub clients asked for it (`auto_subscribe`).
    Hub,
    /// The failover: a takeover or a handback.
    Failover,
}

/// One thing the capture did. Serialized with `kind` = the variant's
/// snake_case name; every line also has `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The service started.
    ServiceStart {
        /// tickcap's version.
        version: String,
        /// SHA-256 (first 16 hex digits) of the configuration's text.
        config_digest: String,
        /// The process id.
        pid: u32,
    },
    /// Shutdown began: coverage ends here (what follows is the drain).
    Stopping {
        /// Why (a signal, a control call, …).
        reason: String,
    },
    /// The service stopped; the counts are final.
    ServiceStop {
        /// Ticks received.
        received: u64,
        /// Lines written.
        written: u64,
        /// What was not written, when something was not.
        shortfall: Option<String>,
    },
    /// The first line of each day's journal written by a running capture:
    /// the connections' state at midnight, so that a day's file is read on
    /// its own.
    DayStart {
        /// Each connection: open or not, what it wants.
        connections: Vec<coverage::ConnSnapshot>,
    },
    /// Every 10 s while running: the counts so far. After a kill -9, the
    /// last one bounds when the capture ended.
    Heartbeat {
        /// Ticks received.
        received: u64,
        /// Lines written.
        written: u64,
    },
    /// A connection opened (and sent its subscriptions).
    ConnectionOpen {
        /// 1, 2 or 3.
        connection_id: u8,
        /// primary, secondary, tertiary.
        role: String,
        /// Instruments it subscribed on opening.
        instruments: usize,
        /// How long it had been down (reopens), ms.
        down_ms: Option<u64>,
    },
    /// An open connection ended.
    ConnectionClosed {
        /// 1, 2 or 3.
        connection_id: u8,
        /// The kind of error (`ConnError`'s name: closed, read, stale, …).
        error: String,
        /// The whole reason (Kite's close code and text, the OS error, …).
        reason: String,
        /// The WebSocket close code, when Kite sent one.
        close_code: Option<u16>,
        /// How long it had been open, ms.
        open_ms: u64,
        /// How long nothing had arrived on it before it closed, ms (a stale
        /// connection: `stale_after_ms`). Coverage ends at its last frame,
        /// not at the close: after it nothing was received. Absent in
        /// journals written before it existed (read as 0).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        silent_ms: Option<u64>,
    },
    /// A connection attempt failed, or an open connection ended: the next
    /// attempt is in `retry_in_ms`.
    BackingOff {
        /// 1, 2 or 3.
        connection_id: u8,
        /// The kind of error.
        error: String,
        /// The whole reason.
        reason: String,
        /// Until the next attempt, ms.
        retry_in_ms: u64,
    },
    /// Instruments subscribed on a connection.
    Subscribe {
        /// 1, 2 or 3.
        connection_id: u8,
        /// Why.
        why: Why,
        /// ltp, quote or full.
        mode: String,
        /// The instruments.
        tokens: Vec<u32>,
    },
    /// Instruments unsubscribed from a connection.
    Unsubscribe {
        /// 1, 2 or 3.
        connection_id: u8,
        /// Why.
        why: Why,
        /// The instruments.
        tokens: Vec<u32>,
    },
    /// Instruments' mode changed on a connection.
    Mode {
        /// 1, 2 or 3.
        connection_id: u8,
        /// Why.
        why: Why,
        /// The new mode.
        mode: String,
        /// The instruments.
        tokens: Vec<u32>,
    },
    /// The tertiary took over a down connection's instruments.
    Takeover {
        /// The connection that is down.
        from: u8,
        /// The tertiary.
        to: u8,
        /// How many instruments it carries for `from`.
        instruments: usize,
    },
    /// The connection is back: the tertiary releases its instruments.
    Handback {
        /// The tertiary.
        from: u8,
        /// The connection that is back.
        to: u8,
        /// How many instruments go back.
        instruments: usize,
    },
    /// A configuration reload was applied.
    Reload {
        /// What changed (the reload's summary).
        summary: String,
    },
    /// A reload was refused.
    ReloadRefused {
        /// Why.
        error: String,
    },
    /// The instruments dump was loaded.
    InstrumentsDump {
        /// Its day.
        date: String,
        /// Instruments in it.
        count: usize,
        /// Configured tokens it no longer lists (expired contracts).
        expired: Vec<u32>,
    },
    /// The tick writer's writes started failing.
    WriterFailed {
        /// The error.
        error: String,
        /// The file.
        path: Option<String>,
    },
    /// The tick writer's writes work again.
    WriterRecovered {
        /// How long they failed, ms.
        failed_ms: u64,
    },
    /// The tick file in use was removed or replaced: a new segment follows.
    FileReplaced {
        /// What happened.
        reason: String,
    },
    /// Kite's `message` text frame.
    KiteMessage {
        /// 1, 2 or 3.
        connection_id: u8,
        /// The text (escaped by JSON, cut at 1,000 characters).
        text: String,
        /// Similar frames not recorded just before this one (rate limit).
        suppressed: u64,
    },
    /// Kite's `error` text frame.
    KiteError {
        /// 1, 2 or 3.
        connection_id: u8,
        /// The text.
        text: String,
        /// Similar frames not recorded just before this one.
        suppressed: u64,
    },
    /// A text frame that is not a well-formed message, error or order
    /// (unknown type, not JSON, not UTF-8, too long).
    BadTextFrame {
        /// 1, 2 or 3.
        connection_id: u8,
        /// What is wrong.
        problem: String,
        /// Its start (cut at 1,000 characters).
        text: String,
        /// Similar frames not recorded just before this one.
        suppressed: u64,
    },
}

impl Event {
    /// The `kind` this event is written with.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::ServiceStart { .. } => "service_start",
            Event::Stopping { .. } => "stopping",
            Event::ServiceStop { .. } => "service_stop",
            Event::DayStart { .. } => "day_start",
            Event::Heartbeat { .. } => "heartbeat",
            Event::ConnectionOpen { .. } => "connection_open",
            Event::ConnectionClosed { .. } => "connection_closed",
            Event::BackingOff { .. } => "backing_off",
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe { .. } => "unsubscribe",
            Event::Mode { .. } => "mode",
            Event::Takeover { .. } => "takeover",
            Event::Handback { .. } => "handback",
            Event::Reload { .. } => "reload",
            Event::ReloadRefused { .. } => "reload_refused",
            Event::InstrumentsDump { .. } => "instruments_dump",
            Event::WriterFailed { .. } => "writer_failed",
            Event::WriterRecovered { .. } => "writer_recovered",
            Event::FileReplaced { .. } => "file_replaced",
            Event::KiteMessage { .. } => "kite_message",
            Event::KiteError { .. } => "kite_error",
            Event::BadTextFrame { .. } => "bad_text_frame",
        }
    }
}

/// What goes to the journal thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An event at a receive-clock time (epoch µs).
    Event(i64, Event),
    /// A final candle, built by the tick writer.
    Candle(crate::candles::Bar),
    /// Kite's bar in place of an incomplete or missing one (the service's
    /// own repair): written with `"source": "kite"`.
    Repaired(crate::candles::Bar),
    /// An order update as Kite sent it.
    Order {
        /// When it was received, epoch µs.
        at: i64,
        /// The connection it came on.
        connection_id: u8,
        /// The text frame.
        text: String,
    },
}

/// Sends records to the journal thread: cheap to clone, never blocks.
#[derive(Clone)]
pub struct Emitter {
    tx: Option<SyncSender<Record>>,
    clock: Clock,
    stats: Arc<Stats>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("connected", &self.tx.is_some())
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// An emitter into `tx`, stamping with `clock`.
    pub fn new(tx: SyncSender<Record>, clock: Clock, stats: Arc<Stats>) -> Self {
        Emitter {
            tx: Some(tx),
            clock,
            stats,
        }
    }

    /// An emitter that records nothing (parts used without an engine).
    pub fn none(clock: Clock) -> Self {
        Emitter {
            tx: None,
            clock,
            stats: Arc::new(Stats::default()),
        }
    }

    /// Records `event`, stamped now.
    pub fn emit(&self, event: Event) {
        let at = self.clock.now_micros();
        self.send(Record::Event(at, event));
    }

    /// Records `event` at `at` (epoch µs, the receive clock).
    pub fn emit_at(&self, at: i64, event: Event) {
        self.send(Record::Event(at, event));
    }

    /// Records a final candle.
    pub fn candle(&self, bar: crate::candles::Bar) {
        self.send(Record::Candle(bar));
    }

    /// Hands Kite's bar to the journal, waiting while its queue is full (the
    /// repair thread may; no other part does). False: the journal is gone.
    pub fn repaired(&self, bar: crate::candles::Bar) -> bool {
        let Some(tx) = &self.tx else {
            return false;
        };
        let ok = tx.send(Record::Repaired(bar)).is_ok();
        let j = &self.stats.journal;
        if ok {
            j.emitted.fetch_add(1, Ordering::Relaxed);
        } else {
            j.lost.fetch_add(1, Ordering::Relaxed);
        }
        ok
    }

    /// Records an order update text frame received at `at`.
    pub fn order(&self, at: i64, connection_id: u8, text: &str) {
        self.send(Record::Order {
            at,
            connection_id,
            text: text.to_owned(),
        });
    }

    fn send(&self, r: Record) {
        let Some(tx) = &self.tx else {
            return;
        };
        let j = &self.stats.journal;
        match tx.try_send(r) {
            Ok(()) => {
                j.emitted.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(r) | TrySendError::Disconnected(r)) => {
                let n = j.lost.fetch_add(1, Ordering::Relaxed) + 1;
                if n <= 10 || n.is_power_of_two() {
                    tracing::error!(
                        "events journal: record #{n} lost (the journal thread is behind or stopped): {}",
                        match &r {
                            Record::Event(_, e) => e.kind(),
                            Record::Candle(_) | Record::Repaired(_) => "candle",
                            Record::Order { .. } => "order",
                        }
                    );
                }
            }
        }
    }
}

/// Cuts remote text to [`TEXT_MAX`] characters (JSON escapes the rest).
pub fn cap_text(s: &str) -> String {
    match s.char_indices().nth(TEXT_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// SHA-256 of `bytes`, the first 16 hex digits: the config digest.
pub fn digest(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends an event line: `{"timestamp":"…","kind":"…",…}\n`.
pub fn write_event_line(
    out: &mut Vec<u8>,
    zone: &mut crate::time::ZoneFormatter,
    at: i64,
    event: &Event,
) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    zone.write_micros(out, at);
    out.extend_from_slice(b"\",");
    let start = out.len();
    // Serializing plain data into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, event).is_err() {
        out.truncate(start);
        out.extend_from_slice(b"\"kind\":\"unserializable\"}");
    } else {
        // Drop the object's own `{`: the timestamp opened it.
        out.remove(start);
    }
    out.push(b'\n');
}

/// Appends an orders line: Kite's JSON object with `timestamp` and
/// `connection_id` added at its end. Returns how many bytes of the line are
/// Kite's (`{` and its members: what [`order_key`] hashes). `None` when
/// `text` is not a JSON object on one line after trimming (newlines outside
/// strings become spaces; JSON allows none inside them).
pub fn write_order_line(
    out: &mut Vec<u8>,
    zone: &mut crate::time::ZoneFormatter,
    at: i64,
    connection_id: u8,
    text: &str,
) -> Option<usize> {
    let t = text.trim();
    let inner = t.strip_prefix('{')?.strip_suffix('}')?;
    let start = out.len();
    out.push(b'{');
    let from = out.len();
    out.extend_from_slice(inner.trim_end().as_bytes());
    for b in &mut out[from..] {
        if *b == b'\n' || *b == b'\r' {
            *b = b' ';
        }
    }
    let kite = out.len() - start;
    if !inner.trim().is_empty() {
        out.push(b',');
    }
    out.extend_from_slice(b"\"timestamp\":\"");
    zone.write_micros(out, at);
    out.extend_from_slice(b"\",\"connection_id\":");
    out.extend_from_slice(connection_id.to_string().as_bytes());
    out.extend_from_slice(b"}\n");
    Some(kite)
}

/// The part of an orders line that is Kite's (what [`write_order_line`]
/// wrote before its own `timestamp`): the same bytes for the same update,
/// whichever socket brought it and whenever — the key of the dedupe, also
/// after a restart (read back from the day's file).
pub fn order_key(line: &[u8]) -> &[u8] {
    let find = |pat: &[u8]| line.windows(pat.len()).rposition(|w| w == pat);
    match find(b",\"timestamp\":\"").or_else(|| find(b"\"timestamp\":\"")) {
        Some(i) => &line[..i],
        None => line,
    }
}

/// Why a journal line could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No `timestamp`, or not one tickcap writes.
    #[error("no valid timestamp")]
    Timestamp,
    /// A `kind` this version does not know (a newer tickcap wrote it).
    #[error("unknown kind {0:?}")]
    UnknownKind(String),
}

/// Reads an event line back: (epoch µs, event).
pub fn parse_event_line(line: &[u8]) -> Result<(i64, Event), ParseError> {
    let mut v: serde_json::Value = serde_json::from_slice(line)?;
    let at = v
        .get("timestamp")
        .and_then(serde_json::Value::as_str)
        .and_then(crate::time::parse_timestamp)
        .ok_or(ParseError::Timestamp)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("timestamp");
    }
    let kind = v
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned();
    serde_json::from_value(v)
        .map(|e| (at, e))
        .map_err(|_| ParseError::UnknownKind(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::ZoneFormatter;

    #[test]
    fn an_event_line_has_timestamp_then_kind_and_reads_back() {
        let mut z = ZoneFormatter::new("Asia/Kolkata").unwrap();
        let e = Event::ConnectionClosed {
            connection_id: 1,
            error: "closed".into(),
            reason: "closed by server (1011 \"bye\"\n)".into(),
            close_code: Some(1011),
            open_ms: 5,
            silent_ms: Some(2),
        };
        let mut out = Vec::new();
        write_event_line(&mut out, &mut z, 1_764_215_100_000_001, &e);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(
            "{\"timestamp\":\"2025-11-27T09:15:00.000001+05:30\",\"kind\":\"connection_closed\","
        ));
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let (at, back) = parse_event_line(&out).unwrap();
        assert_eq!((at, back), (1_764_215_100_000_001, e));
    }

    #[test]
    fn every_kind_is_written_as_its_name() {
        let mut z = ZoneFormatter::new("UTC").unwrap();
        for e in [
            Event::Heartbeat {
                received: 1,
                written: 1,
            },
            Event::Subscribe {
                connection_id: 2,
                why: Why::Hub,
                mode: "full".into(),
                tokens: vec![1, 2],
            },
            Event::Takeover {
                from: 1,
                to: 3,
                instruments: 4,
            },
        ] {
            let mut out = Vec::new();
            write_event_line(&mut out, &mut z, 0, &e);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["kind"], e.kind());
        }
    }

    #[test]
    fn an_order_line_is_kites_json_with_timestamp_and_connection_added() {
        let mut z = ZoneFormatter::new("Asia/Kolkata").unwrap();
        let kite = "{\"type\":\"order\",\n \"data\":{\"order_id\":\"1\",\"status\":\"OPEN\"}}\n";
        let mut out = Vec::new();
        write_order_line(&mut out, &mut z, 0, 3, kite).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"]["order_id"], "1");
        assert_eq!(v["connection_id"], 3);
        assert_eq!(v["timestamp"], "1970-01-01T05:30:00.000000+05:30");
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(write_order_line(&mut out, &mut z, 0, 3, "[1]").is_none());
        // The key is Kite's part: equal for the same update on another
        // socket at another time, and recovered from the line itself.
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ka = write_order_line(&mut a, &mut z, 5, 1, kite).unwrap();
        let kb = write_order_line(&mut b, &mut z, 9_000_000, 2, kite).unwrap();
        assert_eq!(&a[..ka], &b[..kb]);
        assert_eq!(order_key(&a[..a.len() - 1]), &a[..ka]);
        let mut out = Vec::new();
        write_order_line(&mut out, &mut z, 0, 1, "{}").unwrap();
        serde_json::from_slice::<serde_json::Value>(&out).unwrap();
    }

    #[test]
    fn unknown_kinds_and_bad_timestamps_are_errors_not_panics() {
        assert!(matches!(
            parse_event_line(br#"{"timestamp":"2026-11-27T09:15:00+05:30","kind":"future"}"#),
            Err(ParseError::UnknownKind(k)) if k == "future"
        ));
        assert!(matches!(
            parse_event_line(br#"{"timestamp":"2026-13-27T09:15:00+05:30","kind":"heartbeat","received":1,"written":1}"#),
            Err(ParseError::Timestamp)
        ));
        assert!(parse_event_line(b"{").is_err());
    }

    #[test]
    fn a_full_or_closed_journal_channel_counts_every_record_it_loses() {
        let stats = Arc::new(Stats::default());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let e = Emitter::new(tx, Clock::system(), Arc::clone(&stats));
        let hb = || Event::Heartbeat {
            received: 0,
            written: 0,
        };
        e.emit(hb());
        e.emit(hb()); // full
        e.order(0, 1, "{}");
        assert_eq!(stats.journal.emitted.load(Ordering::Relaxed), 1);
        assert_eq!(stats.journal.lost.load(Ordering::Relaxed), 2);
        drop(rx);
        e.emit(hb()); // nobody reads
        assert_eq!(stats.journal.lost.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn remote_text_is_capped() {
        let long = "é".repeat(TEXT_MAX + 5);
        assert_eq!(cap_text(&long).chars().count(), TEXT_MAX + 1);
        assert_eq!(cap_text("short"), "short");
    }
}
