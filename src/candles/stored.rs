//! Candle files as written: which bars a day's file holds, which of them
//! need Kite's bars in their place, and the rule that makes an append-only
//! file hold a repair — **a later line for the same instrument and `date`
//! replaces an earlier one** (the service appends Kite's bar after its own
//! incomplete one; `tickcap candles repair` rewrites a closed day into one
//! line per bar).
//!
//! The repair plan is one pure function of the day's coverage gaps and the
//! file's lines, shared by `tickcap candles repair` (a closed day) and the
//! service's own repair (`[candles] repair = true`, today's file):
//!
//! - a bar whose **last** line is tickcap's and `"complete": false` is
//!   wanted;
//! - an interval that overlaps a coverage gap and has **no line at all** is
//!   wanted (a whole interval lost has no bar);
//! - a bar whose last line is complete — tickcap's or Kite's — is never
//!   wanted, even inside a gap (a kill -9 makes the journal's gap start at
//!   the last heartbeat, before bars that were in fact seen whole);
//! - only bars that ended before `ready_before` (Kite publishes a bar some
//!   time after it ends).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Interval;
use crate::time::ZoneFormatter;

/// What the repair needs of one candle line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineKey {
    /// The instrument.
    pub instrument_token: u32,
    /// The bar's start, epoch µs.
    pub start: i64,
    /// Marked complete.
    pub complete: bool,
    /// `"source": "kite"` (a repaired bar).
    pub kite: bool,
}

/// Parses the dates of consecutive lines once (a file's lines come a minute
/// at a time: thousands share one `date`).
#[derive(Debug, Default)]
pub struct DateCache {
    text: Vec<u8>,
    micros: i64,
}

fn field<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let at = line.windows(key.len()).position(|w| w == key)? + key.len();
    Some(&line[at..])
}

/// The key of one candle line (`None`: not a candle line). Reads the keys
/// tickcap writes; it does not need the full JSON parse.
pub fn key_of_line(line: &[u8], dates: &mut DateCache) -> Option<LineKey> {
    let t = field(line, b"\"instrument_token\":")?;
    let end = t.iter().position(|b| !b.is_ascii_digit())?;
    let token: u32 = std::str::from_utf8(&t[..end]).ok()?.parse().ok()?;
    let d = field(line, b"\"date\":\"")?;
    let d = &d[..d.iter().position(|b| *b == b'"')?];
    if d != dates.text.as_slice() {
        dates.micros = super::parse_kite_date(std::str::from_utf8(d).ok()?)?;
        dates.text.clear();
        dates.text.extend_from_slice(d);
    }
    Some(LineKey {
        instrument_token: token,
        start: dates.micros,
        complete: field(line, b"\"complete\":true").is_some(),
        kite: field(line, b"\"source\":\"kite\"").is_some(),
    })
}

/// Keeps the last line of each bar when a file is read twice: the first
/// reading [`count`](LastLines::count)s the lines of bars that ever had an
/// incomplete or Kite line (only those can have more than one: memory holds
/// them, not the day), the second asks [`keep`](LastLines::keep).
#[derive(Debug, Default)]
pub struct LastLines {
    lines_of: HashMap<(u32, i64), u32>,
    dates: DateCache,
}

impl LastLines {
    /// First reading: one line, in file order.
    pub fn count(&mut self, line: &[u8]) {
        if let Some(k) = key_of_line(line, &mut self.dates) {
            let key = (k.instrument_token, k.start);
            if !k.complete || k.kite || self.lines_of.contains_key(&key) {
                *self.lines_of.entry(key).or_default() += 1;
            }
        }
    }

    /// Whether `(instrument, start)` had a line in the first reading.
    pub fn had(&self, token: u32, start: i64) -> bool {
        self.lines_of.contains_key(&(token, start))
    }

    /// Second reading, same order: whether this line is its bar's last
    /// (lines that are not candle lines are kept: the caller reports them).
    pub fn keep(&mut self, line: &[u8]) -> bool {
        let Some(k) = key_of_line(line, &mut self.dates) else {
            return true;
        };
        match self.lines_of.get_mut(&(k.instrument_token, k.start)) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            _ => true,
        }
    }
}

/// Builds the repair plan of one interval's day from its gaps and lines.
#[derive(Debug)]
pub struct Planner {
    interval: Interval,
    /// Per instrument, the coverage gaps `[start, end)` (epoch µs).
    gaps: HashMap<u32, Vec<(i64, i64)>>,
    /// Bars whose last line so far is tickcap's and incomplete.
    incomplete: BTreeSet<(u32, i64)>,
    /// Bars inside a gap that have a line (only these are remembered: a
    /// day's whole file is millions of bars).
    present_in_gap: HashSet<(u32, i64)>,
    /// Lines read.
    pub lines: u64,
    /// Lines that are not candle lines.
    pub bad: u64,
}

