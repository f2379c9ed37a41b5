//! A minimal blocking HTTP/1.1 client for the status port (used by
//! `tickcap status`, `tickcap doctor` and the tests): one request per
//! connection, `Connection: close`, responses parsed with httparse.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a status request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port[/path]`.
    #[error("bad status URL {0:?}: expected http://HOST:PORT")]
    Url(String),
    /// Could not connect, send or receive.
    #[error("{url}: {error}")]
    Io {
        /// The URL.
        url: String,
        /// Why.
        error: std::io::Error,
    },
    /// The response was not HTTP.
    #[error("{0}: malformed HTTP response")]
    Malformed(String),
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Sends `method path` with `body` (and a bearer token) to `base`
/// (`http://host:port`), waiting at most `timeout` for each step.
pub fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let hostport = base
        .strip_prefix("http://")
        .map(|r| r.trim_end_matches('/'))
        .ok_or_else(|| ClientError::Url(base.to_owned()))?;
    let url = format!("{base}{path}");
    let io = |error| ClientError::Io {
        url: url.clone(),
        error,
    };
    let addr = hostport
        .to_socket_addrs()
        .map_err(io)?
        .next()
        .ok_or_else(|| ClientError::Url(base.to_owned()))?;
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let body = body.unwrap_or(b"");
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(io)?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(ClientError::Malformed(url)),
    };
    Ok(Reply {
        status: resp.code.unwrap_or(0),
        body: raw[n..].to_vec(),
    })
}

/// `GET path` with a 3 s timeout.
pub fn get(base: &str, path: &str) -> Result<Reply, ClientError> {
    request(base, "GET", path, None, None, Duration::from_secs(3))
}
