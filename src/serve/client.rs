//! One client of the hub: its WebSocket (upgrade, then frames), its
//! subscriptions, the batch of packets being built for it, and its bounded
//! send queue.
//!
//! The queue is ours, in front of tungstenite: tungstenite holds at most one
//! message at a time (its write buffer is eager), so `queued` is exactly
//! what waits for a slow client, and passing the limit disconnects it
//! instead of growing.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::ErrorKind;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::http::StatusCode;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use crate::kite::{ClientRequest, Mode, RequestError};
use crate::stats::Stats;

/// Kite's limit of instruments per connection, and its words past it.
pub const MAX_SUBSCRIPTIONS: usize = 3000;
/// Kite's error text for subscriptions past the limit.
pub const TOO_MANY: &str = "Can't subscribe to more than 3000 instruments.";
/// Most packets in one message to a client.
pub const MAX_BATCH: u16 = 1000;

/// The upgrade check, run by tungstenite on the request: Kite's query
/// parameters, the `[serve] token`, and the client limit.
pub struct Gate {
    /// The token clients must present as `access_token`, if any.
    pub token: Option<String>,
    /// `max_clients` is reached: refuse with 429, as Kite does.
    pub full: bool,
    /// Counters (refusals).
    pub stats: Arc<Stats>,
    /// The `api_key` presented, for `/clients`.
    pub api_key: Rc<RefCell<String>>,
}

fn refuse(status: StatusCode, msg: &str, error_type: &str) -> ErrorResponse {
    let body = serde_json::json!({"status": "error", "message": msg, "error_type": error_type})
        .to_string();
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = status;
    r
}

impl Callback for Gate {
    fn on_request(self, req: &Request, resp: Response) -> Result<Response, ErrorResponse> {
        let q = req.uri().query().unwrap_or("");
        let key = crate::util::query_param(q, "api_key")
            .unwrap_or_default()
            .into_owned();
        let token = crate::util::query_param(q, "access_token")
            .unwrap_or_default()
            .into_owned();
        *self.api_key.borrow_mut() = crate::util::log_text(&key, 64);
        let s = &self.stats.serve;
        if key.is_empty() || self.token.as_deref().is_some_and(|t| t != token) {
            s.refused_auth.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "Incorrect `api_key` or `access_token`.",
                "TokenException",
            ));
        }
        if self.full {
            s.refused_full.fetch_add(1, Ordering::Relaxed);
            return Err(refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many connections: tickcap's [serve] max_clients is reached.",
                "NetworkException",
            ));
        }
        Ok(resp)
    }
}

type Handshake = MidHandshake<ServerHandshake<TcpStream, Gate>>;

enum Phase {
    Upgrading(Option<Handshake>),
    Open(WebSocket<TcpStream>),
}

/// A message waiting for the socket, with what it carries for the counters.
struct Queued {
    msg: Message,
    ticks: u64,
    oldest_micros: i64,
}

/// What was sent when a message left (for counters and latency).
#[derive(Debug, Default, Clone, Copy)]
pub struct Sent {
    /// Ticks in it.
    pub ticks: u64,
    /// Receive time of its oldest tick, epoch µs (0 for non-tick messages).
    pub oldest_micros: i64,
}

/// The Kite binary message being built for one client: a 2-byte packet
/// count, then each packet with its 2-byte length. Pure (no socket), so the
/// fan-out bench measures exactly the per-client path.
#[derive(Debug, Default)]
pub struct Batch {
    buf: Vec<u8>,
    count: u16,
    oldest_micros: i64,
}

