//! Blocking HTTP for the few calls tickcap makes to Kite's REST API
//! (`tickcap login`, the instruments dump, historical candles), through
//! `ureq`: rustls with the same webpki roots as the ticker for `https://`,
//! plain TCP for `http://` (tests' local stand-ins), gzip and chunked
//! replies undone, every step bounded by the timeout. Never used on the
//! event loop.

use std::io::Read;
use std::time::Duration;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not `http(s)://host[:port]/path`.
    #[error("bad url {0:?}")]
    Url(String),
    /// Network or TLS failure, or a reply cut short.
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

/// The biggest body read (Kite's instruments dump is tens of MB inflated):
/// a hostile server cannot make tickcap hold more.
const BODY_LIMIT: u64 = 1 << 30;

/// `application/x-www-form-urlencoded` of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Sends `method url` with `headers` and `body`; reads the whole reply. A
/// gzip body is inflated whether or not the server said so (Kite's
/// instruments dump may come as `application/gzip`).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Reply, HttpError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(HttpError::Url(url.to_owned()));
    }
    let (status, mut body) = crate::util::http_send(
        &crate::util::http_agent(timeout),
        method,
        url,
        headers,
        body,
        BODY_LIMIT,
    )
    .map_err(|e| match e {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => HttpError::Url(url.to_owned()),
        ureq::Error::Protocol(_) => HttpError::Malformed(url.to_owned()),
        e => HttpError::Io {
            url: url.to_owned(),
            message: e.to_string(),
        },
    })?;
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(body.len() * 4);
        flate2::read::MultiGzDecoder::new(body.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| HttpError::Io {
                url: url.to_owned(),
                message: format!("a gzip body that does not inflate: {e}"),
            })?;
        body = out;
    }
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Serves `replies` in turn on a loopback listener, one a connection.
    fn serve(replies: Vec<Vec<u8>>) -> String {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        std::thread::spawn(move || {
            for r in replies {
                let (mut s, _) = l.accept().unwrap();
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = s.write_all(&r);
            }
        });
        url
    }

    #[test]
    fn chunked_and_gzip_replies_come_out_whole_and_cut_ones_are_errors() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"a,b\n1,2\n").unwrap();
        let gz = gz.finish().unwrap();
        let mut gzip_reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        gzip_reply.extend_from_slice(&gz);
        // Kite's dump as a gzip file, without Content-Encoding.
        let mut gzip_file = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\nContent-Length: {}\r\n\r\n",
            gz.len()
        )
        .into_bytes();
        gzip_file.extend_from_slice(&gz);
        let url = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;x=1\r\npedia\r\n0\r\n\r\n".to_vec(),
            gzip_reply,
            gzip_file,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(),
            b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}".to_vec(),
        ]);
        let t = Duration::from_secs(5);
        let get = || {
            request(
                "GET",
                &format!("{url}/x"),
                &[("X-Kite-Version", "3")],
                b"",
                t,
            )
        };
        let r = get().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"Wikipedia"[..]));
        assert_eq!(get().unwrap().body, b"a,b\n1,2\n");
        assert_eq!(get().unwrap().body, b"a,b\n1,2\n");
        // No last chunk, a body short of its length: cut, not short.
        assert!(matches!(get(), Err(HttpError::Io { .. })));
        assert!(matches!(get(), Err(HttpError::Io { .. })));
        // A status is an answer, not an error.
        assert_eq!(get().unwrap().status, 429);
        assert!(matches!(
            request("GET", "ftp://x/", &[], b"", t),
            Err(HttpError::Url(_))
        ));
    }

    #[test]
    fn forms_are_url_encoded() {
        assert_eq!(form(&[("a", "x y"), ("b", "1&2=3")]), "a=x+y&b=1%262%3D3");
    }
}
