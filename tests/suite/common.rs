//! Test helpers: a plain blocking tungstenite client for the replay feed,
//! with timeouts everywhere so that no test can hang.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tickcap::kite::{decode_message, ClientRequest, Mode, Tick};
use tickcap::replay::{ReplayConfig, Server};
use tungstenite::{Message, WebSocket};

/// The synthetic replay feed on a free loopback port at `rate` ticks/s,
/// with `tweak` applied to its configuration (count, faults, credentials…).
pub(crate) fn synthetic_feed(rate: u64, tweak: impl FnOnce(&mut ReplayConfig)) -> Server {
    let mut cfg = ReplayConfig::synthetic("127.0.0.1:0".parse().expect("a loopback address"), rate);
    tweak(&mut cfg);
    Server::start(cfg).expect("start the replay feed")
}

/// A loopback port free at the time of asking (nothing holds it after).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `GET path` from a status port at `url`, as JSON (any status code).
/// GET with a generous deadline: a view of thousands of instruments built
/// by a debug build on a loaded machine takes seconds.
pub(crate) fn get_json_big(url: &str, path: &str) -> serde_json::Value {
    tickcap::status::client::request(url, "GET", path, None, None, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("GET {url}{path}: {e}"))
        .json()
        .unwrap_or_else(|| panic!("GET {url}{path}: not JSON"))
}

pub(crate) fn get_json(url: &str, path: &str) -> serde_json::Value {
    tickcap::status::client::get(url, path)
        .unwrap_or_else(|e| panic!("GET {url}{path}: {e}"))
        .json()
        .unwrap_or_else(|| panic!("GET {url}{path}: not JSON"))
}

/// A Kite client, just enough for tests.
pub(crate) struct Client {
    pub ws: WebSocket<TcpStream>,
}

/// What arrived in a window of time.
#[derive(Debug, Default)]
pub(crate) struct Received {
    pub ticks: Vec<Tick>,
    pub heartbeats: usize,
    pub texts: Vec<String>,
    pub decode_errors: usize,
    pub messages: usize,
    /// The connection ended (close frame, EOF or error) during the window.
    pub ended: Option<String>,
    /// It ended with a close frame.
    pub closed_cleanly: bool,
}

impl Client {
    /// Connects to `base` (ws://host:port) with credentials in the query.
    pub(crate) fn connect_with(
        base: &str,
        api_key: &str,
        token: &str,
    ) -> Result<Client, tungstenite::Error> {
        let url = format!("{base}/?api_key={api_key}&access_token={token}");
        let host = base.trim_start_matches("ws://");
        let stream = TcpStream::connect(host).map_err(tungstenite::Error::Io)?;
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(tungstenite::Error::Io)?;
        let (ws, _) = tungstenite::client(url.as_str(), stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })?;
        Ok(Client { ws })
    }

    pub(crate) fn connect(base: &str) -> Client {
        Client::connect_with(base, "key", "token").expect("connect to the replay feed")
    }

    pub(crate) fn request(&mut self, r: ClientRequest) {
        self.ws
            .send(Message::text(r.to_json()))
            .expect("send a request");
    }

    pub(crate) fn subscribe(&mut self, tokens: &[u32]) {
        self.request(ClientRequest::Subscribe(tokens.to_vec()));
    }

    pub(crate) fn mode(&mut self, mode: Mode, tokens: &[u32]) {
        self.request(ClientRequest::Mode(mode, tokens.to_vec()));
    }

    /// Reads for `window` (or until the connection ends).
    pub(crate) fn receive(&mut self, window: Duration) -> Received {
        let mut r = Received::default();
        let end = Instant::now() + window;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = self
                .ws
                .get_ref()
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.ws.read() {
                Ok(Message::Binary(b)) => {
                    r.messages += 1;
                    if b.len() == 1 {
                        r.heartbeats += 1;
                    }
                    for t in decode_message(&b) {
                        match t {
                            Ok(t) => r.ticks.push(t),
                            Err(_) => r.decode_errors += 1,
                        }
                    }
                }
                Ok(Message::Text(t)) => r.texts.push(t.as_str().to_owned()),
                Ok(Message::Close(_)) => {
                    r.closed_cleanly = true;
                    r.ended = Some("close frame".into());
                    break;
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    break
                }
                Err(e) => {
                    r.ended = Some(e.to_string());
                    break;
                }
            }
        }
        // The window shortened the read timeout: give later reads the usual 5 s.
        let _ = self
            .ws
            .get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)));
        r
    }

    /// Reads until `n` ticks have arrived or `limit` passes.
    pub(crate) fn receive_ticks(&mut self, n: usize, limit: Duration) -> Received {
        let end = Instant::now() + limit;
        let mut all = Received::default();
        while all.ticks.len() < n && Instant::now() < end && all.ended.is_none() {
            let r = self.receive(Duration::from_millis(50));
            all.ticks.extend(r.ticks);
            all.heartbeats += r.heartbeats;
            all.texts.extend(r.texts);
            all.decode_errors += r.decode_errors;
            all.messages += r.messages;
            all.ended = r.ended;
            all.closed_cleanly |= r.closed_cleanly;
        }
        all
    }
}

