//! Candles from captured days (`tickcap candles`): the live builder
//! ([`crate::candles::Book`]) over the tick lines in file order, with
//! completeness from the day's events journal — the same bars the service
//! wrote live from the same ticks.

use std::path::PathBuf;

use crate::candles::{Bar, Book, Interval, KiteBar};
use crate::events::coverage::Report;
use crate::time::ZoneFormatter;

/// What re-cutting found.
#[derive(Debug, Default)]
pub struct Cut {
    /// The bars, in the order they became final ([`cut`] only).
    pub bars: Vec<Bar>,
    /// Bars handed out.
    pub bars_written: u64,
    /// Lines read.
    pub lines: u64,
    /// Lines that were not tick lines (reported, skipped).
    pub bad: Vec<(PathBuf, usize, String)>,
    /// What the builder did not put in a bar as sent.
    pub stats: crate::candles::BookStats,
}

/// Whether `report` shows `token` covered without a break over `[start, end)`.
pub fn covered(report: &Report, token: u32, start: i64, end: i64) -> bool {
    report
        .instruments
        .get(&token)
        .is_some_and(|i| i.covered.iter().any(|(s, e)| *s <= start && *e >= end))
}

/// Ticks parsed from one chunk of a capture (a zstd frame, or ~4 MiB of
/// a plain file), in file order.
struct Parsed {
    ticks: Vec<(crate::kite::Tick, i64)>,
    lines: u64,
    bad: Vec<(usize, String)>,
}

/// Day OHLC as a line writes it.
#[derive(serde::Deserialize)]
struct DayOhlc {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
}

/// What the candle book reads from a line: depth and the rest are skipped
/// unbuilt (a typed serde pass over the borrowed line, no copy).
#[derive(serde::Deserialize)]
struct BookFields<'a> {
    instrument_token: u32,
    mode: &'a str,
    timestamp: &'a str,
    last_price: f64,
    #[serde(default)]
    ohlc: Option<DayOhlc>,
    #[serde(default)]
    volume_traded: Option<u32>,
    #[serde(default)]
    last_trade_time: Option<&'a str>,
    #[serde(default)]
    oi: Option<u32>,
}

/// The tick fields the book uses ([`Book::update`]: token, kind, last
/// price, day OHLC, cumulative volume, last trade time, OI) and the
/// receive time, from one line. The same values as
/// [`crate::replay::recorded::parse_line`] (tested), without building depth.
pub fn parse_for_book(line: &[u8]) -> Result<(crate::kite::Tick, i64), String> {
    match super::fastline::book(line) {
        Some(t) => Ok(t),
        None => parse_for_book_serde(line),
    }
}

/// [`parse_for_book`] by serde: the reference, and the reading of any line
/// the fast one does not expect.
pub fn parse_for_book_serde(line: &[u8]) -> Result<(crate::kite::Tick, i64), String> {
    use crate::kite::{price_divisor, PacketKind, Tick};
    let f: BookFields<'_> = serde_json::from_slice(line).map_err(|e| format!("not JSON: {e}"))?;
    let mode: crate::kite::Mode = f
        .mode
        .parse()
        .map_err(|e: crate::kite::UnknownMode| e.to_string())?;
    let at = crate::time::parse_timestamp(f.timestamp)
        .ok_or_else(|| format!("\"timestamp\": {:?} is not a time", f.timestamp))?;
    let token = f.instrument_token;
    let div = f64::from(price_divisor(token));
    let raw = |key: &str, x: f64| -> Result<u32, String> {
        let r = (x * div).round();
        if (0.0..=f64::from(u32::MAX)).contains(&r) {
            Ok(r as u32)
        } else {
            Err(format!("{key:?} = {x} is out of range"))
        }
    };
    let kind = mode.packet_kind(token);
    let mut t = Tick::new(kind, token);
    t.last_price = raw("last_price", f.last_price)?;
    if kind != PacketKind::Ltp {
        let o = f.ohlc.ok_or("\"ohlc\" is missing")?;
        t.open = raw("open", o.open)?;
        t.high = raw("high", o.high)?;
        t.low = raw("low", o.low)?;
        t.close = raw("close", o.close)?;
    }
    if matches!(kind, PacketKind::Quote | PacketKind::Full) {
        t.volume_traded = f.volume_traded.ok_or("\"volume_traded\" is missing")?;
    }
    if kind == PacketKind::Full {
        let ltt = f.last_trade_time.ok_or("\"last_trade_time\" is missing")?;
        let micros = crate::time::parse_timestamp(ltt)
            .ok_or_else(|| format!("\"last_trade_time\": {ltt:?} is not a time"))?;
        t.last_trade_time = u32::try_from(micros.div_euclid(1_000_000))
            .map_err(|_| "\"last_trade_time\" is outside Kite's epoch range".to_owned())?;
        t.oi = f.oi.ok_or("\"oi\" is missing")?;
    }
    Ok((t, at))
}

