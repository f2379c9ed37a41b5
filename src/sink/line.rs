//! One tick → one JSONL line, appended to a caller's buffer.
//!
//! Keys, nesting and order are those of the dict the official Python client
//! (`KiteTicker._parse_binary`) builds for the same packet, numbers as its
//! `json.dumps` prints them; then `timestamp` (receive time, microseconds,
//! the zone's offset) and `connection_id`. No allocation per line: the only
//! growth is the caller's reused buffer.
//!
//! [`serde_line`] is the same line through `serde_json`, kept as the
//! benchmark baseline; a test holds the two equal in value.

use super::number::{write_f64, write_price, write_u64};
use crate::kite::{is_tradable, price_divisor, Mode, PacketKind, Tick};
use crate::time::ZoneFormatter;

/// Writes lines in one zone. Owns the zone's formatting caches.
#[derive(Debug, Clone)]
pub struct LineFormatter {
    clock: ZoneFormatter,
}

#[inline(always)]
fn key_u32(out: &mut Vec<u8>, key: &[u8], v: u32) {
    out.extend_from_slice(key);
    write_u64(out, u64::from(v));
}

impl LineFormatter {
    /// A formatter writing times in `clock`'s zone.
    pub fn new(clock: ZoneFormatter) -> Self {
        LineFormatter { clock }
    }

    /// The zone clock (for the file's date of a tick).
    pub fn clock_mut(&mut self) -> &mut ZoneFormatter {
        &mut self.clock
    }

    /// Appends a tickcap line: the official client's keys, then `timestamp`
    /// (`recv_micros`, epoch microseconds) and `connection_id`, and `\n`.
    #[inline]
    pub fn write_line(&mut self, out: &mut Vec<u8>, t: &Tick, recv_micros: i64, connection_id: u8) {
        self.write_kite_object(out, t);
        out.extend_from_slice(b",\"timestamp\":\"");
        self.clock.write_micros(out, recv_micros);
        out.extend_from_slice(b"\",\"connection_id\":");
        write_u64(out, u64::from(connection_id));
        out.extend_from_slice(b"}\n");
    }

    /// Appends only what the official client gives (its keys, `}` and `\n`):
    /// what `tickcap decode` prints for conformance checks.
    pub fn write_kite_line(&mut self, out: &mut Vec<u8>, t: &Tick) {
        self.write_kite_object(out, t);
        out.extend_from_slice(b"}\n");
    }

    /// `{` and the official client's keys, without the closing brace.
    fn write_kite_object(&mut self, out: &mut Vec<u8>, t: &Tick) {
        let div = price_divisor(t.instrument_token);
        let price = |out: &mut Vec<u8>, key: &[u8], raw: u32| {
            out.extend_from_slice(key);
            write_price(out, raw, div);
        };
        out.extend_from_slice(if is_tradable(t.instrument_token) {
            b"{\"tradable\":true,\"mode\":\""
        } else {
            b"{\"tradable\":false,\"mode\":\""
        });
        out.extend_from_slice(t.mode().as_str().as_bytes());
        key_u32(out, b"\",\"instrument_token\":", t.instrument_token);
        price(out, b",\"last_price\":", t.last_price);
        match t.kind {
            PacketKind::Ltp => {}
            PacketKind::IndexQuote | PacketKind::IndexFull => {
                price(out, b",\"ohlc\":{\"high\":", t.high);
                price(out, b",\"low\":", t.low);
                price(out, b",\"open\":", t.open);
                price(out, b",\"close\":", t.close);
                self.write_change(out, t);
                if t.kind == PacketKind::IndexFull {
                    out.extend_from_slice(b",\"exchange_timestamp\":\"");
                    self.clock
                        .write_seconds(out, i64::from(t.exchange_timestamp));
                    out.push(b'"');
                }
            }
            PacketKind::Quote | PacketKind::Full => {
                key_u32(out, b",\"last_traded_quantity\":", t.last_traded_quantity);
                price(out, b",\"average_traded_price\":", t.average_traded_price);
                key_u32(out, b",\"volume_traded\":", t.volume_traded);
                key_u32(out, b",\"total_buy_quantity\":", t.total_buy_quantity);
                key_u32(out, b",\"total_sell_quantity\":", t.total_sell_quantity);
                price(out, b",\"ohlc\":{\"open\":", t.open);
                price(out, b",\"high\":", t.high);
                price(out, b",\"low\":", t.low);
                price(out, b",\"close\":", t.close);
                self.write_change(out, t);
                if t.kind == PacketKind::Full {
                    out.extend_from_slice(b",\"last_trade_time\":\"");
                    self.clock.write_seconds(out, i64::from(t.last_trade_time));
                    key_u32(out, b"\",\"oi\":", t.oi);
                    key_u32(out, b",\"oi_day_high\":", t.oi_day_high);
                    key_u32(out, b",\"oi_day_low\":", t.oi_day_low);
                    out.extend_from_slice(b",\"exchange_timestamp\":\"");
                    self.clock
                        .write_seconds(out, i64::from(t.exchange_timestamp));
                    out.extend_from_slice(b"\",\"depth\":{\"buy\":[");
                    for (i, level) in t.depth.iter().enumerate() {
                        out.extend_from_slice(match i {
                            0 => b"{\"quantity\":".as_slice(),
                            5 => b"],\"sell\":[{\"quantity\":",
                            _ => b",{\"quantity\":",
                        });
                        write_u64(out, u64::from(level.quantity));
                        price(out, b",\"price\":", level.price);
                        key_u32(out, b",\"orders\":", u32::from(level.orders));
                        out.push(b'}');
                    }
                    out.extend_from_slice(b"]}");
                }
            }
        }
    }