impl Planner {
    /// A plan for `interval` given the day's coverage gaps
    /// (`(instrument, start, end)`, epoch µs).
    pub fn new(interval: Interval, gaps: impl IntoIterator<Item = (u32, i64, i64)>) -> Planner {
        let mut by: HashMap<u32, Vec<(i64, i64)>> = HashMap::new();
        for (t, s, e) in gaps {
            if e > s {
                by.entry(t).or_default().push((s, e));
            }
        }
        Planner {
            interval,
            gaps: by,
            incomplete: BTreeSet::new(),
            present_in_gap: HashSet::new(),
            lines: 0,
            bad: 0,
        }
    }

    fn in_gap(&self, token: u32, start: i64) -> bool {
        let end = start + self.interval.minutes() * 60_000_000;
        self.gaps
            .get(&token)
            .is_some_and(|g| g.iter().any(|&(s, e)| s < end && e > start))
    }

    /// Takes one line of the file, in file order.
    pub fn line(&mut self, line: &[u8], dates: &mut DateCache) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        match key_of_line(line, dates) {
            Some(k) => self.key(k),
            None => self.bad += 1,
        }
    }

    /// Takes one line's key, in file order.
    pub fn key(&mut self, k: LineKey) {
        let key = (k.instrument_token, k.start);
        if k.complete || k.kite {
            self.incomplete.remove(&key);
        } else {
            self.incomplete.insert(key);
        }
        if self.in_gap(k.instrument_token, k.start) {
            self.present_in_gap.insert(key);
        }
    }

    /// The bars to fetch from Kite, per instrument: those that ended before
    /// `ready_before` (epoch µs).
    pub fn wanted(
        &self,
        zone: &mut ZoneFormatter,
        ready_before: i64,
    ) -> BTreeMap<u32, BTreeSet<i64>> {
        let len = self.interval.minutes() * 60_000_000;
        let mut out: BTreeMap<u32, BTreeSet<i64>> = BTreeMap::new();
        for &(t, s) in &self.incomplete {
            if s + len <= ready_before {
                out.entry(t).or_default().insert(s);
            }
        }
        for (&t, gaps) in &self.gaps {
            for &(gs, ge) in gaps {
                let mut at = super::bar_start(zone, self.interval, t, gs);
                while at < ge && at + len <= ready_before {
                    if !self.present_in_gap.contains(&(t, at)) && super::in_session(zone, t, at) {
                        out.entry(t).or_default().insert(at);
                    }
                    at += len;
                }
            }
        }
        out
    }

    /// The earliest time a wanted bar not yet ready at `ready_before` will be
    /// (`None`: nothing waits).
    pub fn next_ready(&self, zone: &mut ZoneFormatter, ready_before: i64) -> Option<i64> {
        let len = self.interval.minutes() * 60_000_000;
        let mut next: Option<i64> = None;
        let mut see = |end: i64| {
            if end > ready_before {
                next = Some(next.map_or(end, |n| n.min(end)));
            }
        };
        for &(_, s) in &self.incomplete {
            see(s + len);
        }
        for (&t, gaps) in &self.gaps {
            for &(gs, ge) in gaps {
                let mut at = super::bar_start(zone, self.interval, t, gs);
                while at < ge {
                    if at + len > ready_before
                        && !self.present_in_gap.contains(&(t, at))
                        && super::in_session(zone, t, at)
                    {
                        see(at + len);
                        break;
                    }
                    at += len;
                }
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 60_000_000;
    /// 2026-11-27 09:15 IST.
    const OPEN: i64 = 1_795_751_100_000_000;

    fn zone() -> ZoneFormatter {
        ZoneFormatter::new("Asia/Kolkata").unwrap()
    }

    fn line(token: u32, start: i64, complete: bool, source: &str) -> Vec<u8> {
        let mut z = zone();
        let b = super::super::Bar {
            instrument_token: token,
            interval: Interval::Minute,
            start,
            open: 100,
            high: 100,
            low: 100,
            close: 100,
            volume: Some(1),
            oi: None,
            ticks: 1,
            complete,
            base: None,
        };
        let mut out = Vec::new();
        super::super::write_bar_line(&mut out, &mut z, &b, source);
        out
    }

    #[test]
    fn open_is_a_minute_boundary() {
        let mut z = zone();
        assert_eq!(
            super::super::bar_start(&mut z, Interval::Minute, 256, OPEN),
            OPEN
        );
        let l = line(256, OPEN, false, "tickcap");
        let k = key_of_line(&l, &mut DateCache::default()).unwrap();
        assert_eq!(
            (k.instrument_token, k.start, k.complete, k.kite),
            (256, OPEN, false, false)
        );
    }

    fn plan(
        gaps: &[(u32, i64, i64)],
        lines: &[Vec<u8>],
        ready: i64,
    ) -> BTreeMap<u32, BTreeSet<i64>> {
        let mut p = Planner::new(Interval::Minute, gaps.iter().copied());
        let mut d = DateCache::default();
        for l in lines {
            p.line(l, &mut d);
        }
        p.wanted(&mut zone(), ready)
    }

    #[test]
    fn an_incomplete_bar_is_wanted_until_a_later_line_replaces_it() {
        let inc = line(256, OPEN, false, "tickcap");
        let w = plan(&[], std::slice::from_ref(&inc), OPEN + 10 * M);
        assert_eq!(w[&256], BTreeSet::from([OPEN]));
        let w = plan(
            &[],
            &[inc.clone(), line(256, OPEN, true, "kite")],
            OPEN + 10 * M,
        );
        assert!(w.is_empty(), "{w:?}");
        // Not before it has ended (Kite has not published it).
        assert!(plan(&[], &[inc], OPEN + M - 1).is_empty());
    }

    #[test]
    fn a_gap_wants_the_intervals_it_overlaps_that_have_no_line_and_never_a_complete_bar() {
        // A gap 09:16:30–09:19:10: minutes 16, 17, 18 and 19 overlap it.
        let gap = (512, OPEN + M + 30_000_000, OPEN + 4 * M + 10_000_000);
        let lines = [
            line(512, OPEN + M, true, "tickcap"),      // complete: untouched
            line(512, OPEN + 4 * M, false, "tickcap"), // incomplete: wanted
            line(768, OPEN + 2 * M, true, "tickcap"),  // another instrument
        ];
        let w = plan(&[gap], &lines, OPEN + 60 * M);
        assert_eq!(
            w[&512],
            BTreeSet::from([OPEN + 2 * M, OPEN + 3 * M, OPEN + 4 * M])
        );
        assert_eq!(w.len(), 1);
        // A repaired gap bar is not wanted again.
        let mut more = lines.to_vec();
        more.push(line(512, OPEN + 2 * M, true, "kite"));
        let w = plan(&[gap], &more, OPEN + 60 * M);
        assert_eq!(w[&512], BTreeSet::from([OPEN + 3 * M, OPEN + 4 * M]));
    }

    #[test]
    fn next_ready_is_the_end_of_the_first_bar_not_yet_over() {
        let gap = (512, OPEN, OPEN + 90_000_000);
        let mut p = Planner::new(Interval::Minute, [gap]);
        p.line(
            &line(256, OPEN + 5 * M, false, "tickcap"),
            &mut DateCache::default(),
        );
        let mut z = zone();
        assert_eq!(p.next_ready(&mut z, OPEN), Some(OPEN + M));
        assert_eq!(p.next_ready(&mut z, OPEN + M), Some(OPEN + 2 * M));
        assert_eq!(p.next_ready(&mut z, OPEN + 2 * M), Some(OPEN + 6 * M));
        assert_eq!(p.next_ready(&mut z, OPEN + 6 * M), None);
    }

    #[test]
    fn the_second_reading_keeps_each_bars_last_line_only() {
        let lines = [
            line(256, OPEN, false, "tickcap"),
            line(512, OPEN, true, "tickcap"),
            line(256, OPEN, true, "kite"),
            line(256, OPEN + M, false, "tickcap"),
        ];
        let mut last = LastLines::default();
        for l in &lines {
            last.count(l);
        }
        let kept: Vec<bool> = lines.iter().map(|l| last.keep(l)).collect();
        assert_eq!(kept, [false, true, true, true]);
    }

    proptest::proptest! {
        /// Whatever the lines and gaps: a bar whose last line is complete is
        /// never wanted; a bar whose last line is tickcap's incomplete one is
        /// always wanted once over; every wanted bar is either such a bar or
        /// overlaps a gap of its instrument and has no line.
        #[test]
        fn the_plan_follows_the_last_line_and_the_gaps(
            ops in proptest::collection::vec((0u32..3, 0i64..20, 0u8..3), 0..60),
            gaps in proptest::collection::vec((0u32..3, 0i64..1_200, 1i64..300), 0..4),
        ) {
            let gaps: Vec<(u32, i64, i64)> = gaps
                .into_iter()
                .map(|(t, s, l)| (t, OPEN + s * 1_000_000, OPEN + (s + l) * 1_000_000))
                .collect();
            let lines: Vec<Vec<u8>> = ops
                .iter()
                .map(|&(t, m, kind)| {
                    let (complete, source) = match kind {
                        0 => (false, "tickcap"),
                        1 => (true, "tickcap"),
                        _ => (true, "kite"),
                    };
                    line(t, OPEN + m * M, complete, source)
                })
                .collect();
            let ready = OPEN + 30 * M;
            let w = plan(&gaps, &lines, ready);
            let mut last: BTreeMap<(u32, i64), u8> = BTreeMap::new();
            for &(t, m, kind) in &ops {
                last.insert((t, OPEN + m * M), kind);
            }
            for (&(t, s), &kind) in &last {
                let wanted = w.get(&t).is_some_and(|x| x.contains(&s));
                proptest::prop_assert_eq!(wanted, kind == 0, "{} {}", t, s);
            }
            for (&t, starts) in &w {
                for &s in starts {
                    let overlaps = gaps.iter().any(|&(gt, gs, ge)| gt == t && gs < s + M && ge > s);
                    proptest::prop_assert!(
                        last.get(&(t, s)) == Some(&0) || (overlaps && !last.contains_key(&(t, s)))
                    );
                    proptest::prop_assert!(s + M <= ready);
                }
            }
        }
    }
}
