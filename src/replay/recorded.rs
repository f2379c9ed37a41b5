//! Recorded tickcap JSONL → ticks, for `tickcap replay --from`.
//!
//! Files are mapped with memmap2 and each line parsed with simd-json (in
//! place, in a reused scratch buffer). Prices go back to Kite's integers
//! (`round(price × divisor)`, exact for every price the writer can print).
//! A malformed line is reported with its file and line number and skipped.

use std::path::PathBuf;

use simd_json::prelude::*;
use simd_json::BorrowedValue;

use crate::kite::{price_divisor, DepthEntry, Mode, PacketKind, Segment, Tick, DEPTH_LEVELS};

/// One recorded tick and when tickcap received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The recorded `timestamp`, epoch microseconds.
    pub at_micros: i64,
    /// The tick.
    pub tick: Tick,
    /// The line's `connection_id` (1 primary, 2 secondary, 3 tertiary); 0
    /// when the line has none.
    pub connection_id: u8,
}

/// A line that could not be read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub reason: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.reason)
    }
}

/// Everything read from the files, in file order.
#[derive(Debug, Default)]
pub struct Recording {
    /// Good lines.
    pub records: Vec<Record>,
    /// Lines skipped.
    pub bad: Vec<BadLine>,
}

/// Reading a file failed as a whole (not a line).
#[derive(Debug, thiserror::Error)]
#[error("cannot read recording {path}: {error}")]
pub struct RecordingError {
    path: PathBuf,
    error: std::io::Error,
}

/// Longest line taken as a tick (a full tick line is about 1.5 KB).
pub const MAX_LINE: usize = 64 * 1024;

/// Reads recorded JSONL files into ticks; bad lines are reported, not fatal.
pub fn read_recordings(paths: &[PathBuf]) -> Result<Recording, RecordingError> {
    let mut rec = Recording::default();
    let mut scratch = Vec::with_capacity(4096);
    for path in paths {
        let err = |error| RecordingError {
            path: path.clone(),
            error,
        };
        crate::util::regular_file(path).map_err(err)?;
        let file = std::fs::File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len == 0 {
            continue;
        }
        // SAFETY: the map is read-only and dropped before this function
        // returns; a recording truncated by another process while we read it
        // is the user's doing and would at worst fault (documented in the README).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(err)?;
        let mut no = 0usize;
        let mut take = |text: &[u8], rec: &mut Recording, no: &mut usize| {
            for line in text.split(|&b| b == b'\n') {
                *no += 1;
                let no = *no;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                // A tick line is at most a few KB; a huge "line" (a binary
                // file, a file without newlines) is reported, never copied.
                if line.len() > MAX_LINE {
                    rec.bad.push(BadLine {
                        path: path.clone(),
                        line: no,
                        reason: format!(
                            "line of {} bytes; a tick line is at most {MAX_LINE}",
                            line.len()
                        ),
                    });
                    continue;
                }
                match parse_line(line, &mut scratch) {
                    Ok(r) => rec.records.push(r),
                    Err(reason) => rec.bad.push(BadLine {
                        path: path.clone(),
                        line: no,
                        reason,
                    }),
                }
            }
            // `split` yields an empty piece after the final newline.
            *no -= 1;
        };
        if crate::zst::is_zst(path) {
            // Frame by frame: never the whole day decompressed at once.
            let fr = crate::zst::frames(&map);
            let mut buf = Vec::new();
            for r in &fr.frames {
                match crate::zst::decompress_frame(&map[r.clone()], &mut buf) {
                    Ok(()) => take(&buf, &mut rec, &mut no),
                    Err(e) => rec.bad.push(BadLine {
                        path: path.clone(),
                        line: no + 1,
                        reason: format!("zstd frame at byte {} does not decode: {e}", r.start),
                    }),
                }
            }
            if let Some(at) = fr.torn_at {
                rec.bad.push(BadLine {
                    path: path.clone(),
                    line: no + 1,
                    reason: format!("torn zstd frame at byte {at} (a crash mid-write)"),
                });
            }
        } else {
            take(&map, &mut rec, &mut no);
        }
    }
    Ok(rec)
}

fn field<'v>(v: &'v BorrowedValue<'v>, key: &str) -> Result<&'v BorrowedValue<'v>, String> {
    v.get(key).ok_or_else(|| format!("missing key {key:?}"))
}

fn uint(v: &BorrowedValue<'_>, key: &str) -> Result<u32, String> {
    field(v, key)?
        .as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| format!("{key:?} is not an unsigned 32-bit integer"))
}

fn price(v: &BorrowedValue<'_>, key: &str, div: u32) -> Result<u32, String> {
    let x = field(v, key)?
        .as_f64()
        .ok_or_else(|| format!("{key:?} is not a number"))?;
    let raw = (x * f64::from(div)).round();
    if !(0.0..=f64::from(u32::MAX)).contains(&raw) {
        return Err(format!("{key:?} = {x} is out of range"));
    }
    Ok(raw as u32)
}

fn epoch_secs(v: &BorrowedValue<'_>, key: &str) -> Result<u32, String> {
    let s = field(v, key)?
        .as_str()
        .ok_or_else(|| format!("{key:?} is not a string"))?;
    let ts: jiff::Timestamp = s.parse().map_err(|e| format!("{key:?}: {e}"))?;
    u32::try_from(ts.as_second()).map_err(|_| format!("{key:?} is outside Kite's epoch range"))
}