/// Parses one unit's lines; bad lines are numbered within the unit.
fn parse_chunk(text: &[u8]) -> Parsed {
    let mut p = Parsed {
        ticks: Vec::with_capacity(text.len() / 300),
        lines: 0,
        bad: Vec::new(),
    };
    for (i, line) in crate::analysis::fastline::lines(text).enumerate() {
        if line.is_empty() {
            continue;
        }
        p.lines += 1;
        match parse_for_book(line) {
            Ok(r) => p.ticks.push(r),
            Err(e) => {
                if p.bad.len() < 100 {
                    p.bad.push((i + 1, e));
                }
            }
        }
    }
    p
}

fn push_bad(out: &mut Cut, path: &std::path::Path, line: usize, e: String) {
    if out.bad.len() < 1000 {
        out.bad.push((path.to_path_buf(), line, e));
    }
}

/// Builds the bars of `intervals` from `files` (in the order given),
/// handing each to `on_bar` as it becomes final — streaming: the files are
/// mapped and read a frame (or 4 MiB of lines) at a time, decompressed and
/// parsed on up to four threads (a unit each in turn) and built in order on
/// this one, so memory stays bounded whatever
/// the day's size. Bars whose instrument `coverage` does not show covered
/// for their whole interval are marked incomplete (with a journal).
pub fn cut_with(
    files: &[PathBuf],
    intervals: &[Interval],
    zone: &ZoneFormatter,
    coverage: Option<&Report>,
    mut on_bar: impl FnMut(&Bar) -> std::io::Result<()>,
) -> std::io::Result<Cut> {
    let mut out = Cut::default();
    let mut book = Book::new(intervals, zone.clone());
    let mut finals = Vec::new();
    let mark = |b: &mut Bar| {
        if let Some(r) = coverage {
            if b.interval != Interval::Day
                && !covered(r, b.instrument_token, b.start, crate::candles::bar_end(b))
            {
                b.complete = false;
            }
        }
    };
    for path in files {
        crate::util::regular_file(path)?;
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            continue;
        }
        // SAFETY: a read-only map of a file we only read; a capture being
        // written only grows past the mapped length.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let zstd = crate::zst::is_zst(path);
        let bytes = &map[..];
        // The units of work: a zstd frame each, or ~4 MiB of whole lines.
        let units: Vec<std::ops::Range<usize>> = if zstd {
            let fr = crate::zst::frames_of_map(bytes);
            for c in &fr.corrupt {
                push_bad(
                    &mut out,
                    path,
                    0,
                    format!(
                        "bytes {}..{} are no whole zstd frame (skipped)",
                        c.start, c.end
                    ),
                );
            }
            if let Some(at) = fr.torn_at {
                push_bad(
                    &mut out,
                    path,
                    0,
                    format!("a torn frame at byte {at} (skipped)"),
                );
            }
            fr.frames
        } else {
            let mut v = Vec::new();
            let mut at = 0;
            while at < bytes.len() {
                let mut end = (at + (4 << 20)).min(bytes.len());
                if end < bytes.len() {
                    end = memchr::memchr(b'\n', &bytes[end..]).map_or(bytes.len(), |i| end + i + 1);
                }
                v.push(at..end);
                at = end;
            }
            v
        };
        // Decompressing and parsing are most of the work and each unit
        // stands alone: `workers` threads take every `workers`-th unit;
        // the book is built here, in file order, from their results.
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(1, 4)
            .min(units.len().max(1));
        let result = std::thread::scope(|sc| -> std::io::Result<()> {
            let mut rxs = Vec::with_capacity(workers);
            let mut handles = Vec::with_capacity(workers);
            for w in 0..workers {
                let (tx, rx) = std::sync::mpsc::sync_channel::<Parsed>(16);
                rxs.push(rx);
                let units = &units;
                handles.push(sc.spawn(move || -> std::io::Result<()> {
                    let mut text = Vec::new();
                    for u in units.iter().skip(w).step_by(workers) {
                        let p = if zstd {
                            crate::zst::decompress_frame(&bytes[u.clone()], &mut text)?;
                            parse_chunk(&text)
                        } else {
                            parse_chunk(&bytes[u.clone()])
                        };
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                    Ok(())
                }));
            }
            let mut line_no = 0usize;
            let mut released = 0;
            for i in 0..units.len() {
                let Ok(p) = rxs[i % workers].recv() else {
                    break;
                };
                // Every unit up to this one is done: give their pages back,
                // in long stretches (a unit's own edges are shared with its
                // neighbours: released one by one, a page each stayed).
                if units[i].end - released >= 64 << 20 {
                    crate::util::release_mapped(bytes, released..units[i].end);
                    released = units[i].end;
                }
                for (line, e) in p.bad {
                    push_bad(&mut out, path, line_no + line, e);
                }
                line_no += p.lines as usize;
                out.lines += p.lines;
                for (t, at) in &p.ticks {
                    book.update(t, *at, &mut finals);
                }
                for mut b in finals.drain(..) {
                    mark(&mut b);
                    on_bar(&b)?;
                    out.bars_written += 1;
                }
            }
            drop(rxs);
            for h in handles {
                h.join()
                    .map_err(|_| std::io::Error::other("a parser thread panicked"))??;
            }
            Ok(())
        });
        result?;
    }
    book.finish(&mut finals);
    for mut b in finals.drain(..) {
        mark(&mut b);
        on_bar(&b)?;
        out.bars_written += 1;
    }
    out.stats = book.stats;
    Ok(out)
}