impl Batch {
    /// Appends one encoded packet (without its length prefix); true when
    /// the message is full ([`MAX_BATCH`] packets) and should be finished.
    #[inline]
    pub fn push(&mut self, packet: &[u8], recv_micros: i64) -> bool {
        if self.count == 0 {
            self.buf.clear();
            self.buf.extend_from_slice(&[0, 0]);
            self.oldest_micros = recv_micros;
        }
        self.buf
            .extend_from_slice(&(packet.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(packet);
        self.count += 1;
        self.count >= MAX_BATCH
    }

    /// The finished message (count filled in), its tick count and the
    /// receive time of its oldest tick; `None` when empty. The buffer is
    /// kept for the next message.
    pub fn finish(&mut self) -> Option<(tungstenite::Bytes, u64, i64)> {
        if self.count == 0 {
            return None;
        }
        self.buf[..2].copy_from_slice(&self.count.to_be_bytes());
        let n = u64::from(self.count);
        self.count = 0;
        Some((
            tungstenite::Bytes::copy_from_slice(&self.buf),
            n,
            self.oldest_micros,
        ))
    }
}

/// One client.
pub struct Client {
    phase: Phase,
    /// Peer address.
    pub peer: String,
    /// When it connected, epoch µs.
    pub since_micros: i64,
    /// When it connected (for the upgrade deadline).
    pub accepted: Instant,
    /// The `api_key` it presented.
    pub api_key: Rc<RefCell<String>>,
    /// Instruments and their modes.
    pub subs: HashMap<u32, Mode>,
    out: VecDeque<Queued>,
    in_flight: Option<Sent>,
    /// Bytes in `out`.
    pub queued: usize,
    /// The socket said WouldBlock: wait for a writable event.
    blocked: bool,
    /// The read budget ran out: read again next turn.
    pub more_to_read: bool,
    batch: Batch,
    /// Ticks sent.
    pub ticks_sent: u64,
    /// Bytes handed to the socket.
    pub bytes_sent: u64,
    /// Requests refused.
    pub bad_requests: u64,
    /// The send queue limit, bytes (checked on every message queued).
    pub queue_limit: usize,
    /// A message did not fit under `queue_limit`: the client is too slow
    /// and is closed at the next flush (the message was not queued).
    pub over_limit: bool,
}

/// What reading a client produced.
#[derive(Debug, Default)]
pub struct Requests {
    /// Subscription changes: (token, old mode, new mode).
    pub changes: Vec<(u32, Option<Mode>, Option<Mode>)>,
    /// The client is gone (with why), or `None`.
    pub ended: Option<String>,
    /// It broke the WebSocket protocol (close with 1002).
    pub protocol_error: bool,
}

impl Client {
    /// Starts the upgrade of an accepted socket.
    pub fn accept(
        stream: TcpStream,
        peer: String,
        gate: Gate,
        since_micros: i64,
    ) -> Result<Client, String> {
        let api_key = Rc::clone(&gate.api_key);
        let cfg = WebSocketConfig::default()
            .write_buffer_size(0)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20));
        let phase = match tungstenite::accept_hdr_with_config(stream, gate, Some(cfg)) {
            Ok(ws) => Phase::Open(ws),
            Err(HandshakeError::Interrupted(mid)) => Phase::Upgrading(Some(mid)),
            Err(HandshakeError::Failure(e)) => return Err(format!("upgrade failed: {e}")),
        };
        Ok(Client {
            phase,
            peer,
            since_micros,
            accepted: Instant::now(),
            api_key,
            subs: HashMap::new(),
            out: VecDeque::new(),
            in_flight: None,
            queued: 0,
            blocked: false,
            more_to_read: false,
            batch: Batch::default(),
            ticks_sent: 0,
            bytes_sent: 0,
            bad_requests: 0,
            queue_limit: usize::MAX,
            over_limit: false,
        })
    }

    /// The upgrade is done.
    pub fn is_open(&self) -> bool {
        matches!(self.phase, Phase::Open(_))
    }

    /// The socket, for registration.
    pub fn stream(&mut self) -> Option<&mut TcpStream> {
        match &mut self.phase {
            Phase::Open(ws) => Some(ws.get_mut()),
            Phase::Upgrading(Some(mid)) => Some(mid.get_mut().get_mut()),
            Phase::Upgrading(None) => None,
        }
    }

    /// Drives the upgrade; `Err` ends the client (a refusal included: the
    /// refusal's HTTP response has been written by then).
    pub fn continue_upgrade(&mut self) -> Result<(), String> {
        let Phase::Upgrading(mid) = &mut self.phase else {
            return Ok(());
        };
        let Some(m) = mid.take() else {
            return Err("upgrade lost".into());
        };
        match m.handshake() {
            Ok(ws) => {
                self.phase = Phase::Open(ws);
                Ok(())
            }
            Err(HandshakeError::Interrupted(m)) => {
                *mid = Some(m);
                Ok(())
            }
            Err(HandshakeError::Failure(e)) => Err(format!("upgrade refused or failed: {e}")),
        }
    }