    /// Closes `ohlc` and writes `change`: the integer `0` when close is zero,
    /// as the official client does.
    #[inline]
    fn write_change(&mut self, out: &mut Vec<u8>, t: &Tick) {
        out.extend_from_slice(b"},\"change\":");
        match t.change() {
            Some(c) => write_f64(out, c),
            None => out.push(b'0'),
        }
    }
}

/// The same line through `serde_json` (the benchmark baseline). Floats come
/// out in serde_json's notation (`1e-7`, not Python's `1e-07`): equal in
/// value, not always in bytes.
pub fn serde_line(
    clock: &mut ZoneFormatter,
    out: &mut Vec<u8>,
    t: &Tick,
    recv_micros: i64,
    connection_id: u8,
) -> serde_json::Result<()> {
    use serde::ser::{SerializeMap, Serializer};
    let mut times = Vec::with_capacity(96);
    let mut time = |clock: &mut ZoneFormatter, secs: Option<u32>| -> String {
        times.clear();
        match secs {
            Some(s) => clock.write_seconds(&mut times, i64::from(s)),
            None => clock.write_micros(&mut times, recv_micros),
        }
        String::from_utf8_lossy(&times).into_owned()
    };
    let p = |raw: u32| t.price(raw);
    let mut ser = serde_json::Serializer::new(&mut *out);
    let mut m = ser.serialize_map(None)?;
    m.serialize_entry("tradable", &is_tradable(t.instrument_token))?;
    m.serialize_entry("mode", t.mode().as_str())?;
    m.serialize_entry("instrument_token", &t.instrument_token)?;
    m.serialize_entry("last_price", &p(t.last_price))?;
    let change = |m: &mut serde_json::ser::Compound<'_, &mut Vec<u8>, _>| match t.change() {
        Some(c) => m.serialize_entry("change", &c),
        None => m.serialize_entry("change", &0),
    };
    match t.kind {
        PacketKind::Ltp => {}
        PacketKind::IndexQuote | PacketKind::IndexFull => {
            let ohlc = serde_json::json!({"high": p(t.high), "low": p(t.low), "open": p(t.open), "close": p(t.close)});
            m.serialize_entry("ohlc", &ohlc)?;
            change(&mut m)?;
            if t.kind == PacketKind::IndexFull {
                m.serialize_entry(
                    "exchange_timestamp",
                    &time(clock, Some(t.exchange_timestamp)),
                )?;
            }
        }
        PacketKind::Quote | PacketKind::Full => {
            m.serialize_entry("last_traded_quantity", &t.last_traded_quantity)?;
            m.serialize_entry("average_traded_price", &p(t.average_traded_price))?;
            m.serialize_entry("volume_traded", &t.volume_traded)?;
            m.serialize_entry("total_buy_quantity", &t.total_buy_quantity)?;
            m.serialize_entry("total_sell_quantity", &t.total_sell_quantity)?;
            let ohlc = serde_json::json!({"open": p(t.open), "high": p(t.high), "low": p(t.low), "close": p(t.close)});
            m.serialize_entry("ohlc", &ohlc)?;
            change(&mut m)?;
            if t.kind == PacketKind::Full {
                m.serialize_entry("last_trade_time", &time(clock, Some(t.last_trade_time)))?;
                m.serialize_entry("oi", &t.oi)?;
                m.serialize_entry("oi_day_high", &t.oi_day_high)?;
                m.serialize_entry("oi_day_low", &t.oi_day_low)?;
                m.serialize_entry(
                    "exchange_timestamp",
                    &time(clock, Some(t.exchange_timestamp)),
                )?;
                let level = |d: &crate::kite::DepthEntry| serde_json::json!({"quantity": d.quantity, "price": p(d.price), "orders": d.orders});
                let depth = serde_json::json!({
                    "buy": t.bids().iter().map(level).collect::<Vec<_>>(),
                    "sell": t.asks().iter().map(level).collect::<Vec<_>>(),
                });
                m.serialize_entry("depth", &depth)?;
            }
        }
    }
    m.serialize_entry("timestamp", &time(clock, None))?;
    m.serialize_entry("connection_id", &connection_id)?;
    m.end()?;
    out.push(b'\n');
    Ok(())
}