/// Parses one tickcap JSONL line back into the tick it was written from.
pub fn parse_line(line: &[u8], scratch: &mut Vec<u8>) -> Result<Record, String> {
    scratch.clear();
    scratch.extend_from_slice(line);
    let v = simd_json::to_borrowed_value(scratch).map_err(|e| format!("not JSON: {e}"))?;
    let token = uint(&v, "instrument_token")?;
    let mode: Mode = field(&v, "mode")?
        .as_str()
        .ok_or("\"mode\" is not a string")?
        .parse()
        .map_err(|e: crate::kite::UnknownMode| e.to_string())?;
    let ts = field(&v, "timestamp")?
        .as_str()
        .ok_or("\"timestamp\" is not a string")?;
    let at: jiff::Timestamp = ts.parse().map_err(|e| format!("\"timestamp\": {e}"))?;
    let div = price_divisor(token);
    let kind = mode.packet_kind(token);
    let mut t = Tick::new(kind, token);
    t.last_price = price(&v, "last_price", div)?;
    if kind != PacketKind::Ltp {
        let ohlc = field(&v, "ohlc")?;
        t.open = price(ohlc, "open", div)?;
        t.high = price(ohlc, "high", div)?;
        t.low = price(ohlc, "low", div)?;
        t.close = price(ohlc, "close", div)?;
    }
    match kind {
        PacketKind::Ltp | PacketKind::IndexQuote => {}
        PacketKind::IndexFull => t.exchange_timestamp = epoch_secs(&v, "exchange_timestamp")?,
        PacketKind::Quote | PacketKind::Full => {
            t.last_traded_quantity = uint(&v, "last_traded_quantity")?;
            t.average_traded_price = price(&v, "average_traded_price", div)?;
            t.volume_traded = uint(&v, "volume_traded")?;
            t.total_buy_quantity = uint(&v, "total_buy_quantity")?;
            t.total_sell_quantity = uint(&v, "total_sell_quantity")?;
            if kind == PacketKind::Full {
                t.last_trade_time = epoch_secs(&v, "last_trade_time")?;
                t.oi = uint(&v, "oi")?;
                t.oi_day_high = uint(&v, "oi_day_high")?;
                t.oi_day_low = uint(&v, "oi_day_low")?;
                t.exchange_timestamp = epoch_secs(&v, "exchange_timestamp")?;
                let depth = field(&v, "depth")?;
                for (side, base) in [("buy", 0), ("sell", DEPTH_LEVELS / 2)] {
                    let levels = field(depth, side)?
                        .as_array()
                        .ok_or_else(|| format!("depth.{side} is not a list"))?;
                    if levels.len() != DEPTH_LEVELS / 2 {
                        return Err(format!("depth.{side} has {} levels, not 5", levels.len()));
                    }
                    for (i, l) in levels.iter().enumerate() {
                        let orders = uint(l, "orders")?;
                        t.depth[base + i] = DepthEntry {
                            quantity: uint(l, "quantity")?,
                            price: price(l, "price", div)?,
                            orders: u16::try_from(orders)
                                .map_err(|_| "depth orders above 65535".to_owned())?,
                        };
                    }
                }
            }
        }
    }
    // An index token recorded in a non-index layout (or the reverse) cannot
    // have come from tickcap: refuse rather than guess.
    let tradable = field(&v, "tradable")?
        .as_bool()
        .ok_or("\"tradable\" is not a boolean")?;
    if tradable == (crate::kite::segment(token) == Segment::INDICES) {
        return Err(format!(
            "\"tradable\" is {tradable} for token {token} (segment {})",
            token & 0xff
        ));
    }
    let connection_id = match v.get("connection_id") {
        None => 0,
        Some(c) => c
            .as_u64()
            .and_then(|x| u8::try_from(x).ok())
            .ok_or("\"connection_id\" is not a small unsigned integer")?,
    };
    Ok(Record {
        at_micros: at.as_microsecond(),
        tick: t,
        connection_id,
    })
}

/// `t` as a client in `mode` sees it (see [`Tick::in_mode`]).
pub fn in_mode(t: &Tick, mode: Mode) -> Tick {
    t.in_mode(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::LineFormatter;
    use crate::time::ZoneFormatter;

    #[test]
    fn a_written_line_parses_back_to_its_tick() {
        let mut f = LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").unwrap());
        let mut scratch = Vec::new();
        let mut i = crate::replay::synthetic::Instrument::new(0x0100_0003, 1);
        for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
            let t = i.next_tick(mode, 1_764_046_523);
            let mut line = Vec::new();
            f.write_line(&mut line, &t, 1_764_046_523_654_321, 2);
            let r = parse_line(&line, &mut scratch).unwrap();
            assert_eq!(r.tick, t, "{mode}");
            assert_eq!(r.at_micros, 1_764_046_523_654_321);
        }
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let mut s = Vec::new();
        for (line, needle) in [
            (&b"{"[..], "not JSON"),
            (br#"{"mode":"quote"}"#, "instrument_token"),
            (
                br#"{"instrument_token":1,"mode":"slow","timestamp":"x"}"#,
                "unknown mode",
            ),
        ] {
            let e = parse_line(line, &mut s).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