    /// Reads up to `budget` messages and applies the requests in them.
    pub fn read(&mut self, budget: usize, stats: &Stats) -> Requests {
        let mut r = Requests::default();
        self.more_to_read = false;
        let mut replies: Vec<String> = Vec::new();
        {
            let Phase::Open(ws) = &mut self.phase else {
                return r;
            };
            for n in 0.. {
                if n == budget {
                    self.more_to_read = true;
                    break;
                }
                match ws.read() {
                    Ok(Message::Text(t)) => match ClientRequest::parse(t.as_str()) {
                        Ok(req) => {
                            if let Some(e) = apply(&mut self.subs, req, &mut r.changes) {
                                replies.push(e);
                            }
                        }
                        Err(e) => {
                            self.bad_requests += 1;
                            stats.serve.bad_requests.fetch_add(1, Ordering::Relaxed);
                            replies.push(request_error(&e));
                        }
                    },
                    Ok(Message::Binary(_)) => {
                        self.bad_requests += 1;
                        stats.serve.bad_requests.fetch_add(1, Ordering::Relaxed);
                        replies.push(
                            "binary messages from clients are not part of the protocol; send JSON text"
                                .to_owned(),
                        );
                    }
                    Ok(_) => {} // ping (answered by tungstenite), pong, close (answered)
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(
                        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                    ) => {
                        r.ended = Some("the client closed the connection".into());
                        break;
                    }
                    Err(tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    )) => {
                        r.ended = Some("the client went away without a close frame".into());
                        break;
                    }
                    Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {
                        r.ended = Some("the client went away without a close frame".into());
                        break;
                    }
                    Err(
                        e @ (tungstenite::Error::Protocol(_)
                        | tungstenite::Error::Capacity(_)
                        | tungstenite::Error::Utf8(_)),
                    ) => {
                        self.bad_requests += 1;
                        stats.serve.bad_requests.fetch_add(1, Ordering::Relaxed);
                        r.ended = Some(format!("protocol error: {e}"));
                        r.protocol_error = true;
                        break;
                    }
                    Err(e) => {
                        r.ended = Some(format!("read failed: {e}"));
                        break;
                    }
                }
            }
        }
        for e in replies {
            self.send_text(error_text(&e));
        }
        r
    }

    /// Appends one packet (already encoded, without its length prefix).
    /// Returns true when the batch is full and should be finished.
    #[inline]
    pub fn push_packet(&mut self, packet: &[u8], recv_micros: i64) -> bool {
        self.batch.push(packet, recv_micros)
    }

    /// Turns the batch into a message on the queue.
    pub fn finish_batch(&mut self) {
        if let Some((bytes, ticks, oldest_micros)) = self.batch.finish() {
            self.enqueue(Queued {
                msg: Message::Binary(bytes),
                ticks,
                oldest_micros,
            });
        }
    }

    /// Queues Kite's 1-byte heartbeat.
    pub fn heartbeat(&mut self) {
        self.enqueue(Queued {
            msg: Message::binary(vec![0u8]),
            ticks: 0,
            oldest_micros: 0,
        });
    }

    /// Queues a text frame.
    pub fn send_text(&mut self, text: String) {
        self.enqueue(Queued {
            msg: Message::text(text),
            ticks: 0,
            oldest_micros: 0,
        });
    }

    /// Queues a message unless it would take the queue past its limit:
    /// checked per message, so memory stays bounded however many ticks
    /// one round fans out.
    fn enqueue(&mut self, q: Queued) {
        if self.over_limit || self.queued + q.msg.len() > self.queue_limit {
            self.over_limit = true;
            return;
        }
        self.queued += q.msg.len();
        self.out.push_back(q);
    }

    /// Whether there is something to write and the socket may take it.
    pub fn wants_write(&self) -> bool {
        !self.blocked && (!self.out.is_empty() || self.in_flight.is_some())
    }

    /// The socket became writable.
    pub fn writable(&mut self) {
        self.blocked = false;
    }

    /// Writes what the socket takes; calls `sent` for each message that
    /// left. `Err` ends the client.
    pub fn pump(&mut self, mut sent: impl FnMut(Sent, usize)) -> Result<(), String> {
        let Phase::Open(ws) = &mut self.phase else {
            return Ok(());
        };
        loop {
            match ws.flush() {
                Ok(()) => {
                    if let Some(s) = self.in_flight.take() {
                        self.ticks_sent += s.ticks;
                        sent(s, 0);
                    }
                    let Some(q) = self.out.pop_front() else {
                        return Ok(());
                    };
                    let len = q.msg.len();
                    self.queued -= len;
                    self.bytes_sent += len as u64;
                    sent(Sent::default(), len);
                    self.in_flight = Some(Sent {
                        ticks: q.ticks,
                        oldest_micros: q.oldest_micros,
                    });
                    match ws.write(q.msg) {
                        Ok(()) => {}
                        Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                            self.blocked = true;
                            return Ok(());
                        }
                        Err(e) => return Err(format!("write failed: {e}")),
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    self.blocked = true;
                    return Ok(());
                }
                Err(e) => return Err(format!("write failed: {e}")),
            }
        }
    }

    /// Sends a close frame with `reason` (best effort: a client too slow to
    /// read may never see it) and drops the queue. The error texts still
    /// queued go first, so a client closed for breaking the protocol is
    /// told why before the close frame.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        let texts: Vec<Message> = self
            .out
            .drain(..)
            .map(|q| q.msg)
            .filter(Message::is_text)
            .collect();
        self.queued = 0;
        if let Phase::Open(ws) = &mut self.phase {
            let _ = ws.flush();
            for t in texts {
                if ws.write(t).is_err() {
                    break;
                }
            }
            let _ = ws.close(Some(CloseFrame {
                code,
                reason: reason.chars().take(120).collect::<String>().into(),
            }));
            let _ = ws.flush();
        }
    }
}

