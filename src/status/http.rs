//! A small HTTP/1.1 server for the status port, driven by the engine's mio
//! loop (no thread of its own). Requests are parsed with httparse;
//! keep-alive and pipelining are supported; every limit is enforced:
//!
//! | limit | value | past it |
//! |---|---|---|
//! | request head (line + headers) | 16 KiB, 64 headers | 431, close |
//! | body | 64 KiB | 413, close |
//! | open client connections | 64 | 503, close |
//! | idle time on a connection | 30 s | closed |
//! | one request, first byte to last | 10 s | 408, close (slowloris: trickled bytes do not extend it) |
//! | unsent response bytes | 4 MiB | closed (a client that does not read) |
//! | all slots taken | — | the oldest incomplete (else idle) client, slow for ≥ 1 s, is evicted for the new one; else 503 |
//!
//! A rejected request's response is sent, then the write side is shut and
//! the rest of what the client sends is read and discarded (up to 8 MiB or
//! 2 s), so a client that sends a large body before reading gets its 413
//! instead of a connection reset.
//!
//! A malformed request gets 400 with a JSON `error` and the connection is
//! closed; nothing here can panic or block the loop.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};

/// Largest request head.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Most client connections at once.
pub const MAX_CLIENTS: usize = 64;
/// Idle connections are closed after this.
pub const IDLE: Duration = Duration::from_secs(30);
/// A client that lets this much response pile up is dropped.
const MAX_PENDING_OUT: usize = 4 << 20;
/// By default, a request must arrive whole within this long of its first
/// byte (`[status] request_deadline_ms`).
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// A client must have been slow (its request incomplete, or idle) this long
/// before a newcomer may take its slot.
const MIN_EVICT_AGE: Duration = Duration::from_secs(1);
/// After a final response: read and discard at most this much ...
const LINGER_BYTES: usize = 8 << 20;
/// ... for at most this long, then close.
const LINGER: Duration = Duration::from_secs(2);

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query string (after `?`), if any.
    pub query: Option<String>,
    /// `Authorization` header.
    pub authorization: Option<String>,
    /// `Host` header.
    pub host: Option<String>,
    /// `Origin` header (browsers send it on cross-site and on POST requests).
    pub origin: Option<String>,
    /// `Content-Type` header.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The peer.
    pub peer: Option<SocketAddr>,
    /// The client asked to close after this request (`Connection: close`, or HTTP/1.0).
    pub close: bool,
}

impl Request {
    /// A query parameter's value.
    pub fn param(&self, key: &str) -> Option<std::borrow::Cow<'_, str>> {
        crate::util::query_param(self.query.as_deref()?, key)
    }
}

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec(v).unwrap_or_else(|_| b"{}".to_vec());
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            body,
        }
    }

    /// A JSON `{"error": msg}` response.
    pub fn error(status: u16, msg: impl Into<String>) -> Self {
        Response::json(status, &serde_json::json!({ "error": msg.into() }))
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

struct Client {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    input: Vec<u8>,
    output: Vec<u8>,
    last_active: Instant,
    close_when_sent: bool,
    /// When the request now arriving sent its first byte.
    request_started: Option<Instant>,
    /// Final response sent and write side shut: discarding input since then
    /// (bytes discarded).
    lingering: Option<(Instant, usize)>,
}

impl Client {
    fn new(stream: TcpStream, peer: Option<SocketAddr>, now: Instant) -> Self {
        Client {
            stream,
            peer,
            input: Vec::new(),
            output: Vec::new(),
            last_active: now,
            close_when_sent: false,
            request_started: None,
            lingering: None,
        }
    }

    /// How urgently this client should give its slot to a newcomer: an
    /// incomplete request first (oldest first), then an idle connection —
    /// but only one slow for at least `MIN_EVICT_AGE`, so a client in the
    /// middle of a normal request is never the one evicted.
    fn eviction_rank(&self, now: Instant) -> Option<(u8, Instant)> {
        let old = |t: Instant| now.saturating_duration_since(t) >= MIN_EVICT_AGE;
        match self.request_started {
            Some(t) if old(t) => Some((0, t)),
            None if self.output.is_empty() && old(self.last_active) => Some((1, self.last_active)),
            _ => None,
        }
    }
}

/// The listener and its clients. Tokens `first_token..first_token+MAX_CLIENTS`.
pub struct Server {
    listener: TcpListener,
    listener_token: Token,
    first_token: usize,
    /// Client slots (slot = token − `first_token`; never more than
    /// `MAX_CLIENTS`, so every slot's token is one [`Server::owns`]).
    clients: slab::Slab<Client>,
    /// Requests served (for the status port's own metrics).
    pub served: u64,
    /// Requests refused as malformed or over a limit.
    pub rejected: u64,
    /// Clients evicted to make room for a new one.
    pub evicted: u64,
    request_deadline: Duration,
}

/// What happened when parsing a client's input.
enum Parsed {
    Incomplete,
    Request(Box<Request>, usize),
    Bad(u16, String),
}

fn parse(input: &[u8], peer: Option<SocketAddr>) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(input) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if input.len() > MAX_HEAD {
                Parsed::Bad(431, format!("request head over {MAX_HEAD} bytes"))
            } else {
                Parsed::Incomplete
            };
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Bad(431, "more than 64 headers".into())
        }
        Err(e) => return Parsed::Bad(400, format!("malformed HTTP request: {e}")),
    };
    if head_len > MAX_HEAD {
        return Parsed::Bad(431, format!("request head over {MAX_HEAD} bytes"));
    }
    let mut content_length = 0usize;
    let mut authorization = None;
    let (mut host, mut origin, mut content_type) = (None, None, None);
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("connection") {
            let v = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            close = v.contains("close") || (close && !v.contains("keep-alive"));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
            {
                Some(n) => content_length = n,
                None => return Parsed::Bad(400, "bad Content-Length".into()),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad(
                400,
                "Transfer-Encoding is not supported; send Content-Length".into(),
            );
        } else if h.name.eq_ignore_ascii_case("authorization") {
            authorization = std::str::from_utf8(h.value).ok().map(str::to_owned);
        } else if h.name.eq_ignore_ascii_case("host") {
            host = Some(String::from_utf8_lossy(h.value).trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("origin") {
            origin = Some(String::from_utf8_lossy(h.value).trim().to_owned());
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(h.value).trim().to_owned());
        }
    }
    if content_length > MAX_BODY {
        return Parsed::Bad(
            413,
            format!("body of {content_length} bytes; at most {MAX_BODY}"),
        );
    }
    if input.len() < head_len + content_length {
        return Parsed::Incomplete;
    }
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    };
    Parsed::Request(
        Box::new(Request {
            method: req.method.unwrap_or("").to_owned(),
            path,
            query,
            authorization,
            host,
            origin,
            content_type,
            body: input[head_len..head_len + content_length].to_vec(),
            peer,
            close,
        }),
        head_len + content_length,
    )
}

