//! Kite's historical-candle endpoint on the feed's own listener, computed
//! from the ticks its exchange clock made (market mode): the truth a
//! capture with drops is checked against, and what `tickcap candles check`
//! and `repair` fetch in tests.
//!
//! `GET /instruments/historical/{token}/{interval}?from=YYYY-MM-DD+HH:MM:SS&to=…[&oi=1]`
//! with `Authorization: token KEY:TOKEN` (checked when the feed requires
//! credentials) → `{"status":"success","data":{"candles":[["2026-11-27T09:15:00+0530",o,h,l,c,v(,oi)],…]}}`.
//! At most 3 requests per second, as Kite: the fourth in a second gets 429.
//! The bars are the ones `crate::candles` builds over every tick generated
//! (full mode, so each at its trade time), the day's volume known from its
//! start; the bar in progress is included, as Kite includes today's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

use super::{lock, Shared, Source};
use crate::candles::{Book, Interval};

/// Whether the bytes waiting on `stream` are a historical-data request.
pub(super) fn is_history_request(stream: &TcpStream) -> bool {
    let mut b = [0u8; 32];
    let n = stream.peek(&mut b).unwrap_or(0);
    b[..n].starts_with(b"GET /instruments/historical/")
}

/// Kite's requests-per-second limit on this endpoint.
const PER_SECOND: u32 = 3;

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn error(kind: &str, msg: &str) -> String {
    serde_json::json!({"status": "error", "message": msg, "error_type": kind}).to_string()
}

/// Parses Kite's `YYYY-MM-DD HH:MM:SS` (or a date alone) in IST: epoch µs.
fn kite_time(text: &str) -> Option<i64> {
    let t = text.trim().replace('+', " ");
    let (d, hms) = t.split_once(' ').unwrap_or((&t, "00:00:00"));
    let iso = format!("{d}T{hms}+05:30");
    crate::time::parse_timestamp(&iso)
}

/// Answers one request on `stream` (already known to be one).
pub(super) fn serve(shared: &Shared, mut stream: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 << 10 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.lines();
    let target = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("")
        .to_owned();
    let auth = lines
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("authorization")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    // 3 requests per second, by the second.
    {
        let sec = shared.started.elapsed().as_secs();
        let mut w = lock(&shared.history_window);
        if w.0 != sec {
            *w = (sec, 0);
        }
        w.1 += 1;
        if w.1 > PER_SECOND {
            shared.counters.history_429.fetch_add(1, Ordering::Relaxed);
            return respond(
                &mut stream,
                429,
                &error("NetworkException", "Too many requests"),
            );
        }
    }
    let cfg = &shared.cfg;
    let (key, token) = auth
        .strip_prefix("token ")
        .and_then(|s| s.split_once(':'))
        .unwrap_or(("", ""));
    let bad = |want: &Option<String>, got: &str| want.as_deref().is_some_and(|w| w != got);
    if auth.is_empty() || bad(&cfg.api_key, key) || bad(&cfg.access_token, token) {
        return respond(
            &mut stream,
            403,
            &error("TokenException", "Incorrect `api_key` or `access_token`."),
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (Some(tok), Some(iv)) = (
        parts.get(2).and_then(|t| t.parse::<u32>().ok()),
        parts
            .get(3)
            .and_then(|i| Interval::parse(i).filter(|x| x.kite_name() == *i)),
    ) else {
        return respond(
            &mut stream,
            400,
            &error("InputException", "invalid token or interval"),
        );
    };
    let q = |k: &str| crate::util::query_param(query, k).map(|v| v.into_owned());
    let (Some(from), Some(to)) = (
        q("from").and_then(|v| kite_time(&v)),
        q("to").and_then(|v| kite_time(&v)),
    ) else {
        return respond(
            &mut stream,
            400,
            &error("InputException", "invalid from/to (YYYY-MM-DD HH:MM:SS)"),
        );
    };
    let with_oi = q("oi").as_deref() == Some("1");
    if !(cfg.market && matches!(cfg.source, Source::Synthetic { .. })) {
        return respond(
            &mut stream,
            400,
            &error(
                "InputException",
                "historical data needs the feed's --market mode",
            ),
        );
    }
    shared
        .counters
        .history_served
        .fetch_add(1, Ordering::Relaxed);
    // Every tick the exchange made for the instrument, into bars.
    let mut zone = match crate::time::ZoneFormatter::new("Asia/Kolkata") {
        Ok(z) => z,
        Err(e) => return respond(&mut stream, 500, &error("GeneralException", &e.to_string())),
    };
    let mut book = Book::new(&[iv], zone.clone());
    let mut bars = Vec::new();
    {
        let logs = lock(&shared.broadcast);
        if let Some(log) = logs.get(&tok) {
            let mut first = true;
            for t in log.ticks() {
                if first {
                    // The walk's volume counts its ticks: the day before
                    // the first tick kept is one less.
                    book.assume_volume(tok, t.volume_traded.saturating_sub(1));
                    first = false;
                }
                let at = i64::from(t.last_trade_time.max(t.exchange_timestamp)) * 1_000_000;
                book.update(t, at, &mut bars);
            }
        }
    }
    book.finish(&mut bars);
    let div = f64::from(crate::kite::price_divisor(tok));
    let candles: Vec<serde_json::Value> = bars
        .iter()
        .filter(|b| b.start >= from && b.start <= to)
        .map(|b| {
            let mut date = Vec::new();
            crate::candles::write_kite_date(&mut date, &mut zone, b.start);
            let mut row = vec![
                serde_json::json!(String::from_utf8_lossy(&date)),
                serde_json::json!(f64::from(b.open) / div),
                serde_json::json!(f64::from(b.high) / div),
                serde_json::json!(f64::from(b.low) / div),
                serde_json::json!(f64::from(b.close) / div),
                serde_json::json!(b.volume.unwrap_or(0)),
            ];
            if with_oi {
                row.push(serde_json::json!(b.oi.unwrap_or(0)));
            }
            serde_json::Value::Array(row)
        })
        .collect();
    let body = serde_json::json!({"status": "success", "data": {"candles": candles}}).to_string();
    respond(&mut stream, 200, &body);
}
