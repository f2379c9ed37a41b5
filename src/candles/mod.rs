//! Candles from the tick stream, built as Kite builds its historical ones.
//!
//! **Alignment** (Kite: minute candles are stored and longer intervals are
//! built from them, aligned to the session open): a minute bar starts on
//! the minute; an N-minute bar starts at `open + k·N` minutes, where `open`
//! is the session open of the instrument's exchange in the storage zone —
//! 09:15 for NSE/BSE equity, F&O and indices, 09:00 for MCX, CDS, BCD and
//! NCDEX (the token's low byte says which); a day bar starts at local
//! midnight. Times before the open count back from it the same way.
//!
//! **Which time.** A full-mode tick carries the exchange's
//! `last_trade_time`: its trade belongs to that time's interval. Quote and
//! LTP ticks carry none: they belong to their receive time's interval. A
//! bar is never reopened: a tick whose interval is already final (a late
//! packet) goes to the interval of its receive time, and is counted.
//!
//! **Which ticks.** Kite's ticks are snapshots; only a trade moves
//! `last_price` and `volume_traded`. A tick whose cumulative `volume_traded`
//! did not grow carries no trade and makes no bar (Kite has no candle for a
//! minute without trades); one whose volume went *backwards* is a bad
//! packet: counted and ignored. Indices and LTP-mode ticks carry no volume:
//! every tick counts, and their bars have volume 0 (indices, as Kite's) or
//! `null` (LTP mode: unknown).
//!
//! **Volume** of a bar = the last cumulative `volume_traded` in it minus the
//! last one before it. When capture had no tick of the instrument before
//! the bar (capture began inside it), the volume before its first tick is
//! unknown: that bar is marked `complete: false`. A day bar's volume is the
//! day's cumulative volume, and its open, high and low are the packet's
//! day `open`/`high`/`low` (always known).
//!
//! **Day high/low.** Quote and full packets carry the day's high and low:
//! when the day high rises between two ticks inside an interval, a trade
//! at that price happened then, so the bar's high is at least the new day
//! high even if no snapshot showed it (likewise the low).
//!
//! **Final.** A bar is final once its interval has ended and `GRACE` has
//! passed on the receive clock (the newest tick's receive time; a silent
//! feed is swept by the caller's clock). The same ticks in the same order
//! make the same bars, live or offline.

pub mod stored;

use std::collections::HashMap;

use crate::kite::{PacketKind, Tick};
use crate::number::{write_price, write_u64};
use crate::stats::TokenHasher;
use crate::time::ZoneFormatter;

/// How long after an interval's end its bar waits for late packets.
pub const GRACE_MICROS: i64 = 2_000_000;

/// Kite's candle intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Interval {
    /// `minute`
    Minute,
    /// `3minute`
    Minute3,
    /// `5minute`
    Minute5,
    /// `10minute`
    Minute10,
    /// `15minute`
    Minute15,
    /// `30minute`
    Minute30,
    /// `60minute`
    Minute60,
    /// `day`
    Day,
}

impl Interval {
    /// Every interval, shortest first.
    pub const ALL: [Interval; 8] = [
        Interval::Minute,
        Interval::Minute3,
        Interval::Minute5,
        Interval::Minute10,
        Interval::Minute15,
        Interval::Minute30,
        Interval::Minute60,
        Interval::Day,
    ];

    /// Kite's name (`minute`, `5minute`, `day`), used in file names too.
    pub fn kite_name(self) -> &'static str {
        match self {
            Interval::Minute => "minute",
            Interval::Minute3 => "3minute",
            Interval::Minute5 => "5minute",
            Interval::Minute10 => "10minute",
            Interval::Minute15 => "15minute",
            Interval::Minute30 => "30minute",
            Interval::Minute60 => "60minute",
            Interval::Day => "day",
        }
    }

    /// Minutes in it (a day: 1,440).
    pub fn minutes(self) -> i64 {
        match self {
            Interval::Minute => 1,
            Interval::Minute3 => 3,
            Interval::Minute5 => 5,
            Interval::Minute10 => 10,
            Interval::Minute15 => 15,
            Interval::Minute30 => 30,
            Interval::Minute60 => 60,
            Interval::Day => 1440,
        }
    }

    /// Parses Kite's names and the short forms `1m`, `5m`, `60m`, `1h`, `1d`.
    pub fn parse(text: &str) -> Option<Interval> {
        let t = text.trim().to_ascii_lowercase();
        Interval::ALL.into_iter().find(|i| {
            let m = i.minutes();
            t == i.kite_name()
                || (m < 1440 && (t == format!("{m}m") || t == format!("{m}min")))
                || (*i == Interval::Minute && t == "1minute")
                || (*i == Interval::Minute60 && t == "1h")
                || (*i == Interval::Day && (t == "1d" || t == "d"))
        })
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kite_name())
    }
}