/// What a capture directory holds, checked against the synthetic feed.
#[derive(Debug, Default)]
pub(crate) struct Capture {
    /// Lines in all files.
    pub lines: usize,
    /// Per file name, its line count.
    pub files: Vec<(String, usize)>,
    /// Per instrument, the ticks in file order.
    pub by_token: std::collections::BTreeMap<u32, Vec<tickcap::replay::Record>>,
    /// Per instrument, its connection ids in file order.
    pub conn_ids: std::collections::BTreeMap<u32, Vec<u8>>,
}

/// Reads every daily file under `dir` (sorted by name) and parses each line.
pub(crate) fn read_capture(dir: &std::path::Path) -> Capture {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("market_data_"))
        })
        .collect();
    names.sort();
    let mut cap = Capture::default();
    let mut scratch = Vec::new();
    for p in names {
        let text = std::fs::read(&p).unwrap();
        assert!(
            text.is_empty() || text.ends_with(b"\n"),
            "{} does not end with a newline",
            p.display()
        );
        let mut n = 0;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let r = tickcap::replay::recorded::parse_line(line, &mut scratch).unwrap_or_else(|e| {
                panic!("{}: {e}: {}", p.display(), String::from_utf8_lossy(line))
            });
            assert_ne!(r.connection_id, 0, "a line without its connection_id");
            cap.conn_ids
                .entry(r.tick.instrument_token)
                .or_default()
                .push(r.connection_id);
            cap.by_token
                .entry(r.tick.instrument_token)
                .or_default()
                .push(r);
            n += 1;
        }
        cap.lines += n;
        cap.files
            .push((p.file_name().unwrap().to_string_lossy().into_owned(), n));
    }
    cap
}

