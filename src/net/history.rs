//! Kite's historical candles (`GET {api_root}/instruments/historical/…`):
//! a blocking fetch, off any event loop, paced to Kite's 3 requests per
//! second, retrying a 429 with backoff.

use std::time::{Duration, Instant};

pub use crate::candles::KiteBar;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The request could not be made.
    #[error("{0}")]
    Http(#[from] super::http::HttpError),
    /// Kite answered with an error.
    #[error("HTTP {status}: {message}")]
    Kite {
        /// HTTP status.
        status: u16,
        /// Kite's message (escaped, cut).
        message: String,
    },
    /// Still 429 after the retries.
    #[error("rate-limited (HTTP 429) {0} times in a row")]
    RateLimited(u32),
    /// The reply is not Kite's candle JSON.
    #[error("not Kite's candle reply: {0}")]
    Malformed(String),
}

/// Spaces requests to at most 3 a second.
#[derive(Debug)]
pub struct Pacer {
    last: Option<Instant>,
    gap: Duration,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            last: None,
            gap: Duration::from_millis(340),
        }
    }
}

impl Pacer {
    fn wait(&mut self) {
        if let Some(l) = self.last {
            let due = l + self.gap;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.last = Some(Instant::now());
    }
}

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Source {
    /// `https://api.kite.trade` (or a replay feed's `http://127.0.0.1:PORT`).
    pub api_root: String,
    /// The API key.
    pub api_key: String,
    /// The day's access token.
    pub access_token: String,
}

impl Source {
    /// The REST root and credentials the instruments dump uses (the
    /// primary's, `[kite] api_root`).
    pub fn of(dump: &crate::config::DumpConfig) -> Source {
        Source {
            api_root: dump.api_root.clone(),
            api_key: dump.api_key.clone(),
            access_token: dump.access_token.expose().to_owned(),
        }
    }
}

/// Parses Kite's reply body into candles.
pub fn parse(body: &[u8]) -> Result<Vec<KiteBar>, HistoryError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| HistoryError::Malformed(e.to_string()))?;
    let rows = v["data"]["candles"]
        .as_array()
        .ok_or_else(|| HistoryError::Malformed("no data.candles".into()))?;
    rows.iter()
        .map(|r| {
            let f = |i: usize| r.get(i).and_then(serde_json::Value::as_f64);
            let bad = || HistoryError::Malformed(crate::util::log_text(&r.to_string(), 200));
            Ok(KiteBar {
                date: r
                    .get(0)
                    .and_then(|d| d.as_str())
                    .ok_or_else(bad)?
                    .to_owned(),
                open: f(1).ok_or_else(bad)?,
                high: f(2).ok_or_else(bad)?,
                low: f(3).ok_or_else(bad)?,
                close: f(4).ok_or_else(bad)?,
                volume: r
                    .get(5)
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(bad)?,
                oi: r.get(6).and_then(serde_json::Value::as_u64),
            })
        })
        .collect()
}

/// Fetches `token`'s `interval` candles of `from`..`to` (`YYYY-MM-DD HH:MM:SS`,
/// IST), pacing with `pacer`; a 429 waits 1, 2, 4 … s and retries (6 times).
pub fn fetch(
    src: &Source,
    pacer: &mut Pacer,
    token: u32,
    interval: &str,
    from: &str,
    to: &str,
) -> Result<Vec<KiteBar>, HistoryError> {
    let url = format!(
        "{}/instruments/historical/{token}/{interval}?from={}&to={}&oi=1",
        src.api_root.trim_end_matches('/'),
        from.replace(' ', "+"),
        to.replace(' ', "+")
    );
    let auth = format!("token {}:{}", src.api_key, src.access_token);
    let mut backoff = Duration::from_secs(1);
    for attempt in 1..=7u32 {
        pacer.wait();
        let r = super::http::request(
            "GET",
            &url,
            &[("Authorization", &auth), ("X-Kite-Version", "3")],
            b"",
            Duration::from_secs(30),
        )?;
        match r.status {
            200 => return parse(&r.body),
            429 if attempt < 7 => {
                tracing::info!(
                    "Kite's historical API: 429 (3 requests/s); retrying in {backoff:?}"
                );
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(16));
            }
            429 => return Err(HistoryError::RateLimited(attempt)),
            status => {
                let msg = serde_json::from_slice::<serde_json::Value>(&r.body)
                    .ok()
                    .and_then(|v| v["message"].as_str().map(str::to_owned))
                    .unwrap_or_else(|| String::from_utf8_lossy(&r.body).into_owned());
                return Err(HistoryError::Kite {
                    status,
                    message: crate::util::log_text(&msg, 300),
                });
            }
        }
    }
    Err(HistoryError::RateLimited(7))
}

/// Kite's bars of `token` at `starts` (epoch µs) on `day`, as bars marked
/// complete, and how many of `starts` Kite has no bar for (no trade in the
/// interval, or not yet published). One request per instrument and day.
pub fn fetch_bars(
    src: &Source,
    pacer: &mut Pacer,
    token: u32,
    interval: crate::candles::Interval,
    day: crate::time::LocalDate,
    starts: &std::collections::BTreeSet<i64>,
) -> Result<(Vec<crate::candles::Bar>, u64), HistoryError> {
    let (from, to) = (format!("{day} 00:00:00"), format!("{day} 23:59:59"));
    let kite = fetch(src, pacer, token, interval.kite_name(), &from, &to)?;
    let mut out = Vec::with_capacity(starts.len());
    let mut found = std::collections::BTreeSet::new();
    for k in &kite {
        let Some(at) = crate::candles::parse_kite_date(&k.date) else {
            continue;
        };
        if starts.contains(&at) && found.insert(at) {
            if let Some(b) = crate::candles::Bar::from_kite(token, interval, k) {
                out.push(b);
            }
        }
    }
    let missing = (starts.len() - found.len()) as u64;
    Ok((out, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kites_reply_parses_with_and_without_oi() {
        let body = br#"{"status":"success","data":{"candles":[["2026-11-27T09:15:00+0530",1573.15,1575,1571.2,1574.4,18231,0],["2026-11-27T09:16:00+0530",1,2,0.5,1.5,3]]}}"#;
        let bars = parse(body).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].high, 1575.0);
        assert_eq!(bars[0].oi, Some(0));
        assert_eq!(bars[1].oi, None);
        assert!(parse(br#"{"status":"error","message":"x"}"#).is_err());
        assert!(parse(br#"{"data":{"candles":[["d","x"]]}}"#).is_err());
    }
}