/// The session open of `token`'s exchange, minutes after local midnight:
/// 09:00 for MCX (7), CDS (3), BCD (6) and NCDEX (12); 09:15 otherwise.
pub fn session_open_minute(token: u32) -> i64 {
    match token & 0xff {
        3 | 6 | 7 | 12 => 9 * 60,
        _ => 9 * 60 + 15,
    }
}

/// When `token`'s session closes, minutes after local midnight: NSE and
/// BSE equity and F&O 15:30; currency (CDS, BCD) 17:00; commodities (MCX,
/// NCDEX) 23:55 (MCX's latest close, in US summer; 23:30 otherwise: the
/// later one is safe). The service's own candle repair makes its day's
/// last pass a few minutes after it.
pub fn session_close_minute(token: u32) -> i64 {
    match token & 0xff {
        3 | 6 => 17 * 60,
        7 | 12 => 23 * 60 + 55,
        _ => 15 * 60 + 30,
    }
}

/// Whether a bar starting at `micros` lies in `token`'s session (from its
/// open to its close, local time): Kite has no bars outside it, so a gap
/// at night wants none.
pub fn in_session(zone: &mut ZoneFormatter, token: u32, micros: i64) -> bool {
    let off = i64::from(zone.offset_seconds(micros)) * 1_000_000;
    let minute = (micros + off).rem_euclid(86_400_000_000) / 60_000_000;
    minute >= session_open_minute(token) && minute < session_close_minute(token)
}

/// The start (epoch µs) of the `interval` bar holding `micros`, for
/// `token`, in `zone`.
pub fn bar_start(zone: &mut ZoneFormatter, interval: Interval, token: u32, micros: i64) -> i64 {
    let off = i64::from(zone.offset_seconds(micros)) * 1_000_000;
    bar_start_at(interval, token, micros, off)
}

/// [`bar_start`] with the zone's offset at `micros` known (µs): a tick's
/// intervals share one offset lookup.
fn bar_start_at(interval: Interval, token: u32, micros: i64, off: i64) -> i64 {
    let local = micros + off;
    let day = local.div_euclid(86_400_000_000) * 86_400_000_000;
    let start_local = if interval == Interval::Day {
        day
    } else {
        let len = interval.minutes() * 60_000_000;
        let anchor = day + session_open_minute(token) * 60_000_000;
        anchor + (local - anchor).div_euclid(len) * len
    };
    start_local - off
}

/// One bar. Prices are raw (divide by `kite::price_divisor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// The instrument.
    pub instrument_token: u32,
    /// Its interval.
    pub interval: Interval,
    /// The interval's start, epoch µs.
    pub start: i64,
    /// Open.
    pub open: u32,
    /// High.
    pub high: u32,
    /// Low.
    pub low: u32,
    /// Close.
    pub close: u32,
    /// Traded volume in the interval; `None` when the ticks carry none (LTP mode).
    pub volume: Option<u64>,
    /// Open interest at the close (full mode).
    pub oi: Option<u32>,
    /// Ticks that went into it.
    pub ticks: u32,
    /// Everything in the interval was seen (false: capture began inside
    /// it, or had a gap in it — the caller adds what coverage says).
    pub complete: bool,
    /// The cumulative volume before the bar (its base), when known.
    base: Option<u32>,
}

/// Per instrument: what the next tick is compared with, and its open bars.
#[derive(Debug, Clone, Default)]
struct Inst {
    last_cum: Option<u32>,
    day_high: u32,
    day_low: u32,
    open: Vec<Option<Bar>>,
    /// The start of the last final bar per interval (a bar never reopens).
    last_final: Vec<i64>,
}

/// Counters of what did not go into a bar as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Ticks whose `volume_traded` went backwards (ignored).
    pub volume_backwards: u64,
    /// Ticks whose interval was already final (put in their receive time's bar).
    pub late: u64,
    /// Ticks without a trade (volume unchanged): no bar.
    pub no_trade: u64,
}

