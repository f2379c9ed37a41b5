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
    parse_reply(&raw).ok_or_else(|| HttpError::Malformed(url.to_owned()))
}

/// A whole HTTP/1.1 reply (read to EOF) as status and body: chunked
/// transfer coding undone, a body cut short of its `Content-Length` or its
/// last chunk refused, `Content-Encoding: gzip` (or a gzip body, which
/// Kite's instruments dump may be) inflated.
pub fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    let n = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[n..];
    let mut body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        rest.get(..len)?.to_vec()
    } else {
        rest.to_vec()
    };
    if header("content-encoding").is_some_and(|v| v == "gzip") || body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::MultiGzDecoder::new(body.as_slice())
            .read_to_end(&mut out)
            .ok()?;
        body = out;
    }
    Some(Reply {
        status: resp.code.unwrap_or(0),
        body,
    })
}

/// Undoes HTTP/1.1 chunked transfer coding; `None` if it is malformed or
/// the last (empty) chunk never came.
pub fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    loop {
        let eol = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..eol]).ok()?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        raw = &raw[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_and_gzip_replies_come_out_whole() {
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Wikipedia"[..]));
        // No last chunk: the reply was cut, not a short body.
        assert!(
            parse_reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n")
                .is_none()
        );
        assert!(parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_none());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, b"a,b\n1,2\n").unwrap();
        let gz = gz.finish().unwrap();
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        raw.extend_from_slice(&gz);
        assert_eq!(parse_reply(&raw).unwrap().body, b"a,b\n1,2\n");
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(form(&[("a", "x y"), ("b", "1&2=3")]), "a=x+y&b=1%262%3D3");
    }
}
