//! Candles from captured days (`tickcap candles`): the live builder
//! ([`crate::candles::Book`]) over the tick lines in file order, with
//! completeness from the day's events journal — the same bars the service
//! wrote live from the same ticks.

use std::path::{Path, PathBuf};

use crate::candles::{Bar, Book, Interval};
use crate::events::coverage::Report;
use crate::time::ZoneFormatter;

/// What re-cutting found.
#[derive(Debug, Default)]
pub struct Cut {
    /// The bars, in the order they became final.
    pub bars: Vec<Bar>,
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

/// The text of a plain or `.zst` capture.
fn read_text(path: &Path) -> std::io::Result<Vec<u8>> {
    crate::util::regular_file(path)?;
    let bytes = std::fs::read(path)?;
    if !crate::zst::is_zst(path) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 8);
    let mut frame = Vec::new();
    for f in crate::zst::frames(&bytes).frames {
        crate::zst::decompress_frame(&bytes[f], &mut frame)?;
        out.extend_from_slice(&frame);
    }
    Ok(out)
}

/// Builds the bars of `intervals` from `files` (in the order given),
/// marking incomplete those whose instrument `coverage` does not show
/// covered for their whole interval (when there is a journal).
pub fn cut(
    files: &[PathBuf],
    intervals: &[Interval],
    zone: &ZoneFormatter,
    coverage: Option<&Report>,
) -> std::io::Result<Cut> {
    let mut book = Book::new(intervals, zone.clone());
    let mut out = Cut::default();
    let mut scratch = Vec::new();
    for path in files {
        let text = read_text(path)?;
        for (i, line) in text.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            out.lines += 1;
            match crate::replay::recorded::parse_line(line, &mut scratch) {
                Ok(r) => book.update(&r.tick, r.at_micros, &mut out.bars),
                Err(e) => {
                    if out.bad.len() < 1000 {
                        out.bad.push((path.clone(), i + 1, e));
                    }
                }
            }
        }
    }
    book.finish(&mut out.bars);
    out.stats = book.stats;
    if let Some(r) = coverage {
        for b in &mut out.bars {
            if b.interval != Interval::Day
                && !covered(r, b.instrument_token, b.start, crate::candles::bar_end(b))
            {
                b.complete = false;
            }
        }
    }
    Ok(out)
}