/// Open bars of every instrument for a set of intervals.
#[derive(Debug, Clone)]
pub struct Book {
    intervals: Vec<Interval>,
    zone: ZoneFormatter,
    insts: HashMap<u32, Inst, std::hash::BuildHasherDefault<TokenHasher>>,
    /// The newest receive time seen: the book's clock.
    now: i64,
    /// Swept up to (the next sweep is due a second later).
    swept: i64,
    /// What was not put in a bar as sent.
    pub stats: BookStats,
}

impl Book {
    /// Bars of `intervals` (duplicates dropped) in `zone`.
    pub fn new(intervals: &[Interval], zone: ZoneFormatter) -> Book {
        let mut iv = intervals.to_vec();
        iv.sort();
        iv.dedup();
        Book {
            intervals: iv,
            zone,
            insts: HashMap::default(),
            now: i64::MIN,
            swept: i64::MIN,
            stats: BookStats::default(),
        }
    }

    /// The intervals built.
    pub fn intervals(&self) -> &[Interval] {
        &self.intervals
    }

    /// Adds one tick received at `recv` (epoch µs); bars that became final
    /// go to `out`.
    #[inline]
    pub fn update(&mut self, t: &Tick, recv: i64, out: &mut Vec<Bar>) {
        if recv > self.now {
            self.now = recv;
            if recv >= self.swept + 1_000_000 {
                self.sweep_to(recv, out);
            }
        }
        let n = self.intervals.len();
        let inst = self
            .insts
            .entry(t.instrument_token)
            .or_insert_with(|| Inst {
                open: vec![None; n],
                last_final: vec![i64::MIN; n],
                ..Inst::default()
            });
        let has_volume = crate::kite::is_tradable(t.instrument_token) && t.kind != PacketKind::Ltp;
        let cum = t.volume_traded;
        // Is this tick a trade?
        if has_volume {
            match inst.last_cum {
                Some(prev) if cum < prev => {
                    self.stats.volume_backwards += 1;
                    return;
                }
                Some(prev) if cum == prev => {
                    self.stats.no_trade += 1;
                    // The day's high/low cannot move without a trade.
                    return;
                }
                _ => {}
            }
        }
        let first = inst.last_cum.is_none();
        let before = inst.last_cum;
        if has_volume {
            inst.last_cum = Some(cum);
        }
        // The day's range: a new high or low is a trade at that price in
        // this interval (not on the first tick: we do not know when).
        let carries_range = t.kind != PacketKind::Ltp && t.high > 0;
        let (new_high, new_low) = if carries_range && !first {
            (
                (t.high > inst.day_high).then_some(t.high),
                (inst.day_low > 0 && t.low > 0 && t.low < inst.day_low).then_some(t.low),
            )
        } else {
            (None, None)
        };
        if carries_range {
            inst.day_high = inst.day_high.max(t.high);
            if t.low > 0 {
                inst.day_low = if inst.day_low == 0 {
                    t.low
                } else {
                    inst.day_low.min(t.low)
                };
            }
        }
        let trade_time = if t.kind == PacketKind::Full && t.last_trade_time > 0 {
            i64::from(t.last_trade_time) * 1_000_000
        } else {
            recv
        };
        let off = i64::from(self.zone.offset_seconds(trade_time)) * 1_000_000;
        for (k, &interval) in self.intervals.iter().enumerate() {
            let mut start = bar_start_at(interval, t.instrument_token, trade_time, off);
            let open_start = inst.open[k].map(|b| b.start);
            if open_start.is_some_and(|s| start < s) || start <= inst.last_final[k] {
                // A late packet: never reopen a bar.
                self.stats.late += 1;
                start = bar_start(&mut self.zone, interval, t.instrument_token, recv)
                    .max(open_start.unwrap_or(i64::MIN));
                if start <= inst.last_final[k] {
                    continue;
                }
            }
            if open_start.is_some_and(|s| start > s) {
                if let Some(b) = inst.open[k].take() {
                    inst.last_final[k] = b.start;
                    out.push(b);
                }
            }
            let day = interval == Interval::Day;
            let bar = inst.open[k].get_or_insert_with(|| Bar {
                instrument_token: t.instrument_token,
                interval,
                start,
                open: t.last_price,
                high: t.last_price,
                low: t.last_price,
                close: t.last_price,
                // Indices trade no volume (Kite's bars say 0); LTP mode
                // does not say (null).
                volume: (has_volume || !crate::kite::is_tradable(t.instrument_token)).then_some(0),
                oi: None,
                ticks: 0,
                complete: !first || day || !has_volume,
                base: if first { Some(cum) } else { before },
            });
            bar.ticks += 1;
            bar.high = bar.high.max(t.last_price);
            bar.low = bar.low.min(t.last_price);
            bar.close = t.last_price;
            if let Some(h) = new_high {
                bar.high = bar.high.max(h);
            }
            if let Some(l) = new_low {
                bar.low = bar.low.min(l);
            }
            if has_volume {
                bar.volume = Some(u64::from(cum.saturating_sub(bar.base.unwrap_or(cum))));
            }
            if day && carries_range {
                // The day bar is the packet's day: open, high, low, volume.
                if t.open > 0 {
                    bar.open = t.open;
                }
                bar.high = bar.high.max(t.high);
                if t.low > 0 {
                    bar.low = bar.low.min(t.low);
                }
                if has_volume {
                    bar.volume = Some(u64::from(cum));
                }
            }
            if t.kind == PacketKind::Full {
                bar.oi = Some(t.oi);
            }
        }
    }