/// Every key a tick line can have — a full-mode tick of a tradable
/// instrument has them all, in this order — so a key can be a bit
/// (`analysis::scan` reads lines against this one table).
pub const ALL_KEYS: [&str; 19] = [
    "tradable",
    "mode",
    "instrument_token",
    "last_price",
    "last_traded_quantity",
    "average_traded_price",
    "volume_traded",
    "total_buy_quantity",
    "total_sell_quantity",
    "ohlc",
    "change",
    "last_trade_time",
    "oi",
    "oi_day_high",
    "oi_day_low",
    "exchange_timestamp",
    "depth",
    "timestamp",
    "connection_id",
];

/// The keys the official client gives each kind of tick, in its order,
/// then tickcap's two: the JSONL line's contract. [`LineFormatter`] writes
/// exactly these (a test holds them equal); `verify` checks lines against them.
pub fn keys(mode: Mode, index: bool) -> &'static [&'static str] {
    const LTP: &[&str] = &[
        "tradable",
        "mode",
        "instrument_token",
        "last_price",
        "timestamp",
        "connection_id",
    ];
    const IQ: &[&str] = &[
        "tradable",
        "mode",
        "instrument_token",
        "last_price",
        "ohlc",
        "change",
        "timestamp",
        "connection_id",
    ];
    const IF: &[&str] = &[
        "tradable",
        "mode",
        "instrument_token",
        "last_price",
        "ohlc",
        "change",
        "exchange_timestamp",
        "timestamp",
        "connection_id",
    ];
    const Q: &[&str] = &[
        "tradable",
        "mode",
        "instrument_token",
        "last_price",
        "last_traded_quantity",
        "average_traded_price",
        "volume_traded",
        "total_buy_quantity",
        "total_sell_quantity",
        "ohlc",
        "change",
        "timestamp",
        "connection_id",
    ];
    match (mode, index) {
        (Mode::Ltp, _) => LTP,
        (Mode::Quote, true) => IQ,
        (Mode::Full, true) => IF,
        (Mode::Quote, false) => Q,
        (Mode::Full, false) => &ALL_KEYS,
    }
}

/// Lines of every kind the writer makes (a tradable instrument and an
/// index, each in full, quote and LTP mode; a BCD contract in full mode),
/// `n` consecutive ticks of each, without their newline: what the readers'
/// tests parse.
///
/// See also [`damage`], for the readers' tests of damaged lines.
#[cfg(test)]
pub(crate) fn sample_lines(n: u32) -> Vec<(Mode, Vec<u8>)> {
    let mut f = LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").expect("a zone"));
    let mut out = Vec::new();
    for (token, mode) in [
        (408_065u32, Mode::Full),
        (408_065, Mode::Quote),
        (408_065, Mode::Ltp),
        (256_265, Mode::Full),
        (256_265, Mode::Quote),
        (256_265, Mode::Ltp),
        (1_234_307, Mode::Full),
    ] {
        let mut inst = crate::replay::synthetic::Instrument::new(token, 7);
        for i in 0..n {
            let t = inst.next_tick(mode, 1_764_046_523 + i);
            let mut line = Vec::new();
            f.write_line(&mut line, &t, 1_764_046_523_000_001 + i64::from(i), 2);
            line.pop();
            out.push((mode, line));
        }
    }
    out
}

/// A sample line and up to three edits for [`damage`]: what the readers'
/// property tests of damaged lines draw.
#[cfg(test)]
pub(crate) fn line_and_edits(
) -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Vec<(usize, u8, u8)>)> {
    use proptest::prelude::*;
    let lines: Vec<Vec<u8>> = sample_lines(2).into_iter().map(|(_, l)| l).collect();
    (
        proptest::sample::select(lines),
        proptest::collection::vec((0usize..10_000, any::<u8>(), 0u8..3), 1..4),
    )
}

