//! The status port's client (`tickcap status`, `tickcap doctor`, the
//! tests): the same `ureq` agent as Kite's REST calls
//! ([`crate::util::http_agent`]), one request per connection.

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
    if !base.starts_with("http://") {
        return Err(ClientError::Url(base.to_owned()));
    }
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let agent = crate::util::http_agent(timeout);
    match crate::util::http_send(
        &agent,
        method,
        &url,
        &headers,
        body.unwrap_or(b""),
        256 << 20,
    ) {
        Ok((status, body)) => Ok(Reply { status, body }),
        Err(ureq::Error::BadUri(_) | ureq::Error::Http(_)) => {
            Err(ClientError::Url(base.to_owned()))
        }
        Err(ureq::Error::Protocol(_)) => Err(ClientError::Malformed(url)),
        Err(ureq::Error::Io(error)) => Err(ClientError::Io { url, error }),
        Err(e) => Err(ClientError::Io {
            url,
            error: std::io::Error::other(e.to_string()),
        }),
    }
}

/// `GET path` with a 3 s timeout.
pub fn get(base: &str, path: &str) -> Result<Reply, ClientError> {
    request(base, "GET", path, None, None, Duration::from_secs(3))
}
