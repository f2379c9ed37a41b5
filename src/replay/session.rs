//! One client connection of the replay feed: the upgrade, the request
//! handling, the emission loop and the faults.

use std::collections::HashMap;
use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::http::StatusCode;
use tungstenite::{Message, WebSocket};

use super::recorded::in_mode;
use super::synthetic::Instrument;
use super::{lock, Shared, Source};
use crate::kite::{ClientRequest, MessageBuilder, Mode, Tick};

/// A packet of no Kite layout (13 bytes), for `--malformed-every`.
const MALFORMED: [u8; 13] = [0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// While busy emitting, look for client requests this often.
const READ_CHECK: Duration = Duration::from_millis(2);
/// Longest nap of an idle session (nothing due): bounds how late a client's
/// request is read while nothing is sent.
const IDLE_NAP: Duration = Duration::from_millis(20);
/// How long a blocked write may hold the loop before it goes round again.
const WRITE_TIMEOUT: Duration = Duration::from_millis(50);

fn mode_index(m: Mode) -> usize {
    match m {
        Mode::Ltp => 0,
        Mode::Quote => 1,
        Mode::Full => 2,
    }
}

fn refuse(status: StatusCode, msg: &str) -> ErrorResponse {
    let body =
        serde_json::json!({"status": "error", "message": msg, "error_type": "TokenException"})
            .to_string();
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = status;
    r
}

/// Releases the API key's connection slot when the session ends.
struct KeySlot<'a> {
    shared: &'a Shared,
    key: String,
}

impl Drop for KeySlot<'_> {
    fn drop(&mut self) {
        let mut m = lock(&self.shared.per_key);
        if let Some(n) = m.get_mut(&self.key) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Serves one accepted TCP connection until it closes or the feed stops.
#[allow(clippy::result_large_err)] // the handshake callback's error type is tungstenite's
pub(super) fn serve(shared: &Arc<Shared>, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Err(e) = stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(5))))
    {
        tracing::warn!("replay: {peer}: socket setup failed: {e}");
        return;
    }
    // Kite's historical endpoint shares the listener (plain HTTP).
    if super::history::is_history_request(&stream) {
        return super::history::serve(shared, stream);
    }
    let cfg = &shared.cfg;
    let mut slot_key: Option<String> = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let n = shared.handshakes.fetch_add(1, Ordering::Relaxed);
        let q = req.uri().query().unwrap_or("");
        let key = crate::util::query_param(q, "api_key")
            .unwrap_or_default()
            .into_owned();
        let token = crate::util::query_param(q, "access_token")
            .unwrap_or_default()
            .into_owned();
        if n < cfg.faults.reject_auth {
            shared
                .counters
                .faults
                .auth_rejected
                .fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "Incorrect `api_key` or `access_token`. (injected fault)",
            ));
        }
        let bad = |want: &Option<String>, got: &str| want.as_deref().is_some_and(|w| w != got);
        if bad(&cfg.api_key, &key) || bad(&cfg.access_token, &token) {
            shared.counters.refused_auth.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "Incorrect `api_key` or `access_token`.",
            ));
        }
        let mut per_key = lock(&shared.per_key);
        let open = per_key.entry(key.to_owned()).or_insert(0);
        if *open >= cfg.max_connections_per_key {
            shared
                .counters
                .refused_limit
                .fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "at most {} connections per api_key",
                    cfg.max_connections_per_key
                ),
            ));
        }
        *open += 1;
        slot_key = Some(key.to_owned());
        Ok(resp)
    };
    // The error holds the callback (and its borrow): keep only its text.
    let ws = tungstenite::accept_hdr(stream, callback).map_err(|e| e.to_string());
    let _slot = slot_key.map(|key| KeySlot { shared, key });
    let mut ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!("replay: {peer}: handshake ended: {e}");
            return;
        }
    };
    if let Err(e) = ws
        .get_ref()
        .set_read_timeout(None)
        .and_then(|()| ws.get_ref().set_write_timeout(Some(WRITE_TIMEOUT)))
    {
        tracing::warn!("replay: {peer}: socket setup failed: {e}");
        return;
    }
    shared.counters.accepted.fetch_add(1, Ordering::Relaxed);
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let counter = Arc::new(AtomicU64::new(0));
    lock(&shared.per_connection).push((id, Arc::clone(&counter)));
    tracing::info!("replay: connection {id} from {peer} open");
    let key = _slot.as_ref().map(|s| s.key.clone()).unwrap_or_default();
    let mut s = Session::new(shared, counter, id, key);
    let end = s.run(&mut ws);
    tracing::info!("replay: connection {id} closed: {end}");
}