    /// Finalizes the bars whose interval ended `GRACE` before `now` (the
    /// caller's receive clock: a silent feed still closes its bars).
    pub fn sweep(&mut self, now: i64, out: &mut Vec<Bar>) {
        if now > self.now {
            self.now = now;
        }
        self.sweep_to(self.now, out);
    }

    fn sweep_to(&mut self, now: i64, out: &mut Vec<Bar>) {
        self.swept = now;
        for inst in self.insts.values_mut() {
            for (k, slot) in inst.open.iter_mut().enumerate() {
                if let Some(b) = slot {
                    if bar_end(b) + GRACE_MICROS <= now {
                        inst.last_final[k] = b.start;
                        out.push(*b);
                        *slot = None;
                    }
                }
            }
        }
    }

    /// Every open bar, final now (the end of a file, a shutdown).
    pub fn finish(&mut self, out: &mut Vec<Bar>) {
        for inst in self.insts.values_mut() {
            for (k, slot) in inst.open.iter_mut().enumerate() {
                if let Some(b) = slot.take() {
                    inst.last_final[k] = b.start;
                    out.push(b);
                }
            }
        }
    }

    /// States `token`'s cumulative volume before its first tick (a source
    /// that knows the day from its start, like the replay feed's exchange):
    /// its first bar then has a known volume.
    pub fn assume_volume(&mut self, token: u32, cum: u32) {
        let n = self.intervals.len();
        let inst = self.insts.entry(token).or_insert_with(|| Inst {
            open: vec![None; n],
            last_final: vec![i64::MIN; n],
            ..Inst::default()
        });
        inst.last_cum = Some(cum);
    }

    /// Every bar in progress, into `out` (cleared first).
    pub fn open_bars(&self, out: &mut Vec<Bar>) {
        out.clear();
        for inst in self.insts.values() {
            out.extend(inst.open.iter().flatten().copied());
        }
    }

    /// The bar in progress of `token` for `interval`, if any.
    pub fn open_bar(&self, token: u32, interval: Interval) -> Option<Bar> {
        let k = self.intervals.iter().position(|i| *i == interval)?;
        self.insts.get(&token)?.open[k]
    }
}

/// A final bar in 28 bytes, for today's bars in memory (`GET /candles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compact {
    /// Seconds since the epoch of the interval's start.
    pub start_secs: u32,
    /// Open, high, low, close (raw).
    pub ohlc: [u32; 4],
    /// Volume (saturated at `u32::MAX - 1`; `u32::MAX`: unknown).
    pub volume: u32,
    /// Marked complete.
    pub complete: bool,
    /// Kite's bar (the service's own repair), not tickcap's.
    pub kite: bool,
}

impl Compact {
    /// The compact form of `b`, tickcap's.
    pub fn of(b: &Bar) -> Compact {
        Compact {
            kite: false,
            start_secs: (b.start / 1_000_000).clamp(0, i64::from(u32::MAX)) as u32,
            ohlc: [b.open, b.high, b.low, b.close],
            volume: b
                .volume
                .map_or(u32::MAX, |v| v.min(u64::from(u32::MAX - 1)) as u32),
            complete: b.complete,
        }
    }