#[cfg(test)]
/// Damages `line` by `edits` (position, byte, how: 0 overwrite, 1 insert,
/// else cut there), printable bytes only; an edit that falls inside
/// `spare` lands at its start instead (a reader that skips a part unread
/// is tested outside it).
pub(crate) fn damage(line: &mut Vec<u8>, edits: &[(usize, u8, u8)], spare: std::ops::Range<usize>) {
    for &(at, byte, how) in edits {
        let mut at = at % (line.len() + 1);
        if spare.contains(&at) {
            at = spare.start;
        }
        let byte = if byte.is_ascii_graphic() {
            byte
        } else {
            b'0' + byte % 10
        };
        match how {
            0 if at < line.len() => line[at] = byte,
            1 => line.insert(at, byte),
            _ => line.truncate(at.max(1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kite::{DepthEntry, Mode};

    fn formatter() -> LineFormatter {
        LineFormatter::new(ZoneFormatter::new("Asia/Kolkata").unwrap())
    }

    #[test]
    fn ltp_line_has_the_four_keys_then_ours() {
        let mut t = Tick::new(PacketKind::Ltp, 408_065);
        t.last_price = 250_050;
        let mut out = Vec::new();
        formatter().write_line(&mut out, &t, 1_764_046_523_123_456, 1);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"tradable\":true,\"mode\":\"ltp\",\"instrument_token\":408065,\"last_price\":2500.5,\
             \"timestamp\":\"2025-11-25T10:25:23.123456+05:30\",\"connection_id\":1}\n"
        );
    }

    #[test]
    fn index_with_zero_close_writes_integer_change() {
        let mut t = Tick::new(PacketKind::IndexQuote, 256_265);
        t.last_price = 2_400_000;
        let mut out = Vec::new();
        formatter().write_kite_line(&mut out, &t);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "{\"tradable\":false,\"mode\":\"quote\",\"instrument_token\":256265,\"last_price\":24000.0,\
             \"ohlc\":{\"high\":0.0,\"low\":0.0,\"open\":0.0,\"close\":0.0},\"change\":0}\n"
        );
    }

    fn arbitrary_tick(kind: PacketKind, token: u32, seed: u32) -> Tick {
        let mut t = Tick::new(kind, token);
        let v = |k: u32| {
            seed.wrapping_mul(2_654_435_761)
                .wrapping_add(k.wrapping_mul(40_503))
                % 9_000_000
        };
        t.last_price = v(1);
        t.close = v(2);
        t.open = v(3);
        t.high = v(4);
        t.low = v(5);
        if kind.mode() != Mode::Ltp && matches!(kind, PacketKind::Quote | PacketKind::Full) {
            t.volume_traded = v(6);
            t.average_traded_price = v(7);
        }
        if kind == PacketKind::Full {
            t.last_trade_time = 1_700_000_000 + v(8);
            t.exchange_timestamp = 1_700_000_000 + v(9);
            for (i, d) in t.depth.iter_mut().enumerate() {
                *d = DepthEntry {
                    quantity: v(10 + i as u32),
                    price: v(20 + i as u32),
                    orders: (v(30) % 65_536) as u16,
                };
            }
        }
        if kind == PacketKind::IndexFull {
            t.exchange_timestamp = 1_700_000_000;
        }
        t
    }

    #[test]
    fn hand_written_and_serde_lines_agree_in_value() {
        let mut f = formatter();
        let mut clock = ZoneFormatter::new("Asia/Kolkata").unwrap();
        for (i, kind) in PacketKind::ALL.into_iter().enumerate() {
            for token in [408_065u32, 256_265, 0x0100_0003, 0x0100_0006, 0x0100_000c] {
                let t = arbitrary_tick(kind, token, i as u32 + token);
                let (mut a, mut b) = (Vec::new(), Vec::new());
                f.write_line(&mut a, &t, 1_764_046_523_000_001, 3);
                serde_line(&mut clock, &mut b, &t, 1_764_046_523_000_001, 3).unwrap();
                let va: serde_json::Value = serde_json::from_slice(&a).unwrap();
                let vb: serde_json::Value = serde_json::from_slice(&b).unwrap();
                assert_eq!(va, vb, "{kind:?} {token}");
                // and the key order too
                let keys = |v: &serde_json::Value| {
                    v.as_object().unwrap().keys().cloned().collect::<Vec<_>>()
                };
                assert_eq!(keys(&va), keys(&vb));
            }
        }
    }

    #[test]
    fn the_writer_writes_exactly_the_contract_keys_of_each_kind() {
        use crate::kite::PacketKind;
        let mut f = LineFormatter::new(crate::time::ZoneFormatter::new("Asia/Kolkata").unwrap());
        for (kind, token) in [
            (PacketKind::Ltp, 408_065),
            (PacketKind::Quote, 408_065),
            (PacketKind::Full, 408_065),
            (PacketKind::IndexQuote, 256_265),
            (PacketKind::IndexFull, 256_265),
        ] {
            let mut out = Vec::new();
            f.write_line(&mut out, &Tick::new(kind, token), 1_764_215_100_000_000, 1);
            let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
            let got: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            let index = !crate::kite::is_tradable(token);
            assert_eq!(got, keys(kind.mode(), index), "{kind:?}");
        }
    }
}