struct Session<'a> {
    shared: &'a Shared,
    sent: Arc<AtomicU64>,
    /// Subscribed tokens in subscription order (round-robin for synthetic).
    order: Vec<u32>,
    modes: HashMap<u32, Mode>,
    cursor: usize,
    /// Ticks sent on this connection (for `--malformed-every`).
    ticks: u64,
    out: Vec<u8>,
    /// A write timed out: its frame is queued in tungstenite; flush before more.
    backed_up: bool,
    /// Index of the next recorded tick to consider.
    rec_pos: usize,
    /// Broadcast mode: the next sequence number per instrument.
    cursors: HashMap<u32, u64>,
    /// Connection number (seeds the drop timing).
    id: u32,
    /// The api_key it connected with (for `drop_only_key`).
    key: String,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, sent: Arc<AtomicU64>, id: u32, key: String) -> Self {
        Session {
            shared,
            sent,
            order: Vec::new(),
            modes: HashMap::new(),
            cursor: 0,
            ticks: 0,
            out: Vec::with_capacity(64 * 1024),
            backed_up: false,
            rec_pos: 0,
            cursors: HashMap::new(),
            id,
            key,
        }
    }

    /// The session loop; returns why it ended.
    fn run(&mut self, ws: &mut WebSocket<TcpStream>) -> String {
        let cfg = &self.shared.cfg;
        let f = &cfg.faults;
        let start = Instant::now();
        let mut next_hb = start + cfg.heartbeat;
        let mut next_read = start;
        let mut next_send = start;
        // Each connection drops at a random time in [0.5, 1.5] × drop_every
        // (seeded by --seed and the connection number), so that several
        // connections do not all drop at once.
        let mut rng =
            crate::util::SplitMix::new(cfg.seed() ^ u64::from(self.id).wrapping_mul(0x9e37_79b9));
        let drops_here = f.drop_only_key.as_ref().is_none_or(|k| *k == self.key);
        let drop_at = f
            .drop_every
            .filter(|_| drops_here)
            .map(|d| start + d.mul_f64(0.5 + (rng.below(1000) as f64) / 1000.0));
        let mut next_stall = f.stall_every.map(|d| start + d);
        let mut stall_until: Option<Instant> = None;
        let mut next_error = f.error_every.map(|d| start + d);
        let mut next_order = f.order_every.map(|d| start + d);
        let mut orders = 0u64;
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return close(ws, "feed stopping");
            }
            let now = Instant::now();
            if drop_at.is_some_and(|t| now >= t) {
                self.shared
                    .counters
                    .faults
                    .drops
                    .fetch_add(1, Ordering::Relaxed);
                return abrupt_drop(ws);
            }
            if let (Some(at), Some(every)) = (next_stall, f.stall_every) {
                if now >= at {
                    self.shared
                        .counters
                        .faults
                        .stalls
                        .fetch_add(1, Ordering::Relaxed);
                    stall_until = Some(now + f.stall_for);
                    next_stall = Some(now + f.stall_for + every);
                }
            }
            if now >= next_read || self.order.is_empty() {
                if let Err(e) = self.read_requests(ws) {
                    return e;
                }
                next_read = now + READ_CHECK;
            }
            if stall_until.is_some_and(|t| now < t) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            if stall_until.take().is_some() {
                // the stall swallowed heartbeats; resume the rhythm from now
                next_hb = now + cfg.heartbeat;
            }
            if self.backed_up {
                match ws.flush() {
                    Ok(()) => self.backed_up = false,
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return format!("write failed: {e}"),
                }
            }
            if now >= next_hb && cfg.market {
                // A market session forwards everything generated so far
                // before a heartbeat: a heartbeat seen after a halt then
                // proves that nothing generated is still on its way.
                if let Err(e) = self.send_all_due(ws, start) {
                    return e;
                }
            }
            if now >= next_hb && !self.backed_up {
                if let Err(e) = self.send(ws, Message::binary(vec![0u8])) {
                    return e;
                }
                self.shared
                    .counters
                    .heartbeats
                    .fetch_add(1, Ordering::Relaxed);
                next_hb += cfg.heartbeat;
            }
            if let (Some(at), Some(every)) = (next_order, f.order_every) {
                if now >= at {
                    orders += 1;
                    // Shaped like Kite's postback (a subset of its keys);
                    // three instruments in turn.
                    let (token, symbol) =
                        [(408_065, "INFY"), (738_561, "RELIANCE"), (2_953_217, "TCS")]
                            [(orders % 3) as usize];
                    let text = format!(
                        r#"{{"type":"order","data":{{"order_id":"replay-{orders}","exchange_order_id":"1100000{orders:09}","placed_by":"AB1234","status":"COMPLETE","status_message":null,"tradingsymbol":"{symbol}","exchange":"NSE","instrument_token":{token},"order_type":"MARKET","transaction_type":"BUY","validity":"DAY","product":"CNC","quantity":1,"filled_quantity":1,"unfilled_quantity":0,"average_price":1500.5,"price":0,"order_timestamp":"2026-11-27 10:00:00"}}}}"#
                    );
                    if let Err(e) = self.send(ws, Message::text(text)) {
                        return e;
                    }
                    next_order = Some(at + every);
                }
            }
            if let (Some(at), Some(every)) = (next_error, f.error_every) {
                if now >= at {
                    let text = r#"{"type":"error","data":"replay: injected error message"}"#;
                    if let Err(e) = self.send(ws, Message::text(text)) {
                        return e;
                    }
                    self.shared
                        .counters
                        .faults
                        .errors
                        .fetch_add(1, Ordering::Relaxed);
                    next_error = Some(at + every);
                }
            }
            if self.backed_up {
                continue;
            }
            if let Some(every) = cfg.send_every {
                // Kite-like: what came due since the last send, together.
                if now < next_send {
                    let until_hb = next_hb.saturating_duration_since(now);
                    std::thread::sleep((next_send - now).min(until_hb).min(IDLE_NAP));
                    continue;
                }
                next_send = now + every;
                if let Err(e) = self.send_all_due(ws, start) {
                    return e;
                }
                continue;
            }
            let emitted = match self.build_batch(start) {
                0 => None,
                n => Some(n),
            };
            match emitted {
                Some(_) => {
                    let msg = Message::binary(tungstenite::Bytes::copy_from_slice(&self.out));
                    if let Err(e) = self.send(ws, msg) {
                        return e;
                    }
                }
                None => {
                    // Nothing to send: sleep until the next tick is due (at
                    // least 200 µs), never past the next heartbeat, and at
                    // most IDLE_NAP when nothing will be due (count used up,
                    // halted, nothing subscribed) — requests are read then.
                    let idle = match self.shared.pacer.next_due() {
                        Some(d)
                            if !self.order.is_empty()
                                && !self.shared.halted.load(Ordering::Relaxed) =>
                        {
                            d.max(Duration::from_micros(200))
                        }
                        _ => IDLE_NAP,
                    };
                    let until_hb = next_hb.saturating_duration_since(Instant::now());
                    std::thread::sleep(idle.min(IDLE_NAP).min(until_hb));
                }
            }
        }
    }

    /// Sends what is due, a message at a time, until nothing is or the
    /// socket backs up.
    fn send_all_due(
        &mut self,
        ws: &mut WebSocket<TcpStream>,
        start: Instant,
    ) -> Result<(), String> {
        while !self.backed_up {
            if self.build_batch(start) == 0 {
                break;
            }
            let msg = Message::binary(tungstenite::Bytes::copy_from_slice(&self.out));
            self.send(ws, msg)?;
        }
        Ok(())
    }

    /// Sends one message; a timed-out write leaves it queued (`backed_up`).
    fn send(&mut self, ws: &mut WebSocket<TcpStream>, msg: Message) -> Result<(), String> {
        match ws.send(msg) {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
            {
                self.backed_up = true;
                Ok(())
            }
            Err(e) => Err(format!("write failed: {e}")),
        }
    }

    /// Handles every request the client has sent so far, without blocking.
    fn read_requests(&mut self, ws: &mut WebSocket<TcpStream>) -> Result<(), String> {
        if let Err(e) = ws.get_ref().set_nonblocking(true) {
            return Err(format!("socket: {e}"));
        }
        let result = loop {
            match ws.read() {
                Ok(Message::Text(t)) => {
                    if let Some(reply) = self.handle(t.as_str()) {
                        if let Err(e) = ws.write(Message::text(reply)) {
                            if !matches!(&e, tungstenite::Error::Io(io) if io.kind() == ErrorKind::WouldBlock)
                            {
                                break Err(format!("write failed: {e}"));
                            }
                        }
                    }
                }
                Ok(Message::Close(_)) => {
                    // tungstenite has queued the close reply: send it before
                    // dropping the socket, or the client sees an unclean
                    // close (1006) — Kite completes the handshake.
                    let _ = ws.get_ref().set_nonblocking(false);
                    let _ = ws.flush();
                    break Err("client closed".to_owned());
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(tungstenite::Error::ConnectionClosed) => break Err("client closed".to_owned()),
                Err(e) => break Err(format!("read failed: {e}")),
            }
        };
        if let Err(e) = ws.get_ref().set_nonblocking(false) {
            return Err(format!("socket: {e}"));
        }
        result
    }

    /// Applies one client request; returns an `error` text frame to send back.
    fn handle(&mut self, text: &str) -> Option<String> {
        let error =
            |msg: String| Some(serde_json::json!({"type": "error", "data": msg}).to_string());
        match ClientRequest::parse(text) {
            Ok(ClientRequest::Subscribe(tokens)) => {
                let limit = self.shared.cfg.max_instruments;
                let mut refused = 0usize;
                for t in tokens {
                    if self.modes.contains_key(&t) {
                        continue;
                    }
                    if self.order.len() >= limit {
                        refused += 1;
                        continue;
                    }
                    self.order.push(t);
                    self.modes.insert(t, Mode::Quote);
                    if let (true, Source::Synthetic { seed }) =
                        (self.shared.cfg.market, &self.shared.cfg.source)
                    {
                        self.cursors
                            .insert(t, super::market_join(self.shared, t, *seed));
                    }
                }
                (refused > 0).then(|| {
                    format!("subscription limit of {limit} instruments per connection reached: {refused} not subscribed")
                })
                .and_then(error)
            }
            Ok(ClientRequest::Unsubscribe(tokens)) => {
                for t in &tokens {
                    self.modes.remove(t);
                    self.cursors.remove(t);
                }
                self.order.retain(|t| self.modes.contains_key(t));
                None
            }
            Ok(ClientRequest::Mode(mode, tokens)) => {
                for t in tokens {
                    if let Some(m) = self.modes.get_mut(&t) {
                        *m = mode;
                    }
                }
                None
            }
            Err(e) => error(format!("invalid request: {e}")),
        }
    }

    /// Fills `self.out` with one binary message; returns the ticks in it.
    fn build_batch(&mut self, start: Instant) -> usize {
        self.shared.building.fetch_add(1, Ordering::SeqCst);
        let n = self.build_batch_counted(start);
        self.shared.building.fetch_sub(1, Ordering::SeqCst);
        n
    }

    fn build_batch_counted(&mut self, start: Instant) -> usize {
        self.out.clear();
        // A halted market stops generating; its sessions still forward
        // what was generated.
        let halted = self.shared.halted.load(Ordering::SeqCst) && !self.shared.cfg.market;
        if self.order.is_empty() || halted {
            return 0;
        }
        let shared = self.shared;
        let max = shared.cfg.max_batch as u64;
        let malformed_every = shared.cfg.faults.malformed_every.filter(|&n| n > 0);
        let mut per_mode = [0u64; 3];
        let mut malformed = 0u64;
        let mut n = 0usize;
        let mut b = MessageBuilder::new(&mut self.out);
        let mut push = |b: &mut MessageBuilder<'_>, t: &Tick, ticks: &mut u64| {
            b.push(t);
            per_mode[mode_index(t.mode())] += 1;
            *ticks += 1;
            if malformed_every.is_some_and(|every| (*ticks).is_multiple_of(every)) {
                b.push_raw(&MALFORMED);
                malformed += 1;
            }
        };
        match &shared.cfg.source {
            Source::Synthetic { .. } if shared.cfg.market => {
                // Forward what the exchange generated since each cursor.
                let logs = lock(&shared.broadcast);
                let tokens = self.order.len();
                let mut idle = 0;
                while (n as u64) < max && idle < tokens {
                    let token = self.order[self.cursor % tokens];
                    self.cursor = self.cursor.wrapping_add(1);
                    let next = self.cursors.get(&token).copied().unwrap_or(0);
                    match logs.get(&token).and_then(|l| l.peek(next)) {
                        Some((t, used)) => {
                            idle = 0;
                            self.cursors.insert(token, used + 1);
                            let mode = self.modes.get(&token).copied().unwrap_or(Mode::Quote);
                            push(&mut b, &in_mode(&t, mode), &mut self.ticks);
                            n += 1;
                        }
                        None => idle += 1,
                    }
                }
            }
            Source::Synthetic { seed } => {
                let want = if shared.cfg.rate == 0 || shared.cfg.send_every.is_some() {
                    // Unpaced, or Kite-like: all that is due, in one message.
                    max
                } else {
                    max.min(self.order.len() as u64 * 4).max(1)
                };
                let granted = shared.pacer.claim(want) as usize;
                if granted > 0 {
                    let now_secs = (shared.cfg.clock.now_micros() / 1_000_000).max(0) as u32;
                    if shared.cfg.broadcast {
                        let mut map = lock(&shared.broadcast);
                        for _ in 0..granted {
                            let token = self.order[self.cursor % self.order.len()];
                            self.cursor = self.cursor.wrapping_add(1);
                            let mode = self.modes.get(&token).copied().unwrap_or(Mode::Quote);
                            let feed = map
                                .entry(token)
                                .or_insert_with(|| super::synthetic::Broadcast::new(token, *seed));
                            let next = *self.cursors.entry(token).or_insert_with(|| feed.head());
                            let (t, used) = feed.get(next, now_secs);
                            self.cursors.insert(token, used + 1);
                            push(&mut b, &in_mode(&t, mode), &mut self.ticks);
                        }
                    } else {
                        let mut instruments = lock(&shared.instruments);
                        for _ in 0..granted {
                            let token = self.order[self.cursor % self.order.len()];
                            self.cursor = self.cursor.wrapping_add(1);
                            let mode = self.modes.get(&token).copied().unwrap_or(Mode::Quote);
                            let inst = instruments
                                .entry(token)
                                .or_insert_with(|| Instrument::new(token, *seed));
                            let t = inst.next_tick(mode, now_secs);
                            push(&mut b, &t, &mut self.ticks);
                        }
                    }
                    n = granted;
                }
            }
            Source::Recorded { records, speed } => {
                let paced_by_time = shared.cfg.rate == 0 && *speed > 0.0;
                let first = records.first().map_or(0, |r| r.at_micros);
                let elapsed = start.elapsed().as_micros() as f64 * speed.max(f64::MIN_POSITIVE);
                // Candidates: the next due records this connection subscribes to.
                let mut picked: Vec<(usize, Tick)> = Vec::new();
                let mut pos = self.rec_pos;
                while pos < records.len() && (picked.len() as u64) < max {
                    let r = &records[pos];
                    if paced_by_time && (r.at_micros - first) as f64 > elapsed {
                        break;
                    }
                    pos += 1;
                    if let Some(&mode) = self.modes.get(&r.tick.instrument_token) {
                        picked.push((pos, in_mode(&r.tick, mode)));
                    }
                }
                let granted = shared.pacer.claim(picked.len() as u64) as usize;
                if granted < picked.len() {
                    // resume right after the last record actually sent
                    pos = if granted == 0 {
                        self.rec_pos
                    } else {
                        picked[granted - 1].0
                    };
                    picked.truncate(granted);
                }
                self.rec_pos = pos;
                if !picked.is_empty() {
                    let mut last = lock(&shared.last_volume);
                    for (_, t) in &picked {
                        push(&mut b, t, &mut self.ticks);
                        last.insert(t.instrument_token, t.volume_traded);
                    }
                }
                n = picked.len();
            }
        }
        b.finish();
        if n == 0 {
            self.out.clear();
            return 0;
        }
        let c = &shared.counters;
        c.sent.fetch_add(n as u64, Ordering::Relaxed);
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
        for (i, v) in per_mode.iter().enumerate() {
            if *v > 0 {
                c.per_mode[i].fetch_add(*v, Ordering::Relaxed);
            }
        }
        if malformed > 0 {
            c.faults.malformed.fetch_add(malformed, Ordering::Relaxed);
        }
        n
    }
}

/// A clean close: close frame, flush, wait briefly for the client's reply.
fn close(ws: &mut WebSocket<TcpStream>, why: &str) -> String {
    let _ = ws.close(None);
    let deadline = Instant::now() + Duration::from_millis(500);
    let _ = ws
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(50)));
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut =>
            {
                let _ = ws.flush();
            }
            Err(_) => break,
        }
    }
    why.to_owned()
}

/// The drop fault: no close frame. Everything already sent is delivered
/// first (flush, then FIN), so the client's count of what arrived before the
/// drop matches ours; reading until the client's EOF avoids an RST that could
/// discard data still in its receive buffer.
fn abrupt_drop(ws: &mut WebSocket<TcpStream>) -> String {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match ws.flush() {
            Ok(()) => break,
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    let s = ws.get_mut();
    let _ = s.shutdown(Shutdown::Write);
    let _ = s.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    "dropped (injected fault)".to_owned()
}