    /// Its start, epoch µs.
    pub fn start(&self) -> i64 {
        i64::from(self.start_secs) * 1_000_000
    }

    /// Its volume (`None`: unknown).
    pub fn volume(&self) -> Option<u64> {
        (self.volume != u32::MAX).then_some(u64::from(self.volume))
    }
}

/// One of Kite's historical candles, as its API gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct KiteBar {
    /// `2026-11-27T09:15:00+0530`, as Kite writes it.
    pub date: String,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: u64,
    /// Open interest, when asked for.
    pub oi: Option<u64>,
}

impl Bar {
    /// Kite's bar as a tickcap bar (`complete`: it is Kite's own record).
    /// `None` when its date does not parse.
    pub fn from_kite(token: u32, interval: Interval, k: &KiteBar) -> Option<Bar> {
        let start = parse_kite_date(&k.date)?;
        let div = f64::from(crate::kite::price_divisor(token));
        let raw = |x: f64| (x * div).round().clamp(0.0, f64::from(u32::MAX)) as u32;
        Some(Bar {
            instrument_token: token,
            interval,
            start,
            open: raw(k.open),
            high: raw(k.high),
            low: raw(k.low),
            close: raw(k.close),
            volume: Some(k.volume),
            oi: k.oi.and_then(|o| u32::try_from(o).ok()),
            ticks: 0,
            complete: true,
            base: None,
        })
    }
}

/// Epoch µs of Kite's candle time `2026-11-27T09:15:00+0530`.
pub fn parse_kite_date(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() == 24 && !t[19..].contains(':') {
        crate::time::parse_timestamp(&format!("{}:{}", &t[..22], &t[22..]))
    } else {
        crate::time::parse_timestamp(t)
    }
}

/// When a bar's interval ends, epoch µs.
pub fn bar_end(b: &Bar) -> i64 {
    b.start + b.interval.minutes() * 60_000_000
}

