//! Test helpers: a plain blocking tungstenite client for the replay feed,
//! with timeouts everywhere so that no test can hang.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::{Duration, Instant};

use tickcap::kite::{decode_message, ClientRequest, Mode, Tick};
use tungstenite::{Message, WebSocket};

/// A Kite client, just enough for tests.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
}

/// What arrived in a window of time.
#[derive(Debug, Default)]
pub struct Received {
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
    pub fn connect_with(
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

    pub fn connect(base: &str) -> Client {
        Client::connect_with(base, "key", "token").expect("connect to the replay feed")
    }

    pub fn request(&mut self, r: ClientRequest) {
        self.ws
            .send(Message::text(r.to_json()))
            .expect("send a request");
    }

    pub fn subscribe(&mut self, tokens: &[u32]) {
        self.request(ClientRequest::Subscribe(tokens.to_vec()));
    }

    pub fn mode(&mut self, mode: Mode, tokens: &[u32]) {
        self.request(ClientRequest::Mode(mode, tokens.to_vec()));
    }

    /// Reads for `window` (or until the connection ends).
    pub fn receive(&mut self, window: Duration) -> Received {
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
        r
    }

    /// Reads until `n` ticks have arrived or `limit` passes.
    pub fn receive_ticks(&mut self, n: usize, limit: Duration) -> Received {
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
