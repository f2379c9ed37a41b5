//! A small blocking HTTP/1.1 client for the few calls tickcap makes to
//! Kite's REST API (`tickcap login`): one request per connection, over TLS
//! (rustls, the same roots as the ticker) for `https://`, plain TCP for
//! `http://` (tests' local stand-ins). Never used on the event loop.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("bad url {0:?}")]
    Url(String),
    /// Network or TLS failure.
    #[error("{url}: {message}")]
    Io {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// Not an HTTP response.
    #[error("{0}: the reply is not HTTP")]
    Malformed(String),
}

/// A response: status and body.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_owned(),
                b => format!("%{b:02X}"),
            })
            .collect()
    }
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Sends `method url` with `headers` and `body`; reads the whole reply.
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, HttpError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(HttpError::Url(url.to_owned()));
    };
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let host = hostport.rsplit_once(':').map_or(hostport, |(h, _)| h);
    let addr_text = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:{}", if tls { 443 } else { 80 })
    };
    let io = |e: &dyn std::fmt::Display| HttpError::Io {
        url: url.to_owned(),
        message: e.to_string(),
    };
    let addr = addr_text
        .to_socket_addrs()
        .map_err(|e| io(&e))?
        .next()
        .ok_or_else(|| HttpError::Url(url.to_owned()))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| io(&e))?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| io(&e))?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| io(&e))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut raw = Vec::new();
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| io(&e))?;
        let conn =
            rustls::ClientConnection::new(super::stream::tls_config(), name).map_err(|e| io(&e))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(body))
            .map_err(|e| io(&e))?;
        // A server may close without close_notify; what arrived is the reply.
        if let Err(e) = s.read_to_end(&mut raw) {
            if raw.is_empty() {
                return Err(io(&e));
            }
        }
    } else {
        let mut s = tcp;
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(body))
            .map_err(|e| io(&e))?;
        s.read_to_end(&mut raw).map_err(|e| io(&e))?;
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(&raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return Err(HttpError::Malformed(url.to_owned())),
    };
    Ok(Reply {
        status: resp.code.unwrap_or(0),
        body: raw[n..].to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(form(&[("a", "x y"), ("b", "1&2=3")]), "a=x+y&b=1%262%3D3");
    }
}