/// Appends a bar as a JSON line: `date` as Kite writes it
/// (`2026-11-27T09:15:00+0530`), prices as the tick lines print them.
pub fn write_bar_line(out: &mut Vec<u8>, zone: &mut ZoneFormatter, b: &Bar, source: &str) {
    let div = crate::kite::price_divisor(b.instrument_token);
    out.extend_from_slice(b"{\"instrument_token\":");
    write_u64(out, u64::from(b.instrument_token));
    out.extend_from_slice(b",\"interval\":\"");
    out.extend_from_slice(b.interval.kite_name().as_bytes());
    out.extend_from_slice(b"\",\"date\":\"");
    write_kite_date(out, zone, b.start);
    out.push(b'"');
    for (k, v) in [
        (&b",\"open\":"[..], b.open),
        (b",\"high\":", b.high),
        (b",\"low\":", b.low),
        (b",\"close\":", b.close),
    ] {
        out.extend_from_slice(k);
        write_price(out, v, div);
    }
    out.extend_from_slice(b",\"volume\":");
    match b.volume {
        Some(v) => write_u64(out, v),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"oi\":");
    match b.oi {
        Some(v) => write_u64(out, u64::from(v)),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"ticks\":");
    write_u64(out, u64::from(b.ticks));
    out.extend_from_slice(if b.complete {
        b",\"complete\":true"
    } else {
        b",\"complete\":false"
    });
    out.extend_from_slice(b",\"source\":\"");
    out.extend_from_slice(source.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// `YYYY-MM-DDTHH:MM:SS+HHMM` (Kite's candle time: no fraction, no colon
/// in the offset).
pub fn write_kite_date(out: &mut Vec<u8>, zone: &mut ZoneFormatter, micros: i64) {
    let mut b = Vec::with_capacity(40);
    zone.write_micros(&mut b, micros);
    // `…T09:15:00.000000+05:30` → `…T09:15:00+0530`
    let (time, off) = b.split_at(26);
    out.extend_from_slice(&time[..19]);
    for &c in off {
        if c != b':' {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z() -> ZoneFormatter {
        ZoneFormatter::new("Asia/Kolkata").unwrap()
    }
    /// Epoch µs of 2026-11-27 HH:MM:SS IST.
    fn ist(h: i64, m: i64, s: i64) -> i64 {
        let midnight_utc = 1_795_737_600_000_000i64; // 2026-11-27T00:00:00Z
        midnight_utc - 19_800_000_000 + ((h * 60 + m) * 60 + s) * 1_000_000
    }
    fn date(b: &Bar) -> String {
        let mut out = Vec::new();
        write_kite_date(&mut out, &mut z(), b.start);
        String::from_utf8(out).unwrap()
    }
    const NSE: u32 = 408_065; // low byte 1
    const MCX: u32 = 53_505_799; // low byte 7

    fn quote(token: u32, price: u32, cum: u32, high: u32, low: u32) -> Tick {
        let mut t = Tick::new(PacketKind::Quote, token);
        t.last_price = price;
        t.volume_traded = cum;
        t.open = 100_000;
        t.high = high;
        t.low = low;
        t.close = 99_000;
        t
    }

    #[test]
    fn bars_align_as_kites_from_the_session_open() {
        let mut zone = z();
        let at = ist(10, 7, 30);
        let s = |i, tok| {
            let mut out = Vec::new();
            write_kite_date(&mut out, &mut z(), bar_start(&mut zone.clone(), i, tok, at));
            String::from_utf8(out).unwrap()
        };
        assert_eq!(s(Interval::Minute, NSE), "2026-11-27T10:07:00+0530");
        assert_eq!(s(Interval::Minute5, NSE), "2026-11-27T10:05:00+0530");
        assert_eq!(s(Interval::Minute15, NSE), "2026-11-27T10:00:00+0530");
        assert_eq!(s(Interval::Minute30, NSE), "2026-11-27T09:45:00+0530");
        assert_eq!(s(Interval::Minute60, NSE), "2026-11-27T09:15:00+0530");
        assert_eq!(s(Interval::Minute60, MCX), "2026-11-27T10:00:00+0530");
        assert_eq!(s(Interval::Minute3, NSE), "2026-11-27T10:06:00+0530");
        assert_eq!(s(Interval::Day, NSE), "2026-11-27T00:00:00+0530");
        // Before the open, counted back from it: the 09:08 pre-open trade.
        let pre = bar_start(&mut zone, Interval::Minute5, NSE, ist(9, 8, 0));
        assert_eq!(pre, ist(9, 5, 0));
        assert_eq!(
            bar_start(&mut zone, Interval::Minute60, NSE, ist(15, 29, 59)),
            ist(15, 15, 0)
        );
    }

    #[test]
    fn kites_dates_read_back() {
        assert_eq!(
            parse_kite_date("2026-11-27T09:15:00+0530"),
            Some(ist(9, 15, 0))
        );
        assert_eq!(
            parse_kite_date("2026-11-27T09:15:00+05:30"),
            Some(ist(9, 15, 0))
        );
        assert_eq!(parse_kite_date("2026-13-27T09:15:00+0530"), None);
    }

    #[test]
    fn intervals_parse_from_kites_names_and_short_forms() {
        for (t, i) in [
            ("minute", Interval::Minute),
            ("1m", Interval::Minute),
            ("5m", Interval::Minute5),
            ("15minute", Interval::Minute15),
            ("60m", Interval::Minute60),
            ("1h", Interval::Minute60),
            ("day", Interval::Day),
            ("1d", Interval::Day),
        ] {
            assert_eq!(Interval::parse(t), Some(i), "{t}");
        }
        assert_eq!(Interval::parse("7m"), None);
    }

    #[test]
    fn volume_is_the_difference_of_cumulative_volumes_and_backwards_is_ignored() {
        let mut b = Book::new(&[Interval::Minute], z());
        let mut out = Vec::new();
        b.update(&quote(NSE, 1000, 500, 1010, 990), ist(10, 0, 1), &mut out);
        b.update(&quote(NSE, 1002, 520, 1010, 990), ist(10, 0, 20), &mut out);
        b.update(&quote(NSE, 1002, 520, 1010, 990), ist(10, 0, 21), &mut out); // no trade
        b.update(&quote(NSE, 1001, 510, 1010, 990), ist(10, 0, 30), &mut out); // backwards: bad
        b.update(&quote(NSE, 999, 530, 1010, 990), ist(10, 0, 50), &mut out);
        b.update(&quote(NSE, 1003, 545, 1010, 990), ist(10, 1, 5), &mut out);
        assert_eq!(out.len(), 1, "the 10:00 bar is final once 10:01 trades");
        let bar = out[0];
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (1000, 1002, 999, 999)
        );
        assert_eq!(
            bar.volume,
            Some(30),
            "530 - 500: the first tick's own volume is unknown"
        );
        assert!(!bar.complete, "capture began inside it");
        assert_eq!(b.stats.volume_backwards, 1);
        assert_eq!(b.stats.no_trade, 1);
        b.finish(&mut out);
        assert_eq!(out[1].volume, Some(15), "545 - 530");
        assert!(out[1].complete);
        assert_eq!(date(&out[1]), "2026-11-27T10:01:00+0530");
    }

    #[test]
    fn a_full_tick_belongs_to_its_last_trade_time_and_a_late_one_never_reopens() {
        let mut b = Book::new(&[Interval::Minute], z());
        let mut out = Vec::new();
        let full = |price, cum, ltt: i64| {
            let mut t = quote(NSE, price, cum, 2000, 900);
            t.kind = PacketKind::Full;
            t.last_trade_time = (ltt / 1_000_000) as u32;
            t.oi = 77;
            t
        };
        b.update(&full(1000, 10, ist(10, 0, 59)), ist(10, 0, 59), &mut out);
        // Received in the next minute, traded in this one: this bar.
        b.update(
            &full(1005, 12, ist(10, 0, 59)),
            ist(10, 1, 0) + 300_000,
            &mut out,
        );
        b.update(&full(1007, 13, ist(10, 1, 10)), ist(10, 1, 10), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].close, out[0].volume, out[0].oi),
            (1005, Some(2), Some(77))
        );
        // A packet of 10:00's trade after that bar is final: the open bar.
        b.update(&full(1004, 14, ist(10, 0, 30)), ist(10, 1, 20), &mut out);
        assert_eq!(b.stats.late, 1);
        b.finish(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].close, out[1].volume), (1004, Some(2)));
    }

    #[test]
    fn a_new_day_high_inside_an_interval_lifts_its_high() {
        let mut b = Book::new(&[Interval::Minute, Interval::Day], z());
        let mut out = Vec::new();
        b.update(&quote(NSE, 1000, 100, 1010, 990), ist(10, 0, 1), &mut out);
        // A trade at 1012 happened between the snapshots: the day high says so.
        b.update(&quote(NSE, 1005, 120, 1012, 990), ist(10, 0, 30), &mut out);
        b.finish(&mut out);
        let m = out.iter().find(|x| x.interval == Interval::Minute).unwrap();
        assert_eq!(m.high, 1012);
        let d = out.iter().find(|x| x.interval == Interval::Day).unwrap();
        assert_eq!(
            (d.open, d.high, d.low, d.volume),
            (100_000, 1012, 990, Some(120))
        );
        assert!(d.complete, "a day bar is the packet's day");
        assert_eq!(date(d), "2026-11-27T00:00:00+0530");
    }

    #[test]
    fn bars_close_by_the_clock_and_the_line_is_kites() {
        let mut b = Book::new(&[Interval::Minute5], z());
        let mut out = Vec::new();
        b.update(&quote(NSE, 100_050, 7, 1, 1), ist(9, 15, 3), &mut out);
        b.sweep(ist(9, 20, 1), &mut out);
        assert!(out.is_empty(), "within the grace");
        b.sweep(ist(9, 20, 2), &mut out);
        assert_eq!(out.len(), 1);
        let mut line = Vec::new();
        write_bar_line(&mut line, &mut z(), &out[0], "tickcap");
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"instrument_token\":408065,\"interval\":\"5minute\",\"date\":\"2026-11-27T09:15:00+0530\",\"open\":1000.5,\"high\":1000.5,\"low\":1000.5,\"close\":1000.5,\"volume\":0,\"oi\":null,\"ticks\":1,\"complete\":false,\"source\":\"tickcap\"}\n"
        );
    }

    #[test]
    fn indices_make_a_bar_of_every_tick_with_volume_zero() {
        let idx = 256_265; // low byte 9: INDICES
        let mut b = Book::new(&[Interval::Minute], z());
        let mut out = Vec::new();
        let mut t = Tick::new(PacketKind::IndexQuote, idx);
        for (i, p) in [2_600_000u32, 2_600_500, 2_599_000].iter().enumerate() {
            t.last_price = *p;
            b.update(&t, ist(11, 0, i as i64), &mut out);
        }
        b.finish(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].high, out[0].low, out[0].volume, out[0].complete),
            (2_600_500, 2_599_000, Some(0), true)
        );
    }
}