impl Capture {
    /// Every instrument's ticks are exactly the synthetic feed's sequence for
    /// `seed`: values equal to what was sent, `volume_traded` 1, 2, 3, ...
    /// with no gap, duplicate or reordering. Returns the ticks checked.
    pub(crate) fn assert_matches_synthetic(&self, seed: u64) -> usize {
        let mut checked = 0;
        for (token, recs) in &self.by_token {
            let mut inst = tickcap::replay::synthetic::Instrument::new(*token, seed);
            for (i, r) in recs.iter().enumerate() {
                let t = r.tick;
                let secs = t.exchange_timestamp.max(t.last_trade_time);
                let mut want = inst.next_tick(t.kind.mode(), secs);
                want.index_change = 0; // not in the JSONL
                assert_eq!(
                    t,
                    want,
                    "instrument {token}, its tick #{} in the file",
                    i + 1
                );
                checked += 1;
            }
            assert!(
                recs.windows(2).all(|w| w[0].at_micros <= w[1].at_micros),
                "{token}: timestamps go backwards"
            );
        }
        checked
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub(crate) fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Halts `feed` and waits until the engine has received every tick the feed
/// counted as sent (the fact, not a sleep); panics after `limit`.
pub(crate) fn halt_and_receive_all(
    feed: &tickcap::replay::Server,
    stats: &tickcap::stats::Stats,
    limit: Duration,
) {
    feed.halt();
    let sent = feed.report().sent;
    assert!(
        wait_until(limit, || stats.ticks_received() >= sent),
        "sent {sent}, received {}",
        stats.ticks_received()
    );
}

/// Halts `feed` and waits until every open connection has received a
/// heartbeat sent after the halt: TCP keeps order, so every tick sent
/// before it has been read. For feeds whose `sent` also counts ticks lost
/// in forced drops.
pub(crate) fn halt_and_read_past(
    feed: &tickcap::replay::Server,
    stats: &tickcap::stats::Stats,
    limit: Duration,
) {
    use std::sync::atomic::Ordering;
    use tickcap::stats::StateName;
    feed.halt();
    let at_halt: Vec<u64> = stats
        .conns
        .iter()
        .map(|c| c.heartbeats.load(Ordering::Relaxed))
        .collect();
    assert!(
        wait_until(limit, || stats.conns.iter().zip(&at_halt).all(|(c, h)| {
            c.state() != StateName::Open || c.heartbeats.load(Ordering::Relaxed) > *h
        })),
        "no heartbeat after the halt"
    );
}

/// A stand-in for Kite's REST API `POST /session/token`: serves `n` token
/// exchanges, checking the form, the `X-Kite-Version: 3` header and the
/// checksum as Kite does (the secret it knows is `secret`); answers in
/// Kite's JSON shapes (`access-for-<request_token>` on success).
pub(crate) fn kite_stand_in(secret: &'static str, n: usize) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let root = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(n) {
            let mut s = s.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then Content-Length bytes of body.
            let (head, body) = loop {
                let k = std::io::Read::read(&mut s, &mut buf).unwrap();
                raw.extend_from_slice(&buf[..k]);
                if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&raw[..i]).into_owned();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    while raw.len() < i + 4 + len {
                        let k = std::io::Read::read(&mut s, &mut buf).unwrap();
                        raw.extend_from_slice(&buf[..k]);
                    }
                    break (
                        head,
                        String::from_utf8_lossy(&raw[i + 4..i + 4 + len]).into_owned(),
                    );
                }
            };
            let field = |k: &str| {
                body.split('&')
                    .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                    .unwrap_or("")
                    .to_owned()
            };
            let (key, rt, sum) = (field("api_key"), field("request_token"), field("checksum"));
            let want: String = ring::digest::digest(
                &ring::digest::SHA256,
                format!("{key}{rt}{secret}").as_bytes(),
            )
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
            let ok = head.starts_with("POST /session/token ")
                && head.to_ascii_lowercase().contains("x-kite-version: 3")
                && sum == want;
            let (status, json) = if ok {
                (
                    200,
                    serde_json::json!({"status": "success", "data": {"user_id": "AB1234", "access_token": format!("access-for-{rt}")}}),
                )
            } else {
                (
                    403,
                    serde_json::json!({"status": "error", "message": "Invalid `checksum`.", "error_type": "TokenException"}),
                )
            };
            let body = json.to_string();
            let _ = std::io::Write::write_fmt(
                &mut s,
                format_args!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
            );
        }
    });
    root
}

/// Writes `text` to `path` and starts an engine on it, with `path` as its
/// config file (for `/reload`, SIGHUP and the token-file watcher) and
/// `opts` for the rest.
pub(crate) fn start_with_file(
    path: &std::path::Path,
    text: &str,
    opts: tickcap::engine::Options,
) -> tickcap::engine::Engine {
    std::fs::write(path, text).unwrap();
    let cfg = tickcap::config::Config::parse(text, path, &tickcap::config::Env::default())
        .unwrap_or_else(|e| panic!("{e}"));
    tickcap::engine::Engine::start(
        cfg,
        tickcap::engine::Options {
            config_path: Some(path.to_owned()),
            ..opts
        },
    )
    .unwrap()
}

/// POSTs a JSON body to the status port: (status, JSON reply or null).
pub(crate) fn post_json(
    url: &str,
    path: &str,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let r = tickcap::status::client::request(
        url,
        "POST",
        path,
        Some(body.to_string().as_bytes()),
        None,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("POST {url}{path}: {e}"));
    (r.status, r.json().unwrap_or(serde_json::Value::Null))
}