/// A Kite `error` text frame.
pub fn error_text(message: &str) -> String {
    serde_json::json!({"type": "error", "data": message}).to_string()
}

fn request_error(e: &RequestError) -> String {
    match e {
        RequestError::UnknownMode(m) => format!("{m}"),
        RequestError::UnknownAction(a) => format!(
            "unknown action {:?}: use subscribe, unsubscribe or mode",
            crate::util::log_text(a, 40)
        ),
        RequestError::Malformed { reason, .. } => {
            format!(
                "not a Kite request ({}): send {{\"a\":\"subscribe\",\"v\":[tokens]}}",
                crate::util::log_text(reason, 120)
            )
        }
    }
}

/// Applies one request to a client's subscriptions, recording each change;
/// returns the error text for the client, if any. Kite's rules: subscribe
/// adds in quote mode; past 3000 instruments the excess is refused with
/// Kite's words; `mode` changes only instruments already subscribed.
pub fn apply(
    subs: &mut HashMap<u32, Mode>,
    req: ClientRequest,
    changes: &mut Vec<(u32, Option<Mode>, Option<Mode>)>,
) -> Option<String> {
    match req {
        ClientRequest::Subscribe(tokens) => {
            let mut refused = 0usize;
            for t in tokens {
                if subs.contains_key(&t) || t == 0 {
                    continue;
                }
                if subs.len() >= MAX_SUBSCRIPTIONS {
                    refused += 1;
                    continue;
                }
                subs.insert(t, Mode::Quote);
                changes.push((t, None, Some(Mode::Quote)));
            }
            (refused > 0).then(|| TOO_MANY.to_owned())
        }
        ClientRequest::Unsubscribe(tokens) => {
            for t in tokens {
                if let Some(m) = subs.remove(&t) {
                    changes.push((t, Some(m), None));
                }
            }
            None
        }
        ClientRequest::Mode(mode, tokens) => {
            for t in tokens {
                if let Some(m) = subs.get_mut(&t) {
                    if *m != mode {
                        changes.push((t, Some(*m), Some(mode)));
                        *m = mode;
                    }
                }
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_a_kite_message() {
        let mut b = Batch::default();
        assert!(b.finish().is_none());
        let mut p = Vec::new();
        for t in [256u32, 512] {
            crate::kite::encode_packet(
                &crate::kite::Tick::new(crate::kite::PacketKind::Ltp, t),
                &mut p,
            );
            b.push(&p, 7);
            p.clear();
        }
        let (msg, n, oldest) = b.finish().unwrap();
        assert_eq!((n, oldest), (2, 7));
        let tokens: Vec<u32> = crate::kite::decode_message(&msg)
            .map(|t| t.unwrap().instrument_token)
            .collect();
        assert_eq!(tokens, [256, 512]);
    }

    #[test]
    fn requests_follow_kites_rules() {
        let mut subs = HashMap::new();
        let mut ch = Vec::new();
        assert_eq!(
            apply(
                &mut subs,
                ClientRequest::Subscribe(vec![256, 512, 256]),
                &mut ch
            ),
            None
        );
        assert_eq!(subs[&256], Mode::Quote, "subscribe starts in quote mode");
        assert_eq!(ch.len(), 2);
        ch.clear();
        apply(
            &mut subs,
            ClientRequest::Mode(Mode::Full, vec![256, 999]),
            &mut ch,
        );
        assert_eq!(
            ch,
            [(256, Some(Mode::Quote), Some(Mode::Full))],
            "999 is not subscribed"
        );
        ch.clear();
        apply(&mut subs, ClientRequest::Unsubscribe(vec![512, 7]), &mut ch);
        assert_eq!(ch, [(512, Some(Mode::Quote), None)]);
        // 10,000 tokens: 3000 in all, the excess refused in Kite's words.
        let many: Vec<u32> = (1..=10_000).collect();
        let e = apply(&mut subs, ClientRequest::Subscribe(many), &mut ch);
        assert_eq!(e.as_deref(), Some(TOO_MANY));
        assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
    }
}
