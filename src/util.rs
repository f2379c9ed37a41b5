//! Small helpers every layer may use: a seeded RNG, remote text made safe
//! for the log, a log rate limit, and the regular-file check for inputs.

/// SplitMix64: tiny, fast, good enough for market noise, and no crate.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Remote text made safe for one log line: control characters (newlines,
/// NUL, escape sequences) are written as `\n`, `\0`, `\u{1b}`…, and the text
/// is cut to `max` characters with the original length noted. A feed can
/// then neither forge log lines nor flood the log through one message.
pub fn log_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 16);
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push_str(&format!("…({} bytes in all)", s.len()));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// Rate limit for a repeated log event: at most `burst` lines per `window`,
/// then silence, and the first line of a later window says how many were
/// suppressed. Time is passed in (tests step it).
#[derive(Debug, Clone)]
pub struct LogLimit {
    window: std::time::Duration,
    burst: u32,
    start: Option<std::time::Instant>,
    used: u32,
    suppressed: u64,
}

impl LogLimit {
    /// `burst` lines per `window`.
    pub fn new(burst: u32, window: std::time::Duration) -> Self {
        LogLimit {
            window,
            burst,
            start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether to log this event now; `Some(n)` = yes, and `n` similar
    /// events were suppressed before it.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        if self
            .start
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window)
        {
            self.start = Some(now);
            self.used = 0;
        }
        if self.used < self.burst {
            self.used += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// Reads a file the config names (the config itself, a token file, an
/// instruments file, the dump), refusing anything but a regular file of at
/// most `limit` bytes. It is opened non-blocking and checked with `fstat`
/// on the open descriptor (no window between a check and the open): a FIFO
/// put in its place can neither block the event loop on `open` (no writer)
/// nor on `read`, and a device cannot feed it forever.
pub fn read_regular(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let m = f.metadata()?;
    if !m.is_file() {
        let kind = if m.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {kind}", path.display()),
        ));
    }
    if m.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{} is {} bytes (more than {limit})",
                path.display(),
                m.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(m.len() as usize);
    f.by_ref().take(limit).read_to_end(&mut out)?;
    Ok(out)
}

/// Reads a config-named file as UTF-8 text (see [`read_regular`]).
pub fn read_regular_text(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not UTF-8 text", path.display()),
        )
    })
}

/// The value of `key` in a URL query string (`a=1&b=x%20y`), percent- and
/// `+`-decoded as browsers and Kite clients encode it; the first one wins.
pub fn query_param<'a>(query: &'a str, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Captures and recordings are regular files: opening a FIFO (or a device) would block or
/// never end, and a directory cannot be read. Checked before `open`.
pub fn regular_file(path: &std::path::Path) -> std::io::Result<()> {
    let m = std::fs::metadata(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    if m.is_file() {
        Ok(())
    } else {
        let kind = if m.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, socket or device)"
        };
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is {kind}", path.display()),
        ))
    }
}

/// Drops the pages of `range` of a read-only file mapping `map` from
/// memory once a streaming reader is done with them (touched again, they
/// are read again from the file): the resident set of a tool reading a
/// whole day stays what it is reading, not the day.
pub fn release_mapped(map: &[u8], range: std::ops::Range<usize>) {
    const PAGE: usize = 4096;
    let base = map.as_ptr() as usize;
    let end = range.end.min(map.len());
    let start = (base + range.start).div_ceil(PAGE) * PAGE;
    let stop = (base + end) / PAGE * PAGE;
    if stop > start {
        // SAFETY: the range lies inside `map`, a private read-only mapping
        // of a file: MADV_DONTNEED only discards its pages from memory, and
        // a later read faults them in from the file again; no Rust
        // reference sees different bytes.
        unsafe {
            libc::madvise(
                start as *mut libc::c_void,
                stop - start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// The one blocking HTTP client's agent (Kite's REST calls in
/// `net::http`, the status port's client), here in the base so that both
/// use it without one importing the other: every step (connect, send, wait for the reply, read
/// the body) may take `timeout`; no connection kept (one request each),
/// no proxy from the environment (as before: capture hosts talk to Kite
/// directly), every status an answer rather than an error.
pub fn http_agent(timeout: std::time::Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .max_idle_connections(0)
        .proxy(None)
        .user_agent(concat!("tickcap/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Sends `method url` with `headers` and `body` (none when empty) through
/// `agent`; the whole reply body, read up to `limit` bytes.
pub fn http_send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    limit: u64,
) -> Result<(u16, Vec<u8>), ureq::Error> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = if body.is_empty() {
        agent.run(req.body(())?)?
    } else {
        agent.run(req.body(body)?)?
    };
    let status = resp.status().as_u16();
    let bytes = resp.body_mut().with_config().limit(limit).read_to_vec()?;
    Ok((status, bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_are_percent_decoded_as_clients_encode_them() {
        let q = "api_key=k%2B1&access_token=a+b%3D&x";
        assert_eq!(super::query_param(q, "api_key").as_deref(), Some("k+1"));
        assert_eq!(
            super::query_param(q, "access_token").as_deref(),
            Some("a b=")
        );
        assert_eq!(super::query_param(q, "x").as_deref(), Some(""));
        assert_eq!(super::query_param(q, "y"), None);
    }

    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn remote_text_cannot_forge_lines_or_flood() {
        assert_eq!(
            log_text("a\nb\0c\r\t\u{1b}[2J", 100),
            "a\\nb\\0c\\r\\t\\u{1b}[2J"
        );
        let big = "x".repeat(100_000);
        let short = log_text(&big, 200);
        assert!(
            short.len() < 260 && short.ends_with("…(100000 bytes in all)"),
            "{short}"
        );
    }

    #[test]
    fn a_burst_per_window_then_the_count_of_the_suppressed() {
        let mut l = LogLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let got: Vec<Option<u64>> = (0..6).map(|_| l.allow(t0)).collect();
        assert_eq!(got, [Some(0), Some(0), Some(0), None, None, None]);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(3));
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(0));
    }
}