fn serialize(out: &mut Vec<u8>, r: &Response, keep_alive: bool) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: {}\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(&r.body);
}

impl Server {
    /// Binds `addr` and registers the listener under `listener_token`;
    /// clients get tokens from `first_token` on.
    pub fn bind(
        addr: SocketAddr,
        registry: &Registry,
        listener_token: Token,
        first_token: usize,
        request_deadline: Duration,
    ) -> std::io::Result<Self> {
        let mut listener = TcpListener::bind(addr)?;
        registry.register(&mut listener, listener_token, Interest::READABLE)?;
        Ok(Server {
            listener,
            listener_token,
            first_token,
            clients: slab::Slab::with_capacity(MAX_CLIENTS),
            served: 0,
            rejected: 0,
            evicted: 0,
            request_deadline,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Whether `token` is this server's.
    pub fn owns(&self, token: Token) -> bool {
        token == self.listener_token
            || (self.first_token..self.first_token + MAX_CLIENTS).contains(&token.0)
    }

    /// Open client connections.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// Handles a readiness event; `handle` answers each complete request.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        token: Token,
        handle: &mut dyn FnMut(&Request) -> Response,
    ) {
        if token == self.listener_token {
            self.accept(registry);
            return;
        }
        let slot = token.0 - self.first_token;
        let keep = match self.clients.get_mut(slot) {
            Some(c) => service(c, handle, &mut self.served, &mut self.rejected),
            None => return,
        };
        if !keep {
            self.close(registry, slot);
        }
    }

    fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    let now = Instant::now();
                    let free = if self.clients.len() < MAX_CLIENTS {
                        Some(self.clients.vacant_key())
                    } else {
                        // Full: evict the slowest (a trickled request, else
                        // the longest idle) so that /health stays reachable.
                        self.clients
                            .iter()
                            .filter_map(|(i, c)| c.eviction_rank(now).map(|r| (r, i)))
                            .min()
                            .map(|(_, i)| i)
                            .map(|victim| {
                                self.evicted += 1;
                                self.close(registry, victim);
                                self.clients.vacant_key()
                            })
                    };
                    let Some(slot) = free else {
                        let mut out = Vec::new();
                        serialize(
                            &mut out,
                            &Response::error(503, format!("at most {MAX_CLIENTS} status clients")),
                            false,
                        );
                        let _ = stream.write(&out);
                        self.rejected += 1;
                        continue;
                    };
                    let token = Token(self.first_token + slot);
                    if registry
                        .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let taken =
                        self.clients
                            .insert(Client::new(stream, Some(peer), Instant::now()));
                    debug_assert_eq!(taken, slot);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!("status port: accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn close(&mut self, registry: &Registry, slot: usize) {
        if let Some(mut c) = self.clients.try_remove(slot) {
            let _ = registry.deregister(&mut c.stream);
        }
    }

    /// Closes idle clients.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) {
        for slot in 0..self.clients.capacity() {
            let Some(c) = self.clients.get_mut(slot) else {
                continue;
            };
            let late = c
                .request_started
                .is_some_and(|t| now.saturating_duration_since(t) >= self.request_deadline);
            if late && !c.close_when_sent {
                // The request did not arrive whole in time: 408, then linger.
                self.rejected += 1;
                c.input.clear();
                c.request_started = None;
                serialize(
                    &mut c.output,
                    &Response::error(
                        408,
                        format!(
                            "the request did not arrive within {:?}",
                            self.request_deadline
                        ),
                    ),
                    false,
                );
                c.close_when_sent = true;
                if !flush_and_linger(c) {
                    self.close(registry, slot);
                }
                continue;
            }
            let done = match c.lingering {
                Some((since, _)) => now.saturating_duration_since(since) >= LINGER,
                None => now.saturating_duration_since(c.last_active) >= IDLE,
            };
            if done {
                self.close(registry, slot);
            }
        }
    }
}

/// Reads, answers and writes for one client; false = close it.
fn service(
    c: &mut Client,
    handle: &mut dyn FnMut(&Request) -> Response,
    served: &mut u64,
    rejected: &mut u64,
) -> bool {
    let mut buf = [0u8; 8192];
    let mut eof = false;
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => {
                if let Some((_, discarded)) = &mut c.lingering {
                    *discarded += n;
                    if *discarded > LINGER_BYTES {
                        return false;
                    }
                    continue;
                }
                let now = Instant::now();
                c.last_active = now;
                if c.input.is_empty() {
                    c.request_started.get_or_insert(now);
                }
                c.input.extend_from_slice(&buf[..n]);
                if c.input.len() > MAX_HEAD + MAX_BODY + 8192 {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while !c.close_when_sent && c.lingering.is_none() {
        match parse(&c.input, c.peer) {
            Parsed::Incomplete => break,
            Parsed::Bad(status, msg) => {
                *rejected += 1;
                serialize(&mut c.output, &Response::error(status, msg), false);
                c.close_when_sent = true;
                c.input.clear();
            }
            Parsed::Request(req, used) => {
                *served += 1;
                c.input.drain(..used);
                // The next request (pipelined) starts its own clock.
                c.request_started = (!c.input.is_empty()).then(Instant::now);
                let resp = handle(&req);
                serialize(&mut c.output, &resp, !req.close);
                if req.close {
                    c.close_when_sent = true;
                }
                if c.output.len() > MAX_PENDING_OUT {
                    return false;
                }
            }
        }
    }
    if c.input.is_empty() {
        c.request_started = None;
    }
    if eof && c.lingering.is_some() {
        return false;
    }
    if !flush_and_linger(c) {
        return false;
    }
    !(eof && c.output.is_empty())
}

/// Writes what is pending; once a final response is out, shuts the write
/// side and lingers (reading and discarding) instead of closing at once: a
/// close with unread input would reset the connection and the client might
/// never see its response. False = close now.
fn flush_and_linger(c: &mut Client) -> bool {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
                c.last_active = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    if c.output.is_empty() && c.close_when_sent && c.lingering.is_none() {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.lingering = Some((Instant::now(), 0));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Parsed {
        parse(s.as_bytes(), None)
    }

    #[test]
    fn requests_parse_with_query_body_and_auth() {
        match p("POST /subscribe?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\n\r\n{}GET") {
            Parsed::Request(r, used) => {
                assert_eq!((r.method.as_str(), r.path.as_str(), r.param("x").as_deref()), ("POST", "/subscribe", Some("1")));
                assert_eq!(r.body, b"{}");
                assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret"));
                assert_eq!(used, "POST /subscribe?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cret\r\nContent-Length: 2\r\n\r\n{}".len());
            }
            _ => panic!("not parsed"),
        }
    }

    #[test]
    fn incomplete_and_bad_requests() {
        assert!(matches!(
            p("GET /health HTTP/1.1\r\nHost"),
            Parsed::Incomplete
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"),
            Parsed::Incomplete
        ));
        assert!(matches!(p("\x00\x01garbage\r\n\r\n"), Parsed::Bad(400, _)));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
            Parsed::Bad(413, _)
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Bad(400, _)
        ));
        assert!(matches!(
            p("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Bad(400, _)
        ));
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD + 10));
        assert!(matches!(p(&long), Parsed::Bad(431, _)));
    }
}