/// [`cut_with`], keeping every bar (for tests and small days).
pub fn cut(
    files: &[PathBuf],
    intervals: &[Interval],
    zone: &ZoneFormatter,
    coverage: Option<&Report>,
) -> std::io::Result<Cut> {
    let mut bars = Vec::new();
    let mut c = cut_with(files, intervals, zone, coverage, |b| {
        bars.push(*b);
        Ok(())
    })?;
    c.bars = bars;
    Ok(c)
}

/// A bar as a candle file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    /// The instrument.
    pub instrument_token: u32,
    /// `date` as written (Kite's form).
    pub date: String,
    /// Open, high, low, close.
    pub ohlc: [f64; 4],
    /// Volume (`None`: LTP mode).
    pub volume: Option<u64>,
    /// Marked complete.
    pub complete: bool,
}

/// Reads a candle file's lines (bad lines are skipped and counted).
pub fn read_candles(text: &[u8]) -> (Vec<Captured>, u64) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in crate::analysis::fastline::lines(text).filter(|l| !l.is_empty()) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            bad += 1;
            continue;
        };
        let f = |k: &str| v[k].as_f64();
        match (
            v["instrument_token"]
                .as_u64()
                .and_then(|t| u32::try_from(t).ok()),
            v["date"].as_str(),
            f("open"),
            f("high"),
            f("low"),
            f("close"),
        ) {
            (Some(t), Some(d), Some(o), Some(h), Some(l), Some(c)) => out.push(Captured {
                instrument_token: t,
                date: d.to_owned(),
                ohlc: [o, h, l, c],
                volume: v["volume"].as_u64(),
                complete: v["complete"].as_bool().unwrap_or(false),
            }),
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// The fields compared, in report order.
pub const FIELDS: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// How ours and Kite's bars of one instrument (or all) agree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// Bars present in both.
    pub bars: u64,
    /// Of those, how many agree exactly on each of [`FIELDS`].
    pub agree: [u64; 5],
    /// Bars present in both and marked complete by tickcap.
    pub complete_bars: u64,
    /// Of those, how many agree on each field.
    pub complete_agree: [u64; 5],
    /// Kite's bars inside the captured span that tickcap has not (a gap).
    pub missing_in_capture: u64,
    /// tickcap's bars Kite has not.
    pub not_in_kite: u64,
    /// (token, date, field, ours, Kite's, complete) of each disagreement.
    pub disagreements: Vec<(u32, String, &'static str, f64, f64, bool)>,
}

impl Agreement {
    /// Adds another's counts (the overall figure).
    pub fn add(&mut self, o: &Agreement) {
        self.bars += o.bars;
        self.complete_bars += o.complete_bars;
        for i in 0..5 {
            self.agree[i] += o.agree[i];
            self.complete_agree[i] += o.complete_agree[i];
        }
        self.missing_in_capture += o.missing_in_capture;
        self.not_in_kite += o.not_in_kite;
    }

    /// The share agreeing per field (1.0 with no bars).
    pub fn shares(&self, complete_only: bool) -> [f64; 5] {
        let (n, a) = if complete_only {
            (self.complete_bars, self.complete_agree)
        } else {
            (self.bars, self.agree)
        };
        a.map(|x| if n == 0 { 1.0 } else { x as f64 / n as f64 })
    }
}

/// Compares one instrument's captured bars with Kite's. Kite's bars outside
/// the captured span (before the first captured bar, after the last) are
/// not counted: capture did not run then.
pub fn compare(token: u32, ours: &[Captured], kite: &[KiteBar]) -> Agreement {
    let mut a = Agreement::default();
    let by_date: std::collections::HashMap<&str, &KiteBar> =
        kite.iter().map(|k| (k.date.as_str(), k)).collect();
    let (Some(first), Some(last)) = (
        ours.iter().map(|b| b.date.as_str()).min(),
        ours.iter().map(|b| b.date.as_str()).max(),
    ) else {
        return a;
    };
    let mut seen = std::collections::HashSet::new();
    for b in ours {
        let Some(k) = by_date.get(b.date.as_str()) else {
            a.not_in_kite += 1;
            continue;
        };
        seen.insert(b.date.as_str());
        a.bars += 1;
        if b.complete {
            a.complete_bars += 1;
        }
        let theirs = [k.open, k.high, k.low, k.close, k.volume as f64];
        let mine = [
            b.ohlc[0],
            b.ohlc[1],
            b.ohlc[2],
            b.ohlc[3],
            b.volume.map_or(f64::NAN, |v| v as f64),
        ];
        for i in 0..5 {
            if (mine[i] - theirs[i]).abs() <= 1e-9 * theirs[i].abs().max(1.0) {
                a.agree[i] += 1;
                if b.complete {
                    a.complete_agree[i] += 1;
                }
            } else if a.disagreements.len() < 10_000 {
                a.disagreements.push((
                    token,
                    b.date.clone(),
                    FIELDS[i],
                    mine[i],
                    theirs[i],
                    b.complete,
                ));
            }
        }
    }
    a.missing_in_capture = kite
        .iter()
        .filter(|k| {
            k.date.as_str() >= first && k.date.as_str() <= last && !seen.contains(k.date.as_str())
        })
        .count() as u64;
    a
}

#[cfg(test)]
mod tests {
    /// The book's fields from the typed pass equal the full parse's.
    #[test]
    fn the_books_fields_equal_the_full_parse() {
        let mut scratch = Vec::new();
        for (_, line) in crate::sink::line::sample_lines(50) {
            let full = crate::replay::recorded::parse_line(&line, &mut scratch).unwrap();
            let (b, at) = super::parse_for_book(&line).unwrap();
            let a = &full.tick;
            assert_eq!(at, full.at_micros);
            assert_eq!(
                (
                    b.instrument_token,
                    b.kind,
                    b.last_price,
                    b.open,
                    b.high,
                    b.low,
                    b.close
                ),
                (
                    a.instrument_token,
                    a.kind,
                    a.last_price,
                    a.open,
                    a.high,
                    a.low,
                    a.close
                )
            );
            assert_eq!(
                (b.volume_traded, b.last_trade_time, b.oi),
                (a.volume_traded, a.last_trade_time, a.oi)
            );
        }
        assert!(super::parse_for_book(b"{\"instrument_token\":1}").is_err());
    }
}
